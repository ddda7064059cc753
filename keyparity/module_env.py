"""What a profile's ``module_env`` may set, and how: only the variables a PKCS #11 module that
keyparity knows reads, and only while that module is loaded.

An allow-list, not a deny-list: a profile is a file that is committed and copied around, and a
name it may set is a way into the process (``LD_PRELOAD`` and ``PYTHONPATH`` ran a library and
code in every child process when any name was applied process-wide), or a way to put a secret
in it (``module_env: {SRC_PIN: ...}`` beside ``pin: env:SRC_PIN`` is a literal PIN). A variable
another module needs is added to ALLOWED with the module that reads it; until then it is set
in the environment of the process that runs keyparity, where the operator sets it on purpose.

The variables are set for the loading of the module (C_Initialize reads them; SoftHSM reads
SOFTHSM2_CONF there, pkcs11-spy reads its two there) and put back as they were afterwards, so
nothing else in the process, and no process it starts, sees them.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

# name -> the module that reads it, and what for
ALLOWED: dict[str, str] = {
    "SOFTHSM2_CONF": "SoftHSM 2: its configuration file (softhsm2.conf(5))",
    "PKCS11SPY": "OpenSC's pkcs11-spy: the PKCS #11 module it forwards the calls to",
    "PKCS11SPY_OUTPUT": "OpenSC's pkcs11-spy: the file it logs the calls to",
    "KEYPARITY_P11_TARGET": "keyparity's forwarding module (native/p11forward): the module it "
                            "forwards the calls to",
    "KEYPARITY_P11_LATENCY_US": "keyparity's forwarding module: the microseconds each call "
                                "waits first",
    "KEYPARITY_P11_CALLS": "keyparity's forwarding module: the file it counts the calls in",
}
# prefixes that change how a process loads code: named in the refusal
_LOADER = ("LD_", "DYLD_", "PYTHON", "GCONV_", "MALLOC_")


def refusal(name: str, secret_names: Mapping[str, str]) -> str | None:
    """Why ``module_env`` may not set ``name`` (None: it may). ``secret_names``: the variables
    the profile's ``env:`` secret references name -> the field that names it."""
    if name in secret_names:
        return (f"{name} is the variable of a secret reference ({secret_names[name]}: "
                f"env:{name}): module_env would put the secret in the profile; set {name} in "
                "the environment of the process instead")
    if name in ALLOWED:
        return None
    loader = any(name.startswith(prefix) for prefix in _LOADER)
    why = (" (it changes what code every process loads: never taken from a profile)"
           if loader else "")
    return (f"{name} is not a variable of a PKCS #11 module keyparity knows{why}; module_env "
            f"may set {', '.join(sorted(ALLOWED))}. Set another in the environment of the "
            "process that runs keyparity")


@contextlib.contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in the process's environment for the body only (a module's loading), then
    every name as it was."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
