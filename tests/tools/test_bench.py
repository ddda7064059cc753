"""``keyparity bench`` at a small N, in a child process (SoftHSM reads SOFTHSM2_CONF once per
process). Structure and sanity of the figures only: nothing here asserts on speed."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from keyparity.hsm.softhsm import find_module


try:
    find_module()
except FileNotFoundError:  # pragma: no cover - the harness's other tests need SoftHSM as well
    pytestmark = pytest.mark.skip(reason="SoftHSM 2 is not installed")


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    return subprocess.run([sys.executable, "-m", "keyparity.cli", "bench", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = bench("--keys", "20", "--batch", "10", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_both_paths_migrate_and_verify_every_key(figures):
    doc, _ = figures
    assert doc["ok"] is True
    assert doc["keys"] == 20 and doc["batch"] == 10
    c = doc["checks"]
    assert c["harness_migrated"] == c["harness_kcv_matched"] == 20
    assert c["harness_failures"] == []
    assert c["bare_migrated"] == c["bare_kcv_matched"] == 20
    assert c["kcv_agree_harness_and_bare"] == 20
    assert c["target_keys"] == c["bare_target_keys"] == 20
    assert c["target_labels_match"] is True and c["bare_target_labels_match"] is True
    assert c["wrapping_objects_left"] == []


def test_figures_are_positive_and_consistent(figures):
    doc, _ = figures
    for key in ("ratio", "ratio_median_of_batches", "ratio_cpu"):
        assert isinstance(doc[key], float) and math.isfinite(doc[key]) and doc[key] > 0
    assert doc["goal_ratio"] == 1.25
    assert doc["within_goal"] == (doc["ratio"] <= 1.25)
    for path in ("harness", "bare"):
        part = doc[path]
        assert part["seconds"] > 0 and part["cpu_seconds"] >= 0
        assert part["keys_per_second"] == pytest.approx(20 / part["seconds"])
        lin = part["linearity"]
        assert lin["first_half_keys_per_second"] > 0 and lin["second_half_keys_per_second"] > 0
    assert doc["ratio"] == pytest.approx(doc["harness"]["seconds"] / doc["bare"]["seconds"])


def test_batches_are_interleaved_and_cover_every_key(figures):
    doc, _ = figures
    batches = doc["batches"]
    assert [b["first_key"] for b in batches] == [0, 10]
    assert sum(b["keys"] for b in batches) == 20
    assert [b["first"] for b in batches] == ["harness", "bare"]
    assert all(b["harness_seconds"] > 0 and b["bare_seconds"] > 0 for b in batches)


def test_setup_is_timed_apart_and_the_index_enumerates_once(figures):
    doc, _ = figures
    setup = doc["setup"]
    assert setup["seed_seconds"] > 0 and setup["provision_seconds"] > 0
    assert setup["harness"]["index_objects"] == 20  # the seeded keys; the target was empty
    assert setup["harness"]["index_build_seconds"] > 0
    assert setup["harness"]["wrapping_channel_seconds"] > 0
    assert setup["bare"]["enumerated_objects"] >= 20


def test_memory_and_machine_are_recorded(figures):
    doc, _ = figures
    m = doc["memory"]
    assert m["peak_rss_kib"] >= m["after_setup_maxrss_kib"] >= m["after_seed_maxrss_kib"] > 0
    assert "ru_maxrss" in m["method"]
    mach = doc["machine"]
    assert mach["cpu_count"] >= 1
    assert mach["python_pkcs11"].startswith("0.")
    assert "2." in mach["softhsm"]


def test_the_token_directory_is_removed(figures):
    doc, out = figures
    assert doc["tmpfs"] is (Path("/dev/shm").is_dir())
    assert not Path(doc["token_dir"]).exists()
    assert "keys/s" in out and "ratio harness/bare" in out and "peak RSS" in out


def test_bad_arguments_are_refused_without_a_token_directory():
    result = bench("--keys", "0")
    assert result.returncode == 2
    assert "--keys and --batch must be at least 1" in result.stderr


def test_an_interrupted_bench_removes_its_token_directory():
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyparity.cli", "bench", "--keys", "100000"], cwd=REPO,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # printed once the directory exists, before seeding
        token_dir = Path(first.rsplit(" in ", 1)[1].split()[0])
        assert token_dir.exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not token_dir.exists()


# ---- keyparity bench --journal-overhead: structure and sanity only, never speed ----------


@pytest.fixture(scope="module")
def journal_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("bench-journal")
    out = tmp / "bench.json"
    result = bench("--journal-overhead", "-n", "2", "--keys", "9", "--batch", "2",
                   "--journal-dir", str(tmp), "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_journal_overhead_migrates_every_key_both_ways(journal_figures):
    doc, out = journal_figures
    assert doc["ok"] is True and doc["mode"] == "journal-overhead"
    assert doc["keys"] == 9 and doc["workers"] == 2 and doc["batch"] == 2
    c = doc["checks"]
    assert c["journaled_migrated"] == c["journaled_kcv_matched"] == 9
    assert c["plain_migrated"] == c["plain_kcv_matched"] == 9
    assert c["kcv_agree_journaled_and_plain"] == 9
    assert c["target_keys"] == c["plain_target_keys"] == 9
    assert c["target_labels_match"] and c["plain_target_labels_match"]
    assert c["journal_chain_problems"] == [] and c["locks_left"] == 0
    assert c["wrapping_objects_left"] == [] and c["failures"] == []
    assert "overhead journaled/plain - 1" in out and "keys/s" in out


def test_journal_overhead_figures_are_consistent(journal_figures):
    doc, _ = journal_figures
    j, p = doc["journaled"], doc["plain"]
    assert j["seconds"] > 0 and p["seconds"] > 0
    assert j["keys_per_second"] == pytest.approx(9 / j["seconds"])
    assert doc["overhead"] == pytest.approx(j["seconds"] / p["seconds"] - 1)
    assert doc["goal_overhead"] == 0.10 and doc["within_goal"] == (doc["overhead"] <= 0.10)
    # 9 keys over 2 workers: shares of 5 and 4, rounds of 2 keys each -> 3 rounds, order swapped
    assert [r["first"] for r in doc["rounds"]] == ["journaled", "plain", "journaled"]
    assert sum(r["keys"] for r in doc["rounds"]) == 9


def test_journal_overhead_journal_is_on_the_given_disk_and_is_removed(journal_figures):
    doc, _ = journal_figures
    jr = doc["journal"]
    assert jr["journal_mode"] == "wal" and jr["entries"] >= 2 * 9  # before + after per key
    assert jr["entries_by_action"]["unwrap/before"] == jr["entries_by_action"]["unwrap/after"] == 9
    assert jr["filesystem"]["type"]
    assert not Path(jr["path"]).exists() and not Path(doc["token_dir"]).exists()


def test_journal_overhead_chunks_as_a_run_and_can_go_without(journal_figures, tmp_path):
    """The journaled side is chunked as a run would chunk 9 keys over 2 workers (2 keys per
    chunk: about four chunks per worker); ``--chunk 3`` groups 3, ``--chunk 0`` none."""
    doc, out = journal_figures
    assert doc["journal"]["chunk"] == 2 and "chunks of 2 keys" in out
    for chunk, said in (("3", "chunks of 3 keys"), ("0", "no chunks (one fsync per key)")):
        result = bench("--journal-overhead", "-n", "1", "--keys", "6", "--batch", "6",
                       "--chunk", chunk, "--journal-dir", str(tmp_path),
                       "--json", str(tmp_path / f"c{chunk}.json"))
        assert result.returncode == 0, result.stdout + result.stderr
        got = json.loads((tmp_path / f"c{chunk}.json").read_text())
        assert got["journal"]["chunk"] == int(chunk) and said in result.stdout
        assert got["checks"]["journaled_kcv_matched"] == 6 and got["ok"] is True


def test_the_census_bench_finds_the_stray_key_and_every_earlier_wave(tmp_path):
    out = tmp_path / "census.json"
    result = bench("--census", "--keys", "25", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    assert doc["counts"] == {"inventory": 25, "unaccounted": 1}  # the key in no inventory
    assert (doc["source_objects"], doc["other_objects"], doc["second_copies"]) == (26, 25, 0)
    for name in ("census_source_seconds", "bare_enumeration_seconds",
                 "reconcile_target_seconds"):
        assert doc[name] > 0, name
    assert "keyparity bench --census: census_vs_bare:" in result.stdout


# ---- keyparity bench --pytest: structure and sanity only, never speed ---------------------


@pytest.fixture(scope="module")
def pytest_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench-pytest") / "bench.json"
    result = bench("--pytest", "--keys", "4", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_with_two_workers_each_key_is_unwrapped_once(tmp_path):
    """The bench starts pytest as ``python -m pytest`` from the checkout, which registers the
    plugins in another order than the ``pytest`` script: with -n the chunks must still stay
    on one worker each (keyparity.plugin.pytest_cmdline_main), or two workers move one key."""
    out = tmp_path / "bench.json"
    result = bench("--pytest", "--keys", "16", "-n", "2", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    run = doc["run"]
    assert (run["verdict"], run["keys_proven"], run["unwraps"]) == ("PASS", 16, 16)
    # beside it, the bare loop alone in one process and split over two writing one target
    split = doc["bare_split"]
    assert (split["one_process"]["processes"], split["split"]["processes"]) == (1, 2)
    assert split["one_process"]["proven"] == split["split"]["proven"] == 16
    assert split["speedup"] == split["one_process"]["seconds"] / split["split"]["seconds"]
    assert "bare split  the bare loop alone (no pytest): " in result.stdout


def test_the_pytest_path_proves_every_key_in_a_signed_bundle(pytest_figures):
    doc, out = pytest_figures
    run = doc["run"]
    assert doc["ok"] is True and doc["keys"] == 4 and doc["workers"] == 0 and doc["allure"]
    assert (run["exit"], run["verdict"], run["keys_proven"], run["unwraps"]) == (0, "PASS", 4, 4)
    assert run["verify"]["exit"] == 0
    assert run["verify"]["last_line"] == "keyparity verify: authentic; signed verdict PASS"
    # the bare loop made the same proofs for every key, twice (before and after the run)
    assert [b["proven"] for b in doc["bare"]["loops"]] == [4, 4]
    # evidence, report, junit, OSCAL, CBOM, Allure archive, statement, envelope, and what makes
    # the bundle self-contained (the profile, the journal's rows, the signer's key, the signed
    # wrap exception and its approver's key): no runtime file
    assert run["run_dir"]["names"] == [
        "allure-results.tar.gz", "approvals/approvers/bench-custodian.pub.pem",
        "approvals/bench-wrap-exception.dsse.json", "assessment-results.json", "cbom.json",
        "evidence.dsse.json", "evidence.json", "journal.json", "junit.xml", "profile/bench.yaml",
        "report.html", "signers/bench-custodian.pem", "statement.json"]
    assert run["run_dir"]["files"] == 13
    assert "ratio       run / bare loop" in out and "floor       " in out


def test_the_pytest_path_figures_are_consistent(pytest_figures):
    doc, _ = pytest_figures
    run, split = doc["run"], doc["run"]["split_seconds"]
    assert set(split) == {"start_up", "collection", "test_loop", "bundle_phase", "summaries",
                          "exit"}
    assert all(v >= 0 for v in split.values())
    assert sum(split.values()) <= run["seconds"] * 1.05
    assert run["bundle_share"] == pytest.approx(split["bundle_phase"] / run["seconds"])
    assert doc["ratio_run_over_bare"] == pytest.approx(run["seconds"] / doc["bare"]["mean_seconds"])
    # the floor ran as many empty tests as the run had tests
    assert doc["floor"]["tests"] == run["tests"] > 4 * 10
    assert run["peak_rss_tree_kib"] >= run["peak_rss_process_kib"] > 0
