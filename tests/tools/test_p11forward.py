"""The forwarding PKCS #11 module (native/p11forward) over the lab's SoftHSM:

a. CKM_RSA_AES_KEY_WRAP moves every key type of the demo from hsm1 to hsm2 through keyparity's
   own native path (keyparity.hsm.wrap with the ctypes-packed parameters), proven by using the
   key on both sides;
b. its blob is OAEP(K) || KWP_K(key), byte for byte what the two steps make;
c. a malformed CK_RSA_AES_KEY_WRAP_PARAMS is refused with CKR_MECHANISM_PARAM_INVALID and
   nothing is created;
d. no temporary AES key outlives a wrap or an unwrap, failed ones included;
e. each call waits the configured latency (a lower bound: no timed assertion) and is counted,
   exactly as pkcs11-spy counts it.

SoftHSM's RSA-OAEP takes only SHA-1, so the tests wrap with SHA-1 and MGF1-SHA-1; one test shows
SHA-256 reaching SoftHSM unchanged and refused there. Every token access is in a child process
(tests/helpers/forwardtool.py, tests/helpers/wraptool.py): python-pkcs11 loads a module once per process.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from conftest import REPO, fresh_lab
from forwarding import environment, forwardtool, module, wrap_known, wraptool
from spylog import blocks, calls, hexdump

# the keys the demo migrates (its rotate key stays behind), under labels of this test
DEMO_KEYS = [{**k, "label": f"fw-{k['label']}"} for k in yaml.safe_load(
    (REPO / "hsm_profiles" / "softhsm.yaml").read_text())["keys"]
    if k.get("disposition", "migrate") == "migrate"]
SECRET_BYTES = {"des2": 16, "des3": 24}
KNOWN_256 = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
CKF_WRAP, CKF_UNWRAP = 0x20000, 0x40000


def software_kcv(value: bytes) -> str:
    encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex()


# --- a. every demo key type, natively, token to token ------------------------------------

@pytest.fixture(scope="module")
def moved() -> Any:
    """One child: the mechanism as hsm1 lists it, then every demo key moved hsm1 -> hsm2."""
    with fresh_lab() as lab:
        out = forwardtool(lab, {"op": "mechanism"}, {"op": "move", "keys": DEMO_KEYS},
                          calls=lab.root / "calls.json")
        yield out["results"], json.loads((lab.root / "calls.json").read_text())["calls"]


def test_demo_keys_cover_every_type():
    assert {k["type"] for k in DEMO_KEYS} == {"des2", "des3", "aes", "generic-secret", "rsa",
                                              "ec"}
    assert {k.get("size") for k in DEMO_KEYS if k["type"] == "aes"} == {128, 256}
    assert {k.get("curve") for k in DEMO_KEYS if k["type"] == "ec"} == {"P-384"}


def test_mechanism_is_listed_for_wrap_and_unwrap_with_rsa_sizes(moved):
    mechanism = moved[0][0]
    assert mechanism["listed"] is True
    assert mechanism["flags"] == CKF_WRAP | CKF_UNWRAP
    assert mechanism["sizes"] == mechanism["oaep_sizes"]


@pytest.mark.parametrize("key", DEMO_KEYS, ids=[k["label"] for k in DEMO_KEYS])
def test_key_moved_natively_is_the_same_key(moved, key):
    """hsm1's key and hsm2's unwrapped key undo each other's work; a control key of the same
    type on hsm2 does not (so the proof can fail)."""
    result = moved[0][1][key["label"]]
    assert result["proved"] is True
    assert result["control"] is False
    if key["type"] in ("rsa", "ec"):
        assert result["blob"] > 256
    else:  # OAEP part of an RSA-2048 key, then RFC 5649: padded to 8 bytes, plus 8
        size = SECRET_BYTES.get(key["type"]) or key["size"] // 8
        assert result["blob"] == 256 + (size + 7) // 8 * 8 + 8


def test_native_mechanism_is_one_call_per_wrap_and_unwrap(moved):
    """The temporary key's calls happen inside the module: the caller sees one C_UnwrapKey per
    key and two C_WrapKey (python-pkcs11 asks the length first); its C_GenerateKey are the
    secret keys the test made (source and control), none for temporary keys."""
    counts = moved[1]
    secret = sum(1 for k in DEMO_KEYS if k["type"] not in ("rsa", "ec"))
    assert counts["C_UnwrapKey"] == len(DEMO_KEYS)
    assert counts["C_WrapKey"] == 2 * len(DEMO_KEYS)
    assert counts["C_GenerateKey"] == 2 * secret
    assert "C_DestroyObject" not in counts


# --- b. the blob is the two steps' blob ---------------------------------------------------

def test_module_blob_comes_apart_in_software(lab):
    """Software takes the module's blob apart as v2.40 2.1.21 defines it: RSA-OAEP over the
    modulus length, then RFC 5649 under the key it gave."""
    private, out = wrap_known(lab, KNOWN_256)
    blob = bytes.fromhex(out["blob"])
    k = private.decrypt(blob[:256], padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                                 algorithm=hashes.SHA1(), label=None))
    assert len(k) == 32
    assert aes_key_unwrap_with_padding(k, blob[256:]) == KNOWN_256


def test_software_blob_unwraps_natively(lab):
    out = wraptool(lab, "hsm2", "unwrap-native", value_hex=KNOWN_256.hex())
    assert "error" not in out, out
    assert out["kcv"] == software_kcv(KNOWN_256)


def test_module_blob_is_softhsms_two_outputs(lab):
    """pkcs11-spy between the module and SoftHSM: the blob is SoftHSM's OAEP output then its
    AES-KWP output, under a temporary session key that is destroyed after each wrap (python-
    pkcs11's length query included)."""
    log = lab.root / "behind.log"
    _, out = wrap_known(lab, KNOWN_256, spy_behind=log)
    wraps = calls(log, "C_WrapKey")
    kinds = [re.search(r"pMechanism->type = (\S+)", b).group(1) for b in wraps]
    assert kinds == ["CKM_RSA_PKCS_OAEP", "0x0000210A"] * 3  # length, length, then the bytes
    assert bytes.fromhex(out["blob"]) == hexdump(wraps[4], "pWrappedKey") + hexdump(
        wraps[5], "pWrappedKey")
    generated = [re.search(r"\[out\] hKey = (0x[0-9a-f]+)", b).group(1)
                 for b in calls(log, "C_GenerateKey") if "CKM_AES_KEY_GEN" in b]
    destroyed = [re.search(r"\[in\] hObject = (0x[0-9a-f]+)", b).group(1)
                 for b in calls(log, "C_DestroyObject") if "CKR_OK" in b]
    assert len(generated) == 2 and generated == destroyed


@pytest.mark.parametrize("wrap_path,unwrap_path", [("native", "two-step"),
                                                   ("two-step", "native")])
def test_native_and_two_step_take_each_others_blobs(lab, wrap_path, unwrap_path):
    keys = [k for k in DEMO_KEYS if k["type"] in ("aes", "rsa")]
    out = forwardtool(lab, {"op": "move", "keys": keys, "wrap": wrap_path,
                            "unwrap": unwrap_path})
    assert {label: r["proved"] for label, r in out["results"][0].items()} == {
        k["label"]: True for k in keys}


# --- c. malformed parameters -------------------------------------------------------------

MALFORMED = ["no-parameter", "short", "long", "aes-bits-100", "aes-bits-512", "null-oaep",
             "unknown-hash", "unknown-mgf", "source-0", "source-2",
             "source-data-without-pointer"]


@pytest.fixture(scope="module")
def refused() -> Any:
    with fresh_lab() as lab:
        yield forwardtool(lab, {"op": "refuse", "cases": ["valid", *MALFORMED]})["results"][0]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_parameters_are_refused_and_create_nothing(refused, case):
    result = refused[case]
    assert result["wrap"].startswith("MechanismParamInvalid"), result
    assert result["unwrap"].startswith("MechanismParamInvalid"), result
    before, after = result["objects"]
    assert after == before


def test_the_same_call_with_valid_parameters_works(refused):
    """The control: the refusals above come from the parameters, not from the calls."""
    assert refused["valid"]["wrap"] == "ok" and refused["valid"]["unwrap"] == "ok"
    before, after = refused["valid"]["objects"]
    assert after == before + 1  # the unwrapped key


# --- d. no temporary key left --------------------------------------------------------------

LEFTOVERS = {
    "wrap": "ok",
    "unwrap": "ok",
    "wrap-unextractable": "CKR_KEY_UNEXTRACTABLE",  # the KWP step, after OAEP
    "wrap-sha256": "CKR_ARGUMENTS_BAD",             # SoftHSM's OAEP refuses SHA-256
    "unwrap-sha256": "CKR_ARGUMENTS_BAD",
    "unwrap-bad-head": "CKR_GENERAL_ERROR",         # OAEP fails: no temporary key yet
    "unwrap-bad-tail": "CKR_GENERAL_ERROR",         # KWP integrity fails, after OAEP
}


@pytest.fixture(scope="module")
def leftovers() -> Any:
    with fresh_lab() as lab:
        yield forwardtool(lab, {"op": "leftovers", "cases": list(LEFTOVERS)})["results"][0]


@pytest.mark.parametrize("case", LEFTOVERS)
def test_no_temporary_key_outlives_the_call(leftovers, case):
    result = leftovers[case]
    assert result["temporary"] == 0, result
    if LEFTOVERS[case] == "ok":
        assert result["outcome"] == "ok"
    else:
        assert LEFTOVERS[case] in result["outcome"], result


def test_sha256_reaches_softhsm_unchanged_and_is_refused_there(lab):
    """The caller's OAEP parameters go to SoftHSM as given: SHA-256 is not swapped for the
    SHA-1 SoftHSM takes; SoftHSM's refusal comes back and the temporary key is destroyed."""
    log = lab.root / "behind.log"
    out = forwardtool(lab, {"op": "leftovers", "cases": ["wrap-sha256"]}, spy_behind=log)
    assert "CKR_ARGUMENTS_BAD" in out["results"][0]["wrap-sha256"]["outcome"]
    everything = blocks(log)
    (oaep,) = [b for b in calls(log, "C_WrapKey") if "CKM_SHA256" in b]
    assert "pMechanism->type = CKM_RSA_PKCS_OAEP" in oaep
    assert re.search(r"hashAlg = CKM_SHA256\s", oaep) and re.search(r"mgf = CKG_MGF1_SHA256\s",
                                                                    oaep)
    assert "Returned:  7 CKR_ARGUMENTS_BAD" in oaep
    temporary = re.search(r"\[in\] hKey = (0x[0-9a-f]+)", oaep).group(1)
    after = everything[everything.index(oaep) + 1]
    assert re.match(r"\d+: C_DestroyObject\n", after) and f"hObject = {temporary}\n" in after


# --- e. latency and counts ------------------------------------------------------------------

LATENCY_US = 10_000
RANDOM_CALLS = 20


def test_each_call_waits_the_latency_asleep_and_is_counted(lab):
    """A lower bound only: N calls of latency L take at least N x L, whatever the machine's
    load; and the waiting thread sleeps (its CPU time is a small part of the wait)."""
    out = forwardtool(lab, {"op": "random", "calls": RANDOM_CALLS}, latency_us=LATENCY_US,
                      calls=lab.root / "calls.%p.json")
    (path,) = lab.root.glob("calls.*.json")
    counts = json.loads(path.read_text())
    assert path.name == f"calls.{counts['pid']}.json"
    assert counts["latency_us"] == LATENCY_US
    assert counts["calls"]["C_GenerateRandom"] == RANDOM_CALLS
    random = out["results"][0]
    assert random["seconds"] >= RANDOM_CALLS * LATENCY_US / 1e6
    assert out["seconds"] >= sum(counts["calls"].values()) * LATENCY_US / 1e6
    assert random["cpu_seconds"] < RANDOM_CALLS * LATENCY_US / 1e6 / 2


def test_counts_are_what_pkcs11_spy_sees(lab):
    """pkcs11-spy in front of the module logs every call the caller makes: the module's counts
    are the same, function by function."""
    log = lab.root / "front.log"
    keys = [k for k in DEMO_KEYS if k["type"] in ("aes", "ec")]
    forwardtool(lab, {"op": "mechanism"}, {"op": "move", "keys": keys},
                {"op": "random", "calls": 3}, calls=lab.root / "calls.json", spy_front=log)
    counts = json.loads((lab.root / "calls.json").read_text())["calls"]
    seen = Counter(m.group(1) for b in blocks(log) if (m := re.match(r"\d+: (C_\w+)\n", b)))
    # answered without the module's counted table: C_GetFunctionList (the module's own entry
    # point) and v3.0's C_GetInterface, which pkcs11-spy offers python-pkcs11 itself
    assert seen.pop("C_GetFunctionList", 0) <= 1 and seen.pop("C_GetInterface", 0) <= 2
    assert counts == dict(seen)
    assert counts["C_GenerateRandom"] == 3 and counts["C_UnwrapKey"] == len(keys)


@pytest.mark.parametrize("setting,message", [
    ({"KEYPARITY_P11_LATENCY_US": "1ms"},
     "KEYPARITY_P11_LATENCY_US=1ms is not a number of microseconds"),
    ({"KEYPARITY_P11_LATENCY_US": "-5"},
     "KEYPARITY_P11_LATENCY_US=-5 is not a number of microseconds"),
    ({"KEYPARITY_P11_TARGET": ""}, "set KEYPARITY_P11_TARGET to the PKCS #11 module"),
    ({"KEYPARITY_P11_TARGET": "/nonexistent/libp11.so"},
     "cannot load KEYPARITY_P11_TARGET=/nonexistent/libp11.so"),
    ({"KEYPARITY_P11_TARGET": "<self>"}, "KEYPARITY_P11_TARGET=<self> is this module"),
], ids=["latency-unit", "latency-negative", "no-target", "missing-target", "self-target"])
def test_bad_configuration_fails_the_load_with_its_reason(lab, setting, message):
    so, env = environment(lab)
    env.update({k: so if v == "<self>" else v for k, v in setting.items()})
    out = subprocess.run([sys.executable, "-c", "import sys, pkcs11; pkcs11.lib(sys.argv[1])",
                          so], env=env, capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert f"p11forward: {message.replace('<self>', so)}" in out.stderr


def test_module_is_built_outside_the_tree():
    path = Path(module())
    assert path.is_file() and path.parent == REPO / ".keyparity" / "native"
    tracked = subprocess.run(["git", "ls-files", "native"], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.split()
    assert "native/p11forward/p11forward.c" in tracked
    assert not [p for p in tracked if (REPO / p).read_bytes()[:4] == b"\x7fELF"]
