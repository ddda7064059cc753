"""Secret references (``env:NAME`` / ``file:PATH``) that never reveal their values."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SecretError

__all__ = ["SecretError", "SecretRef", "parse_secret_ref", "LITERAL_SECRET_MESSAGE"]

LITERAL_SECRET_MESSAGE = "a literal secret is not allowed; use env:NAME or file:PATH"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")




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
            if value == "":
                raise SecretError(f"{self.field}: environment variable {self.target} is empty")
            return value
        if self.scheme == "file":
            try:
                raw = Path(self.target).read_bytes()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise SecretError(
                    f"{self.field}: cannot read secret file {self.target}: {reason}"
                ) from None
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SecretError(
                    f"{self.field}: secret file {self.target} is not valid UTF-8"
                ) from None
            if value.endswith("\r\n"):
                value = value[:-2]
            elif value.endswith("\n"):
                value = value[:-1]
            if value == "":
                raise SecretError(f"{self.field}: secret file {self.target} is empty")
            return value
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
