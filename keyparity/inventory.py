"""``keyparity inventory PROFILE``: draft a profile's ``keys:`` from its source cluster.

The source token is logged in to once (``cluster.open_cluster`` through a ``LoginGate``: one
C_Login, never retried), every key object is read (``census.scan``: public attributes only),
and the inventory is printed as YAML ready to paste into the profile, or written as a
CycloneDX 1.6 CBOM (``--format cyclonedx``, keyparity.formats.cbom).

Each key becomes ``label``, ``type``, ``size`` (aes, generic-secret, rsa) or ``curve`` (ec),
``id`` (its CKA_ID, quoted hex; "" when empty) and ``disposition: rotate`` when the token
will not let it be extracted, and a ``role`` drafted from its usage attributes (keyparity.roles:
the role whose operations the key's attributes allow, ``unspecified`` where they fit none),
each marked as a draft in a comment to confirm: a role is a person's decision, the attributes
only what the token allows today. With a CloudHSM CLI on the source, each key gets its ``owner``
(``key list --verbose`` as the source's CLI user and as each owner the profile names) and the
owners are drafted (``owners:``, each migrated as itself, passwords as ``env:`` placeholders). An RSA or EC key pair is one key: its public object folds into
the private key of the same label. Every other key object goes to a drafted ``exclude:``
with the reason it cannot be an inventory key, so that the draft, used as a profile, passes
the census: a public key with no private key under its label, an EC private key with no
public key (nothing could prove its copy), a key type, curve or size keyparity does not
migrate, more than one key under one label, a wrapping object of a keyparity run; and every
object that is not a key (a data object, a certificate, any other class: keyparity migrates
keys only), with its ``class``. An object without a label cannot be excluded (``exclude:``
names objects by label): it is listed in a comment, and the census will count it as
unaccounted until it is labelled or destroyed.

Keys and exclusions are sorted by label (a token's enumeration order is not stable). Nothing
secret is printed: no PIN, no key value; the CBOM's KCVs are computed by the token.

Exit status: 0 done; 1 a token or login error (one line naming the cluster and the PIN
reference), or a CBOM that does not validate; 2 a usage error (arguments, a profile that does
not load, an output file that cannot be written).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pkcs11.exceptions import PKCS11Error

from . import atomic, roles
from .cloudhsm.cli_runner import CloudHsmCli
from .errors import KeyparityError, describe
from .formats.cbom import ACTIVE, Asset, CbomError, document, platform, to_json
from .hsm import attributes, census, keyinfo
from .hsm.census import Entry
from .hsm.cluster import close_clusters, open_cluster
from .hsm.login import LoginGate
from .keytypes import ASYMMETRIC, CURVES, KEY_TYPES, curve_name, size_problem
from .profile import Cluster, Profile, ProfileError, load_profile, resolve_profile_arg
from .progress import Progress

PROG = "keyparity inventory"
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
_TYPES = ", ".join(KEY_TYPES)
_NIST = ", ".join(c.nist for c in CURVES.values())


@dataclass
class Key:
    """One drafted inventory key: the secret or private key object, and a pair's public key."""

    entry: Entry
    public: Entry | None = None
    owner: str | None = None  # its CloudHSM owner, when a CLI view listed it
    usage: tuple[str, ...] | None = None  # what its attributes allow (None: not read)

    @property
    def role(self) -> str | None:
        """The role drafted from ``usage``: None when it was not read, ``unspecified`` when the
        usage fits no role."""
        if self.usage is None:
            return None
        return roles.infer(dict.fromkeys(self.usage, True), self.facts.type) or roles.UNSPECIFIED

    @property
    def facts(self) -> keyinfo.KeyFacts:
        return self.entry.facts

    @property
    def rotate(self) -> bool:
        return self.facts.extractable is False

    def record(self) -> dict[str, Any]:
        """The key as a profile's ``keys:`` entry."""
        f = self.facts
        out: dict[str, Any] = {"label": f.label, "type": f.type}
        if f.type == "ec":
            out["curve"] = curve_name(f.curve)
        elif KEY_TYPES[f.type].sizes.given:
            out["size"] = f.size
        out["id"] = _Quoted(f.id)
        if self.role is not None:
            out["role"] = self.role
        if self.owner:
            out["owner"] = self.owner
        if self.rotate:
            out["disposition"] = "rotate"
        return out


@dataclass
class Draft:
    """What a source token's key objects make of a profile."""

    keys: list[Key] = field(default_factory=list)
    exclude: list[dict[str, str]] = field(default_factory=list)  # label, class?, reason
    unlabelled: list[Entry] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        owners = sorted({k.owner for k in self.keys if k.owner})
        if owners:  # the per-owner strategy: each owner migrated as itself
            doc["owners"] = [{"name": o, **{role.lower(): {"user": o,
                                                          "password": _secret_ref(o, role)}
                                            for role in ("SOURCE", "TARGET")}}
                             for o in owners]
        return {**doc, "keys": [k.record() for k in self.keys],
                "exclude": [dict(x) for x in self.exclude]}


_USAGE = tuple(attributes.BY_NAME[op] for op in roles.OPERATIONS)


def read_usage(key: Key) -> tuple[str, ...]:
    """The operations the key's objects (a pair's two halves) allow, as the token says."""
    allowed: set[str] = set()
    for entry in (key.entry, key.public):
        if entry is not None and entry.obj is not None:
            allowed |= {op for op, value in attributes.read(entry.obj, _USAGE).items()
                        if value is True}
    return tuple(op for op in roles.OPERATIONS if op in allowed)


def _draft_note(key: Key) -> str:
    shown = ", ".join(key.usage or ()) or "none"
    if key.role == roles.UNSPECIFIED:
        return (f"  # draft: its attributes allow {shown}, which fit no single role: name what "
                "the key is for (and correct its attributes)")
    return f"  # draft, from its attributes ({shown}): confirm what the key is for"


def _secret_ref(owner: str, role: str) -> str:
    """A placeholder reference for an owner's password (never a secret: the operator sets it)."""
    return f"env:KP_{re.sub(r'[^A-Za-z0-9_]', '_', owner).upper()}_{role}_PASSWORD"


def owners_of(views: Sequence[Sequence[Any]]) -> dict[str, str]:
    """label -> its one owner, from the CloudHSM CLI views of the source (``key list
    --verbose`` as the profile's users); keys of public class and shared views add nothing."""
    out: dict[str, str] = {}
    for keys in views:
        for key in keys:
            public = key.attributes.get("class") == "public-key"
            if key.label and len(key.owners) == 1 and not public:
                out.setdefault(key.label, key.owners[0])
    return out


def _order(e: Entry) -> tuple[str, int, str]:
    return (e.facts.label or "", ("secret", "private", "public").index(e.facts.cls)
            if e.facts.cls in ("secret", "private", "public") else 3, e.facts.id)


def _shape_problem(f: keyinfo.KeyFacts) -> str | None:
    """Why a key of a known type cannot be drafted as is (its size or curve), or None."""
    if f.type == "ec":
        if f.curve not in CURVES:
            return (f"EC curve {f.curve or '(not reported)'} is not one keyparity migrates "
                    f"({_NIST})")
        return None
    if not KEY_TYPES[f.type].sizes.given:
        return None
    if f.size is None:
        what = "CKA_MODULUS" if f.type == "rsa" else "CKA_VALUE_LEN"
        return (f"the token does not report the key's size ({what}): add it to keys: with "
                "its size to migrate it")
    problem = size_problem(f.type, f.size)
    if problem is not None:
        return f"{f.describe()}: a profile does not accept this size ({problem})"
    return None


def _objects(entries: Sequence[Entry]) -> str:
    return "; ".join(f"{e.facts.cls} {e.facts.describe()}, CKA_ID {e.facts.id or '(empty)'}"
                     for e in entries)


def draft(entries: Sequence[Entry]) -> Draft:
    """Sort a token's key objects into inventory keys and exclusions (by label)."""
    out = Draft()
    by_label: dict[str, list[Entry]] = {}
    others: dict[tuple[str, str], list[Entry]] = {}  # objects that are not keys
    for e in sorted(entries, key=_order):
        if not e.facts.label:
            out.unlabelled.append(e)
        elif not e.facts.is_key:
            others.setdefault((e.facts.label, e.facts.cls), []).append(e)
        else:
            by_label.setdefault(e.facts.label, []).append(e)

    def exclude(label: str, reason: str, cls: str | None = None) -> None:
        out.exclude.append({"label": label, **({"class": cls} if cls else {}),
                            "reason": reason})

    for label, objs in by_label.items():
        classes = [e.facts.cls for e in objs]
        if label.startswith(census.WRAPPING_PREFIX):
            run = _RUN_ID.search(label)
            exclude(label, "a wrapping object of a keyparity run, not an inventory key"
                    + (f": keyparity cleanup --run {run.group(0)} removes it" if run else ""))
            continue
        if len(objs) > 1 and not (sorted(classes) == ["private", "public"]
                                  and objs[0].facts.type == objs[1].facts.type):
            exclude(label, f"{len(objs)} key objects under one label ({_objects(objs)}): the "
                    "inventory names a key by its label, so none of them can be migrated as "
                    "they are; give each its own label on the token and draft again")
            continue
        main = next((e for e in objs if e.facts.cls in ("secret", "private")), None)
        public = next((e for e in objs if e.facts.cls == "public"), None)
        f = (main or objs[0]).facts
        if not f.known_type or f.cls not in ("secret", "private", "public") or (
                f.type in ASYMMETRIC) != (f.cls != "secret"):
            exclude(label, f"{f.cls} key of type {f.type}: not a key type keyparity migrates "
                    f"({_TYPES})", f.cls)
            continue
        if main is None:
            exclude(label, f"a public key ({f.describe()}) with no private key under its "
                    "label: there is no key to migrate", "public")
            continue
        if f.type == "ec" and public is None:  # an RSA private key shows its modulus
            exclude(label, f"an EC private key ({f.describe()}) with no public key under its "
                    "label: keyparity proves an EC key with its public key (a private key "
                    "object exposes no public point)", "private")
            continue
        problem = _shape_problem(f)
        if problem is not None:
            exclude(label, problem)
            continue
        out.keys.append(Key(main, public))
    for (label, cls), objs in others.items():
        shown = "; ".join(f"{e.facts.kind()}, "
                          + ("no CKA_ID" if cls == "data" else f"CKA_ID {e.facts.id or '(empty)'}")
                          for e in objs)
        exclude(label, f"{shown}: {census.not_migrated(cls)}", cls)
    out.exclude.sort(key=lambda x: x["label"])  # stable: a label's key before its certificate
    return out


# ---- YAML ------------------------------------------------------------------------------------

class _Quoted(str):
    """A string always written double-quoted (a CKA_ID: ``"0123"`` must not read as a number)."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)  # "keys:\n  - label:", as profiles are


_Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar(
    "tag:yaml.org,2002:str", str(v), style='"'))


def render(found: Draft, cluster: Cluster, info: dict[str, Any]) -> str:
    """The draft as YAML: a comment saying what it is of, ``keys:``, ``exclude:``."""
    token = info.get("label") or cluster.token_label or f"in slot {cluster.slot}"
    head = [f"# keyparity inventory of the source cluster {cluster.name} (token {token}, serial "
            f"{info.get('serial') or '?'}): {len(found.keys)} keys, "
            f"{len(found.exclude)} exclusions",
            "# review, then paste " + ("owners:, " if any(k.owner for k in found.keys) else "")
            + "keys: and exclude: into the profile"]
    body = yaml.dump(found.document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)
    notes = iter([_draft_note(k) for k in found.keys if k.role is not None])
    body = "".join(line + next(notes) + "\n" if line.startswith("    role: ") else line + "\n"
                   for line in body.splitlines())
    tail = [f"# not drafted: an unlabelled {e.facts.kind()} ("
            + (f"{e.facts.describe()}, " if e.facts.is_key else "")
            + f"CKA_ID {e.facts.id or '(empty)'}): exclude: names objects by label, so the census "
            "counts it as unaccounted; label it on the token (or destroy it) and draft again"
            for e in found.unlabelled]
    return "\n".join(head) + "\n" + body + "".join(line + "\n" for line in tail)


# ---- CBOM ------------------------------------------------------------------------------------

def assets(found: Draft, entries: Sequence[Entry], cluster: Cluster) -> list[Any]:
    """The drafted keys as CBOM assets, with their KCV or public-key fingerprint computed by
    the token (census.material: never the key value; only a KCV's first 3 bytes are kept)."""
    out = []
    for key in found.keys:
        f = key.facts
        value, text = census.material(key.entry, entries, cluster.name, cluster.mode == "FIPS")
        props = {"keyparity:key-type": f.type, "keyparity:cluster": cluster.name,
                 "keyparity:disposition": "rotate" if key.rotate else "migrate"}
        if f.extractable is not None:
            props["keyparity:extractable"] = str(f.extractable).lower()
        if value is None:
            props["keyparity:check-unavailable"] = text
        elif f.cls == "secret":
            props["keyparity:kcv"] = bytes(value)[:3].hex()
            method = KEY_TYPES[f.type].kcv  # every secret key type has one
            props["keyparity:kcv-method"] = method.description if method else "none"
        else:
            props["keyparity:fingerprint"] = str(value)
            props["keyparity:fingerprint-method"] = ("SHA-256 of the public key's DER "
                                                     "SubjectPublicKeyInfo")
        # a key found on the source token is in use there: PKCS #11 keeps no other state
        out.append(Asset(label=str(f.label), type=f.type, state=ACTIVE, size=f.size,
                         curve=f.curve, cka_id=f.id or None, properties=props))
    return out


def cbom_text(found: Draft, entries: Sequence[Entry], cluster: Cluster,
              info: dict[str, Any], profile_name: str) -> str:
    meta = {"keyparity:inventory": "keys of the source cluster, as keyparity inventory "
                                   "drafts them",
            "keyparity:profile": profile_name, "keyparity:cluster": cluster.name,
            "keyparity:token-label": info.get("label"), "keyparity:token-serial":
            info.get("serial"), "keyparity:excluded-objects": str(len(found.exclude))}
    where = platform({"name": cluster.name, "mode": cluster.mode, "mode_source": "declared",
                      "hsm_type": cluster.hsm_type, "token": info})
    return to_json(document(assets(found, entries, cluster),
                            properties={k: v for k, v in meta.items() if v}, where=where))


# ---- the command -----------------------------------------------------------------------------

def _cli_views(profile: Profile) -> list[list[Any]]:
    """The source as the CloudHSM CLI lists it for each user the profile names (the source's
    cloudhsm_cli user and each owner's): a crypto user sees only its own and shared keys, so
    the owners drafted are those of the keys these users see. [] without a CLI."""
    source = profile.source
    if source is None or source.cloudhsm_cli is None:
        return []
    gate = LoginGate(None)
    specs = {source.cloudhsm_cli.user: source.cloudhsm_cli}
    specs.update({o.source.user: o.source for o in profile.owners})
    return [CloudHsmCli.for_cluster(source, gate=gate, spec=s).list_keys({})
            for s in specs.values()]


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def command(args: argparse.Namespace) -> int:
    """``keyparity inventory PROFILE [--format yaml|cyclonedx] [--out FILE]``."""

    def error(code: int, message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code

    try:
        profile = load_profile(resolve_profile_arg(args.profile, Path.cwd()))
    except ProfileError as exc:
        return error(2, _line(exc))
    spec = profile.source or profile.cluster  # a re-verify profile names only its target
    where = f"source cluster {spec.name}"
    try:
        session = open_cluster(spec, profile.module_env, LoginGate(None))
        progress = Progress(f"read objects on {spec.name}")
        entries = census.scan(session.session, spec.name, progress.tick)
        progress.done()
        found = draft(entries)
        owners = owners_of(_cli_views(profile))
        for key in found.keys:
            key.owner = owners.get(str(key.facts.label))
            key.usage = read_usage(key)
        if args.format == "cyclonedx":
            text = cbom_text(found, entries, spec, session.info, profile.name)
        else:
            text = render(found, spec, session.info)
    except CbomError as exc:
        return error(1, _line(exc))
    except KeyparityError as exc:  # open_cluster's messages name the cluster and the PIN
        message = _line(exc)
        return error(1, message if spec.name in message else f"{where}: {message}")
    except PKCS11Error as exc:  # a token call outside keyparity's own error mapping
        return error(1, f"{where}: {describe(exc)}")
    finally:
        close_clusters()
    if found.unlabelled:
        print(f"{PROG}: warning: {len(found.unlabelled)} object(s) on {spec.name} have no "
              "label and cannot be excluded: the census will count them as unaccounted",
              file=sys.stderr)
    if args.out:
        try:
            atomic.write(Path(args.out), text)
        except OSError as exc:
            return error(2, f"cannot write {args.out}: {exc.strerror or exc}")
        print(f"{PROG}: {len(found.keys)} keys of {spec.name} ({len(found.exclude)} "
              f"exclusions) written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["Draft", "Key", "assets", "cbom_text", "command", "draft", "owners_of", "render"]
