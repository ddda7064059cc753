"""A failed run explains itself in five seconds: the demo's inventory migrated, then one target
key replaced by other material and another's CKA_DECRYPT cleared, and the run again.

What the auditor and the operator see is checked where they see it: the evidence's summary
(each failed key's root cause, the failures that only followed from it, each suite's status
from what ran), the signed statement's predicate, the terminal's last lines, and report.html
as headless Chromium lays it out on a 1280×800 screen: the failed keys' labels and reasons are
on the first screen, without scrolling. A suite whose every test skipped is "not applicable",
with its reasons, never "passed".

``KEYPARITY_UPDATE_DOCS=1`` writes the FAIL report's first screen to ``docs/`` (the picture
docs/auditors.md shows); without it the test checks that the picture there is such a screen.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from browser import chromium, first_screen, on_first_screen
from conftest import DEMO_KEYS, REPO, checkout_suites, evidence, fresh_lab, run_suites

AES256 = {"label": "k-aes256", "type": "aes", "size": 256}
KEYS = [*DEMO_KEYS, AES256]
REPLACED, NO_DECRYPT = "k-aes128", "k-aes256"
DOC_PICTURE = REPO / "docs" / "images" / "report-fail-first-screen.png"
MIGRATION = "suites/test_migration.py::test_key_is_on_the_target[{}]"
DEPENDENT = ("suites/test_equivalence.py::test_key_check_values_match[{}]",
             "suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_other[{}]",
             "suites/test_attributes.py::test_target_attributes_match_source[{}]")
HEADLINE = "#verdict > p.headline"  # the first: the verdict's headline
NOT_APPLICABLE_HERE = ("cluster", "cloudhsm", "ownership", "tls")  # a lab: no aws, CLI, tls


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The PASS run and the FAIL run after it (one lab, run once for the module's tests)."""
    pytester_dir = tmp_path_factory.mktemp("failure-report")
    out: dict[str, Any] = {}
    with fresh_lab() as lab:
        checkout_suites(pytester_dir)
        suites = _Dir(pytester_dir)
        lab.seed(KEYS)
        profile = lab.profile(KEYS)
        out["pass"] = _run(suites, profile)
        assert lab.tokens({"op": "destroy", "token": "hsm2", "label": REPLACED}) == [1]
        lab.tokens({"op": "create", "token": "hsm2", "key": DEMO_KEYS[2]},
                   {"op": "set", "token": "hsm2", "label": NO_DECRYPT, "class": "secret",
                    "attribute": "decrypt", "value": False})
        out["fail"] = _run(suites, profile)
    return out


class _Dir:
    """Enough of pytester for conftest.run_suites/evidence: a directory and a child pytest."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runpytest_subprocess(self, *args: str) -> Any:
        env = {k: v for k, v in os.environ.items()  # a run of its own, not an xdist worker
               if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"))}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
                              cwd=self.path, capture_output=True, text=True, timeout=600,
                              check=False, env=env)
        return proc


def _run(suites: _Dir, profile: Path) -> dict[str, Any]:
    proc = run_suites(suites, profile)
    run_dir = (suites.path / "reports" / "latest").resolve()
    return {"stdout": proc.stdout, "ret": proc.returncode, "doc": evidence(suites),
            "statement": json.loads((run_dir / "statement.json").read_text()),
            "report": run_dir / "report.html", "run_dir": run_dir}


# ---- the evidence and the signed predicate --------------------------------------------------

def test_each_failed_key_has_its_root_cause_and_the_failures_that_followed(runs):
    doc = runs["fail"]["doc"]
    summary = doc["summary"]
    assert summary["verdict"] == "FAIL" and runs["fail"]["ret"] == 1 and runs["pass"]["ret"] == 0
    assert {k: v["verdict"] for k, v in doc["keys"].items() if v["verdict"] != "passed"} == {
        REPLACED: "failed", NO_DECRYPT: "failed"}
    causes = summary["causes"]
    assert list(causes) == [REPLACED, NO_DECRYPT]  # the inventory's order
    replaced = causes[REPLACED]
    assert replaced["tests"] == [MIGRATION.format(REPLACED)]  # the root cause, counted once
    assert sorted(replaced["dependent"]) == sorted(d.format(REPLACED) for d in DEPENDENT)
    # each value labelled by its cluster, the source first
    assert re.fullmatch(rf"'{REPLACED}' on hsm2 holds other key material than '{REPLACED}' on "
                        r"hsm1: aes-ecb-decrypt over the challenge [0-9a-f]{16}\.\.\. gives "
                        r"SHA-256 hsm1 [0-9a-f]{16}\.\.\., hsm2 [0-9a-f]{16}\.\.\.: other "
                        r"key material; nothing was written", replaced["reason"]), replaced
    # the attribute that differs explains the refused decryption: it comes first
    no_decrypt = causes[NO_DECRYPT]
    assert no_decrypt["reason"] == ("CKA_DECRYPT differs: hsm1 True, hsm2 False (and 1 more "
                                    "failed: vectors)")
    assert no_decrypt["dependent"] == []
    assert [n.split("::")[1].split("[")[0] for n in no_decrypt["tests"]] == [
        "test_target_attributes_match_source",
        "test_output_of_one_cluster_is_accepted_by_the_other"]
    # the key whose material differs shows both sides, not "not compared"
    identity = doc["keys"][REPLACED]["migration"]["identity"]
    assert identity["match"] is False and identity["source"] != identity["target"]
    assert replaced["reason"].split("hsm1 ")[1][:16] == identity["source"][:16]
    # no message holds pytest's explanation of the assertion
    for t in doc["tests"]:
        assert "\nassert " not in t.get("message", "") and "+  where" not in t.get(
            "message", ""), t
    assert summary["headline"] == (
        f"2 of 7 keys failed: {REPLACED}, {NO_DECRYPT}; 6 tests failed or errored (3 only "
        "because their key's migration failed).")


@pytest.mark.parametrize("run", ["pass", "fail"])
def test_a_suite_whose_every_test_skipped_is_not_applicable_never_passed(runs, run):
    doc, statement = runs[run]["doc"], runs[run]["statement"]
    for scope in (doc["summary"]["scope"], statement["predicate"]["scope"]):  # signed too
        for suite in NOT_APPLICABLE_HERE:
            assert scope["suites"][suite] == "not applicable", (suite, scope["suites"])
            reasons = scope["not_applicable"][suite]
            assert reasons and all(r["reason"] and r["tests"] >= 1 for r in reasons)
        assert scope["suites"]["census"] == "passed" and scope["suites"]["preflight"] == "passed"
        assert set(scope["not_applicable"]) == set(NOT_APPLICABLE_HERE)
        assert any("no aws block" in r["reason"] for r in scope["not_applicable"]["cluster"])
    # not applicable suites block no PASS
    assert doc["summary"]["verdict"] == ("PASS" if run == "pass" else "FAIL")


# ---- the terminal ----------------------------------------------------------------------------

def test_the_terminal_ends_with_the_verdict_the_failed_keys_and_the_report(runs):
    out = runs["fail"]["stdout"]
    doc = runs["fail"]["doc"]
    lines = out.splitlines()
    verdict = lines.index(f"keyparity: FAIL: {doc['summary']['headline']}")
    causes = doc["summary"]["causes"]
    # each failed key with its whole reason, one line each, not cut to the terminal's width
    assert lines[verdict + 1:verdict + 3] == [f"keyparity:   {label}: {c['reason']}"
                                              for label, c in causes.items()]
    assert lines[verdict + 3] == f"keyparity: report: {runs['fail']['run_dir']}/report.html"
    assert len(lines[verdict + 1]) > 200
    passed = runs["pass"]["stdout"].splitlines()
    assert f"keyparity: PASS: {runs['pass']['doc']['summary']['headline']}" in passed
    assert not any(line.startswith("keyparity:   ") for line in passed)


# ---- report.html -----------------------------------------------------------------------------

def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def test_the_report_leads_with_the_failure(runs):
    html = runs["fail"]["report"].read_text()
    causes = runs["fail"]["doc"]["summary"]["causes"]
    banner = html[html.index('<header id="verdict"'):html.index("</header>")]
    for label, cause in causes.items():
        assert f'<code class="wrap">{label}</code></a>: {_esc(cause["reason"])}</li>' in banner
    # the acknowledgement is a box under the headline, not a headline
    assert '<div class="ackbox" id="compliance-ack">' in banner
    assert banner.index('class="headline"') < banner.index('id="failed-keys"') < banner.index(
        'id="compliance-ack"')
    scope = _section(html, "scope")
    assert "Keys not proven (2)" in scope
    for label, cause in causes.items():
        assert _esc(cause["reason"]) in scope
    for suite in NOT_APPLICABLE_HERE:
        assert f"{suite} <span class=\"badge b-not-applicable\">not applicable</span>" in scope
    assert "no aws block" in scope
    # the failures: the root cause, then what followed from it, folded
    failures = _section(html, "failures")
    root = failures.index(MIGRATION.format(REPLACED))
    folded = failures.index("not run: its migration failed (3 tests")
    assert root < folded
    for dependent in DEPENDENT:
        assert failures.index(dependent.format(REPLACED)) > folded
    assert "assert False" not in html and "+  where" not in html
    # both sides' identity, labelled by cluster
    row = _section(html, "keys")
    row = row[row.index(f'<code class="wrap">{REPLACED}</code>'):]
    row = row[:row.index("</tr>")]
    identity = runs["fail"]["doc"]["keys"][REPLACED]["migration"]["identity"]
    assert f"hsm1 {identity['source'][:8]} · hsm2 {identity['target'][:8]}" in row
    assert ">mismatch<" in row and "not compared" not in row


def _esc(text: str) -> str:
    from markupsafe import escape
    return str(escape(text))


def test_chromium_shows_the_failed_keys_and_their_reasons_on_the_first_screen(runs, tmp_path):
    report = runs["fail"]["report"]
    causes = runs["fail"]["doc"]["summary"]["causes"]
    layout = first_screen(tmp_path, report, ["#failed-keys li", "#verdict-word", HEADLINE,
                                             "#compliance-ack", "#not-proven"])
    assert layout["window"][0] == 1280
    items = layout["found"]["#failed-keys li"]
    assert [i["text"] for i in items] == [f"{label}: {c['reason']}" for label, c in causes.items()]
    for box in items + layout["found"]["#verdict-word"] + layout["found"][HEADLINE]:
        assert on_first_screen(box, layout), box
    png = tmp_path / "fail.png"
    chromium(tmp_path, f"--screenshot={png}", report.resolve().as_uri())
    _is_first_screen(png, red=True)
    if os.environ.get("KEYPARITY_UPDATE_DOCS"):
        DOC_PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, DOC_PICTURE)
    _is_first_screen(DOC_PICTURE, red=True)  # what docs/auditors.md shows is such a screen


def test_chromium_shows_a_pass_and_its_headline_on_the_first_screen(runs, tmp_path):
    report = runs["pass"]["report"]
    layout = first_screen(tmp_path, report, ["#failed-keys li", "#verdict-word", HEADLINE,
                                             "#not-proven"])
    assert layout["found"]["#failed-keys li"] == [] and layout["found"]["#not-proven"] == []
    word, headline = layout["found"]["#verdict-word"][0], layout["found"][HEADLINE][0]
    assert word["text"] == "PASS" and on_first_screen(word, layout)
    assert headline["text"] == runs["pass"]["doc"]["summary"]["headline"]
    assert on_first_screen(headline, layout)
    png = tmp_path / "pass.png"
    chromium(tmp_path, f"--screenshot={png}", report.resolve().as_uri())
    _is_first_screen(png, red=False)


def _is_first_screen(png: Path, red: bool) -> None:
    """A 1280×800 picture whose top is the verdict's banner, in its colour."""
    from PIL import Image
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 800)
        colour = (0xB3, 0x26, 0x1E) if red else (0x1F, 0x7A, 0x3A)
        top = [rgb.getpixel((x, 8)) for x in range(0, 1280, 40)]
        assert all(all(abs(a - b) <= 8 for a, b in zip(p, colour)) for p in top), top[:3]
