"""One key-type registry (keyparity.keytypes): every table of key types or curves is that one;
the profile's schema, the KCV, the CBOM and evidence signing read it."""
from __future__ import annotations

import ast
import json

import pytest

from conftest import REPO
from keyparity import keytypes
from keyparity.formats import cbom
from keyparity.keytypes import CURVES, KEY_TYPES

PACKAGE = REPO / "keyparity"
REGISTRY = PACKAGE / "keytypes.py"
NAMES = set(KEY_TYPES) | set(CURVES) | {c.nist for c in CURVES.values()}


def tables(source: str) -> list[int]:
    """The lines of ``source`` where a dict is keyed by two or more key types or curves (by
    keyparity's names or by python-pkcs11's KeyType members): a second table."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Dict):
            continue
        keyed = [k for k in node.keys
                 if (isinstance(k, ast.Constant) and k.value in NAMES)
                 or (isinstance(k, ast.Attribute) and isinstance(k.value, ast.Name)
                     and k.value.id == "KeyType")]
        if len(keyed) >= 2:
            out.append(node.lineno)
    return out


def test_no_module_but_the_registry_keeps_a_table_of_key_types_or_curves():
    found = [f"{path.relative_to(REPO)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             if path != REGISTRY for line in tables(path.read_text())]
    assert found == []


def test_the_check_finds_a_second_table():
    assert tables('SIZES = {"des2": 128, "des3": 192}\n'
                  'ONE = {"aes": 1}\n'
                  'T = {KeyType.AES: "aes", KeyType.RSA: "rsa"}\n'
                  'C = {"P-256": 256, "secp384r1": 384}\n') == [1, 3, 4]


def test_the_schema_admits_exactly_the_registry_s_key_types_and_curves():
    schema = json.loads((PACKAGE / "schemas" / "profile.schema.json").read_text())
    text = json.dumps(schema)
    for name in KEY_TYPES:
        assert f'"{name}"' in text
    for alias in keytypes.CURVE_ALIASES:
        assert f'"{alias}"' in text


@pytest.mark.parametrize(("type_name", "size", "problem"), [
    ("aes", 192, None), ("aes", 100, "100 is not one of: 128, 192, 256 (type aes)"),
    ("generic-secret", 12, "12 must be a multiple of 8 between 8 and 4096 (type generic-secret)"),
    ("rsa", 512, "512 must be between 1024 and 8192 (type rsa)"), ("rsa", 2048, None),
    ("des3", 192, "not allowed for type des3"), ("ec", None, None),
    ("aes", None, "required field missing for type aes"),
])
def test_sizes_a_profile_may_give(type_name, size, problem):
    assert keytypes.size_problem(type_name, size) == problem


def test_the_cbom_algorithms_come_from_the_registry():
    assert cbom.algorithm("aes", 256, None) == cbom.Algorithm(
        "AES-256", "block-cipher", "256", classical=256, quantum=5)
    assert cbom.algorithm("des2", None, None) == cbom.Algorithm(
        "3DES (two-key)", "block-cipher", "112", classical=80, quantum=0)
    assert cbom.algorithm("rsa", 3072, None) == cbom.Algorithm(
        "RSA-3072", "pke", "3072", classical=128, quantum=0, oid="1.2.840.113549.1.1.1")
    assert cbom.algorithm("ec", None, "P-384") == cbom.Algorithm(
        "EC P-384", "signature", curve="nist/P-384", classical=192, quantum=0,
        oid="1.2.840.10045.2.1")
    assert cbom.algorithm("generic-secret", 256, None) == cbom.Algorithm("HMAC", "mac")
