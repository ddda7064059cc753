"""Read-only checks before a migration: what each cluster must offer for this profile."""
from __future__ import annotations

from pkcs11 import Attribute, Mechanism
from pkcs11.types import Key

from .channel import WrappingChannel
from .cluster import ClusterSession
from .identity import KCV_METHODS
from .keytypes import KEY_TYPES
from .mechanisms import CKM_RSA_AES_KEY_WRAP
from .profile import Profile
from .vectors import SPECS, Ecdsa, RsaOaep

_WRAP = {
    "source": (Mechanism.AES_KEY_GEN, Mechanism.RSA_PKCS_OAEP, Mechanism.AES_KEY_WRAP_PAD),
    "target": (Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.RSA_PKCS_OAEP,
               Mechanism.AES_KEY_WRAP_PAD),
}


def extractable(key: Key) -> bool:
    return bool(key[Attribute.EXTRACTABLE])


def _vector_mechanism(name: str) -> Mechanism:
    spec = SPECS[name]
    if isinstance(spec, RsaOaep):
        return Mechanism.RSA_PKCS_OAEP
    if isinstance(spec, Ecdsa):
        return Mechanism.ECDSA
    return spec.mechanism


def needed_mechanisms(profile: Profile, role: str, cluster: ClusterSession) -> set[Mechanism]:
    need: set[Mechanism] = set()
    if profile.migration_mode == "migrate" and not cluster.supports(CKM_RSA_AES_KEY_WRAP):
        need.update(_WRAP[role])
    for key in profile.keys:
        if key.disposition == "rotate":
            continue
        for vector in key.vectors:
            need.add(_vector_mechanism(vector))
        method = KCV_METHODS.get(KEY_TYPES[key.type])
        if method:
            need.add(method[0])
    return need


def missing_mechanisms(profile: Profile, role: str, cluster: ClusterSession) -> list[str]:
    """Names of the mechanisms the profile needs that the cluster's token does not list."""
    return sorted(f"CKM_{m.name}" for m in needed_mechanisms(profile, role, cluster)
                  if not cluster.supports(m))


def probe_wrapping(profile: Profile, source: ClusterSession, target: ClusterSession,
                   run_id: str) -> tuple[list[str], str]:
    """Open and close a wrapping channel (session objects only); returns what was left and the
    wrapping method. Raises MechanismUnsupported with the reason if the tokens refuse."""
    channel = WrappingChannel(source, target, profile.wrapping, f"keyparity-probe-{run_id}")
    return channel.close(), channel.method
