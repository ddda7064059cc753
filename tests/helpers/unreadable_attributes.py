"""A plugin for a child pytest: every attribute read of the objects labelled LABEL fails, on
both tokens, while the attribute-parity test runs (``KEYPARITY_UNREADABLE=LABEL``).

python-pkcs11's own ``Object.get_attributes`` and ``Object.__getitem__`` are wrapped and raise
``GeneralError`` (CKR_GENERAL_ERROR), as a token does when a read fails for another reason
than "no such attribute" or "sensitive"; keyparity's one-call read
(keyparity.hsm.direct.attributes) is not taken for those objects: they are read through
python-pkcs11, as an object is when that read fails. Before keyparity told the two apart,
both sides read as ``<absent>`` and the parity test passed on two objects it had not read at
all.
"""
from __future__ import annotations

import os

import pkcs11._pkcs11 as p11lib
import pkcs11.exceptions as p11
import pytest
from pkcs11 import Attribute

from keyparity.hsm import direct

LABEL = os.environ["KEYPARITY_UNREADABLE"]
_state = {"active": False}
_real_get = p11lib.Object.get_attributes
_real_item = p11lib.Object.__getitem__


def _refused(obj) -> bool:
    return _state["active"] and _real_item(obj, Attribute.LABEL) == LABEL


def get_attributes(self, keys):
    if _refused(self):
        raise p11.GeneralError()
    return _real_get(self, keys)


def getitem(self, key):
    if _refused(self):
        raise p11.GeneralError()
    return _real_item(self, key)


def _direct_attributes(obj, types):
    return None if _refused(obj) else _real_direct(obj, types)


_real_direct = direct.attributes
direct.attributes = _direct_attributes
p11lib.Object.get_attributes = get_attributes
p11lib.Object.__getitem__ = getitem


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _state["active"] = item.originalname == "test_target_attributes_match_source"
    try:
        return (yield)
    finally:
        _state["active"] = False
