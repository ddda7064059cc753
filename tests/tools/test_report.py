"""report.html: rendered from real evidence (tests/data), escaped, self-contained, failures
first; and a real headless Chromium shows the verdict banner in its colour."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from browser import chromium
from conftest import TESTDATA
from keyparity.formats.report import render_report, write_report

DATA = TESTDATA
PASS_GREEN = (0x1F, 0x7A, 0x3A)  # --pass in the template
FAIL_RED = (0xB3, 0x26, 0x1E)  # --fail in the template
EVIL = "<script>alert('k')</script>&\"x\"`"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


@pytest.fixture(params=["evidence-sample.json", "evidence-failing.json"])
def sample(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def section(html: str, name: str) -> str:
    """The text of ``<section id="name">`` … ``</section>``."""
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def relabel(doc: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["keys"] = {(new if k == old else k): v for k, v in doc["keys"].items()}
    doc["keys"][new]["label"] = new
    for t in doc["tests"]:
        if t["key"] == old:
            t["key"] = new
            t["nodeid"] = t["nodeid"].replace(old, new)
    return doc


def test_passing_run_has_a_green_pass_banner_with_counts() -> None:
    html = render_report(load("evidence-sample.json"))
    assert '<header id="verdict" class="banner verdict-pass"' in html
    assert '<div class="word" id="verdict-word">PASS</div>' in html
    assert 'class="banner verdict-fail"' not in html
    banner = html[html.index('<header id="verdict"'):html.index("</header>")]
    assert "<b>7</b> keys passed" in banner
    assert "<b>0</b> keys failed" in banner
    assert "<b>1</b> key to rotate" in banner
    assert "<b>79</b> tests: 67 passed, 12 skipped" in banner
    assert html.index('id="verdict"') < html.index('<section id="run">')  # the verdict first


def test_failing_run_has_a_red_fail_banner_with_counts() -> None:
    html = render_report(load("evidence-failing.json"))
    assert '<header id="verdict" class="banner verdict-fail"' in html
    assert '<div class="word" id="verdict-word">FAIL</div>' in html
    banner = html[html.index('<header id="verdict"'):html.index("</header>")]
    assert "2 of 8 keys failed; 5 tests failed or errored." in banner
    assert "<b>2</b> keys failed" in banner
    assert "<b>80</b> tests: 4 failed, 1 error, 63 passed, 12 skipped" in banner
    assert '<a href="#failures">5 failing tests listed below</a>' in banner


def test_sections_are_in_the_auditors_order(sample: dict[str, Any]) -> None:
    html = render_report(sample)
    order = ['id="verdict"', 'id="scope"', 'id="failures"', 'id="run"', 'id="clusters"',
             'id="keys"',
             'id="differences"', 'id="certificates-and-mode"', 'id="rotate"', 'id="verify"',
             'id="tests"']
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_failures_are_listed_before_the_key_table() -> None:
    doc = load("evidence-failing.json")
    html = render_report(doc)
    failing = [t for t in doc["tests"] if t["outcome"] in ("failed", "error")]
    assert len(failing) == 5
    failures = section(html, "failures")
    key_table = html.index('<section id="keys">')
    for t in failing:
        assert str(escape(t["nodeid"])) in failures
        assert html.index(str(escape(t["nodeid"]))) < key_table
        assert str(escape(t["message"])) in failures
    assert "AssertionError: ea8e40 != 5d0f3a" in failures
    assert "run-level test (no key)" in failures  # the teardown error has no key
    passing = {t["nodeid"] for t in doc["tests"] if t["outcome"] == "passed"} - {
        t["nodeid"] for t in failing}  # (a teardown error's test also has its passed call)
    assert not any(str(escape(n)) + "</code>" in failures for n in passing)
    # failing keys head the key table too
    rows = section(html, "keys")
    assert rows.index("tokenization-aes128") < rows.index("payments-3des-3key")
    assert rows.index("api-hmac") < rows.index("payments-3des-3key")


def test_a_passing_run_says_nothing_failed() -> None:
    assert "No test failed and none errored." in section(
        render_report(load("evidence-sample.json")), "failures")


def test_per_key_table_shows_identity_vectors_and_differences() -> None:
    html = render_report(load("evidence-failing.json"))
    rows = section(html, "keys")
    hmac = rows[rows.index("<code class=\"wrap\">api-hmac</code>"):]
    hmac = hmac[:hmac.index("</tr>")]
    assert "HMAC-SHA256 of a 16-byte zero block, first 3 bytes" in hmac
    assert "hsm1 ea8e40 · hsm2 5d0f3a" in hmac  # each value labelled by its cluster
    assert ">mismatch<" in hmac
    assert '<span class="bad">0 / 2</span>' in hmac
    assert "GENERIC_SECRET" in hmac and "migrated" in hmac and ">failed<" in hmac
    tok = rows[rows.index("<code class=\"wrap\">tokenization-aes128</code>"):]
    tok = tok[:tok.index("</tr>")]
    assert '4 / <span class="bad">1</span>' in tok  # differences: expected / unexpected
    ec = rows[rows.index("<code class=\"wrap\">ca-ec-p384</code>"):]
    assert "1 / 1" in ec[:ec.index("</tr>")] and "+1 n/a" in ec[:ec.index("</tr>")]


def test_unexpected_attribute_differences_are_highlighted() -> None:
    diffs = section(render_report(load("evidence-failing.json")), "differences")
    unexpected = re.findall(r'<tr class="unexpected">(.*?)</tr>', diffs, re.S)
    attrs = [re.search(r"<code>(\w+)</code>", row).group(1) for row in unexpected
             if "UNEXPECTED" in row]
    assert attrs == ["value_len"]
    listed = re.findall(r'<h4><a href="#key-\d+"><code class="wrap">([^<]+)</code>', diffs)
    # worst first; a key with expected differences only is in the summary, not listed
    assert listed == ["tokenization-aes128", "api-hmac"]
    assert "MAC does not verify" in diffs  # failed vectors are listed under their key
    summary = diffs[diffs.index("Expected differences"):diffs.index("Keys with unexpected")]
    value_len = re.search(r'<td class="num">(\d+)</td><td><code>check_value</code>', summary)
    assert value_len is not None and int(value_len.group(1)) >= 2  # counted over the keys
    assert 'class="unexpected"' not in section(render_report(load("evidence-sample.json")),
                                               "differences")


def test_every_key_label_appears(sample: dict[str, Any]) -> None:
    html = render_report(sample)
    table = section(html, "keys")
    for label in sample["keys"]:
        assert f'<code class="wrap">{escape(label)}</code>' in table


def test_labels_and_messages_are_escaped() -> None:
    doc = relabel(load("evidence-failing.json"), "api-hmac", EVIL)
    doc["tests"][0]["message"] = '<img src="http://evil.example/x.png" onerror="alert(1)">'
    doc["tests"][0]["outcome"] = "failed"
    doc["clusters"]["target"]["name"] = "<b>hsm2</b>"
    doc["signing"] = {"signers": ["<i>alice</i>", "bob"], "threshold": 2}
    html = render_report(doc)
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<b>hsm2</b>" not in html and "<i>alice</i>" not in html
    assert str(escape(EVIL)) in section(html, "keys")
    assert str(escape(EVIL)) in section(html, "failures")
    assert "&lt;img src=&#34;http://evil.example/x.png&#34;" in html
    # the verify command quotes a signer's name for the shell as well
    assert "--key &#39;&lt;i&gt;alice&lt;/i&gt;.pub.pem&#39;" in section(html, "verify")


EXTERNAL = [
    re.compile(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"<script\b", re.I),
    re.compile(r"<(?:iframe|object|embed|img)\b", re.I),
]


def test_the_report_is_self_contained(sample: dict[str, Any]) -> None:
    html = render_report(sample)
    for pattern in EXTERNAL:
        assert not pattern.search(html), pattern.pattern
    assert "<style>" in html  # inline CSS only
    assert "default-src 'none'" in html  # and the browser may load nothing else


def test_certificate_and_mode_results_are_reported_as_not_checked_when_absent() -> None:
    html = section(render_report(load("evidence-sample.json")), "certificates-and-mode")
    assert html.count("Not checked in this run.") == 2
    assert "hsm1 FIPS (declared), hsm2 NON_FIPS (declared)" in html


def test_fields_other_parts_add_later_are_rendered() -> None:
    doc = load("evidence-sample.json")
    doc["keys"]["payments-3des-3key"].update(type="des3", target_label="payments-3des-v2")
    doc["keys"]["data-aes256"].update(type="aes", size=256, target_label="data-aes256")
    doc["keys"]["ca-ec-p384"].update(type="ec", curve="P-384")
    doc["signing"] = {"signers": ["ops-lead", "security-officer", "auditor"], "threshold": 2}
    doc["tls"] = {"hsm2": {"subject": "CN=hsm2.example.internal", "ok": True,
                           "not_after": "2027-06-01T00:00:00+00:00"}}
    doc["mode"] = {"hsm2": {"declared": "NON_FIPS", "observed": "NON_FIPS", "match": True}}
    doc["something_new"] = {"anything": [1, 2]}
    html = render_report(doc)
    row = section(html, "keys")
    row = row[row.index("payments-3des-3key"):]
    row = row[:row.index("</tr>")]
    assert "payments-3des-v2" in row and "<td>des3</td>" in row
    assert "<td>aes, 256 bits</td>" in section(html, "keys")
    assert "<td>ec, P-384</td>" in section(html, "keys")
    assert section(html, "keys").count("on target as") == 1  # only where the label changes
    verify = section(html, "verify")
    assert ("keyparity verify reports/20261123T155848Z-8f8446 --key ops-lead.pub.pem "
            "--key security-officer.pub.pem --key auditor.pub.pem --threshold 2") in verify
    assert "at least 2 of these signatures" in verify
    cm = section(html, "certificates-and-mode")
    assert "Not checked in this run." not in cm
    assert "CN=hsm2.example.internal" in cm and "2027-06-01T00:00:00+00:00" in cm
    assert "observed" in cm and "NON_FIPS" in cm


def test_verify_command_names_the_run_and_default_custodians() -> None:
    verify = section(render_report(load("evidence-sample.json")), "verify")
    assert ("keyparity verify reports/20261123T155848Z-8f8446 --key custodian-1.pub.pem "
            "--key custodian-2.pub.pem --threshold 2") in verify
    for check in ("signatures", "SHA-256", "nothing is missing and nothing extra"):
        assert check in verify


def test_keys_to_rotate_carry_the_advice() -> None:
    rotate = section(render_report(load("evidence-sample.json")), "rotate")
    assert "hsm-bound-aes256" in rotate
    assert "decrypt with the old key and re-encrypt with the new one" in rotate
    assert "Keys to rotate (1)" in rotate


def test_a_key_known_only_from_failing_tests_is_listed_with_no_verdict_decided() -> None:
    """The report shows the verdict the run recorded and never decides one: a key with no
    recorded verdict (evidence of a run that did not finish) is listed as such, with its
    failing test."""
    doc = load("evidence-sample.json")
    entry = doc["keys"].pop("data-aes256")
    assert entry
    for t in doc["tests"]:
        if t["key"] == "data-aes256":
            t.update(outcome="error", phase="setup", message="Failed: find token on hsm1 failed")
    rows = section(render_report(doc), "keys")
    row = rows[rows.index("data-aes256"):]
    row = row[:row.index("</tr>")]
    assert ">not recorded<" in row and ">failed<" not in row and ">passed<" not in row
    assert "Failed: find token on hsm1 failed" in render_report(doc)


def test_the_report_shows_the_recorded_key_verdict_whatever_the_tests_say() -> None:
    doc = load("evidence-sample.json")
    doc["keys"]["data-aes256"]["verdict"] = "partial"  # recorded; its tests all passed
    rows = section(render_report(doc), "keys")
    row = rows[rows.index("data-aes256"):]
    assert ">partial<" in row[:row.index("</tr>")]


def test_sparse_and_empty_documents_render() -> None:
    assert "verdict-incomplete" in render_report({})
    doc = load("evidence-sample.json")
    for name in ("summary", "run_facts", "clusters"):
        doc.pop(name)
    for entry in doc["keys"].values():
        entry.pop("attributes", None)
        entry.pop("identity", None)
    html = render_report(doc)
    assert "verdict-incomplete" in html  # no summary: the run did not finish
    assert "No cluster information was recorded." in html


def test_write_report_writes_report_html(tmp_path: Path) -> None:
    path = write_report(tmp_path / "run", load("evidence-sample.json"))
    assert path == tmp_path / "run" / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


# ---- a real browser (tests/helpers/browser.py) ----------------------------------------------

def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour))


@pytest.mark.parametrize(("name", "verdict", "colour", "other"), [
    ("evidence-sample.json", "PASS", PASS_GREEN, FAIL_RED),
    ("evidence-failing.json", "FAIL", FAIL_RED, PASS_GREEN),
])
def test_headless_chromium_shows_the_verdict_banner(tmp_path: Path, name: str, verdict: str,
                                                    colour: tuple[int, int, int],
                                                    other: tuple[int, int, int]) -> None:
    from PIL import Image

    report = write_report(tmp_path / "run", load(name))
    url = report.resolve().as_uri()

    dom = chromium(tmp_path, "--dump-dom", url, size=(1280, 900)).stdout
    assert re.search(rf'<header id="verdict" class="banner verdict-{verdict.lower()}"', dom)
    assert re.search(rf'id="verdict-word">\s*{verdict}\s*<', dom)
    assert "How to verify this bundle" in dom

    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", url, size=(1280, 900))
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 900)
        # the banner spans the width at the top: sample a grid over it (text is white)
        samples = [rgb.getpixel((x, y)) for x in range(8, 1240, 24) for y in range(6, 200, 12)]
        share = sum(near(p, colour) for p in samples) / len(samples)
        assert share > 0.6, f"only {share:.0%} of the banner region is {verdict} colour"
        assert not any(near(p, other) for p in samples)
        # and below the banner the page is white, not the verdict colour
        assert near(rgb.getpixel((6, 880)), (255, 255, 255), 4)


def test_an_unsigned_bundle_says_so() -> None:
    doc = load("evidence-sample.json")
    doc["signing"] = {"signers": [], "threshold": 0}
    verify = section(render_report(doc), "verify")
    assert "This bundle is not signed" in verify
    assert "keyparity verify reports/20261123T155848Z-8f8446" in verify


def test_the_scope_names_the_expected_tests_that_did_not_run_and_an_interruption() -> None:
    doc = load("evidence-sample.json")
    doc["summary"] = {**doc["summary"], "scope": {
        "keys_total": 8, "keys_to_migrate": 7, "keys_proven": 7, "suites": {},
        "not_run": [f"test_x[key {i}]" for i in range(25)], "interrupted": "SIGTERM"}}
    scope = section(render_report(doc), "scope")
    assert "Expected, not run" in scope
    assert "25: <code" in scope and "test_x[key 19]" in scope and "test_x[key 20]" not in scope
    assert "and 5 more" in scope
    assert "by SIGTERM" in scope
    del doc["summary"]["scope"]["not_run"], doc["summary"]["scope"]["interrupted"]
    scope = section(render_report(doc), "scope")
    assert "Expected, not run" not in scope and "Interrupted" not in scope


def test_the_banner_names_the_failed_keys_with_their_reasons_one_cause_once() -> None:
    doc = load("evidence-failing.json")
    doc["summary"]["causes"] = {
        "tokenization-aes128": {"reason": "CKA_VALUE_LEN differs: hsm1 16, hsm2 0",
                                "tests": [], "dependent": []},
        "api-hmac": {"reason": "other key material", "tests": [], "dependent": []}}
    banner = render_report(doc)
    banner = banner[banner.index('<ul class="failed-keys"'):banner.index("</ul>")]
    items = re.findall(r"<li>(.*?)</li>", banner, re.S)
    assert [re.sub(r"<[^>]+>", "", i) for i in items] == [
        "tokenization-aes128: CKA_VALUE_LEN differs: hsm1 16, hsm2 0",
        "api-hmac: other key material"]
    # one reason of several keys (a cluster that is down) is said once, with their names
    for label in ("tokenization-aes128", "api-hmac", "data-aes256", "ca-ec-p384"):
        doc["keys"][label]["verdict"] = "failed"
        doc["summary"]["causes"][label] = {"reason": "hsm1 is unavailable", "tests": [],
                                           "dependent": []}
    banner = render_report(doc)
    banner = banner[banner.index('<ul class="failed-keys"'):banner.index("</ul>")]
    items = [re.sub(r"<[^>]+>", "", i) for i in re.findall(r"<li>(.*?)</li>", banner, re.S)]
    assert items[0].count("hsm1 is unavailable") == 1 and items[0].endswith(
        ": hsm1 is unavailable")
    assert items[0].count(",") == 2  # three keys named
    assert items[-1].startswith("and 1 more failed key")
