"""``keyparity bench``: the one place that chooses the measurement. ``--census``: what the
census costs (``census``); ``--journal-overhead``: what the write journal costs
(``journal_overhead``); otherwise the harness against a bare python-pkcs11 loop (``harness``).
``--pytest``: the path users take, pytest with the bundle (``user_path``); with
``--latency-ms``, through the forwarding module, serial and -n side by side (``latency``); with
``--calls``, the PKCS #11 calls per key by type, function and phase (``calls``). ``--census``
wins over ``--pytest``, which wins over ``--journal-overhead``."""
from __future__ import annotations

import argparse

from . import calls, census, harness, journal_overhead, latency, user_path


def main(args: argparse.Namespace) -> int:
    if args.keys is None:
        args.keys = 10 if args.pytest and args.calls else 1000
    if args.census:
        return census.main(args)
    if args.pytest and args.calls:
        return calls.main(args)
    if args.pytest and args.latency_ms is not None:
        return latency.main(args)
    if args.pytest:
        return user_path.main(args)
    if args.journal_overhead:
        return journal_overhead.main(args)
    return harness.main(args)
