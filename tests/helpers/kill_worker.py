"""A plugin for a child pytest run with ``-n``: a worker is killed with SIGKILL in the middle
of a chunk, holding its keys' locks, as the OOM killer or an operator would kill it.

    KEYPARITY_KILL=LABEL:MARKER

The first process about to call C_UnwrapKey for the target key labelled LABEL (python-pkcs11's
own ``unwrap_key``) creates the file MARKER and kills itself, so that the worker xdist starts
in its place does not. Nothing of keyparity is replaced.
"""
from __future__ import annotations

import os
import signal

import pkcs11._pkcs11 as p11lib

LABEL, MARKER = os.environ["KEYPARITY_KILL"].split(":", 1)
_real_unwrap = p11lib.UnwrapMixin.unwrap_key


def unwrap_key(self, object_class, key_type, key_data, *args, **kwargs):
    if kwargs.get("label") == LABEL:
        try:
            os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return _real_unwrap(self, object_class, key_type, key_data, *args, **kwargs)


p11lib.UnwrapMixin.unwrap_key = unwrap_key
