"""Test-only driver of the forwarding PKCS #11 module (native/p11forward), run as a child process:
python-pkcs11 loads one module once per process and SoftHSM reads its configuration once.

    python forwardtool.py SPEC.json     with SOFTHSM2_CONF and KEYPARITY_P11_* set

SPEC.json: {"module": path, "pins": {"hsm1": pin, "hsm2": pin}, "params": [hash, mgf, bits],
            "ops": [{"op": ..., ...}, ...]}
Both tokens are open for the whole run; an RSA-2048 wrapping pair is made on hsm2 as the
migration's channel makes it (session objects) and its public half imported on hsm1.
  move       keys: [KeySpec-like dicts], wrap: native|two-step, unwrap: native|two-step
             each key is made on hsm1, wrapped there (keyparity.hsm.wrap) and unwrapped on hsm2
             with the migration's template; a control key of the same type is made on hsm2.
             -> {label: {"blob": bytes, "proved": same material?, "control": control proven?}}
  refuse     cases: [names of malformed CK_RSA_AES_KEY_WRAP_PARAMS, see PARAMS]
             -> {case: {"wrap": error or "ok", "unwrap": error or "ok", "objects": [before,
             after] on both tokens}}
  leftovers  cases: [names, see scenarios()] -> {case: {"outcome": error or "ok",
             "temporary": AES session keys it added on either token}}
  random     calls: N   N x C_GenerateRandom -> {"seconds", "cpu_seconds"}
  mechanism  -> {"listed": CKM_RSA_AES_KEY_WRAP in hsm1's list, its "flags" and "sizes",
             and "oaep_sizes" (CKM_RSA_PKCS_OAEP's)}
Prints a JSON list of per-op results.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import time
from typing import Any, Callable

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from keyparity.errors import KeyparityError
from keyparity.hsm import wrap
from keyparity.hsm.attributes import read_standard, unwrap_template
from keyparity.keytypes import KEY_TYPES, key_class
from keyparity.hsm.mechanisms import (
    CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, RSA_AES_KEY_WRAP, PackedRsaAesParams,
    WrapParams,
)
from keyparity.hsm.seed import create
from tokentool import spec as key_spec
from wraptool import PAIR_PRIVATE, PAIR_PUBLIC, PUBLIC

CKM_RSA_AES_KEY_WRAP = 0x1054
MESSAGE = b"keyparity forwarding module: the same key on both tokens"
_CIPHERS = {"aes": (Mechanism.AES_ECB, 16), "des2": (Mechanism.DES3_ECB, 8),
            "des3": (Mechanism.DES3_ECB, 8)}


class Run:
    """Both tokens' sessions and the wrapping pair."""

    def __init__(self, lib: Any, pins: dict[str, str], params: WrapParams) -> None:
        self.params = params
        self.s1 = lib.get_token(token_label="hsm1").open(user_pin=pins["hsm1"], rw=True)
        self.s2 = lib.get_token(token_label="hsm2").open(user_pin=pins["hsm2"], rw=True)
        pub, self.private = self.s2.generate_keypair(
            KeyType.RSA, 2048, store=False, label="wrapping", public_template=PAIR_PUBLIC,
            private_template=PAIR_PRIVATE)
        self.public = self.s1.create_object({
            **PUBLIC, Attribute.LABEL: "wrapping-public",
            Attribute.MODULUS: pub[Attribute.MODULUS],
            Attribute.PUBLIC_EXPONENT: pub[Attribute.PUBLIC_EXPONENT]})

    def close(self) -> None:
        self.s1.close()
        self.s2.close()

    def source(self, d: dict[str, Any]) -> Any:
        """A new key on hsm1 (keyparity.hsm.seed, as the demo seeds it)."""
        spec = key_spec(d)
        create(self.s1, spec, extractable=d.get("extractable"))
        return self.s1.get_key(object_class=key_class(spec.type), label=spec.label)

    def move(self, d: dict[str, Any], *, native_wrap: bool = True, native_unwrap: bool = True,
             params: WrapParams | None = None) -> tuple[bytes, Any]:
        """Wrap a new hsm1 key and unwrap it on hsm2, as the migration does."""
        params = params or self.params
        src = self.source(d)
        blob = wrap.wrap(self.s1, self.public, src, params, native=native_wrap, where="hsm1")
        cls = key_class(d["type"])
        template = unwrap_template(read_standard(src), cls, d["label"], {})
        moved = wrap.unwrap(self.s2, self.private, blob, cls, KEY_TYPES[d["type"]].pkcs11, template,
                            params, native=native_unwrap, where="hsm2")
        return blob, moved


def prove(run: Run, d: dict[str, Any], moved: Any) -> bool:
    """The key on hsm2 is the key on hsm1: a cipher block or MAC made with one is undone or
    checked by the other; a private key's signature checks with the source's public key."""
    kind, label = d["type"], d["label"]
    if kind in _CIPHERS:
        mechanism, size = _CIPHERS[kind]
        block = hashlib.sha256(MESSAGE).digest()[:size]
        src = run.s1.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
        return moved.decrypt(src.encrypt(block, mechanism=mechanism), mechanism=mechanism) == block
    if kind == "generic-secret":
        src = run.s1.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
        return moved.verify(MESSAGE, src.sign(MESSAGE, mechanism=Mechanism.SHA256_HMAC),
                            mechanism=Mechanism.SHA256_HMAC)
    public = run.s1.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
    if kind == "rsa":
        return public.verify(MESSAGE, moved.sign(MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS),
                             mechanism=Mechanism.SHA256_RSA_PKCS)
    digest = hashlib.sha384(MESSAGE).digest()
    return public.verify(digest, moved.sign(digest, mechanism=Mechanism.ECDSA),
                         mechanism=Mechanism.ECDSA)


def op_move(run: Run, op: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for d in op["keys"]:
        blob, moved = run.move(d, native_wrap=op.get("wrap", "native") == "native",
                               native_unwrap=op.get("unwrap", "native") == "native")
        control = {**d, "label": f"control-{d['label']}"}
        create(run.s2, key_spec(control))
        other = run.s2.get_key(object_class=key_class(d["type"]), label=control["label"])
        out[d["label"]] = {"blob": len(blob), "proved": prove(run, d, moved),
                           "control": prove(run, d, other)}
    return out


# Malformed CK_RSA_AES_KEY_WRAP_PARAMS, packed with keyparity's own ctypes structs; "valid" is
# the control. Values spelled out: CKM_SHA_1 0x220, CKM_MD5 0x210, CKG_MGF1_SHA1 1,
# CKZ_DATA_SPECIFIED 1.
PARAMS: dict[str, Callable[[CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS], Any]] = {
    "valid": lambda outer, oaep: None,
    "aes-bits-100": lambda outer, oaep: setattr(outer, "ulAESKeyBits", 100),
    "aes-bits-512": lambda outer, oaep: setattr(outer, "ulAESKeyBits", 512),
    "null-oaep": lambda outer, oaep: setattr(outer, "pOAEPParams", None),
    "unknown-hash": lambda outer, oaep: setattr(oaep, "hashAlg", 0x210),
    "unknown-mgf": lambda outer, oaep: setattr(oaep, "mgf", 0),
    "source-0": lambda outer, oaep: setattr(oaep, "source", 0),
    "source-2": lambda outer, oaep: setattr(oaep, "source", 2),
    "source-data-without-pointer": lambda outer, oaep: setattr(oaep, "ulSourceDataLen", 8),
}
LENGTHS: dict[str, Callable[[bytes], bytes | None]] = {
    "no-parameter": lambda raw: None,
    "short": lambda raw: raw[:8],
    "long": lambda raw: raw + bytes(8),
}


def malformed(case: str, params: WrapParams) -> tuple[bytes | None, Any]:
    """The parameter bytes of ``case``, and what must stay alive while they are used."""
    packed = PackedRsaAesParams(params)
    if case in LENGTHS:
        return LENGTHS[case](packed.raw), packed
    PARAMS[case](packed.outer, packed.oaep)
    raw = ctypes.string_at(ctypes.addressof(packed.outer), ctypes.sizeof(packed.outer))
    return raw, packed


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except (PKCS11Error, KeyparityError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def objects(run: Run) -> int:
    return sum(1 for s in (run.s1, run.s2) for _ in s.get_objects())


def op_refuse(run: Run, op: dict[str, Any]) -> dict[str, Any]:
    aes = {"label": "refuse-aes", "type": "aes", "size": 256}
    key = run.source(aes)
    good = wrap.wrap(run.s1, run.public, key, run.params, native=True, where="hsm1")
    out = {}
    for case in op["cases"]:
        raw, keep = malformed(case, run.params)
        before = objects(run)
        wrapped = outcome(lambda: run.public.wrap_key(
            key, mechanism=RSA_AES_KEY_WRAP, mechanism_param=raw))
        unwrapped = outcome(lambda: run.private.unwrap_key(
            ObjectClass.SECRET_KEY, KeyType.AES, good, label=f"refused-{case}",
            mechanism=RSA_AES_KEY_WRAP, mechanism_param=raw, store=False,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}))
        del keep
        out[case] = {"wrap": wrapped, "unwrap": unwrapped, "objects": [before, objects(run)]}
    return out


def temporary(run: Run) -> int:
    """AES session keys on either token: the module's temporary keys, if any were left."""
    template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                Attribute.TOKEN: False}
    return sum(1 for s in (run.s1, run.s2) for _ in s.get_objects(template))


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]


def _unwrap(run: Run, blob: bytes, params: WrapParams, template: dict[Attribute, Any]) -> Any:
    return wrap.unwrap(run.s2, run.private, blob, ObjectClass.SECRET_KEY, KeyType.AES,
                       template, params, native=True, where="hsm2")


def scenarios(run: Run) -> dict[str, Callable[[], Any]]:
    """Wraps and unwraps that succeed, and ones that fail after the temporary key exists."""
    sha256 = WrapParams("sha256", "mgf1-sha256", 256)
    aes = {"type": "aes", "size": 256}
    key = run.source({**aes, "label": "leftover-source"})
    blob = wrap.wrap(run.s1, run.public, key, run.params, native=True, where="hsm1")
    ok = {Attribute.TOKEN: True, Attribute.LABEL: "leftover-unwrapped"}
    return {
        "wrap": lambda: run.move({**aes, "label": "leftover-wrap"}),
        "unwrap": lambda: _unwrap(run, blob, run.params, ok),
        "wrap-unextractable": lambda: run.move({**aes, "label": "leftover-fixed",
                                                "extractable": False}),
        "wrap-sha256": lambda: run.move({**aes, "label": "leftover-256"}, params=sha256),
        "unwrap-sha256": lambda: _unwrap(run, blob, sha256, ok),
        "unwrap-bad-head": lambda: _unwrap(run, _flip(blob, 10), run.params, ok),
        "unwrap-bad-tail": lambda: _unwrap(run, _flip(blob, len(blob) - 3), run.params, ok),
    }


def op_leftovers(run: Run, op: dict[str, Any]) -> dict[str, Any]:
    table, out = scenarios(run), {}
    for case in op["cases"]:
        before = temporary(run)
        out[case] = {"outcome": outcome(table[case]), "temporary": temporary(run) - before}
    return out


def op_random(run: Run, op: dict[str, Any]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(op["calls"]):
        run.s1.generate_random(128)
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def op_mechanism(run: Run, op: dict[str, Any]) -> dict[str, Any]:
    slot = run.s1.token.slot
    info = slot.get_mechanism_info(CKM_RSA_AES_KEY_WRAP)
    oaep = slot.get_mechanism_info(Mechanism.RSA_PKCS_OAEP)
    return {"listed": CKM_RSA_AES_KEY_WRAP in {int(m) for m in slot.get_mechanisms()},
            "flags": int(info.flags), "sizes": [info.min_key_length, info.max_key_length],
            "oaep_sizes": [oaep.min_key_length, oaep.max_key_length]}


OPS = {"move": op_move, "refuse": op_refuse, "leftovers": op_leftovers, "random": op_random,
       "mechanism": op_mechanism}


def main(path: str) -> None:
    with open(path) as fh:
        spec = json.load(fh)
    started = time.perf_counter()
    lib = pkcs11.lib(spec["module"])
    run = Run(lib, spec["pins"], WrapParams(*spec.get("params", ("sha1", "mgf1-sha1", 256))))
    try:
        out = [OPS[op["op"]](run, op) for op in spec["ops"]]
    finally:
        run.close()
    lib.finalize()
    print(json.dumps({"results": out, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1])
