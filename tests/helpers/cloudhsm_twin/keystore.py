"""The keys of a stand-in cluster: each SoftHSM key object joined with its row of the state,
as the CLI shows it (``key list --verbose``), and found by the CLI's filters.

Joining (``load``): every key object of the token gets its fingerprint (softtoken.identity);
a row is bound to the object with the same fingerprint and the same class, type, label and id;
then to one with the same fingerprint (its label or id was changed through PKCS #11); then,
when no fingerprint can be had (a key that may not encrypt and cannot be copied), to one with
the same class, type, label and id. An object left over was made through PKCS #11 directly
(keyparity's PKCS #11 backend, the demo's seeding): it is adopted, with a new key reference
and the crypto user the cluster's PKCS #11 login stands for as its owner. A row left over is a
key deleted through PKCS #11: it is dropped. Key references are assigned in order
(``0x0000000000100001``...) and never reused.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute as A
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import Session

from . import attributes, softtoken
from .errors import TwinError
from .rules import visible
from .state import KeyRow, State

COVERAGE = "full"  # one HSM per stand-in cluster: every key is on all of them


@dataclass
class Key:
    row: KeyRow
    tk: softtoken.TokenKey
    shared: list[str] = field(default_factory=list)
    _booleans: dict[str, bool] | None = None

    owner = property(lambda self: self.row.owner)
    cls = property(lambda self: self.tk.cls)
    key_type = property(lambda self: self.tk.key_type)
    manage_q = property(lambda self: self.row.manage_q)
    reference = property(lambda self: self.row.reference)

    def booleans(self) -> dict[str, bool]:
        if self._booleans is None:
            names = sorted(attributes.FOR_CLASS[self.cls] - {"trusted", "wrap-with-trusted"})
            got = softtoken.read(self.tk.obj, names)
            out = {n: False for n in attributes.BOOLEAN}
            if self.cls == "public-key":
                out.update(softtoken.PUBLIC_DEFAULTS)
            out.update(got)
            out.update({"trusted": self.row.trusted, "wrap-with-trusted": self.row.wwt})
            self._booleans = out
        return self._booleans

    def attr(self, name: str) -> Any:
        if name in attributes.BOOLEAN:
            return self.booleans()[name]
        return self.attributes().get(name)

    def attributes(self) -> dict[str, Any]:
        base: dict[str, Any] = {"key-type": self.key_type, "label": self.tk.label,
                                "id": f"0x{self.tk.id}" if self.tk.id else "",
                                "check-value": self.row.check_value, "class": self.cls,
                                **self.booleans(),
                                "key-length-bytes": softtoken.length(self.tk) or self.row.length}
        if not self.row.check_value:
            base.pop("check-value")  # CloudHSM computes none for generic secrets
        return attributes.render(base, _asymmetric(self.tk))

    def info(self) -> dict[str, Any]:
        return {"key-owners": [{"username": self.owner, "key-coverage": COVERAGE}],
                "shared-users": [{"username": u, "key-coverage": COVERAGE} for u in self.shared],
                "key-quorum-values": {"manage-key-quorum-value": self.row.manage_q,
                                      "use-key-quorum-value": self.row.use_q},
                "cluster-coverage": COVERAGE}

    def entry(self, verbose: bool = True) -> dict[str, Any]:
        if not verbose:
            return {"key-reference": self.reference, "attributes": {"label": self.tk.label}}
        return {"key-reference": self.reference, "key-info": self.info(),
                "attributes": self.attributes()}


def _asymmetric(tk: softtoken.TokenKey) -> dict[str, Any]:
    try:
        if tk.key_type == "rsa":
            n, e = bytes(tk.obj[A.MODULUS]), bytes(tk.obj[A.PUBLIC_EXPONENT])
            return {"public-exponent": "0x" + e.hex(), "modulus": "0x" + n.hex(),
                    "modulus-size-bits": len(n) * 8}
        if tk.key_type == "ec" and tk.cls == "public-key":
            return {"ec-point": "0x" + bytes(tk.obj[A.EC_POINT]).hex()}
    except PKCS11Error:
        pass
    return {}


def _signature(row: KeyRow | softtoken.TokenKey) -> tuple[str, str, str, str]:
    return (row.cls, row.key_type, row.label, row.id)


def _bind(rows: list[KeyRow], tokens: list[tuple[softtoken.TokenKey, str | None, str]],
          same: Callable[[KeyRow, tuple[softtoken.TokenKey, str | None, str]], bool],
          bound: list[tuple[KeyRow, tuple[softtoken.TokenKey, str | None, str]]]) -> None:
    for row in list(rows):
        for item in tokens:
            if same(row, item):
                bound.append((row, item))
                rows.remove(row)
                tokens.remove(item)
                break


def load(state: State, s: Session, pkcs11_owner: str) -> list[Key]:
    """Every key of the cluster, the token and the state made to agree (see the module)."""
    tokens = [(tk, *softtoken.identity(tk)) for tk in softtoken.keys(s)]
    rows = state.keys()
    bound: list[tuple[KeyRow, tuple[softtoken.TokenKey, str | None, str]]] = []
    _bind(rows, tokens, lambda r, t: r.fingerprint is not None and r.fingerprint == t[1]
          and _signature(r) == _signature(t[0]), bound)
    _bind(rows, tokens, lambda r, t: r.fingerprint is not None and r.fingerprint == t[1]
          and r.cls == t[0].cls, bound)
    _bind(rows, tokens, lambda r, t: (r.fingerprint is None or t[1] is None)
          and _signature(r) == _signature(t[0]), bound)
    for row in rows:
        state.drop_key(row.ref)
    for tk, fp, cv in tokens:
        row = KeyRow(state.next_ref(), tk.cls, tk.key_type, tk.label, tk.id, fp, cv,
                     softtoken.length(tk), pkcs11_owner)
        state.save_key(row)
        bound.append((row, (tk, fp, cv)))
    out = []
    for row, (tk, fp, cv) in bound:
        fresh = (tk.label, tk.id, fp or row.fingerprint, row.check_value or cv)
        if fresh != (row.label, row.id, row.fingerprint, row.check_value):
            row.label, row.id, row.fingerprint, row.check_value = fresh
            state.save_key(row)
        out.append(Key(row, tk, state.shared(row.ref)))
    return sorted(out, key=lambda k: k.row.ref)


# ---- filters ---------------------------------------------------------------------------------

def criteria(filters: Sequence[str]) -> list[tuple[str, Any]]:
    """``key-reference=0xabc`` or ``attr.KEY_ATTRIBUTE_NAME=KEY_ATTRIBUTE_VALUE`` (every key
    command's <FILTER>)."""
    out: list[tuple[str, Any]] = []
    for item in filters:
        name, sep, text = item.partition("=")
        if sep and name == "key-reference":
            try:
                out.append(("key-reference", int(text, 16 if text.lower().startswith("0x")
                                                 else 10)))
            except ValueError:
                raise TwinError(f"Invalid key reference {text!r}") from None
        elif sep and name.startswith("attr.") and attributes.known(name[5:]):
            attr = name[5:]
            out.append((attr, attributes.value(attr, text) if attr in attributes.BOOLEAN
                        or attr in ("id", "label") else text.lower()))
        else:
            raise TwinError(f"Invalid filter {item!r}: key-reference=<reference> or "
                            "attr.KEY_ATTRIBUTE_NAME=KEY_ATTRIBUTE_VALUE")
    return out


def _matches(key: Key, wanted: list[tuple[str, Any]]) -> bool:
    for name, value in wanted:
        if name == "key-reference":
            if key.row.ref != value:
                return False
            continue
        cheap = {"label": key.tk.label, "id": key.tk.id, "class": key.cls,
                 "key-type": key.key_type}  # without reading the token again
        have = cheap[name] if name in cheap else key.attr(name)
        if isinstance(have, str) and not isinstance(value, bool) and name != "label":
            have = have.lower()
        if have != value:
            return False
    return True


def select(keys: Sequence[Key], filters: Sequence[str], user: str, role: str) -> list[Key]:
    wanted = criteria(filters)
    return [k for k in keys if visible(k, user, role) and _matches(k, wanted)]
