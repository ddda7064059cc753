"""People behind the signatures: the threshold counts distinct keys and distinct certificate
subjects, a certificate binds only the key it certifies (valid then, from a CA the verifier
gives), a custodian's countersignature covers exactly the signed payload of an unchanged
bundle and their acknowledgement reference is signed by them, and a run's bundle names what
makes it self-contained. Real keys, certificates and files; no token."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner

from keyparity.attest import identities
from keyparity.attest.countersign import countersign
from keyparity.attest.custodians import person_certificate
from keyparity.attest.envelope import EvidenceError
from keyparity.attest.signing import SigningError, load_signer
from keyparity.attest.statement import ENVELOPE, sign_run
from keyparity.attest.verify import verify_run
from keyparity.profile import SignerSpec
from keyparity.trust import pki

RUN_ID = "20261207T120000Z-abcdef"


class Org:
    """An organisation's CA and its people's signing keys and certificates."""

    def __init__(self, name: str = "Example Bank") -> None:
        self.ca, self.ca_key = pki.make_ca(pki.subject(f"{name} signing CA", organization=name))
        self.name = name

    def person(self, signer_name: str, common_name: str, email: str,
               **kw) -> CryptoSigner:
        private = ec.generate_private_key(ec.SECP384R1())
        signer = CryptoSigner(private)
        signer.name = signer_name
        signer.certificate = person_certificate(private.public_key(), self.ca, self.ca_key,
                                                common_name, email, organization=self.name,
                                                **kw)
        return signer


def predicate(signers: list[CryptoSigner], threshold: int, **extra) -> dict:
    return {"run_id": RUN_ID, "profile": "lab", "verdict": "PASS", "threshold": threshold,
            "evidence_sha256": "0" * 64,  # a run's statement: it must be self-contained
            "signers": [s.name for s in signers],
            "contents": {"profile": {"file": "profile/lab.yaml"}, "plan": None, "journal": None,
                         "signers": [{"name": s.name, "keyid": s.public_key.keyid,
                                      "file": f"signers/{s.name}.pem", "kind": "certificate"}
                                     for s in signers]},
            **extra}


def bundle(root: Path, everyone: list[CryptoSigner], signing: list[CryptoSigner],
           threshold: int, **extra) -> Path:
    """A run directory whose statement names ``everyone`` and is signed by ``signing``."""
    run = root / "reports" / RUN_ID
    (run / "profile").mkdir(parents=True)
    (run / "profile" / "lab.yaml").write_text("name: lab\n")
    (run / "evidence.json").write_text('{"verdict": "PASS"}\n')
    (run / "signers").mkdir()
    for s in everyone:
        (run / "signers" / f"{s.name}.pem").write_bytes(identities.pem(s.certificate))
    sign_run(run, signing, predicate(everyone, threshold, **extra))
    return run


@pytest.fixture(scope="module")
def org() -> Org:
    return Org()


@pytest.fixture(scope="module")
def people(org: Org) -> dict[str, CryptoSigner]:
    return {"operator": org.person("operator", "Olivia Operator", "olivia@bank.example"),
            "custodian-1": org.person("custodian-1", "Carol Custodian", "carol@bank.example"),
            "carol-2": org.person("carol-2", "Carol Custodian", "carol@bank.example")}


def test_two_keys_of_one_person_do_not_meet_a_threshold_of_two_persons(tmp_path, org, people):
    """Signed in one process by two keys whose certificates name one subject: two keys, one
    person. Without the CA, securesystemslib alone counts two keys and the run would pass."""
    carol = [people["custodian-1"], people["carol-2"]]
    run = bundle(tmp_path, carol, carol, threshold=2)
    r = verify_run(run, [], cas=[org.ca])
    assert not r.ok and not r.threshold_met
    assert ("threshold not met: 2 signatures verified, but they are of 1 distinct person(s) "
            "(2 required): keys whose certificates name one subject count once") in r.problems
    keys = [s.public_key for s in carol]  # the same bundle, keys given without certificates
    assert verify_run(run, keys).ok


def test_two_people_meet_it_and_verify_names_them(tmp_path, org, people):
    two = [people["operator"], people["custodian-1"]]
    run = bundle(tmp_path, two, two, threshold=2)
    r = verify_run(run, [], cas=[org.ca])
    assert r.ok, r.problems
    assert [w.split(" (keyid")[0] for w in r.who] == [
        "operator: Olivia Operator <olivia@bank.example> (certificate by CN=Example Bank "
        "signing CA,O=Example Bank)",
        "custodian-1: Carol Custodian <carol@bank.example> (certificate by CN=Example Bank "
        "signing CA,O=Example Bank)"]
    assert any("2 in envelope, 2 distinct person(s)" in line for line in r.checked), r.checked
    assert "  signed by:" in r.lines()


def test_a_certificate_whose_key_differs_from_the_signers_key_is_refused(tmp_path, org,
                                                                          people):
    """At signing: the profile's signer with another key's certificate does not load. At
    verification: a certificate given for a key that is not its own names nobody."""
    private = ec.generate_private_key(ec.SECP384R1())
    key = tmp_path / "c1.key.pem"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key.chmod(0o600)
    cert = tmp_path / "c1.crt"
    cert.write_bytes(identities.pem(people["operator"].certificate))  # someone else's
    spec = SignerSpec(name="c1", type="file", path=key, certificate=cert)
    with pytest.raises(SigningError, match=r"evidence signer c1: certificate .*c1\.crt refused: "
                       r"the certificate of .*CN=Olivia Operator.* holds another public key"):
        load_signer(spec, {}, None)
    own = tmp_path / "own.crt"
    own.write_bytes(identities.pem(person_certificate(
        private.public_key(), org.ca, org.ca_key, "Carol Custodian", "carol@bank.example")))
    assert load_signer(SignerSpec(name="c1", type="file", path=key, certificate=own), {},
                       None).certificate.subject  # its own certificate: accepted

    signer = people["custodian-1"]
    run = bundle(tmp_path / "v", [signer], [signer], threshold=1)
    r = verify_run(run, [signer.public_key], cas=[org.ca],
                   certificates={signer.public_key.keyid: people["operator"].certificate})
    assert any("holds another public key" in p for p in r.problems), r.problems


def test_a_certificate_from_another_ca_or_not_valid_when_it_signed_names_nobody(tmp_path,
                                                                                org):
    stranger = Org("Elsewhere Ltd").person("c1", "Mallory", "m@elsewhere.example")
    run = bundle(tmp_path / "a", [stranger], [stranger], threshold=1)
    r = verify_run(run, [], cas=[org.ca])  # its certificate is not the org's: no key to check
    assert not r.ok and "threshold not met" in " ".join(r.problems)
    r = verify_run(run, [stranger.public_key], cas=[org.ca])
    assert any("was not issued by a CA given" in p for p in r.problems), r.problems
    old = org.person("c2", "Carol Custodian", "carol@bank.example", days=1,
                     now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    run = bundle(tmp_path / "b", [old], [old], threshold=1)
    r = verify_run(run, [], cas=[org.ca])
    assert any("was not valid at" in p for p in r.problems), r.problems


def test_a_countersignature_over_a_changed_bundle_is_refused(tmp_path, org, people):
    operator, carol = people["operator"], people["custodian-1"]
    run = bundle(tmp_path, [operator, carol], [operator], threshold=2)
    before = (run / ENVELOPE).read_bytes()
    (run / "evidence.json").write_text('{"verdict": "FAIL"}\n')
    with pytest.raises(EvidenceError, match=r"is not what was signed, not countersigned: "
                       r"changed: evidence\.json"):
        countersign(run, carol, "TICKET-7")
    assert (run / ENVELOPE).read_bytes() == before
    assert not (run / "acknowledgements" / "custodian-1.dsse.json").exists()
    (run / "evidence.json").write_text('{"verdict": "PASS"}\n')
    (run / "extra.txt").write_text("added after signing")
    with pytest.raises(EvidenceError, match=r"extra file: extra\.txt"):
        countersign(run, carol, "TICKET-7")
    stranger = Org("Elsewhere Ltd").person("custodian-1", "Mallory", "m@elsewhere.example")
    (run / "extra.txt").unlink()
    with pytest.raises(EvidenceError, match="is not one of the signers the bundle names"):
        countersign(run, stranger, None)


def test_a_countersignature_covers_the_same_payload_and_records_the_ack(tmp_path, org,
                                                                         people):
    operator, carol = people["operator"], people["custodian-1"]
    run = bundle(tmp_path, [operator, carol], [operator], threshold=2)
    payload = json.loads((run / ENVELOPE).read_text())["payload"]
    r = verify_run(run, [], cas=[org.ca])
    assert not r.ok and "threshold not met: 1 of 2 required signatures verified" in r.problems
    assert "no signature by custodian-1" in " ".join(r.notes)
    said = countersign(run, carol, "TICKET-7")
    assert said.endswith("as custodian-1, acknowledgement TICKET-7: 2 signature(s) now")
    envelope = json.loads((run / ENVELOPE).read_text())
    assert envelope["payload"] == payload and len(envelope["signatures"]) == 2
    assert countersign(run, carol, "TICKET-7").endswith("already; unchanged")
    r = verify_run(run, [], cas=[org.ca])
    assert r.ok, r.problems
    assert "ack TICKET-7" in r.who[1] and "ack none" in r.who[0]
    ack = json.loads((run / "acknowledgements" / "custodian-1.dsse.json").read_text())
    assert [s["keyid"] for s in ack["signatures"]] == [carol.public_key.keyid]


def test_an_acknowledgement_changed_or_of_another_bundle_fails_verify(tmp_path, org, people):
    operator, carol = people["operator"], people["custodian-1"]
    run = bundle(tmp_path / "a", [operator, carol], [operator], threshold=2)
    countersign(run, carol, "TICKET-7")
    path = run / "acknowledgements" / "custodian-1.dsse.json"
    doc = json.loads(path.read_text())
    statement = json.loads(__import__("base64").b64decode(doc["payload"]))
    statement["predicate"]["ack"] = "TICKET-8"  # the ack changed after it was signed
    doc["payload"] = __import__("base64").b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(doc))
    r = verify_run(run, [], cas=[org.ca])
    assert "acknowledgements/custodian-1.dsse.json: NOT signed by the key it names (keyid " \
           f"{carol.public_key.keyid[:16]})" in r.problems
    other = bundle(tmp_path / "b", [operator, carol], [operator], threshold=2,
                   headline="another run")
    countersign(other, carol, "TICKET-9")
    shutil.copy(other / "acknowledgements" / "custodian-1.dsse.json", path)
    r = verify_run(run, [], cas=[org.ca])
    assert ("acknowledgements/custodian-1.dsse.json: acknowledges another statement, not this "
            "bundle's signed payload") in r.problems


@pytest.mark.parametrize("lacking", ["contents", "profile", "plan", "journal", "signer"])
def test_a_run_statement_that_does_not_name_its_profile_plan_journal_or_signers_fails(
        tmp_path, people, lacking):
    """What the signed predicate's contents must name: the profile always, the plan when the
    run followed one, the journal's rows when it has a journal head, each signer's key."""
    carol = people["custodian-1"]
    doc = predicate([carol], 1, plan={"plan_id": "p", "sha256": "0" * 64},
                    journal={"head": "0" * 64})
    doc["contents"].update(plan={"file": "profile/lab.yaml"},
                           journal={"file": "profile/lab.yaml"})
    if lacking == "contents":
        del doc["contents"]
    elif lacking == "signer":
        doc["contents"]["signers"] = []
    else:
        doc["contents"][lacking] = None
    run = tmp_path / "reports" / RUN_ID
    (run / "profile").mkdir(parents=True)
    (run / "profile" / "lab.yaml").write_text("name: lab\n")
    (run / "signers").mkdir()
    (run / "signers" / "custodian-1.pem").write_bytes(identities.pem(carol.certificate))
    sign_run(run, [carol], doc)
    r = verify_run(run, [carol.public_key])
    assert [p for p in r.problems if "not self-contained" in p] == [
        "the bundle is not self-contained: the signed statement lacks " + {
            "contents": "contents (the profile, the plan, the journal's rows and the signers' "
                        "keys inside the bundle)",
            "profile": "contents.profile", "plan": "contents.plan (the run followed a plan)",
            "journal": "contents.journal (the run has a journal)",
            "signer": "contents.signers: custodian-1"}[lacking]]


def test_with_the_ca_alone_the_threshold_decides_and_a_signer_who_did_not_sign_is_a_note(
        tmp_path, org, people):
    """Keys the verifier gives must each have signed; the bundle's own certificates are the
    signers it names, of whom the signed threshold must sign."""
    everyone = [people["operator"], people["custodian-1"], people["carol-2"]]
    run = bundle(tmp_path, everyone, everyone[:2], threshold=2)
    r = verify_run(run, [], cas=[org.ca])
    assert r.ok, r.problems
    assert "no signature by carol-2 (keyid" in " ".join(r.notes)
    r = verify_run(run, [s.public_key for s in everyone])
    assert not r.ok and any(p.startswith("no signature by") for p in r.problems)
