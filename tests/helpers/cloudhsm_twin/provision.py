"""Making stand-in clusters, their clients and their keys.

Layout under a root directory::

    softhsm2.conf, tokens/        one SoftHSM store for every cluster of the root (keyparity's
                                  PKCS #11 side reaches all tokens through one module and conf)
    <name>.pin                    the token's user PIN (0600; keyparity.hsm.softhsm)
    <name>/state.sqlite, lock     the cluster's state (state.py)
    <name>/passwords/<user>.password   each user's password (0600)
    clients/<client>/bin/cloudhsm-cli  a client: the stand-in, with its configuration
    clients/<client>/etc/cloudhsm-cli.cfg
    blobs.sqlite                  the blobs the clusters wrote (wrapping.py)
    twin.json                     the manifest: every path above, no secret

A key seeded here is made through PKCS #11 on the token, as a crypto user's PKCS #11 session
would make it, and owned by that user; 3DES keys on a FIPS cluster stand for keys made before
2024 (no CLI command makes a 3DES key, and a FIPS cluster takes no new one: rules.py).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pkcs11 import Attribute as A
from pkcs11 import KeyType

from keyparity.hsm import softhsm
from keyparity.hsm.seed import key_id

from . import config, rules
from .keystore import load as load_keys
from .softtoken import session
from .state import State, secret_file

HELPERS = Path(__file__).resolve().parent.parent  # tests/helpers: cloudhsm_twin's parent
REPO = HELPERS.parents[1]
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz234567"  # botocore: cluster-[2-7a-zA-Z]{11}


@dataclass(frozen=True)
class Seed:
    """A key seeded on a cluster: type (3des, aes), owner, sharing, quorum values."""

    label: str
    owner: str
    key_type: str = "3des"
    extractable: bool = True
    share_with: tuple[str, ...] = ()
    quorum: tuple[int, int] = (0, 0)  # manage-key-quorum-value, use-key-quorum-value


@dataclass
class TwinCluster:
    name: str
    cluster_id: str
    mode: str
    hsm_type: str
    directory: Path
    pin_file: Path
    pkcs11_user: str
    passwords: dict[str, Path] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)


def new_cluster_id() -> str:
    return "cluster-" + "".join(secrets.choice(_ID_CHARS) for _ in range(11))


def init_root(root: Path) -> Path:
    """An empty root (replaced if it exists): its SoftHSM store; returns the softhsm2.conf."""
    if root.exists():
        shutil.rmtree(root)
    return softhsm.provision(root, [])


def make_cluster(root: Path, name: str, mode: str, hsm_type: str, users: Mapping[str, str],
                 cluster_id: str | None = None, pkcs11_user: str = "cu1",
                 anchors: Sequence[str] = (), mtls_enforcement: str = "none") -> TwinCluster:
    """A cluster ``name`` (its token's label) with ``users`` (name -> role), each with a random
    password in a 0600 file. ``anchors``: PEM certificates registered for mTLS (hsm2m)."""
    root = root.resolve()
    env = {"SOFTHSM2_CONF": str(root / "softhsm2.conf")}
    softhsm.init_token(root, name, {**os.environ, **env}, replace=True)
    twin = TwinCluster(name, cluster_id or new_cluster_id(), mode, hsm_type, root / name,
                       root / f"{name}.pin", pkcs11_user)
    with State.open(twin.directory) as state:
        for key, value in (("cluster_id", twin.cluster_id), ("name", name), ("mode", mode),
                           ("hsm_type", hsm_type), ("pkcs11_user", pkcs11_user),
                           ("module", softhsm.find_module()), ("conf", "softhsm2.conf"),
                           ("pin_file", f"{name}.pin"), ("mtls_enforcement", mtls_enforcement)):
            state.set(key, value)
        for user, role in users.items():
            if role not in rules.ROLES:
                raise ValueError(f"{user}: role {role!r} (crypto-user or admin)")
            password = secrets.token_urlsafe(18)
            state.set_password(rules.username(user), role, password)
            twin.passwords[user] = secret_file(twin.directory / "passwords" / f"{user}.password",
                                               password)
            twin.roles[user] = role
        for pem in anchors:
            state.add_anchor(pem)
    return twin


def make_client(root: Path, name: str, clusters: Sequence[TwinCluster]) -> Path:
    """``clients/<name>``: a configuration for ``clusters`` and a ``bin/cloudhsm-cli`` that
    runs the stand-in with it (under this Python, which has python-pkcs11). Returns the
    executable."""
    base = root.resolve() / "clients" / name
    cfg = config.write(base / "etc" / "cloudhsm-cli.cfg",
                       [(c.cluster_id, c.directory, c.hsm_type) for c in clusters])
    exe = base / "bin" / "cloudhsm-cli"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f"#!{sys.executable}\n"
                   '"""The CloudHSM CLI stand-in for this client (tests/helpers/cloudhsm_twin)."""\n'
                   "import sys\n"
                   f"sys.path[:0] = [{str(HELPERS)!r}, {str(REPO)!r}]\n"
                   "from pathlib import Path\n"
                   "from cloudhsm_twin.cli import main\n"
                   f"sys.exit(main(config=Path({str(cfg)!r})))\n")
    exe.chmod(0o755)
    return exe


def seed(twin: TwinCluster, seeds: Sequence[Seed]) -> list[str]:
    """Make ``seeds`` on the cluster's token through PKCS #11 and record their owners, sharing
    and quorum values (checked as the CLI checks them); returns their key references. Done in
    a child process: SoftHSM reads its configuration once per process, and the caller (a test
    run) may need another."""
    job = {"directory": str(twin.directory), "name": twin.name, "pin_file": str(twin.pin_file),
           "pkcs11_user": twin.pkcs11_user, "roles": twin.roles,
           "seeds": [asdict(s) for s in seeds]}
    done = subprocess.run([sys.executable, "-m", "cloudhsm_twin", "seed", json.dumps(job)],
                          cwd=HELPERS, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"seeding {twin.name} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def seed_here(job: Mapping[str, Any]) -> list[str]:
    """``seed``'s work, in the child process (``python -m cloudhsm_twin seed JOB``)."""
    seeds = [Seed(**{**s, "share_with": tuple(s["share_with"]), "quorum": tuple(s["quorum"])})
             for s in job["seeds"]]
    directory = Path(job["directory"])
    refs = []
    with State.open(directory) as state:
        with session(str(state.get("module")), str(directory.parent / "softhsm2.conf"),
                     job["name"], Path(job["pin_file"]).read_text().strip()) as s:
            for item in seeds:
                _generate(s, item)
            keys = {(k.tk.label, k.cls): k for k in load_keys(state, s, job["pkcs11_user"])}
            for item in seeds:
                key = keys[(item.label, "secret-key")]
                share = rules.crypto_users(item.share_with, job["roles"], item.owner)
                rules.share_limit([], share)
                rules.quorum(*item.quorum, associated=1 + len(share))
                key.row.owner = item.owner
                key.row.manage_q, key.row.use_q = item.quorum
                state.save_key(key.row)
                for user in share:
                    state.share(key.row.ref, user)
                refs.append(key.reference)
    return refs


def _generate(s: Any, item: Seed) -> None:
    key_type, bits = {"3des": (KeyType.DES3, 192), "aes": (KeyType.AES, 256)}[item.key_type]
    s.generate_key(key_type, bits, store=True, label=item.label, id=key_id(item.label),
                   template={A.SENSITIVE: True, A.EXTRACTABLE: item.extractable,
                             A.PRIVATE: True, A.MODIFIABLE: True, A.ENCRYPT: True,
                             A.DECRYPT: True, A.SIGN: False, A.VERIFY: False, A.WRAP: False,
                             A.UNWRAP: False, A.DERIVE: False})


DEMO_USERS = {"admin": rules.ADMIN, "cu1": rules.CRYPTO_USER, "cu2": rules.CRYPTO_USER}
DEMO_SEEDS = (
    Seed("k-des3-cu1", "cu1"),
    Seed("k-des3-cu2", "cu2"),
    Seed("k-des3-shared", "cu1", share_with=("cu2",)),
    # a key quorum: 2 approvals to use it, so on the target it must be shared with a second
    # crypto user in the unwrap itself; 1 for key management, so wrapping it needs no token
    Seed("k-des3-quorum", "cu1", share_with=("cu2",), quorum=(1, 2)),
    Seed("k-des3-nonextractable", "cu1", extractable=False),
)


def demo(root: Path) -> dict[str, Any]:
    """hsm1 (FIPS, hsm1.medium) with DEMO_SEEDS, hsm2m (NON_FIPS, hsm2m.medium) empty, the same
    users on both; a client per cluster (the guide's layout) and one for both; ``twin.json``."""
    root = root.resolve()
    init_root(root)
    hsm1 = make_cluster(root, "hsm1", rules.FIPS, "hsm1.medium", DEMO_USERS)
    hsm2m = make_cluster(root, "hsm2m", "NON_FIPS", "hsm2m.medium", DEMO_USERS)
    seed(hsm1, DEMO_SEEDS)
    clients = {"hsm1": make_client(root, "hsm1", [hsm1]),
               "hsm2m": make_client(root, "hsm2m", [hsm2m]),
               "both": make_client(root, "both", [hsm1, hsm2m])}
    return write_manifest(root, [hsm1, hsm2m], clients, DEMO_SEEDS)


def cluster_entry(c: TwinCluster) -> dict[str, Any]:
    """A cluster as the manifest describes it (paths only, no secret)."""
    return {"cluster_id": c.cluster_id, "mode": c.mode, "hsm_type": c.hsm_type,
            "token_label": c.name, "pin_file": str(c.pin_file), "pkcs11_user": c.pkcs11_user,
            "users": {u: {"role": c.roles[u], "password_file": str(p)}
                      for u, p in c.passwords.items()}}


def client_entry(exe: Path) -> dict[str, str]:
    return {"cloudhsm_cli": str(exe), "config": str(exe.parent.parent / "etc" /
                                                    "cloudhsm-cli.cfg")}


def write_manifest(root: Path, clusters: Sequence[TwinCluster], clients: Mapping[str, Path],
                   seeds: Sequence[Seed] = ()) -> dict[str, Any]:
    doc = {"root": str(root), "module": softhsm.find_module(),
           "softhsm2_conf": str(root / "softhsm2.conf"),
           "clusters": {c.name: cluster_entry(c) for c in clusters},
           "clients": {name: client_entry(exe) for name, exe in clients.items()},
           "seeded": [asdict(s) for s in seeds]}
    (root / "twin.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc
