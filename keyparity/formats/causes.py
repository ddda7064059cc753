"""One root cause, counted once, the same way in every test format (junit.xml, Allure).

A key whose migration failed fails one test, its migration's. Each proof of that key (KCV,
vectors, attributes) then ends in its set-up, saying it is ``not proven, because its migration
failed`` (fixtures/keys.py, ``migrated``): pytest reports each as an error of its own, so one
broken key read as one failure and three errors. Here those proofs are what they are: not run,
because of a failure already counted. JUnit and Allure show them as skipped with the reason
``not run: its migration failed`` and the failure is the migration's alone. JUnit does so only
where that failure is in the same file (the migration test selected): a deselected migration
leaves the proof's error counted, so a broken key never counts as nothing. Allure, written as
each test ends, cannot wait for the migration test and always says skipped.

Only the formats change: the evidence keeps every test as it ended, and the verdict (decided
from the evidence, keyparity.evidence.verdict) is unchanged: a run with a failed key FAILs.

The rest of the rule is JUnit's, which Allure follows so that both count alike: a test that
fails in its call is ``failed`` (a JUnit ``failure``), one whose set-up or teardown fails is
``broken`` (a JUnit ``error``).
"""
from __future__ import annotations

# the test whose failure is the root cause the proofs depend on (suites/test_migration.py)
MIGRATION = "test_key_is_on_the_target"
# what fixtures/keys.py's ``migrated`` says of a key whose migration failed
DEPENDENT = "not proven, because its migration failed"
NOT_RUN = "not run: its migration failed"

PASSED, FAILED, BROKEN, SKIPPED = "passed", "failed", "broken", "skipped"


def dependent(message: str | None) -> bool:
    """The test was stopped by its key's failed migration, a cause counted elsewhere."""
    return bool(message) and DEPENDENT in str(message)


def counted_elsewhere(message: str | None, migration_failed: bool) -> bool:
    """A set-up failure that is its key's failed migration, counted where that failure is in
    the same record (the evidence's tests, one junit.xml): the fixture's marker, and the key's
    migration test failed there. With the migration test deselected the proof's failure is
    its own, so a broken key never counts as nothing."""
    return migration_failed and dependent(message)


def status(when: str, outcome: str, message: str | None = None) -> str:
    """A test phase's status in Allure's words, by JUnit's rule: ``failed`` (a failed call),
    ``broken`` (a failed set-up or teardown), ``skipped`` (a skip, or a proof its key's failed
    migration stopped), ``passed``."""
    if outcome == "skipped":
        return SKIPPED
    if outcome == "passed":
        return PASSED
    if when == "setup" and dependent(message):
        return SKIPPED
    return FAILED if when == "call" else BROKEN


__all__ = ["BROKEN", "DEPENDENT", "FAILED", "MIGRATION", "NOT_RUN", "PASSED", "SKIPPED", "counted_elsewhere",
           "dependent",
           "status"]
