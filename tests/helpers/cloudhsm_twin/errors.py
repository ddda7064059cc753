"""How the stand-in fails: as the CLI does.

A refused command prints the CLI's JSON, ``{"error_code": 1, "data": "<message>"}``, and exits
1; a command line the CLI's argument parser would reject prints ``error: ...`` on stderr and
exits 2 (the CLI parses with clap). Where the AWS documentation gives the text of an error it
is used word for word (rules.py says which); elsewhere the wording is the stand-in's own and
keeps the words keyparity's adapter recognises (a refused login says "login", a key nobody
can see says "No keys found").
"""
from __future__ import annotations


class TwinError(Exception):
    """A command the (real) CLI would refuse: printed as ``error_code`` 1 with ``data``."""


class UsageError(Exception):
    """A command line the CLI's parser refuses: ``error: ...`` on stderr, exit status 2."""


class LoginRefused(TwinError):
    """The credentials in CLOUDHSM_PIN / CLOUDHSM_ROLE were not accepted."""
