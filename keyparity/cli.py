"""The ``keyparity`` command: the operator's commands (inventory, plan, verify, retire, cleanup,
copies, journal), the demo's (``keyparity demo ...``) and the benchmark (``keyparity bench``)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import approve
from .hsm.cluster import close_clusters, open_cluster
from .errors import KeyparityError, PolicyError, ProfileError, file_step, pkcs11_step
from .hsm.login import LoginGate
from .profile import load_profile, resolve_profile_arg
from .progress import Progress

if TYPE_CHECKING:  # the journal is opened only by the commands that use it
    from .journal.store import Journal


def _softhsm_init(args: argparse.Namespace) -> int:
    from .hsm.softhsm import provision
    with file_step("write the SoftHSM state to", args.state):
        conf = provision(Path(args.state), args.token)
    print(f"keyparity: initialised SoftHSM tokens {', '.join(args.token)} in {conf.parent}")
    return 0


def _softhsm_restore(args: argparse.Namespace) -> int:
    from .hsm.softhsm import restore_copy
    with file_step("copy the SoftHSM token into", args.to):
        conf = restore_copy(Path(args.state), args.token, Path(args.to), args.share or ())
    print(f"keyparity: copied SoftHSM token {args.token} into a fresh store, as a restore from "
          f"backup would: {conf}")
    return 0


def _demo_custodians(args: argparse.Namespace) -> int:
    from .attest.custodians import file_custodian, organisation, token_custodian
    state = Path(args.state)
    with file_step("make the demo custodians in", state):
        operator = file_custodian(state / "evidence", "operator")
        one = file_custodian(state / "evidence", "custodian-1")
        two = token_custodian(state / "softhsm", state / "evidence", "custodian-2")
        certificates = organisation(state / "evidence")
    print(f"keyparity: evidence custodians ready; public keys {one} and {two}, the operator's "
          f"{operator}; certificates from the demo organisation's CA: "
          f"{', '.join(p.name for p in certificates)}")
    return 0


def _demo_pki(args: argparse.Namespace) -> int:
    """The demo's CloudHSM-like PKI per cluster (kept once built), with its root pins in files
    the profile names (``aws_root_sha256: file:...``): a demo PKI has no published pins."""
    from .trust.pki import build_test_pki, root_pins
    for cluster in args.cluster or ("hsm1", "hsm2"):
        with file_step("write the demo PKI to", Path(args.state) / "pki" / cluster):
            paths = build_test_pki(Path(args.state) / "pki" / cluster)
            for name, pin in root_pins(paths).items():
                paths["pins"].with_name(name.replace("_sha256", ".sha256")).write_text(pin + "\n")
        print(f"keyparity: demo PKI for {cluster} in {paths['pins'].parent}")
    return 0


def _seed(args: argparse.Namespace) -> int:
    """Create the inventory's keys on the profile's source (0); 2: a production profile
    without --hsm-confirm=<that cluster's id>, or with another id."""
    from . import policy
    from .hsm.seed import seed
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    spec = profile.source or profile.cluster  # a re-verify profile names only its target
    policy.confirmed(profile, spec, args.hsm_confirm, f"to create keys on {spec.name}",
                     "created")
    session = open_cluster(spec, profile.module_env, LoginGate(None)).session
    with pkcs11_step("create the inventory's keys", spec.name):
        created = seed(session, profile.keys)
    print(f"keyparity: seeded {len(created)} keys on {spec.name} "
          f"({len(profile.keys) - len(created)} already there)")
    return 0


def _inventory(args: argparse.Namespace) -> int:
    """0: drafted; 1: a token or login error, or a CBOM that does not validate; 2: usage."""
    from .inventory import command
    return command(args)


def _bench(args: argparse.Namespace) -> int:
    """``bench.command`` chooses: the default bench, ``--journal-overhead`` or ``--census``."""
    # Imported here for start-up speed only: the bench pulls in the whole migration stack
    # (about a hundred modules) that the other commands and --help do not need.
    from .bench.command import main as bench_main
    return bench_main(args)


def _pem_keys(paths: list[str], certs: dict[str, Any] | None = None
              ) -> tuple[list[Any], dict[str, str], str | None]:
    """Custodians' PEM public keys or certificates (``--key``): (keys, key id -> file, None),
    or a usage error's sentence as the third item; a certificate's key id -> the certificate
    into ``certs``."""
    from .attest import identities
    from .attest.signing import public_key_from_pem
    keys, names = [], {}
    for path in paths:
        try:
            pem = Path(path).read_bytes()
            if identities.pem_kind(pem) == "certificate" and certs is not None:
                cert = identities.load_certificates(pem, path)[0]
                key = identities.key_of(cert)
                certs[key.keyid] = cert
            else:
                key = public_key_from_pem(pem)
        except OSError as exc:
            return [], {}, f"cannot read key file {path}: {exc.strerror or exc}"
        except KeyparityError as exc:
            return [], {}, f"key file {path}: {exc}"
        keys.append(key)
        names.setdefault(key.keyid, path)
    return keys, names, None


def _verify(args: argparse.Namespace) -> int:
    """0: verified; 1: verification failed (what differs is printed); 2: usage error; 3: verified,
    but the signed verdict is not ``--require-verdict``'s."""
    from .attest.signatories import load_trust
    from .attest.signing import kms_public_key
    from .attest.verify import verify_run

    def usage(message: str) -> int:
        print(f"keyparity verify: error: {message}", file=sys.stderr)
        return 2

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        return usage(f"run directory not found: {run_dir}")
    if not args.key and not args.kms_key_id and not args.ca:
        return usage("give at least one public key: --key PUB.pem or --kms-key-id ID, or the "
                     "CA that issued the signers' certificates: --ca CA.pem")
    if args.kms_key_id and not args.region:
        return usage("--region is required with --kms-key-id")
    certs: dict[str, Any] = {}
    keys, names, problem = _pem_keys(args.key, certs)
    if problem:
        return usage(problem)
    try:
        cas = load_trust(args.ca) if args.ca else None
    except (OSError, KeyparityError) as exc:
        return usage(f"--ca: {getattr(exc, 'strerror', None) or exc}")
    for key_id in args.kms_key_id:
        try:
            key = kms_public_key(key_id, args.region, args.aws_profile)
        except KeyparityError as exc:
            return usage(str(exc))
        keys.append(key)
        names.setdefault(key.keyid, f"kms:{key_id}")
    if args.threshold is not None and args.threshold < 1:
        return usage(f"--threshold must be at least 1 (got {args.threshold})")
    result = verify_run(run_dir, keys, args.threshold, key_names=names,
                        allow_rename=args.allow_rename, certificates=certs, cas=cas,
                        tsa_roots=args.tsa_root)
    code = verify_exit(result.ok, result.verdict, args.require_verdict)
    if args.output == "json":
        print(json.dumps({**result.record(args.require_verdict), "exit_code": code}, indent=2))
        for problem in result.problems:
            print(f"keyparity verify: {problem}", file=sys.stderr)
    else:
        print("\n".join(result.lines()))
    if code == VERDICT_NOT_REQUIRED:
        print(f"keyparity verify: the signed verdict is {result.verdict}, not "
              f"{args.require_verdict} (--require-verdict): exit {code}", file=sys.stderr)
    return code


VERDICT_NOT_REQUIRED = 3  # authentic, but its signed verdict is not --require-verdict's


def verify_exit(authentic: bool, verdict: str | None, required: str | None) -> int:
    """0 authentic (with the required verdict, when one is required); 1 not authentic, whatever
    it claims; 3 authentic with another signed verdict."""
    if not authentic:
        return 1
    return VERDICT_NOT_REQUIRED if required is not None and verdict != required else 0


def _usage(command: str, message: str) -> int:
    print(f"keyparity {command}: error: {message}", file=sys.stderr)
    return 2


def _plan(args: argparse.Namespace) -> int:
    """``keyparity plan PROFILE``: 0 written; 1 a token, login or signer error, or keys that
    cannot be planned; 2 usage (a profile without evidence.signers, an unknown --signer)."""
    from .attest.plan import write_plan
    from .attest.signing import close_signers, load_signer
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    specs = {s.name: s for s in profile.evidence.signers}
    if not specs:
        return _usage("plan create", f"{profile.name} has no evidence.signers: a plan is "
                      "approved by the custodians' signatures; add them to the profile")
    names = [] if args.unsigned else (args.signer or list(specs))
    unknown = [n for n in names if n not in specs]
    if unknown:
        return _usage("plan create", f"no evidence signer named {unknown[0]!r} in "
                      f"{profile.name} (it has {', '.join(specs)})")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("plans") / f"{profile.name}-{stamp}"
    gate = LoginGate(None)
    signers: list[Any] = []
    try:
        for name in names:
            signers.append(load_signer(specs[name], profile.module_env, gate))
        progress = Progress(f"read keys on {profile.source.name if profile.source else '-'}",
                            len(profile.keys))
        try:
            path = write_plan(profile, out, signers, gate, progress.tick)
        finally:  # the count read, also when the plan is refused
            progress.done()
    finally:
        close_signers(signers)
    signed = f"signed by {', '.join(names)}" if names else "not signed yet"
    print(f"keyparity plan: {path} ({len(profile.keys)} keys, {profile.pair}), {signed}; "
          f"custodians add theirs with: keyparity plan sign {out} --profile PROFILE "
          "--signer NAME")
    return 0


def _plan_sign(args: argparse.Namespace) -> int:
    """``keyparity plan sign DIR``: 0 signed (or signed by this key already); 1 a plan whose
    plan.json changed, or a signer error; 2 usage."""
    from .attest.plan import sign_plan
    return _sign_with("plan sign", args.plan_dir, args,
                      lambda signer, tsa: sign_plan(Path(args.plan_dir), signer, tsa))


def _sign_with(command: str, directory: str, args: argparse.Namespace,
               sign: Callable[[Any, Any], str]) -> int:
    """Load the profile's signer ``--signer`` alone and ``sign`` with it (and the profile's
    time-stamping authority, or None): 0 signed; 2 usage
    (no such directory or signer)."""
    from .attest.signing import close_signers, load_signer
    if not Path(directory).is_dir():
        return _usage(command, f"directory not found: {directory}")
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    spec = next((s for s in profile.evidence.signers if s.name == args.signer), None)
    if spec is None:
        have = ", ".join(s.name for s in profile.evidence.signers) or "none"
        return _usage(command, f"no evidence signer named {args.signer!r} in "
                      f"{profile.name} (it has {have})")
    signer = load_signer(spec, profile.module_env, LoginGate(None))
    try:
        print(f"keyparity {command}: {sign(signer, profile.evidence.timestamp)}")
    finally:
        close_signers([signer])
    return 0


def _countersign(args: argparse.Namespace) -> int:
    """``keyparity sign RUN_DIR --signer NAME``: 0 countersigned (or signed by this key
    already); 1 a bundle that is not what was signed, or a signer error; 2 usage."""
    from .attest.countersign import countersign
    return _sign_with("sign", args.run_dir, args,
                      lambda signer, tsa: countersign(Path(args.run_dir), signer, args.ack,
                                                      tsa))


def _plan_verify(args: argparse.Namespace) -> int:
    """``keyparity plan verify DIR``: 0 verified; 1 failed (every problem printed); 2 usage."""
    from .attest.plan import verify_plan

    def usage(message: str) -> int:
        return _usage("plan verify", message)

    if not Path(args.plan_dir).is_dir():
        return usage(f"plan directory not found: {args.plan_dir}")
    if not args.key:
        return usage("give at least one public key: --key PUB.pem")
    if args.threshold is not None and args.threshold < 1:
        return usage(f"--threshold must be at least 1 (got {args.threshold})")
    keys, names, problem = _pem_keys(args.key)
    if problem:
        return usage(problem)
    threshold = args.threshold
    if threshold is None and args.profile:
        threshold = load_profile(resolve_profile_arg(args.profile, Path.cwd())).evidence.threshold
    result = verify_plan(Path(args.plan_dir), keys, threshold or None, key_names=names,
                         tsa_roots=args.tsa_root)
    print("\n".join(result.lines()))
    return 0 if result.ok else 1


def _retire(args: argparse.Namespace) -> int:
    """``keyparity retire PROFILE --run RUN_ID``: 0 every key retired (destroyed with
    --destroy); 1 refused, or a key was not; 2 usage (production without --hsm-confirm,
    --destroy without --plan)."""
    from .retire import command
    return command(args)


def _journal_path(args: argparse.Namespace) -> Path:
    """``--journal``, else the journal a pytest run started here uses (its rootdir's)."""
    from . import rootdir
    from .journal.store import default_path
    return Path(args.journal) if args.journal else default_path(rootdir.find())


def _reports_dir(args: argparse.Namespace) -> Path:
    """``--reports-dir``, else the run directories' of a pytest run started here."""
    from . import rootdir
    return Path(args.reports_dir) if args.reports_dir else rootdir.find() / "reports"


def _journal_verify(args: argparse.Namespace) -> int:
    """0: the chain is intact; 1: it is broken (each broken seq is printed); 2: no journal."""
    from .journal.chain import verify
    path = _journal_path(args)
    if not path.is_file():
        print(f"keyparity journal verify: error: journal not found: {path}", file=sys.stderr)
        return 2
    problems = verify(path, args.expect_head)  # JournalError: not a journal (main: exit 1)
    for problem in problems:
        print(f"keyparity journal verify: {problem}")
    if not problems:
        print(f"keyparity journal verify: {path}: chain intact")
    return 1 if problems else 0


def _with_journal(args: argparse.Namespace, command: str, use: Any,
                  writes: bool = False) -> int:
    """Open the journal, hand it to ``use`` (which returns the exit code), close it; 2 when
    there is no journal. ``command``: how the messages start (``journal locks``...).
    ``writes``: the command records entries, which it refuses on a broken chain."""
    from .journal.chain import require_intact
    from .journal.store import Journal
    path = _journal_path(args)
    if not path.is_file():
        print(f"keyparity {command}: error: journal not found: {path}", file=sys.stderr)
        return 2
    if writes:
        require_intact(path)
    journal = Journal(path)
    try:
        return use(journal, path)
    finally:
        journal.close()


def _target_locks(args: argparse.Namespace, command: str) -> Any:
    """The key locks of the profile's target (its token read without logging in), or None
    when no run ever locked a key there."""
    from .hsm.cluster import find_token, load_module, token_info
    from .hsm.lockdir import scope
    from .journal.locks import KeyLocks
    from .runinfo import new_run_id
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    if profile.target is None:
        raise PolicyError(f"{profile.name} is a {profile.migration_mode} profile: no run of it "
                          "writes to a token, so no run of it locks a key")
    spec = profile.target
    with pkcs11_step("read the token", spec.name):
        token = token_info(find_token(load_module(str(spec.module), profile.module_env), spec))
    where = scope(spec, token, profile.module_env).directory
    if not where.is_dir():
        print(f"keyparity {command}: {where}: no run has locked a key of {spec.name} here")
        return None
    return KeyLocks(where, f"{command.replace(' ', '-')}-{new_run_id()}")


def _journal_locks(args: argparse.Namespace) -> int:
    """Print the key locks of the profile's target that a process holds now, and those whose
    holder ended holding them (0)."""
    locks = _target_locks(args, "journal locks")
    if locks is None:
        return 0
    shown = 0
    for entry in locks.holders():
        label = entry["record"].get("label")
        if entry["held"]:
            print(f"keyparity journal locks: {label!r}: held by {entry['holder']}")
        elif entry["record"].get("state") == "held":
            print(f"keyparity journal locks: {label!r}: free; its last holder, "
                  f"{entry['holder']}, ended holding it (the next run looks at the token "
                  "before writing)")
        else:
            continue
        shown += 1
    if not shown:
        print(f"keyparity journal locks: {locks.directory}: no key is locked")
    return 0


def _journal_unlock(args: argparse.Namespace) -> int:
    """0: none of the run's locks is held (those its ended holder left are marked released,
    journaled); 1: a process holds one now (it is named: a lock is never taken from a live
    holder)."""
    locks = _target_locks(args, "journal unlock")
    if locks is None:
        return 0

    def unlock(journal: Journal, path: Path) -> int:
        cleared, held = locks.clear(args.run)
        for e in held:
            print(f"keyparity journal unlock: refused {e['record'].get('label')!r}: held by "
                  f"{e['holder']}; a lock is released when its holder ends: stop that process")
        for e in cleared:
            print(f"keyparity journal unlock: released {e['record'].get('label')!r} (its holder, "
                  f"{e['holder']}, ended holding it)")
        journal.bind(locks.run_id).record_many([
            ("note", "lock-released", {"label": e["record"].get("label"),
                                       "detail": f"{e['holder']} ended holding the lock; "
                                                 f"marked released by keyparity journal unlock "
                                                 f"({locks.me})"})
            for e in cleared])
        if not cleared and not held:
            print(f"keyparity journal unlock: run {args.run} holds no key lock and left none")
        return 1 if held else 0
    return _with_journal(args, "journal unlock", unlock, writes=True)


def _journal_sign_head(args: argparse.Namespace) -> int:
    """0: the journal's head is signed (its directory printed); 1: a broken chain or a signer
    error; 2: usage (no journal, no signers)."""
    from .evidence.anchor import sign_head
    from .attest.signing import close_signers, load_signers
    from .runinfo import new_run_id
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    path = _journal_path(args)
    if not path.is_file():
        return _usage("journal sign-head", f"journal not found: {path}")
    if not profile.evidence.signers:
        return _usage("journal sign-head", f"{profile.name} has no evidence.signers: a head is "
                      "signed by the custodians")
    signers = load_signers(profile.evidence, profile.module_env, LoginGate(None))
    try:
        out = sign_head(path, _reports_dir(args), profile, signers, new_run_id())
    finally:
        close_signers(signers)
    print(f"keyparity journal sign-head: {out} (verify with keyparity verify)")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    """Remove from the target what run ``--run`` created (by the journal): 0 done, 1 something
    could not be removed or proven, 2 usage/refused."""
    from . import policy
    from .cleanup_command import clean
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    if profile.single or profile.target is None:
        print(f"keyparity cleanup: nothing to do: {profile.name} is a {profile.migration_mode} "
              "profile, and such a run writes nothing to any token", file=sys.stderr)
        return 2
    policy.confirmed(profile, profile.target, args.hsm_confirm,
                     f"to remove objects from {profile.target.name}", "removed")

    def use(journal: Any, path: Path) -> int:
        lines, ok = clean(journal, path, args.run, profile, _reports_dir(args))
        print("\n".join(lines))
        return 0 if ok else 1
    return _with_journal(args, "cleanup", use, writes=True)


JOURNAL_HELP = ("journal file (default: <rootdir>/.keyparity/journal.sqlite, the rootdir a pytest "
                "run started here would have)")
REPORTS_HELP = "where the run directories are (default: <rootdir>/reports)"


def _add_journal_option(p: Any) -> None:
    """``--journal PATH``, as every command that reads or writes the journal takes it."""
    p.add_argument("--journal", metavar="PATH", help=JOURNAL_HELP)


def _add_demo(sub: Any) -> None:
    """``demo softhsm-init|softhsm-restore|custodians|pki|seed|tsa``: what ./run demo uses."""
    s = sub.add_parser("demo", help="the embedded demo's set-up: SoftHSM tokens, custodians, "
                       "test PKI, seeded keys (what ./run demo runs)",
                       description="The embedded demo's set-up steps, as ./run demo runs them.")
    dsub = s.add_subparsers(dest="demo_command", required=True, metavar="STEP")
    for add in (_add_softhsm_init, _add_softhsm_restore, _add_demo_custodians, _add_demo_pki,
                _add_seed, _add_demo_tsa):
        add(dsub)
    approve.add_demo_parser(dsub)


def _add_softhsm_init(sub: Any) -> None:
    s = sub.add_parser("softhsm-init", help="(re)initialise SoftHSM tokens in a state directory")
    s.add_argument("--state", required=True, help="state directory (its tokens/ is replaced)")
    s.add_argument("--token", action="append", required=True, help="token label (repeat)")
    s.set_defaults(func=_softhsm_init)


def _add_softhsm_restore(sub: Any) -> None:
    s = sub.add_parser("softhsm-restore", help="copy a SoftHSM token into a fresh token store, as "
                       "a restore from backup would (the baseline demo)")
    s.add_argument("--state", required=True, help="state directory holding the token")
    s.add_argument("--token", required=True, help="label of the token to copy")
    s.add_argument("--to", required=True, help="the new store's directory (replaced)")
    s.add_argument("--share", action="append", help="a token to link into the new store, not "
                   "copy (repeat; the evidence custodian's)")
    s.set_defaults(func=_softhsm_restore)


def _add_demo_custodians(sub: Any) -> None:
    s = sub.add_parser("custodians",
                       help="make the demo's two evidence signing keys once (file and SoftHSM)")
    s.add_argument("--state", required=True, help="state directory (.keyparity)")
    s.set_defaults(func=_demo_custodians)


def _add_demo_pki(sub: Any) -> None:
    s = sub.add_parser("pki", help="make the demo's CloudHSM-like test PKI per cluster once "
                       "(customer CA, cluster, HSM, client and server certificates, root pins)")
    s.add_argument("--state", required=True, help="state directory (.keyparity); writes pki/")
    s.add_argument("--cluster", action="append", help="cluster name (repeat; default hsm1 hsm2)")
    s.set_defaults(func=_demo_pki)


def _add_demo_tsa(sub: Any) -> None:
    s = sub.add_parser("tsa", help="serve a local RFC 3161 time-stamping authority on 127.0.0.1 "
                       "until SIGTERM (its URL in STATE/tsa/url, its root in "
                       "STATE/tsa/root.pem)")
    s.add_argument("--state", required=True, help="state directory (.keyparity); writes tsa/")
    s.add_argument("--profile", help="profile NAME or PATH: also write STATE/tsa/NAME.yaml, "
                   "that profile naming this TSA (evidence.timestamp)")
    s.set_defaults(func=_demo_tsa)


def _demo_tsa(args: argparse.Namespace) -> int:
    from .demo_tsa import serve
    profile = None if args.profile is None else resolve_profile_arg(args.profile, Path.cwd())
    return serve(Path(args.state), profile)


def _add_seed(sub: Any) -> None:
    s = sub.add_parser("seed", help="create a profile's inventory keys on its source token "
                       "(the demo, tests)")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--hsm-confirm", metavar="CLUSTER_ID",
                   help="required with a production profile: the id of the cluster the keys "
                        "are created on")
    s.set_defaults(func=_seed)


def _add_inventory(sub: Any) -> None:
    s = sub.add_parser("inventory", help="draft a profile's keys: (and exclude:) from its "
                       "source cluster's token, or write them as a CycloneDX 1.6 CBOM "
                       "(exit 0 done, 1 token or login error, 2 usage error)")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--format", choices=("yaml", "cyclonedx"), default="yaml",
                   help="yaml: keys: and exclude: to paste into the profile (default); "
                        "cyclonedx: a CycloneDX 1.6 CBOM (JSON)")
    s.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    s.set_defaults(func=_inventory)


def _add_bench(sub: Any) -> None:
    s = sub.add_parser("bench", help="migrate and verify N keys on tmpfs SoftHSM tokens")
    s.add_argument("--keys", type=int, default=1000, help="number of keys (default 1000)")
    s.add_argument("--batch", type=int, default=100, help="keys per interleaved batch")
    s.add_argument("--json", help="also write the figures to this file")
    s.add_argument("--census", action="store_true",
                   help="measure the census instead: the source's census and the target's "
                        "reconciliation at --keys keys, beside a bare enumeration")
    s.add_argument("--journal-overhead", action="store_true",
                   help="measure the write journal instead: the harness WITH the journal vs "
                        "WITHOUT it, side by side, in --workers processes")
    s.add_argument("--pytest", action="store_true",
                   help="measure the path users take instead: pytest with the signed bundle at "
                        "--keys keys, beside a bare python-pkcs11 loop of the same calls and "
                        "pytest's floor (serial unless -n is given)")
    s.add_argument("--no-allure", action="store_true",
                   help="--pytest: run without Allure results (-p no:allure_pytest)")
    s.add_argument("--py-spy", metavar="FILE",
                   help="--pytest: sample the run with py-spy (pip install 'keyparity[profile]'), "
                        "write its collapsed stacks to FILE and print the top functions; the "
                        "sampling slows the run, so its timings are not the figures")
    s.add_argument("--keep", action="store_true",
                   help="--pytest: keep the bench directory (tokens, run directory, logs)")
    s.add_argument("--latency-ms", type=float, metavar="MS",
                   help="--pytest: every PKCS #11 call of the run waits MS milliseconds first "
                        "(the forwarding module, as on a network HSM); runs serial and each -n "
                        "of --workers-list side by side, on fresh copies of the seeded tokens")
    s.add_argument("--workers-list", default="1,2,4,8", metavar="W,W,...",
                   help="--latency-ms: the worker counts to run, 1 meaning serial (default "
                        "1,2,4,8)")
    s.add_argument("--rounds", type=int, default=1,
                   help="--latency-ms: run every worker count this many times, the order "
                        "reversed every other round (default 1)")
    s.add_argument("-n", "--workers", type=int,
                   help="--journal-overhead: worker processes (default 2); --pytest: pytest's "
                        "-n (default: serial)")
    s.add_argument("--journal-dir", help="--journal-overhead: directory for the journal's "
                   "temporary directory (default: the system temp dir; keep it on disk)")
    s.add_argument("--chunk", type=int, metavar="N",
                   help="--journal-overhead: keys per chunk of the journaled Migrator (default: "
                        "as a run chunks them; 0: no chunks, one fsynced commit per key)")
    s.add_argument("--journal-sync", choices=("before", "every"),
                   help="--journal-overhead: Journal(sync=...): fsync only 'before' entries "
                        "(the default) or 'every' commit")
    s.set_defaults(func=_bench)


def _add_verify(sub: Any) -> None:
    s = sub.add_parser("verify", help="verify a signed run directory offline; the last line "
                       "states its signed verdict (exit 0 authentic, 1 not authentic, 2 usage "
                       "error, 3 authentic but not the --require-verdict verdict)")
    s.add_argument("run_dir", metavar="RUN_DIR", help="run directory, e.g. reports/latest")
    s.add_argument("--key", action="append", default=[], metavar="PUB.pem",
                   help="a custodian's PEM public key or certificate (repeat)")
    s.add_argument("--ca", action="append", default=[], metavar="CA.pem",
                   help="a CA certificate the verifier trusts (repeat): the signers' "
                        "certificates it issued (given with --key, or inside the bundle) name "
                        "the people who signed; the threshold counts distinct people")
    s.add_argument("--threshold", type=int, metavar="N",
                   help="require at least N signatures; the threshold in the signed "
                        "statement always applies, so N can raise it, never lower it "
                        "(default: the signed threshold)")
    s.add_argument("--allow-rename", action="store_true",
                   help="accept a run directory whose name is not the signed run id (a "
                        "bundle received under another name): a note instead of a failure")
    s.add_argument("--kms-key-id", action="append", default=[], metavar="ID",
                   help="an AWS KMS signing key; its public key is fetched with GetPublicKey")
    s.add_argument("--region", help="AWS region of --kms-key-id")
    s.add_argument("--aws-profile", help="AWS profile for --kms-key-id")
    s.add_argument("--require-verdict", metavar="VERDICT",
                   help="exit 3 unless the authentic bundle's signed verdict is VERDICT (e.g. "
                        "PASS); a bundle that is not authentic exits 1 whatever it claims")
    _add_tsa_root(s)
    s.add_argument("--output", choices=("text", "json"), default="text",
                   help="json: the result as one JSON object on standard output, problems "
                        "on standard error (default: text)")
    s.set_defaults(func=_verify)


def _add_sign(sub: Any) -> None:
    s = sub.add_parser("sign", help="countersign a bundle (a run's or a retirement record's) "
                       "as one custodian, apart from the run (exit 0 signed, 1 refused: the "
                       "bundle is not what was signed, 2 usage error)")
    s.add_argument("run_dir", metavar="RUN_DIR", help="the bundle's directory")
    s.add_argument("--profile", required=True, help="profile NAME or PATH naming the signer")
    s.add_argument("--signer", required=True, metavar="NAME", help="the evidence signer")
    s.add_argument("--ack", metavar="REF", help="the custodian's acknowledgement reference (a "
                   "ticket, a signed form's id), recorded in what they sign")
    s.set_defaults(func=_countersign)


def _add_plan(sub: Any) -> None:
    """``plan create|sign|verify``; ``plan PROFILE`` is short for ``plan create PROFILE``
    (main inserts the word)."""
    s = sub.add_parser("plan", help="the signed migration plan: create it from the source "
                       "(read-only), each custodian signs it, verify it",
                       description="The signed migration plan. keyparity plan PROFILE is short "
                       "for keyparity plan create PROFILE.")
    psub = s.add_subparsers(dest="plan_command", required=True, metavar="STEP")
    s = psub.add_parser("create", help="write the plan from the source, read-only "
                        "(exit 0 written, 1 token, login or signer error, 2 usage error)")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--out", metavar="DIR", help="directory for plan.json and plan.dsse.json "
                   "(default plans/NAME-TIMESTAMP)")
    s.add_argument("--signer", action="append", metavar="NAME",
                   help="sign with this evidence signer only (repeat; default: every one)")
    s.add_argument("--unsigned", action="store_true",
                   help="sign with none: the custodians each add theirs with plan sign")
    s.set_defaults(func=_plan)
    s = psub.add_parser("sign", help="add one custodian's signature to a plan (refused when "
                        "plan.json changed)")
    s.add_argument("plan_dir", metavar="DIR", help="the plan's directory")
    s.add_argument("--profile", required=True, help="profile NAME or PATH naming the signer")
    s.add_argument("--signer", required=True, metavar="NAME", help="the evidence signer")
    s.set_defaults(func=_plan_sign)
    s = psub.add_parser("verify", help="check a plan's signatures and digest offline "
                        "(exit 0 verified, 1 failed, 2 usage error)")
    s.add_argument("plan_dir", metavar="DIR", help="the plan's directory")
    s.add_argument("--key", action="append", default=[], metavar="PUB.pem",
                   help="a custodian's PEM public key (repeat)")
    s.add_argument("--threshold", type=int, metavar="N", help="require at least N signatures "
                   "(raises the signed threshold, never lowers it)")
    s.add_argument("--profile", help="profile NAME or PATH: its evidence.threshold when "
                   "--threshold is not given")
    _add_tsa_root(s)
    s.set_defaults(func=_plan_verify)


def _add_tsa_root(s: Any) -> None:
    s.add_argument("--tsa-root", action="append", default=[], type=Path, metavar="PEM",
                   help="the root certificate(s) of the time-stamping authority (repeat): each "
                        "signature's RFC 3161 time-stamp must verify and chain to one; "
                        "without it the tokens are not checked and the times are the host's")


def _add_journal(sub: Any) -> None:
    """``journal verify``, ``journal locks``, ``journal unlock`` and ``journal sign-head``."""
    s = sub.add_parser("journal", help="the write journal: check its chain, list and release "
                       "key locks, sign its head")
    jsub = s.add_subparsers(dest="journal_command", required=True, metavar="STEP")
    j = jsub.add_parser("verify", help="check the journal's hash chain (exit 0 intact, 1 broken)")
    _add_journal_option(j)
    j.add_argument("--expect-head", metavar="SHA256",
                   help="a chain head from a signed statement that must be in the journal")
    j.set_defaults(func=_journal_verify)
    j = jsub.add_parser("locks", help="list the key locks of a profile's target that a process "
                        "holds now, and those whose holder ended holding them")
    j.add_argument("profile", help="profile NAME or PATH")
    j.set_defaults(func=_journal_locks)
    j = jsub.add_parser("unlock", help="say who holds a run's key locks (a lock is released "
                        "when its holder ends, never taken from a live one), and mark those "
                        "its ended holder left as released (journaled)")
    j.add_argument("profile", help="profile NAME or PATH")
    j.add_argument("--run", required=True, metavar="RUN_ID", help="the run")
    _add_journal_option(j)
    j.set_defaults(func=_journal_unlock)
    j = jsub.add_parser("sign-head", help="have the profile's evidence signers sign the "
                        "journal's head (a killed run has no bundle to anchor its entries: "
                        "cleanup needs it)")
    j.add_argument("profile", help="profile NAME or PATH")
    _add_journal_option(j)
    j.add_argument("--reports-dir", metavar="DIR", help=REPORTS_HELP)
    j.set_defaults(func=_journal_sign_head)


def _add_cleanup(sub: Any) -> None:
    s = sub.add_parser("cleanup", help="remove from the target only the objects a run created "
                       "(by the journal), and the run's CloudHSM CLI wrapping objects on both "
                       "clusters; never a source key")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--run", required=True, metavar="RUN_ID", help="the run whose objects to remove")
    _add_journal_option(s)
    s.add_argument("--reports-dir", metavar="DIR", help=REPORTS_HELP + "; where the signed "
                   "heads that anchor the run's journal entries are")
    s.add_argument("--hsm-confirm", metavar="CLUSTER_ID",
                   help="required with a production profile: the target's cluster id")
    s.set_defaults(func=_cleanup)


def _add_retire(sub: Any) -> None:
    s = sub.add_parser("retire", help="after a PASS run: the signed retirement record of the "
                       "source keys it proved (active -> deactivated, NIST SP 800-57), and with "
                       "--destroy their destruction on the source")
    s.add_argument("profile", help="profile NAME or PATH (the one the run proved)")
    s.add_argument("--run", required=True, metavar="RUN_ID", help="the PASS run that proved "
                   "the keys (its bundle is verified first)")
    s.add_argument("--reports-dir", metavar="DIR", help="where the run directory is (default "
                   "./reports); the record is written beside it")
    s.add_argument("--destroy", action="store_true", help="destroy the plan's source keys once "
                   "each target copy is proven the same material; each destroy journaled")
    s.add_argument("--plan", metavar="DIR", help="with --destroy: the signed plan the run "
                   "followed")
    s.add_argument("--operator", metavar="NAME", help="required: the person who retires the "
                   "keys, named in the signed record")
    s.add_argument("--witness", action="append", metavar="NAME", help="required (repeat for "
                   "each): a witness of the deactivation and destruction, another person")
    _add_journal_option(s)
    s.add_argument("--hsm-confirm", metavar="CLUSTER_ID",
                   help="required with --destroy in a production profile: the source's cluster id")
    s.set_defaults(func=_retire)


def _add_copies(sub: Any) -> None:
    s = sub.add_parser("copies", help="each inventory key's objects on the source and the "
                       "target (read-only, one login each): exit 0 when every key is present "
                       "and no cluster holds two objects of one key")
    s.add_argument("profile", help="profile NAME or PATH")
    s.set_defaults(func=_copies)


def _copies(args: argparse.Namespace) -> int:
    from .hsm import copies
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    gate = LoginGate(None)
    found = {}
    for cluster in (profile.source, profile.target):
        if cluster is not None:
            opened = open_cluster(cluster, profile.module_env, gate)
            found[cluster.name] = copies.count(opened.session, cluster.name)
    lines, ok = copies.report(profile.keys, found, profile.source and profile.source.name,
                              profile.target and profile.target.name)
    print("\n".join(lines))
    return 0 if ok else 1


DESCRIPTION = """\
Verification and evidence for moving keys between HSM clusters. The migration itself is a
pytest run (pytest --hsm-profile=PROFILE); these commands prepare it, check its signed
bundle and act on what it proved."""

EPILOG = """\
operator commands: inventory, plan, verify, retire, cleanup, copies, journal
the demo and measurements: demo, bench

keyparity COMMAND --help describes each one. Exit status: 0 done, 1 the command failed (one
line says why and what to do), 2 a usage error; keyparity verify: 3 an authentic bundle whose
signed verdict is not --require-verdict's."""

# The spellings of the previous release, still accepted with a line on standard error.
DEPRECATED = {"softhsm-init": ["demo", "softhsm-init"],
              "softhsm-restore": ["demo", "softhsm-restore"],
              "demo-custodians": ["demo", "custodians"], "demo-pki": ["demo", "pki"],
              "seed": ["demo", "seed"]}
PLAN_STEPS = ("create", "sign", "verify")


def parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="keyparity", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"keyparity {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands")
    for add in (_add_inventory, _add_plan, _add_sign, _add_verify, _add_retire, _add_cleanup, _add_copies,
                _add_journal, _add_demo, _add_bench):
        add(sub)
    approve.add_parser(sub)
    return p


def spelled(argv: list[str]) -> list[str]:
    """The command line in this release's words: a previous release's spelling is rewritten
    (said on standard error), ``plan PROFILE`` is ``plan create PROFILE``."""
    argv = list(argv)
    if argv[:1] and argv[0] in DEPRECATED:
        new = DEPRECATED[argv[0]]
        print(f"keyparity: {argv[0]!r} is deprecated and will be removed in the next release; "
              f"use 'keyparity {' '.join(new)}'", file=sys.stderr)
        argv[:1] = new
    if argv[:1] == ["plan"] and len(argv) > 1 and argv[1] not in PLAN_STEPS \
            and not argv[1].startswith("-"):
        argv.insert(1, "create")
    return argv


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 1 the command failed (one line says why and what to do), 2 a usage error
    (arguments, a profile keyparity refuses)."""
    argv = spelled(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    command = " ".join(argv[:2]) if argv[:1] and argv[0] in ("plan", "demo", "journal") \
        else args.command
    try:
        return args.func(args)
    except KeyparityError as exc:  # anything else is a bug: its traceback is shown
        print(f"keyparity {command}: error: {capped(command, exc)}", file=sys.stderr)
        return 2 if isinstance(exc, (ProfileError, PolicyError)) else 1
    finally:
        close_clusters()


ITEMS_SHOWN = 10  # a longer list in an error is cut here; the whole list goes to a file


def capped(command: str, exc: KeyparityError) -> str:
    """The error as one line; a list of more than ITEMS_SHOWN items (``errors.listed``) shows
    the first ones and a count, and is written whole to a file under .keyparity/errors/."""
    items = getattr(exc, "items", ())
    if len(items) <= ITEMS_SHOWN:
        return _sentence(exc)
    from . import rootdir
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = rootdir.find() / ".keyparity" / "errors" / f"{command.replace(' ', '-')}-{stamp}.txt"
    shown = "; ".join(" ".join(str(i).split()) for i in items[:ITEMS_SHOWN])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{item}\n" for item in items))
    except OSError as exc_write:
        where = f"the whole list could not be written to {out}: {exc_write.strerror}"
    else:
        where = f"all {len(items)} in {out}"
    return (f"{exc.summary}: {shown}; ... and {len(items) - ITEMS_SHOWN} more "  # type: ignore
            f"({where})")


def _sentence(exc: BaseException) -> str:
    """An error as one line; never empty (the class says what happened when the message
    does not)."""
    text = " ".join(str(exc).split())
    return text or f"{type(exc).__name__} (no message); run again with -v on pytest, or " \
                   "report it: keyparity should have explained this"


if __name__ == "__main__":
    sys.exit(main())
