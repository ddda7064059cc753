"""Derive ``evidence-failing.json`` from the real passing ``evidence-sample.json``.

Failures injected, in the shapes the suites record them (messages as pytest reports them):
  * tokenization-aes128: an UNEXPECTED attribute difference (value_len 16 -> 0), so the
    attribute test fails;
  * api-hmac: different key material on the target: KCV mismatch and both HMAC vectors fail;
  * a run-level test (no key) errors in teardown.
Verdicts and the summary are recomputed by keyparity's own ``Evidence.finish``.

    python tests/data/make_failing_sample.py
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from keyparity.evidence.facts import Evidence

HERE = Path(__file__).parent


def main() -> None:
    doc = copy.deepcopy(json.loads((HERE / "evidence-sample.json").read_text()))
    doc.pop("summary")
    run = doc["run"]
    run.update(run_id="20261123T160512Z-fa11ed", seed=4096, command=["pytest",
               "--hsm-profile=softhsm", "-n", "2"], started="2026-11-23T16:05:12+00:00")
    run.pop("finished"), run.pop("exit_status")

    tok = doc["keys"]["tokenization-aes128"]
    for d in tok["attributes"]["differences"]:
        if d["attribute"] == "value_len":
            d.update(expected=False, reason="not expected")
    hmac = doc["keys"]["api-hmac"]
    for ident in (hmac["identity"], hmac["migration"]["identity"]):
        ident.update(target="5d0f3a", match=False)
    for vec in hmac["vectors"]:
        vec.update(ok=False, comment="MAC does not verify")

    def fail(nodeid: str, message: str, outcome: str = "failed", phase: str = "call") -> None:
        test = next(t for t in doc["tests"] if t["nodeid"] == nodeid)
        test.update(outcome=outcome, phase=phase, message=message)

    fail("suites/test_attributes.py::test_target_attributes_match_source[tokenization-aes128]",
         "AssertionError: attributes differ:\n"
         "  attribute          source       target         verdict\n"
         "  always_sensitive   True         False          expected: the key existed outside "
         "the target (wrapped) before it was unwrapped, so it was not always sensitive there\n"
         "  value_len          16           0              UNEXPECTED: not expected\n"
         "assert not [Difference(attribute='value_len', source=16, target=0, expected=False, "
         "reason='not expected')]")
    fail("suites/test_equivalence.py::test_key_check_values_match[api-hmac]",
         "AssertionError: ea8e40 != 5d0f3a (HMAC-SHA256 of a 16-byte zero block, first 3 bytes)")
    for direction, who in (("source->target", "hsm1 -> hsm2"), ("target->source", "hsm2 -> hsm1")):
        fail("suites/test_equivalence.py::test_output_of_one_cluster_is_accepted_by_the_other"
             f"[api-hmac-hmac-sha256-{direction}]", f"AssertionError: {who}: MAC does not verify")
    doc["tests"].append({  # a teardown error is reported beside the test's passed call
        "nodeid": "suites/test_preflight.py::test_tokens_accept_the_wrapping_parameters",
        "key": None, "outcome": "error", "phase": "teardown", "duration_s": 0.0031,
        "message": "Failed: wrapping objects could not be destroyed: "
                   "keyparity-wrap-20261123T160512Z-fa11ed on hsm2"})

    with tempfile.TemporaryDirectory() as tmp:
        ev = Evidence(Path(tmp), {})
        ev.doc = doc
        ev.finish(1, expect={})
    doc["run"]["finished"] = "2026-11-23T16:05:14+00:00"
    (HERE / "evidence-failing.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
