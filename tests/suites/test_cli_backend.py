"""``migration.backend: cloudhsm-cli`` (keyparity.cloudhsm.backend) against tests/helpers/fake_cloudhsm_cli.

The fake cannot unwrap real keys, so the proof stops at the command level: the exact sequence
and arguments of the guide's commands, credentials never in argv, the PEM and blob files in a
private directory and removed, the wrapping objects deleted, failures cleaned up. End to end
through the Migrator, the commands run and the PKCS #11 verification that follows finds no key
on the target (the fake unwrapped nothing): the key fails with that reason.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HELPERS, REPO, evidence, run_suites
from keyparity.cloudhsm import backend as cli_backend
from keyparity.cloudhsm.cli_runner import CliCommandFailed, CloudHsmCli
from keyparity.journal.chain import verify
from keyparity.journal.recorder import NullJournal
from keyparity.journal.store import Journal
from keyparity.errors import MechanismUnsupported
from keyparity.profile import CloudHsmCliSpec, KeySpec, Wrapping
from keyparity.secrets import SecretRef

FAKE = HELPERS / "fake_cloudhsm_cli"
PASSWORD = "Wr4pping-pass"  # noqa: S105 - a test password
OK = {"error_code": 0, "data": {"message": "ok"}}
# as the CLI answers: the created keys with their key-reference
PAIR = {"error_code": 0, "data": {"public_key": {"key-reference": "0x0000000000160010"},
                                  "private_key": {"key-reference": "0x0000000000160011"}}}
IMPORTED = {"error_code": 0, "data": {"key": {"key-reference": "0x00000000001e08e3"},
                                      "message": "Successfully imported key"}}
UNWRAPPED = {"error_code": 0, "data": {"key": {"key-reference": "0x00000000001808e9"}}}
# the source key as `key list --verbose` shows it before its wrap: owned by cu1, no quorum
SOURCE_KEY = {"error_code": 0, "data": {"matched_keys": [{
    "key-reference": "0x00000000001c0686",
    "key-info": {"key-owners": [{"username": "cu1", "key-coverage": "full"}],
                 "shared-users": [], "cluster-coverage": "full",
                 "key-quorum-values": {"manage-key-quorum-value": 0,
                                       "use-key-quorum-value": 0}},
    "attributes": {"label": "k-des3"}}], "total_key_count": 1}}
ALL_OK = {"key list *": SOURCE_KEY, "key generate-asymmetric-pair rsa *": PAIR, "key generate-file *": OK,
          "key import pem *": IMPORTED, "key wrap rsa-aes *": OK,
          "key unwrap rsa-aes *": UNWRAPPED, "key delete *": OK}
WRAPPING = Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256)
LABEL = "keyparity-wrap-RUN"
SOURCE_ATTRS = {"private": True, "modifiable": True, "copyable": True, "destroyable": True,
                "id": "0a0b", "derive": False, "sensitive": True, "extractable": True,
                "wrap_with_trusted": False, "encrypt": True, "decrypt": True, "sign": False,
                "verify": False, "wrap": False, "unwrap": False, "label": "k-des3"}


def spec(**kw: Any) -> KeySpec:
    base = dict(index=0, label="k-des3", target_label="k-des3-new", type="des3", size=None,
                curve=None, attributes={}, vectors=(), disposition="migrate",
                expected_differences={})
    return KeySpec(**{**base, **kw})


class Fake:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.log, self.case = tmp, tmp / "cli.log", tmp / "case.json"
        for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_CASE": self.case,
                            "FAKE_CLOUDHSM_LOG": self.log,
                            "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                            "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-src,cluster-tgt"}.items():
            monkeypatch.setenv(name, str(value))
        self.answer(ALL_OK)

    def answer(self, table: dict[str, Any]) -> None:
        self.case.write_text(json.dumps(table))

    def cli(self, cluster_id: str, where: str) -> CloudHsmCli:
        return CloudHsmCli(CloudHsmCliSpec(user="cu1", path=FAKE, password=SecretRef(
            "env", "KP_TEST_CU_PASSWORD", "f")), cluster_id, where, 10)

    def channel(self, journal: Any = None, label: str = LABEL) -> cli_backend.CliChannel:
        return cli_backend.CliChannel(self.cli("cluster-src", "source (hsm1)"),
                                      self.cli("cluster-tgt", "target (hsm2m)"), WRAPPING, label,
                                      journal or NullJournal().bind("RUN"))

    def reap(self, rec: Any, **kw: Any) -> tuple[list[str], list[str]]:
        return cli_backend.reap_wrapping(rec, self.cli("cluster-src", "source (hsm1)"),
                                         self.cli("cluster-tgt", "target (hsm2m)"), **kw)

    def deletes(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls() if c["argv"][:2] == ["key", "delete"]]

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():  # no call yet
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


@pytest.fixture
def found(monkeypatch) -> list[tuple[Any, KeySpec]]:
    """find_unwrapped, stubbed: the fake unwraps nothing PKCS #11 could find."""
    seen: list[tuple[Any, KeySpec]] = []
    monkeypatch.setattr(cli_backend, "find_unwrapped",
                        lambda cluster, s: seen.append((cluster, s)) or "side")
    return seen


def test_the_guides_command_sequence_with_its_exact_arguments(fake, found):
    channel = fake.channel()
    tmp = channel.dir
    assert channel.move(spec(attributes={"decrypt": False}), SOURCE_ATTRS, "tgt") == "side"
    assert found[0][0] == "tgt"
    assert channel.close() == []
    calls = fake.calls()
    pem = calls[1]["argv"][calls[1]["argv"].index("--path") + 1]
    blob = calls[4]["argv"][calls[4]["argv"].index("--path") + 1]
    assert Path(pem).parent == Path(blob).parent == tmp
    src, tgt = ["--cluster-id", "cluster-src"], ["--cluster-id", "cluster-tgt"]
    assert [c["argv"] for c in calls] == [
        ["key", "generate-asymmetric-pair", "rsa", "--public-exponent", "65537",
         "--modulus-size-bits", "2048", "--public-label", f"{LABEL}-public", "--private-label",
         f"{LABEL}-private", "--public-attributes", "wrap=true", "--private-attributes",
         "unwrap=true", *tgt],
        ["key", "generate-file", "--encoding", "pem", "--path", pem, "--filter",
         f"attr.label={LABEL}-public", "attr.class=public-key", *tgt],
        ["key", "import", "pem", "--path", pem, "--label", f"{LABEL}-imported",
         "--key-type-class", "rsa-public", "--attributes", "wrap=true", *src],
        # the source key's owner and quorum values, read before it is wrapped
        ["key", "list", "--filter", "attr.label=k-des3", "attr.class=secret-key", "--verbose",
         *src],
        ["key", "wrap", "rsa-aes", "--payload-filter", "attr.label=k-des3",
         "attr.class=secret-key", "--wrapping-filter", f"attr.label={LABEL}-imported",
         "attr.class=public-key", "--hash-function", "sha256", "--mgf", "mgf1-sha256",
         "--path", blob, *src],
        ["key", "unwrap", "rsa-aes", "--filter", f"attr.label={LABEL}-private",
         "attr.class=private-key", "--key-type-class", "des3", "--label", "k-des3-new",
         "--hash-function", "sha256", "--mgf", "mgf1-sha256", "--data-path", blob,
         "--attributes", "modifiable=true", "destroyable=true", "id=0x0a0b", "derive=false", "sensitive=true",
         "extractable=true", "wrap-with-trusted=false", "encrypt=true", "decrypt=false",
         "sign=false", "verify=false", "wrap=false", "unwrap=false", *tgt],
        ["key", "delete", "--filter", f"attr.label={LABEL}-imported", "attr.class=public-key",
         *src],
        ["key", "delete", "--filter", f"attr.label={LABEL}-private", "attr.class=private-key",
         *tgt],
        ["key", "delete", "--filter", f"attr.label={LABEL}-public", "attr.class=public-key",
         *tgt],
    ]
    assert calls[5]["data_path_existed"] is True  # the blob was there for the unwrap ...
    assert calls[5]["data_path_dir_mode"] == "0o700"  # ... in a private directory
    assert not Path(blob).exists() and not Path(pem).exists() and not tmp.exists()
    assert PASSWORD not in fake.log.read_text()
    assert all(c["role"] == "crypto-user" for c in calls)


def test_rsa_and_ec_unwrap_as_private_key_classes_and_des2_is_refused(fake, found):
    channel = fake.channel()
    channel.move(spec(label="k-rsa", target_label="k-rsa", type="rsa", size=2048), {}, None)
    channel.move(spec(label="k-ec", target_label="k-ec", type="ec", curve="secp384r1"), {}, None)
    wraps = [c["argv"] for c in fake.calls() if c["argv"][:2] == ["key", "wrap"]]
    unwraps = [c["argv"] for c in fake.calls() if c["argv"][:2] == ["key", "unwrap"]]
    assert [w[5] for w in wraps] == ["attr.class=private-key"] * 2
    assert [u[u.index("--key-type-class") + 1] for u in unwraps] == ["rsa-private", "ec-private"]
    assert all("--attributes" not in u for u in unwraps)  # nothing to pass: none given
    n = len(fake.calls())
    with pytest.raises(MechanismUnsupported, match="no key type for des2"):
        channel.move(spec(type="des2"), SOURCE_ATTRS, None)
    assert len(fake.calls()) == n
    channel.close()


def test_a_failed_unwrap_still_removes_the_blob_and_close_deletes_the_wrapping_objects(
        fake, found):
    channel = fake.channel()
    fake.answer({**ALL_OK, "key unwrap rsa-aes *": {"error_code": 1,
                                                    "data": "Unwrap failed: invalid key type"}})
    with pytest.raises(CliCommandFailed, match="Unwrap failed: invalid key type"):
        channel.move(spec(), SOURCE_ATTRS, None)
    blob = fake.calls()[4]["argv"][fake.calls()[4]["argv"].index("--path") + 1]
    assert not Path(blob).exists() and found == []
    assert channel.close() == []
    assert sum(c["argv"][:2] == ["key", "delete"] for c in fake.calls()) == 3


def test_a_failed_import_deletes_the_generated_pair_and_the_directory(fake, tmp_path):
    fake.answer({**ALL_OK, "key import pem *": {"error_code": 1, "data": "Invalid PEM file"}})
    before = set(Path(tmp_path.parent).glob("keyparity-cli-*"))
    with pytest.raises(CliCommandFailed, match="Invalid PEM file"):
        fake.channel()
    deletes = [c["argv"][3] for c in fake.calls() if c["argv"][:2] == ["key", "delete"]]
    assert deletes == [f"attr.label={LABEL}-private", f"attr.label={LABEL}-public"]
    pem = fake.calls()[1]["argv"][fake.calls()[1]["argv"].index("--path") + 1]
    assert not Path(pem).parent.exists()
    assert set(Path(tmp_path.parent).glob("keyparity-cli-*")) == before


def test_close_reports_wrapping_objects_it_could_not_delete(fake, found):
    channel = fake.channel()
    fake.answer({**ALL_OK, "key delete *": {"error_code": 1, "data": "Key is in use"}})
    left = channel.close()
    assert left == [f"source (hsm1): {LABEL}-imported (CliCommandFailed)",
                    f"target (hsm2m): {LABEL}-private (CliCommandFailed)",
                    f"target (hsm2m): {LABEL}-public (CliCommandFailed)"]


def cli_lab_profile(lab: Any, keys: list[dict[str, Any]] | None = None) -> Path:
    """Keys (default: one AES key) seeded on the lab's hsm1, and a profile migrating them with
    the CloudHSM CLI backend (the stand-in CLI on both clusters, password by env:)."""
    keys = keys or [{"label": "k-aes128", "type": "aes", "size": 128}]
    lab.seed(keys)
    path = lab.profile(keys, migration={"backend": "cloudhsm-cli"})
    doc = yaml.safe_load(path.read_text())
    for role, cid in (("source", "cluster-src"), ("target", "cluster-tgt")):
        doc["clusters"][role]["cloudhsm_cli"] = {"path": str(FAKE), "user": "cu1",
                                                 "password": "env:KP_TEST_CU_PASSWORD"}
        doc["clusters"][role]["aws"] = {"cluster_id": cid, "region": "us-east-1"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_migrator_uses_the_cli_backend_when_the_profile_says_so(lab, suites, monkeypatch,
                                                                    tmp_path):
    """End to end to the command level: a migrate run with backend cloudhsm-cli runs the
    guide's commands against the fake; PKCS #11 then finds no key on the target (the fake
    unwrapped nothing), so the key fails with that reason, and the wrapping objects are
    deleted. The PKCS #11 backend stays the default (every other suite test)."""
    fake = Fake(tmp_path, monkeypatch)
    path = cli_lab_profile(lab)
    result = run_suites(suites, path, "suites/test_migration.py")
    assert result.ret == 1
    record = evidence(suites)["keys"]["k-aes128"]["migration"]
    assert record["status"] == "failed"
    assert "'k-aes128' was unwrapped by the CloudHSM CLI but is not visible through PKCS #11" \
        in record["detail"]
    verbs = [" ".join(c["argv"][:3]) for c in fake.calls()]
    assert verbs == ["key generate-asymmetric-pair rsa", "key generate-file --encoding",
                     "key import pem", "key list --filter", "key wrap rsa-aes",
                     "key unwrap rsa-aes", "key delete --filter", "key delete --filter",
                     "key delete --filter"]
    unwrap = fake.calls()[5]["argv"]
    assert unwrap[unwrap.index("--hash-function") + 1] == "sha1"  # the lab profile's OAEP hash
    assert PASSWORD not in "".join(p.read_text(errors="replace") for p in
                                   (suites.path / "reports").rglob("*") if p.is_file())


# ---- journal: every CLI write recorded; wrapping objects of a killed run deleted -----------

# A run of the CLI channel in a child process that kills ITSELF with SIGKILL at a journal entry
# (the hook design of tests/helpers/journal_child.py: the hook is passed to the Journal; no product
# switch). A raise from the hook would not do: the channel's own error path deletes the
# wrapping objects, which a killed process never gets to do.
CHILD = r"""
import os, signal, sys
from pathlib import Path
from keyparity.cloudhsm.backend import CliChannel
from keyparity.cloudhsm.cli_runner import CloudHsmCli
from keyparity.journal.store import Journal
from keyparity.profile import CloudHsmCliSpec, Wrapping
from keyparity.secrets import SecretRef
fake, path, run_id, kill = sys.argv[1:5]
def hook(entry):
    if f"{entry['action']}:{entry['phase']}" == kill:
        os.kill(os.getpid(), signal.SIGKILL)
def cli(cid, where):
    return CloudHsmCli(CloudHsmCliSpec(user="cu1", path=Path(fake), password=SecretRef(
        "env", "KP_TEST_CU_PASSWORD", "f")), cid, where, 10)
rec = Journal(Path(path), hook=hook).bind(run_id)
channel = CliChannel(cli("cluster-src", "source (hsm1)"), cli("cluster-tgt", "target (hsm2m)"),
                     Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256),
                     f"keyparity-wrap-{run_id}", rec)
channel.close()
"""


def killed_run(journal: Path, run_id: str, kill: str = "cli-import-public:after",
               env: dict[str, str] | None = None) -> None:
    p = subprocess.run([sys.executable, "-c", CHILD, str(FAKE), str(journal), run_id, kill],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr


def rows(journal: Path, run_id: str | None = None) -> list[tuple[Any, ...]]:
    j = Journal(journal)
    try:
        return [(e["action"], e["phase"], e["cluster"], e["label"], e["handle"])
                for e in j.entries(run_id)]
    finally:
        j.close()


def test_each_cli_write_is_journaled_before_and_after(fake, found, tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    channel = fake.channel(journal=journal.bind("RUN"))
    channel.move(spec(), SOURCE_ATTRS, "tgt")
    assert channel.close() == []
    pair = "0x0000000000160010,0x0000000000160011"
    got = [(e["action"], e["phase"], e["cluster"], e["label"], e["handle"], e["key_label"])
           for e in journal.entries("RUN")]
    assert got == [
        ("cli-generate-wrapping-pair", "before", "cluster-tgt", LABEL, None, None),
        ("cli-generate-wrapping-pair", "after", "cluster-tgt", LABEL, pair, None),
        ("cli-import-public", "before", "cluster-src", f"{LABEL}-imported", None, None),
        ("cli-import-public", "after", "cluster-src", f"{LABEL}-imported", "0x00000000001e08e3",
         None),
        ("cli-unwrap", "before", "cluster-tgt", "k-des3-new", None, "k-des3"),
        ("cli-unwrap", "after", "cluster-tgt", "k-des3-new", "0x00000000001808e9", "k-des3"),
        ("cli-delete", "before", "cluster-src", f"{LABEL}-imported", "0x00000000001e08e3", None),
        ("cli-delete", "after", "cluster-src", f"{LABEL}-imported", "0x00000000001e08e3", None),
        ("cli-delete", "before", "cluster-tgt", f"{LABEL}-private", "0x0000000000160011", None),
        ("cli-delete", "after", "cluster-tgt", f"{LABEL}-private", "0x0000000000160011", None),
        ("cli-delete", "before", "cluster-tgt", f"{LABEL}-public", "0x0000000000160010", None),
        ("cli-delete", "after", "cluster-tgt", f"{LABEL}-public", "0x0000000000160010", None)]
    assert f"pid {os.getpid()} on " in journal.entries("RUN")[0]["detail"]
    # nothing left: the next run's start deletes nothing
    n = len(fake.calls())
    assert fake.reap(journal.bind("NEXT")) == ([], [])
    assert len(fake.calls()) == n
    journal.close()


def test_a_failed_delete_is_journaled_failed_and_reaped_by_the_next_run(fake, found, tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    channel = fake.channel(journal=journal.bind("RUN"))
    fake.answer({**ALL_OK, "key delete *": {"error_code": 1, "data": "Key is in use"}})
    assert len(channel.close()) == 3
    assert [e["phase"] for e in journal.entries("RUN") if e["action"] == "cli-delete"] == \
        ["before", "failed"] * 3
    fake.answer(ALL_OK)
    lines, left = fake.reap(journal.bind("NEXT"))
    # the failed run is this (live) process: left alone at a run's start ...
    assert left == [] and lines == ["left alone: 3 wrapping object(s) of run RUN: its process "
                                    "is still running on this host"]
    # ... and `keyparity cleanup --run RUN` refuses it too while the process lives
    assert fake.reap(journal.bind("RUN"), run_id="RUN")[0] == lines
    assert len(fake.deletes()) == 3  # only close's three attempts
    journal.close()


def test_a_killed_run_leaves_journal_entries_and_the_next_run_deletes_exactly_its_objects(
        fake, tmp_path):
    path = tmp_path / "j.sqlite"
    killed_run(path, "run-1")
    label = "keyparity-wrap-run-1"
    assert rows(path) == [
        ("cli-generate-wrapping-pair", "before", "cluster-tgt", label, None),
        ("cli-generate-wrapping-pair", "after", "cluster-tgt", label,
         "0x0000000000160010,0x0000000000160011"),
        ("cli-import-public", "before", "cluster-src", f"{label}-imported", None),
        ("cli-import-public", "after", "cluster-src", f"{label}-imported", "0x00000000001e08e3")]
    assert fake.deletes() == []  # killed: nothing deleted

    journal = Journal(path)
    lines, left = fake.reap(journal.bind("run-2"), protect={"k-des3", "k-des3-new"})
    assert left == []
    assert fake.deletes() == [
        ["key", "delete", "--filter", f"attr.label={label}-imported", "attr.class=public-key",
         "--cluster-id", "cluster-src"],
        ["key", "delete", "--filter", f"attr.label={label}-private", "attr.class=private-key",
         "--cluster-id", "cluster-tgt"],
        ["key", "delete", "--filter", f"attr.label={label}-public", "attr.class=public-key",
         "--cluster-id", "cluster-tgt"]]
    assert [line.split(",")[0] for line in lines] == [
        f"removed: '{label}-imported' (public-key) on cluster cluster-src",
        f"removed: '{label}-private' (private-key) on cluster cluster-tgt",
        f"removed: '{label}-public' (public-key) on cluster cluster-tgt"]
    assert rows(path, "run-2") == [
        ("cli-delete", phase, cluster, f"{label}-{part}", ref)
        for cluster, part, ref in (("cluster-src", "imported", "0x00000000001e08e3"),
                                   ("cluster-tgt", "private", "0x0000000000160011"),
                                   ("cluster-tgt", "public", "0x0000000000160010"))
        for phase in ("before", "after")]
    # once deleted, never again: a third run, and cleanup of run-1, delete nothing
    assert fake.reap(journal.bind("run-3")) == ([], [])
    assert fake.reap(journal.bind("run-1"), run_id="run-1") == ([], [])
    assert len(fake.deletes()) == 3
    assert verify(path) == []
    journal.close()


@pytest.mark.parametrize("kill", ["cli-generate-wrapping-pair:before",
                                  "cli-generate-wrapping-pair:after",
                                  "cli-import-public:before", "cli-delete:after"])
def test_whatever_the_kill_point_only_that_runs_undeleted_wrapping_objects_are_deleted(
        fake, tmp_path, kill):
    path = tmp_path / "j.sqlite"
    killed_run(path, "run-1", kill)
    label = "keyparity-wrap-run-1"
    deleted_before = [a[3] for a in fake.deletes()]
    journal = Journal(path)
    fake.answer({**ALL_OK, "key delete *": {"error_code": 1, "data": "No keys found matching "
                                                                   "the filter"}}
                if kill == "cli-generate-wrapping-pair:before" else ALL_OK)
    lines, left = fake.reap(journal.bind("run-2"))
    assert left == []
    reaped = [a[3] for a in fake.deletes()][len(deleted_before):]
    expected = {"cli-generate-wrapping-pair:before": ["private", "public"],  # may exist: tried
                "cli-generate-wrapping-pair:after": ["private", "public"],
                "cli-import-public:before": ["imported", "private", "public"],
                "cli-delete:after": ["private", "public"]}[kill]  # imported already deleted
    assert reaped == [f"attr.label={label}-{part}" for part in expected]
    if kill == "cli-generate-wrapping-pair:before":  # not created after all: already gone
        assert all(line.startswith("already gone: ") for line in lines)
        assert {e["phase"] for e in journal.entries("run-2")} == {"before", "after"}
    assert fake.reap(journal.bind("run-3")) == ([], [])
    journal.close()


def test_never_deletes_a_live_run_a_foreign_label_or_an_unknown_cluster(fake, tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    dead = f"cloudhsm-cli; pid 999999999 on {__import__('socket').gethostname()}"
    live = f"cloudhsm-cli; pid {os.getpid()} on {__import__('socket').gethostname()}"
    elsewhere = "cloudhsm-cli; pid 1 on some-other-host"
    for run, label, cluster, detail in (
            ("live", "keyparity-wrap-live-imported", "cluster-src", live),
            ("forged", "k-des3", "cluster-src", dead),  # an inventory (source) key's label
            ("forged2", "keyparity-wrap-other-imported", "cluster-src", dead),  # not its run's
            ("gone-cluster", "keyparity-wrap-gone-cluster-imported", "cluster-old", dead),
            ("remote", "keyparity-wrap-remote-imported", "cluster-src", elsewhere)):
        rec = journal.bind(run)
        rec.record("before", "cli-import-public", cluster=cluster, label=label, detail=detail)
        rec.record("after", "cli-import-public", cluster=cluster, label=label, detail=detail)
    lines, left = fake.reap(journal.bind("run-2"), protect={"k-des3", "k-des3-new"})
    assert fake.deletes() == []
    assert lines == [
        "left alone: 1 wrapping object(s) of run live: its process is still running on this host",
        "refused: 'k-des3' (public-key) on cluster cluster-src: not run forged's keyparity "
        "wrapping label (journal seq 3); nothing deleted",
        "refused: 'keyparity-wrap-other-imported' (public-key) on cluster cluster-src: not run "
        "forged2's keyparity wrapping label (journal seq 5); nothing deleted",
        "not removed: 'keyparity-wrap-gone-cluster-imported' (public-key) on cluster cluster-old: "
        "that cluster id is neither the source nor the target of this profile (journal seq 7)",
        "left alone: 1 wrapping object(s) of run remote: it ran on another host (or its journal "
        "entries do not say where), so it may still be running; remove them with `keyparity "
        "cleanup --run remote`"]
    assert len(left) == 3
    # the operator names the other host's run: then it is deleted
    lines, left = fake.reap(journal.bind("remote"), run_id="remote")
    assert left == [] and fake.deletes() == [
        ["key", "delete", "--filter", "attr.label=keyparity-wrap-remote-imported",
         "attr.class=public-key", "--cluster-id", "cluster-src"]]
    journal.close()


def test_a_zombie_or_a_reused_pid_is_not_a_live_owner(fake, tmp_path):
    """A killed run's process that is a zombie (not reaped yet), or whose pid another program
    has now (the start time differs), made wrapping objects nobody owns any more: reaped."""
    from keyparity import process
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        zombie = process.Proc(child.pid, socket.gethostname(),
                              int(Path(f"/proc/{child.pid}/stat").read_text()
                                  .rsplit(")", 1)[1].split()[19]), process.me().boot)
        child.kill()
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            os.sched_yield()
        me = process.me()
        reused = process.Proc(me.pid, me.host, me.start + 1, me.boot)
        for run, proc in (("zombie", zombie), ("reused", reused)):
            detail = f"cloudhsm-cli; pid {proc.pid} on {proc.host}, started {proc.start} in " \
                     f"boot {proc.boot}"
            rec = journal.bind(run)
            for phase in ("before", "after"):
                rec.record(phase, "cli-import-public", cluster="cluster-src",
                           label=f"keyparity-wrap-{run}-imported", detail=detail)
        lines, left = fake.reap(journal.bind("run-2"))
    finally:
        child.wait()
    assert left == [], lines
    assert sorted(d[3] for d in fake.deletes()) == ["attr.label=keyparity-wrap-reused-imported",
                                                    "attr.label=keyparity-wrap-zombie-imported"]
    journal.close()


def test_keyparity_cleanup_deletes_a_killed_runs_cli_wrapping_objects(lab, monkeypatch,
                                                                       tmp_path):
    fake = Fake(tmp_path, monkeypatch)
    env = {**lab.env, **{k: v for k, v in os.environ.items()
                         if k.startswith(("FAKE_CLOUDHSM_", "KP_TEST_"))}}
    path = cli_lab_profile(lab)
    journal = tmp_path / "j.sqlite"
    killed_run(journal, "run-1", env=env)
    src_before = lab.tokens({"op": "count", "token": "hsm1"})[0]
    reports = tmp_path / "reports"
    lab.anchor(path, journal, reports)  # a killed run has no bundle: its head signed

    def cleanup(run: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "keyparity.cli", "cleanup", str(path),
                               "--run", run, "--journal", str(journal), "--reports-dir",
                               str(reports)], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    result = cleanup("run-1")
    assert result.returncode == 0, result.stdout + result.stderr
    label = "keyparity-wrap-run-1"
    assert fake.deletes() == [
        ["key", "delete", "--filter", f"attr.label={label}-imported", "attr.class=public-key",
         "--cluster-id", "cluster-src"],
        ["key", "delete", "--filter", f"attr.label={label}-private", "attr.class=private-key",
         "--cluster-id", "cluster-tgt"],
        ["key", "delete", "--filter", f"attr.label={label}-public", "attr.class=public-key",
         "--cluster-id", "cluster-tgt"]]
    assert f"removed: '{label}-imported' (public-key) on cluster cluster-src" in result.stdout
    assert [r for r in rows(journal, "run-1") if r[0] == "cli-delete"] == [
        ("cli-delete", phase, cluster, f"{label}-{part}", ref)
        for cluster, part, ref in (("cluster-src", "imported", "0x00000000001e08e3"),
                                   ("cluster-tgt", "private", "0x0000000000160011"),
                                   ("cluster-tgt", "public", "0x0000000000160010"))
        for phase in ("before", "after")]
    assert lab.tokens({"op": "count", "token": "hsm1"})[0] == src_before  # no source key
    again = cleanup("run-1")
    assert again.returncode == 0 and len(fake.deletes()) == 3, again.stdout + again.stderr
    assert verify(journal) == []


def test_the_next_suite_run_deletes_the_wrapping_objects_of_a_killed_cli_run(
        lab, suites, monkeypatch, tmp_path):
    """At the start of a migrate run (Migrator), the CLI wrapping objects a killed earlier run
    left on both clusters are deleted before anything else, and journaled."""
    fake = Fake(tmp_path, monkeypatch)
    path = cli_lab_profile(lab)
    journal = suites.path / ".keyparity" / "journal.sqlite"
    killed_run(journal, "run-killed")
    run_suites(suites, path, "suites/test_migration.py")
    verbs = [" ".join(c["argv"][:4]) for c in fake.calls()]
    label = "keyparity-wrap-run-killed"
    assert verbs[:2] == ["key generate-asymmetric-pair rsa --public-exponent",
                         "key generate-file --encoding pem"]  # the killed run
    assert verbs[3:6] == [f"key delete --filter attr.label={label}-imported",
                          f"key delete --filter attr.label={label}-private",
                          f"key delete --filter attr.label={label}-public"]
    assert verbs[6] == "key generate-asymmetric-pair rsa --public-exponent"  # then this run
    reaped = [e for e in Journal(journal).entries() if e["action"] == "cli-delete"
              and e["label"].startswith(label)]
    assert [e["phase"] for e in reaped] == ["before", "after"] * 3
    assert len({e["run_id"] for e in reaped}) == 1 and reaped[0]["run_id"] != "run-killed"
    assert verify(journal) == []
