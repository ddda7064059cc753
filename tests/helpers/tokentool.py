"""Test-only token manipulation, run as a child process (SoftHSM reads its configuration once
per process, and every test has token directories of its own).

    python tokentool.py OPS.json     with SOFTHSM2_CONF set

OPS.json: {"module": path, "ops": [{"op": ..., "token": label, "pin": pin, ...}, ...]}
  seed          keys: [KeySpec-like dicts]        create inventory keys (keyparity.hsm.seed)
  create        key: {...}, label, extractable    create one key under a label
  destroy       label, classes: [secret|private|public]
  set           label, class, attribute, value    C_SetAttributeValue on one object
  import-aes    label, value_hex, extractable     import a known AES key value (test vectors only)
  create-object class (data|certificate), label, value_hex, [id_hex, application,
                subject_hex, private]            C_CreateObject of a data object or an X.509
                                                  certificate (not a key)
  count         [label]                           number of objects (with that label)
  count-prefix  prefix                            number of objects whose label starts with it
  encrypt       label, mechanism, iv_hex, data_hex   ciphertext (hex) of a secret key
  decrypt       label, mechanism, iv_hex, data_hex   plaintext (hex) of a secret key
  read          label, class                      every standard attribute (keyparity.hsm.attributes)
  kcv           label                             the 3-byte KCV of the secret key (hex)
Prints a JSON list of per-op results.
"""
from __future__ import annotations

import json
import sys

import pkcs11
from pkcs11 import Attribute, CertificateType, KeyType, Mechanism, ObjectClass

from keyparity.hsm.attributes import BY_NAME, read_standard
from keyparity.profile import CURVE_ALIASES, KeySpec
from keyparity.hsm.identity import kcv
from keyparity.hsm.seed import create, seed

CLASSES = {"secret": ObjectClass.SECRET_KEY, "private": ObjectClass.PRIVATE_KEY,
           "public": ObjectClass.PUBLIC_KEY}


def spec(d: dict) -> KeySpec:
    return KeySpec(index=0, label=d["label"], target_label=d.get("target_label", d["label"]),
                   type=d["type"], size=d.get("size"), curve=CURVE_ALIASES.get(d.get("curve"), d.get("curve")), attributes={},
                   vectors=(), disposition=d.get("disposition", "migrate"),
                   expected_differences={}, role=d.get("role", "unspecified"))


def create_object(s, op: dict) -> str:
    """A data object (CKA_VALUE: whatever the test says, e.g. a password) or an X.509
    certificate under a label."""
    template = {Attribute.TOKEN: True, Attribute.LABEL: op["label"],
                Attribute.VALUE: bytes.fromhex(op["value_hex"]),
                Attribute.PRIVATE: op.get("private", True)}
    if op["class"] == "data":
        template |= {Attribute.CLASS: ObjectClass.DATA,
                     Attribute.APPLICATION: op.get("application", "")}
    else:
        template |= {Attribute.CLASS: ObjectClass.CERTIFICATE,
                     Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                     Attribute.SUBJECT: bytes.fromhex(op["subject_hex"]),
                     Attribute.ID: bytes.fromhex(op.get("id_hex", ""))}
    s.create_object(template)
    return "created"


def main(path: str) -> None:
    doc = json.loads(open(path).read())
    lib = pkcs11.lib(doc["module"])
    out = []
    for op in doc["ops"]:
        token = lib.get_token(token_label=op["token"])
        with token.open(user_pin=op["pin"], rw=True) as s:
            kind = op["op"]
            if kind == "seed":
                out.append(seed(s, [spec(k) for k in op["keys"]]))
            elif kind == "create":
                create(s, spec(op["key"]), extractable=op.get("extractable", True),
                       label=op.get("label"))
                out.append("created")
            elif kind == "destroy":
                n = 0
                for cls in op.get("classes", ["secret", "private", "public"]):
                    for obj in list(s.get_objects({Attribute.CLASS: CLASSES[cls],
                                                   Attribute.LABEL: op["label"]})):
                        obj.destroy()
                        n += 1
                out.append(n)
            elif kind == "set":
                obj = s.get_key(object_class=CLASSES[op["class"]], label=op["label"])
                obj[BY_NAME[op["attribute"]]] = op["value"]
                out.append("set")
            elif kind == "import-aes":
                s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                 Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: True,
                                 Attribute.LABEL: op["label"],
                                 Attribute.VALUE: bytes.fromhex(op["value_hex"]),
                                 Attribute.SENSITIVE: True, Attribute.ENCRYPT: True,
                                 Attribute.DECRYPT: True,
                                 Attribute.EXTRACTABLE: op.get("extractable", True)})
                out.append("imported")
            elif kind == "create-object":
                out.append(create_object(s, op))
            elif kind == "count":
                out.append(sum(1 for _ in s.get_objects({Attribute.LABEL: op["label"]})
                               ) if "label" in op else sum(1 for _ in s.get_objects()))
            elif kind == "kcv":
                key = s.get_key(object_class=ObjectClass.SECRET_KEY, label=op["label"])
                out.append(kcv(key, op["token"]).value)
            elif kind == "count-prefix":
                out.append(sum(1 for o in s.get_objects()
                               if str(o[Attribute.LABEL]).startswith(op["prefix"])))
            elif kind in ("encrypt", "decrypt"):
                key = s.get_key(object_class=ObjectClass.SECRET_KEY, label=op["label"])
                run = key.encrypt if kind == "encrypt" else key.decrypt
                out.append(bytes(run(bytes.fromhex(op["data_hex"]),
                                     mechanism=Mechanism[op["mechanism"]],
                                     mechanism_param=bytes.fromhex(op["iv_hex"]))).hex())
            elif kind == "read":
                out.append(read_standard(s.get_key(object_class=CLASSES[op["class"]],
                                                   label=op["label"])))
            else:
                raise SystemExit(f"unknown op {kind}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
