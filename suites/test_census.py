"""The census (``-m preflight``: nothing is written): every key object on the source is
accounted for, and the target holds no second copy of an inventory key.

Each object on the source (secret, private and public keys; data objects, certificates and any
other class) is an inventory key (a pair's public object counts with its private key), excluded
by the profile (``exclude:``, with the reason), or unaccounted, which fails the census naming
it by label, class, key type, size or curve, CKA_ID and KCV or public-key fingerprint (a
certificate by its SHA-256, a data object by its application: never by its value). On the target, objects that are not this
inventory's are listed as other objects (a cluster may hold earlier waves); one holding an
inventory key's material under another label is a second copy, and fails.

The census is taken again after every other test of the run, by the plugin (keyparity.plugin,
``end_census``): an object that appeared, disappeared or holds other key material (its
commitment over the first census's challenge, keyparity.hsm.proof) on the source during the
run fails ``test_source_unchanged_during_the_run``, reported after every other test; and every
inventory key must be exactly one object on each cluster at the end
(``test_each_key_is_one_object_on_each_cluster``, keyparity.hsm.copies).
"""
import pytest

from keyparity.hsm import census

pytestmark = pytest.mark.preflight


def test_every_source_key_is_accounted_for(source_census, source_cluster, owner_views,
                                           hsm_profile, hsm_run, hsm_evidence):
    """With ``owners`` (the per-owner strategy) the census is also the union of every owner's
    view: a crypto user sees only its own and shared keys, so the source is listed as each
    owner through the CloudHSM CLI, and every key of the union is accounted for too."""
    entries, record = source_census
    seen, by_owner = census.owner_views(owner_views or {}, hsm_profile, hsm_run.run_id)
    hsm_evidence(census={"source": {"start": record,
                                    **({"owners": by_owner} if owner_views else {})}})
    bad = [e for e in entries if e.disposition == census.UNACCOUNTED]
    assert not bad and not seen, (
        f"{len(bad) + len(seen)} object(s) on {source_cluster.name} are not accounted for: add "
        "each key to the inventory (keys:, with its owner), or each object to exclude: with "
        "the reason\n"
        + "\n".join([f"  {e.describe()}: {e.detail}" for e in bad]
                    + [f"  {r['label']!r} ({r['class']}, {r['key_reference']}), owned by "
                       f"{', '.join(r['owners']) or '?'}, seen by {', '.join(r['seen_by'])}"
                       for r in seen]))


def test_no_second_copy_of_an_inventory_key_on_the_target(source_census, source_cluster,
                                                          target_cluster, hsm_profile,
                                                          hsm_run, hsm_evidence):
    entries, record = source_census
    found = census.reconcile(census.scan(target_cluster.session, target_cluster.name),
                             entries, hsm_profile, hsm_run.run_id, target_cluster.name,
                             source_cluster.name, bytes.fromhex(record["challenge"]))
    hsm_evidence(census={"target": {"reconciliation": found.record(hsm_profile.target)}})
    assert not found.copies, "\n".join(found.copies)

