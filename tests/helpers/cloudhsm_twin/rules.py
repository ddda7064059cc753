"""Every rule of AWS CloudHSM that the stand-in enforces, one function each, with the page of
the AWS CloudHSM user guide that documents it (docs.aws.amazon.com/cloudhsm/latest/userguide/
<page>.html). A rule raises TwinError with the message the CLI prints; where the page gives the
text of the error it is used word for word, elsewhere the wording is the stand-in's own.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .attributes import BOOLEAN, FOR_CLASS, NOT_AT_CREATION
from .errors import TwinError

CRYPTO_USER, ADMIN = "crypto-user", "admin"
ROLES = (CRYPTO_USER, ADMIN)
# cloudhsm_cli-login: "If you exceed five incorrect login attempts, your account is locked
# out. To unlock the account, an admin must reset your password" (user change-password)
LOCK_AFTER = 5
# cloudhsm_cli-key-share: "You can share a key with up to seven CUs in addition to the key
# owner."
SHARE_MAX = 7
# cloudhsm_cli-key-generate-symmetric-aes, <MANAGE_KEY_QUORUM_VALUE>: "Max value of 8."
QUORUM_MAX = 8
HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512")  # cloudhsm_cli-key-wrap-rsa-aes
HSM1 = "hsm1.medium"
# set at creation only to their default, true (at_creation)
DEFAULT_ONLY = ("private", "modifiable")
FIPS = "FIPS"


class KeyLike(Protocol):
    owner: str
    shared: list[str]
    cls: str
    key_type: str
    manage_q: int
    reference: str

    def attr(self, name: str) -> Any: ...


# ---- who may run what ------------------------------------------------------------------------

def crypto_user(role: str, command: str) -> None:
    """Key commands: "To run this command, you must be logged in as a CU." (every key command
    page: cloudhsm_cli-key-wrap-rsa-aes, -key-unwrap-rsa-aes, -key-share, -key-delete ...)."""
    if role != CRYPTO_USER:
        raise TwinError(f"{command} can only be run by a crypto user (CU); the current user is "
                        f"an {role}")


def admin(role: str, command: str) -> None:
    """cloudhsm_cli-user-create: "Only user accounts with the admin role can run this
    command." (likewise user change-password of another user)."""
    if role != ADMIN:
        raise TwinError(f"{command} can only be run by an admin")


def visible(key: KeyLike, user: str, role: str) -> bool:
    """manage-keys-cloudhsm-cli-filtering: "The key filtration mechanism operates only on keys
    that the currently logged in user owns and shares, as well as all public keys"; an admin's
    ``key list`` sees every key (cloudhsm_cli-key-list: Admins can run it)."""
    return role == ADMIN or key.cls == "public-key" or user == key.owner or user in key.shared


def single(matches: Sequence[KeyLike]) -> KeyLike:
    """manage-keys-cloudhsm-cli-filtering, "Filtration Errors": the documented message."""
    if not matches:
        raise TwinError("No keys found matching the filter")
    if len(matches) > 1:
        raise TwinError(f"Key selection criteria matched {len(matches)} keys. Refine selection "
                        "criteria to select a single key.")
    return matches[0]


def owner(key: KeyLike, user: str, action: str) -> None:
    """Only the owner wraps (cloudhsm_cli-key-wrap-rsa-aes: "Only the owner of a key, that is
    the crypto user (CU) who created the key, can wrap the key. Users who share the key can use
    the key in cryptographic operations."), shares and unshares (cloudhsm_cli-key-share: users
    with whom a key is shared "cannot delete, export, share, or unshare the key. Additionally,
    these users cannot change key attributes"), deletes (cloudhsm_cli-key-delete) and sets
    attributes (cloudhsm_cli-key-set-attribute)."""
    if user != key.owner:
        how = "it is shared with" if user in key.shared else "it is not owned by"
        raise TwinError(f"Only the owner of a key can {action} it: key {key.reference} is owned "
                        f"by {key.owner}; {how} {user}")


# ---- wrapping --------------------------------------------------------------------------------

def extractable(payload: KeyLike) -> None:
    """cloudhsm_cli-key-wrap-rsa-aes: "The payload key's extractable attribute must be set to
    true." (and the migration guide: non-extractable keys must be rotated, not moved)."""
    if not payload.attr("extractable"):
        raise TwinError(f"Key {payload.reference} is not extractable (extractable=false): it "
                        "cannot be wrapped")


def usable_for(key: KeyLike, attribute: str) -> None:
    """The wrapping key needs ``wrap=true`` (cloudhsm_cli-key-wrap-rsa-aes: "an RSA key ... with
    the wrap attribute set to true"), the unwrapping key ``unwrap=true``
    (cloudhsm_cli-key-unwrap-rsa-aes: "its unwrap attribute must be set to true")."""
    if not key.attr(attribute):
        raise TwinError(f"Key {key.reference} cannot be used to {attribute} keys "
                        f"({attribute}=false)")


def trusted_wrap(payload: KeyLike, wrapping: KeyLike) -> None:
    """modify-attr, CKA_WRAP_WITH_TRUSTED: "you can only wrap this key with keys marked as
    CKA_TRUSTED"."""
    if payload.attr("wrap-with-trusted") and not wrapping.attr("trusted"):
        raise TwinError(f"Key {payload.reference} has wrap-with-trusted=true and can only be "
                        f"wrapped by a trusted key; {wrapping.reference} is not trusted")


def oaep(hash_function: str, mgf: str) -> None:
    """cloudhsm_cli-key-wrap-rsa-aes / -unwrap-rsa-aes: hash [sha1, sha224, sha256, sha384,
    sha512], MGF [mgf1-sha1 ... mgf1-sha512]; "The mask generation function hash function must
    match the signing mechanism hash function"."""
    if hash_function not in HASHES:
        raise TwinError(f"Invalid hash function {hash_function!r}: one of " + ", ".join(HASHES))
    if mgf not in [f"mgf1-{h}" for h in HASHES]:
        raise TwinError(f"Invalid mask generation function {mgf!r}")
    if mgf != f"mgf1-{hash_function}":
        raise TwinError(f"The mask generation function {mgf} does not match the hash function "
                        f"{hash_function}")


def approval(key: KeyLike, given: str | None, option: str) -> None:
    """Key management (wrap, unwrap, share, unshare, set-attribute) of a key whose key
    management quorum value is above 1 needs a signed quorum token (cloudhsm_cli-key-wrap-
    rsa-aes, <PAYLOAD_APPROVALR>: "Only required if payload key's key management service
    quorum value is greater than 1"; quorum-auth-chsm-cli-service-names, "key-management").
    The stand-in does not model quorum tokens: with one given it refuses rather than pass."""
    if key.manage_q <= 1:
        return
    if given is None:
        raise TwinError(f"Key {key.reference} has a key management quorum value of "
                        f"{key.manage_q}: quorum approval is required ({option} <signed quorum "
                        "token file>)")
    raise TwinError("cloudhsm-cli stand-in: quorum approval tokens are not modelled; the "
                    f"operation on {key.reference} is refused")


# ---- sharing and quorum ----------------------------------------------------------------------

def share_limit(shared: Sequence[str], adding: Sequence[str]) -> None:
    """cloudhsm_cli-key-share: "You can share a key with up to seven CUs in addition to the
    key owner." (also for --share-crypto-users when a key is made)."""
    after = set(shared) | set(adding)
    if len(after) > SHARE_MAX:
        raise TwinError(f"A key can be shared with at most {SHARE_MAX} crypto users in addition "
                        f"to its owner; this would share it with {len(after)}")


def quorum(manage: int, use: int, associated: int) -> None:
    """quorum-auth-chsm-cli-service-names: "The quorum value of an associated key is configured
    when the key is generated, imported, or unwrapped. The quorum value must be equal to or
    less than the number of users that the key is associated with, which includes users that
    the key is shared with and the key owner." Max value of 8 (cloudhsm_cli-key-generate-
    symmetric-aes)."""
    for name, v in (("manage-key-quorum-value", manage), ("use-key-quorum-value", use)):
        if v < 0 or v > QUORUM_MAX:
            raise TwinError(f"Invalid {name} {v}: from 0 to {QUORUM_MAX}")
        if v > associated:
            raise TwinError(f"The {name} ({v}) must be less than or equal to the number of "
                            f"users the key is associated with ({associated}: the owner and "
                            "the users it is shared with)")


def crypto_users(names: Sequence[str], roles: Mapping[str, str], owner_name: str) -> list[str]:
    """--share-crypto-users / --username: existing crypto users (cloudhsm_cli-key-share:
    "share a key with other CUs"); names are case-insensitive and shown in lowercase
    (<USERNAME>)."""
    out = []
    for name in names:
        low = name.lower()
        if roles.get(low) != CRYPTO_USER:
            raise TwinError(f"User {low} is not a crypto user of this cluster")
        if low == owner_name:
            raise TwinError(f"User {low} owns the key: a key is not shared with its owner")
        out.append(low)
    return out


# ---- attributes ------------------------------------------------------------------------------

def at_creation(attrs: Mapping[str, Any], cls: str, key_type: str) -> None:
    """What ``--attributes`` may set when a key is generated, imported or unwrapped
    (cloudhsm_cli-key-attributes-table, "Settable at key creation"); ``private`` and
    ``modifiable`` only to their default, True (pkcs11-attributes-interpreting, note 1 on both
    CKA_PRIVATE and CKA_MODIFIABLE: "This attribute is partially supported by the firmware and
    must be explicitly set only to the default value."; the CLI's attribute table gives
    modifiable "Settable at key creation: No" - afterwards it goes from true to false with
    ``key set-attribute``, see ``change``); ``trusted`` only by an admin (cloudhsm_cli-key-set-attribute: "To set the
    trusted attribute, you must be logged in as an admin user"; modify-attr: CKA_TRUSTED "can
    be set ... by Crypto Officer (CO) only"), and every key command runs as a crypto user."""
    for name, value in attrs.items():
        if name in NOT_AT_CREATION:
            raise TwinError(f"Key attribute {name} cannot be set: it is read-only")
        if name == "class" and value != cls or name == "key-type" and value != key_type:
            raise TwinError(f"Key attribute {name}={value} does not match the key being made "
                            f"({cls}, {key_type})")
        if name in BOOLEAN and name not in FOR_CLASS[cls]:
            raise TwinError(f"Key attribute {name} is not valid for a {cls}")
        if name in DEFAULT_ONLY and value is not True:
            raise TwinError(f"Key attribute {name} can only be set to its default value, true")
        if name == "trusted" and value:
            raise TwinError("Key attribute trusted can only be set by an admin")


def change(key: KeyLike, name: str, new: Any, role: str, hsm_type: str) -> None:
    """``key set-attribute`` (cloudhsm_cli-key-attributes-table, "Modifiable with key
    set-attribute"): an admin sets ``trusted`` and nothing else, a crypto user everything else
    it may (set-attribute page); ``id`` only on hsm2m.medium ("ID can be set on hsm2m.medium
    instances. It cannot be set on hsm1.medium instances."); ``derive`` not for RSA keys on
    hsm1.medium; ``modifiable`` "can be changed from true to false, but not from false to
    true"; ``wrap-with-trusted`` never back from true (modify-attr: "Once you set
    CKA_WRAP_WITH_TRUSTED to true, the attribute becomes read-only"); ``sensitive`` only from
    false to true (PKCS #11); extractable, private, class, key-type and the values the HSM
    computes not at all; nothing on a key whose modifiable is false (PKCS #11 CKA_MODIFIABLE)."""
    if role == ADMIN or name == "trusted":
        if role != ADMIN or name != "trusted":
            raise TwinError("Only an admin can set the trusted attribute, and an admin can set "
                            "no other attribute")
        return
    fixed = {"extractable", "private", "class", "key-type", "token"} | NOT_AT_CREATION
    if name in fixed:
        raise TwinError(f"Key attribute {name} cannot be modified")
    if name in BOOLEAN and name not in FOR_CLASS[key.cls]:
        raise TwinError(f"Key attribute {name} is not valid for a {key.cls}")
    if not key.attr("modifiable"):
        raise TwinError(f"Key {key.reference} is not modifiable (modifiable=false)")
    if name == "id" and hsm_type == HSM1:
        raise TwinError("Key attribute id cannot be set on hsm1.medium instances")
    if name == "derive" and hsm_type == HSM1 and key.key_type == "rsa":
        raise TwinError("Key attribute derive cannot be set for RSA keys on hsm1.medium "
                        "instances")
    one_way = {"modifiable": False, "wrap-with-trusted": True, "sensitive": True}
    if name in one_way and new != one_way[name] and key.attr(name) != new:
        raise TwinError(f"Key attribute {name} can only be changed from "
                        f"{str(not one_way[name]).lower()} to {str(one_way[name]).lower()}")


# ---- the cluster -----------------------------------------------------------------------------

def no_new_3des_in_fips(mode: str, key_type: str) -> None:
    """pkcs11-key-types, Triple DES, note 1: "In accordance with NIST guidance, this is
    disallowed for clusters in FIPS mode after 2023. For clusters in non-FIPS mode, it is
    still allowed after 2023." A FIPS cluster takes no new 3DES key (unwrapping one makes one);
    wrapping an existing 3DES key out of it with RSA-AES stays allowed (the migration guide)."""
    if mode == FIPS and key_type in ("3des", "des3"):
        raise TwinError("3DES is disallowed for clusters in FIPS mode after 2023: no new 3DES "
                        "key can be made on this cluster")


def rsa_parameters(bits: int, exponent: int) -> None:
    """cloudhsm_cli-key-generate-asymmetric-pair-rsa: modulus "The minimum value is 2048";
    exponent "must be an odd number greater than or equal to 65537"."""
    if bits < 2048:
        raise TwinError(f"Invalid modulus size {bits}: the minimum value is 2048")
    if exponent < 65537 or exponent % 2 == 0:
        raise TwinError(f"Invalid public exponent {exponent}: an odd number greater than or "
                        "equal to 65537")


def username(name: str) -> str:
    """cloudhsm_cli-user-create, <USERNAME>: "The maximum length is 31 characters. The only
    special character permitted is an underscore ( _ ). The username is not case sensitive ...
    always displayed in lowercase."."""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,31}", name):
        raise TwinError(f"Invalid username {name!r}: up to 31 letters, digits or underscores")
    return name.lower()


def mtls_supported(hsm_type: str) -> None:
    """Mutual TLS between client and HSM exists on hsm2m.medium only (AWS CloudHSM user guide,
    "Setting up mutual TLS between client and AWS CloudHSM"; keyparity/cloudhsm/mtls.py)."""
    if hsm_type == HSM1:
        raise TwinError("mTLS is not supported on hsm1.medium clusters")
