"""Migration of inventory keys, one at a time, each ending migrated, found, rotate or failed.

A key's failure is its own: the error is kept in its result and the next key goes on.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.types import Key

from . import attributes, identity
from .channel import WrappingChannel
from .cluster import ClusterSession
from .errors import (KeyMismatch, KeyNotExtractable, KeyNotFound, KeyparityError, LabelConflict,
                     pkcs11_step)
from .keytypes import KEY_TYPES, key_class
from .profile import KeySpec, Profile

OK = ("migrated", "already-present", "found")
ROTATE_ADVICE = ("rotate it instead: generate a new key on the target, decrypt with the old key "
                 "and re-encrypt with the new one")


@dataclass
class Side:
    """The objects of one inventory key on one cluster."""

    key: Key
    public: Key | None = None


@dataclass
class Migration:
    """What happened to one inventory key."""

    spec: KeySpec
    status: str = "pending"  # migrated | already-present | found | rotate | failed
    detail: str = ""
    source: Side | None = None
    target: Side | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    source_attributes: dict[str, Any] = field(default_factory=dict)
    error: KeyparityError | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK

    def record(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "identity": self.identity}


def _one(objs: list[Key], what: str, label: str, where: str) -> Key | None:
    if len(objs) > 1:
        raise LabelConflict(f"{len(objs)} {what} objects labelled {label!r} on {where}; "
                            "labels must be unique for the harness to know which key is meant")
    return objs[0] if objs else None


def locate(cluster: ClusterSession, spec: KeySpec, label: str) -> Side | None:
    """Find an inventory key by label in the cluster's index; check its type."""
    cls = key_class(spec.type)
    key = _one(cluster.index.find(cls, label), cls.name.lower(), label, cluster.name)
    if key is None:
        return None
    if key.key_type != KEY_TYPES[spec.type]:
        raise KeyMismatch(f"{label!r} on {cluster.name} is a {key.key_type.name} key; the "
                          f"inventory says {spec.type}")
    public = None
    if spec.is_asymmetric:
        public = _one(cluster.index.find(ObjectClass.PUBLIC_KEY, label), "public key", label,
                      cluster.name)
    return Side(key, public)


def prove_identity(spec: KeySpec, source: Side, target: Side, src: ClusterSession,
                   tgt: ClusterSession) -> dict[str, Any]:
    """Compare key material without revealing it; raise KeyMismatch when it differs."""
    if spec.type == "rsa":
        s = identity.fingerprint(identity.rsa_public(source.public or source.key))
        t = identity.fingerprint(identity.rsa_public(target.key))
        out = {"method": "SHA-256 of the SubjectPublicKeyInfo built from CKA_MODULUS and "
                         "CKA_PUBLIC_EXPONENT", "source": s, "target": t}
    elif spec.type == "ec":
        if source.public is None:
            raise KeyNotFound(f"no public key labelled {spec.label!r} on {src.name}: the EC key "
                              "cannot be identified without it")
        public = identity.ec_public(source.public, spec.curve)
        challenge = os.urandom(32)
        digest = hashlib.sha256(challenge).digest()
        with pkcs11_step("ECDSA signature for identity", tgt.name):
            raw = target.key.sign(digest, mechanism=Mechanism.ECDSA)
        match = (identity.fingerprint(public)
                 if identity.ecdsa_verifies(public, raw, digest, "sha256")
                 else "signature from the target does not verify with the source public key")
        out = {"method": "ECDSA signature by the target over a fresh challenge, verified with the "
                         "source public key (an EC private key object exposes no public point)",
               "source": identity.fingerprint(public), "target": match}
    else:
        s_kcv, t_kcv = identity.kcv(source.key, src.name), identity.kcv(target.key, tgt.name)
        out = {"method": s_kcv.method, "source": s_kcv.value, "target": t_kcv.value}
    out["match"] = out["source"] == out["target"]
    if not out["match"]:
        raise KeyMismatch(f"{spec.target_label!r} on {tgt.name} holds other key material than "
                          f"{spec.label!r} on {src.name} ({out['source']} != {out['target']})")
    return out


class Migrator:
    """Migrates (or, in verify-only mode, finds) inventory keys; memoises each key's outcome."""

    def __init__(self, profile: Profile, source: ClusterSession, target: ClusterSession,
                 run_id: str) -> None:
        self.profile, self.source, self.target = profile, source, target
        self.run_id = run_id
        self.writes = profile.migration_mode == "migrate"
        self._channel: WrappingChannel | KeyparityError | None = None
        self._cli_channel: Any = None  # cli_backend.CliChannel | KeyparityError, when chosen
        self._done: dict[str, Migration] = {}

    @property
    def channel(self) -> WrappingChannel:
        if self._channel is None:
            try:
                self._channel = WrappingChannel(self.source, self.target, self.profile.wrapping,
                                                f"keyparity-wrap-{self.run_id}")
            except KeyparityError as exc:
                self._channel = exc
        if isinstance(self._channel, KeyparityError):
            raise self._channel
        return self._channel

    @property
    def cli_channel(self) -> Any:
        """``migration.backend: cloudhsm-cli``: the CloudHSM CLI channel (keyparity.cli_backend)."""
        if self._cli_channel is None:
            from .cli_backend import CliChannel
            from .cloudhsm_cli import CloudHsmCli
            try:
                self._cli_channel = CliChannel(
                    CloudHsmCli.for_cluster(self.profile.source),
                    CloudHsmCli.for_cluster(self.profile.target), self.profile.wrapping,
                    f"keyparity-wrap-{self.run_id}")
            except KeyparityError as exc:
                self._cli_channel = exc
        if isinstance(self._cli_channel, KeyparityError):
            raise self._cli_channel
        return self._cli_channel

    def ensure(self, spec: KeySpec) -> Migration:
        if spec.label not in self._done:
            result = Migration(spec)
            try:
                self._migrate(result)
            except KeyparityError as exc:
                result.status, result.detail, result.error = "failed", str(exc), exc
            self._done[spec.label] = result
        return self._done[spec.label]

    def _migrate(self, m: Migration) -> None:
        spec, src, tgt = m.spec, self.source, self.target
        m.source = locate(src, spec, spec.label)
        if m.source is None:
            raise KeyNotFound(f"{spec.label!r} ({spec.type}) not found on {src.name}")
        m.source_attributes = attributes.read_standard(m.source.key)
        extractable = m.source_attributes.get("extractable") is True
        if spec.disposition == "rotate":
            m.status = "rotate"
            m.detail = (f"marked rotate in the inventory ({'extractable' if extractable else 'not extractable'}"
                        f" on {src.name}): not migrated; {ROTATE_ADVICE}")
            return
        m.target = locate(tgt, spec, spec.target_label)
        if m.target is not None:
            try:
                m.identity = prove_identity(spec, m.source, m.target, src, tgt)
            except KeyMismatch as exc:
                raise LabelConflict(f"{exc}; nothing was written") from exc
            m.status = "found" if not self.writes else "already-present"
            m.detail = (f"found on {tgt.name} under {spec.target_label!r} with the same key material"
                        + ("" if not self.writes else "; not migrated again"))
            return
        if not self.writes:
            raise KeyNotFound(f"{spec.target_label!r} ({spec.type}) not found on {tgt.name} "
                              "(verify-only: nothing was written)")
        if not extractable:
            raise KeyNotExtractable(f"{spec.label!r} on {src.name} is not extractable "
                                    f"(CKA_EXTRACTABLE=false) and cannot be wrapped; {ROTATE_ADVICE}"
                                    "; or mark it disposition: rotate in the inventory")
        if self.profile.migration_backend == "cloudhsm-cli":
            m.target = self.cli_channel.move(spec, m.source_attributes, tgt)
            method = self.cli_channel.method
        else:
            cls = key_class(spec.type)
            template = attributes.unwrap_template(m.source_attributes, cls, spec.target_label,
                                                  spec.attributes)
            key = self.channel.move(m.source.key, cls, KEY_TYPES[spec.type], template)
            tgt.index.add(key, spec.target_label)
            m.target = Side(key)
            method = self.channel.method
        m.identity = prove_identity(spec, m.source, m.target, src, tgt)
        m.status = "migrated"
        m.detail = f"wrapped on {src.name}, unwrapped on {tgt.name} ({method})"

    def close(self) -> list[str]:
        """Destroy the wrapping objects this process created; returns what was left behind."""
        left = self._channel.close() if isinstance(self._channel, WrappingChannel) else []
        if self._cli_channel is not None and not isinstance(self._cli_channel, KeyparityError):
            left += self._cli_channel.close()
        return left
