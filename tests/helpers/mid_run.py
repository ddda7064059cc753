"""A plugin for a child pytest: a token changes during the run, after the last test of one key
(its attribute table), through the run's own sessions (no second login; run without -n).

    KEYPARITY_MID_RUN=WHAT:LABEL:VALUE_HEX
      swap-source   the source's secret key LABEL destroyed, and an AES key of VALUE put under
                    the same label (same CKA_ID, size and attributes as far as the census
                    compares them): other key material, the same metadata
      copy-target   a second AES key of VALUE put under LABEL on the target, beside the one the
                    run unwrapped (what a concurrent run with another journal does)
"""
from __future__ import annotations

import os

from pkcs11 import Attribute, KeyType, ObjectClass

from keyparity.hsm.cluster import open_cluster
from keyparity.hsm.login import LoginGate
from keyparity.stash import PROFILE

WHAT, LABEL, VALUE = os.environ["KEYPARITY_MID_RUN"].split(":", 2)
_done: list[str] = []


def _aes(session, label: str, cka_id: bytes) -> None:
    session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY,
                           Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: True,
                           Attribute.LABEL: label, Attribute.ID: cka_id,
                           Attribute.VALUE: bytes.fromhex(VALUE), Attribute.SENSITIVE: True,
                           Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                           Attribute.EXTRACTABLE: True})


def pytest_runtest_logfinish(nodeid, location):
    if _done or not nodeid.endswith(f"test_target_attributes_match_source[{LABEL}]"):
        return
    _done.append(nodeid)
    profile = _config.stash[PROFILE]
    role = profile.source if WHAT == "swap-source" else profile.target
    session = open_cluster(role, profile.module_env, LoginGate(None)).session
    if WHAT == "swap-source":
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=LABEL)
        cka_id = bytes(key[Attribute.ID] or b"")
        key.destroy()
        _aes(session, LABEL, cka_id)
    else:
        _aes(session, LABEL, b"")


def pytest_configure(config):
    global _config
    _config = config


_config = None  # the run's config (its profile), set when the plugin is configured
