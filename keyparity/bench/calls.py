"""``keyparity bench --pytest --calls``: the PKCS #11 calls the path users take makes per key,
by key type, function and phase, counted by the forwarding module (native/p11forward) that the
run's two clusters load in front of SoftHSM.

For each key type the same pytest run (signed bundle, as ``--pytest``) is made twice, at N and
2N keys of that type on fresh tokens; the calls per key are the difference over N, so that what
a run makes once (logins, the wrapping key, the bundle's signatures) is not charged to the keys.
The phases are marked inside the run (``keyparity.bench.call_marks``). The minimum the proofs
need (``minimum``, derived in docs/benchmarks.md, "Calls per key") is the goal's yardstick: a
key over :data:`BUDGET` times it does NOT meet it; each type's budget (``Kind.budget``) is
what a key may cost before tests/tools/test_call_budget.py fails.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profile import KeySpec
from . import call_marks
from .common import Say, conclude, in_scratch, machine, say
from .forward import Forward
from .user_path import build_lab, pytest_run, signed_profile

BUDGET = 1.3


@dataclass(frozen=True)
class Kind:
    """A key type the bench counts: its name here, the profile's type, size and curve, its
    objects on the source, and its budget: the calls a key of it may cost, as
    docs/benchmarks.md ("Calls per key") writes it down; a run over it fails
    tests/tools/test_call_budget.py."""
    name: str
    type: str
    size: int | None
    curve: str | None = None
    objects: int = 1  # on the source: a key pair is two
    budget: int = 0

    def spec(self, i: int) -> KeySpec:
        label = f"bench-{self.name}-{i:06d}"
        return KeySpec(index=i, label=label, target_label=label, type=self.type,
                       size=self.size, curve=self.curve, attributes={}, vectors=(),
                       disposition="migrate", expected_differences={})


# The budgets are the counts of 2026-12-07: AES, 3DES and HMAC within 1.3x their minimum; RSA
# and EC over it, by the calls python-pkcs11 makes whenever it hands out an object (two reads
# of its class and capabilities: ten a key pair, docs/benchmarks.md)
KINDS = (Kind("aes", "aes", 256, budget=68), Kind("3des", "des3", None, budget=40),
         Kind("hmac", "generic-secret", 256, budget=40),
         Kind("rsa", "rsa", 2048, objects=2, budget=63),
         Kind("ec", "ec", None, "secp256r1", objects=2, budget=46))


# The run's phases, from the marks keyparity.bench.call_marks takes (a fixture being set up, a
# test's call, the end of the loop, the session's end): the first prefix that matches.
PHASES = (
    ("fixture:source_census", "census"), ("test:test_every_source_key", "census"),
    ("test:test_no_second_copy", "census"),
    ("fixture:trial_wrap", "preflight"), ("test:test_key_is_on_the_source", "preflight"),
    ("test:test_the_migrating_user", "preflight"), ("test:test_the_wrapping_chain", "preflight"),
    ("fixture:migrat", "migration"), ("test:test_key_is_on_the_target", "migration"),
    ("test:test_key_check_values", "kcv"),
    ("test:test_output_of_one_cluster", "vectors"),
    ("test:test_target_attributes", "attributes"),
    ("after-the-tests", "census again, copies"),
    ("session-finish", "evidence"),
)

# What the proofs of one key need at the least, by phase (docs/benchmarks.md, "Calls per key",
# derives it): READS attribute reads (one per object and side where the run must look: the
# census, the target's key after the unwrap, the census again and the copies counted on each
# side at the end; the preflight and the attribute comparison use what those read), WRAPS
# (the owner's trial wrap and the move, each one C_WrapKey of known size with the native
# mechanism) and one C_UnwrapKey; and two calls (init, then the one operation with its
# output's size known) for each cryptographic operation the proofs make - the count of
# C_*Init calls the run made, which is what it proves (this bench does not change that).
READS, WRAPS, UNWRAPS = 5, 2, 1
PAIR_READS = 3  # a key pair's public object: read by the census, again at the end, counted


def phase_of(mark: str) -> str:
    return next((phase for prefix, phase in PHASES if mark.startswith(prefix)), "other")


def total(phases: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for fns in phases.values():
        for fn, c in fns.items():
            out[fn] = out.get(fn, 0) + c
    return out


def minimum(by_function: dict[str, float], objects: int) -> float:
    """The least calls per key for the operations counted (``READS`` ... above)."""
    inits = sum(c for fn, c in by_function.items() if fn.endswith("Init")
                and not fn.startswith("C_FindObjects"))
    return READS + PAIR_READS * (objects - 1) + WRAPS + UNWRAPS + 2 * inits


def count(kind: Kind, n: int, root: Path, say: Say) -> dict[str, Any]:
    """One run at ``n`` keys of ``kind`` through the forwarding module (no latency): its
    counts by mark and function, summed over its processes."""
    root.mkdir(parents=True)
    lab, _ = build_lab(root, n, say, specs=tuple(kind.spec(i) for i in range(n)))
    forward = Forward(latency_us=0, calls_dir=root / "module-calls")
    profile = signed_profile(lab, forward)
    marks = root / "marks"
    marks.mkdir()
    module = json.loads(profile.read_text())["clusters"]["source"]["module"]
    out = pytest_run(lab, 0, False, profile, plugins=("keyparity.bench.call_marks",),
                     env={call_marks.ENV: str(marks), call_marks.MODULE_ENV: module})
    by_mark: dict[str, dict[str, int]] = {}
    for f in marks.glob("*.json"):
        for mark, fns in json.loads(f.read_text())["phases"].items():
            mine = by_mark.setdefault(mark, {})
            for fn, c in fns.items():
                mine[fn] = mine.get(fn, 0) + c
    return {"keys": n, "exit": out["exit"], "verdict": out["verdict"],
            "keys_proven": out["keys_proven"], "marks": by_mark,
            "module_total": forward.calls()["total"]}


def _child(kind: Kind, n: int, root: Path) -> dict[str, Any]:
    """``count`` in a process of its own: SoftHSM reads its configuration once per process,
    and each run has its own tokens."""
    out = subprocess.run([sys.executable, "-m", "keyparity.bench.calls", kind.name, str(n),
                          str(root)], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"counting {n} {kind.name} keys failed: {out.stderr[-2000:]}")
    return json.loads((root / "counts.json").read_text())


def per_key(kind: Kind, small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """The calls one more key costs: the difference of the two runs over their keys."""
    n = large["keys"] - small["keys"]
    phases: dict[str, dict[str, float]] = {}
    for mark in set(small["marks"]) | set(large["marks"]):
        a, b = small["marks"].get(mark, {}), large["marks"].get(mark, {})
        for fn in set(a) | set(b):
            d = (b.get(fn, 0) - a.get(fn, 0)) / n
            if d:
                mine = phases.setdefault(phase_of(mark), {})
                mine[fn] = mine.get(fn, 0) + d
    by_function = total(phases)  # type: ignore[arg-type]
    least = minimum(by_function, kind.objects)
    calls = sum(by_function.values())
    named = dict.fromkeys(phase for _, phase in PHASES)  # every phase, the ones at 0 too
    by_phase = {p: sum(phases.get(p, {}).values())
                for p in [*named, *sorted(set(phases) - set(named))]}
    return {"calls": calls, "by_phase": by_phase,
            "by_phase_function": phases, "by_function": by_function, "minimum": least,
            "ratio": calls / least, "goal_ratio": BUDGET, "met": calls <= BUDGET * least,
            "budget": kind.budget, "within_budget": calls <= kind.budget}


def measure(kinds: tuple[Kind, ...], n: int, root: Path, say: Say) -> dict[str, Any]:
    doc: dict[str, Any] = {"keys": [n, 2 * n], "kinds": {}, "machine": machine(),
                           "counter": "native/p11forward's counters, read between phases in "
                                      "the run (keyparity.bench.call_marks)"}
    for kind in kinds:
        runs = [_child(kind, k, root / f"{kind.name}-{k}") for k in (n, 2 * n)]
        ok = all(r["exit"] == 0 and r["verdict"] == "PASS" and r["keys_proven"] == r["keys"]
                 for r in runs)
        doc["kinds"][kind.name] = {"runs": runs, "ok": ok, **per_key(kind, *runs)}
        say(f"{kind.name}: {doc['kinds'][kind.name]['calls']:.1f} calls per key "
            f"(runs {'PASS' if ok else 'NOT PASS'})")
    doc["ok"] = all(k["ok"] for k in doc["kinds"].values())
    return doc


def report(doc: dict[str, Any], say: Say) -> None:
    for name, k in doc["kinds"].items():
        say(f"{name:5} {k['calls']:6.1f} calls per key (budget {k['budget']}: "
            f"{'within' if k['within_budget'] else 'OVER'}); minimum {k['minimum']:.0f}; ratio "
            f"{k['ratio']:.2f} (goal <= {k['goal_ratio']}: {'met' if k['met'] else 'NOT met'})")
        say("      by phase: " + ", ".join(f"{p} {c:.1f}" for p, c in k["by_phase"].items()))
        say("      by function: " + ", ".join(f"{f} {c:.1f}" for f, c in sorted(
            k["by_function"].items(), key=lambda fc: -fc[1])))


def main(args: argparse.Namespace) -> int:
    n = max(1, math.ceil(args.keys / 2))
    kinds = tuple(k for k in KINDS if not args.key_type or k.name in args.key_type)

    def work(root: Path, note: str) -> dict[str, Any]:
        say(f"PKCS #11 calls per key at {n} and {2 * n} keys of each type in {root}{note}")
        return measure(kinds, n, root, say)

    doc = in_scratch("keyparity-bench-calls-", work, keep=args.keep)
    if doc is None:
        return 130
    report(doc, say)
    return conclude(doc, args.json, say, "the counted runs")


if __name__ == "__main__":  # one count, in its own process (``_child``)
    _kind = next(k for k in KINDS if k.name == sys.argv[1])
    _root = Path(sys.argv[3])
    _doc = count(_kind, int(sys.argv[2]), _root, lambda line: None)
    (_root / "counts.json").write_text(json.dumps(_doc) + "\n")
