"""A plugin for a child pytest: the source changes after the run checked it against its signed
plan and before the migration writes. After collection (the plan was checked when the run
was configured), the controller sets CKA_ENCRYPT to false on the source secret key labelled
``$KEYPARITY_FLIP`` (its unwrap template changes; its material, proven by decryption, does
not), through the run's own session to the source (no second login)."""
from __future__ import annotations

import os

from pkcs11 import Attribute, ObjectClass

from keyparity.hsm.cluster import open_cluster
from keyparity.hsm.login import LoginGate
from keyparity.stash import PROFILE


def pytest_collection_finish(session):
    profile = session.config.stash[PROFILE]
    source = open_cluster(profile.source, profile.module_env, LoginGate(None)).session
    key = source.get_key(object_class=ObjectClass.SECRET_KEY, label=os.environ["KEYPARITY_FLIP"])
    key[Attribute.ENCRYPT] = False
