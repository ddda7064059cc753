"""keyparity.hsm.destruction, the one rule for destroying a key object, on real SoftHSM keys of
known material: a permit to destroy a copy exists only when another copy on the other cluster
is proven with the strong proof at that moment; a permit covers exactly its objects; and no
module of keyparity calls C_DestroyObject but through it (checked in the source)."""
from __future__ import annotations

import ast

import pytest
from pkcs11 import Attribute, KeyType

from conftest import REPO
from kcv_collision import colliding_pair
from keyparity.errors import TokenError
from keyparity.hsm import destruction
from keyparity.hsm.locate import Side
from keyparity.profile import KeySpec
from p11tokens import ec_key, ec_pair, secret
from p11tokens import tokens  # noqa: F401 - the fixture

# the destroys that are not through the rule, and why
ALLOWED = {
    "keyparity/hsm/destruction.py": "the rule itself",
    "keyparity/hsm/proof.py": "the proof's own session key (a value derived from the challenge) "
                              "of a wrap-only key's proof, which the rule's module imports",
    "keyparity/bench/bare.py": "the benchmark's bare python-pkcs11 loop, no keyparity code",
    "keyparity/hsm/vectors.py": "the key-wrap vector's own session objects (CKA_TOKEN false, "
                                "their value the seeded test message, never anyone's key)",
}


def _session(session, label, value):
    return secret(session, label, KeyType.AES, value, extra={Attribute.TOKEN: False})


def _sides(tokens, label: str, values: tuple[bytes, bytes],
           clusters: tuple[str, str] = ("hsm1", "hsm2")) -> tuple[Side, Side]:
    """An AES key of each value under ``label``, the first on the first cluster, the second on
    the second (session objects)."""
    return tuple(Side(_session(tokens[c], label, v), None, c)  # type: ignore[return-value]
                 for c, v in zip(clusters, values))


def test_no_module_destroys_an_object_but_through_the_rule():
    found = []
    for path in sorted((REPO / "keyparity").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "destroy" and rel not in ALLOWED
                    and not (isinstance(node.func.value, ast.Name)
                             and node.func.value.id == "destruction")):
                found.append(f"{rel}:{node.lineno}")
    assert found == []
    # and the allowed ones are still there (else this list is stale)
    for rel in ALLOWED:
        text = (REPO / rel).read_text()
        assert ".destroy()" in text, rel


def test_a_second_copy_proven_now_permits_destroying_the_other(tokens):
    value, _ = colliding_pair()
    doomed, other = _sides(tokens, "d-aes", (value, value))
    permit = destruction.second_copy(doomed, other)
    assert permit.kind == destruction.SECOND_COPY and permit.objects == (doomed.key,)
    assert permit.covers(doomed.key) and not permit.covers(other.key)
    assert permit.proof["match"] is True and permit.proof["bits"] == 256
    assert permit.reason == ("the same key material is on hsm2, proven now (aes-ecb-decrypt over "
                             "a fresh challenge, 256 bits)")
    assert '"method":"aes-ecb-decrypt"' in permit.commitment
    with pytest.raises(destruction.Refused, match="does not cover this object on hsm2"):
        destruction.destroy(other.key, permit, "hsm2")
    destruction.destroy(doomed.key, permit, "hsm1")
    assert not list(tokens["hsm1"].get_objects({Attribute.LABEL: "d-aes"}))
    assert len(list(tokens["hsm2"].get_objects({Attribute.LABEL: "d-aes"}))) == 1


def test_a_copy_with_the_same_kcv_is_no_second_copy(tokens):
    doomed, other = _sides(tokens, "t-aes", colliding_pair())
    with pytest.raises(destruction.Refused) as info:
        destruction.second_copy(doomed, other)
    assert str(info.value).startswith("no second copy of its key material is proven on hsm2 "
                                      "now (aes-ecb-decrypt over the challenge ")
    assert str(info.value).endswith("): it may be the last copy; nothing destroyed")
    assert len(list(tokens["hsm1"].get_objects({Attribute.LABEL: "t-aes"}))) == 1


def test_a_copy_that_cannot_be_proven_is_no_second_copy(tokens):
    value, _ = colliding_pair()
    doomed, mute = _sides(tokens, "n-aes", (value, value))
    mute.key[Attribute.DECRYPT] = False  # the object still offers decrypt(); the token refuses
    with pytest.raises(TokenError, match="on hsm2 failed"):  # not a permit either
        destruction.second_copy(doomed, mute)
    silent = Side(secret(tokens["hsm2"], "s-aes", KeyType.AES, value, extra={
        Attribute.TOKEN: False, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
        Attribute.SIGN: False, Attribute.WRAP: False}), None, "hsm2")
    with pytest.raises(destruction.Refused, match="no strong proof of a AES key is permitted"):
        destruction.second_copy(doomed, silent)


def test_the_second_copy_must_be_on_the_other_cluster(tokens):
    value, _ = colliding_pair()
    a, b = _sides(tokens, "c-aes", (value, value), ("hsm1", "hsm1"))
    with pytest.raises(destruction.Refused) as info:
        destruction.second_copy(a, b)
    assert str(info.value) == ("the second copy must be on another cluster than hsm1; nothing "
                               "destroyed")


def test_a_pair_permit_covers_both_halves_once_the_copy_answers(tokens):
    key = ec_key(0, "secp256r1")
    doomed = Side(*ec_pair(tokens["hsm1"], "p-ec", key, "secp256r1", token=False), "hsm1",
                  "secp256r1")
    alone = Side(ec_pair(tokens["hsm2"], "p-ec", key, "secp256r1", public=False, token=False)[0],
                 None, "hsm2", "secp256r1")
    spec = KeySpec(index=0, label="p-ec", target_label="p-ec", type="ec", size=None,
                   curve="secp256r1", attributes={}, vectors=(), disposition="migrate",
                   expected_differences={})
    permit = destruction.second_copy(doomed, alone, spec)
    assert permit.objects == (doomed.key, doomed.public)
    other = Side(ec_pair(tokens["hsm2"], "p-ec2", ec_key(1, "secp256r1"), "secp256r1",
                         public=False, token=False)[0], None, "hsm2", "secp256r1")
    with pytest.raises(destruction.Refused, match="does not verify with the public key of hsm1"):
        destruction.second_copy(doomed, other, spec)


def test_own_objects_and_wrapping_labels(tokens):
    value, _ = colliding_pair()
    probe = _session(tokens["hsm1"], "keyparity-probe", value)
    permit = destruction.own(probe, "the probe key")
    assert permit.kind == destruction.OWN and permit.covers(probe)
    destruction.destroy(probe, permit, "hsm1", step="destroy the probe key")
    assert not list(tokens["hsm1"].get_objects({Attribute.LABEL: "keyparity-probe"}))
    run = "keyparity-wrap-r1-public"
    assert destruction.own_label(run, {run}, {"k-aes"}).kind == destruction.OWN
    for label, allowed, protected in (("k-aes", {run}, set()), (run, {run}, {run}),
                                      (run, set(), set())):
        with pytest.raises(destruction.Refused, match="is not a keyparity wrapping label"):
            destruction.own_label(label, allowed, protected)


def test_a_destroy_is_journaled_before_and_after(tokens):
    value, _ = colliding_pair()
    obj = _session(tokens["hsm1"], "j-aes", value)
    seen = []

    class Rec:
        from contextlib import contextmanager

        @contextmanager
        def step(self, action, **fields):
            seen.append(("before", action, fields))
            yield fields
            seen.append(("after", action, fields))

    destruction.destroy(obj, destruction.own(obj, "test"), "hsm1", Rec(), label="j-aes")
    assert [(p, a) for p, a, _ in seen] == [("before", "destroy"), ("after", "destroy")]
    assert seen[0][2] == {"label": "j-aes"}
