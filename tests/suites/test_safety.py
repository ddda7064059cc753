"""Safety and clear errors everywhere, not only in the pytest run (issue 11).

Every command and signer logs in at most once per cluster per process (C_Login counted in
OpenSC's pkcs11-spy log; the stand-in CloudHSM CLI logs each refused login); one PKCS #11
library under two paths is one module; source = target is refused before anything runs; each
command exits 0/1/2 with one sentence; a broken journal chain, a path option written with a
space, a ``reports/latest`` that is a directory and a PIN file others may read are all caught.
Real SoftHSM tokens throughout.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import as_production, evidence, run_suites
from keyparity.attest.custodians import file_custodian
from test_bad_input import SPY, edit_profile, spy_logins
from test_cli_backend import cli_lab_profile

EC = [{"label": f"k-ec{i}", "type": "ec", "curve": "P-256"} for i in range(3)]
AES = {"label": "k-aes128", "type": "aes", "size": 128}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
REAL_MODULE = os.path.realpath("/usr/lib/softhsm/libsofthsm2.so")


def keyparity(lab: Any, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=cwd or lab.root,
                          timeout=300)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    return lines[0]


def wrong_pin(lab: Any, role: str, log: Path):
    """A profile change: both clusters through the spy (one module path), ``role``'s PIN
    wrong."""
    (lab.root / "wrong.pin").write_text("wrong-pin-0000\n")
    (lab.root / "wrong.pin").chmod(0o600)

    def change(d: dict[str, Any]) -> None:
        d["module_env"].update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(log))
        for cluster in d["clusters"].values():
            cluster["module"] = SPY
        d["clusters"][role]["pin"] = f"file:{lab.root / 'wrong.pin'}"
    return change


def target_count(lab: Any, label: str | None = None) -> int:
    op = {"op": "count", "token": "hsm2", **({"label": label} if label else {})}
    return lab.tokens(op)[0]


# ---- 1. one login per cluster per process, for every command ----------------------------------

def test_cleanup_with_a_wrong_source_pin_logs_in_once_and_stops_with_one_line(lab, suites):
    """Cleanup proves EC keys with the source's public key: one source login for all three,
    refused once, and the command stops (it tried three times before, one per EC key)."""
    lab.seed(EC)
    result = run_suites(suites, lab.profile(EC))
    assert result.ret == 0, result.stdout.str()
    run_id = evidence(suites)["run"]["run_id"]
    log = lab.root / "spy.log"
    profile = edit_profile(lab.profile(EC, name="cleanup"), wrong_pin(lab, "source", log))
    journal = suites.path / ".keyparity" / "journal.sqlite"
    lab.anchor(profile, journal, suites.path / "reports")  # the run was not signed

    out = keyparity(lab, "cleanup", str(profile), "--run", run_id, "--journal", str(journal),
                    "--reports-dir", str(suites.path / "reports"))

    assert out.returncode == 1
    assert one_line(out) == (
        "keyparity cleanup: error: source (hsm1) is unavailable: login failed: "
        f"CKR_PIN_INCORRECT; check clusters.source.pin (file:{lab.root / 'wrong.pin'}); not "
        "retried, so that the user is not locked out")
    assert [rv for pin, rv in spy_logins(log) if pin == b"wrong-pin-0000"] == [
        "CKR_PIN_INCORRECT"]
    assert [rv for pin, rv in spy_logins(log) if pin == lab.pins["hsm2"].encode()] == ["CKR_OK"]
    assert all(target_count(lab, k["label"]) == 1 for k in EC)  # nothing removed unproven


def test_seed_with_a_wrong_pin_logs_in_once_and_says_so(lab):
    log = lab.root / "spy.log"
    profile = edit_profile(lab.profile([AES]), wrong_pin(lab, "source", log))
    out = keyparity(lab, "demo", "seed", str(profile))
    assert out.returncode == 1
    assert one_line(out).startswith("keyparity demo seed: error: source (hsm1) is unavailable: "
                                    "login failed: CKR_PIN_INCORRECT; check clusters.source.pin")
    assert spy_logins(log) == [(b"wrong-pin-0000", "CKR_PIN_INCORRECT")]


def test_seed_with_an_unset_env_pin_is_one_line(lab, monkeypatch):
    monkeypatch.delenv("KP_UNSET_PIN", raising=False)
    profile = edit_profile(lab.profile([AES]),
                           lambda d: d["clusters"]["source"].update(pin="env:KP_UNSET_PIN"))
    out = keyparity(lab, "demo", "seed", str(profile))
    assert out.returncode == 1
    assert one_line(out) == ("keyparity demo seed: error: source (hsm1) is unavailable: "
                             "clusters.source.pin: environment variable KP_UNSET_PIN is not set")


def test_seed_on_a_production_source_needs_its_cluster_id(lab):
    """seed writes keys to the source: a production profile's source gets none without
    --hsm-confirm naming it (one line, exit 2), nor with another id."""
    profile = edit_profile(lab.profile([AES], name="prod"), as_production)
    out = keyparity(lab, "demo", "seed", str(profile))
    assert out.returncode == 2
    assert one_line(out) == ("keyparity demo seed: error: prod is a production profile: add "
                             "--hsm-confirm=hsm1 (clusters.source.name) to create keys on hsm1; "
                             "nothing was created")
    wrong = keyparity(lab, "demo", "seed", str(profile), "--hsm-confirm=hsm2")
    assert wrong.returncode == 2 and one_line(wrong) == (
        "keyparity demo seed: error: --hsm-confirm=hsm2 does not match the source cluster hsm1 "
        "(clusters.source.name, hsm1): nothing was created")
    assert lab.tokens({"op": "count", "token": "hsm1", "label": AES["label"]}) == [0]
    done = keyparity(lab, "demo", "seed", str(profile), "--hsm-confirm=hsm1")
    assert done.returncode == 0, done.stderr
    assert lab.tokens({"op": "count", "token": "hsm1", "label": AES["label"]}) == [1]


def test_a_refused_cloudhsm_cli_login_is_tried_once_in_a_run_of_two_workers(lab, suites,
                                                                           monkeypatch):
    keys = [AES, HMAC, {"label": "k-aes256", "type": "aes", "size": 256}]
    log, case = lab.root / "cli.log", lab.root / "case.json"
    case.write_text("{}")
    for name, value in {"KP_TEST_CU_PASSWORD": "the-wrong-one", "FAKE_CLOUDHSM_CASE": case,
                        "FAKE_CLOUDHSM_LOG": log, "FAKE_CLOUDHSM_EXPECT_PIN": "cu1:right",
                        "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-src,cluster-tgt"}.items():
        monkeypatch.setenv(name, str(value))
    path = cli_lab_profile(lab, keys)

    result = run_suites(suites, path, "suites/test_migration.py", "-n", "2", "--hsm-batch", "1")

    refused = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c.get("login") for c in refused] == ["refused"], refused
    doc = evidence(suites)
    messages = [t["message"] for t in doc["tests"] if t["outcome"] == "failed"]
    assert len(messages) == 3 and all("Login failed" in m or "failed earlier in this run" in m
                                      for m in messages), messages
    assert result.ret == 1


# ---- 2. one library under two paths is one module ----------------------------------------------

TOKEN_CUSTODIAN = r"""
import sys
from pathlib import Path
from keyparity.attest.custodians import token_custodian
print(token_custodian(Path(sys.argv[1]), Path(sys.argv[2]), "custodian-2"))
"""


def test_a_signer_on_the_real_path_of_the_clusters_module_signs(lab, suites):
    """The clusters load /usr/lib/softhsm/libsofthsm2.so, the signer the file it links to:
    one module, shared (it used to end UNSIGNED: 'already initialized')."""
    assert REAL_MODULE != lab.module  # the lab's module path is the symlink
    public = subprocess.run([sys.executable, "-c", TOKEN_CUSTODIAN, str(lab.root),
                             str(lab.root / "evidence")], env=lab.env, capture_output=True,
                            text=True, check=True).stdout.strip()
    (lab.root / "custodian.pin").chmod(0o600)
    lab.seed([AES])
    profile = lab.profile([AES], evidence={"signers": [{
        "name": "custodian-2", "type": "pkcs11", "module": REAL_MODULE,
        "token_label": "custodian", "pin": f"file:{lab.root / 'custodian.pin'}",
        "key_label": "custodian-2"}]})
    result = run_suites(suites, profile)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["keyparity: bundle signed by custodian-2 (threshold 1): *"])
    run_dir = (suites.path / "reports" / "latest").resolve()
    out = keyparity(lab, "verify", str(run_dir), "--key", public)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- 3. source = target ----------------------------------------------------------------------

def test_source_and_target_the_same_token_is_refused_before_anything_runs(lab, suites):
    lab.seed([AES])
    for change in (lambda d: d["clusters"]["target"].update(token_label="hsm1"),
                   lambda d: d["clusters"]["target"].update(token_label="hsm1",
                                                            module=REAL_MODULE)):
        profile = edit_profile(lab.profile([AES]), change)
        result = run_suites(suites, profile)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
        assert lines == [f"ERROR: {profile}: clusters.source and clusters.target name the same "
                         f"token (label hsm1 of {lab.module}): a migration needs two tokens; "
                         "correct the profile"], lines
        assert not (suites.path / "reports").exists()


# ---- 4. every command: one sentence, exit 0/1/2 ----------------------------------------------

@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 50])
def test_journal_verify_of_a_file_that_is_not_a_journal_is_one_line(lab, content):
    bad = lab.root / "journal.sqlite"
    bad.write_bytes(content)
    out = keyparity(lab, "journal", "verify", "--journal", str(bad))
    assert out.returncode == 1
    line = one_line(out)
    assert line.startswith(f"keyparity journal verify: error: {bad} is not a keyparity journal (")
    assert line.endswith("give --hsm-journal (or --journal) the journal's path, or a new one")


def test_cleanup_of_an_unknown_run_is_an_error(lab, suites):
    lab.seed([AES])
    run_suites(suites, lab.profile([AES]))
    out = keyparity(lab, "cleanup", str(lab.profile([AES])), "--run", "20200101T000000Z-abcdef",
                    "--journal", str(suites.path / ".keyparity" / "journal.sqlite"))
    assert out.returncode == 1
    assert "has no entries of run 20200101T000000Z-abcdef: check the run id" in one_line(out)


def test_a_target_key_that_may_not_decrypt_fails_its_vectors_plainly(lab, suites):
    lab.seed([AES])
    keys = [{**AES, "attributes": {"decrypt": False}, "vectors": ["aes-ecb"]}]
    run_suites(suites, lab.profile(keys))
    doc = evidence(suites)
    node = ("suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_other"
            "[k-aes128]")
    (message,) = [t["message"] for t in doc["tests"] if t["nodeid"] == node]
    assert message == ("NotPermitted: the key on hsm2 may not decrypt (CKA_DECRYPT is false "
                       "there): this vector cannot be exchanged; the attribute table shows "
                       "whether the source allows it")


def test_a_generic_secret_of_another_size_on_the_target_says_so(lab, suites):
    lab.seed([HMAC])
    lab.tokens({"op": "create", "token": "hsm2", "key": {**HMAC, "size": 128}})
    run_suites(suites, lab.profile([HMAC], migration={"mode": "verify-only"}))
    detail = evidence(suites)["keys"]["k-hmac"]["migration"]["detail"]
    assert detail == ("'k-hmac' on hsm2 is generic secret of 128 bits; 'k-hmac' on hsm1 is "
                      "generic secret of 256 bits: other key material; nothing was written")


def test_a_duplicate_source_label_is_one_line_in_every_test_of_that_key(lab, suites):
    lab.seed([AES, HMAC])
    lab.tokens({"op": "create", "token": "hsm1", "key": AES})  # a second 'k-aes128'
    result = run_suites(suites, lab.profile([AES, HMAC]))
    doc = evidence(suites)
    bad = [t for t in doc["tests"] if t["key"] == "k-aes128" and t["outcome"] != "passed"]
    assert bad and all("2 secret_key objects labelled 'k-aes128' on hsm1" in t["message"]
                       for t in bad)
    assert "Traceback" not in result.stdout.str()
    assert "keyparity/migrate.py" not in result.stdout.str()
    assert all(t["outcome"] in ("passed", "skipped") for t in doc["tests"] if t["key"] == "k-hmac")


# ---- 5. options ------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", ["0", "-5"])
def test_a_batch_below_one_is_a_usage_error_and_no_bundle_is_written(lab, suites, batch):
    lab.seed([AES])
    result = run_suites(suites, lab.profile([AES]), f"--hsm-batch={batch}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--hsm-batch must be at least 1, not {batch}" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
    assert not (suites.path / "reports").exists()


def test_a_path_option_written_with_a_space_is_refused_and_with_equals_works(lab, suites):
    lab.seed([AES])
    journal = lab.root / "elsewhere" / "journal.sqlite"
    journal.parent.mkdir()
    journal.touch()
    profile = lab.profile([AES])
    result = suites.runpytest_subprocess("suites", f"--hsm-profile={profile}",
                                         f"--hsm-reports-dir={suites.path / 'reports'}",
                                         "--hsm-journal", str(journal))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"ERROR: write --hsm-journal={journal} (with '='): given as '--hsm-journal {journal}', "
        "pytest reads the value as a test path before keyparity's options are known, which "
        "moves the rootdir (here "), lines
    journal.unlink()
    result = run_suites(suites, profile, f"--hsm-journal={journal}")
    assert result.ret == 0, result.stdout.str()
    assert journal.is_file()


# ---- 6. the journal ---------------------------------------------------------------------------

def test_a_run_refuses_to_write_on_a_broken_journal_chain_and_says_how_to_recover(lab, suites):
    lab.seed([AES, HMAC])
    assert run_suites(suites, lab.profile([AES])).ret == 0
    journal = suites.path / ".keyparity" / "journal.sqlite"
    db = sqlite3.connect(journal)
    db.execute("UPDATE entries SET check_value = 'forged' WHERE seq = 2")
    db.commit()
    db.close()
    before = target_count(lab)
    reports = sorted((suites.path / "reports").iterdir())

    result = run_suites(suites, lab.profile([AES, HMAC]))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert f"the write journal {journal} is broken (seq 2: hash does not match the entry (entry " \
           "edited)): keyparity writes nothing on a broken chain" in text
    assert f"move it aside (mv {journal} {journal}.broken) and run again" in text
    assert target_count(lab) == before
    assert sorted((suites.path / "reports").iterdir()) == reports  # no new run directory
    # a verify-only run writes nothing, and proceeds
    assert run_suites(suites, lab.profile([AES], migration={"mode": "verify-only"})).ret == 0


# ---- 7. reports/latest and the run id ---------------------------------------------------------

def test_a_latest_that_is_a_directory_fails_the_run_loudly(lab, suites):
    lab.seed([AES])
    (suites.path / "reports" / "latest").mkdir(parents=True)
    result = run_suites(suites, lab.profile([AES]))
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"keyparity: ERROR: reports/latest: {suites.path}/reports/latest "
                                 "is not a link but a directory, so it does not point at this "
                                 "run: remove or rename it (keyparity never deletes it); this run "
                                 "is *"])
    assert (suites.path / "reports" / "latest").is_dir()


def test_the_run_id_can_be_chosen_and_a_run_directory_is_written_once(lab, suites):
    lab.seed([AES])
    run_id = "20270101T000000Z-0a0b0c"
    assert run_suites(suites, lab.profile([AES]), f"--hsm-run-id={run_id}").ret == 0
    assert json.loads((suites.path / "reports" / run_id / "evidence.json").read_text())[
        "run"]["run_id"] == run_id
    again = run_suites(suites, lab.profile([AES]), f"--hsm-run-id={run_id}")
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--hsm-run-id {run_id}: {suites.path / 'reports' / run_id} exists already" in \
        again.stderr.str()
    bad = run_suites(suites, lab.profile([AES]), "--hsm-run-id=latest")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


# ---- 8. PIN files others may read -------------------------------------------------------------

def test_a_pin_file_others_may_read_is_refused_in_production_and_warned_of_in_test(lab, suites):
    lab.seed([AES])
    (lab.root / "hsm1.pin").chmod(0o644)
    result = run_suites(suites, lab.profile([AES]))
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"keyparity: WARNING: clusters.source.pin: {lab.root}/hsm1.pin "
                                 "is readable by others (mode 0644): chmod 600 it (a production "
                                 "profile refuses it)"])
    files = evidence(suites)["run"]["secret_files"]
    assert {f["field"]: (f["mode"], f["ok"]) for f in files} == {
        "clusters.source.pin": ("0644", False), "clusters.target.pin": ("0600", True)}

    production = edit_profile(lab.profile([AES]), lambda d: d.update(environment="production"))
    result = run_suites(suites, production)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (f"clusters.source.pin: secret file {lab.root}/hsm1.pin is readable by others "
            f"(mode 0644): a production profile refuses it; chmod 600 {lab.root}/hsm1.pin"
            ) in result.stderr.str()


# ---- 9. junit.xml --------------------------------------------------------------------------

def test_the_bundle_keeps_its_junit_xml_when_the_user_asks_for_one_too(lab, suites):
    lab.seed([AES])
    private = file_custodian(lab.root, "auditor").with_name("auditor.key.pem")
    mine = suites.path / "ci" / "junit.xml"
    profile = lab.profile([AES], evidence={"signers": [{"name": "auditor", "type": "file",
                                                        "path": str(private)}]})
    result = run_suites(suites, profile, f"--junitxml={mine}")
    assert result.ret == 0, result.stdout.str()
    run_dir = (suites.path / "reports" / "latest").resolve()
    assert mine.read_text().count("<testcase") == (run_dir / "junit.xml").read_text().count(
        "<testcase") > 0
    subjects = json.loads((run_dir / "statement.json").read_text())["subject"]
    assert "junit.xml" in {s["name"] for s in subjects}
