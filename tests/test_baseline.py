"""Baseline and re-verify (issue 14) on real SoftHSM tokens: a signed baseline of hsm1, then a
re-verify of a faithful copy (a restore from backup) passes, while other key material under
the same label, a flipped attribute, a missing key, an extra key, and a tampered or unsigned
baseline each go red naming the key or the file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import evidence, run_suites

from keyparity.evidence.custodians import file_custodian
from keyparity.hsm.softhsm import restore_copy

KEYS = [
    {"label": "k-aes128", "type": "aes", "size": 128},
    {"label": "k-des3", "type": "des3"},
    {"label": "k-hmac", "type": "generic-secret", "size": 256},
    {"label": "k-rsa", "type": "rsa", "size": 2048},
    {"label": "k-ec", "type": "ec", "curve": "P-256"},
]


def _cluster(lab: Any, name: str) -> dict[str, Any]:
    return {"name": name, "module": lab.module, "token_label": "hsm1",
            "pin": f"file:{lab.root / 'hsm1.pin'}", "mode": "NON_FIPS"}


def _signers(lab: Any) -> dict[str, Any]:
    file_custodian(lab.root, "auditor")
    return {"signers": [{"name": "auditor", "type": "file",
                         "path": str(lab.root / "auditor.key.pem")}]}


def take_baseline(lab: Any, suites: pytest.Pytester, signed: bool = True) -> Path:
    """A baseline run of hsm1; returns its run directory."""
    profile = lab.profile(KEYS, name="base", clusters={"source": _cluster(lab, "hsm1")},
                          migration={"mode": "baseline"}, compliance=None,
                          evidence=_signers(lab) if signed else None)
    result = run_suites(suites, profile)
    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS", doc["summary"]
    return suites.path / "reports" / doc["run"]["run_id"]


def reverify(lab: Any, suites: pytest.Pytester, base: Path, conf: Path | None = None
             ) -> pytest.RunResult:
    top: dict[str, Any] = {"clusters": {"target": _cluster(lab, "hsm1-now")},
                           "migration": {"mode": "reverify", "baseline": str(base)},
                           "compliance": None, "evidence": _signers(lab)}
    if conf is not None:
        top["module_env"] = {"SOFTHSM2_CONF": str(conf)}
    return run_suites(suites, lab.profile(KEYS, name="now", **top))


def red(suites: pytest.Pytester) -> dict[str, str]:
    """The failed tests of the newest run, by function[params], with their messages."""
    return {t["nodeid"].rsplit("::", 1)[-1]: t.get("message", "")
            for t in evidence(suites)["tests"] if t["outcome"] in ("failed", "error")}


def test_a_faithful_restored_copy_reverifies_pass(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    raw = (base / "baseline.json").read_bytes()
    data = json.loads(raw)
    assert sorted(data["keys"]) == sorted(k["label"] for k in KEYS)
    # the statement covers baseline.json; no PIN and no key material in it
    statement = json.loads((base / "statement.json").read_text())
    assert {s["name"] for s in statement["subject"]} >= {"baseline.json", "evidence.json"}
    assert lab.pins["hsm1"].encode() not in raw
    aes = data["keys"]["k-aes128"]
    assert {r["vector"] for r in aes["known_answers"]} == {"aes-ecb", "aes-cbc", "aes-ctr",
                                                           "aes-gcm"}
    assert all(r["ok"] for r in aes["known_answers"]) and aes["public_key"] is None
    assert data["keys"]["k-rsa"]["public_key"] and len(data["census"]) >= len(KEYS)

    conf = restore_copy(lab.root, "hsm1", lab.root / "restored")
    result = reverify(lab, suites, base, conf)

    assert result.ret == 0, result.stdout.str()
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS"
    assert doc["baseline"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert doc["baseline"]["run_id"] == base.name
    assert doc["summary"]["headline"].startswith(
        f"All {len(KEYS)} keys on hsm1-now are unchanged since the baseline of {base.name}, ")
    checks = doc["keys"]["k-ec"]["reverify"]["known_answers"]
    assert checks and all(c["ok"] for c in checks)


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param([{"op": "destroy", "token": "hsm1", "label": "k-aes128", "classes": ["secret"]},
                  {"op": "create", "token": "hsm1", "label": "k-aes128",
                   "key": {"label": "k-aes128", "type": "aes", "size": 128}}],
                 {"test_key_check_value_is_unchanged[k-aes128]": "holds other key material",
                  "test_known_answers_still_hold[k-aes128]": "k-aes128",
                  "test_census_matches_the_baseline": "changed: 'k-aes128'"},
                 id="other-material-same-label"),
    pytest.param([{"op": "set", "token": "hsm1", "label": "k-hmac", "class": "secret",
                   "attribute": "CKA_DERIVE", "value": True}],
                 {"test_attributes_are_identical[k-hmac]": "CKA_DERIVE: was False, is True"},
                 id="flipped-attribute"),
    pytest.param([{"op": "destroy", "token": "hsm1", "label": "k-rsa",
                   "classes": ["private", "public"]}],
                 {"test_key_is_still_there[k-rsa]": "'k-rsa' (rsa) is not on hsm1-now",
                  "test_census_matches_the_baseline": "lost: 'k-rsa'"},
                 id="missing-key"),
    pytest.param([{"op": "create", "token": "hsm1", "label": "k-extra",
                   "key": {"label": "k-extra", "type": "aes", "size": 256}}],
                 {"test_census_matches_the_baseline": "added: 'k-extra'"},
                 id="extra-key"),
])
def test_a_changed_cluster_goes_red_naming_the_key(lab, suites, change, expect):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    lab.tokens(*change)

    result = reverify(lab, suites, base)

    assert result.ret == 1, result.stdout.str()
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "FAIL"
    got = red(suites)
    for test, words in expect.items():
        assert test in got, (test, sorted(got))
        assert words in got[test], (test, got[test])
    # nothing else failed: every other key is still proven
    assert set(got) == set(expect), sorted(set(got) - set(expect))


def test_a_tampered_baseline_is_refused_and_nothing_runs(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites)
    data = json.loads((base / "baseline.json").read_text())
    data["keys"]["k-aes128"]["identity"]["value"] = "000000"
    (base / "baseline.json").write_text(json.dumps(data))
    runs = sorted((suites.path / "reports").iterdir())

    result = reverify(lab, suites, base)

    assert result.ret == 4, result.stdout.str()  # a usage error: nothing ran
    err = result.stderr.str()
    assert "migration.baseline: the baseline" in err and "does not verify" in err
    assert "baseline.json" in err
    assert sorted((suites.path / "reports").iterdir()) == runs  # no run directory written


def test_an_unsigned_baseline_is_refused(lab, suites):
    lab.seed(KEYS)
    base = take_baseline(lab, suites, signed=False)

    result = reverify(lab, suites, base)

    assert result.ret == 4, result.stdout.str()
    assert "does not verify" in result.stderr.str()
    assert "unsigned" in result.stderr.str()


def test_a_profile_names_the_clusters_its_mode_needs(lab):
    from keyparity.errors import KeyparityError
    from keyparity.profile import load_profile

    both = lab.profile(KEYS, name="both", migration={"mode": "baseline"})
    with pytest.raises(KeyparityError, match="clusters.target.*not allowed with "
                                             "migration.mode baseline"):
        load_profile(both)
    none = lab.profile(KEYS, name="none", clusters={"target": _cluster(lab, "x")},
                       migration={"mode": "reverify"}, compliance=None)
    with pytest.raises(KeyparityError, match="migration.baseline.*required with "
                                             "migration.mode reverify"):
        load_profile(none)
    empty = lab.profile(KEYS, name="empty", clusters={"target": _cluster(lab, "x")},
                        migration={"mode": "reverify", "baseline": str(lab.root)},
                        compliance=None)
    with pytest.raises(KeyparityError, match="holds no baseline.json"):
        load_profile(empty)
