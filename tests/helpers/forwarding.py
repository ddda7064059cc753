"""The forwarding PKCS #11 module (native/p11forward) for the tests: built by ``./run native``
when missing or older than its source, then loaded in child processes (tests/helpers/forwardtool.py,
tests/helpers/wraptool.py) that forward to the lab's SoftHSM."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from spylog import SPY

REPO = Path(__file__).resolve().parents[2]
FORWARDTOOL = Path(__file__).with_name("forwardtool.py")
WRAPTOOL = Path(__file__).with_name("wraptool.py")


@functools.cache
def module() -> str:
    """The path of the built module (built first if stale)."""
    out = subprocess.run([str(REPO / "run"), "native"], capture_output=True, text=True,
                         check=False, cwd=REPO)
    assert out.returncode == 0, f"./run native failed: {out.stderr}{out.stdout}"
    return out.stdout.strip().splitlines()[-1]


def environment(lab: Any, *, latency_us: int = 0, calls: Path | None = None,
                spy_front: Path | None = None, spy_behind: Path | None = None,
                ) -> tuple[str, dict[str, str]]:
    """The module a child loads and its environment. pkcs11-spy logs to ``spy_front`` what the
    caller asks of the forwarding module, or to ``spy_behind`` what the forwarding module asks
    of SoftHSM (one spy at a time: they share PKCS11SPY)."""
    assert spy_front is None or spy_behind is None
    env = {**lab.env, "KEYPARITY_P11_TARGET": lab.module,
           "KEYPARITY_P11_LATENCY_US": str(latency_us)}
    if calls is not None:
        env["KEYPARITY_P11_CALLS"] = str(calls)
    if spy_behind is not None:
        env.update(KEYPARITY_P11_TARGET=str(SPY), PKCS11SPY=lab.module,
                   PKCS11SPY_OUTPUT=str(spy_behind))
    if spy_front is not None:
        env.update(PKCS11SPY=module(), PKCS11SPY_OUTPUT=str(spy_front))
        return str(SPY), env
    return module(), env


def child(tool: Path, spec: dict[str, Any], env: dict[str, str], where: Path) -> Any:
    path = where / f"{tool.stem}.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run([sys.executable, str(tool), str(path)], env=env, capture_output=True,
                         text=True, check=False, cwd=REPO)
    assert out.returncode == 0, f"{tool.name} failed: {out.stderr}"
    return json.loads(out.stdout)


def forwardtool(lab: Any, *ops: dict[str, Any], params: tuple[str, str, int] = ("sha1",
                "mgf1-sha1", 256), **options: Any) -> dict[str, Any]:
    """Run tests/helpers/forwardtool.py operations through the module; {"results": [...], "seconds"}.
    SoftHSM's OAEP takes only SHA-1, hence the default parameters."""
    so, env = environment(lab, **options)
    return child(FORWARDTOOL, {"module": so, "pins": lab.pins, "params": list(params),
                               "ops": list(ops)}, env, lab.root)


def wraptool(lab: Any, token: str, op: str, spy_behind: Path | None = None,
             **args: Any) -> dict[str, Any]:
    """Run one tests/helpers/wraptool.py operation (keyparity.hsm.wrap on one token) through the
    module."""
    so, env = environment(lab, spy_behind=spy_behind)
    return child(WRAPTOOL, {"module": so, "token": token, "pin": lab.pins[token], "op": op,
                            "params": ["sha1", "mgf1-sha1", 256], **args}, env, lab.root)


def wrap_known(lab: Any, value: bytes, *, spy_behind: Path | None = None,
               ) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """hsm1 wraps a known AES key value natively, through the module, for the public half of an
    RSA-2048 key made in software; returns that private key and wraptool's answer."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    out = wraptool(lab, "hsm1", "wrap-known", spy_behind=spy_behind, native=True,
                   public_n=f"{numbers.n:0512x}", public_e=f"{numbers.e:06x}",
                   value_hex=value.hex())
    assert "error" not in out, out
    return private, out
