"""What the run acts on is proven by the strong proof (keyparity.hsm.proof), never by a 3-byte
KCV or by metadata, on real SoftHSM tokens through the real suites:

* the signed plan commits to >= 128 bits of token output over a challenge it stores: a source
  key swapped after the signatures for one with the planned 3-byte KCV is refused before
  anything is written;
* "source unchanged during the run" includes the material: a source key replaced by other
  material under the same label, CKA_ID and size after its tests ran fails the run;
* at the end of every run each key is exactly one object on each cluster: a second copy
  under a key's label (as two concurrent runs with different journals leave) fails the run,
  naming the key (and the next run fails that key: its label holds two objects).
"""
from __future__ import annotations

import shutil

import pytest

from conftest import HELPERS, evidence, run_suites
from test_bad_input import counts
from test_last_copy import colliding_profile, put
from test_plan import signed_plan

UNCHANGED = "suites/test_census.py::test_source_unchanged_during_the_run"
COPIES = "suites/test_census.py::test_each_key_is_one_object_on_each_cluster"
PLUGIN = HELPERS / "mid_run.py"


def _test(doc: dict, nodeid: str) -> dict:
    return next(t for t in doc["tests"] if t["nodeid"] == nodeid)


def test_a_source_key_with_the_planned_kcv_but_other_material_is_refused_before_any_write(
        lab, suites):
    profile, _, twin = colliding_profile(lab)
    plan_dir = signed_plan(lab, profile)  # both custodians signed k-aes as it was
    put(lab, "hsm1", "k-aes", twin)  # then an insider's key with the planned KCV
    before = counts(lab)

    result = run_suites(suites, profile, f"--hsm-plan={plan_dir}")

    lines = [ln for ln in result.outlines + result.errlines if ln.strip()]
    assert result.ret == pytest.ExitCode.USAGE_ERROR and len(lines) == 1, lines
    assert lines[0].startswith("ERROR: the run does not follow the plan plan-"), lines[0]
    assert "nothing was written: 'k-aes': other key material under the label: " in lines[0]
    assert "aes-ecb-decrypt over the challenge" in lines[0]
    assert counts(lab) == before and not (suites.path / "reports").exists()


def test_a_source_key_replaced_by_other_material_during_the_run_fails_it(lab, suites,
                                                                          monkeypatch):
    profile, _, twin = colliding_profile(lab)
    shutil.copy(PLUGIN, suites.path / "mid_run.py")
    monkeypatch.setenv("KEYPARITY_MID_RUN", f"swap-source:k-aes:{twin.hex()}")

    result = run_suites(suites, profile, "-pmid_run")

    doc = evidence(suites)
    assert result.ret == 1
    assert doc["summary"]["verdict"] == "FAIL"
    end = _test(doc, UNCHANGED)
    assert end["outcome"] == "failed", end
    assert ("changed: 'k-aes' (secret aes, 256 bits, CKA_ID (empty)): other key material "
            "(aes-ecb-decrypt SHA-256 ") in end["message"], end["message"]
    assert "appeared" not in end["message"] and "disappeared" not in end["message"]
    # every key's own tests passed before the swap: only the census saw it
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == dict.fromkeys(
        ["k-aes", "k-hmac", "k-ec"], "passed")
    start = doc["census"]["source"]["start"]
    assert len(bytes.fromhex(start["challenge"])) == 32
    aes = next(o for o in start["objects"] if o["label"] == "k-aes")
    assert aes["material"]["method"] == "aes-ecb-decrypt" and len(aes["material"]["sha256"]) == 64


def test_a_second_copy_under_a_keys_label_at_the_end_of_the_run_fails_the_run_naming_it(
        lab, suites, monkeypatch):
    profile, planned, _ = colliding_profile(lab)
    shutil.copy(PLUGIN, suites.path / "mid_run.py")
    monkeypatch.setenv("KEYPARITY_MID_RUN", f"copy-target:k-aes:{planned.hex()}")

    result = run_suites(suites, profile, "-pmid_run")

    doc = evidence(suites)
    assert result.ret == 1 and doc["summary"]["verdict"] == "FAIL"
    check = _test(doc, COPIES)
    assert check["outcome"] == "failed", check
    assert check["message"] == (
        "1 key(s) are not exactly one object on each cluster:\n'k-aes': 2 secret key objects "
        "labelled 'k-aes' on hsm2: a key must be exactly one object; another is an "
        "unaccounted copy of its key material")
    copies = doc["census"]["copies"]
    assert copies["counts"] == {"k-aes": {"hsm1": {"secret": 1, "public": 0},
                                          "hsm2": {"secret": 2, "public": 0}}}
    assert copies["keys_counted"] == {"hsm1": 3, "hsm2": 3}
    result.stdout.fnmatch_lines([f"FAILED {COPIES}*"])
    # a run with nothing wrong: the check passes, and says what it counted
    lab.tokens({"op": "destroy", "token": "hsm2", "label": "k-aes", "classes": ["secret"]})
    monkeypatch.delenv("KEYPARITY_MID_RUN")
    again = run_suites(suites, profile)
    doc = evidence(suites)
    assert again.ret == 0 and _test(doc, COPIES)["outcome"] == "passed"
    assert doc["census"]["copies"] == {"keys_counted": {"hsm1": 3, "hsm2": 3}, "problems": [],
                                       "counts": {}}
