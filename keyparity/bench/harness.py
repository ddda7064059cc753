"""``keyparity bench``: migrate and verify N keys on tmpfs SoftHSM tokens, and compare the
harness with a bare python-pkcs11 loop making the same PKCS #11 calls, in the same process.

Layout: a fresh token directory under /dev/shm with three tokens. hsm1 is the source and holds
N AES-256 keys (seeding is set-up, not timed). The harness (Migrator: index lookup, source
attribute read, unwrap template, RSA-OAEP + CKM_AES_KEY_WRAP_PAD inside the tokens, the strong
proof on both sides) migrates them to hsm2; the bare loop migrates the same source keys to hsm3
with plain python-pkcs11 calls and no keyparity code in between. Both run in interleaved batches
(the order swaps every batch), so machine noise hits both alike; each batch is timed with
time.perf_counter. ratio = harness time / bare time.

The token directory is removed at the end, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, ObjectClass

from ..hsm import cluster, identity
from ..hsm.cluster import ClusterSession, find_token, load_module
from ..hsm.login import LoginGate
from ..hsm.migrate import Migration, Migrator
from ..hsm.seed import seed
from ..hsm.softhsm import find_module, provision
from ..profile import KeySpec, Profile
from .bare import Bare
from .common import (
    BARE_TARGET, SOURCE, TARGET, TMPFS, Say, conclude, in_scratch, key_spec, lab_profile,
    machine, say,
)

GOAL_RATIO = 1.25
MEMORY_METHOD = ("resource.getrusage(RUSAGE_SELF).ru_maxrss: peak resident set size of the "
                 "whole process in KiB (Python, both code paths and the in-process SoftHSM, "
                 "which keeps every object of the three tokens in memory); no tracemalloc, "
                 "so that the timings are not distorted")


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    keys: int
    batch: int
    token_dir: str
    tmpfs: bool
    setup: dict[str, Any] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    harness: dict[str, Any] = field(default_factory=dict)
    bare: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lab:
    """The provisioned, seeded tokens: the loaded module, the generated profile, the pins by
    token label and the seeded keys."""
    root: Path
    lib: Any
    profile: Profile
    pins: dict[str, str]
    specs: tuple[KeySpec, ...]


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _count_keys(lib: Any, label: str, pin: str | None) -> set[str]:
    """Labels of the secret token objects on a token (a fresh session, after the run)."""
    session = lib.get_token(token_label=label).open(rw=False, user_pin=pin)
    try:
        return {obj[Attribute.LABEL] for obj in
                session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                     Attribute.TOKEN: True})}
    finally:
        session.close()


def _provision_and_seed(fig: Figures, root: Path, module: str, say: Say) -> Lab:
    """Three tokens in ``root``, N keys seeded on the source (set-up, timed apart)."""
    clock, n = time.perf_counter, fig.keys
    t = clock()
    conf = provision(root, [SOURCE, TARGET, BARE_TARGET])
    fig.setup["provision_seconds"] = clock() - t
    pins = {label: (root / f"{label}.pin").read_text().strip()
            for label in (SOURCE, TARGET, BARE_TARGET)}
    specs = tuple(key_spec(i) for i in range(n))
    profile = lab_profile(root, module, conf, specs)
    lib = load_module(module, profile.module_env)  # sets SOFTHSM2_CONF before the first load

    t = clock()
    with find_token(lib, profile.source).open(user_pin=pins[SOURCE], rw=True) as session:
        created = seed(session, specs)
    fig.setup["seed_seconds"] = clock() - t
    if len(created) != n:
        raise RuntimeError(f"seeded {len(created)} keys, wanted {n}")
    fig.memory["after_seed_maxrss_kib"] = _maxrss_kib()
    say(f"seeded {n} AES-256 keys on {SOURCE} in {fig.setup['seed_seconds']:.2f} s (not timed)")
    return Lab(root=root, lib=lib, profile=profile, pins=pins, specs=specs)


def _set_up_harness(fig: Figures, lab: Lab, opened: list[Any]) -> Migrator:
    """Harness set-up, each part timed: sessions (login), index (one enumeration per token),
    wrapping channel (RSA pair on the target, public half on the source, one probe move).
    The sessions are added to ``opened`` as they open."""
    clock, profile = time.perf_counter, lab.profile
    gate = LoginGate(lab.root / "login-state.json")
    t = clock()
    src = ClusterSession(profile.source, profile.module_env, gate)
    opened.append(src)
    tgt = ClusterSession(profile.target, profile.module_env, gate)
    opened.append(tgt)
    t_open = clock() - t
    t = clock()
    src_index, tgt_index = src.index, tgt.index
    t_index = clock() - t
    migrator = Migrator(profile, src, tgt, "bench")
    t = clock()
    migrator.backend.channel  # noqa: B018 - created here, not in the first timed batch
    t_channel = clock() - t
    indexed = sum(len(v) for v in src_index.by_label.values()) + \
        sum(len(v) for v in tgt_index.by_label.values())
    fig.setup["harness"] = {"open_sessions_seconds": t_open, "index_build_seconds": t_index,
                            "index_objects": indexed, "wrapping_channel_seconds": t_channel}
    return migrator


def _set_up_bare(fig: Figures, lab: Lab, opened: list[Any]) -> Bare:
    """The bare loop's set-up, timed likewise: sessions, one enumeration, the RSA pair."""
    clock = time.perf_counter
    t = clock()
    bare = Bare(lab.lib, SOURCE, BARE_TARGET, lab.pins[BARE_TARGET])
    opened.append(bare)
    b_open = clock() - t
    t = clock()
    bare.enumerate()
    b_enum = clock() - t
    t = clock()
    bare.wrapping_pair()
    b_pair = clock() - t
    fig.setup["bare"] = {"open_sessions_seconds": b_open, "enumerate_seconds": b_enum,
                         "enumerated_objects": bare.objects, "wrapping_pair_seconds": b_pair}
    return bare


def _say_setup(fig: Figures, say: Say) -> None:
    h, b = fig.setup["harness"], fig.setup["bare"]
    indexed, t_index = h["index_objects"], h["index_build_seconds"]
    say(f"set-up: harness index of {indexed} objects in {t_index:.3f} s "
        f"({t_index / max(indexed, 1) * 1e6:.1f} us/object), channel "
        f"{h['wrapping_channel_seconds']:.3f} s; bare enumeration of "
        f"{b['enumerated_objects']} objects in {b['enumerate_seconds']:.3f} s")


def _migrate_in_batches(fig: Figures, specs: tuple[KeySpec, ...], migrator: Migrator,
                        bare: Bare, say: Say) -> tuple[list[Migration], list[tuple[str, str]]]:
    """Both paths over the same keys in interleaved batches (the order swaps every batch),
    each batch timed; a progress line about every tenth of the run."""
    ensure = migrator.ensure
    bare_migrate = bare.migrate
    harness_out: list[Migration] = []
    bare_out: list[tuple[str, str]] = []

    def harness_batch(chunk: Sequence[KeySpec]) -> None:
        for spec in chunk:
            harness_out.append(ensure(spec))

    def bare_batch(chunk: Sequence[KeySpec]) -> None:
        for spec in chunk:
            bare_out.append(bare_migrate(spec.label))

    paths = {"harness": harness_batch, "bare": bare_batch}
    starts = range(0, fig.keys, fig.batch)
    report_every = max(1, len(starts) // 10)
    window = [0.0, 0.0, 0]
    for b, start in enumerate(starts):
        chunk = specs[start:start + fig.batch]
        row = _timed_batch(b, start, chunk, paths)
        fig.batches.append(row)
        window[0] += row["harness_seconds"]
        window[1] += row["bare_seconds"]
        window[2] += len(chunk)
        if (b + 1) % report_every == 0 or b == len(starts) - 1:
            done = start + len(chunk)
            say(f"  keys {done - window[2] + 1:>6}-{done:<6} harness "
                f"{window[2] / window[0]:8.1f} keys/s   bare {window[2] / window[1]:8.1f} "
                f"keys/s   ratio {window[0] / window[1]:.3f}")
            window = [0.0, 0.0, 0]
    return harness_out, bare_out


def _timed_batch(b: int, start: int, chunk: Sequence[KeySpec],
                 paths: dict[str, Callable[[Sequence[KeySpec]], None]]) -> dict[str, Any]:
    """One batch through both paths, harness first in even batches; wall and CPU time each."""
    clock, cpu = time.perf_counter, time.process_time
    order = ("harness", "bare") if b % 2 == 0 else ("bare", "harness")
    took, cpu_took = {}, {}
    for path in order:
        c = cpu()
        t = clock()
        paths[path](chunk)
        took[path] = clock() - t
        cpu_took[path] = cpu() - c
    return {"batch": b, "first_key": start, "keys": len(chunk),
            "first": order[0], "harness_seconds": took["harness"],
            "bare_seconds": took["bare"],
            "harness_cpu_seconds": cpu_took["harness"],
            "bare_cpu_seconds": cpu_took["bare"]}


def _verify(fig: Figures, lab: Lab, migrator: Migrator, bare: Bare, opened: list[Any],
            harness_out: list[Migration], bare_out: list[tuple[str, str]]) -> None:
    """Verification (not timed): the proofs of both paths, the two targets' material compared,
    wrapping objects left, the keys on both targets counted in fresh sessions. Closes the
    Migrator and the bare loop."""
    h_migrated = sum(1 for m in harness_out if m.status == "migrated")
    h_matched = sum(1 for m in harness_out if m.identity.get("match") is True)
    failed = [f"{m.spec.label}: {m.detail}" for m in harness_out if not m.ok]
    b_matched = sum(1 for s, t_ in bare_out if s == t_)
    # both targets hold the same material: compared after the timed part, by the KCV (each
    # path's proof had a challenge of its own)
    agree = sum(1 for m in harness_out if m.target is not None and m.spec.label in bare.moved
                and identity.material_check(m.target.key, TARGET) == identity.material_check(
                    bare.moved[m.spec.label], BARE_TARGET))
    left = migrator.close()
    bare.close()
    opened.remove(bare)
    labels = {s.label for s in lab.specs}
    on_target = _count_keys(lab.lib, TARGET, None)  # hsm2 is still logged in by the harness
    on_bare_target = _count_keys(lab.lib, BARE_TARGET, lab.pins[BARE_TARGET])
    fig.checks = {
        "harness_migrated": h_migrated, "harness_kcv_matched": h_matched,
        "harness_failures": failed[:10], "bare_migrated": len(bare_out),
        "bare_kcv_matched": b_matched, "kcv_agree_harness_and_bare": agree,
        "target_keys": len(on_target), "target_labels_match": on_target == labels,
        "bare_target_keys": len(on_bare_target),
        "bare_target_labels_match": on_bare_target == labels,
        "wrapping_objects_left": left,
    }


def _totals(fig: Figures) -> None:
    """Seconds, keys/s and CPU seconds per path over the batches; the peak RSS."""
    for path, out in (("harness", fig.harness), ("bare", fig.bare)):
        secs = sum(b[f"{path}_seconds"] for b in fig.batches)
        out.update(seconds=secs, keys_per_second=fig.keys / secs,
                   cpu_seconds=sum(b[f"{path}_cpu_seconds"] for b in fig.batches))
    fig.memory["peak_rss_kib"] = _maxrss_kib()
    fig.memory["method"] = MEMORY_METHOD


def run(n: int, batch: int, root: Path, say: Say) -> Figures:
    """Provision, seed, migrate both ways in interleaved batches, verify; returns the figures."""
    fig = Figures(keys=n, batch=batch, token_dir=str(root), tmpfs=root.parent == TMPFS)
    module = find_module()
    if module in cluster._libs:  # noqa: SLF001 - SoftHSM reads SOFTHSM2_CONF once per process
        raise RuntimeError("SoftHSM is already loaded in this process; run the bench in a "
                           "fresh process")
    lab = _provision_and_seed(fig, root, module, say)
    opened: list[Any] = []  # sessions and the bare loop: closed last first, also on error
    try:
        migrator = _set_up_harness(fig, lab, opened)
        bare = _set_up_bare(fig, lab, opened)
        fig.memory["after_setup_maxrss_kib"] = _maxrss_kib()
        _say_setup(fig, say)
        harness_out, bare_out = _migrate_in_batches(fig, lab.specs, migrator, bare, say)
        fig.memory["after_run_maxrss_kib"] = _maxrss_kib()
        _verify(fig, lab, migrator, bare, opened, harness_out, bare_out)
    finally:
        for c in reversed(opened):
            c.close()
    _totals(fig)
    return fig


# --------------------------------------------------------------------------- figures


def _linearity(batches: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """keys/s over the first and the second half of the batches, and per tenth of the run."""
    def rate(part: list[dict[str, Any]]) -> float | None:
        secs = sum(b[f"{path}_seconds"] for b in part)
        return sum(b["keys"] for b in part) / secs if secs else None
    half = len(batches) // 2
    first, second = (rate(batches[:half]), rate(batches[half:])) if half else (None, None)
    tenths = []
    if len(batches) >= 10:
        step = len(batches) / 10
        tenths = [rate(batches[round(i * step):round((i + 1) * step)]) for i in range(10)]
    return {"first_half_keys_per_second": first, "second_half_keys_per_second": second,
            "second_over_first": (second / first) if first and second else None,
            "tenths_keys_per_second": tenths}


def summary(fig: Figures) -> dict[str, Any]:
    ratio = fig.harness["seconds"] / fig.bare["seconds"]
    per_batch = [b["harness_seconds"] / b["bare_seconds"] for b in fig.batches]
    c = fig.checks
    n = fig.keys
    ok = (c["harness_migrated"] == n and c["harness_kcv_matched"] == n
          and c["bare_kcv_matched"] == n and c["kcv_agree_harness_and_bare"] == n
          and c["target_keys"] == n and c["bare_target_keys"] == n
          and c["target_labels_match"] and c["bare_target_labels_match"])
    return {
        "keys": n, "batch": fig.batch, "key_type": "AES-256",
        "wrapping": "RSA-2048 OAEP (sha1/mgf1-sha1) + CKM_AES_KEY_WRAP_PAD, two steps",
        "token_dir": fig.token_dir, "tmpfs": fig.tmpfs,
        "timer": ("time.perf_counter per batch (ratio); time.process_time per batch as well "
                  "(ratio_cpu: CPU time of this process, SoftHSM included, less sensitive to "
                  "other load on the machine); batches interleaved, order swapped every batch"),
        "ratio": ratio, "ratio_median_of_batches": statistics.median(per_batch),
        "ratio_cpu": fig.harness["cpu_seconds"] / fig.bare["cpu_seconds"],
        "goal_ratio": GOAL_RATIO, "within_goal": ratio <= GOAL_RATIO,
        "harness": {**fig.harness, "linearity": _linearity(fig.batches, "harness")},
        "bare": {**fig.bare, "linearity": _linearity(fig.batches, "bare")},
        "setup": fig.setup, "memory": fig.memory, "checks": c, "ok": ok,
        "batches": fig.batches, "machine": machine(),
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def report(doc: dict[str, Any], say: Say) -> None:
    h, b, c, m = doc["harness"], doc["bare"], doc["checks"], doc["memory"]
    n = doc["keys"]
    say(f"harness   {h['seconds']:9.3f} s  {h['keys_per_second']:9.1f} keys/s  "
        f"(Migrator.ensure: index lookup, attribute read, template, wrap/unwrap, proof x2)")
    say(f"bare loop {b['seconds']:9.3f} s  {b['keys_per_second']:9.1f} keys/s  "
        f"(plain python-pkcs11, same PKCS #11 calls)")
    say(f"ratio harness/bare {doc['ratio']:.3f} (median of batches "
        f"{doc['ratio_median_of_batches']:.3f}; CPU time {doc['ratio_cpu']:.3f}; goal <= "
        f"{doc['goal_ratio']}: {'met' if doc['within_goal'] else 'NOT met'})")
    for name, part in (("harness", h), ("bare", b)):
        lin = part["linearity"]
        if lin["second_over_first"] is not None:
            say(f"linearity {name:<8} first half {lin['first_half_keys_per_second']:.1f} keys/s, "
                f"second half {lin['second_half_keys_per_second']:.1f} keys/s "
                f"(x{lin['second_over_first']:.3f})")
    hs = doc["setup"]["harness"]
    say(f"set-up    provision {doc['setup']['provision_seconds']:.2f} s, seed "
        f"{doc['setup']['seed_seconds']:.2f} s, harness index {hs['index_build_seconds']:.3f} s "
        f"for {hs['index_objects']} objects, channel {hs['wrapping_channel_seconds']:.3f} s")
    say(f"memory    peak RSS {_mib(m['peak_rss_kib'])} (after seeding "
        f"{_mib(m['after_seed_maxrss_kib'])}, after set-up {_mib(m['after_setup_maxrss_kib'])}; "
        f"whole process incl. SoftHSM, getrusage ru_maxrss)")
    say(f"checks    harness migrated {c['harness_migrated']}/{n}, proven "
        f"{c['harness_kcv_matched']}/{n}; bare proven {c['bare_kcv_matched']}/{n}; "
        f"harness and bare targets agree {c['kcv_agree_harness_and_bare']}/{n}; "
        f"{TARGET} holds {c['target_keys']}, {BARE_TARGET} holds {c['bare_target_keys']} keys")
    for line in c["harness_failures"]:
        say(f"  failed: {line}")
    mach = doc["machine"]
    say(f"machine   {mach['cpu_count']} CPUs ({mach['cpu_model']}), Python {mach['python']}, "
        f"python-pkcs11 {mach['python_pkcs11']}, SoftHSM {mach['softhsm']}")


# --------------------------------------------------------------------------- command


def main(args: argparse.Namespace) -> int:
    n, batch = args.keys, args.batch
    if n < 1 or batch < 1:
        print("keyparity: error: --keys and --batch must be at least 1", file=sys.stderr)
        return 2
    def work(root: Path, note: str) -> dict[str, Any]:
        say(f"{n} AES-256 keys in batches of {batch}; tokens {SOURCE} -> {TARGET} (harness) "
            f"and {SOURCE} -> {BARE_TARGET} (bare loop) in {root}{note}")
        return run(n, batch, root, say)

    fig = in_scratch("keyparity-bench-", work)
    if fig is None:
        return 130
    doc = summary(fig)
    report(doc, say)
    return conclude(doc, args.json, say, "both paths")
