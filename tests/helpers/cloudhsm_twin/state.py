"""What a stand-in cluster knows that SoftHSM does not: its settings (id, mode, HSM type, token
label, the crypto user its PKCS #11 login stands for), its users (role, password hash, failed
logins, locked), and for every key its reference, owner, shared users, quorum values and the
attributes SoftHSM cannot hold for a crypto user (``trusted``, ``wrap-with-trusted``).

One SQLite file per cluster (``state.sqlite`` in the cluster's directory). Every command holds
the cluster's lock (``flock`` on ``lock`` beside it) from before it reads anything until after
it has written everything, so concurrent calls on one cluster run one after the other and the
token and the state never disagree halfway. Passwords are kept as PBKDF2-SHA256 hashes.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, role TEXT NOT NULL,
    salt BLOB NOT NULL, hash BLOB NOT NULL, failures INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS keys (ref INTEGER PRIMARY KEY, class TEXT NOT NULL,
    key_type TEXT NOT NULL, label TEXT NOT NULL, id TEXT NOT NULL, fingerprint TEXT,
    check_value TEXT NOT NULL DEFAULT '', length INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL, manage_q INTEGER NOT NULL DEFAULT 0, use_q INTEGER NOT NULL DEFAULT 0,
    trusted INTEGER NOT NULL DEFAULT 0, wwt INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shares (ref INTEGER NOT NULL, username TEXT NOT NULL,
    PRIMARY KEY (ref, username));
CREATE TABLE IF NOT EXISTS anchors (ref INTEGER PRIMARY KEY, pem TEXT NOT NULL);
"""
FIRST_REF = 0x100001
ITERATIONS = 20_000


@dataclass
class KeyRow:
    """One key as the state knows it (the token knows the rest)."""

    ref: int
    cls: str
    key_type: str
    label: str
    id: str
    fingerprint: str | None
    check_value: str
    length: int
    owner: str
    manage_q: int = 0
    use_q: int = 0
    trusted: bool = False
    wwt: bool = False

    @property
    def reference(self) -> str:
        return f"0x{self.ref:016x}"


@dataclass(frozen=True)
class UserRow:
    username: str
    role: str
    failures: int
    locked: bool


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)


class State:
    """The state of one cluster, opened under its lock (``State.open``)."""

    def __init__(self, directory: Path, db: sqlite3.Connection) -> None:
        self.directory, self.db = directory, db

    @classmethod
    @contextmanager
    def open(cls, directory: Path) -> Iterator[State]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = sqlite3.connect(directory / "state.sqlite", isolation_level=None)
            try:
                db.executescript(SCHEMA)
                db.execute("BEGIN IMMEDIATE")
                yield cls(directory, db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    def commit(self) -> None:
        """Keep what was written so far (a refused login must count even though the command
        then fails)."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    # ---- settings ----------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, str(value)))

    # ---- users -------------------------------------------------------------------------------

    def user(self, username: str) -> UserRow | None:
        row = self.db.execute("SELECT username, role, failures, locked FROM users WHERE "
                              "username = ?", (username,)).fetchone()
        return UserRow(row[0], row[1], row[2], bool(row[3])) if row else None

    def users(self) -> list[UserRow]:
        return [UserRow(r[0], r[1], r[2], bool(r[3])) for r in self.db.execute(
            "SELECT username, role, failures, locked FROM users ORDER BY rowid")]

    def set_password(self, username: str, role: str, password: str) -> None:
        """Create the user, or give it a new password (which unlocks it)."""
        salt = secrets.token_bytes(16)
        self.db.execute("INSERT INTO users (username, role, salt, hash) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(username) DO UPDATE SET salt = excluded.salt, "
                        "hash = excluded.hash, failures = 0, locked = 0",
                        (username, role, salt, hash_password(password, salt)))

    def password_matches(self, username: str, password: str) -> bool:
        row = self.db.execute("SELECT salt, hash FROM users WHERE username = ?",
                              (username,)).fetchone()
        return bool(row) and hmac.compare_digest(hash_password(password, row[0]), row[1])

    def record_login(self, username: str, ok: bool, lock_after: int) -> UserRow:
        if ok:
            self.db.execute("UPDATE users SET failures = 0 WHERE username = ?", (username,))
        else:
            self.db.execute("UPDATE users SET failures = failures + 1, locked = (failures + 1 "
                            ">= ?) WHERE username = ?", (lock_after, username))
        user = self.user(username)
        assert user is not None
        return user

    # ---- keys --------------------------------------------------------------------------------

    def keys(self) -> list[KeyRow]:
        rows = self.db.execute("SELECT ref, class, key_type, label, id, fingerprint, "
                               "check_value, length, owner, manage_q, use_q, trusted, wwt "
                               "FROM keys ORDER BY ref").fetchall()
        return [KeyRow(*r[:11], trusted=bool(r[11]), wwt=bool(r[12])) for r in rows]

    def next_ref(self) -> int:
        ref = int(self.get("next_ref", str(FIRST_REF)) or FIRST_REF)
        self.set("next_ref", ref + 1)
        return ref

    def save_key(self, row: KeyRow) -> None:
        self.db.execute("INSERT OR REPLACE INTO keys (ref, class, key_type, label, id, "
                        "fingerprint, check_value, length, owner, manage_q, use_q, trusted, "
                        "wwt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (row.ref, row.cls, row.key_type, row.label, row.id, row.fingerprint,
                         row.check_value, row.length, row.owner, row.manage_q, row.use_q,
                         int(row.trusted), int(row.wwt)))

    def drop_key(self, ref: int) -> None:
        self.db.execute("DELETE FROM keys WHERE ref = ?", (ref,))
        self.db.execute("DELETE FROM shares WHERE ref = ?", (ref,))

    def shared(self, ref: int) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT username FROM shares WHERE ref = ? ORDER BY rowid", (ref,))]

    def share(self, ref: int, username: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO shares (ref, username) VALUES (?, ?)",
                        (ref, username))

    def unshare(self, ref: int, username: str) -> None:
        self.db.execute("DELETE FROM shares WHERE ref = ? AND username = ?", (ref, username))

    # ---- mTLS --------------------------------------------------------------------------------

    def anchors(self) -> list[tuple[int, str]]:
        return list(self.db.execute("SELECT ref, pem FROM anchors ORDER BY ref"))

    def add_anchor(self, pem: str) -> None:
        self.db.execute("INSERT INTO anchors (pem) VALUES (?)", (pem,))


def secret_file(path: Path, value: str) -> Path:
    """Write a secret to a new 0600 file (never world-readable, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return path
