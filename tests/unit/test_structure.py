"""The package's shape stays as the redesign left it: no import cycle (imports deferred into
functions counted), no function over 80 lines, the rooms of keyparity/ read from the top (the
pytest wiring) down to the ground (errors, secrets, the profile) and no room imports one above
it, no private name imported from another module, and one verdict rule."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "keyparity"
# a module of the ground imports nothing of keyparity but other ground modules
GROUND = {"keyparity.errors", "keyparity.secrets", "keyparity.profile", "keyparity.runinfo",
          "keyparity.module_env", "keyparity.policy", "keyparity.keytypes",
          "keyparity.vector_table", "keyparity.checks", "keyparity.atomic", "keyparity.process",
          "keyparity.strength", "keyparity.roles", "keyparity.minimal"}
# The rooms (subpackages of keyparity/), lowest first: a room imports the ground and rooms
# below it, never one above (docs/design.md draws it). The other modules at the package top
# are the wiring (the plugin, the controller, the commands): they may import any room.
# ``keyparity.backends`` (one module) is a room of its own: the registry of migration backends
# sits above both of them (hsm's PKCS #11 backend, cloudhsm's CLI backend) and below the signed
# plan, which records what the profile's backend will do at unwrap.
ROOMS = ("journal", "hsm", "trust", "cloudhsm", "backends", "attest", "formats", "evidence",
         "bench")
LEVEL = {"journal": 1, "hsm": 2, "trust": 2, "cloudhsm": 3, "backends": 3.5, "attest": 4,
         "formats": 5, "evidence": 6, "bench": 7}
# Imports that still run upward, each to be removed (and then taken off this list: an entry
# that no longer exists fails the test, so the list only shrinks).
UPWARD: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every keyparity module ``name`` imports, at the top or inside a function."""
    out = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        out |= {t for t in targets if t in known and t != name and not name.startswith(t + ".")}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_counting_imports_deferred_into_functions():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_check_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_ground_imports_nothing_above_it():
    known = modules()
    for name in GROUND:
        above = imports(name, known[name], known) - GROUND
        assert not above, (name, above)


def test_no_function_over_80_lines_outside_tests():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({length} lines)")
    assert long == []


def room(name: str) -> str:
    """``keyparity.hsm.keys`` -> "hsm"; the ground -> "ground"; the package's top -> "wiring"."""
    parts = name.split(".")
    if name in GROUND:
        return "ground"
    if len(parts) >= 2 and parts[1] in ROOMS:
        return parts[1]
    return "wiring"


def runtime_imports(path: Path, package: list[str]) -> list[tuple[str, list[str]]]:
    """(module, names) of each ``from ... import`` outside ``if TYPE_CHECKING:`` blocks."""
    out: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def upward(known: dict[str, Path]) -> set[tuple[str, str]]:
    """Every import from a room to a room above it, a room to the wiring, or the ground to
    anything but the ground. A format may import the evidence's constants (FAILED, SUITE_OF:
    the record's words) and, under TYPE_CHECKING, its types, never a function that decides."""
    found = set()
    for name, path in known.items():
        mine = room(name)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        evidence_words = set()
        if mine == "formats":
            for base, names in runtime_imports(path, package):
                if room(base) == "evidence" and all(n.isupper() for n in names) and names:
                    evidence_words.add(base)
        for target in imports(name, path, known):
            theirs = room(target)
            if theirs == mine or theirs == "ground" or mine == "wiring":
                continue
            if mine == "formats" and theirs == "evidence" and (
                    target in evidence_words or target.rsplit(".", 1)[0] in evidence_words):
                continue
            if mine == "ground" or theirs == "wiring" or LEVEL[theirs] >= LEVEL[mine]:
                found.add((name, target))
    return found


def formats_decisions(known: dict[str, Path]) -> list[str]:
    """Names a format imports at run time from the evidence that are not its constants."""
    out = []
    for name, path in known.items():
        if room(name) != "formats":
            continue
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for base, names in runtime_imports(path, package):
            if room(base) == "evidence" and base in known:
                out += [f"{name}: {base}.{n}" for n in names or ["*"] if not n.isupper()]
    return out


def test_no_room_imports_one_above_it():
    known = modules()
    found = upward(known)
    assert found - UPWARD == set()
    assert UPWARD - found == set(), "gone: take these off UPWARD"


def test_formats_import_from_the_evidence_only_its_constants_and_types():
    assert formats_decisions(modules()) == []


def test_the_room_check_finds_an_upward_import(tmp_path: Path):
    """The checks above, on a package where a room imports one above it and a format imports
    a function of the evidence."""
    (tmp_path / "hsm").mkdir()
    (tmp_path / "formats").mkdir()
    (tmp_path / "evidence").mkdir()
    (tmp_path / "hsm" / "keys.py").write_text("from ..attest import statement\n")
    (tmp_path / "formats" / "report.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..evidence.verdict import FAILED\n"
        "if TYPE_CHECKING:\n    from ..evidence.facts import Evidence\n"
        "from ..evidence.verdict import decide\n")
    (tmp_path / "evidence" / "verdict.py").write_text("FAILED = ()\ndef decide(): pass\n")
    (tmp_path / "evidence" / "facts.py").write_text("class Evidence: pass\n")
    (tmp_path / "attest.py").write_text("")
    known = {"keyparity.hsm.keys": tmp_path / "hsm" / "keys.py",
             "keyparity.formats.report": tmp_path / "formats" / "report.py",
             "keyparity.evidence.verdict": tmp_path / "evidence" / "verdict.py",
             "keyparity.evidence.facts": tmp_path / "evidence" / "facts.py",
             "keyparity.attest": tmp_path / "attest.py"}
    assert ("keyparity.hsm.keys", "keyparity.attest") in upward(known)
    assert formats_decisions(known) == [
        "keyparity.formats.report: keyparity.evidence.verdict.decide"]


def private_imports(path: Path) -> list[str]:
    """``from X import _name``: a private name of another module (dunders are not private)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out += [f"{path.name}:{node.lineno}: {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_private_name_is_imported_from_another_module():
    paths = [*PACKAGE.rglob("*.py"), *(REPO / "suites").rglob("*.py"),
             *(REPO / "fixtures").rglob("*.py"), REPO / "conftest.py"]
    found = [f"{path.relative_to(REPO)}: {hit}" for path in paths for hit in private_imports(path)]
    assert found == []


def test_the_private_import_check_finds_one(tmp_path: Path):
    module = tmp_path / "plan.py"
    module.write_text("from .verify import VerifyResult, _show, __version__\n")
    assert private_imports(module) == ["plan.py:1: _show"]


VERDICT = PACKAGE / "evidence" / "verdict.py"


def verdict_rules(path: Path) -> list[str]:
    """What decides a verdict outside keyparity/evidence/verdict.py: a module-level function
    named for a verdict (``key_verdict``...), or the outcomes that count as a failure written
    again (a tuple or set holding both "failed" and "error")."""
    out = []
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "verdict" in node.name:
            out.append(f"{path.name}:{node.lineno}: def {node.name}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
            words = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if {"failed", "error"} <= words:
                out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_one_verdict_rule():
    """The verdict is decided in keyparity/evidence/verdict.py alone; what renders it reads
    the verdict the run recorded."""
    found = [hit for path in PACKAGE.rglob("*.py") if path != VERDICT
             for hit in verdict_rules(path)]
    assert found == []
    assert verdict_rules(VERDICT)  # the rule is there, so the check would see a second one


def test_the_verdict_rule_check_finds_a_second_rule(tmp_path: Path):
    module = tmp_path / "report.py"
    module.write_text('FAILED = ("failed", "error")\n'
                      "def key_verdict(entry, outcomes):\n"
                      '    return "failed" if any(o in {"error", "failed"} for o in outcomes) '
                      'else "passed"\n')
    assert verdict_rules(module) == [
        "report.py:2: def key_verdict", "report.py:1: ('failed', 'error')",
        "report.py:3: {'error', 'failed'}"]
