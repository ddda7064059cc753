"""``keyparity demo tsa``: the demo's local time-stamping authority, and the profile that names it.

The TSA (keyparity.trust.tsa) serves on 127.0.0.1 at a free port until SIGTERM or SIGINT; its
URL is written to ``STATE/tsa/url`` once it answers (the file is the ready signal, and what a
profile's ``evidence.timestamp.url: file:...`` reads), its root to ``STATE/tsa/root.pem``.

With ``--profile`` it then writes ``STATE/tsa/NAME.yaml`` (the ready signal in that case): that
profile with ``evidence.timestamp`` naming this TSA, every relative path made absolute. The demo's own
profiles name no TSA (``./run demo`` runs without one, and says its times are the host's own);
the ceremony runs with this one.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import yaml

from . import atomic
from .errors import file_step
from .profile import load_profile
from .trust.tsa import TimestampServer, make_tsa_pki

__all__ = ["serve", "with_timestamp"]

_RELATIVE = ("./", "../")


def _absolute(value: Any, base: Path) -> Any:
    """Every relative path of a profile (``./``, ``../``, also after ``file:``) made absolute
    against ``base``, the profile's folder."""
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, str):
        prefix = "file:" if value.startswith("file:") else ""
        rest = value.removeprefix(prefix)
        if rest.startswith(_RELATIVE):
            return prefix + os.path.normpath(base / rest)
    return value


def with_timestamp(profile_path: Path, url_file: Path, root: Path, out: Path) -> Path:
    """Write ``out``: the profile at ``profile_path`` naming the TSA whose URL is in
    ``url_file`` and whose root is ``root``; checked by loading it."""
    profile_path = Path(profile_path).absolute()
    data = yaml.safe_load(profile_path.read_text("utf-8"))
    data = _absolute(data, profile_path.parent)
    data.setdefault("evidence", {})["timestamp"] = {
        "url": f"file:{Path(url_file).absolute()}", "ca": str(Path(root).absolute()),
        "hash": "sha256"}
    text = (f"# {profile_path.name} with evidence.timestamp naming the demo TSA; written by "
            "keyparity demo tsa\n" + yaml.safe_dump(data, sort_keys=False))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write(out, text)
    load_profile(out)
    return out


def serve(state: Path, profile: Path | None = None) -> int:
    """Serve until SIGTERM or SIGINT; 0."""
    directory = Path(state) / "tsa"
    url_file = directory / "url"
    derived = None if profile is None else directory / Path(profile).name
    with file_step("write the demo TSA to", directory):
        for old in (url_file, derived):
            if old is not None:
                old.unlink(missing_ok=True)
        paths = make_tsa_pki(directory)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with TimestampServer(paths) as tsa:
        with file_step("write the demo TSA's URL to", url_file):
            atomic.write(url_file, tsa.url + "\n")
            if profile is not None and derived is not None:
                with_timestamp(profile, url_file, paths["root"], derived)
                print(f"keyparity demo tsa: profile {derived}", flush=True)
        print(f"keyparity demo tsa: serving RFC 3161 on {tsa.url} (root {paths['root']})",
              flush=True)
        stop.wait()
    url_file.unlink(missing_ok=True)  # it names a port nothing answers on any more
    return 0
