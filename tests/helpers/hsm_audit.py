"""CloudHSM audit log events in the documented format (AWS CloudHSM User Guide, "Interpreting
HSM audit logs": https://docs.aws.amazon.com/cloudhsm/latest/userguide/interpreting-audit-logs.html;
opcodes and their codes from its examples and "Audit log reference"), as CloudWatch Logs'
FilterLogEvents returns them (``events[]``: logStreamName, timestamp, message, ingestionTime,
eventId), for the tests' Stubber."""
from __future__ import annotations

import datetime as dt
from typing import Any

# opcode -> its code as the guide's examples print it
CODES = {"CN_LOGIN": "0xd", "CN_LOGOUT": "0xe", "CN_WRAP_KEY": "0x1a", "CN_UNWRAP_KEY": "0x1b",
         "CN_DESTROY_OBJECT": "0x11", "CN_GENERATE_KEY_PAIR": "0x19", "CN_CREATE_OBJECT": "0x10",
         "CN_GENERATE_KEY": "0x17"}
SUCCESS = "0:HSM Return: SUCCESS"


def message(usecs: int, seq: int, opcode: str, *, user: str | None = None,
            handle: int | None = None, response: str = SUCCESS, reboot: int = 0x107,
            session: str = "0x7004003") -> str:
    """One event's text, field by field as the guide shows it."""
    when = dt.datetime.fromtimestamp(usecs / 1e6, dt.timezone.utc)
    lines = [f"Time: {when:%m/%d/%y %H:%M:%S}.{usecs % 1_000_000:06d}, usecs:{usecs}",
             f"Sequence No : {hex(seq)}", f"Reboot counter : {hex(reboot)}",
             "Command Type(hex) : CN_MGMT_CMD (0x0)", f"Opcode : {opcode} ({CODES[opcode]})",
             f"Session Handle : {session}", f"Response : {response}"]
    if opcode in ("CN_LOGIN", "CN_LOGOUT"):
        lines += ["Log type : MGMT_USER_DETAILS_LOG (2)", f"User Name : {user}",
                  "User Type : CN_CRYPTO_USER (1)"]
    else:
        lines += ["Log type : MGMT_KEY_DETAILS_LOG (1)",
                  f"Priv/Secret Key Handle : {handle if handle is not None else 0}",
                  "Public Key Handle : 0"]
    return "\n".join(lines) + "\n"


def stream(hsm_id: str, start_usecs: int, ops: list[dict[str, Any]],
           first_seq: int = 0) -> list[dict[str, Any]]:
    """A log stream's events: ``ops`` each ``{"opcode", "user"?, "handle"?, "response"?,
    "after_us"?}`` (microseconds after the previous event, default 1000)."""
    out, usecs = [], start_usecs
    for i, op in enumerate(ops):
        usecs += int(op.get("after_us", 1000))
        text = message(usecs, first_seq + i, op["opcode"], user=op.get("user"),
                       handle=op.get("handle"), response=op.get("response", SUCCESS))
        out.append({"logStreamName": hsm_id, "timestamp": usecs // 1000, "message": text,
                    "ingestionTime": usecs // 1000 + 2000, "eventId": f"{usecs}{i:04d}"})
    return out
