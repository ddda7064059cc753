"""Ownership and sharing: each target key is owned by the crypto user the inventory names (the
one who unwrapped it), shared with exactly the users it names (``apply_sharing: true`` shares
the missing ones), and CloudHSM's own view of the key (CloudHSM CLI) agrees with PKCS #11.
Without a CloudHSM CLI (SoftHSM) there is nothing to check: each test is collected once for
every key (``[every-key]``, keyparity.cloudhsm.cli_scope) and skipped, saying why and that through
PKCS #11 a key's owner is the token's user and sharing does not exist; an inventory asking for
an owner or sharing there has the test per key, and that key's fails with the reason. A key whose inventory
entry names no owner has its owner recorded, and the owner test skipped."""
import pytest

from keyparity.cloudhsm import key_policy, users
from keyparity.hsm import attributes
from keyparity.outcome import prove

PKCS11_OWNER = ("through PKCS #11 a key's owner is the token's user (CKU_USER) and keys are not "
                "shared")


@pytest.mark.cloudhsm_cli("target", unless="owner", note=PKCS11_OWNER)
def test_target_key_is_owned_by_the_expected_user(migrated, ownership, hsm_evidence):
    check = ownership.check_owner(migrated)
    hsm_evidence(ownership=check.facts)
    prove(check)


@pytest.mark.cloudhsm_cli("target", unless="share_with", note=PKCS11_OWNER)
def test_target_key_is_shared_with_the_expected_users(migrated, ownership, hsm_evidence):
    check = ownership.check_sharing(migrated)
    hsm_evidence(sharing=check.facts)
    prove(check)


@pytest.mark.cloudhsm_cli("target")
def test_cli_attributes_and_check_value_match_pkcs11(migrated, ownership, hsm_evidence):
    check = ownership.check_attributes(migrated, attributes.standard(migrated.target.key))
    if not check.skip:
        hsm_evidence(cli_attributes=check.facts)
    prove(check)


@pytest.mark.cloudhsm_cli("source")
def test_target_key_has_the_source_quorum_values(migrated, ownership, cloudhsm_clis,
                                                 hsm_evidence):
    """Key quorum values (M of N) cannot be changed after a key is made: the target key must
    have arrived with the source key's (keyparity.cloudhsm.key_policy)."""
    cloudhsm_clis.need("source")
    spec = migrated.spec
    source = cloudhsm_clis.of("source", ownership.profile.owner_of(spec))
    source_key = users.source_keys(source, [spec])[spec.label]
    if isinstance(source_key, Exception):
        pytest.fail(f"{spec.label!r}: {source_key}", pytrace=False)
    check = key_policy.check_quorum_after(spec, source_key, ownership.view(spec))
    hsm_evidence(quorum_after=check.record())
    prove(check)
