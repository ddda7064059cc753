"""``keyparity bench --pytest --latency-ms`` at a handful of keys, in a child process: every
worker count ran, through the forwarding module (its counts), and the figures have their
shape. Nothing here asserts on speed (docs/benchmarks.md has the figures)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO
from keyparity.hsm.softhsm import find_module

try:
    find_module()
except FileNotFoundError:  # pragma: no cover - the harness's other tests need SoftHSM as well
    pytestmark = pytest.mark.skip(reason="SoftHSM 2 is not installed")

KEYS = 4


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("latency") / "latency.json"
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    result = subprocess.run(
        [sys.executable, "-m", "keyparity.cli", "bench", "--pytest", "--latency-ms", "0.1",
         "--workers-list", "1,2", "--keys", str(KEYS), "--no-allure", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_every_worker_count_ran_and_proved_every_key(figures):
    doc, _ = figures
    assert doc["ok"] is True and doc["keys"] == KEYS and doc["latency_us"] == 100
    assert [r["workers"] for r in doc["runs"]] == [1, 2]
    assert set(doc["by_workers"]) == {"1", "2"}
    for r in doc["runs"]:
        assert (r["exit"], r["verdict"], r["keys_proven"], r["unwraps"]) == (0, "PASS", KEYS,
                                                                             KEYS)


def test_the_calls_were_counted_through_the_forwarding_module(figures):
    doc, _ = figures
    serial, split = doc["runs"]
    assert serial["calls"]["processes"] == 1      # the pytest process alone
    assert split["calls"]["processes"] == 3       # the controller and its two workers
    for r in doc["runs"]:
        assert r["calls_per_key"] > 0
        assert r["calls"]["total"] == sum(r["calls"]["calls"].values())
        assert r["calls"]["calls"]["C_UnwrapKey"] >= KEYS


def test_cpu_shares_phases_and_speedups_have_their_shape(figures):
    doc, out = figures
    for r in doc["runs"]:
        share = r["controller_share"]
        assert isinstance(share, float) and 0 < share <= 1
        assert 0 < r["controller_cpu_seconds"] <= r["tree_cpu_seconds"]
        assert {"start_up", "collection", "test_loop", "bundle_phase"} <= set(r["split_seconds"])
    serial, split = doc["runs"]
    assert serial["controller_calls"] == 0 and serial["busiest_process_calls"] == serial[
        "calls"]["total"]
    assert split["controller_calls"] == split["calls"]["by_process"][str(
        split["controller_pid"])] > 0
    for r in doc["runs"]:   # the waits: (controller + busiest process) calls x 100 us
        assert r["latency_path_seconds"] == pytest.approx(
            (r["controller_calls"] + r["busiest_process_calls"]) * 100e-6)
        assert 0 < r["cpu_busy"] <= 1
    assert set(doc["runs"][1]["workers_marks"]) == {"gw0", "gw1"}
    assert doc["runs"][0]["workers_marks"] == {}
    for w, row in doc["by_workers"].items():
        assert math.isfinite(row["speedup"]) and row["speedup"] > 0
    assert doc["by_workers"]["1"]["speedup"] == 1.0
    assert [g["kind"] for g in doc["goals"]] == ["share"]   # -n 4 and 8 not run
    assert "controller < 25% of the run's CPU" in out
    assert "expect about" in out and "with -n 2 (measured here)" in out
