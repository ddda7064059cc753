"""A cluster as the harness sees it: a PKCS #11 token, one logged-in session, and an index of
its objects built by enumerating them once (no per-key search by label)."""
from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pkcs11
import pkcs11.exceptions
from pkcs11 import Attribute, ObjectClass
from pkcs11.types import Object, Session, Token

from .. import module_env
from ..errors import KeyparityError, LoginError, TokenError, pkcs11_step
from . import direct
from .login import LoginGate
from ..profile import Cluster

_libs: dict[str, pkcs11.lib] = {}


def load_module(path: str, env: Mapping[str, str]) -> pkcs11.lib:
    """Load a PKCS #11 module once per process, by its real path (a symlink and the file it
    names are one module: initialising it twice fails), with the profile's module_env in
    place while it loads (keyparity.module_env). Every cluster, signer and command of the
    process shares it."""
    real = os.path.realpath(path)
    if real not in _libs:
        try:
            with module_env.applied(env):
                _libs[real] = pkcs11.lib(real)
        except Exception as exc:  # noqa: BLE001 - anything the loader raises
            hint = ""
            if "already initialized" in str(exc):  # python-pkcs11's CKR_CRYPTOKI_ALREADY_...
                loaded = ", ".join(sorted(_libs)) or "another library"
                hint = (f"; this process already loaded {loaded}, which initialised the same "
                        "library (a module in front of another, such as OpenSC's pkcs11-spy, "
                        "cannot share it): give every cluster and signer of the profile the "
                        "same module path")
            raise TokenError(f"cannot load PKCS #11 module {path}: {exc}{hint}") from exc
    return _libs[real]


FIND_ATTEMPTS = 5


def find_token(lib: pkcs11.lib, spec: Cluster) -> Token:
    """The cluster's token, by label or slot.

    SoftHSM's file store answers CKR_GENERAL_ERROR when another process rewrites a token file
    while this one reads it (seen with two runs starting at once on one store). Finding a token
    is read-only and involves no login, so that answer is asked again, up to FIND_ATTEMPTS
    times, 0.1 s, 0.2 s... apart; any other error, and every login, is never retried."""
    for attempt in range(1, FIND_ATTEMPTS + 1):
        try:
            return _find_token(lib, spec)
        except TokenError as exc:
            if attempt == FIND_ATTEMPTS or not isinstance(exc.__cause__,
                                                           pkcs11.exceptions.GeneralError):
                raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _find_token(lib: pkcs11.lib, spec: Cluster) -> Token:
    where = spec.name
    with pkcs11_step("find token", where):
        if spec.slot is not None:
            slots = [s for s in lib.get_slots(token_present=True) if s.slot_id == spec.slot]
            if not slots:
                raise TokenError(f"{where}: no token in slot {spec.slot}")
            return slots[0].get_token()
        tokens = list(lib.get_tokens(token_label=spec.token_label))
    if not tokens:
        raise TokenError(f"{where}: no token labelled {spec.token_label!r} in {spec.module}")
    if len(tokens) > 1:
        raise TokenError(f"{where}: {len(tokens)} tokens labelled {spec.token_label!r}; use slot")
    return tokens[0]


def token_info(token: Token) -> dict[str, Any]:
    """What the evidence records about a token (no secrets)."""
    def text(v: Any) -> str:
        return v.decode(errors="replace").strip() if isinstance(v, bytes) else str(v).strip()
    return {
        "label": text(token.label),
        "manufacturer": text(token.manufacturer_id),
        "model": text(token.model),
        "serial": text(token.serial),
        "firmware": ".".join(str(p) for p in getattr(token, "firmware_version", ()) or ()),
        "hardware": ".".join(str(p) for p in getattr(token, "hardware_version", ()) or ()),
    }


_KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)


@dataclass
class ObjectIndex:
    """Objects of one token by (class, label), and the (class, label) of its key objects by
    CKA_ID (hex), from one enumeration."""

    by_label: dict[tuple[ObjectClass, str], list[Object]] = field(
        default_factory=lambda: defaultdict(list))
    by_id: dict[str, list[tuple[ObjectClass, str]]] = field(
        default_factory=lambda: defaultdict(list))
    id_of: dict[tuple[ObjectClass, str], str] = field(default_factory=dict)

    @classmethod
    def build(cls, session: Session, where: str) -> ObjectIndex:
        index = cls()
        with pkcs11_step("enumerate objects", where):
            for obj in session.get_objects():
                cka_id = None
                try:
                    if obj.object_class in _KEY_CLASSES:
                        got = direct.attributes(obj, [Attribute.LABEL, Attribute.ID]) or \
                            obj.get_attributes([Attribute.LABEL, Attribute.ID])
                        label, cka_id = got[Attribute.LABEL], bytes(got[Attribute.ID]).hex()
                    else:
                        label = obj[Attribute.LABEL]
                except pkcs11.exceptions.PKCS11Error:
                    continue
                index.add(obj, label, cka_id)
        return index

    def add(self, obj: Object, label: str, cka_id: str | None = None) -> None:
        self.by_label[(obj.object_class, label)].append(obj)
        if cka_id is not None:
            self.id_of.setdefault((obj.object_class, label), cka_id)
        if cka_id:
            self.by_id[cka_id].append((obj.object_class, label))

    def remove(self, obj: Object, label: str) -> None:
        objs = self.by_label.get((obj.object_class, label), [])
        self.by_label[(obj.object_class, label)] = [o for o in objs if o.handle != obj.handle]

    def find(self, object_class: ObjectClass, label: str) -> list[Object]:
        return list(self.by_label.get((object_class, label), ()))

    def with_id(self, cka_id: str) -> list[tuple[ObjectClass, str]]:
        """(class, label) of the key objects whose CKA_ID is this (hex; never the empty id)."""
        return list(self.by_id.get(cka_id, ())) if cka_id else []


class ClusterSession:
    """A logged-in read-write session on one cluster's token, and its object index."""

    def __init__(self, spec: Cluster, module_env: Mapping[str, str], gate: LoginGate) -> None:
        self.spec = spec
        self.name = spec.name
        self.module_env, self._gate = module_env, gate
        self.token, self.session = gate.find_and_open(
            lambda: find_token(load_module(str(spec.module), module_env), spec), spec.pin,
            f"{spec.role} ({spec.name})", spec.user)
        direct.register(self.session, os.path.realpath(spec.module))
        self.info = token_info(self.token)
        self.mechanisms = {int(m) for m in self.token.slot.get_mechanisms()}
        self._index: ObjectIndex | None = None
        self.index_read_at: float | None = None  # time.time() when the index was read

    @property
    def index(self) -> ObjectIndex:
        if self._index is None:
            self.refresh()
            self.index_read_at = time.time()
            self._index = ObjectIndex.build(self.session, self.name)
        return self._index

    def adopt(self, objects: Iterable[tuple[Object, str | None, str | None]],
              read_at: float) -> None:
        """The index from an enumeration the run has just made (the census: each object, its
        label and, for a key, its CKA_ID in hex), instead of enumerating the token again;
        only while no index was read."""
        if self._index is None:
            index = ObjectIndex()
            for obj, label, cka_id in objects:
                index.add(obj, label, cka_id)
            self._index, self.index_read_at = index, read_at

    def refresh(self) -> None:
        """Make the token show what other processes wrote: C_GetTokenInfo, after which
        SoftHSM re-reads its object list if another process changed it (without it, a process
        that wrote to the token itself may not see another's new objects:
        keyparity.hsm.lockdir). Other tokens answer it from the HSM, at the cost of one call."""
        with pkcs11_step("read the token information", self.name):
            self.token.slot.get_token()

    def supports(self, mechanism: int) -> bool:
        return int(mechanism) in self.mechanisms

    def reopen(self) -> None:
        """Replace a session lost under us (closed, invalid handle, device error, token removed)
        with a new logged-in one, through the same LoginGate; the object index is rebuilt on
        next use (python-pkcs11 objects belong to their session). Called once per fault by
        the caller; raises TokenError/LoginError when the token cannot be reached again.

        SoftHSM (and PKCS #11 in general) keeps the login state per application: when another
        session of this process is still open, the new session is already logged in
        (CKR_USER_ALREADY_LOGGED_IN), and is then opened without logging in again."""
        self.close()
        self._index = None
        spec, role = self.spec, f"{self.spec.role} ({self.spec.name})"
        find = lambda: find_token(load_module(str(spec.module), self.module_env), spec)  # noqa: E731
        with pkcs11_step("reopen the session", self.name):
            try:
                self.token, self.session = self._gate.find_and_open(find, spec.pin, role,
                                                                    spec.user)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                self.session = self.token.open(rw=True)
        direct.register(self.session, os.path.realpath(spec.module))

    def close(self) -> None:
        direct.forget(self.session)
        try:
            self.session.close()
        except pkcs11.exceptions.PKCS11Error:
            pass


# ---- one logged-in session per cluster per process ------------------------------------------

class ClusterUnavailable(TokenError):
    """A cluster's token could not be opened (not found, a login refused, a PIN reference that
    does not resolve): every later use in the process fails with the same cause, untried."""


class LoginUnavailable(ClusterUnavailable, LoginError):
    """The cluster's token is unavailable because its login was refused."""


_sessions: dict[tuple[str, str, str], ClusterSession | ClusterUnavailable] = {}


def _token_key(spec: Cluster) -> tuple[str, str, str]:
    where = f"slot {spec.slot}" if spec.slot is not None else f"label {spec.token_label}"
    return os.path.realpath(spec.module), where, spec.user or ""


def open_cluster(spec: Cluster, module_env: Mapping[str, str], gate: LoginGate) -> ClusterSession:
    """The process's one logged-in session to a cluster's token: opened (one login) on first
    use and handed to every later caller - fixtures, the census at the end of a run, commands.
    A failure is remembered and raised again, never retried: CloudHSM locks a user after
    failed logins. ``close_clusters`` closes them all."""
    key = _token_key(spec)
    found = _sessions.get(key)
    if found is None:
        try:
            found = ClusterSession(spec, module_env, gate)
        except KeyparityError as exc:
            where = f"{spec.role} ({spec.name})"
            cause = str(exc).replace(f"login to {where} failed", "login failed")
            kind = LoginUnavailable if isinstance(exc, LoginError) else ClusterUnavailable
            found = kind(f"{where} is unavailable: {cause}")
            found.__cause__ = exc
        _sessions[key] = found
    if isinstance(found, ClusterUnavailable):
        raise found
    return found


def close_clusters() -> None:
    """Close every session ``open_cluster`` opened in this process (the logins end with them)."""
    for found in _sessions.values():
        if isinstance(found, ClusterSession):
            found.close()
    _sessions.clear()
