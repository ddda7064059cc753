"""RFC 3161 time-stamps of the signatures (keyparity.attest.timestamp) against a local TSA in its
own process (tests/helpers/local_tsa.py: ``keyparity demo tsa``): a token is checked against
the signature it stamps and the configured root; a token over other bytes, from a TSA that does
not chain to the root, or removed, never passes for a stamped time; a TSA that is down gives no
signed bundle."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from local_tsa import closed_port_url, local_tsa
from securesystemslib.signer import CryptoSigner

from keyparity.attest.custodians import file_custodian
from keyparity.attest.statement import ENVELOPE, STATEMENT, TOKENS, sign_run
from keyparity.attest.timestamp import TimestampError, time_source
from keyparity.attest.verify import verify_run
from keyparity.profile import TimestampSpec

RUN_ID = "20261207T200000Z-7e57a1"
HOSTS_OWN = "time: not time-stamped: every time in it is the signing host's own clock"


@pytest.fixture(scope="module")
def custodians() -> list[CryptoSigner]:
    out = []
    for i in (1, 2):
        signer = CryptoSigner.generate_ecdsa()
        signer.name = f"custodian-{i}"
        out.append(signer)
    return out


@pytest.fixture(scope="module")
def tsa(tmp_path_factory):
    with local_tsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    """Another TSA, with a root of its own: it does not chain to ``tsa``'s root."""
    with local_tsa(tmp_path_factory.mktemp("rogue")) as running:
        yield running


def bundle(root: Path, signers: list[CryptoSigner], spec: TimestampSpec | None) -> Path:
    run = root / RUN_ID
    run.mkdir(parents=True)
    (run / "evidence.json").write_text('{"verdict": "PASS"}\n')
    sign_run(run, signers, {"run_id": RUN_ID, "verdict": "PASS", "threshold": len(signers),
                            "time_source": time_source(spec),  # self-contained as a run's:
                            "contents": {"profile": {"file": "evidence.json"}}},
             timestamp=spec)
    return run


def tokens(run: Path) -> list[dict]:
    return json.loads((run / TOKENS).read_text())["tokens"]


def check(run: Path, signers: list[CryptoSigner], roots: list[Path]):
    return verify_run(run, [s.public_key for s in signers], tsa_roots=roots,
                      key_names={s.public_key.keyid: s.name for s in signers})


def test_each_signature_is_time_stamped_and_verify_names_the_tsa_and_its_time(
        tmp_path, custodians, tsa):
    run = bundle(tmp_path, custodians, tsa.spec())

    stored = tokens(run)
    assert [t["keyid"] for t in stored] == [s.public_key.keyid for s in custodians]
    assert all(t["tsa"] == tsa.url and t["hash"] == "sha256" for t in stored)
    signed = json.loads((run / STATEMENT).read_text())["predicate"]
    assert signed["time_source"] == {"clock": "host clock", "tsa": tsa.url, "hash": "sha256"}
    result = check(run, custodians, [tsa.root])
    assert result.ok, result.problems
    assert [t["signer"] for t in result.time_stamps] == ["custodian-1", "custodian-2"]
    lines = [c for c in result.checked if c.startswith("time:")]
    assert len(lines) == 2 and all(
        "time-stamped by keyparity test TSA at 20" in line for line in lines), lines
    assert TOKENS not in [*result.extra, *result.changed]  # beside the envelope, not a subject


def test_a_token_over_other_bytes_is_refused(tmp_path, custodians, tsa):
    run = bundle(tmp_path, custodians, tsa.spec())
    first, second = tokens(run)
    assert first["keyid"] != second["keyid"]  # each keyid keeps its place: the tokens move
    first["token"], second["token"] = second["token"], first["token"]  # each over the other's
    (run / TOKENS).write_text(json.dumps({"tokens": [first, second]}))

    result = check(run, custodians, [tsa.root])

    assert not result.ok and result.time_stamps == []
    assert result.problems == [f"the time-stamp of the signature by custodian-{i} does NOT "
                               "verify: Mismatch between messages" for i in (1, 2)]


def test_a_token_of_a_tsa_not_chaining_to_the_configured_root_is_refused(
        tmp_path, custodians, tsa, rogue):
    run = bundle(tmp_path, custodians, rogue.spec())  # a TSA the auditor does not trust

    result = check(run, custodians, [tsa.root])

    assert not result.ok and result.time_stamps == []
    assert len(result.problems) == 2 and all(
        "does NOT verify" in p and "unable to get local issuer certificate" in p
        for p in result.problems), result.problems
    assert check(run, custodians, [rogue.root]).ok  # the same tokens under their own root


def test_a_bundle_whose_tokens_were_removed_is_never_time_stamped(tmp_path, custodians, tsa):
    run = bundle(tmp_path, custodians, tsa.spec())
    (run / TOKENS).unlink()

    result = check(run, custodians, [tsa.root])

    assert HOSTS_OWN in result.checked and result.time_stamps == []
    assert not any("time-stamped by" in line for line in result.checked + result.notes)
    assert result.problems == [
        f"the signed statement names the time-stamping authority {tsa.url}, but {TOKENS} holds "
        "no token: the time-stamps were removed"]


def test_without_a_tsa_the_bundle_says_its_times_are_the_hosts_own(tmp_path, custodians):
    run = bundle(tmp_path, custodians, None)

    result = check(run, custodians, [])

    assert result.ok and not (run / TOKENS).exists()
    assert HOSTS_OWN in result.checked
    signed = json.loads((run / STATEMENT).read_text())["predicate"]
    assert signed["time_source"] == {"clock": "host clock", "tsa": None}


def test_tokens_not_checked_without_a_root_leave_the_times_the_hosts_own(
        tmp_path, custodians, tsa):
    run = bundle(tmp_path, custodians, tsa.spec())

    result = check(run, custodians, [])

    assert result.ok and result.time_stamps == []
    assert result.notes == ["2 time-stamp token(s) not checked (no --tsa-root): the times are "
                            "the host's own"]


def test_a_tsa_that_is_down_gives_no_signed_bundle(tmp_path, custodians, tsa):
    down = TimestampSpec(url=closed_port_url(), ca=tsa.root, timeout_s=5)
    run = tmp_path / RUN_ID
    run.mkdir()
    (run / "evidence.json").write_text("{}\n")

    with pytest.raises(TimestampError, match=r"TSA http://127\.0\.0\.1:\d+/ cannot be "
                                             r"reached: .*Connection refused"):
        sign_run(run, custodians, {"run_id": RUN_ID, "time_source": time_source(down)},
                 timestamp=down)

    assert sorted(p.name for p in run.iterdir()) == ["evidence.json"]  # nothing signed


def test_a_tsa_answering_under_another_root_than_the_profiles_fails_the_signing(
        tmp_path, custodians, tsa, rogue):
    wrong = TimestampSpec(url=rogue.url, ca=tsa.root)  # the profile trusts tsa's root only
    run = tmp_path / RUN_ID
    run.mkdir()

    with pytest.raises(TimestampError, match="answered a token that does not verify"):
        sign_run(run, custodians, {"run_id": RUN_ID}, timestamp=wrong)
    assert list(run.iterdir()) == []


def test_keyparity_verify_prints_the_tsa_time_and_refuses_a_foreign_root(
        tmp_path, tsa, rogue):
    signers = []
    for name in ("custodian-1", "custodian-2"):
        file_custodian(tmp_path / "keys", name)
        signers.append(tmp_path / "keys" / f"{name}.pub.pem")
    from keyparity.attest.signing import load_signers
    from keyparity.profile import EvidenceSpec, SignerSpec
    loaded = load_signers(EvidenceSpec(signers=tuple(
        SignerSpec(name=p.name.removesuffix(".pub.pem"), type="file",
                   path=p.with_name(p.name.replace(".pub.pem", ".key.pem"))) for p in signers),
        threshold=2), {}, None)
    run = bundle(tmp_path / "reports", loaded, tsa.spec())
    keys = [a for p in signers for a in ("--key", str(p))]

    def verify(root: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(run), *keys,
                               "--tsa-root", str(root)], capture_output=True, text=True,
                              timeout=120, check=False)

    good = verify(tsa.root)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("time-stamped by keyparity test TSA at ") == 2
    foreign = verify(rogue.root)
    assert foreign.returncode == 1 and "time-stamped by" not in foreign.stdout
    assert "token REFUSED" in foreign.stdout


def test_openssl_ts_verifies_a_token_without_keyparity(tmp_path, custodians, tsa):
    """docs/auditors.md ("Without keyparity"): the token is a standard TimeStampResp."""
    run = bundle(tmp_path, custodians, tsa.spec())
    signature = json.loads((run / ENVELOPE).read_text())["signatures"][0]
    (token,) = [t for t in tokens(run) if t["keyid"] == signature["keyid"]]
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(signature["sig"]))
    (tmp_path / "token.tsr").write_bytes(base64.b64decode(token["token"]))

    def openssl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["openssl", "ts", *args], capture_output=True, text=True,
                              timeout=60, check=False, cwd=tmp_path)

    ok = openssl("-verify", "-data", "sig.bin", "-in", "token.tsr", "-CAfile", str(tsa.root))
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "sig.bin").write_bytes(b"other bytes")
    other = openssl("-verify", "-data", "sig.bin", "-in", "token.tsr", "-CAfile", str(tsa.root))
    assert other.returncode != 0 and "message imprint mismatch" in other.stderr
    shown = openssl("-reply", "-in", "token.tsr", "-text")
    assert "Status: Granted." in shown.stdout and "Time stamp: " in shown.stdout


def test_the_tokens_are_not_a_subject_of_the_statement(tmp_path, custodians, tsa):
    """The tokens file sits beside the envelope: it is not in the statement's subjects."""
    run = bundle(tmp_path, custodians, tsa.spec())
    names = [s["name"] for s in json.loads((run / STATEMENT).read_text())["subject"]]
    assert names == ["evidence.json"] and (run / ENVELOPE).is_file()
