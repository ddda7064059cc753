"""``keyparity bench --pytest --latency-ms MS``: the path users take (pytest with the signed
bundle, as ``--pytest`` runs it) where every PKCS #11 call is a round trip of MS milliseconds,
serially and with ``-n W`` for each W of ``--workers-list``, side by side in one invocation.

The calls go through the forwarding module (``keyparity.bench.forward``): each waits the
latency asleep, as a process waits for a network HSM, and is counted. The N keys are seeded
once; each run starts from a fresh copy of the seeded tokens (hsm1 with the N keys, hsm2
empty), a fresh journal and reports directory. With ``--rounds R`` the order of the W's is
reversed every other round, so that the machine's noise falls on each W alike.

Per W: wall seconds, ms per key, speed-up over serial, the controller's CPU (the pytest main
process, measured inside it by ``keyparity.bench.phases``) and its share of the whole run's CPU
(the bench's ``RUSAGE_CHILDREN`` around the run: the controller and its reaped workers), the
phases (start-up, collection, test loop, bundle), each worker's start-up and first test, and
the calls per key by function (latency x calls is where the time goes). The goals (issue 26)
are printed met or NOT met as measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from .common import Say, conclude, in_scratch, machine, say
from .forward import Forward
from .user_path import Lab, build_lab, pytest_run, signed_profile, split, top_of_profile

GOAL_LATENCY_MS = 1.0
GOAL_SPEEDUP = {4: 3.0, 8: 5.0}     # -n W over serial, at GOAL_LATENCY_MS a call
GOAL_CONTROLLER_SHARE = 0.25        # of the whole run's CPU


def workers_list(text: str) -> tuple[int, ...]:
    """``1,2,4,8`` -> (1, 2, 4, 8); 1 is the serial run (no -n), which every speed-up needs."""
    try:
        ws = tuple(sorted({int(w) for w in text.split(",") if w.strip()}))
    except ValueError:
        ws = ()
    if not ws or ws[0] != 1:
        raise ValueError(f"--workers-list {text!r}: comma-separated worker counts >= 1, 1 "
                         "(serial) among them, e.g. 1,2,4,8")
    return ws


def _fresh(lab: Lab, pristine: Path) -> None:
    """The run's tokens as seeded, no journal, no reports, no marks of an earlier run."""
    shutil.rmtree(lab.run / "tokens")
    shutil.copytree(pristine, lab.run / "tokens")
    for stale in (*lab.run.glob("journal.sqlite*"), *lab.root.glob("phases.json*")):
        stale.unlink()
    shutil.rmtree(lab.run / "reports", ignore_errors=True)


def _worker_marks(lab: Lab, started: float) -> dict[str, dict[str, float]]:
    """Each xdist worker's marks (keyparity.bench.phases), as seconds since the run started."""
    out = {}
    for path in sorted(lab.root.glob("phases.json.gw*")):
        m = json.loads(path.read_text())
        cpu = m.get("cpu_seconds", {})
        out[path.suffix[1:]] = {
            "configured": m["configure"] - started,
            "collected": m.get("collection_end", m["configure"]) - started,
            "first_test": m.get("first_test", m["configure"]) - started,
            "loop_end": m.get("loop_end", m["unconfigure"]) - started,
            "cpu_seconds": cpu.get("unconfigure", 0.0),
            "cpu_before_first_test": cpu.get("first_test", 0.0)}
    return out


def role(stack: str) -> str:
    """Which process of a distributed run a py-spy stack is from (py-spy labels the samples of
    all the processes with the pytest process): an xdist worker runs xdist's remote loop under
    execnet, the controller runs pytest's main; the pipe readers are threads of both."""
    if "xdist/remote.py" in stack or "WorkerGateway" in stack:
        return "worker"
    if "_thread_receiver" in stack:
        return "pipe reader"
    return "controller" if "_pytest/config/__init__.py" in stack else "other"


def profile_by_role(path: Path) -> dict[str, Any]:
    """The top functions of the controller and of the workers apart (py-spy samples a thread
    that runs or waits for a CPU: on a busy machine, time rather than CPU)."""
    return {"file": str(path), **{r: top_of_profile(path, 12, lambda s, r=r: role(s) == r)
                                  for r in ("controller", "worker", "pipe reader")}}


def one_run(lab: Lab, pristine: Path, workers: int, latency_us: int, allure: bool, tag: str,
            py_spy: Path | None) -> dict[str, Any]:
    """The pytest run with -n ``workers`` (1: serial) through the forwarding module."""
    _fresh(lab, pristine)
    forward = Forward(latency_us, lab.root / "calls" / tag)
    profile = signed_profile(lab, forward)
    load = os.getloadavg()
    out = pytest_run(lab, workers if workers > 1 else 0, allure, profile, py_spy)
    n = len(lab.specs)
    calls = forward.calls()
    cpu = out["phases"].get("cpu_seconds", {})
    controller = cpu.get("unconfigure")
    tree = out["tree_cpu_seconds"]
    return {
        "workers": workers, "tag": tag, "seconds": out["seconds"],
        "per_key_ms": out["seconds"] / n * 1e3, "exit": out["exit"], "verdict": out["verdict"],
        "keys_proven": out["keys_proven"], "unwraps": out["unwraps"],
        "verify_exit": out["verify"]["exit"], "load_before": load, "load_after": os.getloadavg(),
        "controller_pid": out["phases"].get("pid"),
        "controller_cpu_seconds": controller, "tree_cpu_seconds": tree,
        "controller_share": controller / tree if controller is not None and tree > 0 else None,
        "controller_cpu_by_phase": cpu, "split_seconds": split(out),
        "workers_marks": _worker_marks(lab, out["started"]),
        "calls": calls, "calls_per_key": calls["total"] / n,
        **waits(calls, latency_us, out["seconds"], tree, os.cpu_count() or 1,
                out["phases"].get("pid")),
        "calls_per_key_by_function": {f: c / n for f, c in calls["calls"].items()},
        "peak_rss_tree_kib": out["peak_rss_tree_kib"],
        "profile": (profile_by_role(py_spy) if py_spy is not None and py_spy.is_file()
                    else None),
        "ok": (out["exit"] == 0 and out["verdict"] == "PASS" and out["keys_proven"] == n
               and out["unwraps"] == n and out["verify"]["exit"] == 0),
    }


def waits(calls: dict[str, Any], latency_us: int, seconds: float, tree_cpu: float,
          cpus: int, controller_pid: int | None = None) -> dict[str, Any]:
    """Where the run's time can go. ``latency_path_seconds``: the waits of the controller (its
    calls come before and after the workers': the tokens at the start, the end-of-run census
    and counts) plus those of the busiest worker, which no -n shortens; ``cpu_busy``: the run's
    CPU over what the machine's CPUs could give in its wall time (near 1: the run waits for
    CPU, not for the HSM). ``controller_pid``: the pytest process (keyparity.bench.phases);
    else the lowest pid, as the controller starts its workers."""
    pids = sorted(calls["by_process"], key=int)
    main = str(controller_pid) if controller_pid is not None else (pids[0] if pids else "")
    workers = [calls["by_process"][p] for p in pids if p != main]
    controller = calls["by_process"].get(main, 0) if workers else 0
    busiest = max(workers, default=calls["total"])
    return {"controller_calls": controller, "busiest_process_calls": busiest,
            "latency_path_seconds": (controller + busiest) * latency_us / 1e6,
            "cpu_busy": tree_cpu / (seconds * cpus) if seconds > 0 else None}


def by_workers(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per W: the mean wall time over the rounds, the speed-up of that mean over serial's, the
    largest controller share seen, the calls per key."""
    out: dict[int, dict[str, Any]] = {}
    for w in sorted({r["workers"] for r in runs}):
        mine = [r for r in runs if r["workers"] == w]
        shares = [r["controller_share"] for r in mine if r["controller_share"] is not None]
        out[w] = {"seconds": statistics.mean(r["seconds"] for r in mine),
                  "seconds_each": [r["seconds"] for r in mine],
                  "controller_share": max(shares) if shares else None,
                  "calls_per_key": statistics.mean(r["calls_per_key"] for r in mine)}
    serial = out[1]["seconds"]
    for w, row in out.items():
        row["speedup"] = serial / row["seconds"]
    return out


def goals(latency_ms: float, table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal with what was measured and whether it was met."""
    out = [{"goal": f"-n {w} >= {x:g}x serial", "kind": "speedup",
            "measured": table[w]["speedup"], "met": table[w]["speedup"] >= x}
           for w, x in GOAL_SPEEDUP.items() if w in table]
    out += [{"goal": f"-n {w}: controller < {GOAL_CONTROLLER_SHARE:.0%} of the run's CPU",
             "kind": "share", "measured": row["controller_share"],
             "met": row["controller_share"] is not None
             and row["controller_share"] < GOAL_CONTROLLER_SHARE}
            for w, row in table.items() if w > 1]
    for g in out:
        g["at_goal_latency"] = latency_ms == GOAL_LATENCY_MS
    return out


def measure(n: int, latency_ms: float, ws: tuple[int, ...], rounds: int, allure: bool,
            root: Path, say: Say, py_spy: Path | None) -> dict[str, Any]:
    lab, setup = build_lab(root, n, say)
    pristine = root / "pristine-tokens"
    shutil.copytree(lab.run / "tokens", pristine)
    latency_us = round(latency_ms * 1000)
    runs = []
    for r in range(rounds):
        for w in (ws if r % 2 == 0 else tuple(reversed(ws))):
            tag = f"w{w}-r{r + 1}"
            spy = py_spy.with_name(f"{py_spy.stem}-{tag}{py_spy.suffix}") if py_spy else None
            say(f"round {r + 1}/{rounds}: {'serial' if w == 1 else f'-n {w}'} at {latency_ms:g} "
                f"ms a call, {n} keys ...")
            runs.append(one_run(lab, pristine, w, latency_us, allure, tag, spy))
            last = runs[-1]
            say(f"  {last['seconds']:.2f} s, exit {last['exit']}, verdict {last['verdict']}, "
                f"{last['calls_per_key']:.1f} calls/key, load {last['load_before'][0]:.2f}")
            if not last["ok"]:
                say("  the run's last lines:\n" + "\n".join(
                    (lab.root / "pytest.log").read_text().splitlines()[-15:]))
    table = by_workers(runs)
    return {"keys": n, "latency_ms": latency_ms, "latency_us": latency_us, "workers": list(ws),
            "rounds": rounds, "allure": allure, "key_type": "AES-256",
            "timer": "time.perf_counter around each pytest process; CPU from getrusage",
            "setup": setup, "runs": runs, "by_workers": {str(w): v for w, v in table.items()},
            "goals": goals(latency_ms, table), "ok": all(r["ok"] for r in runs),
            "machine": machine()}


def operator_line(doc: dict[str, Any], w: int) -> str:
    row = doc["by_workers"][str(w)]
    mode = "serially" if w == 1 else f"with -n {w}"
    return (f"at {doc['latency_ms']:g} ms a round trip and {doc['keys']} keys, expect about "
            f"{row['seconds'] / 60:.1f} minutes {mode} (measured here)")


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def report(doc: dict[str, Any], say: Say) -> None:
    say(f"latency {doc['latency_ms']:g} ms a call (forwarding module), {doc['keys']} AES-256 keys, "
        f"{doc['rounds']} round(s), Allure {'on' if doc['allure'] else 'off'}")
    say("  W   wall s  ms/key  speed-up  controller CPU  whole-run CPU  share  calls/key")
    for w, row in doc["by_workers"].items():
        mine = [r for r in doc["runs"] if str(r["workers"]) == w]
        ctl = statistics.mean(r["controller_cpu_seconds"] or 0.0 for r in mine)
        tree = statistics.mean(r["tree_cpu_seconds"] for r in mine)
        say(f"  {w:>2} {row['seconds']:8.2f} {row['seconds'] / doc['keys'] * 1e3:7.1f} "
            f"{row['speedup']:8.2f}x {ctl:12.2f} s {tree:12.2f} s "
            f"{_share(row['controller_share']):>6} {row['calls_per_key']:9.1f}")
    say("  where the time can go: the waits no -n shortens (controller + busiest worker) "
        "and the share of the machine's CPUs the run used")
    for r in doc["runs"]:
        say(f"  {r['tag']:<7} waits {r['latency_path_seconds']:7.2f} s of {r['seconds']:7.2f} s "
            f"({r['controller_calls']} controller calls, {r['busiest_process_calls']} in the "
            f"busiest process); CPU busy {_share(r['cpu_busy'])}")
    for r in doc["runs"]:
        s = r["split_seconds"]
        marks = r["workers_marks"]
        first = sorted(m["first_test"] for m in marks.values())
        say(f"  {r['tag']:<7} start-up {s.get('start_up', 0):.2f} s, collection "
            f"{s.get('collection', 0):.2f} s, test loop {s.get('test_loop', 0):.2f} s, bundle "
            f"{s.get('bundle_phase', 0):.2f} s"
            + (f"; workers' first test {first[0]:.2f}-{first[-1]:.2f} s after start"
               if first else "")
            + f"; load {r['load_before'][0]:.2f}")
    top = sorted(doc["runs"][0]["calls_per_key_by_function"].items(), key=lambda kv: -kv[1])
    say("  calls/key by function (serial): " + ", ".join(f"{f} {c:.1f}" for f, c in top[:10]))
    for g in doc["goals"]:
        m = g["measured"]
        shown = f"{m:.2f}x" if g["kind"] == "speedup" else _share(m)
        say(f"goal        {g['goal']}: {shown}: {'met' if g['met'] else 'NOT met'}"
            + ("" if g["at_goal_latency"] else f" (the goal is set at {GOAL_LATENCY_MS:g} ms)"))
    for w in doc["workers"]:
        say("operator    " + operator_line(doc, w))
    for r in doc["runs"]:
        for name, top in (r["profile"] or {}).items():
            if name == "file" or not top:
                continue
            say(f"profile     {r['tag']} {name}: {top['samples']} samples; top by self: " + ", ".join(
                f"{frame} {share:.1%}" for frame, share in top["self"][:6]))
    m = doc["machine"]
    say(f"machine     {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"SoftHSM {m['softhsm']}")


def main(args: argparse.Namespace) -> int:
    n, latency_ms = args.keys, args.latency_ms
    try:
        ws = workers_list(args.workers_list)
    except ValueError as exc:
        print(f"keyparity: error: {exc}", file=sys.stderr)
        return 2
    if n < 1 or latency_ms < 0 or args.rounds < 1:
        print("keyparity: error: --keys and --rounds must be at least 1, --latency-ms at least 0",
              file=sys.stderr)
        return 2
    spy = Path(args.py_spy).absolute() if args.py_spy else None

    def work(root: Path, note: str) -> dict[str, Any]:
        say(f"the pytest path at {n} AES-256 keys, {latency_ms:g} ms a call, -n "
            f"{','.join(map(str, ws))}, in {root}{note}")
        return measure(n, latency_ms, ws, args.rounds, not args.no_allure, root, say, spy)

    doc = in_scratch("keyparity-bench-latency-", work, keep=args.keep)
    if doc is None:
        return 130
    report(doc, say)
    return conclude(doc, args.json, say, "every run")
