"""Two runs with the same ``--hsm-seed`` on two fresh labs record the same evidence, but for
what must differ: times, run ids, token serials and paths, and what identifies each lab's own
freshly generated key material (KCVs, fingerprints, the strong proof's challenges and
commitments). The redesigns of the evidence, the formats and the suites keep this true: the
evidence is data, decided once, laid out the same way whatever code wrote it."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conftest import DEMO_KEYS, fresh_lab

SEED = "--hsm-seed=1249166428"
# fields whose values are the run's own (when, where, which run) or the lab's own key material
VOLATILE = {"started", "finished", "duration_s", "run_id", "ts", "time", "created", "at",
            "verified_at", "git_commit", "command", "elapsed_s", "pid", "path", "serial",
            "token_serial", "challenge", "sha256", "kcv", "value", "fingerprint", "digest",
            "commitment", "journal_seqs", "head", "rootdir", "host", "python", "uuid",
            # outputs of each lab's own key (the inputs the seed chose, msg/iv/aad, are kept)
            "ct", "tag", "sig", "modulus", "check_value", "profile_sha256",
            # the key of each lab's own approver (its signed wrap exception)
            "keyid"}
# dicts whose "source" and "target" are the two sides' values of the lab's own key material
MATERIAL = {"identity"}
PATTERNS = (
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(?:\+00:00|Z)?"), "<time>"),
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}"), "<run>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"/[\w./-]*keyparity-lab-[\w./-]*|/tmp/[\w./-]+"), "<path>"),
    # OSCAL's text of each key's identity: the lab's own material, as in the evidence
    (re.compile(r"(source|target) `[0-9a-f]{64}`"), r"\1 `<identity>`"),
)


def normal(value: Any, material: bool = False) -> Any:
    if isinstance(value, dict):
        if value.get("attribute") == "check_value":  # a difference the token reports
            material = True
        return {k: "<v>" if k in VOLATILE or (material and k in ("source", "target"))
                else normal(v, k in MATERIAL) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str):
        for pattern, mark in PATTERNS:
            value = pattern.sub(mark, value)
    return value


def one_run(pytester, tmp: Path) -> dict[str, Any]:
    with fresh_lab() as lab:
        lab.seed(DEMO_KEYS)
        reports = tmp / "reports"
        result = pytester.runpytest_subprocess(
            "suites", f"--hsm-profile={lab.profile(DEMO_KEYS)}", f"--hsm-reports-dir={reports}",
            SEED, "-p", "no:randomly")
        assert result.ret == 0, result.stdout.str()[-2000:]
        latest = reports / "latest"
        return {name: json.loads((latest / name).read_text())
                for name in ("evidence.json", "cbom.json", "assessment-results.json")}


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ, as paths (a short list when they are equal but for a
    few values, readable in a failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys())
                for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_two_runs_with_one_seed_record_the_same_evidence(all_suites, tmp_path):
    first = one_run(all_suites, tmp_path / "a")
    second = one_run(all_suites, tmp_path / "b")
    for name in first:
        found = differences(normal(first[name]), normal(second[name]))
        assert not found, f"{name} differs in {len(found)} places:\n" + "\n".join(found)
    # the comparison is not empty: every key's vectors are there, and the seed's inputs count
    keys = first["evidence.json"]["keys"]
    assert keys.keys() == {k["label"] for k in DEMO_KEYS}
    assert all(keys[k]["vectors"] for k in keys)
    changed = json.loads(json.dumps(first["evidence.json"]))
    changed["keys"]["k-aes128"]["vectors"][0]["msg"] = "00"
    assert differences(normal(changed), normal(second["evidence.json"])) == [
        f".keys.k-aes128.vectors[0].msg: '00' != {keys['k-aes128']['vectors'][0]['msg']!r}"]
