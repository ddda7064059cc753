"""Test-only driver of keyparity.hsm.wrap on real tokens, run as a child process (SoftHSM reads its
configuration once per process, and every test has token directories of its own).

    python wraptool.py SPEC.json     with SOFTHSM2_CONF set (and PKCS11SPY* for the spy)

SPEC.json: {"module": path, "token": label, "pin": pin, "op": ..., "params": [hash, mgf, bits],
            ...op arguments}
  wrap-known      public_n, public_e (hex), value_hex, native
                  import the public key as the channel does (session object, CKA_WRAP) and a
                  KNOWN AES key value (session object, extractable: test vectors only), then
                  keyparity.wrap.wrap -> {"kcv": the known key's KCV on the token, "blob": hex}
  unwrap-known    value_hex
                  generate an RSA-2048 wrapping pair on the token as the channel does (session
                  objects; the private half is not extractable), build in software, for its
                  public half, a blob in the CKM_RSA_AES_KEY_WRAP format
                  (RSA-OAEP(K) || AES-KWP_K(value)), keyparity.hsm.wrap.unwrap(native=False) it and
                  compute the KCV on the token -> {"modulus", "exponent", "blob", "kcv", ...}
                  (truncate: keep only that many bytes of the blob)
  unwrap-native   as unwrap-known, but keyparity.hsm.wrap.unwrap(native=True)
A keyparity error or a ValueError adds {"error": class name, "message": str} to what was
learnt before it (exit status 0). Prints one JSON object.
"""
from __future__ import annotations

import json
import os
import sys

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from pkcs11 import Attribute, KeyType, ObjectClass

from keyparity.hsm import identity, wrap
from keyparity.errors import KeyparityError
from keyparity.hsm.mechanisms import WrapParams

# The channel's templates (keyparity/channel.py), repeated here on purpose: the test checks
# the wrap functions with the objects the channel would give them.
PUBLIC = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
          Attribute.TOKEN: False, Attribute.WRAP: True, Attribute.ENCRYPT: False,
          Attribute.VERIFY: False}
PAIR_PUBLIC = {Attribute.WRAP: True, Attribute.ENCRYPT: False, Attribute.VERIFY: False}
PAIR_PRIVATE = {Attribute.UNWRAP: True, Attribute.DECRYPT: False, Attribute.SIGN: False,
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
UNWRAPPED = {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
             Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.LABEL: "unwrapped"}
SW_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}


def software_blob(n: int, e: int, value: bytes, params: WrapParams) -> bytes:
    """RSA-OAEP(K) || AES-KWP_K(value), made in software for the public key (n, e)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.RSAPublicNumbers(e, n).public_key()
    algorithm = SW_HASHES[params.oaep_hash]
    mgf_hash = SW_HASHES[params.mgf.removeprefix("mgf1-")]
    k = os.urandom(params.aes_bits // 8)
    head = public.encrypt(k, padding.OAEP(mgf=padding.MGF1(mgf_hash()), algorithm=algorithm(),
                                          label=None))
    return head + aes_key_wrap_with_padding(k, value)


def run(s: pkcs11.types.Session, spec: dict, params: WrapParams, out: dict) -> None:
    """Do one operation; what it learns goes into ``out`` as it goes."""
    op = spec["op"]
    if op == "wrap-known":
        public = s.create_object({**PUBLIC, Attribute.LABEL: "wrapping-public",
                                  Attribute.MODULUS: bytes.fromhex(spec["public_n"]),
                                  Attribute.PUBLIC_EXPONENT: bytes.fromhex(spec["public_e"])})
        key = s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY,
                               Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
                               Attribute.LABEL: "known", Attribute.SENSITIVE: True,
                               Attribute.EXTRACTABLE: True, Attribute.ENCRYPT: True,
                               Attribute.VALUE: bytes.fromhex(spec["value_hex"])})
        out["kcv"] = identity.kcv(key, spec["token"]).value
        blob = wrap.wrap(s, public, key, params, native=spec["native"], where=spec["token"])
        out["blob"] = blob.hex()
        return
    if op in ("unwrap-known", "unwrap-native"):
        pub, private = s.generate_keypair(KeyType.RSA, 2048, store=False, label="wrapping",
                                          public_template=PAIR_PUBLIC,
                                          private_template=PAIR_PRIVATE)
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        blob = software_blob(n, e, bytes.fromhex(spec["value_hex"]), params)
        blob = blob[:spec.get("truncate", len(blob))]
        out.update(modulus=f"{n:x}", exponent=e, blob=blob.hex(),
                   private_extractable=private[Attribute.EXTRACTABLE])
        key = wrap.unwrap(s, private, blob, ObjectClass.SECRET_KEY, KeyType.AES, UNWRAPPED,
                          params, native=op == "unwrap-native", where=spec["token"])
        kcv = identity.kcv(key, spec["token"])
        out.update(kcv=kcv.value, kcv_method=kcv.method, label=key[Attribute.LABEL])
        return
    raise SystemExit(f"unknown op {op}")


def main(path: str) -> None:
    with open(path) as fh:
        spec = json.load(fh)
    params = WrapParams(*spec.get("params", ("sha1", "mgf1-sha1", 256)))
    token = pkcs11.lib(spec["module"]).get_token(token_label=spec["token"])
    with token.open(user_pin=spec["pin"], rw=True) as s:
        out: dict = {}
        try:
            run(s, spec, params, out)
        except (KeyparityError, ValueError) as exc:
            out.update(error=type(exc).__name__, message=str(exc))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
