"""Preflight (``-m preflight``): both clusters (the one of a baseline or re-verify) reachable
and logged in, every inventory key on
the source as the inventory describes it (type, size or curve, CKA_ID) and extractable (or
marked rotate), CKA_IDs that stay unambiguous on the target, the mechanisms the profile needs
on each side; with the PKCS #11 backend, that the migrating user can wrap each key (a trial
wrap: only a key's owner may wrap it on CloudHSM). Nothing is written to either token (the
wrapping probe and the trial wrap use session objects only)."""
import pytest
from pkcs11 import UserType

from keyparity import strength
from keyparity.cloudhsm.cli_runner import CliKey
from keyparity.hsm import attributes, keyinfo, preflight
from keyparity.errors import KeyMismatch
from keyparity.hsm.locate import locate
from keyparity.hsm.trial_wrap import cannot_wrap

pytestmark = pytest.mark.preflight


def test_cluster_is_reachable_and_logged_in(role, request, hsm_profile, hsm_evidence):
    cluster = request.getfixturevalue(f"{role}_cluster")
    spec = getattr(hsm_profile, role)
    hsm_evidence(**{f"{role}_token": cluster.info})
    if spec.token_label is not None:
        assert cluster.info["label"] == spec.token_label, (
            f"{cluster.name}: found token {cluster.info['label']!r}, the profile names "
            f"{spec.token_label!r}")
    assert cluster.session.user_type == UserType.USER, (
        f"{cluster.name}: the session is not a user's (logged in as {cluster.session.user_type})")
    assert len(cluster.session.generate_random(64)) == 8, (
        f"{cluster.name}: the token did not answer C_GenerateRandom on the session")


def test_key_is_on_the_source_and_extractable(inventory_key, source_cluster, hsm_profile,
                                              hsm_evidence):
    if hsm_profile.single:
        pytest.skip(f"{hsm_profile.migration_mode}: nothing is moved, so extractability does not "
                    "matter; the key's own tests find it on the cluster")
    side = locate(source_cluster, inventory_key, inventory_key.label)
    assert side is not None, f"{inventory_key.label!r} not found on {source_cluster.name}"
    facts = keyinfo.from_attributes(attributes.standard(side.key))
    extractable = facts.extractable is True
    hsm_evidence(preflight={"found": True, "extractable": extractable,
                            "as_found": facts.record()})
    try:
        keyinfo.check(inventory_key, facts, source_cluster.name)
    except KeyMismatch as exc:
        pytest.fail(str(exc), pytrace=False)
    if inventory_key.disposition == "rotate":
        return
    assert extractable, (f"{inventory_key.label!r} is not extractable: rotate it (generate on "
                         "the target, re-encrypt) or mark it disposition: rotate")


def test_the_migrating_user_can_wrap_the_key(inventory_key, source_cluster, hsm_profile,
                                            hsm_evidence, request):
    """The PKCS #11 backend wraps each key as the source's PKCS #11 user; on CloudHSM only the
    key's owner may (cloudhsm_cli-key-wrap-rsa-aes). The key is wrapped once under a session
    key (keyparity.hsm.trial_wrap), the result dropped."""
    if hsm_profile.migration_mode != "migrate" or inventory_key.disposition == "rotate":
        pytest.skip(f"{inventory_key.label!r} is not wrapped by this run "
                    f"({hsm_profile.migration_mode}, {inventory_key.disposition})")
    if hsm_profile.migration_backend == "cloudhsm-cli":
        pytest.skip("migration.backend: cloudhsm-cli: the CLI wraps the keys, and its preflight "
                    "reads each key's owner (test_key_owner_quorum_and_trust_allow_the_move)")
    side = locate(source_cluster, inventory_key, inventory_key.label)
    assert side is not None, f"{inventory_key.label!r} not found on {source_cluster.name}"
    trial = request.getfixturevalue("trial_wrap")
    refused = trial.refusal(side.key)
    owners = None
    if refused is not None and hsm_profile.source.cloudhsm_cli is not None:
        listed = request.getfixturevalue("source_cli_keys").get(inventory_key.label)
        owners = list(listed.owners) if isinstance(listed, CliKey) else None
    hsm_evidence(trial_wrap={"wrapped": refused is None, "owners": owners,
                             "refusal": None if refused is None else str(refused)})
    assert refused is None, cannot_wrap(inventory_key, source_cluster.name,
                                        hsm_profile.source.user, refused, owners)


def test_the_wrapping_chain_is_as_strong_as_the_key(inventory_key, hsm_profile, signoffs,
                                                    hsm_evidence):
    """PCI DSS v4.0 3.6.1: the key-encrypting chain (RSA modulus, OAEP hash, temporary AES key)
    at least as strong as the key it carries (NIST SP 800-57 Part 1 Rev. 5 Table 2,
    keyparity.strength), or a wrap exception its approver signed for this key and chain."""
    if hsm_profile.single or inventory_key.disposition == "rotate":
        pytest.skip(f"{inventory_key.label!r} is not wrapped ({hsm_profile.migration_mode}, "
                    f"{inventory_key.disposition})")
    chain = strength.chain_of(hsm_profile.wrapping)
    weaker, found, message = signoffs.wrap_check(inventory_key, hsm_profile)
    record = {"key_strength": strength.key_strength(inventory_key), "chain": chain.record(),
              "weaker": weaker, "exception": found.reference() if found else None}
    if inventory_key.type == "des2":
        record["flag"] = strength.TDEA_2KEY
    hsm_evidence(wrap_strength=record)
    assert message is None, message


def test_inventory_ids_are_unique_on_the_target(hsm_profile, source_cluster, target_cluster,
                                                hsm_evidence):
    conflicts = preflight.id_conflicts(hsm_profile, source_cluster.index, target_cluster.index)
    hsm_evidence(preflight_ids={"conflicts": conflicts})
    assert not conflicts, "\n".join(conflicts.values())


def test_cluster_offers_the_mechanisms_the_profile_needs(role, request, hsm_profile,
                                                         hsm_evidence):
    cluster = request.getfixturevalue(f"{role}_cluster")
    missing = preflight.missing_mechanisms(hsm_profile, role, cluster)
    hsm_evidence(**{f"{role}_missing_mechanisms": missing})
    assert not missing, f"{cluster.name} lacks: {', '.join(missing)}"


def test_tokens_accept_the_wrapping_parameters(hsm_profile, source_cluster, target_cluster,
                                               hsm_run, hsm_evidence):
    if hsm_profile.migration_mode != "migrate":
        pytest.skip(f"{hsm_profile.migration_mode}: nothing is wrapped")
    if hsm_profile.migration_backend == "cloudhsm-cli":
        pytest.skip("migration.backend: cloudhsm-cli: the CloudHSM CLI's key wrap/unwrap "
                    "rsa-aes move the keys, not PKCS #11, so a PKCS #11 wrapping probe would "
                    "prove a path the run does not take; the CLI checks the OAEP parameters "
                    "at the first wrap")
    left, method = preflight.probe_wrapping(hsm_profile, source_cluster, target_cluster,
                                            hsm_run.run_id)
    hsm_evidence(wrapping={"method": method})
    assert not left, f"probe objects left behind: {left}"
