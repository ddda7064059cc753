"""``keyparity bench --pytest``: the path users take — ``pytest --hsm-profile=…`` with the
signed bundle — at N keys, beside a bare python-pkcs11 loop making the same PKCS #11 calls, and
beside pytest's own floor (the same number of empty tests with the same plugins).

Layout, all on tmpfs: ``run/`` holds the tokens the pytest run uses (hsm1 with N AES-256 keys,
hsm2 empty), its profile, journal, signing key and reports; ``bare/`` holds a copy of hsm1 and
two empty targets, hsm3 and hsm4, which this process uses for the bare loop (two SoftHSM
configurations, so neither run sees the other's objects). Seeding is set-up, not timed.

Order: bare loop (hsm1 -> hsm3), the pytest run (a subprocess, as a user starts it), bare loop
again (hsm1 -> hsm4), then pytest's floor. The ratio is the run's wall time over the mean of the
two bare loops; both are printed, with the run's phases (start-up and collection, test loop,
bundle phase, measured by ``keyparity.bench.phases`` inside the run), the peak memory of the
run's process tree, the run directory's size and file count, and ``keyparity verify``'s time
on it. The whole directory is removed at the end, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..attest.custodians import file_custodian
from ..errors import PolicyError
from ..hsm import cluster
from ..hsm.cluster import load_module
from ..hsm.seed import seed
from ..hsm.softhsm import find_module, provision
from ..journal.store import Journal
from ..profile import KeySpec
from ..runinfo import new_run_id
from . import phases
from .bare import slice_loop
from .common import SOURCE, TARGET, Say, conclude, in_scratch, key_spec, machine, say
from .forward import Forward, module_path

BARE_TARGETS = ("hsm3", "hsm4")
SPLIT_TARGETS = ("hsm5", "hsm6")  # the bare loop in one process, then split over -n processes
GOAL_RATIO = 3.0
SEED = 1


@dataclass
class Lab:
    root: Path
    run: Path       # the pytest run's tokens, profile, journal, reports
    bare: Path      # the bare loop's tokens
    lib: Any
    specs: tuple[KeySpec, ...]
    pins: dict[str, str]


# --------------------------------------------------------------------------- the lab


def _token_dirs(state: Path) -> set[Path]:
    return {p for p in (state / "tokens").iterdir() if p.is_dir()}


def _profile_yaml(lab: Lab, module: str, signer: Path, forward: Forward | None = None) -> Path:
    """The run's profile: hsm1 (declared FIPS) to hsm2 (declared NON_FIPS), as the demo, with
    the N keys, one file signer, pins in files. JSON is YAML. With ``forward``, both clusters
    load the forwarding module, which forwards to ``module``."""
    env = {"SOFTHSM2_CONF": str(lab.run / "softhsm2.conf")}
    if forward is not None:
        env.update(forward.module_env(module))
        module = module_path(_repo())
    doc = {
        "name": "bench", "description": "keyparity bench --pytest (generated)",
        "environment": "test",
        "compliance": {"acknowledge_non_fips": {
            "reason": "bench: the same clusters and modes as the embedded demo",
            "approver": "keyparity-bench", "ticket": "BENCH-1"}},
        "module_env": env,
        "clusters": {
            role: {"name": label, "module": module, "token_label": label,
                   "pin": f"file:{lab.run / f'{label}.pin'}", "mode": mode}
            for role, label, mode in (("source", SOURCE, "FIPS"), ("target", TARGET, "NON_FIPS"))},
        "wrapping": {"mechanism": "rsa-aes", "rsa_bits": 2048, "oaep_hash": "sha1",
                     "mgf": "mgf1-sha1", "aes_bits": 256},
        "migration": {"mode": "migrate"},
        "keys": [{"label": s.label, "type": s.type, **({"size": s.size} if s.size else {}),
                  **({"curve": s.curve} if s.curve else {})} for s in lab.specs],
        "evidence": {"threshold": 1, "signers": [
            {"name": "bench-custodian", "type": "file", "path": str(signer)}]},
    }
    path = lab.run / "bench.yaml"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return _approve_wrapping(path, doc, signer)


def _approve_wrapping(path: Path, doc: dict[str, Any], signer: Path) -> Path:
    """The bench's AES-256 keys are stronger than SoftHSM's 112-bit chain (RSA-2048, OAEP-SHA-1:
    keyparity.strength): the profile names the bench custodian as approver and carries the wrap
    exception, signed by it as ``keyparity approve`` signs one, so the run proves every key."""
    from ..attest import signoff
    from ..attest.signing import load_signer, public_key_from_pem
    from ..profile import SignerSpec, load_profile
    from ..strength import weaker
    public = signer.with_name(signer.name.replace(".key.pem", ".pub.pem"))
    out = path.with_name("bench-wrap-exception.dsse.json")
    doc["compliance"] = {**doc["compliance"],
                         "approvers": [{"name": "bench-custodian", "public_key": str(public)}],
                         "approvals": [str(out)]}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    profile = load_profile(path)
    if not any(weaker(k, profile.wrapping) for k in profile.keys):  # nothing to except (3DES)
        del doc["compliance"]["approvers"], doc["compliance"]["approvals"]
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path
    draft = signoff.draft(profile, signoff.WRAP, "bench-custodian",
                          {"reason": "bench: SoftHSM 2.6 wraps with OAEP-SHA-1 only",
                           "ticket": "BENCH-1"})
    out.unlink(missing_ok=True)
    signoff.write(draft, load_signer(SignerSpec("bench-custodian", "file", path=signer), {}, None),
                  public_key_from_pem(public.read_bytes()), out)
    return path


def build_lab(root: Path, n: int, say: Say, split: bool = False,
              specs: tuple[KeySpec, ...] | None = None) -> tuple[Lab, dict[str, float]]:
    """Provision both token directories and seed N keys (timed apart, not part of any figure):
    ``specs``, or N AES-256 keys."""
    clock = time.perf_counter
    setup: dict[str, float] = {}
    run, bare = root / "run", root / "bare"
    t = clock()
    provision(bare, [SOURCE])
    source_dir = _token_dirs(bare)
    conf = provision(bare, list(BARE_TARGETS) + (list(SPLIT_TARGETS) if split else []))
    provision(run, [TARGET])
    setup["provision_seconds"] = clock() - t
    pins = {label: (bare / f"{label}.pin").read_text().strip()
            for label in (SOURCE, *BARE_TARGETS, *(SPLIT_TARGETS if split else ()))}
    module = find_module()
    if module in cluster._libs:  # noqa: SLF001 - SoftHSM reads SOFTHSM2_CONF once per process
        raise RuntimeError("SoftHSM is already loaded in this process; run the bench in a "
                           "fresh process")
    lib = load_module(module, {"SOFTHSM2_CONF": str(conf)})
    specs = specs or tuple(key_spec(i) for i in range(n))
    t = clock()
    with lib.get_token(token_label=SOURCE).open(user_pin=pins[SOURCE], rw=True) as session:
        created = seed(session, specs)
    setup["seed_seconds"] = clock() - t
    if len(created) != n:
        raise RuntimeError(f"seeded {len(created)} keys, wanted {n}")
    for token in source_dir:  # the seeded source, copied for the pytest run
        shutil.copytree(token, run / "tokens" / token.name)
    shutil.copy2(bare / f"{SOURCE}.pin", run / f"{SOURCE}.pin")
    say(f"seeded {n} keys ({specs[0].type}) on {SOURCE} in {setup['seed_seconds']:.2f} s (not timed)")
    return Lab(root=root, run=run, bare=bare, lib=lib, specs=specs, pins=pins), setup


# --------------------------------------------------------------------------- the bare loop


def bare_loop(lab: Lab, target: str) -> dict[str, Any]:
    """hsm1 -> ``target`` with plain python-pkcs11: the census, then each key moved and proven
    as the suites do; wall time, and how many keys agreed everywhere."""
    clock = time.perf_counter
    t = clock()
    proven = slice_loop(lab.lib, SOURCE, target, lab.pins, [s.label for s in lab.specs], SEED,
                        census=True)
    return {"seconds": clock() - t, "target": target, "proven": proven}


def bare_split(lab: Lab, target: str, processes: int) -> dict[str, Any]:
    """The bare loop over the N keys split across ``processes`` processes running at once,
    all writing ``target`` (as pytest-xdist's workers write one cluster): how far the token
    and the machine let the calls themselves go in parallel, with no pytest. Each process
    reads the PINs from the lab's files."""
    labels = [s.label for s in lab.specs]
    shares = []
    for i in range(processes):  # each share in a file: 10,000 labels do not fit a command line
        shares.append(lab.bare / f"share-{target}-{i}.json")
        shares[-1].write_text(json.dumps(labels[i::processes]))
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "keyparity.bench.user_path", str(lab.bare),
                               target, str(share)], stdout=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, cwd=_repo()) for share in shares]
    outs = [p.communicate()[0].strip() for p in procs]
    seconds = time.perf_counter() - t
    proven = sum(int(o) for o in outs if o.isdigit())
    ok = all(p.returncode == 0 for p in procs)
    return {"seconds": seconds, "processes": processes, "target": target,
            "proven": proven if ok else 0}


def _split_child(state: Path, target: str, labels: list[str]) -> int:
    """``python -m keyparity.bench.user_path STATE TARGET SHARE.json``: one share of
    bare_split (the labels in a JSON file)."""
    pins = {label: (state / f"{label}.pin").read_text().strip() for label in (SOURCE, target)}
    lib = load_module(find_module(), {"SOFTHSM2_CONF": str(state / "softhsm2.conf")})
    print(slice_loop(lib, SOURCE, target, pins, labels, SEED))
    return 0


# --------------------------------------------------------------------------- the pytest run


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled from /proc every 0.2 s:
    the largest sum over the tree and the largest single process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_sum_kib = 0
        self.peak_process_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            sizes = [self._rss_kib(pid) for pid in self._tree()]
            self.peak_sum_kib = max(self.peak_sum_kib, sum(sizes))
            self.peak_process_kib = max(self.peak_process_kib, max(sizes, default=0))


def _repo() -> Path:
    """The checkout whose suites the run uses (keyparity is installed from it, editable)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "suites").is_dir() or not (root / "conftest.py").is_file():
        raise PolicyError(f"keyparity bench --pytest runs the suites of a checkout; {root} "
                           "has none (install keyparity with pip install -e from a checkout)")
    return root


def _pytest(args: list[str], cwd: Path, log: Path, env: dict[str, str],
            py_spy: Path | None = None) -> dict[str, Any]:
    """One pytest process, as a user starts it; its wall time, exit status and peak memory.
    With ``py_spy``, sampled by py-spy (collapsed stacks written there; it slows the run)."""
    command = [sys.executable, "-m", "pytest", *args]
    if py_spy is not None:
        command = [_py_spy(), "record", "--format", "raw", "--rate", "200", "--subprocesses",
                   "--output", str(py_spy), "--", *command]
    t, started, cpu = time.perf_counter(), time.time(), _children_cpu()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with TreeMemory(proc.pid) as memory:
            status = proc.wait()
    return {"seconds": time.perf_counter() - t, "started": started, "exit": status,
            "tree_cpu_seconds": _children_cpu() - cpu,
            "peak_rss_tree_kib": memory.peak_sum_kib,
            "peak_rss_process_kib": memory.peak_process_kib}


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children and their own
    waited-for descendants (pytest's xdist workers, reaped by it): the whole run's CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not found:
        raise PolicyError("--py-spy needs py-spy: pip install 'keyparity[profile]' (or "
                           "pip install py-spy)")
    return found


def top_of_profile(path: Path, n: int = 15, only: Callable[[str], bool] | None = None,
                   ) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the functions with the most samples on top of the stack
    (self) and anywhere in it (total), as shares of all samples (of the stacks ``only``
    keeps, when given)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or (only is not None and not only(stack)):
            continue
        k = int(count)
        samples += k
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + k
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + k

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, c / samples) for f, c in sorted(table.items(), key=lambda kv: -kv[1])[:n]]
    return {"samples": samples, "self": ranked(own), "total": ranked(total)} if samples else {}


def _directory(path: Path) -> dict[str, int]:
    files = size = 0
    found = []
    for dirpath, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
            found.append(os.path.relpath(os.path.join(dirpath, name), path))
    return {"files": files, "bytes": size, "names": sorted(found)}


def pytest_run(lab: Lab, workers: int, allure: bool, profile: Path,
               py_spy: Path | None = None, plugins: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """The real run (with more ``plugins`` and ``env`` when given); then the run directory
    measured and verified."""
    run_id = new_run_id()
    marks = lab.root / "phases.json"
    args = ["suites", "-q", "-p", "keyparity.bench.phases", f"--hsm-profile={profile}",
            f"--hsm-reports-dir={lab.run / 'reports'}", f"--hsm-journal={lab.run / 'journal.sqlite'}",
            f"--hsm-seed={SEED}", f"--hsm-run-id={run_id}"]
    args += ["-n", str(workers)] if workers else []
    args += [] if allure else ["-p", "no:allure_pytest"]
    args += [arg for name in plugins for arg in ("-p", name)]
    out = _pytest(args, _repo(), lab.root / "pytest.log",
                  {**os.environ, **(env or {}), phases.ENV: str(marks)}, py_spy)
    run_dir = lab.run / "reports" / run_id
    out["phases"] = json.loads(marks.read_text()) if marks.is_file() else {}
    out["run_dir"] = _directory(run_dir) if run_dir.is_dir() else {"files": 0, "bytes": 0}
    evidence = run_dir / "evidence.json"
    summary = json.loads(evidence.read_text())["summary"] if evidence.is_file() else {}
    out["verdict"] = summary.get("verdict")
    out["keys_proven"] = summary.get("scope", {}).get("keys_proven")
    out["tests"] = sum(summary.get("tests", {}).values())
    out["unwraps"] = _unwraps(lab.run / "journal.sqlite", run_id)
    t = time.perf_counter()
    public = lab.run / "evidence" / "bench-custodian.pub.pem"
    verify = subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(run_dir),
                             f"--key={public}"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out["verify"] = {"seconds": time.perf_counter() - t, "exit": verify.returncode,
                     "last_line": ((verify.stdout + verify.stderr).strip().splitlines()
                                   or [""])[-1]}
    return out


def _unwraps(path: Path, run_id: str) -> int:
    """How many keys the run unwrapped on the target (its journal's ``after`` entries): one
    per key, or a chunk was split over workers and a key moved twice."""
    if not path.is_file():
        return 0
    journal = Journal(path)
    try:
        return sum(1 for e in journal.entries(run_id)
                   if e["action"] == "unwrap" and e["phase"] == "after")
    finally:
        journal.close()


def floor(lab: Lab, tests: int, workers: int, allure: bool) -> dict[str, Any]:
    """pytest's floor: as many empty tests as the run had, with the same plugins installed
    (keyparity's is loaded but idle without --hsm-profile; allure-pytest's listener is not
    registered, as in a keyparity run) and the same -n."""
    where = lab.root / "floor"
    where.mkdir()
    (where / "test_floor.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('i', range(%d))\n"
        "def test_empty(i):\n    pass\n" % tests)
    args = ["-q", "-p", "no:cacheprovider", "--rootdir", str(where), "test_floor.py"]
    args += ["-n", str(workers)] if workers else []
    # allure-pytest loaded but idle, as in the run (keyparity writes the run's results)
    args += [] if allure else ["-p", "no:allure_pytest"]
    return _pytest(args, where, lab.root / "floor.log", dict(os.environ))


# --------------------------------------------------------------------------- figures


def split(run: dict[str, Any]) -> dict[str, float]:
    """The run's wall time cut into phases by the marks taken inside it."""
    m, started = run["phases"], run["started"]
    if not m:
        return {}
    ended = started + run["seconds"]
    return {"start_up": m["configure"] - started,
            "collection": m.get("collection_end", m["loop_start"]) - m.get(
                "collection_start", m["configure"]),
            "test_loop": m["loop_end"] - m["loop_start"],
            "bundle_phase": m.get("bundle_end", m["finish_end"]) - m.get(
                "bundle_start", m["finish_start"]),
            "summaries": (m["finish_end"] - m["finish_start"]) - (
                m.get("bundle_end", m["finish_end"]) - m.get("bundle_start", m["finish_start"])),
            "exit": ended - m["unconfigure"]}


def summary(n: int, workers: int, allure: bool, setup: dict[str, float],
            bare: list[dict[str, Any]], run: dict[str, Any],
            floor_run: dict[str, Any]) -> dict[str, Any]:
    bare_mean = sum(b["seconds"] for b in bare) / len(bare)
    phases_ = split(run)
    ok = (run["exit"] == 0 and run["verdict"] == "PASS" and run["keys_proven"] == n
          and run["unwraps"] == n and run["verify"]["exit"] == 0
          and all(b["proven"] == n for b in bare))
    return {
        "keys": n, "workers": workers, "allure": allure, "key_type": "AES-256",
        "timer": "time.perf_counter around each whole process or loop; phases from "
                 "time.time() marks inside the run (keyparity.bench.phases)",
        "run": {**run, "per_key_ms": run["seconds"] / n * 1e3, "split_seconds": phases_,
                "bundle_share": (phases_["bundle_phase"] / run["seconds"]) if phases_ else None,
                "run_dir_kib_per_key": run["run_dir"]["bytes"] / n / 1024},
        "bare": {"loops": bare, "mean_seconds": bare_mean, "per_key_ms": bare_mean / n * 1e3},
        "ratio_run_over_bare": run["seconds"] / bare_mean, "goal_ratio": GOAL_RATIO,
        "floor": {**floor_run, "tests": run["tests"],
                  "run_over_floor": run["seconds"] / floor_run["seconds"]},
        "setup": setup, "ok": ok, "machine": machine(),
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def report(doc: dict[str, Any], say: Say) -> None:
    r, b, f, n = doc["run"], doc["bare"], doc["floor"], doc["keys"]
    mode = f"-n {doc['workers']}" if doc["workers"] else "serial"
    say(f"pytest run  {r['seconds']:8.2f} s  {r['per_key_ms']:6.1f} ms/key  ({mode}, Allure "
        f"{'on' if doc['allure'] else 'off'}; exit {r['exit']}; verdict {r['verdict']}, "
        f"{r['keys_proven']}/{n} keys proven, {r['unwraps']} unwrapped, {r['tests']} tests)")
    if r["split_seconds"]:
        s = r["split_seconds"]
        say(f"  split     start-up {s['start_up']:.2f} s, collection {s['collection']:.2f} s, "
            f"test loop {s['test_loop']:.2f} s, bundle phase {s['bundle_phase']:.2f} s "
            f"({r['bundle_share']:.1%} of the run), other plugins' session end "
            f"{s['summaries']:.2f} s, exit {s['exit']:.2f} s")
    say(f"bare loop   {b['mean_seconds']:8.2f} s  {b['per_key_ms']:6.1f} ms/key  (mean of "
        + ", ".join(f"{x['seconds']:.2f} s" for x in b["loops"])
        + "; census, migration, identity proofs, 4 AES vectors both ways, attribute reads)")
    say(f"ratio       run / bare loop {doc['ratio_run_over_bare']:.2f} (goal <= "
        f"{doc['goal_ratio']:.0f}: {'met' if doc['ratio_run_over_bare'] <= doc['goal_ratio'] else 'NOT met'})")
    split_ = doc.get("bare_split")
    if split_:
        one, many = split_["one_process"], split_["split"]
        say(f"bare split  the bare loop alone (no pytest): {one['seconds']:.2f} s in one process, "
            f"{many['seconds']:.2f} s in {many['processes']} processes writing one target: "
            f"{split_['speedup']:.2f}x, the most -n {many['processes']} could give on this "
            "token and machine")
    say(f"floor       {f['tests']} empty tests, same plugins and mode: {f['seconds']:.2f} s; "
        f"the run takes {f['run_over_floor']:.2f}x pytest's floor")
    say(f"memory      peak RSS of the run's process tree {_mib(r['peak_rss_tree_kib'])}, largest "
        f"process {_mib(r['peak_rss_process_kib'])} (sampled from /proc every 0.2 s)")
    at = r.get("phases", {}).get("rss_kib") or {}
    if at:
        say("  by phase  the controller's RSS at " + ", ".join(
            f"{name.replace('_', ' ')} {_mib(at[name])}" for name in
            ("collection_end", "loop_end", "bundle_end") if name in at))
    d = r["run_dir"]
    say(f"run dir     {d['bytes'] / 1e6:.1f} MB ({r['run_dir_kib_per_key']:.1f} KiB/key), "
        f"{d['files']} files; keyparity verify {r['verify']['seconds']:.2f} s "
        f"(exit {r['verify']['exit']}: {r['verify']['last_line']})")
    prof = doc.get("profile") or {}
    for kind in ("self", "total") if prof else ():
        say(f"profile     top by {kind} samples (py-spy, {prof['samples']} samples, {prof['file']}):")
        for frame, share in prof[kind]:
            say(f"  {share:6.1%}  {frame}")
    m = doc["machine"]
    say(f"machine     {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"SoftHSM {m['softhsm']}")


def signed_profile(lab: Lab, forward: Forward | None = None) -> Path:
    """The run's profile with its signed wrap exception (the bench custodian made on first
    use); with ``forward``, through the forwarding module."""
    signer = lab.run / "evidence" / "bench-custodian.key.pem"
    if not signer.is_file():
        file_custodian(lab.run / "evidence", "bench-custodian")
    if forward is not None:
        forward.calls_dir.mkdir(parents=True, exist_ok=True)
    return _profile_yaml(lab, find_module(), signer, forward)


def run(n: int, workers: int, allure: bool, root: Path, say: Say,
        py_spy: Path | None = None, forward: Forward | None = None) -> dict[str, Any]:
    """The bare loop, the pytest run, the bare loop again, pytest's floor. With ``forward``, the
    pytest run goes through the forwarding module (its latency, its counts in
    ``run["calls"]``); the bare loops stay direct on SoftHSM."""
    lab, setup = build_lab(root, n, say, split=workers > 1)
    profile = signed_profile(lab, forward)
    bare = [bare_loop(lab, BARE_TARGETS[0])]
    say(f"bare loop 1: {bare[0]['seconds']:.2f} s, {bare[0]['proven']}/{n} keys")
    mode = f"-n {workers}" if workers else "serial"
    say(f"pytest run ({mode}) ...")
    out = pytest_run(lab, workers, allure, profile, py_spy)
    if forward is not None:
        out["calls"] = forward.calls()
    say(f"pytest run: {out['seconds']:.2f} s, exit {out['exit']}, verdict {out['verdict']}")
    if out["exit"] != 0:
        say("the run's last lines:\n" + "\n".join(
            (lab.root / "pytest.log").read_text().splitlines()[-15:]))
    bare.append(bare_loop(lab, BARE_TARGETS[1]))
    say(f"bare loop 2: {bare[1]['seconds']:.2f} s, {bare[1]['proven']}/{n} keys")
    floor_run = floor(lab, out["tests"] or 1, workers, allure)
    doc = summary(n, workers, allure, setup, bare, out, floor_run)
    if workers > 1:  # the calls alone, in one process and split as the workers split them
        one, split_ = bare_split(lab, SPLIT_TARGETS[0], 1), bare_split(lab, SPLIT_TARGETS[1],
                                                                        workers)
        doc["bare_split"] = {"one_process": one, "split": split_,
                             "speedup": one["seconds"] / split_["seconds"]}
        doc["ok"] = doc["ok"] and one["proven"] == n and split_["proven"] == n
    if py_spy is not None and py_spy.is_file():
        doc["profile"] = {"file": str(py_spy), **top_of_profile(py_spy)}
    return doc


def main(args: argparse.Namespace) -> int:
    n, workers = args.keys, args.workers or 0
    if n < 1 or workers < 0:
        print("keyparity: error: --keys must be at least 1 and -n at least 0", file=sys.stderr)
        return 2
    def work(root: Path, note: str) -> dict[str, Any]:
        say(f"the pytest path at {n} AES-256 keys in {root}{note}")
        return run(n, workers, not args.no_allure, root, say,
                   Path(args.py_spy).absolute() if args.py_spy else None)

    doc = in_scratch("keyparity-bench-pytest-", work, keep=args.keep)
    if doc is None:
        return 130
    report(doc, say)
    return conclude(doc, args.json, say, "the pytest run and the bare loop")


if __name__ == "__main__":  # one share of bare_split, in a process of its own
    sys.exit(_split_child(Path(sys.argv[1]), sys.argv[2], json.loads(Path(sys.argv[3]).read_text())))
