"""A plugin for a child pytest: the process sends itself a real signal as one test starts.

    KEYPARITY_SIGNAL=NAME:FUNCTION[:KEY]     e.g. SIGTERM:test_target_attributes_match_source:k

``os.kill`` delivers the signal to this process the way an operator's Ctrl-C (SIGINT) or an
orchestrator's stop (SIGTERM) would; nothing of keyparity or pytest is replaced.
"""
from __future__ import annotations

import os
import signal

NAME, FUNCTION, *KEY = os.environ["KEYPARITY_SIGNAL"].split(":", 2)


def pytest_runtest_setup(item):
    key = getattr(item, "callspec", None) and item.callspec.params.get("inventory_key")
    if getattr(item, "originalname", item.name) == FUNCTION and (
            not KEY or getattr(key, "label", None) == KEY[0]):
        os.kill(os.getpid(), getattr(signal, NAME))
