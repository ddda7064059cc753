"""keyparity.hsm.wrap and keyparity.hsm.mechanisms: the two-step path makes exactly the bytes of
CKM_RSA_AES_KEY_WRAP (checked against software, both ways), the native path packs
CK_RSA_AES_KEY_WRAP_PARAMS as PKCS #11 lays it out and really hands it to the token (seen
through OpenSC's pkcs11-spy), and a truncated blob is refused.

Everything that touches a token runs in a child process (tests/helpers/wraptool.py): SoftHSM reads
SOFTHSM2_CONF once per process.
"""
from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from pkcs11 import KeyType, Mechanism, ObjectClass

from conftest import HELPERS, REPO
from keyparity.hsm import wrap
from keyparity.hsm.mechanisms import (
    CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CKM_RSA_AES_KEY_WRAP, CKZ_DATA_SPECIFIED,
    RSA_AES_KEY_WRAP, PackedRsaAesParams, WrapParams,
)
from spylog import SPY, blocks, calls, hexdump

WRAPTOOL = HELPERS / "wraptool.py"

# Known AES key values (test vectors only: never do this with a real key).
KNOWN_256 = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
KNOWN_128 = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
SOFTHSM = ("sha1", "mgf1-sha1")      # the only OAEP parameters SoftHSM 2.6 accepts
CLOUDHSM = ("sha256", "mgf1-sha256")  # CloudHSM's RSA-AES wrap

# PKCS #11 constants, spelled out here rather than taken from the code under test.
CKM_SHA_1, CKM_SHA256, CKM_SHA384, CKM_SHA512 = 0x220, 0x250, 0x260, 0x270
CKG_MGF1_SHA1, CKG_MGF1_SHA256, CKG_MGF1_SHA384, CKG_MGF1_SHA512 = 1, 2, 3, 4


def wraptool(lab: Any, token: str, op: str, *, spy_log: Path | None = None,
             params: tuple[str, str, int] = (*SOFTHSM, 256), **args: Any) -> dict[str, Any]:
    """Run one tests/helpers/wraptool.py operation on a lab token in a child process."""
    env = dict(lab.env)
    module = lab.module
    if spy_log is not None:
        module = str(SPY)
        env.update(PKCS11SPY=lab.module, PKCS11SPY_OUTPUT=str(spy_log))
    spec = lab.root / "wrap.json"
    spec.write_text(json.dumps({"module": module, "token": token, "pin": lab.pins[token],
                                "op": op, "params": list(params), **args}))
    out = subprocess.run([sys.executable, str(WRAPTOOL), str(spec)], env=env,
                         capture_output=True, text=True, check=False, cwd=REPO)
    assert out.returncode == 0, f"wraptool failed: {out.stderr}"
    return json.loads(out.stdout)


def software_kcv(value: bytes) -> str:
    """AES-ECB of a 16-byte zero block, first 3 bytes (keyparity.hsm.identity's KCV method)."""
    encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex()


# --- a. byte compatibility of the two-step path with CKM_RSA_AES_KEY_WRAP -----------------

@pytest.mark.parametrize("aes_bits,known", [(256, KNOWN_256), (128, KNOWN_128), (256, KNOWN_128)],
                         ids=["K256-aes256", "K128-aes128", "K256-aes128"])
def test_two_step_wrap_is_rsa_aes_key_wrap_format(lab, aes_bits, known):
    """hsm1 wraps a known key for a software RSA key; software takes the blob apart as
    CKM_RSA_AES_KEY_WRAP defines it: OAEP(K) over the modulus length, then RFC 5649 under K."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    out = wraptool(lab, "hsm1", "wrap-known", params=(*SOFTHSM, aes_bits), native=False,
                   public_n=f"{numbers.n:0512x}", public_e=f"{numbers.e:06x}",
                   value_hex=known.hex())
    assert "error" not in out, out
    assert out["kcv"] == software_kcv(known)  # hsm1 holds the value we think it holds
    blob = bytes.fromhex(out["blob"])
    # RFC 5649: the payload padded to a multiple of 8, plus the 8-byte integrity block
    assert len(blob) == 256 + (len(known) + 7) // 8 * 8 + 8

    head, tail = blob[:256], blob[256:]
    k = private.decrypt(head, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                           algorithm=hashes.SHA1(), label=None))
    assert len(k) == aes_bits // 8
    assert aes_key_unwrap_with_padding(k, tail) == known


def test_two_step_unwrap_takes_rsa_aes_key_wrap_format(lab):
    """The converse: a blob built in software in the CKM_RSA_AES_KEY_WRAP format for the public
    half of a pair generated on hsm2 (its private half cannot leave) unwraps on hsm2 into the
    known key, proven by the KCV hsm2 computes."""
    out = wraptool(lab, "hsm2", "unwrap-known", value_hex=KNOWN_256.hex())
    assert "error" not in out, out
    assert out["private_extractable"] is False
    assert len(bytes.fromhex(out["blob"])) == 256 + 40
    assert out["label"] == "unwrapped"
    assert out["kcv"] == software_kcv(KNOWN_256)
    assert out["kcv_method"].startswith("AES-ECB")


def test_two_step_unwrap_of_another_key_gives_another_kcv(lab):
    """The KCV comparison above can fail: a different known value gives a different KCV."""
    other = bytes(reversed(KNOWN_256))
    out = wraptool(lab, "hsm2", "unwrap-known", value_hex=other.hex())
    assert out["kcv"] == software_kcv(other) != software_kcv(KNOWN_256)


def test_two_step_calls_seen_through_the_spy(lab):
    """The two steps as the token sees them: an ephemeral session AES key, RSA-OAEP with the
    profile's hash and MGF, CKM_AES_KEY_WRAP_PAD (0x210A) under the ephemeral key, which is then
    destroyed at once."""
    log = lab.root / "spy.log"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    out = wraptool(lab, "hsm1", "wrap-known", spy_log=log, native=False,
                   public_n=f"{numbers.n:0512x}", public_e=f"{numbers.e:06x}",
                   value_hex=KNOWN_256.hex())
    assert "error" not in out, out

    (gen,) = [b for b in calls(log, "C_GenerateKey") if "CKM_AES_KEY_GEN" in b]
    assert re.search(r"CKA_TOKEN\s+False", gen)
    ephemeral = re.search(r"\[out\] hKey = (0x[0-9a-f]+)", gen).group(1)

    # python-pkcs11 calls C_WrapKey twice per wrap: for the length, then for the bytes
    wraps = calls(log, "C_WrapKey")
    assert len(wraps) == 4
    for block in wraps[:2]:
        assert "pMechanism->type = CKM_RSA_PKCS_OAEP" in block
        assert re.search(r"hashAlg = CKM_SHA_1\s", block)
        assert re.search(r"mgf = CKG_MGF1_SHA1\s", block)
        assert f"hKey = {ephemeral}\n" in block
    for block in wraps[2:]:
        assert "pMechanism->type = 0x0000210A" in block  # CKM_AES_KEY_WRAP_PAD, unnamed by spy
        assert f"hWrappingKey = {ephemeral}\n" in block
    assert all("Returned:  0 CKR_OK" in b for b in wraps)
    assert bytes.fromhex(out["blob"]) == (hexdump(wraps[1], "pWrappedKey")
                                          + hexdump(wraps[3], "pWrappedKey"))

    # the ephemeral key is destroyed right after the second step, before anything else
    everything = blocks(log)
    after = everything[everything.index(wraps[3]) + 1]
    assert re.match(r"\d+: C_DestroyObject\n", after), after
    assert f"[in] hObject = {ephemeral}\n" in after and "Returned:  0 CKR_OK" in after


# --- b. the native path --------------------------------------------------------------------

def test_rsa_aes_key_wrap_is_a_mechanism_member():
    assert CKM_RSA_AES_KEY_WRAP == 0x1054
    assert RSA_AES_KEY_WRAP == 0x1054
    assert isinstance(RSA_AES_KEY_WRAP, Mechanism)
    assert Mechanism(0x1054) is RSA_AES_KEY_WRAP
    assert RSA_AES_KEY_WRAP.name == "RSA_AES_KEY_WRAP"


@pytest.mark.parametrize("oaep_hash,mgf,bits,hash_alg,mgf_id", [
    ("sha256", "mgf1-sha256", 256, CKM_SHA256, CKG_MGF1_SHA256),  # the profile's defaults
    ("sha1", "mgf1-sha1", 128, CKM_SHA_1, CKG_MGF1_SHA1),
    ("sha384", "mgf1-sha384", 192, CKM_SHA384, CKG_MGF1_SHA384),
    ("sha512", "mgf1-sha256", 256, CKM_SHA512, CKG_MGF1_SHA256),
])
def test_packed_params_layout(oaep_hash, mgf, bits, hash_alg, mgf_id):
    packed = PackedRsaAesParams(WrapParams(oaep_hash, mgf, bits))
    assert isinstance(packed.raw, bytes)
    assert len(packed.raw) == ctypes.sizeof(CK_RSA_AES_KEY_WRAP_PARAMS) == 16  # x86_64 LP64
    assert packed.raw[:8] == bits.to_bytes(8, "little")  # CK_ULONG ulAESKeyBits

    outer = CK_RSA_AES_KEY_WRAP_PARAMS.from_buffer_copy(packed.raw)
    assert outer.ulAESKeyBits == bits
    address = ctypes.cast(outer.pOAEPParams, ctypes.c_void_p).value
    assert address == ctypes.addressof(packed.oaep)  # points into the object kept alive
    assert packed.raw[8:] == address.to_bytes(8, "little")
    oaep = outer.pOAEPParams.contents
    assert (oaep.hashAlg, oaep.mgf, oaep.source) == (hash_alg, mgf_id, CKZ_DATA_SPECIFIED)
    assert CKZ_DATA_SPECIFIED == 1
    assert oaep.pSourceData is None and oaep.ulSourceDataLen == 0
    assert ctypes.sizeof(CK_RSA_PKCS_OAEP_PARAMS) == 40


def _check_native_call(block: str, bits: int) -> None:
    assert re.search(r"pMechanism->type = (0x00001054|CKM_RSA_AES_KEY_WRAP)\s", block), block
    assert re.search(r"pMechanism->pParameter\[ulParameterLen\] [0-9a-f]+ / 16\n", block), block
    param = hexdump(block, "pMechanism->pParameter")
    assert len(param) == 16
    assert param[:8] == bits.to_bytes(8, "little")  # ulAESKeyBits
    assert int.from_bytes(param[8:], "little") != 0  # pOAEPParams is set
    assert "Returned:  112 CKR_MECHANISM_INVALID" in block


def test_native_wrap_reaches_the_token(lab):
    """SoftHSM has no CKM_RSA_AES_KEY_WRAP: the call gets to C_WrapKey with 0x1054 and the
    16-byte CK_RSA_AES_KEY_WRAP_PARAMS, and the token's refusal is MechanismUnsupported."""
    log = lab.root / "spy.log"
    out = wraptool(lab, "hsm1", "wrap-known", spy_log=log, params=(*CLOUDHSM, 256), native=True,
                   public_n="c1" * 256, public_e="010001", value_hex=KNOWN_256.hex())
    assert out["error"] == "MechanismUnsupported"
    assert "CKR_MECHANISM_INVALID" in out["message"]
    assert "CKM_RSA_AES_KEY_WRAP" in out["message"] and "hsm1" in out["message"]

    (block,) = calls(log, "C_WrapKey")  # refused at the length query; no second call
    _check_native_call(block, 256)


def test_native_unwrap_reaches_the_token(lab):
    log = lab.root / "spy.log"
    out = wraptool(lab, "hsm2", "unwrap-native", spy_log=log, params=(*CLOUDHSM, 128),
                   value_hex=KNOWN_256.hex())
    assert out["error"] == "MechanismUnsupported"
    assert "CKR_MECHANISM_INVALID" in out["message"] and "unwrap" in out["message"]

    (block,) = calls(log, "C_UnwrapKey")
    _check_native_call(block, 128)
    assert re.search(r"pWrappedKey\[ulWrappedKeyLen\] [0-9a-f]+ / 296\n", block)
    assert hexdump(block, "pWrappedKey") == bytes.fromhex(out["blob"])


# --- c. truncated blobs --------------------------------------------------------------------

class _Untouchable:
    """A 2048-bit RSA private key stand-in that fails the test if it is used for anything."""

    key_length = 2048

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the token was asked for {name}")


@pytest.mark.parametrize("length", [0, 1, 255, 256])
def test_blob_not_longer_than_the_rsa_part_is_refused(length):
    with pytest.raises(ValueError, match=f"{length} bytes is shorter than the RSA part"):
        wrap.unwrap(_Untouchable(), _Untouchable(), bytes(length), ObjectClass.SECRET_KEY,
                    KeyType.AES, {}, WrapParams(*SOFTHSM, 256), native=False, where="hsm2")


def test_truncated_blob_is_refused_on_a_real_key(lab):
    """The split point comes from the real private key: 256 bytes for RSA-2048."""
    out = wraptool(lab, "hsm2", "unwrap-known", value_hex=KNOWN_256.hex(), truncate=200)
    assert out["error"] == "ValueError"
    assert "200 bytes is shorter than the RSA part" in out["message"]

