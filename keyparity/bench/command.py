"""``keyparity bench``: the one place that chooses the measurement. ``--census``: what the
census costs (``census``); ``--journal-overhead``: what the write journal costs
(``journal_overhead``); otherwise the harness against a bare python-pkcs11 loop (``harness``).
``--census`` wins when both are given."""
from __future__ import annotations

import argparse

from . import census, harness, journal_overhead


def main(args: argparse.Namespace) -> int:
    if args.census:
        return census.main(args)
    if args.journal_overhead:
        return journal_overhead.main(args)
    return harness.main(args)
