"""Chunks of keys: one xdist group each, and one durable journal commit for their unwraps.

The plugin cuts the inventory into chunks (``--hsm-batch N``, else
``keyparity.hsm.migrate.chunk_size``); xdist runs a chunk's tests on one worker, and when a key
must be unwrapped, the selected keys after it in its chunk are unwrapped with it. Shown here on
real SoftHSM tokens: deselected keys are never written, a chunk stays on one worker, the
``before`` entries of a chunk share one transaction, and the outcome equals a serial run.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import evidence, run_suites
from keyparity.journal.chain import verify
from keyparity.journal.store import Journal
from keyparity.hsm.migrate import MAX_CHUNK, chunk_size
from test_red_suites import AES, DES3, HMAC, RSA, all_green, counts, groups, nodes, observed, plain

KEYS = [AES, DES3, HMAC, RSA]
LABELS = [k["label"] for k in KEYS]


def unwrap_entries(suites, run_id: str) -> list[dict]:
    j = Journal(suites.path / ".keyparity" / "journal.sqlite")
    try:
        return [e for e in j.entries(run_id) if e["action"] == "unwrap"]
    finally:
        j.close()


def test_chunk_size_serial_takes_every_key_up_to_the_cap_and_xdist_spreads_them():
    assert chunk_size(3) == 3 and chunk_size(10_000) == MAX_CHUNK
    assert chunk_size(3, workers=2) == 1  # a small inventory still spreads over the workers
    assert chunk_size(80, workers=2) == 10
    assert chunk_size(10_000, workers=2) == MAX_CHUNK
    assert chunk_size(0) == 1


def test_a_deselected_key_is_never_written_although_it_is_in_the_chunk(lab, suites):
    lab.seed(KEYS)
    result = run_suites(suites, lab.profile(KEYS), "-k", "k-des3 or k-rsa")
    assert result.ret == 0, result.stdout.str()
    assert "keys in chunks of 4 (one xdist group" in result.stdout.str()  # serial: all four
    assert counts(lab, "hsm2", LABELS) == {"*": 2, "keyparity-*": 0, "k-aes128": 0,
                                           "k-des3": 1, "k-hmac": 0, "k-rsa": 1}
    doc = evidence(suites)
    entries = unwrap_entries(suites, doc["run"]["run_id"])
    assert [(e["phase"], e["label"]) for e in entries] == [
        ("before", "k-des3"), ("before", "k-rsa"), ("after", "k-des3"), ("after", "k-rsa")]
    # the evidence names, per key, this run's journal entries for it
    j = Journal(suites.path / ".keyparity" / "journal.sqlite")
    by_seq = {e["seq"]: e for e in j.entries(doc["run"]["run_id"])}
    j.close()
    for label in ("k-des3", "k-rsa"):
        seqs = doc["keys"][label]["migration"]["journal_seqs"]
        assert [(by_seq[n]["action"], by_seq[n]["phase"], by_seq[n]["key_label"])
                for n in seqs] == [("unwrap", "before", label), ("unwrap", "after", label),
                                   ("verified", "note", label)], (label, seqs)


def test_preflight_only_writes_nothing_even_with_chunks(lab, suites):
    lab.seed(KEYS)
    result = run_suites(suites, lab.profile(KEYS), "-m", "preflight")
    assert result.ret == 0, result.stdout.str()
    assert counts(lab, "hsm2", LABELS)["*"] == 0


def test_chunks_stay_on_one_worker_share_one_commit_and_equal_a_serial_run(lab, suites):
    lab.seed(KEYS)
    profile = lab.profile(KEYS)
    parallel = run_suites(suites, profile, "-n", "2", "--hsm-batch", "2", "-v")
    assert parallel.ret == 0, parallel.stdout.str()
    par_doc = evidence(suites)
    expected = all_green(KEYS)
    assert observed(parallel, par_doc) == expected
    assert "keys in chunks of 2 (one xdist group" in parallel.stdout.str()
    # the groups are the chunks, named by their first key: [aes, des3], [hmac, rsa]
    chunk_of = {"k-aes128": "k-aes128", "k-des3": "k-aes128", "k-hmac": "k-hmac",
                "k-rsa": "k-hmac"}
    tagged = groups(parallel)
    worker = {plain(node): gw for gw, node in re.findall(
        r"^\[(gw\d+)\] \[\s*\d+%\] (?:PASSED|FAILED|ERROR|SKIPPED) (suites/\S+)",
        parallel.stdout.str(), re.M)}
    for first in ("k-aes128", "k-hmac"):
        members = [k for k in KEYS if chunk_of[k["label"]] == first]
        chunk_nodes = set().union(*(nodes(k) for k in members))
        assert len({worker[n] for n in chunk_nodes}) == 1, first
        assert {tagged[n] for n in chunk_nodes if n in tagged} == {first}
    # one transaction for the befores of each chunk (one timestamp), each after its own
    entries = unwrap_entries(suites, par_doc["run"]["run_id"])
    befores = {}
    for e in entries:
        if e["phase"] == "before":
            befores.setdefault(chunk_of[e["label"]], set()).add(e["ts"])
    assert {c: len(ts) for c, ts in befores.items()} == {"k-aes128": 1, "k-hmac": 1}
    assert sorted(e["label"] for e in entries if e["phase"] == "after") == sorted(LABELS)
    assert verify(suites.path / ".keyparity" / "journal.sqlite") == []
    assert counts(lab, "hsm2", LABELS) == {"*": 4, "keyparity-*": 0,
                                           **dict.fromkeys(LABELS, 1)}

    # a serial run over the same target finds every key, with the same outcomes
    serial = run_suites(suites, profile)
    ser_doc = evidence(suites)
    assert serial.parseoutcomes() == parallel.parseoutcomes()
    assert {k: v["migration"]["status"] for k, v in ser_doc["keys"].items()} == dict.fromkeys(
        LABELS, "already-present")
    assert counts(lab, "hsm2", LABELS)["*"] == 4


def test_two_concurrent_pytest_runs_on_one_target_each_write_correct_evidence(lab, all_suites):
    """Two operators start the same migration at once, each with two workers and chunks of
    two keys, sharing the journal: every key is unwrapped exactly once; each run's evidence
    says, per key, what that run did (one migrated it, the other found it), and passes."""
    suites = all_suites  # every suite keyparity ships: a PASS needs them all
    keys = KEYS
    lab.seed(keys)
    profile = lab.profile(keys)
    procs = []
    for i in (1, 2):
        cmd = [sys.executable, "-m", "pytest", "suites", f"--hsm-profile={profile}",
               f"--hsm-reports-dir={suites.path / f'reports{i}'}", "-n", "2",
               "--hsm-batch", "2"]
        procs.append(subprocess.Popen(cmd, cwd=suites.path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    docs = []
    for i, p in zip((1, 2), procs):
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
        docs.append(json.loads((suites.path / f"reports{i}" / "latest" / "evidence.json")
                               .read_text()))
    for doc in docs:
        assert doc["summary"]["verdict"] == "PASS"
        assert {k: v["verdict"] for k, v in doc["keys"].items()} == dict.fromkeys(LABELS,
                                                                                 "passed")
    for label in LABELS:
        statuses = sorted(doc["keys"][label]["migration"]["status"] for doc in docs)
        assert statuses == ["already-present", "migrated"], (label, statuses)
    journal = suites.path / ".keyparity" / "journal.sqlite"
    j = Journal(journal)
    done = [e["label"] for e in j.entries() if e["action"] == "unwrap" and e["phase"] == "after"]
    j.close()
    assert sorted(done) == sorted(LABELS)  # each key unwrapped once, over both runs
    assert not [r for r in lab.lock_records() if r["held"] or r["record"]["state"] != "released"]
    assert verify(journal) == []
    assert counts(lab, "hsm2", LABELS) == {"*": 4, "keyparity-*": 0,
                                           **dict.fromkeys(LABELS, 1)}


def test_a_batch_below_one_is_a_usage_error_and_nothing_is_written(lab, suites):
    lab.seed(KEYS)
    result = run_suites(suites, lab.profile(KEYS), "--hsm-batch", "0")
    assert result.ret == 4, result.stdout.str()
    assert "--hsm-batch must be at least 1, not 0" in result.stderr.str()
    assert counts(lab, "hsm2", LABELS)["*"] == 0
