"""keyparity.minimal: a production vector keeps a salted commitment instead of its message and
outputs; the salt is fresh each time and never recorded, so the same pair commits to a new value
each time and nothing in the record lets anyone test a guessed pair."""
from __future__ import annotations

import json

from keyparity import minimal

RECORD = {"tcId": 1, "keyLabel": "k", "vector": "aes-gcm", "direction": "source->target",
          "producer": "hsm1", "consumer": "hsm2", "result": "valid", "mechanism": "CKM_AES_GCM",
          "msg": "00" * 37, "iv": "11" * 12, "aad": "22" * 20, "ct": "33" * 37, "tag": "44" * 16,
          "ok": True, "comment": "decrypts to the message"}


def test_the_pair_is_replaced_by_a_commitment_whose_salt_is_discarded():
    out = minimal.commit(RECORD)
    assert not set(minimal.PAIR_FIELDS) & set(out)
    assert {k: v for k, v in out.items() if k != "commitment"} == {
        k: v for k, v in RECORD.items() if k not in minimal.PAIR_FIELDS}
    commitment = out["commitment"]
    assert commitment["fields"] == ["msg", "iv", "aad", "ct", "tag"]
    assert commitment["salt"] == "discarded" and len(commitment["sha256"]) == 64
    text = json.dumps(out)
    assert not any(RECORD[f] in text for f in minimal.PAIR_FIELDS if f in RECORD)


def test_a_fresh_salt_each_time_and_a_record_without_a_pair_is_kept():
    assert minimal.commit(RECORD)["commitment"]["sha256"] != \
        minimal.commit(RECORD)["commitment"]["sha256"]
    na = {"vector": "des3-ecb", "direction": "source->target", "result": "n/a", "comment": "x"}
    assert minimal.commit(na) == na
    assert minimal.minimal_data(True) == minimal.PRODUCTION
    assert minimal.minimal_data(False) == minimal.TEST
