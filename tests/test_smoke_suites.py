"""The suites pass on a correct migration of every key type, and record evidence."""
from conftest import DEMO_KEYS, evidence, run_suites


def test_all_suites_pass_on_a_correct_migration(lab, suites):
    lab.seed(DEMO_KEYS)
    result = run_suites(suites, lab.profile(DEMO_KEYS))
    result.assert_outcomes(passed=40)  # 3DES: hsm1 (FIPS) does not produce: n/a records
    doc = evidence(suites)
    assert doc["summary"]["verdict"] == "PASS"
    assert {k: v["verdict"] for k, v in doc["keys"].items()} == {
        k["label"]: "passed" for k in DEMO_KEYS}
