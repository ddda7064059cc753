"""Re-verify (``migration.mode: reverify``, one cluster: ``clusters.target``, the cluster as it
is now; ``migration.baseline``: a baseline run directory). The baseline's bundle is verified
before anything else (signatures of the profile's evidence signers and their threshold, every
digest); a baseline that does not verify is refused and nothing is read. Then every key must
be the same object it was: the same key material (its commitment in the baseline recomputed
over the baseline's challenge; a pair's private half answers a fresh challenge that the
baseline's public key accepts: keyparity.hsm.proof), IDENTICAL attributes (nothing was
unwrapped: no difference is expected), its known answers still hold (it decrypts the
baseline's ciphertexts, verifies its MACs and signatures, and a fresh signature verifies with
the baseline's public key), the same owner and shared users; no key object lost, added or
changed; and, with an ``aws`` block, a lineage that leads back to the baselined cluster, a
backup still kept, and the HSM type change's rollback window."""
import datetime as dt

import pytest

from keyparity.cloudhsm import lineage
from keyparity.errors import KeyMismatch
from keyparity.hsm import attributes, known_answers, proof, snapshot
from keyparity.outcome import prove

pytestmark = pytest.mark.reverify


def test_baseline_verifies(baseline, hsm_evidence, hsm_profile):
    hsm_evidence(baseline_run=hsm_profile.shown_paths(baseline.record()))
    assert baseline.verified, f"the baseline {baseline.path} was not verified"


def test_key_is_still_there(inventory_key, key_now, recorded, hsm_evidence):
    hsm_evidence(reverify={"found": True})
    assert recorded.get("identity"), f"{inventory_key.label!r}: the baseline has no identity"


def test_key_check_value_is_unchanged(inventory_key, key_now, recorded, hsm_evidence):
    """The same key material: the baseline's commitment, recomputed. Not the 3-byte KCV the
    test's name says, which proves nothing here: the name is the check auditors ask for."""
    try:
        committed = proof.Commitment.parse(recorded.get("identity"))
    except ValueError as exc:
        pytest.fail(f"{inventory_key.label!r}: the baseline holds no commitment to its key "
                    f"material ({exc}): take a new baseline", pytrace=False)
    try:
        now = proof.check(committed, key_now)
    except (KeyMismatch, proof.NotProvable) as exc:
        hsm_evidence(reverify={"identity": {"baseline": committed.record(), "match": False,
                                            "detail": str(exc)}})
        pytest.fail(f"{inventory_key.label!r} on {key_now.cluster}: {exc}", pytrace=False)
    hsm_evidence(reverify={"identity": {"baseline": committed.record(), "now": now,
                                        "match": True}})


def test_attributes_are_identical(inventory_key, key_now, recorded, hsm_evidence):
    now = attributes.read_standard(key_now.key)
    attrs = snapshot.attribute_changes(recorded, now)
    hsm_evidence(reverify={"attributes": {"baseline": recorded.get("attributes", {}),
                                          "now": now, "differences": attrs}})
    assert not attrs, (f"{inventory_key.label!r} on {key_now.cluster} changed since the "
                       "baseline:\n  " + "\n  ".join(attrs))


def test_known_answers_still_hold(inventory_key, key_now, recorded, hsm_evidence):
    results = known_answers.check(key_now, recorded.get("known_answers", []),
                                  public_key=recorded.get("public_key"))
    hsm_evidence(reverify={"known_answers": results})
    bad = [r for r in results if r["ok"] is False]
    assert not bad, (f"{inventory_key.label!r} on {key_now.cluster}: "
                     + "; ".join(f"{r['vector']}: {r['comment']}" for r in bad))


def test_owner_and_sharing_are_unchanged(inventory_key, key_now, recorded, cli_view,
                                         hsm_evidence):
    reason = cli_view.skip_reason()
    if reason:
        pytest.skip(reason)
    now = cli_view.of(inventory_key)
    hsm_evidence(reverify={"ownership": {"baseline": recorded.get("cli"), "now": now}})
    if recorded.get("cli") is None:
        pytest.fail(f"{inventory_key.label!r}: the baseline recorded no owner (it was taken "
                    "without a cloudhsm_cli block): take a new baseline with one",
                    pytrace=False)
    assert now == recorded["cli"], (f"{inventory_key.label!r}: owner and sharing were "
                                    f"{recorded['cli']}, are {now}")


def test_census_matches_the_baseline(the_cluster, baseline, hsm_evidence):
    now = snapshot.census_objects(the_cluster.session, the_cluster.name,
                                  baseline.census_challenge)
    changes = snapshot.census_changes(baseline.census, now["objects"])
    hsm_evidence(census={"target": {"snapshot": now, "changes": changes}})
    lines = [f"{kind}: {line}" for kind in ("lost", "added", "changed") for line in changes[kind]]
    assert not lines, (f"the key objects of {the_cluster.name} changed since the baseline of "
                       f"{baseline.run_id}:\n  " + "\n  ".join(lines))


def _before(baseline):
    recorded = baseline.cluster.get("lineage")
    if not recorded:
        pytest.fail("the baseline recorded nothing from AWS (taken without an aws block): "
                    "its lineage cannot be compared; take a new baseline with one",
                    pytrace=False)
    return lineage.ClusterState.from_record(recorded)


def _prove_lineage(name, check, state, hsm_evidence):
    """The lineage check recorded with the cluster's state, then the test's outcome."""
    hsm_evidence(cluster={"target": {"lineage": state.record(),
                                     "lineage_checks": {name: check.record()}}})
    prove(check)


@pytest.mark.aws
def test_cluster_lineage(cluster_state, baseline, hsm_evidence):
    before = _before(baseline)
    check = lineage.check_lineage(before, cluster_state)
    hsm_evidence(cluster={"target": {"before_after": lineage.before_after(before,
                                                                          cluster_state)}})
    _prove_lineage("lineage", check, cluster_state, hsm_evidence)


@pytest.mark.aws
def test_backup_is_kept(cluster_state, baseline, hsm_evidence):
    taken = dt.datetime.fromisoformat(baseline.date)
    check = lineage.check_backup(_before(baseline), cluster_state, taken)
    _prove_lineage("backup", check, cluster_state, hsm_evidence)


@pytest.mark.aws
def test_rollback_window(cluster_state, hsm_evidence):
    check = lineage.check_rollback(cluster_state, dt.datetime.now(dt.timezone.utc))
    _prove_lineage("rollback", check, cluster_state, hsm_evidence)
