"""The plan's signatures time-stamped one by one (``keyparity plan create --unsigned``, then each
custodian's ``plan sign``) by a local TSA in its own process, and ``plan verify --tsa-root``;
and ``keyparity demo tsa --profile``'s profile naming the TSA."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from local_tsa import local_tsa

from keyparity.attest.custodians import file_custodian
from keyparity.demo_tsa import with_timestamp
from keyparity.profile import load_profile

KEYS = [{"label": "k-aes", "type": "aes", "size": 128}]


def keyparity(lab: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], env=lab.env,
                          capture_output=True, text=True, check=False, cwd=lab.root,
                          timeout=300)


def test_each_custodians_plan_signature_is_stamped_when_it_is_made(lab, tmp_path):
    lab.seed(KEYS)
    publics = [file_custodian(lab.root / "custodians", n) for n in ("c1", "c2")]
    signers = [{"name": n, "type": "file", "path": str(lab.root / "custodians" / f"{n}.key.pem")}
               for n in ("c1", "c2")]
    keys = [a for p in publics for a in ("--key", str(p))]
    plan = lab.root / "plan"
    with local_tsa(tmp_path / "tsa") as tsa:
        profile = lab.profile(KEYS, evidence={"signers": signers, "threshold": 2,
                                              "timestamp": {"url": tsa.url,
                                                            "ca": str(tsa.root)}})
        made = keyparity(lab, "plan", str(profile), "--out", str(plan), "--unsigned")
        assert made.returncode == 0, made.stderr
        assert not (plan / "plan.tsr.json").exists()  # no signature, nothing to stamp
        stamped = []
        for name in ("c1", "c2"):
            signed = keyparity(lab, "plan", "sign", str(plan), "--profile", str(profile),
                               "--signer", name)
            assert signed.returncode == 0, signed.stderr
            stamped.append(json.loads((plan / "plan.tsr.json").read_text())["tokens"])
        again = keyparity(lab, "plan", "sign", str(plan), "--profile", str(profile),
                          "--signer", "c2")
        assert again.returncode == 0 and "already; unchanged" in again.stdout
    envelope = json.loads((plan / "plan.dsse.json").read_text())
    keyids = [s["keyid"] for s in envelope["signatures"]]
    assert [[t["keyid"] for t in tokens] for tokens in stamped] == [keyids[:1], keyids]
    assert stamped[1][0] == stamped[0][0]  # c1's token kept as it was: its time is c1's

    ok = keyparity(lab, "plan", "verify", str(plan), *keys, "--tsa-root", str(tsa.root))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("time-stamped by keyparity test TSA at ") == 2
    (plan / "plan.tsr.json").unlink()
    removed = keyparity(lab, "plan", "verify", str(plan), *keys, "--tsa-root", str(tsa.root))
    assert removed.returncode == 1 and "time-stamped by" not in removed.stdout
    assert "holds no token: the time-stamps were removed" in removed.stdout


def test_the_demo_tsa_profile_names_the_tsa_with_every_path_absolute(lab, tmp_path):
    pem = lab.root / "c.key.pem"
    file_custodian(lab.root, "c")
    profile = lab.profile(KEYS, evidence={"signers": [{"name": "c", "type": "file",
                                                       "path": "./c.key.pem"}]})
    url, root = tmp_path / "url", tmp_path / "root.pem"
    url.write_text("http://127.0.0.1:1/\n")
    root.write_text("")

    out = with_timestamp(profile, url, root, tmp_path / "elsewhere" / "lab.yaml")

    doc = yaml.safe_load(out.read_text())
    assert doc["evidence"]["timestamp"] == {"url": f"file:{url}", "ca": str(root),
                                            "hash": "sha256"}
    assert doc["evidence"]["signers"][0]["path"] == str(pem)  # ./c.key.pem, from elsewhere
    loaded = load_profile(out)
    assert loaded.evidence.timestamp is not None and loaded.evidence.timestamp.ca == root
    assert loaded.name == load_profile(profile).name


def test_a_run_refuses_a_plan_stamped_by_a_tsa_outside_its_profiles_root(lab, tmp_path):
    """The run that follows a plan checks the plan's time-stamps against its own profile's TSA
    root (approval.load): tokens made by another TSA are not the profile's independent time."""
    from keyparity.attest.approval import load
    from keyparity.attest.plan import PlanError
    from keyparity.hsm.login import LoginGate

    lab.seed(KEYS)
    file_custodian(lab.root / "custodians", "c1")
    signers = [{"name": "c1", "type": "file", "path": str(lab.root / "custodians" / "c1.key.pem")}]
    plan = lab.root / "plan"
    with local_tsa(tmp_path / "rogue") as rogue, local_tsa(tmp_path / "tsa") as tsa:
        def profile(by: Any, name: str):
            return lab.profile(KEYS, name=name, evidence={
                "signers": signers, "threshold": 1,
                "timestamp": {"url": by.url, "ca": str(by.root)}})
        made = keyparity(lab, "plan", str(profile(rogue, "lab")), "--out", str(plan))
        assert made.returncode == 0, made.stderr
        assert (plan / "plan.tsr.json").is_file()
        own = load_profile(profile(tsa, "lab"))
        with pytest.raises(PlanError, match="does not verify") as refused:
            load(own, plan, LoginGate(None))
    assert "time" in str(refused.value).lower(), refused.value
