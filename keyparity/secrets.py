"""Secret references (``env:NAME`` / ``file:PATH``) that never reveal their values, and the rules
for a file that holds a secret (a ``file:`` PIN or password, a file signer's private key).

A value is one line: exactly one trailing newline (``\\n`` or ``\\r\\n``, what an editor or
``echo`` adds) is stripped, from a file and from an environment variable alike; any other line
break or control character, or a UTF-8 byte order mark, is an error naming the field. Such a
value is never sent as a PIN: a wrong PIN fails once and counts toward CloudHSM's lock-out.

A file holding a secret is a regular file, not a symbolic link (which could name any file:
``/etc/shadow`` was sent whole as a PIN), not a FIFO (reading it blocks), a device or a
directory; ``exposure`` says when others may read it or another user owns it (as ssh insists
for a private key): a production profile refuses such a file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import SecretError

__all__ = ["SecretError", "SecretRef", "parse_secret_ref", "LITERAL_SECRET_MESSAGE",
           "exposure", "file_refusal"]

LITERAL_SECRET_MESSAGE = "a literal secret is not allowed; use env:NAME or file:PATH"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_BYTES = 65536  # no PIN, password or PEM key is longer


def file_refusal(path: str | Path) -> str | None:
    """Why ``path`` cannot hold a secret, without opening it (None: it can): missing, a
    symbolic link, or not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return f"secret file not found: {path}"
    except OSError as exc:
        return f"cannot read secret file {path}: {exc.strerror or exc}"
    if stat.S_ISLNK(mode):
        return (f"secret file {path} is a symbolic link: name the file itself (a link to a "
                "secret is never followed)")
    if not stat.S_ISREG(mode):
        return (f"secret file {path} is not a regular file (a FIFO, a device or a directory "
                "cannot hold a secret)")
    return None


def exposure(path: str | Path) -> tuple[str, str | None]:
    """(mode, why a secret file is exposed): readable or writable by the group or others, or
    owned by another user than this process's; None when it is not. Nothing is read."""
    st = os.lstat(path)
    mode = st.st_mode & 0o777
    shown = f"{mode:04o}"
    if mode & 0o044:
        return shown, f"is readable by others (mode {shown})"
    if mode & 0o077:
        return shown, f"is open to others (mode {shown})"
    if st.st_uid != os.geteuid():
        return shown, (f"is owned by uid {st.st_uid}, not by the user keyparity runs as (uid "
                       f"{os.geteuid()})")
    return shown, None


def _one_line(value: str, field: str, where: str) -> str:
    """The value without its one trailing newline; SecretError (naming the field, never the
    value) for a byte order mark, another line break or control character, or nothing."""
    if value.startswith("\ufeff"):
        raise SecretError(f"{field}: {where} starts with a UTF-8 byte order mark (an editor "
                          "added it): save it without one")
    value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    if value == "":
        raise SecretError(f"{field}: {where} is empty")
    if _CONTROL.search(value):
        raise SecretError(f"{field}: {where} holds a line break or another control character "
                          "besides its one trailing newline: a secret is one line; not sent")
    return value


def _read_file(path: str, field: str) -> str:
    """A secret file's text: opened without following a link and without blocking, refused
    unless it is a regular file (checked on the open file, not on the name)."""
    why = file_refusal(path)
    if why is not None and "not found" not in why:
        raise SecretError(f"{field}: {why}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretError(f"{field}: cannot read secret file {path}: {reason}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretError(f"{field}: secret file {path} is not a regular file")
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise SecretError(f"{field}: secret file {path} is larger than {MAX_BYTES} bytes: not a "
                          "secret keyparity reads")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{field}: secret file {path} is not valid UTF-8") from None


@dataclass(frozen=True, repr=False)
class SecretRef:
    """A reference to a secret held in an environment variable or a file."""

    scheme: str  # "env" | "file"
    target: str  # variable name, or absolute file path
    field: str  # profile field path, e.g. "clusters.source.pin"

    def __repr__(self) -> str:
        return f"{self.scheme}:{self.target}"

    __str__ = __repr__

    def resolve(self) -> str:
        """Return the secret value; raise SecretError (without the value) on failure."""
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretError(f"{self.field}: environment variable {self.target} is not set")
            return _one_line(value, self.field, f"environment variable {self.target}")
        if self.scheme == "file":
            return _one_line(_read_file(self.target, self.field), self.field,
                             f"secret file {self.target}")
        raise SecretError(f"{self.field}: unsupported secret scheme {self.scheme!r}")


def parse_secret_ref(text: str, field: str, base_dir: Path) -> SecretRef:
    """Parse ``env:NAME`` or ``file:PATH`` (relative paths resolved against base_dir).

    Raises ValueError for anything else; the message never echoes the input.
    """
    if isinstance(text, str) and text.startswith("env:"):
        name = text[4:]
        if not _ENV_NAME.fullmatch(name):
            raise ValueError("env: reference needs a variable name matching [A-Za-z_][A-Za-z0-9_]*")
        return SecretRef("env", name, field)
    if isinstance(text, str) and text.startswith("file:"):
        raw = text[5:]
        if not raw.strip():
            raise ValueError("file: reference needs a path")
        path = Path(raw)
        if not path.is_absolute():
            path = Path(base_dir).absolute() / path
        return SecretRef("file", os.path.normpath(path), field)
    raise ValueError(LITERAL_SECRET_MESSAGE)
