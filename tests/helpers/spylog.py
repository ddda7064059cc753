"""Reading OpenSC's pkcs11-spy logs: the calls a module received, in order, with their hex dumps."""
from __future__ import annotations

import re
from pathlib import Path

SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so")


def blocks(log: Path) -> list[str]:
    """The calls in a pkcs11-spy log, in order.

    A block starts with ``N: C_Name``, then a timestamp, ``[in] ...``/``[out] ...`` lines (for
    example ``[in] pMechanism->type = CKM_RSA_PKCS_OAEP``, or the hex value when the spy has no
    name for it), and ends with ``Returned:  RV CKR_NAME``.
    """
    return re.split(r"\n(?=\d+: C_\w+\n)", log.read_text(errors="replace"))


def calls(log: Path, name: str) -> list[str]:
    """The blocks of one function, in call order."""
    return [b for b in blocks(log) if re.match(rf"\d+: {name}\n", b)]


def hexdump(block: str, field: str) -> bytes:
    """The bytes of a hex dump that follows ``field`` in a spy log block."""
    lines = block.split("\n")
    start = next(i for i, line in enumerate(lines) if field in line)
    out = b""
    for line in lines[start + 1:]:
        m = re.match(r"\s+[0-9a-fA-F]{8}  ((?:[0-9A-F]{2} ){1,16})", line)
        if not m:
            break
        out += bytes.fromhex(m.group(1))
    return out
