"""Equivalence: the same key material on both clusters, shown by key check values or public
keys, and by vectors produced on one cluster and consumed on the other, in both directions."""
import hashlib

import pytest

from keyparity.hsm.identity import prove
from keyparity.hsm.vectors import DIRECTIONS, NotApplicable, exchange


def test_key_check_values_match(migrated, hsm_evidence):
    fresh = prove(migrated.spec, migrated.source, migrated.target)
    hsm_evidence(identity=fresh)
    assert fresh["match"], f"{fresh['source']} != {fresh['target']} ({fresh['method']})"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_output_of_one_cluster_is_accepted_by_the_other(migrated, vector, direction, parties,
                                                        hsm_run, hsm_evidence):
    source, target = parties
    tc_id = int(hashlib.sha256(hsm_evidence.nodeid.encode()).hexdigest()[:6], 16)
    try:
        record = exchange(vector, direction, source, target, label=migrated.spec.label,
                          seed=hsm_run.seed, tc_id=tc_id)
    except NotApplicable as exc:
        hsm_evidence(vectors=[{"vector": vector, "direction": direction, "result": "n/a",
                               "comment": str(exc)}])
        pytest.skip(f"not applicable: {exc}")
    hsm_evidence(vectors=[record])
    assert record["ok"], f"{record['producer']} -> {record['consumer']}: {record['comment']}"
