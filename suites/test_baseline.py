"""Baseline (``migration.mode: baseline``, one cluster: ``clusters.source``): every inventory
key is recorded as it is now - a commitment to its key material (keyparity.hsm.proof: the
SHA-256 of >= 128 bits of token output over a random challenge, or its public key), every
standard attribute,
known answers the key made itself (ciphertexts of seeded plaintexts, MACs, signatures, an
asymmetric key's public key) and, with a ``cloudhsm_cli`` block, its owner and shared users -
with every key object of the token and, with an ``aws`` block, what AWS says of the cluster.
The run's bundle holds it as ``baseline.json``, signed with the rest; a re-verify run
(suites/test_reverify.py) proves the cluster against it later: after an in-place HSM type
change, a restore from backup, or every night to detect drift."""
import pytest

from keyparity.hsm import proof, snapshot

pytestmark = pytest.mark.baseline


def test_key_is_recorded_in_the_baseline(inventory_key, key_now, hsm_run, cli_view,
                                         hsm_evidence):
    taken = snapshot.of_key(key_now, inventory_key, seed=hsm_run.seed)
    if cli_view.skip_reason() is None:
        taken["cli"] = cli_view.of(inventory_key)
    hsm_evidence(baseline=taken)
    bad = [r for r in taken["known_answers"] if r["ok"] is False]
    assert not bad, (f"{inventory_key.label!r} could not check its own known answers on "
                     f"{key_now.cluster}: " + "; ".join(f"{r['vector']}: {r['comment']}"
                                                         for r in bad))


def test_every_key_object_is_recorded(the_cluster, hsm_evidence):
    taken = snapshot.census_objects(the_cluster.session, the_cluster.name, proof.challenge())
    hsm_evidence(census={"source": {"snapshot": taken}})
    assert taken["objects"], f"{the_cluster.name} holds no key object: there is nothing to baseline"


@pytest.mark.aws
def test_cluster_state_is_recorded(cluster_state, hsm_evidence):
    hsm_evidence(cluster={"source": {"lineage": cluster_state.record()}})
