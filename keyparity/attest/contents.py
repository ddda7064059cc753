"""What makes a bundle self-contained: copies, inside the run directory and so among the signed
subjects (each file's SHA-256 signed), of what an auditor would otherwise fetch elsewhere:

    profile/<file>          the profile the run used, byte for byte (its SHA-256 is the signed
                            ``profile_sha256``); secrets in it are references only (env:NAME,
                            file:PATH: the schema refuses a literal), never their values. In
                            production (minimal data: keyparity.minimal) the absolute paths of
                            its secret and key files are shown as the evidence shows a path
                            (``Profile.shown``), listed under ``redacted``: the copy's own
                            SHA-256 is then not the original's
    plan/plan.json          the signed plan the run followed, and its envelope
    plan/plan.dsse.json
    journal.json            the write journal's rows of this run, and the chain head after them
    signers/<name>.pem      each signer's certificate (``certificate:``), else its public key
    approvals/<file>        the signed approvals the profile names (compliance.approvals: wrap
                            exceptions, the non-FIPS approval) and each approver's public key
                            (approvers/<name>.pem), so that their signatures verify from it

The signed predicate's ``contents`` names each; ``keyparity verify`` fails a bundle whose
predicate lacks them (``missing``) or whose files are gone (a missing subject).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from .. import atomic
from ..journal.store import Journal
from ..profile import Profile
from .digest import sha256_file

__all__ = ["APPROVALS_DIR", "JOURNAL_ROWS", "PLAN_DIR", "PROFILE_DIR", "SIGNERS_DIR", "missing",
           "write_contents"]

PROFILE_DIR = "profile"
PLAN_DIR = "plan"
JOURNAL_ROWS = "journal.json"
SIGNERS_DIR = "signers"
APPROVALS_DIR = "approvals"
_PLAN_FILES = ("plan.json", "plan.dsse.json")


def write_contents(run_dir: Path, profile: Profile, run_id: str, *,
                   plan_dir: Path | None, journal: Path | None,
                   signer_keys: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Copy the profile, the plan, the journal's rows and the signers' keys into ``run_dir``;
    returns the predicate's ``contents``. ``signer_keys``: name -> (its SSlibKey, its
    certificate or None), in the profile's order."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"profile": _copy_profile(profile, run_dir),
                           "plan": None, "journal": None, "signers": []}
    if plan_dir is not None:
        copies = [_copy(Path(plan_dir) / name, run_dir / PLAN_DIR, run_dir)
                  for name in _PLAN_FILES]
        out["plan"] = {"file": copies[0]["file"], "envelope": copies[1]["file"]}
    if profile.approvals:
        out["approvals"] = {
            "documents": [_copy(p, run_dir / APPROVALS_DIR, run_dir) for p in profile.approvals],
            "approvers": [{"name": name, **_copy(pem, run_dir / APPROVALS_DIR / "approvers",
                                                 run_dir)}
                          for name, pem in profile.approvers.items()]}
    if journal is not None and Path(journal).is_file():
        out["journal"] = _journal_rows(Path(journal), run_id, run_dir)
    folder = run_dir / SIGNERS_DIR
    folder.mkdir(exist_ok=True)
    for name, (key, cert) in signer_keys.items():
        path = folder / f"{name}.pem"
        if cert is not None:
            atomic.write(path, cert.public_bytes(serialization.Encoding.PEM))
        else:
            pem = serialization.load_pem_public_key(key.keyval["public"].encode())
            atomic.write(path, pem.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        out["signers"].append({"name": name, "keyid": key.keyid,
                               "file": f"{SIGNERS_DIR}/{name}.pem",
                               "kind": "certificate" if cert is not None else "public key"})
    return out


def _secret_paths(profile: Profile) -> list[str]:
    """The absolute paths of the profile's secret and key files: ``file:`` references, file
    signers' keys (Profile.secret_files), TLS private keys."""
    paths = [str(f["file"]) for f in profile.secret_files]
    for cluster in profile.clusters:
        tls = cluster.tls
        paths += [str(p) for p in (getattr(tls, "client_key", None),
                                   getattr(tls, "server_key", None)) if p is not None]
    return sorted({p for p in paths if Path(p).is_absolute()}, key=len, reverse=True)


def _copy_profile(profile: Profile, run_dir: Path) -> dict[str, Any]:
    """The profile, byte for byte; in production with its secret and key files' absolute
    paths shown as the evidence shows them (no host path of a secret in the bundle)."""
    if not profile.production:
        return _copy(profile.path, run_dir / PROFILE_DIR, run_dir)
    text = Path(profile.path).read_text("utf-8")
    redacted = []
    for path in _secret_paths(profile):
        if path in text:
            text = text.replace(path, profile.shown(path))
            redacted.append(profile.shown(path))
    copy = _copy(profile.path, run_dir / PROFILE_DIR, run_dir, text.encode("utf-8"))
    return {**copy, **({"redacted": redacted} if redacted else {})}


def _copy(source: Path, folder: Path, run_dir: Path,
          data: bytes | None = None) -> dict[str, str]:
    """``source`` copied into ``folder`` under its name (``data`` written instead of its
    bytes when given); its path in the bundle and its SHA-256."""
    folder.mkdir(exist_ok=True)
    target = folder / Path(source).name
    if data is None:
        shutil.copyfile(source, target)
    else:
        atomic.write(target, data)
    return {"file": target.relative_to(run_dir).as_posix(), "sha256": sha256_file(target)}


def _journal_rows(path: Path, run_id: str, run_dir: Path) -> dict[str, Any]:
    j = Journal(path)
    try:
        rows = j.entries(run_id)
        head = j.head()
    finally:
        j.close()
    data = {"run_id": run_id, "rows": rows, "head": head}
    atomic.write(run_dir / JOURNAL_ROWS,
                 (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return {"file": JOURNAL_ROWS, "rows": len(rows), **head}


def missing(predicate: Mapping[str, Any], subjects: set[str]) -> list[str]:
    """What a signed run predicate should say is inside the bundle and does not: the profile
    always, the plan when the run followed one, the journal's rows when it has a journal head,
    each signer's key; and each file it names that is not among the signed ``subjects``."""
    return _unnamed(predicate) + [f"{file} (named in contents, not a signed subject)"
                                  for file in _files(predicate.get("contents"))
                                  if file not in subjects]


def _files(value: Any) -> list[str]:
    """Every ``file`` (and a plan's ``envelope``) the contents name, at any depth."""
    if isinstance(value, list):
        return [f for item in value for f in _files(item)]
    if not isinstance(value, dict):
        return []
    own = [str(value[k]) for k in ("file", "envelope") if isinstance(value.get(k), str)]
    return own + [f for k, v in value.items() if isinstance(v, (dict, list)) for f in _files(v)]


def _unnamed(predicate: Mapping[str, Any]) -> list[str]:
    contents = predicate.get("contents")
    if not isinstance(contents, dict):
        return ["contents (the profile, the plan, the journal's rows and the signers' keys "
                "inside the bundle)"]
    out = []
    if not isinstance(contents.get("profile"), dict):
        out.append("contents.profile")
    if predicate.get("plan") is not None and not isinstance(contents.get("plan"), dict):
        out.append("contents.plan (the run followed a plan)")
    if predicate.get("journal") is not None and not isinstance(contents.get("journal"), dict):
        out.append("contents.journal (the run has a journal)")
    named = {s.get("name") for s in contents.get("signers") or [] if isinstance(s, dict)}
    out += [f"contents.signers: {name}" for name in predicate.get("signers") or []
            if name not in named]
    return out
