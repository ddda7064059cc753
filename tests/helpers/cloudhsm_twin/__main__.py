"""``python -m cloudhsm_twin provision-demo ROOT`` (from tests/helpers/): the two stand-in
clusters of the coming ``./run demo cloudhsm`` (provision.demo); prints the manifest it wrote.
(``seed JOB`` is provision.seed's child process.)"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .provision import demo, seed_here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudhsm_twin")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("provision-demo", help="hsm1 (FIPS, hsm1.medium) with seeded 3DES "
                                                 "keys and an empty hsm2m (NON_FIPS)")
    make.add_argument("root", type=Path, help="a new or stand-in directory (replaced)")
    sow = sub.add_parser("seed", help="(provision.seed's child process) seed keys: JOB as JSON")
    sow.add_argument("job")
    args = parser.parse_args(argv)
    if args.command == "seed":
        print(json.dumps(seed_here(json.loads(args.job))))
        return 0
    print(json.dumps(demo(args.root), indent=2))
    return 0


sys.exit(main())
