"""keyparity.hsm.login.LoginGate's bookkeeping, with a fake token: one login attempt per cluster
per run, across gate instances and processes, and no PIN anywhere. (The real-token version of
this lives with the suites' tests.)"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pkcs11.exceptions as p11
import pytest

from keyparity.errors import LoginError
from keyparity.hsm.login import LoginGate
from keyparity.secrets import SecretRef

PIN = "pin-5e3c7a91-do-not-leak"
SESSION = object()  # what a successful open() returns


class FakeToken:
    """Counts open() calls; fails them with ``error`` (a python-pkcs11 exception) if given."""

    def __init__(self, error: type[Exception] | None = None, calls_file: Path | None = None,
                 delay: float = 0.0) -> None:
        self.error, self.calls_file, self.delay = error, calls_file, delay
        self.calls: list[dict] = []

    def open(self, *, user_pin: str, rw: bool) -> object:
        self.calls.append({"user_pin": user_pin, "rw": rw})
        if self.calls_file is not None:  # counted across processes
            with open(self.calls_file, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error()
        return SESSION


@pytest.fixture
def pin(tmp_path: Path) -> SecretRef:
    path = tmp_path / "source.pin"
    path.write_text(PIN + "\n")
    return SecretRef("file", str(path), "clusters.source.pin")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "run" / "login.json"


def no_pin_in(*texts: str) -> None:
    for text in texts:
        assert PIN not in text
        assert PIN[:8] not in text


def test_success_returns_the_session_and_records_nothing(pin, state):
    token = FakeToken()
    assert LoginGate(state).open(token, pin, "source (hsm1)") is SESSION
    assert token.calls == [{"user_pin": PIN, "rw": True}]
    assert not state.exists() or json.loads(state.read_text()) == {}


def test_first_failure_is_recorded_and_raised(pin, state):
    token = FakeToken(p11.PinIncorrect)
    with pytest.raises(LoginError) as info:
        LoginGate(state).open(token, pin, "source (hsm1)")
    message = str(info.value)
    assert "login to source (hsm1) failed: CKR_PIN_INCORRECT" in message
    assert "clusters.source.pin" in message and str(pin) in message  # the reference, not the value
    assert "not retried" in message
    assert len(token.calls) == 1
    assert json.loads(state.read_text()) == {"source (hsm1)": "CKR_PIN_INCORRECT"}
    no_pin_in(message, state.read_text(), repr(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("error,ckr", [(p11.PinLocked, "CKR_PIN_LOCKED"),
                                       (p11.PinLenRange, "CKR_PIN_LEN_RANGE"),
                                       (p11.UserPinNotInitialized, "CKR_USER_PIN_NOT_INITIALIZED")])
def test_every_login_error_is_recorded(pin, state, error, ckr):
    with pytest.raises(LoginError, match=ckr):
        LoginGate(state).open(FakeToken(error), pin, "target (hsm2)")
    assert json.loads(state.read_text()) == {"target (hsm2)": ckr}


def test_second_open_does_not_call_the_token(pin, state):
    gate = LoginGate(state)
    token = FakeToken(p11.PinIncorrect)
    with pytest.raises(LoginError):
        gate.open(token, pin, "source (hsm1)")
    for again in (token, FakeToken()):  # even a token that would accept the PIN now
        with pytest.raises(LoginError) as info:
            gate.open(again, pin, "source (hsm1)")
        assert "failed earlier in this run (CKR_PIN_INCORRECT)" in str(info.value)
        assert "not retried" in str(info.value)
        no_pin_in(str(info.value))
    assert len(token.calls) == 1


def test_refusal_does_not_even_read_the_pin(pin, state):
    with pytest.raises(LoginError):
        LoginGate(state).open(FakeToken(p11.PinIncorrect), pin, "source (hsm1)")
    Path(pin.target).unlink()  # resolving the reference now would raise SecretError
    with pytest.raises(LoginError, match="failed earlier"):
        LoginGate(state).open(FakeToken(), pin, "source (hsm1)")


def test_another_gate_on_the_same_state_file_refuses(pin, state):
    with pytest.raises(LoginError):
        LoginGate(state).open(FakeToken(p11.PinIncorrect), pin, "source (hsm1)")
    other = FakeToken()
    with pytest.raises(LoginError, match="failed earlier in this run"):
        LoginGate(Path(str(state))).open(other, pin, "source (hsm1)")  # another process's view
    assert other.calls == []


def test_another_cluster_is_unaffected(pin, state):
    gate = LoginGate(state)
    with pytest.raises(LoginError):
        gate.open(FakeToken(p11.PinIncorrect), pin, "source (hsm1)")
    target = FakeToken()
    assert gate.open(target, pin, "target (hsm2)") is SESSION
    assert len(target.calls) == 1
    assert gate.open(target, pin, "target (hsm2)") is SESSION  # success is not a lock-out
    assert len(target.calls) == 2
    assert json.loads(state.read_text()) == {"source (hsm1)": "CKR_PIN_INCORRECT"}


def test_an_env_pin_never_shows_either(state, monkeypatch):
    monkeypatch.setenv("KP_TEST_PIN", PIN)
    ref = SecretRef("env", "KP_TEST_PIN", "clusters.target.pin")
    messages = []
    for _ in range(2):
        with pytest.raises(LoginError) as info:
            LoginGate(state).open(FakeToken(p11.PinIncorrect), ref, "target (hsm2)")
        messages.append(str(info.value))
    assert "env:KP_TEST_PIN" in messages[0]
    no_pin_in(*messages, state.read_text())
    for leftover in state.parent.iterdir():
        no_pin_in(leftover.read_text())


# --- two real processes ------------------------------------------------------------------

def _contend(state: str, pin_file: str, calls_file: str, start, results) -> None:
    """One process of a run: wait for the other at the start line, then log in to the same
    cluster as it (the token call takes 0.3 s, so the other finds the lock taken)."""
    ref = SecretRef("file", pin_file, "clusters.source.pin")
    token = FakeToken(p11.PinIncorrect, Path(calls_file), delay=0.3)
    start.wait(timeout=60)
    try:
        LoginGate(Path(state)).open(token, ref, "source (hsm1)")
        results.put(("opened", ""))
    except LoginError as exc:
        results.put(("LoginError", str(exc)))


def test_two_processes_make_exactly_one_token_call(pin, state, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    calls_file = tmp_path / "calls"
    procs = [ctx.Process(target=_contend, args=(str(state), pin.target, str(calls_file), start,
                                                results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    assert len(calls_file.read_text().split()) == 1  # exactly one token call in total
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["LoginError", "LoginError"]
    messages = sorted(message for _, message in outcomes)
    assert "failed earlier in this run (CKR_PIN_INCORRECT)" in messages[0]
    assert "failed: CKR_PIN_INCORRECT" in messages[1]
    assert all("not retried" in m for m in messages)
    no_pin_in(*messages, state.read_text())
    assert json.loads(state.read_text()) == {"source (hsm1)": "CKR_PIN_INCORRECT"}
