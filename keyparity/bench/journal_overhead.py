"""``keyparity bench --journal-overhead``: what the write journal costs the harness, measured side
by side in one run with several worker processes (``-n 2`` by default, as a run would use).

Layout: a fresh token directory on tmpfs (/dev/shm) with three tokens. hsm1 holds N AES-256
keys (seeded in a child process; not timed). Each worker process owns a contiguous share of
the keys and runs two Migrators over the same source session: one WITH the journal, migrating
to hsm2, and one WITHOUT it, migrating to hsm3; so both variants move the same source keys.
Every worker opens the same journal database (one connection per process, as in a run), so
the journaled phases are the contended case: two processes appending to one hash chain. Both
variants take the per-key locks (files beside each target's token directory:
keyparity.journal.locks), as every writing Migrator does: what differs is the journal alone.

The journal file is NOT on tmpfs: it lives in a temporary directory on the filesystem of
``--journal-dir`` (default /tmp; the real journal is ``<rootdir>/.keyparity/journal.sqlite`` on
disk), because the fsyncs are what the journal costs. Its filesystem type is reported.

The journaled Migrator is given its keys in chunks, as the plugin gives a run's keys (one
xdist group each, ``keyparity.chunks.chunk_size``): the unwraps of a chunk share one durable
commit of their ``before`` entries (group commit); each ``after`` is still its own commit.

Timing: the workers go through rounds of ``--batch`` keys each; in every round both workers run
the journaled batch together, then both run the plain batch together (the order swaps every
round), a barrier between phases. A phase's wall time is from the earliest worker start to the
latest worker end (time.perf_counter, CLOCK_MONOTONIC, the same clock in every process on
Linux). overhead = journaled time / plain time - 1; goal <= 10%.

SoftHSM's file store is not safe when processes load the module together: each worker loads
the module and logs in through keyparity's LoginGate (one file lock around load + login per
process, as ``-n`` workers do). The parent process never loads SoftHSM.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, ObjectClass

from ..hsm.cluster import ClusterSession, find_token, load_module
from ..hsm.login import LoginGate
from ..hsm import identity
from ..hsm.migrate import Migrator
from ..hsm.seed import seed
from ..hsm.softhsm import find_module, provision
from ..journal.chain import verify
from ..journal.locks import KeyLocks
from ..journal.store import Journal
from ..hsm.migrate import chunk_size, chunks
from ..secrets import SecretRef
from .common import (
    BARE_TARGET, SOURCE, TARGET, TMPFS, conclude, interrupt, key_spec, lab_profile, machine,
    say,
)

GOAL_OVERHEAD = 0.10
JOURNALED, PLAIN = "journaled", "plain"
RUN_JOURNALED, RUN_PLAIN = "bench-journaled", "bench-plain"
BARRIER_TIMEOUT = 3600.0


def filesystem(path: Path) -> dict[str, str]:
    """The mount (longest prefix in /proc/self/mounts) that holds ``path``."""
    path = Path(path).resolve()
    best = {"mount": "/", "type": "unknown", "device": "unknown"}
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == Path(mnt) or Path(mnt) in path.parents) and len(mnt) >= len(best["mount"]):
                best = {"mount": mnt, "type": fstype, "device": dev}
    except OSError:
        pass
    return best


# --------------------------------------------------------------------------- child processes


def _load(root: Path, n: int) -> tuple[Any, dict[str, str], tuple[Any, ...]]:
    conf = root / "softhsm2.conf"
    pins = {label: (root / f"{label}.pin").read_text().strip()
            for label in (SOURCE, TARGET, BARE_TARGET)}
    specs = tuple(key_spec(i) for i in range(n))
    return lab_profile(root, find_module(), conf, specs), pins, specs


def _seed_child(root: str, n: int, out: Any) -> None:
    try:
        profile, pins, specs = _load(Path(root), n)
        lib = load_module(str(profile.source.module), profile.module_env)
        t = time.perf_counter()
        with find_token(lib, profile.source).open(user_pin=pins[SOURCE], rw=True) as session:
            created = seed(session, specs)
        out.put(("ok", {"seeded": len(created), "seconds": time.perf_counter() - t}))
    except BaseException:  # noqa: BLE001 - reported to the parent
        out.put(("error", traceback.format_exc()))


def _count_child(root: str, n: int, out: Any) -> None:
    try:
        profile, pins, _ = _load(Path(root), n)
        lib = load_module(str(profile.source.module), profile.module_env)
        found = {}
        for label in (TARGET, BARE_TARGET):
            with lib.get_token(token_label=label).open(user_pin=pins[label]) as session:
                found[label] = sorted(o[Attribute.LABEL] for o in session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True}))
        out.put(("ok", found))
    except BaseException:  # noqa: BLE001
        out.put(("error", traceback.format_exc()))


@dataclass
class _Held:
    """What a worker has open; closed at its end, also on error."""
    migrators: list[Any] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)
    journal: Journal | None = None

    def close(self) -> None:
        for m in self.migrators:
            try:
                m.close()
            except Exception:  # noqa: BLE001
                pass
        for s in self.sessions:
            s.close()
        if self.journal is not None:
            self.journal.close()


def _set_up_worker(held: _Held, profile: Any, root: Path, gate: LoginGate, journal_path: str,
                   synchronous: str | None) -> tuple[Migrator, Migrator]:
    """Sessions on the source, hsm2 and hsm3 (indexed), the journal, and the two Migrators
    (journaled to hsm2, plain to hsm3) with their wrapping pairs: all before timing."""
    src = ClusterSession(profile.source, profile.module_env, gate)
    tgt_j = ClusterSession(profile.target, profile.module_env, gate)
    plain_spec = dataclasses.replace(
        profile.target, name=BARE_TARGET, token_label=BARE_TARGET,
        pin=SecretRef("file", str(root / f"{BARE_TARGET}.pin"), "clusters.target.pin"))
    tgt_p = ClusterSession(plain_spec, profile.module_env, gate)
    held.sessions = [tgt_p, tgt_j, src]
    src.index  # noqa: B018 - built before timing
    tgt_j.index  # noqa: B018
    tgt_p.index  # noqa: B018
    kwargs = {} if synchronous is None else {"sync": synchronous}
    held.journal = Journal(Path(journal_path), **kwargs)
    mj = Migrator(profile, src, tgt_j, RUN_JOURNALED, journal=held.journal)
    mp_ = Migrator(profile, src, tgt_p, RUN_PLAIN)
    held.migrators = [mj, mp_]
    mj.backend.channel  # noqa: B018 - wrapping pairs made before timing
    mp_.backend.channel  # noqa: B018
    return mj, mp_


def _worker_rounds(w: int, mine: tuple[Any, ...], rounds: int, batch: int,
                   migrators: dict[str, Migrator], barrier: Any
                   ) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """The timed rounds: per round both variants over the round's keys (the order swaps every
    round), a barrier before each phase so that the workers run each phase together."""
    results: dict[str, list[Any]] = {JOURNALED: [], PLAIN: []}
    timings = []
    clock, cpu = time.perf_counter, time.process_time
    for r in range(rounds):
        part = mine[r * batch:(r + 1) * batch]
        order = (JOURNALED, PLAIN) if r % 2 == 0 else (PLAIN, JOURNALED)
        row: dict[str, Any] = {"round": r, "worker": w, "keys": len(part), "first": order[0]}
        for variant in order:
            ensure = migrators[variant].ensure
            got = results[variant]
            barrier.wait(BARRIER_TIMEOUT)
            c, t0 = cpu(), clock()
            for spec in part:
                got.append(ensure(spec))
            t1 = clock()
            row[variant] = {"start": t0, "end": t1, "cpu_seconds": cpu() - c}
        timings.append(row)
    return results, timings


def _check(ms: list[Any]) -> dict[str, Any]:
    """A variant's outcome in one worker (after the timed rounds): migrated, proven (the strong
    proof matched), failures, and each target key's KCV (computed now, so that the two variants'
    targets can be compared: each proof had a challenge of its own)."""
    return {"migrated": sum(m.status == "migrated" for m in ms),
            "kcv_matched": sum(m.identity.get("match") is True for m in ms),
            "failures": [f"{m.spec.label}: {m.detail}" for m in ms if not m.ok][:10],
            "kcvs": {m.spec.label: identity.kcv(m.target.key, m.target.cluster).value
                     if m.target is not None else None for m in ms}}


def _worker(w: int, workers: int, root: str, n: int, batch: int, journal_path: str,
            synchronous: str | None, chunk: int | None, barrier: Any, out: Any) -> None:
    """One worker: its share of the keys, journaled to hsm2 and plain to hsm3, in rounds."""
    held = _Held()
    try:
        profile, _, specs = _load(Path(root), n)
        share = -(-n // workers)
        mine = specs[w * share:(w + 1) * share]
        gate = LoginGate(Path(root) / "login-state.json")  # one file lock around load + login
        t = time.perf_counter()
        mj, mp_ = _set_up_worker(held, profile, Path(root), gate, journal_path, synchronous)
        setup = time.perf_counter() - t
        rounds = -(-share // batch)
        # as the plugin chunks a run's keys (one xdist group each); --chunk 0: none
        size = chunk_size(n, workers) if chunk is None else chunk
        for r in range(rounds if size else 0):
            mj.set_batches(chunks(mine[r * batch:(r + 1) * batch], size))
        results, timings = _worker_rounds(w, mine, rounds, batch, {JOURNALED: mj, PLAIN: mp_},
                                          barrier)
        barrier.wait(BARRIER_TIMEOUT)
        left = mj.close() + mp_.close()
        held.migrators = []
        out.put(("ok", {"worker": w, "keys": len(mine), "setup_seconds": setup,
                        "timings": timings, JOURNALED: _check(results[JOURNALED]),
                        PLAIN: _check(results[PLAIN]), "wrapping_objects_left": left,
                        "pid": os.getpid()}))
    except BaseException:  # noqa: BLE001 - reported; the other worker is released
        barrier.abort()
        out.put(("error", f"worker {w}:\n{traceback.format_exc()}"))
    finally:
        held.close()


def _child(ctx: Any, target: Any, *args: Any) -> Any:
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    status, value = q.get()
    p.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


# --------------------------------------------------------------------------- the run


def _provision_and_seed(ctx: Any, root: Path, n: int, say: Any) -> tuple[float, dict[str, Any]]:
    """Three tokens in ``root``, N keys seeded on the source in a child process (not timed);
    returns the provisioning time and what the seeding child reported."""
    t = time.perf_counter()
    provision(root, [SOURCE, TARGET, BARE_TARGET])
    provision_s = time.perf_counter() - t
    seeded = _child(ctx, _seed_child, str(root), n)
    if seeded["seeded"] != n:
        raise RuntimeError(f"seeded {seeded['seeded']} keys, wanted {n}")
    say(f"seeded {n} AES-256 keys on {SOURCE} in {seeded['seconds']:.2f} s (not timed)")
    return provision_s, seeded


def _run_workers(ctx: Any, workers: int, root: Path, n: int, batch: int, journal_path: Path,
                 synchronous: str | None, chunk: int | None) -> list[dict[str, Any]]:
    """Start the workers, collect what each reports (ordered by worker); any error raises."""
    barrier, q = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(w, workers, str(root), n, batch, str(journal_path),
                                               synchronous, chunk, barrier, q))
             for w in range(workers)]
    for p in procs:
        p.start()
    try:
        got = [q.get() for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
                p.join()
    errors = [v for s, v in got if s != "ok"]
    if errors:
        raise RuntimeError("\n".join(errors))
    return sorted((v for _, v in got), key=lambda v: v["worker"])


def _phase_rounds(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Phase wall times: earliest start to latest end over the workers, per round and
    variant."""
    rounds = []
    for r in range(max(len(p["timings"]) for p in parts)):
        rows = [p["timings"][r] for p in parts if r < len(p["timings"])]
        entry: dict[str, Any] = {"round": r, "keys": sum(x["keys"] for x in rows),
                                 "first": rows[0]["first"]}
        for v in (JOURNALED, PLAIN):
            entry[f"{v}_seconds"] = (max(x[v]["end"] for x in rows)
                                     - min(x[v]["start"] for x in rows))
            entry[f"{v}_cpu_seconds"] = sum(x[v]["cpu_seconds"] for x in rows)
        rounds.append(entry)
    return rounds


def _journal_counts(journal_path: Path, root: Path) -> dict[str, Any]:
    """Entries (in all and per action/phase) and journal_mode (Journal.stats), and the key
    locks of both targets left held (a record a worker left ``held``)."""
    journal = Journal(journal_path)
    try:
        stats = journal.stats()
    finally:
        journal.close()
    held = sum(1 for folder in (root / "tokens.keyparity-locks").glob("*")
               for entry in KeyLocks(folder, "bench").holders()
               if entry["held"] or entry["record"].get("state") == "held")
    return {"by_action": stats["by_action"], "entries": stats["entries"],
            "locks_left": held, "mode": stats["journal_mode"]}


def _checks(parts: list[dict[str, Any]], on_target: dict[str, list[str]], labels: list[str],
            chain: list[str], locks_left: int) -> dict[str, Any]:
    """Both variants' outcomes over the workers, the keys on both targets, the journal's
    chain, and the key locks. Takes the target KCVs out of ``parts`` (they are not in the
    figures)."""
    kcv_j = {k: v for p in parts for k, v in p[JOURNALED].pop("kcvs").items()}
    kcv_p = {k: v for p in parts for k, v in p[PLAIN].pop("kcvs").items()}
    return {
        "journaled_migrated": sum(p[JOURNALED]["migrated"] for p in parts),
        "journaled_kcv_matched": sum(p[JOURNALED]["kcv_matched"] for p in parts),
        "plain_migrated": sum(p[PLAIN]["migrated"] for p in parts),
        "plain_kcv_matched": sum(p[PLAIN]["kcv_matched"] for p in parts),
        "kcv_agree_journaled_and_plain": sum(1 for k, v in kcv_j.items()
                                             if v is not None and kcv_p.get(k) == v),
        "failures": [f for p in parts for v in (JOURNALED, PLAIN) for f in p[v]["failures"]],
        "target_keys": len(on_target[TARGET]),
        "target_labels_match": on_target[TARGET] == labels,
        "plain_target_keys": len(on_target[BARE_TARGET]),
        "plain_target_labels_match": on_target[BARE_TARGET] == labels,
        "journal_chain_problems": chain[:10], "locks_left": locks_left,
        "wrapping_objects_left": [x for p in parts for x in p["wrapping_objects_left"]],
    }


def run(n: int, batch: int, workers: int, root: Path, journal_dir: Path,
        synchronous: str | None, say: Any, chunk: int | None = None) -> dict[str, Any]:
    """Provision and seed, run the workers, then count the targets and read the journal: the
    raw figures (``summary`` makes the document)."""
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing of SoftHSM is inherited
    provision_s, seeded = _provision_and_seed(ctx, root, n, say)
    journal_path = journal_dir / "journal.sqlite"
    parts = _run_workers(ctx, workers, root, n, batch, journal_path, synchronous, chunk)
    on_target = _child(ctx, _count_child, str(root), n)
    rounds = _phase_rounds(parts)
    labels = sorted(s.label for s in _load(root, n)[2])
    counts = _journal_counts(journal_path, root)
    chain = verify(journal_path)
    checks = _checks(parts, on_target, labels, chain, counts["locks_left"])
    return {"provision_seconds": provision_s, "seed_seconds": seeded["seconds"],
            "workers": parts, "rounds": rounds, "checks": checks,
            "journal": {"path": str(journal_path), "filesystem": filesystem(journal_dir),
                        "chunk": chunk_size(n, workers) if chunk is None else chunk,
                        "journal_mode": counts["mode"], "sync": synchronous or "default (before)",
                        "bytes": sum(f.stat().st_size for f in journal_dir.iterdir()),
                        "entries": counts["entries"],
                        "entries_per_key": counts["entries"] / n,
                        "entries_by_action": counts["by_action"]}}


def summary(n: int, batch: int, workers: int, root: Path, raw: dict[str, Any]) -> dict[str, Any]:
    rounds = raw["rounds"]
    secs = {v: sum(r[f"{v}_seconds"] for r in rounds) for v in (JOURNALED, PLAIN)}
    cpu = {v: sum(r[f"{v}_cpu_seconds"] for r in rounds) for v in (JOURNALED, PLAIN)}
    overhead = secs[JOURNALED] / secs[PLAIN] - 1
    per_round = [r[f"{JOURNALED}_seconds"] / r[f"{PLAIN}_seconds"] - 1 for r in rounds
                 if r[f"{PLAIN}_seconds"] > 0]
    c = raw["checks"]
    ok = (c["journaled_migrated"] == n and c["journaled_kcv_matched"] == n
          and c["plain_migrated"] == n and c["plain_kcv_matched"] == n
          and c["kcv_agree_journaled_and_plain"] == n and c["target_labels_match"]
          and c["plain_target_labels_match"] and not c["journal_chain_problems"]
          and c["locks_left"] == 0 and not c["failures"])
    return {
        "mode": "journal-overhead", "keys": n, "batch": batch, "workers": workers,
        "key_type": "AES-256", "token_dir": str(root), "tmpfs": root.parent == TMPFS,
        "timer": ("time.perf_counter; per round and variant, earliest worker start to latest "
                  "worker end (barrier before each phase); journaled and plain phases "
                  "interleaved, order swapped every round"),
        JOURNALED: {"seconds": secs[JOURNALED], "keys_per_second": n / secs[JOURNALED],
                    "cpu_seconds": cpu[JOURNALED]},
        PLAIN: {"seconds": secs[PLAIN], "keys_per_second": n / secs[PLAIN],
                "cpu_seconds": cpu[PLAIN]},
        "total": {"seconds": secs[JOURNALED] + secs[PLAIN],
                  "keys_per_second": 2 * n / (secs[JOURNALED] + secs[PLAIN])},
        "overhead": overhead,
        "overhead_median_of_rounds": statistics.median(per_round) if per_round else None,
        "overhead_cpu": cpu[JOURNALED] / cpu[PLAIN] - 1 if cpu[PLAIN] else None,
        "goal_overhead": GOAL_OVERHEAD, "within_goal": overhead <= GOAL_OVERHEAD,
        "journal": raw["journal"], "checks": c, "ok": ok,
        "setup": {"provision_seconds": raw["provision_seconds"],
                  "seed_seconds": raw["seed_seconds"],
                  "worker_setup_seconds": [p["setup_seconds"] for p in raw["workers"]]},
        "rounds": rounds, "machine": machine(),
    }


def report(doc: dict[str, Any], say: Any) -> None:
    j, p, c, jr = doc[JOURNALED], doc[PLAIN], doc["checks"], doc["journal"]
    n = doc["keys"]
    say(f"journaled {j['seconds']:9.3f} s  {j['keys_per_second']:9.1f} keys/s  "
        f"({doc['workers']} workers, one journal)")
    say(f"plain     {p['seconds']:9.3f} s  {p['keys_per_second']:9.1f} keys/s  (no journal)")
    say(f"total     {doc['total']['seconds']:9.3f} s  {doc['total']['keys_per_second']:9.1f} "
        f"keys/s  ({2 * n} migrations)")
    med = doc["overhead_median_of_rounds"]
    say(f"overhead journaled/plain - 1 = {doc['overhead'] * 100:+.1f}% (median of rounds "
        f"{'n/a' if med is None else f'{med * 100:+.1f}%'}; CPU "
        f"{doc['overhead_cpu'] * 100:+.1f}%; goal <= {doc['goal_overhead'] * 100:.0f}%: "
        f"{'met' if doc['within_goal'] else 'NOT met'})")
    fs = jr["filesystem"]
    say(f"journal   {jr['path']} on {fs['type']} ({fs['device']} at {fs['mount']}), "
        f"journal_mode={jr['journal_mode']}, sync={jr['sync']}, "
        + (f"chunks of {jr['chunk']} keys, " if jr["chunk"] else "no chunks (one fsync per key), ")
        + f"{jr['entries']} entries ({jr['entries_per_key']:.2f}/key), {jr['bytes']} bytes")
    say(f"checks    journaled migrated {c['journaled_migrated']}/{n}, KCV matched "
        f"{c['journaled_kcv_matched']}/{n}; plain migrated {c['plain_migrated']}/{n}, KCV "
        f"matched {c['plain_kcv_matched']}/{n}; KCVs agree {c['kcv_agree_journaled_and_plain']}"
        f"/{n}; {TARGET} holds {c['target_keys']}, {BARE_TARGET} holds {c['plain_target_keys']}; "
        f"chain {'intact' if not c['journal_chain_problems'] else 'BROKEN'}, "
        f"{c['locks_left']} key locks left held")
    for line in c["failures"] + c["journal_chain_problems"]:
        say(f"  problem: {line}")


def main(args: argparse.Namespace) -> int:
    n, batch, workers = args.keys, args.batch, 2 if args.workers is None else args.workers
    if n < 1 or batch < 1 or workers < 1:
        print("keyparity: error: --keys, --batch and --workers must be at least 1",
              file=sys.stderr)
        return 2

    base = TMPFS if TMPFS.is_dir() else None
    journal_base = Path(args.journal_dir or tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="keyparity-bench-", dir=base))
    jdir = Path(tempfile.mkdtemp(prefix="keyparity-bench-journal-", dir=journal_base))
    fs = filesystem(jdir)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        try:
            say(f"journal overhead: {n} AES-256 keys, {workers} workers, batches of {batch}; "
                f"tokens {SOURCE} -> {TARGET} (journaled) and {SOURCE} -> {BARE_TARGET} (plain) "
                f"in {root}" + ("" if base else " (no /dev/shm: NOT on tmpfs)")
                + f"; journal in {jdir} ({fs['type']})")
            if fs["type"] in ("tmpfs", "ramfs"):
                say("WARNING: the journal is on tmpfs: fsync costs nothing there")
            raw = run(n, batch, workers, root, jdir, args.journal_sync, say, args.chunk)
        finally:
            signal.signal(signal.SIGTERM, previous)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(jdir, ignore_errors=True)
    except KeyboardInterrupt:
        print(f"keyparity bench: interrupted; removed {root} and {jdir}", file=sys.stderr)
        return 130
    doc = summary(n, batch, workers, root, raw)
    report(doc, say)
    return conclude(doc, args.json, say, "both variants")
