"""Test-only token manipulation, run as a child process (SoftHSM reads its configuration once
per process, and every test has token directories of its own).

    python tokentool.py OPS.json     with SOFTHSM2_CONF set

OPS.json: {"module": path, "ops": [{"op": ..., "token": label, "pin": pin, ...}, ...]}
  seed          keys: [KeySpec-like dicts]        create inventory keys (keyparity.hsm.seed)
  create        key: {...}, label, extractable    create one key under a label
  destroy       label, classes: [secret|private|public]
  set           label, class, attribute, value    C_SetAttributeValue on one object
  import-aes    label, value_hex, extractable     import a known AES key value (test vectors only)
  count         [label]                           number of objects (with that label)
  count-prefix  prefix                            number of objects whose label starts with it
  kcv           label                             the 3-byte KCV of the secret key (hex)
Prints a JSON list of per-op results.
"""
from __future__ import annotations

import json
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass

from keyparity.hsm.attributes import BY_NAME
from keyparity.profile import CURVE_ALIASES, KeySpec
from keyparity.hsm.identity import kcv
from keyparity.hsm.seed import create, seed

CLASSES = {"secret": ObjectClass.SECRET_KEY, "private": ObjectClass.PRIVATE_KEY,
           "public": ObjectClass.PUBLIC_KEY}


def spec(d: dict) -> KeySpec:
    return KeySpec(index=0, label=d["label"], target_label=d.get("target_label", d["label"]),
                   type=d["type"], size=d.get("size"), curve=CURVE_ALIASES.get(d.get("curve"), d.get("curve")), attributes={},
                   vectors=(), disposition=d.get("disposition", "migrate"),
                   expected_differences={})


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
            elif kind == "count":
                out.append(sum(1 for _ in s.get_objects({Attribute.LABEL: op["label"]})
                               ) if "label" in op else sum(1 for _ in s.get_objects()))
            elif kind == "kcv":
                key = s.get_key(object_class=ObjectClass.SECRET_KEY, label=op["label"])
                out.append(kcv(key, op["token"]).value)
            elif kind == "count-prefix":
                out.append(sum(1 for o in s.get_objects()
                               if str(o[Attribute.LABEL]).startswith(op["prefix"])))
            else:
                raise SystemExit(f"unknown op {kind}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
