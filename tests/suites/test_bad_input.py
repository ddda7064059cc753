"""Bad input gets a clear error and changes nothing.

Every test drives the real plugin end to end (a pytester subprocess running the real suites)
against fresh SoftHSM tokens, and checks the exit code, the one message a person reads, that
no secret is echoed, and that neither token nor the reports directory was touched.
"""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import DEMO_KEYS, evidence, run_suites

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"
ALL_TESTS = 52  # the suites' tests for DEMO_KEYS (see test_smoke_suites.py)
# the wrapping chain's strength is the profile's alone: checked whatever the tokens do
STRENGTH = {f"suites/test_preflight.py::test_the_wrapping_chain_is_as_strong_as_the_key"
            f"[{k['label']}]" for k in DEMO_KEYS}
END_CENSUS = "suites/test_census.py::test_source_unchanged_during_the_run"  # after every test


# ---- helpers --------------------------------------------------------------------------------

def edit_profile(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Load a lab profile, change it in place, write it back."""
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def counts(lab: Any) -> list[int]:
    """Object counts of hsm1 and hsm2, read in a child process."""
    return lab.tokens({"op": "count", "token": "hsm1"}, {"op": "count", "token": "hsm2"})


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def outcomes_of(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """outcome -> {nodeid: message} from the evidence (one entry per test and phase); node ids
    without the ``@<xdist_group>`` that loadgroup appends under ``-n``."""
    out: dict[str, dict[str, str]] = {}
    for t in doc["tests"]:
        nodeid = re.sub(r"\]@[^\]@]+$", "]", t["nodeid"])
        out.setdefault(t["outcome"], {})[nodeid] = t.get("message", "")
    return out


def assert_usage_error(suites: pytest.Pytester, result: pytest.RunResult, profile: Path,
                       lab: Any, before: list[int]) -> str:
    """Exit code 4, exactly one non-empty line of output that names the profile file, no
    traceback, no run directory, tokens unchanged. Returns the line."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"ERROR: {profile}: "), line
    assert "Traceback" not in output(result)
    assert not (suites.path / "reports").exists(), "a run directory was written"
    assert counts(lab) == before
    return line


def files_containing(root: Path, secrets_by_name: dict[str, str]) -> list[str]:
    """Files under root holding any of the secrets: 'file: name' (never the value)."""
    hits = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and not f.is_symlink():
            data = f.read_bytes()
            hits += [f"{f}: {name}" for name, value in secrets_by_name.items()
                     if value.encode() in data]
    return hits


_SPY_CALL = re.compile(r"^\d+: (C_\w+)$")
_SPY_DUMP = re.compile(r"^\s+[0-9a-fA-F]{8}  ((?:[0-9a-fA-F]{2} ){1,16})")


def spy_logins(log: Path) -> list[tuple[bytes, str]]:
    """(PIN bytes, CKR name) of every C_Login in a pkcs11-spy log.

    The spy writes one record per call: "N: C_Login", a timestamp, "[in] ..." lines, the PIN
    as a hex dump (16 bytes a line, then the ASCII column), and "Returned:  160
    CKR_PIN_INCORRECT". It opens PKCS11SPY_OUTPUT with fopen(.., "a") and fflush()es after each
    call, so the small records of several processes append whole, one after another.
    """
    logins: list[tuple[bytes, str]] = []
    pin: bytearray | None = None
    for line in log.read_text(errors="replace").splitlines():
        call = _SPY_CALL.match(line)
        if call:
            pin = bytearray() if call.group(1) == "C_Login" else None
        elif pin is not None and (dump := _SPY_DUMP.match(line)):
            pin += bytes.fromhex(dump.group(1))
        elif pin is not None and line.startswith("Returned:"):
            logins.append((bytes(pin), line.split()[-1]))
            pin = None
    return logins


# ---- profiles that do not load: usage error, nothing written --------------------------------

def test_malformed_yaml_is_one_usage_error_line_naming_file_and_line(lab, suites):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = lab.profile(DEMO_KEYS)
    lines = profile.read_text().splitlines()
    assert lines[1] == "description: test lab"
    lines[1] = "description: test: lab"
    profile.write_text("\n".join(lines) + "\n")

    result = run_suites(suites, profile)

    line = assert_usage_error(suites, result, profile, lab, before)
    assert line == (f"ERROR: {profile}: invalid YAML at line 2, column 18: "
                    "mapping values are not allowed here")


def test_unknown_field_is_named_by_its_path(lab, suites):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = edit_profile(lab.profile(DEMO_KEYS),
                           lambda d: d["clusters"]["source"].update(pni="x"))

    result = run_suites(suites, profile)

    line = assert_usage_error(suites, result, profile, lab, before)
    assert line.startswith(f"ERROR: {profile}: clusters.source.pni: unknown field 'pni' "), line


@pytest.mark.parametrize("literal", ["123456", 123456], ids=["string", "integer"])
def test_literal_pin_is_rejected_without_echoing_it(lab, suites, literal):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = edit_profile(lab.profile(DEMO_KEYS),
                           lambda d: d["clusters"]["source"].update(pin=literal))
    assert f"pin: {literal!r}" in profile.read_text() or f"pin: {literal}" in profile.read_text()

    result = run_suites(suites, profile)

    assert "123456" not in output(result), "the literal PIN was echoed"
    line = assert_usage_error(suites, result, profile, lab, before)
    assert line == (f"ERROR: {profile}: clusters.source.pin: a literal secret is not allowed; "
                    "use env:NAME or file:PATH")


def test_missing_module_names_the_module_field(lab, suites):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    missing = lab.root / "no-such-pkcs11.so"
    profile = edit_profile(lab.profile(DEMO_KEYS),
                           lambda d: d["clusters"]["target"].update(module=str(missing)))

    result = run_suites(suites, profile)

    line = assert_usage_error(suites, result, profile, lab, before)
    assert line == (f"ERROR: {profile}: clusters.target.module: "
                    f"PKCS#11 module not found: {missing}")


def test_without_hsm_profile_suites_are_deselected_and_the_run_is_green(suites):
    result = suites.runpytest_subprocess("suites")

    assert result.ret == pytest.ExitCode.OK
    collected = re.search(r"collected (\d+) items / (\d+) deselected / 0 selected",
                          result.stdout.str())
    assert collected and collected.group(1) == collected.group(2) != "0", result.stdout.str()
    n = int(collected.group(1))
    result.assert_outcomes(deselected=n)
    notes = [line for line in result.outlines if "deselected: no --hsm-profile given" in line]
    assert notes == [f"keyparity: {n} suite tests deselected: no --hsm-profile given "
                     "(e.g. --hsm-profile=softhsm)"]
    assert not (suites.path / "reports").exists()


# ---- login: one attempt per run, a plain message --------------------------------------------

SOURCE_ONLY = {f"suites/test_preflight.py::{test}[{k['label']}]" for k in DEMO_KEYS
               for test in ("test_key_is_on_the_source_and_extractable",
                            "test_the_migrating_user_can_wrap_the_key")} | {
    "suites/test_preflight.py::test_cluster_is_reachable_and_logged_in[source]",
    "suites/test_preflight.py::test_cluster_offers_the_mechanisms_the_profile_needs[source]",
    "suites/test_census.py::test_every_source_key_is_accounted_for", END_CENSUS} | STRENGTH


@pytest.mark.parametrize("workers", [1, 2], ids=["serial", "two-workers"])
def test_wrong_target_pin_is_tried_exactly_once_per_run(lab, suites, workers):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    wrong = "wrong-" + secrets.token_hex(4)
    (lab.root / "wrong.pin").write_text(wrong + "\n")
    log = lab.root / "spy.log"  # holds every PIN in clear: kept out of the reports dir

    def through_spy(d: dict[str, Any]) -> None:
        # one module path for both clusters: cluster.load_module keeps one library per path
        d["module_env"].update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(log))
        for cluster in d["clusters"].values():
            cluster["module"] = SPY
        d["clusters"]["target"]["pin"] = f"file:{lab.root / 'wrong.pin'}"

    profile = edit_profile(lab.profile(DEMO_KEYS), through_spy)
    args = ("-n", str(workers)) if workers > 1 else ()

    result = run_suites(suites, profile, *args)

    # exactly one C_Login with the wrong PIN in the whole run, whatever the workers
    logins = spy_logins(log)
    with_wrong_pin = [rv for pin, rv in logins if pin == wrong.encode()]
    assert with_wrong_pin == ["CKR_PIN_INCORRECT"]
    assert log.read_text().count("CKR_PIN_INCORRECT") == 1
    # the log saw every process: each logged in to the source once (with -n, the controller
    # too: it takes the source's census again at the end)
    processes = workers + 1 if workers > 1 else 1
    assert [rv for pin, rv in logins if pin == lab.pins["hsm1"].encode()] == ["CKR_OK"] * processes

    # failed: the target's two preflight tests, and the count of each key's objects at the end
    # (the target cannot be read: it says so, as every test the target stopped)
    result.assert_outcomes(passed=len(SOURCE_ONLY), failed=3,
                           errors=ALL_TESTS - len(SOURCE_ONLY) - 3)
    by = outcomes_of(evidence(suites))
    assert set(by["passed"]) == SOURCE_ONLY
    failing = {**by["failed"], **by["error"]}
    assert len(failing) == ALL_TESTS - len(SOURCE_ONLY)
    for nodeid, message in failing.items():
        assert "target (hsm2) is unavailable: login" in message and "not retried" in message, (
            nodeid, message)
    assert "Traceback" not in output(result)
    if workers > 1:  # one worker tried, the other was refused by the gate
        assert any("failed: CKR_PIN_INCORRECT" in m for m in failing.values())
        assert any("failed earlier in this run (CKR_PIN_INCORRECT)" in m
                   for m in failing.values())

    assert wrong not in output(result)
    assert files_containing(suites.path / "reports", {"wrong PIN": wrong}) == []
    assert counts(lab) == before


def test_unset_env_pin_names_field_and_variable_without_a_traceback(lab, suites, monkeypatch):
    monkeypatch.delenv("KEYPARITY_TEST_UNSET_PIN", raising=False)
    # pytest writes its -ra lines whole under CI and cuts them to the terminal elsewhere: the
    # count below is CI's, here too
    monkeypatch.setenv("CI", "true")
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = edit_profile(
        lab.profile(DEMO_KEYS),
        lambda d: d["clusters"]["source"].update(pin="env:KEYPARITY_TEST_UNSET_PIN"))

    result = run_suites(suites, profile)

    target_only = {
        "suites/test_preflight.py::test_cluster_is_reachable_and_logged_in[target]",
        "suites/test_preflight.py::test_cluster_offers_the_mechanisms_the_profile_needs[target]"
    } | STRENGTH
    # no census of the source at the start: none to compare at the end (END_CENSUS not run);
    # the count of each key's objects at the end fails: the source cannot be read
    result.assert_outcomes(passed=len(target_only), failed=3,
                           errors=ALL_TESTS - 4 - len(target_only))
    by = outcomes_of(evidence(suites))
    assert set(by["passed"]) == target_only
    expected = "clusters.source.pin: environment variable KEYPARITY_TEST_UNSET_PIN is not set"
    failing = {**by["failed"], **by["error"]}
    assert len(failing) == ALL_TESTS - 1 - len(target_only)
    # one plain message, the same for every test (and for the count at the end of the run)
    (message,) = {m.removeprefix("Failed: ") for m in failing.values()}
    assert message.endswith(expected), message
    text = output(result)
    # said in full by the first test it stopped (and its -ra line) and by the keyparity summary
    # (the keys' line and the count of tests it stopped), then one short line per test; the
    # evidence keeps every test's message whole
    assert 1 <= text.count(expected) <= 4, text.count(expected)
    assert "keyparity: 43 tests could not run: source (hsm1) is unavailable: " in text
    assert text.count("source (hsm1) is unavailable (the cause is above, said once)") >= 30
    for internal in ("Traceback", "keyparity/login.py", "keyparity/secrets.py",
                     "keyparity/cluster.py", "raise SecretError", "_pytest/fixtures.py"):
        assert internal not in text, internal
    assert counts(lab) == before


# ---- inventory and wrapping: per-key failures, nothing written -----------------------------

def test_unknown_label_fails_only_that_key_with_not_found_on_hsm1(lab, suites):
    lab.seed(DEMO_KEYS)
    keys = DEMO_KEYS + [{"label": "k-missing", "type": "aes", "size": 128}]
    before = counts(lab)

    result = run_suites(suites, lab.profile(keys))

    # k-missing: 1 migration + 2 preflight (found, trial wrap) failed; 1 attribute + 1 kcv + 1
    # vectors (every vector of the key in both directions) errored in setup; every other key
    # as in the smoke test
    result.assert_outcomes(passed=53, failed=3, errors=3)
    doc = evidence(suites)
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == {
        **{k["label"]: "passed" for k in DEMO_KEYS}, "k-missing": "failed"}
    bad = [t for t in doc["tests"] if t["outcome"] in ("failed", "error")]
    assert len(bad) == 6
    for t in bad:
        assert t["key"] == "k-missing", t
        assert "'k-missing'" in t["message"] and "not found on hsm1" in t["message"], t
    hsm1, hsm2 = before
    assert counts(lab) == [hsm1, hsm2 + 6]  # the six real keys (rsa, ec: the private key)


def test_oaep_hash_the_token_refuses_fails_every_key_plainly_and_writes_nothing(lab, suites):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = lab.profile(DEMO_KEYS, wrapping={"oaep_hash": "sha256", "mgf": "mgf1-sha256"})

    result = run_suites(suites, profile)

    # failed: 6 migrations, the wrapping preflight and the 6 trial wraps (which cannot say
    # whether the user may wrap a key when the token refuses the parameters); errors: 6
    # attribute + 6 kcv + 26 vector tests (setup: the key is not on the target); passed: the
    # 11 other preflight tests, the 6 of the wrapping chain's strength and the census (4)
    result.assert_outcomes(passed=21, failed=13, errors=18)
    by = outcomes_of(evidence(suites))
    migrations = {f"suites/test_migration.py::test_key_is_on_the_target[{k['label']}]"
                  for k in DEMO_KEYS}
    trials = {f"suites/test_preflight.py::test_the_migrating_user_can_wrap_the_key"
              f"[{k['label']}]" for k in DEMO_KEYS}
    preflight = "suites/test_preflight.py::test_tokens_accept_the_wrapping_parameters"
    assert set(by["failed"]) == migrations | {preflight} | trials
    for node in trials:
        said = by["failed"].pop(node)
        assert "the trial wrap could not be made" in said and "is not proven" in said, said

    def explanation(message: str) -> str:
        start = message.index("wrapping with RSA-OAEP sha256/mgf1-sha256")
        return message[start:].splitlines()[0]

    why = {explanation(m) for m in by["failed"].values()}
    assert len(why) == 1, why  # the preflight and every key give the same explanation
    (why,) = why
    assert "is not accepted" in why
    assert "Choose wrapping.oaep_hash and wrapping.mgf that both tokens accept" in why
    assert "accepts only sha1 and mgf1-sha1" in why
    for message in by["error"].values():
        assert "its migration failed" in message and "is not accepted" in message, message
    assert counts(lab) == before  # no key object on the target, none added to the source


# ---- secrets never reach the run directory --------------------------------------------------

def test_pins_never_reach_any_file_of_the_run_directory(lab, suites):
    lab.seed(DEMO_KEYS)

    result = run_suites(suites, lab.profile(DEMO_KEYS))

    result.assert_outcomes(passed=52)
    reports = suites.path / "reports"
    files = [f for f in reports.rglob("*") if f.is_file()]
    assert any(f.name == "evidence.json" for f in files)
    assert files_containing(reports, {f"{t} PIN": pin for t, pin in lab.pins.items()}) == []
    assert not any(pin in output(result) for pin in lab.pins.values())


# ---- YAML aliases, where the run is written, where the profile is looked up ------------------

def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A few hundred bytes that PyYAML expands to width**levels paths (a billion here)."""
    lines = ["bomb0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"bomb{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", ["bomb", "one alias"])
def test_a_yaml_alias_in_a_profile_is_one_line_naming_it_and_nothing_is_written(lab, suites,
                                                                                case):
    """An alias (``*name``) is refused where PyYAML reads it, before anything is built from it:
    a 9-level bomb of 10 aliases each is answered at once (it used to walk 10^9 paths for
    minutes, in every command that loads a profile)."""
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = lab.profile(DEMO_KEYS)
    text = profile.read_text()
    if case == "bomb":
        profile.write_text(text + alias_bomb())
        line, where = len(text.splitlines()) + 2, "*a0"
    else:  # a profile that is valid with the alias resolved
        text = text.replace("description: test lab", "description: &d test lab", 1)
        assert "    approver: lab\n" in text
        profile.write_text(text.replace("    approver: lab\n", "    approver: *d\n", 1))
        line = 1 + next(i for i, x in enumerate(profile.read_text().splitlines()) if "*d" in x)
        where = "*d"
    # the timeout only turns a hang (the old behaviour) into a failure; it measures nothing
    result = suites.runpytest_subprocess("suites", f"--hsm-profile={profile}",
                                         f"--hsm-reports-dir={suites.path / 'reports'}",
                                         timeout=300)
    said = assert_usage_error(suites, result, profile, lab, before)
    assert re.fullmatch(rf"ERROR: {re.escape(str(profile))}: invalid YAML at line {line}, "
                        rf"column \d+: an alias \({re.escape(where)}\) is not allowed in a "
                        "profile: write the value out", said), said


def _nothing_written(suites: pytest.Pytester, lab: Any, before: list[int]) -> None:
    assert counts(lab) == before
    left = sorted(p.name for p in suites.path.iterdir()
                  if not p.name.startswith("runpytest-")
                  and p.name not in ("stdout", "stderr"))  # pytester's own
    assert left == sorted(["conftest.py", "fixtures", "pytest.ini", "suites", "not-a-dir"]), left


@pytest.mark.parametrize("where", ["a file", "unwritable"])
def test_a_reports_dir_that_cannot_hold_the_run_is_one_line_and_nothing_is_written(lab, suites,
                                                                                   where):
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    profile = lab.profile(DEMO_KEYS)
    (suites.path / "not-a-dir").write_text("a file\n")
    # /sys: a directory no process may create a directory in, root's included
    reports = suites.path / "not-a-dir" if where == "a file" else Path("/sys/keyparity-reports")
    result = suites.runpytest_subprocess("suites", f"--hsm-profile={profile}",
                                         f"--hsm-reports-dir={reports}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"ERROR: --hsm-reports-dir {re.escape(str(reports))}: the run "
                        rf"directory {re.escape(str(reports))}/\S+ cannot be made: "
                        r"(Not a directory|Operation not permitted|Permission denied|"
                        r"Read-only file system)", lines[0]), lines[0]
    _nothing_written(suites, lab, before)


def test_a_profile_name_under_another_rootdir_is_one_line_saying_where_it_looked(lab, suites):
    """``-c`` with an ini file elsewhere moves the rootdir, and with it where a profile NAME is
    looked up: one line that says so (a profile given by its path goes on: the verdict then
    names what did not run, test_selection.py)."""
    lab.seed(DEMO_KEYS)
    before = counts(lab)
    (suites.path / "hsm_profiles").mkdir()
    (suites.path / "hsm_profiles" / "lab.yaml").write_text(lab.profile(DEMO_KEYS).read_text())
    elsewhere = suites.path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.ini").write_text("[pytest]\n")
    result = suites.runpytest_subprocess("suites", "--hsm-profile=lab", "-c",
                                         str(elsewhere / "other.ini"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert lines == [f"ERROR: {elsewhere}/hsm_profiles/lab.yaml: profile file not found: "
                     f"--hsm-profile=lab names a profile in <rootdir>/hsm_profiles, and the "
                     f"rootdir is {elsewhere} (chosen by --rootdir, -c or the paths given); "
                     "give the profile's path instead"], lines
    assert counts(lab) == before
    assert not (suites.path / "reports").exists() and not (elsewhere / "reports").exists()
