"""The harness's own tests stay grouped by what they need (docs/development.md, "The tests"):
``unit/`` nothing but Python, ``token/`` a SoftHSM token, ``tools/`` a program, ``suites/`` the
real suites in a child pytest; what they share is in ``tests/helpers/`` and ``tests/conftest.py``
only, and a test file imports another test file only from its own folder (so that each file
also runs alone)."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import HELPERS, REPO, TESTS

GROUPS = ("unit", "token", "tools", "suites")
# what each folder's files may not use: fixtures (as "fixture NAME") and the names they read,
# call or import
CHILD_PYTEST = {"fixture suites", "fixture all_suites", "fixture pytester", "run_suites",
                "runpytest", "runpytest_subprocess"}
TOKEN = {"fixture lab", "fixture tokens", "fresh_lab", "Lab", "p11tokens", "provision",
         "TOKENTOOL"}
FORBIDDEN = {"unit": CHILD_PYTEST | TOKEN | {"subprocess"}, "token": CHILD_PYTEST,
             "tools": CHILD_PYTEST, "suites": set()}


def all_test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def asks_fixtures(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A test or a fixture: its parameters are fixtures (a helper's are not)."""
    return node.name.startswith("test") or any(
        "fixture" in ast.unparse(d) for d in node.decorator_list)


def uses(path: Path) -> set[str]:
    """The names a test file uses: the fixtures its tests and fixtures ask for, the names and
    attributes it reads, and the modules it imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and asks_fixtures(node):
            out |= {f"fixture {a.arg}" for a in node.args.args + node.args.kwonlyargs}
        elif isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def runs_a_child_pytest(path: Path) -> bool:
    source = path.read_text()
    return bool(uses(path) & CHILD_PYTEST) or '"-m", "pytest"' in source


def imported_test_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("test_"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("test_")}
    return out


def misplaced(files: list[Path], root: Path = TESTS) -> list[str]:
    """Each test file against its folder's rules; one line per file that breaks them."""
    out = []
    for path in files:
        name, group = path.relative_to(root), path.parent.name
        if path.parent.parent != root or group not in GROUPS:
            out.append(f"{name}: not in one of {', '.join(GROUPS)}")
            continue
        bad = uses(path) & FORBIDDEN[group]
        if bad:
            out.append(f"{name} uses {', '.join(sorted(bad))}")
        if group == "suites" and not runs_a_child_pytest(path):
            out.append(f"{name} runs no child pytest: not a suites test")
        if group == "token" and not uses(path) & TOKEN:
            out.append(f"{name} uses no token: not a token test")
    return out


def crossings(files: list[Path], root: Path = TESTS) -> list[str]:
    """Imports of a test module from another folder: those break the file run alone."""
    where = {p.stem: p.parent for p in files}
    return [f"{p.relative_to(root)} imports {m} from {where[m].relative_to(root)}"
            for p in files for m in sorted(imported_test_modules(p))
            if m in where and where[m] != p.parent]


def test_every_test_file_is_in_the_folder_of_what_it_needs():
    assert misplaced(all_test_files()) == []


def test_a_test_file_imports_test_files_only_of_its_own_folder():
    assert crossings(all_test_files()) == []


def test_shared_code_lives_in_helpers_and_the_one_conftest():
    """Beside the test files, a group folder holds nothing importable; fixtures shared by the
    folders are in tests/conftest.py alone."""
    strays = [p.relative_to(TESTS) for g in GROUPS for p in (TESTS / g).glob("*.py")
              if not p.name.startswith("test_")]
    conftests = [p.relative_to(TESTS) for p in TESTS.rglob("conftest.py")]
    assert strays == [] and conftests == [Path("conftest.py")]
    assert not list(HELPERS.glob("test_*.py"))


def test_the_checks_find_a_misplaced_file_and_a_crossing(tmp_path):
    """A token test among the unit tests, a unit test among the token tests, a suites test
    that runs no suite, and an import across folders are each named."""
    for group in GROUPS:
        (tmp_path / group).mkdir()
    (tmp_path / "unit" / "test_a.py").write_text("def test_a(lab):\n    pass\n\n\n"
                                                 "def helper(suites):\n    pass\n")
    (tmp_path / "token" / "test_b.py").write_text("def test_b(tmp_path):\n    pass\n")
    (tmp_path / "suites" / "test_c.py").write_text("from test_a import x\n")
    (tmp_path / "test_d.py").write_text("")
    files = sorted(tmp_path.rglob("test_*.py"))
    assert misplaced(files, tmp_path) == ["suites/test_c.py runs no child pytest: not a suites test",
                                "test_d.py: not in one of unit, token, tools, suites",
                                "token/test_b.py uses no token: not a token test",
                                "unit/test_a.py uses fixture lab"]
    assert crossings(files, tmp_path) == ["suites/test_c.py imports test_a from unit"]


@pytest.mark.parametrize("group", GROUPS)
def test_each_folder_holds_tests(group):
    assert list((TESTS / group).glob("test_*.py"))


def stale_subsets(modules: dict) -> list[str]:
    """The mutated modules and test files (or node ids) of mutation/run.py's subsets that do
    not exist: the run would leave them out of the subset without a word."""
    out = []
    for name, module in modules.items():
        if not (REPO / module.path).is_file():
            out.append(f"{name}: {module.path}")
        for test in module.tests:
            file, _, function = test.partition("::")
            if not (REPO / file).is_file():
                out.append(f"{name}: {test}")
            elif function and f"def {function}(" not in (REPO / file).read_text():
                out.append(f"{name}: {test}")
    return out


def test_mutation_subsets_name_tests_that_exist(monkeypatch):
    spec = importlib.util.spec_from_file_location("mutation_run", REPO / "mutation" / "run.py")
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mutation_run", run)  # its dataclasses look it up
    spec.loader.exec_module(run)
    assert run.MODULES and stale_subsets(run.MODULES) == []
    moved = {"verdict": run.Module("keyparity/evidence/verdict.py",
                                   ("tests/test_verdict_unit.py",
                                    "tests/suites/test_verdict.py::test_gone"))}
    assert stale_subsets(moved) == ["verdict: tests/test_verdict_unit.py",
                                    "verdict: tests/suites/test_verdict.py::test_gone"]
