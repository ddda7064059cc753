"""What the forwarding module adds to a PKCS #11 call: SoftHSM direct and through p11forward,
side by side in one run (the modules take turns, each round in fresh processes), then the
cost of one call when the module is asked to wait a given latency, and whether threads of one
process overlap their waits (python-pkcs11 sessions in 1 and 4 threads).

    ./run native && .venv/bin/python native/p11forward/overhead.py [--calls N] [--rounds R]
        [--latency-us L]

A throwaway SoftHSM token on tmpfs; no PIN is used (public session objects only). Prints the
median ns per call of each function and module over the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from keyparity.hsm.softhsm import find_module, provision

REPO = Path(__file__).resolve().parents[2]
NATIVE = REPO / ".keyparity" / "native"


def probe(env: dict[str, str], calls: int, rounds: int, *modules: str) -> dict:
    """Median ns per call by (module, function), from native/p11forward/overhead.c."""
    out = subprocess.run([str(NATIVE / "p11overhead"), "overhead", str(calls), str(rounds),
                          *modules], env=env, capture_output=True, text=True, check=True)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in out.stdout.splitlines():
        module, _, function, ns = line.split("\t")
        samples[(module, function)].append(float(ns))
    return {key: statistics.median(values) for key, values in samples.items()}


def overlap_child(calls: int) -> None:
    """In a child process (SoftHSM loads once per process): seconds for ``calls`` calls in one
    thread, then for 4 threads making ``calls`` each at once."""
    import pkcs11
    token = pkcs11.lib(str(NATIVE / "libp11forward.so")).get_token(token_label="overhead")
    sessions = [token.open() for _ in range(4)]
    out = {}
    for n in (1, 4):
        threads = [threading.Thread(target=lambda s=s: [s.generate_random(128)
                                                        for _ in range(calls)])
                   for s in sessions[:n]]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[n] = time.perf_counter() - started
    print(json.dumps(out))


def overlap(env: dict[str, str], latency_us: int, calls: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--overlap-child", str(calls)],
                         env={**env, "KEYPARITY_P11_LATENCY_US": str(latency_us)},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-us", type=int, default=1000)
    parser.add_argument("--overlap-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overlap_child:
        return overlap_child(args.overlap_child)
    softhsm, forward = find_module(), str(NATIVE / "libp11forward.so")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        conf = provision(Path(root), ["overhead"])
        env = {**os.environ, "SOFTHSM2_CONF": str(conf), "KEYPARITY_P11_TARGET": softhsm,
               "KEYPARITY_P11_LATENCY_US": "0"}
        side = probe(env, args.calls, args.rounds, softhsm, forward)
        waited = probe({**env, "KEYPARITY_P11_LATENCY_US": str(args.latency_us)},
                       max(1, 2_000_000 // max(args.latency_us, 1) // 10), 1, forward)
        threads = overlap(env, args.latency_us, 100)
    print(f"{args.calls} calls x {args.rounds} rounds, median ns per call")
    print(f"{'function':<22}{'SoftHSM':>10}{'forwarded':>11}{'added':>8}"
          f"{f'at {args.latency_us} us':>14}")
    for function in ("C_GetSessionInfo", "C_GetAttributeValue", "C_GenerateRandom"):
        direct, through = side[(softhsm, function)], side[(forward, function)]
        print(f"{function:<22}{direct:>10.0f}{through:>11.0f}{through - direct:>8.0f}"
              f"{waited[(forward, function)]:>14.0f}")
    print(f"100 C_GenerateRandom at {args.latency_us} us: {threads['1']:.3f} s in 1 thread, "
          f"{threads['4']:.3f} s for 4 threads making 100 each at once")


if __name__ == "__main__":
    main()
