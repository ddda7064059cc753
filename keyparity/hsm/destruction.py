"""The one rule for destroying a key object: no command destroys the last copy of key material.

An object is destroyed only with a ``Permit`` for it, and there are two kinds:

* ``second_copy(doomed, other)``: another copy of the same key material, on the other
  cluster, proven AT THAT MOMENT with the strong proof (keyparity.hsm.proof: a fresh
  challenge computed by both tokens). Made immediately before the destroy, never from an
  earlier proof: ``retire --destroy`` proves the target copy before it destroys a source key,
  ``cleanup`` proves the source copy before it removes a target object. Any doubt (other
  material, a key that may not compute the proof, two objects where one is expected, the same
  object or cluster on both sides) is ``Refused``, and nothing is destroyed.
* ``own(obj, why)``: an object the harness made itself and that holds no one's key material:
  a run's wrapping pair and imported public key, an ephemeral AES key of a two-step wrap, the
  probe key, a proof's session key. A run's unwrapped copy of an inventory key is never
  "own": it is removed only as a second copy.

``destroy(obj, permit, recorder)`` is the one place keyparity calls C_DestroyObject
(tests/token/test_destruction.py checks that no other module does), journaled through
``recorder`` when given. The CloudHSM CLI backend deletes its wrapping objects by label: ``own_label`` permits
exactly a run's wrapping labels, never an inventory label.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pkcs11.types import Object

from ..errors import KeyMismatch, KeyNotFound, KeyparityError, pkcs11_step
from ..journal.recorder import RunRecorder
from . import proof
from .locate import Side

SECOND_COPY, OWN = "second copy", "own"


class Refused(KeyparityError):
    """A destroy this rule does not allow; the message says why, and nothing was destroyed."""


@dataclass(frozen=True)
class Permit:
    """What allows destroying exactly ``objects`` (by identity), and why."""

    kind: str
    reason: str
    objects: tuple[Any, ...] = field(repr=False)
    proof: dict[str, Any] | None = None  # the proof of the second copy, as recorded
    commitment: str | None = None  # the proven material, as a journal entry keeps it

    def covers(self, obj: Any) -> bool:
        return any(o is obj for o in self.objects)


def second_copy(doomed: Side, other: Side, spec: Any = None) -> Permit:
    """A permit to destroy the key on ``doomed`` (and its public object), once the key on
    ``other`` is proven now to hold the same material; Refused otherwise. ``spec``: the
    inventory key (an EC key is proven with the source's public object)."""
    if doomed.cluster == other.cluster:
        raise Refused(f"the second copy must be on another cluster than {doomed.cluster}; "
                      "nothing destroyed")
    # the proof's source is the copy that stays, its target the one destroyed
    try:
        found = (proof.prove_key(spec, other, doomed) if spec is not None
                 else proof.prove(other, doomed))
    except (KeyMismatch, proof.NotProvable, KeyNotFound) as exc:
        raise Refused(f"no second copy of its key material is proven on {other.cluster} now "
                      f"({exc}): it may be the last copy; nothing destroyed") from exc
    objects = (doomed.key,) + ((doomed.public,) if doomed.public is not None else ())
    return Permit(SECOND_COPY, f"the same key material is on {other.cluster}, proven now "
                  f"({found.method} over a fresh challenge, {found.bits} bits)", objects,
                  found.record(), found.commitment().token())


def own(obj: Object, why: str) -> Permit:
    """A permit to destroy an object the harness made itself (see the module docstring)."""
    return Permit(OWN, why, (obj,))


def own_label(label: str, allowed: Collection[str], protected: Collection[str]) -> Permit:
    """A permit for the CloudHSM CLI to delete the objects under ``label``: one of a run's
    wrapping labels (``allowed``), never an inventory label (``protected``); Refused
    otherwise."""
    if label not in allowed or label in protected:
        raise Refused(f"{label!r} is not a keyparity wrapping label of this run: nothing "
                      "deleted")
    return Permit(OWN, f"the run's wrapping object {label!r}", (label,))


def destroy(obj: Object, permit: Permit, where: str, recorder: RunRecorder | None = None, *,
            step: str = "destroy the object", **fields: Any) -> None:
    """Destroy ``obj`` under ``permit`` (Refused when it does not cover it); with a
    ``recorder``, journaled before and after, ``fields`` the entry's fields."""
    if not permit.covers(obj):
        raise Refused(f"the permit ({permit.reason}) does not cover this object on {where}: "
                      "nothing destroyed")
    if recorder is None:
        with pkcs11_step(step, where):
            obj.destroy()
        return
    with recorder.step("destroy", **fields), pkcs11_step(step, where):
        obj.destroy()
