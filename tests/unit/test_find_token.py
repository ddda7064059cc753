"""Finding a token: CKR_GENERAL_ERROR from SoftHSM's file store (another process rewriting a
token file at that moment) is asked again a few times; nothing else is, and a login never."""
from __future__ import annotations

from types import SimpleNamespace

import pkcs11.exceptions as p11
import pytest

from keyparity.hsm import cluster
from keyparity.errors import TokenError


class Lib:
    """python-pkcs11's ``lib.get_tokens`` answering a scripted sequence of errors first."""

    def __init__(self, *errors: type[Exception]) -> None:
        self.errors, self.calls = list(errors), 0

    def get_tokens(self, token_label: str):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)()
        return iter([f"token {token_label}"])


# the fields of keyparity.profile.Cluster that finding a token reads
SPEC = SimpleNamespace(name="hsm2", slot=None, token_label="hsm2",
                       module="/usr/lib/softhsm/libsofthsm2.so")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)


def test_a_general_error_while_finding_the_token_is_asked_again():
    lib = Lib(p11.GeneralError, p11.GeneralError)
    assert cluster.find_token(lib, SPEC) == "token hsm2"
    assert lib.calls == 3


def test_it_gives_up_after_the_last_attempt_with_the_step_named():
    lib = Lib(*[p11.GeneralError] * cluster.FIND_ATTEMPTS)
    with pytest.raises(TokenError, match="find token on hsm2 failed"):
        cluster.find_token(lib, SPEC)
    assert lib.calls == cluster.FIND_ATTEMPTS


def test_any_other_error_is_not_asked_again():
    lib = Lib(p11.DeviceError)
    with pytest.raises(TokenError, match="find token on hsm2 failed: CKR_DEVICE_ERROR"):
        cluster.find_token(lib, SPEC)
    assert lib.calls == 1
