"""``migration.backend: cloudhsm-cli`` (keyparity.cli_backend) against tests/fake_cloudhsm_cli.

The fake cannot unwrap real keys, so the proof stops at the command level: the exact sequence
and arguments of the guide's commands, credentials never in argv, the PEM and blob files in a
private directory and removed, the wrapping objects deleted, failures cleaned up. End to end
through the Migrator, the commands run and the PKCS #11 verification that follows finds no key
on the target (the fake unwrapped nothing): the key fails with that reason.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import evidence, run_suites
from keyparity import cli_backend
from keyparity.cloudhsm_cli import CliCommandFailed, CloudHsmCli
from keyparity.errors import MechanismUnsupported
from keyparity.profile import CloudHsmCliSpec, KeySpec, Wrapping
from keyparity.secrets import SecretRef

HERE = Path(__file__).parent
FAKE = HERE / "fake_cloudhsm_cli"
PASSWORD = "Wr4pping-pass"  # noqa: S105 - a test password
OK = {"error_code": 0, "data": {"message": "ok"}}
ALL_OK = {"key generate-asymmetric-pair rsa *": OK, "key generate-file *": OK,
          "key import pem *": OK, "key wrap rsa-aes *": OK, "key unwrap rsa-aes *": OK,
          "key delete *": OK}
WRAPPING = Wrapping("rsa-aes", 2048, "sha256", "mgf1-sha256", 256)
LABEL = "keyparity-wrap-RUN"
SOURCE_ATTRS = {"private": True, "modifiable": True, "copyable": True, "destroyable": True,
                "id": "0a0b", "derive": False, "sensitive": True, "extractable": True,
                "wrap_with_trusted": False, "encrypt": True, "decrypt": True, "sign": False,
                "verify": False, "wrap": False, "unwrap": False, "label": "k-des3"}


def spec(**kw: Any) -> KeySpec:
    base = dict(index=0, label="k-des3", target_label="k-des3-new", type="des3", size=None,
                curve=None, attributes={}, vectors=(), disposition="migrate",
                expected_differences={})
    return KeySpec(**{**base, **kw})


class Fake:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.log, self.case = tmp, tmp / "cli.log", tmp / "case.json"
        for name, value in {"KP_TEST_CU_PASSWORD": PASSWORD, "FAKE_CLOUDHSM_CASE": self.case,
                            "FAKE_CLOUDHSM_LOG": self.log,
                            "FAKE_CLOUDHSM_EXPECT_PIN": f"cu1:{PASSWORD}",
                            "FAKE_CLOUDHSM_EXPECT_CLUSTER": "cluster-src,cluster-tgt"}.items():
            monkeypatch.setenv(name, str(value))
        self.answer(ALL_OK)

    def answer(self, table: dict[str, Any]) -> None:
        self.case.write_text(json.dumps(table))

    def cli(self, cluster_id: str, where: str) -> CloudHsmCli:
        return CloudHsmCli(CloudHsmCliSpec(user="cu1", path=FAKE, password=SecretRef(
            "env", "KP_TEST_CU_PASSWORD", "f")), cluster_id, where, 10)

    def channel(self) -> cli_backend.CliChannel:
        return cli_backend.CliChannel(self.cli("cluster-src", "source (hsm1)"),
                                      self.cli("cluster-tgt", "target (hsm2m)"), WRAPPING, LABEL)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


@pytest.fixture
def found(monkeypatch) -> list[tuple[Any, KeySpec]]:
    """find_unwrapped, stubbed: the fake unwraps nothing PKCS #11 could find."""
    seen: list[tuple[Any, KeySpec]] = []
    monkeypatch.setattr(cli_backend, "find_unwrapped",
                        lambda cluster, s: seen.append((cluster, s)) or "side")
    return seen


def test_the_guides_command_sequence_with_its_exact_arguments(fake, found):
    channel = fake.channel()
    tmp = channel.dir
    assert channel.move(spec(attributes={"decrypt": False}), SOURCE_ATTRS, "tgt") == "side"
    assert found[0][0] == "tgt"
    assert channel.close() == []
    calls = fake.calls()
    pem = calls[1]["argv"][calls[1]["argv"].index("--path") + 1]
    blob = calls[3]["argv"][calls[3]["argv"].index("--path") + 1]
    assert Path(pem).parent == Path(blob).parent == tmp
    src, tgt = ["--cluster-id", "cluster-src"], ["--cluster-id", "cluster-tgt"]
    assert [c["argv"] for c in calls] == [
        ["key", "generate-asymmetric-pair", "rsa", "--public-exponent", "65537",
         "--modulus-size-bits", "2048", "--public-label", f"{LABEL}-public", "--private-label",
         f"{LABEL}-private", "--public-attributes", "wrap=true", "--private-attributes",
         "unwrap=true", *tgt],
        ["key", "generate-file", "--encoding", "pem", "--path", pem, "--filter",
         f"attr.label={LABEL}-public", "attr.class=public-key", *tgt],
        ["key", "import", "pem", "--path", pem, "--label", f"{LABEL}-imported",
         "--key-type-class", "rsa-public", "--attributes", "wrap=true", *src],
        ["key", "wrap", "rsa-aes", "--payload-filter", "attr.label=k-des3",
         "attr.class=secret-key", "--wrapping-filter", f"attr.label={LABEL}-imported",
         "attr.class=public-key", "--hash-function", "sha256", "--mgf", "mgf1-sha256",
         "--path", blob, *src],
        ["key", "unwrap", "rsa-aes", "--filter", f"attr.label={LABEL}-private",
         "attr.class=private-key", "--key-type-class", "des3", "--label", "k-des3-new",
         "--hash-function", "sha256", "--mgf", "mgf1-sha256", "--data-path", blob,
         "--attributes", "modifiable=true", "destroyable=true", "id=0x0a0b", "derive=false", "sensitive=true",
         "extractable=true", "wrap-with-trusted=false", "encrypt=true", "decrypt=false",
         "sign=false", "verify=false", "wrap=false", "unwrap=false", *tgt],
        ["key", "delete", "--filter", f"attr.label={LABEL}-imported", "attr.class=public-key",
         *src],
        ["key", "delete", "--filter", f"attr.label={LABEL}-private", "attr.class=private-key",
         *tgt],
        ["key", "delete", "--filter", f"attr.label={LABEL}-public", "attr.class=public-key",
         *tgt],
    ]
    assert calls[4]["data_path_existed"] is True  # the blob was there for the unwrap ...
    assert calls[4]["data_path_dir_mode"] == "0o700"  # ... in a private directory
    assert not Path(blob).exists() and not Path(pem).exists() and not tmp.exists()
    assert PASSWORD not in fake.log.read_text()
    assert all(c["role"] == "crypto-user" for c in calls)


def test_rsa_and_ec_unwrap_as_private_key_classes_and_des2_is_refused(fake, found):
    channel = fake.channel()
    channel.move(spec(label="k-rsa", target_label="k-rsa", type="rsa", size=2048), {}, None)
    channel.move(spec(label="k-ec", target_label="k-ec", type="ec", curve="secp384r1"), {}, None)
    wraps = [c["argv"] for c in fake.calls() if c["argv"][:2] == ["key", "wrap"]]
    unwraps = [c["argv"] for c in fake.calls() if c["argv"][:2] == ["key", "unwrap"]]
    assert [w[5] for w in wraps] == ["attr.class=private-key"] * 2
    assert [u[u.index("--key-type-class") + 1] for u in unwraps] == ["rsa-private", "ec-private"]
    assert all("--attributes" not in u for u in unwraps)  # nothing to pass: none given
    n = len(fake.calls())
    with pytest.raises(MechanismUnsupported, match="no key type for des2"):
        channel.move(spec(type="des2"), SOURCE_ATTRS, None)
    assert len(fake.calls()) == n
    channel.close()


def test_a_failed_unwrap_still_removes_the_blob_and_close_deletes_the_wrapping_objects(
        fake, found):
    channel = fake.channel()
    fake.answer({**ALL_OK, "key unwrap rsa-aes *": {"error_code": 1,
                                                    "data": "Unwrap failed: invalid key type"}})
    with pytest.raises(CliCommandFailed, match="Unwrap failed: invalid key type"):
        channel.move(spec(), SOURCE_ATTRS, None)
    blob = fake.calls()[3]["argv"][fake.calls()[3]["argv"].index("--path") + 1]
    assert not Path(blob).exists() and found == []
    assert channel.close() == []
    assert sum(c["argv"][:2] == ["key", "delete"] for c in fake.calls()) == 3


def test_a_failed_import_deletes_the_generated_pair_and_the_directory(fake, tmp_path):
    fake.answer({**ALL_OK, "key import pem *": {"error_code": 1, "data": "Invalid PEM file"}})
    before = set(Path(tmp_path.parent).glob("keyparity-cli-*"))
    with pytest.raises(CliCommandFailed, match="Invalid PEM file"):
        fake.channel()
    deletes = [c["argv"][3] for c in fake.calls() if c["argv"][:2] == ["key", "delete"]]
    assert deletes == [f"attr.label={LABEL}-private", f"attr.label={LABEL}-public"]
    pem = fake.calls()[1]["argv"][fake.calls()[1]["argv"].index("--path") + 1]
    assert not Path(pem).parent.exists()
    assert set(Path(tmp_path.parent).glob("keyparity-cli-*")) == before


def test_close_reports_wrapping_objects_it_could_not_delete(fake, found):
    channel = fake.channel()
    fake.answer({**ALL_OK, "key delete *": {"error_code": 1, "data": "Key is in use"}})
    left = channel.close()
    assert left == [f"source (hsm1): {LABEL}-imported (CliCommandFailed)",
                    f"target (hsm2m): {LABEL}-private (CliCommandFailed)",
                    f"target (hsm2m): {LABEL}-public (CliCommandFailed)"]


def test_the_migrator_uses_the_cli_backend_when_the_profile_says_so(lab, suites, monkeypatch,
                                                                    tmp_path):
    """End to end to the command level: a migrate run with backend cloudhsm-cli runs the
    guide's commands against the fake; PKCS #11 then finds no key on the target (the fake
    unwrapped nothing), so the key fails with that reason, and the wrapping objects are
    deleted. The PKCS #11 backend stays the default (every other suite test)."""
    fake = Fake(tmp_path, monkeypatch)
    keys = [{"label": "k-aes128", "type": "aes", "size": 128}]
    lab.seed(keys)
    path = lab.profile(keys, migration={"backend": "cloudhsm-cli"})
    doc = yaml.safe_load(path.read_text())
    for role, cid in (("source", "cluster-src"), ("target", "cluster-tgt")):
        doc["clusters"][role]["cloudhsm_cli"] = {"path": str(FAKE), "user": "cu1",
                                                 "password": "env:KP_TEST_CU_PASSWORD"}
        doc["clusters"][role]["aws"] = {"cluster_id": cid, "region": "us-east-1"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_suites(suites, path, "suites/test_migration.py")
    assert result.ret == 1
    record = evidence(suites)["keys"]["k-aes128"]["migration"]
    assert record["status"] == "failed"
    assert "'k-aes128' was unwrapped by the CloudHSM CLI but is not visible through PKCS #11" \
        in record["detail"]
    verbs = [" ".join(c["argv"][:3]) for c in fake.calls()]
    assert verbs == ["key generate-asymmetric-pair rsa", "key generate-file --encoding",
                     "key import pem", "key wrap rsa-aes", "key unwrap rsa-aes",
                     "key delete --filter", "key delete --filter", "key delete --filter"]
    unwrap = fake.calls()[4]["argv"]
    assert unwrap[unwrap.index("--hash-function") + 1] == "sha1"  # the lab profile's OAEP hash
    assert PASSWORD not in "".join(p.read_text(errors="replace") for p in
                                   (suites.path / "reports").rglob("*") if p.is_file())
