"""keyparity.outcome.prove, the one way a suite or a fixture ends a test on a Check: a failed
check fails the test with its message (no traceback), a check with nothing to check skips it
with its reason, a warning becomes a pytest warning; and each suite that proves a check goes red
through it (the suites' own tests: test_tls_suite, test_cloudhsm_suite, test_ownership,
test_lineage...)."""
from __future__ import annotations

import pytest

from keyparity.checks import Check
from keyparity.outcome import CheckWarning, outcome, prove

PASSED = Check(True, "all good")
FAILED = Check(False, "the cluster certificate expired")
NOTHING = Check(True, "", skip="nothing to check: no cloudhsm_cli block")
WARNS = Check(True, "valid", warnings=("expires in 20 days",))


def test_a_passed_check_lets_the_test_go_on() -> None:
    prove(PASSED)
    assert outcome(PASSED) == "passed"


def test_a_failed_check_fails_the_test_with_its_message_and_no_traceback() -> None:
    with pytest.raises(pytest.fail.Exception) as err:
        prove(FAILED, who="hsm2 (target)")
    assert str(err.value) == "hsm2 (target): the cluster certificate expired"
    assert err.value.pytrace is False
    assert outcome(FAILED) == "failed"


def test_a_check_with_nothing_to_check_skips_with_its_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match="^nothing to check: no cloudhsm_cli block$"):
        prove(NOTHING)
    assert outcome(NOTHING) == "skipped"


def test_a_warning_is_a_pytest_warning_of_the_category_given() -> None:
    class Expiring(CheckWarning):
        pass

    with pytest.warns(Expiring, match="^hsm1 \\(source\\): expires in 20 days$"):
        prove(WARNS, who="hsm1 (source)", warning=Expiring)


def test_several_checks_fail_with_every_failed_message_and_skip_only_when_all_skip() -> None:
    other = Check(False, "quorum values differ")
    with pytest.raises(pytest.fail.Exception) as err:
        prove(PASSED, FAILED, NOTHING, other)
    assert str(err.value) == "the cluster certificate expired\nquorum values differ"
    prove(PASSED, NOTHING)  # one had something to check, and passed
    assert outcome(PASSED, NOTHING) == "passed"
    with pytest.raises(pytest.skip.Exception):
        prove(NOTHING, NOTHING)
