"""Migration: every inventory key is on the target (moved now, or found), or reported as one
to rotate. Never silently skipped."""
import pytest


def test_key_is_on_the_target(migration, hsm_evidence):
    hsm_evidence(migration=migration.record(), disposition=migration.spec.disposition)
    if migration.status == "rotate":
        pytest.skip(f"ROTATE {migration.spec.label}: {migration.detail}")
    assert migration.ok, migration.detail
