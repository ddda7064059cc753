"""The ``keyparity`` command: SoftHSM provisioning and seeding for the demo, and the benchmark."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import KeyparityError
from .profile import ProfileError, load_profile, resolve_profile_arg


def _softhsm_init(args: argparse.Namespace) -> int:
    from .softhsm import provision
    conf = provision(Path(args.state), args.token)
    print(f"keyparity: initialised SoftHSM tokens {', '.join(args.token)} in {conf.parent}")
    return 0


def _seed(args: argparse.Namespace) -> int:
    from .cluster import find_token, load_module
    from .seed import seed
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    spec = profile.source
    token = find_token(load_module(str(spec.module), profile.module_env), spec)
    with token.open(user_pin=spec.pin.resolve(), rw=True) as session:
        created = seed(session, profile.keys)
    print(f"keyparity: seeded {len(created)} keys on {spec.name} "
          f"({len(profile.keys) - len(created)} already there)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    return bench_main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keyparity", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("softhsm-init", help="(re)initialise SoftHSM tokens in a state directory")
    s.add_argument("--state", required=True, help="state directory (its tokens/ is replaced)")
    s.add_argument("--token", action="append", required=True, help="token label (repeat)")
    s.set_defaults(func=_softhsm_init)
    s = sub.add_parser("seed", help="create a profile's inventory keys on its source token")
    s.add_argument("profile", help="profile NAME or PATH")
    s.set_defaults(func=_seed)
    s = sub.add_parser("bench", help="migrate and verify N keys on tmpfs SoftHSM tokens")
    s.add_argument("--keys", type=int, default=1000, help="number of keys (default 1000)")
    s.add_argument("--batch", type=int, default=100, help="keys per interleaved batch")
    s.add_argument("--json", help="also write the figures to this file")
    s.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ProfileError, KeyparityError, RuntimeError, FileNotFoundError) as exc:
        print(f"keyparity: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
