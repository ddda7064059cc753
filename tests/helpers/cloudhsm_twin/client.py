"""Running the stand-in as a user would, for tests and the demo: ``Twin(manifest).run(client,
user, *command)`` runs a client's ``cloudhsm-cli`` in single-command mode with that user's
password (read from its 0600 file) in CLOUDHSM_PIN, stdin closed, and returns the exit status,
the JSON's ``error_code`` and ``data``; ``Twin.tokens`` runs PKCS #11 operations on the twin's
tokens in a child process (tests/helpers/tokentool.py: SoftHSM reads its configuration once per
process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ENV

TOKENTOOL = Path(__file__).resolve().parent.parent / "tokentool.py"


@dataclass(frozen=True)
class Result:
    status: int
    error_code: int | None
    data: Any
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0 and self.error_code == 0


class Twin:
    def __init__(self, manifest: Mapping[str, Any]) -> None:
        self.manifest = manifest
        self.root = Path(manifest["root"])

    def cluster(self, name: str) -> Mapping[str, Any]:
        return self.manifest["clusters"][name]

    def password(self, cluster: str, user: str) -> str:
        path = self.cluster(cluster)["users"][user]["password_file"]
        return Path(path).read_text().strip()

    def run(self, client: str, user: str | None, *command: str, cluster: str | None = None,
            role: str | None = None, password: str | None = None,
            stdin: str | None = None) -> Result:
        """``client``'s cloudhsm-cli, logged in as ``user`` of ``cluster`` (default: the
        client's name)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDHSM_")
               and k != ENV}
        if user is not None:
            who = self.cluster(cluster or client)["users"][user]
            secret = password if password is not None else self.password(cluster or client,
                                                                          user)
            env.update(CLOUDHSM_ROLE=role or who["role"], CLOUDHSM_PIN=f"{user}:{secret}")
        done = subprocess.run([self.manifest["clients"][client]["cloudhsm_cli"], *command],
                              env=env, input=stdin if stdin is not None else "",
                              capture_output=True, text=True, timeout=120, check=False)
        try:
            doc = json.loads(done.stdout)
        except ValueError:
            doc = {}
        return Result(done.returncode, doc.get("error_code"), doc.get("data"), done.stderr)

    def tokens(self, *ops: dict[str, Any]) -> list[Any]:
        """PKCS #11 operations (tokentool's) on the twin's tokens, ``token`` a cluster name."""
        for op in ops:
            op.setdefault("pin", Path(self.cluster(op["token"])["pin_file"]).read_text().strip())
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.root) as spec:
            json.dump({"module": self.manifest["module"], "ops": list(ops)}, spec)
            spec.flush()
            env = {**os.environ, "SOFTHSM2_CONF": self.manifest["softhsm2_conf"]}
            out = subprocess.run([sys.executable, str(TOKENTOOL), spec.name], env=env,
                                 capture_output=True, text=True, check=False, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"tokentool failed: {out.stderr}")
        return json.loads(out.stdout)
