"""Fuzzing the two inputs keyparity parses: profiles (YAML) and the CloudHSM CLI's JSON.

Every malformed input ends in a clear error of ours, never a traceback and never a write:
  - load_profile returns a Profile or raises ProfileError whose message starts with the file's
    path; it creates or changes no file (checked in a directory of its own);
  - the CloudHSM CLI adapter returns parsed data or raises a KeyparityError (CliError) that
    names the command and the cluster. The CLI process is the boundary that is faked: its
    stdout/stderr/exit status are what hypothesis draws (real shapes, mutated).
A handful of end-to-end runs show a malformed profile stopping pytest with exit 4 and one line.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import LAB_ACK, TESTDATA, run_suites
from keyparity.cloudhsm import cli_runner as chc
from keyparity.errors import KeyparityError
from keyparity.profile import CloudHsmCliSpec, Profile, ProfileError, load_profile
from keyparity.secrets import SecretRef

DATA = TESTDATA / "cloudhsm_cli"
# Bounded and reproducible by default; KEYPARITY_FUZZ_EXAMPLES=5000 explores (random seed).
_EXAMPLES = int(os.environ.get("KEYPARITY_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_EXAMPLES or 120, deadline=None, derandomize=not _EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- profiles ---------------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["", "file:", "env:", "file:nope", "env:NOPE", "./x", "../../etc",
                              "P-256", "aes", "rsa", "ec", "migrate", "verify-only", "2027-02-30",
                              "sha256:zz", "\u202e\u0000", "~", "null", "0x", "0" * 5000]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4),
                      max_leaves=12)

# YAML oddities spliced in as text: aliases (one self-referencing), tags, complex keys, tabs,
# duplicate keys, a huge integer, deep nesting, document markers, bad indentation, binary.
ODDITIES = [
    "&a [*a]", "&a {x: *a}", "!!binary aGVsbG8=", "!!python/object:os.system {}", "!!set {a, b}",
    "? [a, b]\n: c", "\t- tab", "x: 1\nx: 2", "9" * 5000, "[" * 5000 + "]" * 5000,
    "{" * 200 + "}" * 200, "---\n---", "...", "- a\n - b", "!!float nan", "!!int 0x_", "&x",
    "*nope", "%YAML 1.1\n---\n{}", "'unterminated", '"\\x"', "\ufeff{}", "!!timestamp 2027-01-01",
    "<<: *nope", "{<<: [1, 2]}", "!!str", "\x00", "- !!binary x",
]


def valid_doc(root: Path) -> dict[str, Any]:
    """A profile that loads, with every file it names present in ``root``."""
    (root / "module.so").write_bytes(b"")
    (root / "pin").write_text("1234\n")
    cluster = {"module": "./module.so", "pin": "file:pin", "mode": "FIPS"}
    return {
        "name": "fuzz", "description": "fuzzed", "environment": "test",
        "module_env": {"SOFTHSM2_CONF": "./softhsm2.conf"},
        "clusters": {"source": {"name": "a", "token_label": "a", **cluster},
                     "target": {"name": "b", "slot": 1, **cluster, "mode": "NON_FIPS"}},
        "wrapping": {"oaep_hash": "sha1", "mgf": "mgf1-sha1"},
        "migration": {"mode": "migrate"},
        "keys": [{"label": "k-aes", "type": "aes", "size": 128},
                 {"label": "k-ec", "type": "ec", "curve": "P-256", "vectors": ["ecdsa-sha256"]},
                 {"label": "k-rsa", "type": "rsa", "size": 2048, "target_label": "t"}],
        "compliance": {"acknowledge_non_fips": LAB_ACK},
        "cutover": "2027-01-31",
    }


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """A valid profile with 1-4 mutations: a field dropped, replaced (any type), or added."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(doc)[1:]))
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop":
            del parent[where[-1]]
        elif action == "replace":
            parent[where[-1]] = draw(VALUES)
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.text(max_size=12) | st.integers())] = draw(VALUES)
        else:
            parent[where[-1]] = {"nested": parent[where[-1]]}
    return doc


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def load_checked(root: Path, text: str | bytes) -> Profile | None:
    """load_profile on ``text``: a Profile, or a ProfileError naming the file; no write."""
    path = root / "profile.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)  # a relative write would land here
    try:
        try:
            return load_profile(path)
        except ProfileError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
            assert "Traceback" not in str(exc)
            return None
    finally:
        os.chdir(cwd)
        assert snapshot(root) == before, "load_profile wrote to the disk"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-profile")


def test_the_valid_profile_loads(root):
    assert isinstance(load_checked(root, yaml.safe_dump(valid_doc(root))), Profile)


@FUZZ
@given(data=st.data())
def test_mutated_profiles_load_or_fail_with_a_profile_error(root, data):
    doc = data.draw(mutated(valid_doc(root)))
    load_checked(root, yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(data=st.data(), splice=st.sampled_from(ODDITIES) | st.text(max_size=40))
def test_yaml_oddities_spliced_into_a_profile_fail_with_a_profile_error(root, data, splice):
    text = yaml.safe_dump(valid_doc(root), sort_keys=False)
    lines = text.splitlines()
    at = data.draw(st.integers(0, len(lines)))
    how = data.draw(st.sampled_from(["line", "value", "replace-line"]))
    if how == "line":
        lines.insert(at, splice)
    elif how == "value" and at < len(lines) and ":" in lines[at]:
        lines[at] = lines[at].split(":", 1)[0] + ": " + splice
    elif at < len(lines):
        lines[at] = splice
    load_checked(root, "\n".join(lines))


@pytest.mark.parametrize("text", ODDITIES + ["", "[]", "0", "a: [", b"\xff\xfe", "\ud800"])
def test_yaml_oddities_as_the_whole_profile(root, text):
    assert load_checked(root, text) is None


@pytest.mark.parametrize("text, says", [  # what the fuzzer found (each was a traceback)
    ("name: !!int 0x_", "invalid YAML: invalid literal for int()"),
    ("name: " + "9" * 5000, "invalid YAML: Exceeds the limit (4300 digits)"),
    ("name: " + "[" * 5000 + "]" * 5000, "invalid YAML: nested too deeply"),
    ("name: &a [*a]", "invalid YAML at line 1, column 11: an alias (*a) is not allowed in a "
                      "profile: write the value out"),
])
def test_what_the_fuzzer_found_is_a_profile_error(root, text, says):
    path = root / "profile.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=r"^" + re.escape(f"{path}: {says}")):
        load_profile(path)


# ---- end to end: a malformed profile stops the run with exit 4 and one line -------------------

@pytest.mark.parametrize("text, says", [
    ("9" * 5000, "invalid YAML"),
    ("&a [*a]", "an alias (*a) is not allowed in a profile"),
    ("name: [\n", "invalid YAML at line"),
    ("keys: &k\n  - *k\n", "an alias (*k) is not allowed in a profile"),
])
def test_malformed_profile_end_to_end_exits_4_without_a_traceback(lab, suites, text, says):
    profile = lab.root / "bad.yaml"
    profile.write_text(text)
    result = run_suites(suites, profile)
    out = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ERROR: {profile}: "), lines[0]
    assert says in lines[0]
    assert "Traceback" not in out
    assert not (suites.path / "reports").exists() or not any((suites.path / "reports").iterdir())


# ---- the CloudHSM CLI's JSON ------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=15), inner, max_size=5), max_leaves=15)
KEY_FIELDS = ["key-reference", "key-info", "attributes", "key-owners", "shared-users",
              "cluster-coverage", "username", "key-coverage", "label", "check-value", "id",
              "matched_keys", "total_key_count", "next_token", "next-token", "error_code", "data"]


def real_shapes() -> list[Any]:
    """Every JSON document in the recorded CLI cases (tests/data/cloudhsm_cli)."""
    docs: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "error_code" in node:
                docs.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    for path in sorted(DATA.glob("*.json")):
        walk(json.loads(path.read_text()))
    return docs


SHAPES = real_shapes()


@st.composite
def mutated_json(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(SHAPES)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(doc)))
        if not where:
            return draw(JSON)
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop":
            del parent[where[-1]]
        elif action == "replace":
            parent[where[-1]] = draw(JSON | st.sampled_from(["inconsistent", "0x", "", -1, 0]))
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.sampled_from(KEY_FIELDS))] = draw(JSON)
        elif isinstance(parent[where[-1]], list):
            parent[where[-1]].append(draw(JSON))
    return doc


STDOUT = (mutated_json().map(json.dumps)
          | st.builds(lambda d: json.dumps({"error_code": 0, "data": d}), JSON)
          | JSON.map(json.dumps) | st.text(max_size=60)
          | st.sampled_from(["", "{", "[" * 100000, '{"error_code": 0, "data": ' + "[" * 3000
                             + "]" * 3000 + "}", '{"error_code": NaN}', "\x00",
                             '{"error_code": 0, "data": {"matched_keys": [], "next_token": "a"}}',
                             '{"error_code": 1e999, "data": "x"}']))


class Boundary:
    """The CLI process: answers every call with the drawn stdout, stderr and exit status."""

    def __init__(self, stdout: str, stderr: str, status: int) -> None:
        self.out, self.err, self.status = stdout.encode("utf-8", "replace"), stderr, status

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(argv, self.status, self.out,
                                           self.err.encode("utf-8", "replace"))


def cli() -> chc.CloudHsmCli:
    os.environ["KP_FUZZ_CU_PASSWORD"] = "pw"
    spec = CloudHsmCliSpec(user="cu1", path=Path("/nonexistent/cloudhsm-cli"),
                           password=SecretRef("env", "KP_FUZZ_CU_PASSWORD", "password"))
    return chc.CloudHsmCli(spec, "cluster-abc", "target (hsm2)", 1.0)


def call_checked(monkeypatch: pytest.MonkeyPatch, stdout: str, stderr: str, status: int) -> None:
    monkeypatch.setattr(chc.subprocess, "run", Boundary(stdout, stderr, status).run)
    for listing, command in ((False, lambda c: c.run("key", "list")),
                             (True, lambda c: c.list_keys({"label": "k1", "class": "secret-key"})),
                             (False, lambda c: c.share({"label": "k1"}, "cu2")),
                             (False, lambda c: c.delete({"label": "k1"}))):
        try:
            out = command(cli())
        except KeyparityError as exc:
            assert isinstance(exc, chc.CliError)
            assert "on target (hsm2)" in str(exc), str(exc)
            assert "; " in str(exc)  # what went wrong; what to do
        else:
            if listing:
                assert all(isinstance(k, chc.CliKey) for k in out)
                for k in out:  # the derived properties never raise either
                    k.label, k.check_value, k.id  # noqa: B018


@FUZZ
@given(stdout=STDOUT, stderr=st.text(max_size=30), status=st.sampled_from([0, 0, 1, 2, 255, -9]))
@example(stdout="[" * 100000, stderr="", status=0)  # found: RecursionError, no CliError
@example(stdout='{"error_code": 0, "data": {"matched_keys": [null]}}', stderr="", status=0)
@example(stdout='{"error_code": 0, "data": ' + "[" * 3000 + "]" * 3000 + "}", stderr="", status=0)
def test_cli_output_parses_or_fails_with_a_cli_error(stdout, stderr, status):
    with pytest.MonkeyPatch.context() as mp:
        call_checked(mp, stdout, stderr, status)


@FUZZ
@given(raw=mutated_json() | JSON)
def test_a_matched_key_of_any_shape_parses_or_is_a_shape_error(raw):
    try:
        key = chc.CliKey.parse(raw, ["key", "list"])
    except chc.CliError as exc:
        assert exc.kind == "bad-shape"
    else:
        key.label, key.check_value, key.id  # noqa: B018
        assert isinstance(key.missing, tuple)
