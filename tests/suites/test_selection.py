"""Every way of selecting tests ends in the verdict it earns, naming what did not run: the tests a
PASS needs come from the mode, the profile and the suites keyparity ships
(keyparity.evidence.verdict), never from what was collected or how it was selected.

One table, one lab for the module (real SoftHSM tokens on tmpfs, seeded once; each row is a
child pytest in a checkout of the suites): the full run is a PASS; -k, -m, --deselect, node ids
that leave out a test, another rootdir, -c with an ini file elsewhere, --ignore, -p no:<a suite
fixture plugin>, --lf and one file each end PARTIAL (or FAIL where tests error, or
PREFLIGHT-PASS, or NO-TESTS) with every expected test that did not run named in the evidence,
the signed predicate and the report; another rootdir where everything still ran is a PASS.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TMPFS, Lab
from keyparity.runinfo import new_run_id

AES = {"label": "k-aes128", "type": "aes", "size": 128}
HMAC = {"label": "k-hmac", "type": "generic-secret", "size": 256}
TARGET_LOGIN = "test_cluster_is_reachable_and_logged_in[target]"
AES_PREFLIGHT = "test_key_is_on_the_source_and_extractable[k-aes128]"
LEFT_OUT = {f"suites/test_preflight.py::{TARGET_LOGIN}",
            f"suites/test_preflight.py::{AES_PREFLIGHT}"}
TLS = ["test_cluster_certificate_chains_to_customer_ca[source]",
       "test_mutual_tls_handshake[source-no-tls]", "test_mutual_tls_handshake[target-no-tls]"]
CENSUS = ["test_every_source_key_is_accounted_for", "test_source_unchanged_during_the_run"]
CLOUDHSM = "test_target_users_can_own_and_share_the_keys"
PROBE = "test_tokens_accept_the_wrapping_parameters"
AES_PROOFS = ["test_key_is_on_the_target[k-aes128]", "test_key_check_values_match[k-aes128]"]


@dataclass
class Checkout:
    """A checkout of the suites with a lab profile, and the node ids a full run collects."""

    root: Path
    lab: Lab
    profile: Path
    nodeids: list[str]

    def run(self, *args: str) -> dict[str, Any]:
        run_id = new_run_id()
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", f"--hsm-profile={self.profile}",
             f"--hsm-reports-dir={self.root / 'reports'}", f"--hsm-run-id={run_id}", *args],
            cwd=self.root / "checkout", capture_output=True, text=True, check=False, timeout=600)
        run_dir = self.root / "reports" / run_id
        assert (run_dir / "evidence.json").is_file(), out.stdout[-3000:] + out.stderr[-3000:]
        html = (run_dir / "report.html").read_text()
        start = html.index('<p class="headline">') + len('<p class="headline">')
        return {"ret": out.returncode, "stdout": out.stdout,
                "doc": json.loads((run_dir / "evidence.json").read_text()),
                "predicate": json.loads((run_dir / "statement.json").read_text())["predicate"],
                "report_headline": html[start:html.index("</p>", start)]}


@pytest.fixture(scope="module")
def checkout() -> Any:
    root = Path(tempfile.mkdtemp(prefix="keyparity-selection-", dir=TMPFS))
    try:
        (root / "lab").mkdir()
        lab = Lab(root / "lab")
        lab.seed([AES, HMAC])
        profile = lab.profile([AES, HMAC])
        co = root / "checkout"
        for name in ("suites", "fixtures"):
            shutil.copytree(REPO / name, co / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "conftest.py", co / "conftest.py")
        (co / "pytest.ini").write_text("[pytest]\n")  # the cache provider on: --lf reads it
        (root / "elsewhere").mkdir()
        (root / "elsewhere" / "other.ini").write_text("[pytest]\n")
        (root / "elsewhere" / "ignoring.ini").write_text(
            "[pytest]\naddopts = --ignore=suites/test_cloudhsm.py\n")
        (co / "below").mkdir()  # the rootdir below the checkout: its conftest is not loaded
        (co / "extra").mkdir()  # a test named as a suite's, in a file of no suite
        (co / "extra" / "test_impostor.py").write_text(f"def {PROBE}():\n    pass\n")
        (co / "below" / "other.ini").write_text("[pytest]\n")
        listed = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", "suites", "--collect-only",
             "-q", f"--hsm-profile={profile}", f"--hsm-reports-dir={root / 'collect'}"],
            cwd=co, capture_output=True, text=True, check=True)
        nodeids = [line for line in listed.stdout.splitlines() if "::" in line]
        assert LEFT_OUT <= set(nodeids), nodeids
        yield Checkout(root, lab, profile, nodeids)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _lf(c: Checkout) -> list[str]:
    """--lf as after a run whose only failure was the target's login: pytest's own cache."""
    cache = c.root / "checkout" / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "lastfailed").write_text(json.dumps({f"suites/test_preflight.py::{TARGET_LOGIN}":
                                                  True}))
    return ["suites", "--lf"]


# name -> (arguments, or how to make them; verdict; names that must be in scope.not_run, or
#          the exact list when the row says so; exit status)
ROWS: dict[str, tuple[Any, str, Any, int]] = {
    "everything": (["suites"], "PASS", [], 0),
    "-k one key": (["suites", "-k", "k-hmac"], "PARTIAL",
                   AES_PROOFS + [AES_PREFLIGHT] + CENSUS + [TARGET_LOGIN], 0),
    "-m tls": (["suites", "-m", "tls"], "PARTIAL", CENSUS + AES_PROOFS + [TARGET_LOGIN], 0),
    "-m preflight": (["suites", "-m", "preflight"], "PREFLIGHT-PASS", AES_PROOFS, 0),
    "--deselect": (["suites", "--deselect", sorted(LEFT_OUT)[0], "--deselect",
                    sorted(LEFT_OUT)[1]], "PARTIAL", ("exactly", [TARGET_LOGIN, AES_PREFLIGHT]),
                   0),
    "node ids without two": (lambda c: [n for n in c.nodeids if n not in LEFT_OUT], "PARTIAL",
                             ("exactly", [TARGET_LOGIN, AES_PREFLIGHT]), 0),
    "--rootdir=suites, three files": (["--rootdir=suites", "suites/test_migration.py",
                                       "suites/test_equivalence.py",
                                       "suites/test_attributes.py"], "PARTIAL",
                                      CENSUS + [TARGET_LOGIN, AES_PREFLIGHT] + TLS, 0),
    # another rootdir, and nothing left out: everything ran, and the verdict says so
    "-c an ini file beside": (["-c", "../elsewhere/other.ini", "suites"], "PASS", [], 0),
    "-c an ini file below": (["-c", "below/other.ini", "suites"], "FAIL",
                             [CENSUS[1]] + TLS[1:], 1),
    "-c an ini file that ignores a suite": (["-c", "../elsewhere/ignoring.ini", "suites"],
                                            "PARTIAL", [CLOUDHSM], 0),
    "--ignore": (["suites", "--ignore=suites/test_tls.py"], "PARTIAL", TLS, 0),
    "-p no:fixtures.tls": (["suites", "-p", "no:fixtures.tls"], "FAIL", TLS[1:], 1),
    "--lf": (_lf, "PARTIAL", CENSUS + AES_PROOFS + [AES_PREFLIGHT], 0),
    "one file": (["suites/test_migration.py"], "PARTIAL", CENSUS + [TARGET_LOGIN], 0),
    # a test of the same name elsewhere does not stand in for the suite's own
    "an impostor": (["suites", "extra", "--deselect", f"suites/test_preflight.py::{PROBE}"],
                    "PARTIAL", ("exactly", [PROBE]), 0),
    "no test": (["suites", "-k", "no-such-test"], "NO-TESTS",
                CENSUS + AES_PROOFS + [TARGET_LOGIN], 5),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_every_way_of_selecting_tests(checkout, row):
    make, expected, names, status = ROWS[row]
    got = checkout.run(*(make(checkout) if callable(make) else make))
    doc, summary = got["doc"], got["doc"]["summary"]
    assert summary["verdict"] == expected, (summary, got["stdout"][-3000:])
    assert got["ret"] == status, got["stdout"][-3000:]
    not_run = summary["scope"]["not_run"]
    if isinstance(names, tuple):
        assert not_run == names[1], not_run
        for name in names[1]:  # few enough for the headline to name each
            assert name in summary["headline"]
    else:
        assert set(names) <= set(not_run), sorted(set(names) - set(not_run))
    assert (not_run == []) == (expected == "PASS")
    # the signed predicate and the report say the same
    assert got["predicate"]["verdict"] == expected
    assert got["predicate"]["scope"] == summary["scope"]
    assert got["predicate"]["headline"] == summary["headline"] == got["report_headline"]
    assert f"keyparity: {expected}; evidence written to" in got["stdout"]
    if expected == "PARTIAL" and row == "-k one key":
        assert summary["scope"]["keys_not_proven"] == {"k-aes128": "not run"}
        assert summary["scope"]["deselected"] > 0
        assert summary["headline"].startswith(
            "Only part of the run was proven: 1 of 2 keys to migrate (k-hmac); not run or only "
            "in part: census, preflight, cluster, cloudhsm, tls, migration, equivalence, "
            "attributes, ownership.")
    if expected == "PASS":
        assert summary["headline"] == (
            "All 2 keys to migrate were proven intact and usable on hsm2. Every key object on "
            "hsm1 is accounted for.")
