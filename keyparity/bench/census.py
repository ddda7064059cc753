"""``keyparity bench --census --keys N``: what the census costs, on tmpfs SoftHSM tokens.

The source holds N inventory keys (AES-256, seeded, not timed) and, so that the census has
something to find, one key that is in no inventory; the target holds N "earlier wave" keys of
another label, so that the reconciliation computes a check for every other object and looks
for second copies among them. Timed, each three times (the fastest kept; this machine is
shared): the census of the source as the suite takes it (``census.take_source``: one
enumeration per key class, the facts of every object, the KCV of what is unaccounted), the
reconciliation of the target (``census.reconcile``), and beside them a bare python-pkcs11
enumeration reading CKA_LABEL of every key object, the floor of any census.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, ObjectClass

from ..hsm import census
from ..hsm.cluster import ClusterSession, load_module
from ..hsm.login import LoginGate
from ..hsm.seed import seed
from ..hsm.softhsm import find_module, provision
from ..profile import KeySpec
from .common import TMPFS, lab_profile

ROUNDS = 3


def _keys(prefix: str, n: int) -> tuple[KeySpec, ...]:
    return tuple(KeySpec(index=i, label=f"{prefix}-{i:06d}", target_label=f"{prefix}-{i:06d}",
                         type="aes", size=256, curve=None, attributes={}, vectors=(),
                         disposition="migrate", expected_differences={}) for i in range(n))


def _best(call: Any) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(ROUNDS):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
    return min(times), out


def measure(n: int, root: Path) -> dict[str, Any]:
    module = find_module()
    conf = provision(root, ["hsm1", "hsm2"])
    inventory = _keys("inv", n)
    profile = lab_profile(root, module, conf, inventory)
    load_module(module, profile.module_env)
    gate = LoginGate(root / "login-state.json")
    src = ClusterSession(profile.source, profile.module_env, gate)
    tgt = ClusterSession(profile.target, profile.module_env, gate)
    t = time.perf_counter()
    seed(src.session, inventory + _keys("stray", 1))
    seed(tgt.session, _keys("earlier", n))
    seeded = time.perf_counter() - t

    def bare() -> int:
        return sum(1 for cls in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY,
                                 ObjectClass.PUBLIC_KEY)
                   for obj in src.session.get_objects({Attribute.CLASS: cls})
                   if obj[Attribute.LABEL] is not None)

    t_bare, counted = _best(bare)
    t_source, (entries, record) = _best(
        lambda: census.take_source(src.session, profile.source, profile, "bench"))

    def reconcile() -> census.Reconciliation:
        return census.reconcile(census.scan(tgt.session, "hsm2"), entries, profile, "bench",
                                "hsm2", "hsm1")

    t_target, found = _best(reconcile)
    src.close()
    tgt.close()
    return {"keys": n, "source_objects": counted, "seed_seconds": round(seeded, 2),
            "census_source_seconds": round(t_source, 3),
            "census_source_ms_per_key": round(1000 * t_source / n, 3),
            "bare_enumeration_seconds": round(t_bare, 3),
            "census_vs_bare": round(t_source / t_bare, 2) if t_bare else None,
            "reconcile_target_seconds": round(t_target, 3),
            "reconcile_ms_per_other_object": round(1000 * t_target / n, 3),
            "counts": record["counts"], "other_objects": len(found.others),
            "second_copies": len(found.copies), "rounds": ROUNDS, "tmpfs": root.parent == TMPFS}


def main(args: argparse.Namespace) -> int:
    base = TMPFS if TMPFS.is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="keyparity-bench-census-", dir=base))
    try:
        doc = measure(args.keys, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, value in doc.items():
        print(f"keyparity bench --census: {name}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    ok = doc["counts"] == {"inventory": args.keys, "unaccounted": 1} and not doc["second_copies"]
    return 0 if ok else 1
