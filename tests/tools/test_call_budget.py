"""``keyparity bench --pytest --calls`` at one and two keys of each type, in a child process:
the PKCS #11 calls a key costs, counted by the forwarding module, stay within the budget
docs/benchmarks.md writes down (keyparity.bench.calls.KINDS), and the runs it counts PASS; so a
change that makes a key cost more calls (a second read, a length query, a look-up again)
fails ``./run tests``. A count, not a speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from keyparity.bench.calls import KINDS, minimum
from keyparity.hsm.softhsm import find_module

try:
    find_module()
except FileNotFoundError:  # pragma: no cover - the harness's other tests need SoftHSM as well
    pytestmark = pytest.mark.skip(reason="SoftHSM 2 is not installed")


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("calls") / "calls.json"
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    result = subprocess.run(
        [sys.executable, "-m", "keyparity.cli", "bench", "--pytest", "--calls", "--keys", "2",
         "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_key_costs_no_more_calls_than_its_budget(counts, kind):
    got = counts["kinds"][kind.name]
    assert got["ok"], f"the counted runs of {kind.name} keys did not PASS"
    assert got["calls"] <= kind.budget, (
        f"a {kind.name} key costs {got['calls']} PKCS #11 calls, over its budget of "
        f"{kind.budget}: {json.dumps(got['by_phase_function'], indent=1)}")
    # every phase that proves something was counted (a run that skipped one would be cheap)
    assert {"census", "preflight", "migration", "kcv", "vectors", "attributes"} <= set(
        got["by_phase"])


def test_the_minimum_counts_two_calls_an_operation_and_the_reads_and_wraps():
    counted = {"C_EncryptInit": 3, "C_Encrypt": 3, "C_FindObjectsInit": 1}
    assert minimum(counted, 1) == 5 + 2 + 1 + 2 * 3
    assert minimum({}, 2) == 5 + 3 + 2 + 1
