"""Minimal data in production (keyparity.minimal): a production run's bundle - every artefact,
the Allure archive's members included - holds no plaintext/ciphertext pair of a key and no
absolute path of a secret or key file, and says its classification. A test run of the same keys
with the same seed records the vectors' messages and outputs: the same scan finds them there,
so the scan is shown to see what it looks for."""
from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from conftest import evidence, run_suites
from test_aws import validate_evidence
from test_bad_input import edit_profile
from test_plan import signed_plan
from test_production_guard import KEYS, TARGET_ID, production

SEED = "20261207"
PAIR = ("msg", "iv", "aad", "ct", "tag", "sig")


def artefacts(run_dir: Path) -> dict[str, bytes]:
    """Every file of a bundle by its path, and every member of an archive in it."""
    out: dict[str, bytes] = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out[str(path.relative_to(run_dir))] = data
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        out[f"{path.name}!{member.name}"] = tar.extractfile(member).read()
        elif path.suffix == ".zip":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                out |= {f"{path.name}!{n}": archive.read(n) for n in archive.namelist()}
    return out


def forms(value: bytes) -> list[bytes]:
    """How a byte string may be written in an artefact: raw, hex either case, base64."""
    text = value.hex()
    return [value, text.encode(), text.upper().encode(), base64.b64encode(value)]


def pairs(doc: dict[str, Any]) -> dict[str, bytes]:
    """Each message and output of every vector a run recorded (8 bytes or more)."""
    return {f"{label} {v['vector']} {v['direction']} {f}": bytes.fromhex(v[f])
            for label, key in doc["keys"].items() for v in key.get("vectors", ())
            for f in PAIR if f in v and len(v[f]) >= 16}


def found_in(files: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [f"{name} in {where}" for name, value in needles.items() for where, data in
            files.items() if any(form in data for form in forms(value))]


def secret_paths(lab: Any) -> dict[str, bytes]:
    """The absolute paths of the lab's secret and key files a production profile names."""
    paths = [lab.root / "hsm1.pin", lab.root / "hsm2.pin",
             *(lab.root / "custodians" / f"{n}.key.pem" for n in ("c1", "c2"))]
    assert all(p.is_file() for p in paths)
    return {str(p): str(p).encode() for p in paths}


def test_a_production_bundle_holds_no_pair_of_a_key_and_no_absolute_secret_path(lab, suites):
    lab.seed(KEYS)
    profile = production(lab)
    plan_dir = signed_plan(lab, profile)
    result = run_suites(suites, profile, f"--hsm-confirm={TARGET_ID}", f"--hsm-plan={plan_dir}",
                        f"--hsm-seed={SEED}")
    prod = evidence(suites)
    validate_evidence(prod)
    prod_dir = (suites.path / "reports" / "latest").resolve()
    assert prod["run"]["classification"] == "confidential"
    assert prod["run"]["minimal_data"].startswith("production: no plaintext/ciphertext pair")
    assert {k: v["verdict"] for k, v in prod["keys"].items()} == dict.fromkeys(
        (k["label"] for k in KEYS), "passed"), result.stdout.str()
    html = (prod_dir / "report.html").read_text()
    assert '<b id="classification">CONFIDENTIAL</b>' in html

    # the same keys, the same seed, a test environment: its vectors are the pairs to look for
    test_profile = edit_profile(profile, lambda d: d.update(environment="test"))
    run_suites(suites, test_profile, f"--hsm-seed={SEED}")
    test = evidence(suites)
    test_dir = (suites.path / "reports" / "latest").resolve()
    needles = pairs(test)
    assert len(needles) >= 10, "the test run records its vectors' messages and outputs"
    assert found_in(artefacts(test_dir), needles), "the scan finds the pairs where they are"

    files = artefacts(prod_dir)
    assert {"evidence.json", "report.html", "junit.xml", "cbom.json"} <= set(files)
    assert any(name.startswith("allure-results.tar.gz!") for name in files)
    assert found_in(files, needles) == []
    assert found_in(files, secret_paths(lab)) == []
    committed = [v for k in prod["keys"].values() for v in k["vectors"] if v["result"] == "valid"]
    assert committed and all(v["commitment"]["salt"] == "discarded"
                             and not set(PAIR) & set(v) for v in committed)

