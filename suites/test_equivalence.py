"""Equivalence: the same key material on both clusters, proven by both tokens computing over a
fresh random challenge (keyparity.hsm.proof: at least 128 bits of output, or a key pair's
public key and each private half's answer), and by vectors produced on one cluster and
consumed on the other, in both directions."""
import pytest

from keyparity.errors import KeyparityError
from keyparity.hsm.identity import check_values
from keyparity.hsm.proof import prove_key
from keyparity.hsm.vectors import exchanges


def test_key_check_values_match(migrated, hsm_evidence):
    """The strong proof again, with a challenge of its own (the migration's was made before
    the write); the name is the check's, kept: a 3-byte KCV proves nothing here. The check
    values a person compares with a payment HSM are recorded beside it, each labelled with its
    algorithm (TDES ANSI X9.24; AES the legacy ECB one and X9.24-1:2017's CMAC), never acted on."""
    hsm_evidence(check_values=[
        value for side in (migrated.source, migrated.target)
        for value in check_values(side.key, migrated.spec.type, side.cluster,
                                  fips=side.mode == "FIPS")])
    try:
        fresh = prove_key(migrated.spec, migrated.source, migrated.target).record()
    except KeyparityError as exc:
        pytest.fail(f"{migrated.spec.label!r}: {exc}", pytrace=False)
    hsm_evidence(identity=fresh)
    assert fresh["match"], (f"other key material ({fresh['method']}): SHA-256 "
                            f"{migrated.source.cluster} {fresh['source'][:16]}..., "
                            f"{migrated.target.cluster} {fresh['target'][:16]}...")


def test_output_of_one_cluster_is_accepted_by_the_other(migrated, parties, hsm_run,
                                                        hsm_profile, hsm_evidence):
    """Every vector of the key, made on each cluster and consumed on the other: one record per
    vector and direction in the evidence (Wycheproof's test cases of one group); in production
    a salted commitment stands for each message and output (keyparity.minimal)."""
    source, target = parties
    records: list[dict] = []
    try:
        for record in exchanges(migrated.spec.vectors, source, target, label=migrated.spec.label,
                                seed=hsm_run.seed, case=hsm_evidence.nodeid,
                                minimal=hsm_profile.production):
            records.append(record)
    finally:
        hsm_evidence(vectors=records)
    ran = [r for r in records if r["result"] != "n/a"]
    if not ran:
        pytest.skip("not applicable: " + ("; ".join(r["comment"] for r in records)
                                          or f"no vectors for {migrated.spec.type}"))
    failed = [r for r in ran if not r["ok"]]
    assert not failed, "; ".join(f"{r['vector']} {r['producer']} -> {r['consumer']}: "
                                 f"{r['comment']}" for r in failed)
