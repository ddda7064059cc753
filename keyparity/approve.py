"""``keyparity approve PROFILE --kind wrap-exception|non-fips --signer NAME --out FILE``: an
approver signs an approval of the profile (keyparity.attest.signoff) with their own key - a PEM
file given with ``--key``, or the profile's evidence signer of that name (file, PKCS #11 or KMS)
- which must be the key ``compliance.approvers`` lists for them. The profile then names FILE
in ``compliance.approvals``; every run verifies it before it starts."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .hsm.login import LoginGate
from .profile import SignerSpec, load_profile, resolve_profile_arg

KIND_HELP = ("wrap-exception: keys a wrapping chain weaker than they are may carry (NIST SP "
             "800-57 Part 1 Table 2); non-fips: the move of every key to a NON_FIPS cluster")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"reason": args.reason, "ticket": args.ticket, "date": args.date, "keys": args.key,
            "risk_assessment": args.risk_assessment,
            "compensating_controls": args.compensating_control,
            "target_certification": args.certification, "tdea_end_date": args.tdea_end_date}


def run(args: argparse.Namespace) -> int:
    """0 written; 1 a signing error or an approval keyparity refuses; 2 usage."""
    from .attest import signoff
    from .attest.signing import close_signers, load_signer, public_key_from_pem
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    doc = signoff.draft(profile, args.kind, args.signer, _fields(args))
    spec = (SignerSpec(name=args.signer, type="file", path=Path(args.signing_key))
            if args.signing_key else
            next((s for s in profile.evidence.signers if s.name == args.signer), None))
    if spec is None:
        print(f"keyparity approve: error: give the approver's private key with --signing-key "
              f"(no evidence signer named {args.signer!r} in {profile.name})", file=sys.stderr)
        return 2
    public = public_key_from_pem(profile.approvers[args.signer].read_bytes())
    signer = load_signer(spec, profile.module_env, LoginGate(None))
    try:
        out = signoff.write(doc, signer, public, Path(args.out))
    finally:
        close_signers([signer])
    print(f"keyparity approve: {out}: {args.kind} of {profile.name} signed by {args.signer}"
          + (f" ({len(doc['keys'])} key(s): {', '.join(k['label'] for k in doc['keys'])})"
             if args.kind == signoff.WRAP else
             f" (scope: {len(doc['scope']['keys'])} key(s) to {doc['scope']['target']})")
          + "; name it in the profile's compliance.approvals")
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("approve", help="an approver signs an approval of a profile: a wrap "
                       "exception or the non-FIPS move (exit 0 written, 1 refused, 2 usage)")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--kind", required=True, choices=("wrap-exception", "non-fips"),
                   help=KIND_HELP)
    s.add_argument("--signer", required=True, metavar="NAME",
                   help="the approver (compliance.approvers)")
    s.add_argument("--signing-key", metavar="KEY.pem", help="the approver's ECDSA P-384 private "
                   "key (default: the profile's evidence signer named NAME)")
    s.add_argument("--out", required=True, metavar="FILE", help="the signed approval to write")
    s.add_argument("--reason", required=True)
    s.add_argument("--ticket", required=True, help="the change or risk ticket")
    s.add_argument("--date", metavar="YYYY-MM-DD", help="the day of approval (default today)")
    s.add_argument("--key", action="append", metavar="LABEL", help="wrap-exception: a key it "
                   "covers (repeat; default every key the chain is weaker than)")
    s.add_argument("--risk-assessment", metavar="REF", help="non-fips: the risk assessment")
    s.add_argument("--compensating-control", action="append", metavar="TEXT",
                   help="non-fips: a compensating control (repeat)")
    s.add_argument("--certification", metavar="REF", help="non-fips: the target's "
                   "certification (e.g. its PCI PTS HSM or FIPS 140-3 certificate)")
    s.add_argument("--tdea-end-date", metavar="YYYY-MM-DD", help="non-fips: the end of 3DES "
                   "encryption (default 2023-12-31, NIST SP 800-131A Rev. 2)")
    s.set_defaults(func=run)


DEMO_APPROVER = "security-officer"
DEMO_FIELDS: dict[str, dict[str, Any]] = {
    "wrap-exception": {"reason": "Demo: SoftHSM 2.6 accepts only OAEP-SHA-1 and the demo wraps "
                                 "with RSA-2048 (112 bits); production on CloudHSM wraps with "
                                 "RSA-4096 and OAEP-SHA-256"},
    "non-fips": {"reason": "Demo: the 3DES payment keys must stay usable for encryption, which "
                           "FIPS mode no longer approves",
                 "risk_assessment": "DEMO-RA-1",
                 "compensating_controls": [
                     "the target cluster is reachable from the payment network only",
                     "the 3DES keys are replaced by AES keys"],
                 "target_certification": "demo: SoftHSM 2.6.1, no certification (a real hsm2m "
                                         "names its FIPS 140-3 or PCI PTS HSM certificate)"},
}


def _demo_approvals(args: argparse.Namespace) -> int:
    """The demo's approvals, made afresh and signed by its security officer (a key made once
    beside the custodians'): the non-FIPS move, and the wrap exception of every key the
    demo's chain is weaker than; written where the profile's compliance.approvals names them."""
    from . import strength
    from .attest import signoff
    from .attest.custodians import file_custodian
    from .attest.signing import close_signers, load_signer, public_key_from_pem
    profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    public = file_custodian(Path(args.state) / "evidence", DEMO_APPROVER)
    spec = SignerSpec(name=DEMO_APPROVER, type="file",
                      path=Path(args.state) / "evidence" / f"{DEMO_APPROVER}.key.pem")
    kinds = {signoff.NON_FIPS: signoff.NON_FIPS} if signoff.is_fips_to_non_fips(profile) else {}
    if any(strength.weaker(k, profile.wrapping) for k in signoff.moving(profile)):
        kinds[signoff.WRAP] = signoff.WRAP
    signer = load_signer(spec, profile.module_env, None)
    try:
        for kind in kinds:
            out = next(p for p in profile.approvals if p.name.endswith(f"-{kind}.dsse.json"))
            out.unlink(missing_ok=True)
            doc = signoff.draft(profile, kind, DEMO_APPROVER,
                                {**DEMO_FIELDS[kind], "ticket": args.ticket})
            signoff.write(doc, signer, public_key_from_pem(public.read_bytes()), out)
            print(f"keyparity: demo {kind} approval of {profile.name} signed by "
                  f"{DEMO_APPROVER}: {out}")
    finally:
        close_signers([signer])
    return 0


def add_demo_parser(sub: Any) -> None:
    """``keyparity demo approvals``: the demo's signed approvals."""
    s = sub.add_parser("approvals", help="sign the demo profile's approvals (non-FIPS move, "
                       "wrap exception) by the demo's security officer, made once")
    s.add_argument("profile", help="profile NAME or PATH")
    s.add_argument("--state", required=True, metavar="DIR", help="where the approver's key is "
                   "kept (DIR/evidence)")
    s.add_argument("--ticket", default="DEMO-1")
    s.set_defaults(func=_demo_approvals)
