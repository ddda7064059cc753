"""One backend registry (keyparity.backends): a profile's ``migration.backend`` is mapped to its
Backend in one place, and no other module of keyparity/ compares backend names."""
from __future__ import annotations

import ast
import json

from conftest import REPO
from keyparity.backends import BACKENDS
from keyparity.hsm.backend import Backend, Pkcs11Backend

PACKAGE = REPO / "keyparity"
REGISTRY = PACKAGE / "backends.py"


def backend_comparisons(source: str) -> list[int]:
    """The lines of ``source`` that choose by a backend's name: a comparison with
    ``"cloudhsm-cli"``, or of ``migration_backend`` with a name (``"pkcs11"`` alone is also a
    signer type; a plan's backend compared with the profile's chooses nothing)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        sides = (node.left, *node.comparators)
        names = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in BACKENDS]
        chosen = any(isinstance(s, ast.Attribute) and s.attr == "migration_backend"
                     for s in sides)
        if "cloudhsm-cli" in names or (names and chosen):
            out.append(node.lineno)
    return out


def test_the_registry_has_every_backend_the_schema_admits():
    schema = json.loads((PACKAGE / "schemas" / "profile.schema.json").read_text())
    admitted = schema["properties"]["migration"]["properties"]["backend"]["enum"]
    assert sorted(BACKENDS) == sorted(admitted)


def test_no_module_but_the_registry_chooses_a_backend_by_its_name():
    found = [f"{path.relative_to(REPO)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             if path != REGISTRY for line in backend_comparisons(path.read_text())]
    assert found == []


def test_the_check_finds_a_comparison_when_there_is_one():
    assert backend_comparisons('def pick(profile):\n'
                               '    if profile.migration_backend == "pkcs11":\n'
                               '        return 1\n'
                               '    if "cloudhsm-cli" != profile.name:\n'
                               '        return 2\n'
                               '    return signer.type == "pkcs11"\n') == [2, 4]


def test_reaping_is_a_step_of_the_protocol():
    """A killed run's wrapping objects are reaped through the Backend (the run's start and
    ``keyparity cleanup`` both call it); PKCS #11's were session objects, gone with it."""
    assert callable(getattr(Backend, "reap", None))
    for kind in BACKENDS.values():
        assert callable(getattr(kind.make, "__call__", None))
    assert Pkcs11Backend(None, None, None, "keyparity-wrap-x", None).reap("x") == ([], [])
