"""The CBOM at scale: written as data in linear time, the same bytes as cyclonedx-python-lib
writes for the same keys (the library is the oracle here), and validated by shape above FULL_VALIDATION components without letting an invalid
component through."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.crypto import (AlgorithmProperties, CryptoAssetType,
                                    CryptoCertificationLevel, CryptoExecutionEnvironment,
                                    CryptoPrimitive,
                                    CryptoProperties, RelatedCryptoMaterialProperties,
                                    RelatedCryptoMaterialState, RelatedCryptoMaterialType)
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion

from conftest import TESTDATA
from keyparity import __version__
from keyparity.formats import cbom


def _assets(n: int, state: str = cbom.ACTIVE) -> list[cbom.Asset]:
    return [cbom.Asset(label=f"k-{i:05d}", type="aes" if i % 3 else "rsa", state=state,
                       size=256 if i % 3 else 2048, cka_id=f"{i:016x}",
                       properties={"keyparity:verdict": "passed"}) for i in range(n)]


WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SERIAL = uuid.UUID(int=7)


def _library(assets: list[cbom.Asset], properties: dict[str, str],
             where: cbom.Platform | None = None) -> str:
    """The test oracle: the same CBOM built with cyclonedx-python-lib's model and written by
    its own outputter (quadratic in Bom.validate: fine at test sizes)."""
    bom = Bom(serial_number=SERIAL)
    bom.metadata.timestamp = WHEN
    if where is not None:
        bom.metadata.component = Component(
            type=ComponentType.DEVICE, name=where.name, bom_ref=where.ref,
            properties=[Property(name=k, value=v) for k, v in where.properties.items()])
    bom.metadata.tools.components.add(Component(
        type=ComponentType.APPLICATION, name="keyparity", version=__version__))
    for name, value in properties.items():
        bom.metadata.properties.add(Property(name=name, value=value))
    algorithms: dict[str, Component] = {}
    for asset in assets:
        alg = cbom.algorithm(asset.type, asset.size, asset.curve)
        if alg.ref not in algorithms:
            algorithms[alg.ref] = Component(
                type=ComponentType.CRYPTOGRAPHIC_ASSET, name=alg.name, bom_ref=alg.ref,
                crypto_properties=CryptoProperties(
                    asset_type=CryptoAssetType.ALGORITHM, oid=alg.oid,
                    algorithm_properties=AlgorithmProperties(
                        primitive=CryptoPrimitive(alg.primitive),
                        parameter_set_identifier=alg.parameter_set, curve=alg.curve,
                        classical_security_level=alg.classical,
                        nist_quantum_security_level=alg.quantum,
                        execution_environment=where and CryptoExecutionEnvironment(
                            where.environment),
                        certification_levels=where and [CryptoCertificationLevel(
                            where.certification)])))
            bom.components.add(algorithms[alg.ref])
        bom.components.add(Component(
            type=ComponentType.CRYPTOGRAPHIC_ASSET, name=asset.label,
            bom_ref=f"key:{asset.label}",
            crypto_properties=CryptoProperties(
                asset_type=CryptoAssetType.RELATED_CRYPTO_MATERIAL,
                related_crypto_material_properties=RelatedCryptoMaterialProperties(
                    type=RelatedCryptoMaterialType(asset.material), id=asset.cka_id or None,
                    state=RelatedCryptoMaterialState(asset.state),
                    algorithm_ref=algorithms[alg.ref].bom_ref, size=asset.bits)),
            properties=[Property(name=k, value=v) for k, v in asset.properties.items()]))
    if where is not None:
        bom.register_dependency(bom.metadata.component,
                                [c for c in bom.components if c.bom_ref.value.startswith("key:")])
    return make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(
        indent=None)


def _mixed() -> list[cbom.Asset]:
    """Every key type and state, an EC key by either curve name, a key with no CKA_ID."""
    kinds = [("aes", 128, None), ("aes", 256, None), ("des2", None, None),
             ("des3", None, None), ("generic-secret", 256, None), ("rsa", 2048, None),
             ("rsa", 4096, None), ("ec", None, "secp256r1"), ("ec", None, "P-384")]
    states = [cbom.ACTIVE, cbom.SUSPENDED, cbom.PRE_ACTIVATION]
    return [cbom.Asset(label=f"{t}-{i}", type=t, size=size, curve=curve,
                       state=states[i % 3], cka_id=f"{i:04x}" if i % 4 else None,
                       properties={"keyparity:verdict": "passed", "keyparity:kcv": f"{i:06X}"})
            for i, (t, size, curve) in enumerate(kinds * 3)]


def test_the_cbom_is_what_cyclonedx_python_lib_writes_for_the_same_keys():
    assets = _mixed()
    meta = {"keyparity:run-id": "r-1", "keyparity:profile": "softhsm"}
    ours = cbom.to_json(cbom.document(assets, properties=meta, timestamp=WHEN, serial=SERIAL))
    assert ours.rstrip("\n") == _library(assets, meta)
    doc = json.loads(ours)
    # one dependency entry per component, as the library's Bom.validate() registers them
    assert sorted(d["ref"] for d in doc["dependencies"]) == sorted(
        c["bom-ref"] for c in doc["components"])


HSM2M = cbom.Platform("hsm2m", cbom.HARDWARE, "fips140-3-l3",
                      {"keyparity:hsm-type": "hsm2m.medium", "keyparity:mode": "FIPS"})


def test_the_cbom_of_a_cluster_is_what_cyclonedx_python_lib_writes():
    """The cluster as the BOM's subject (metadata.component), each algorithm with its
    execution environment and certification level there."""
    assets = _mixed()
    ours = cbom.to_json(cbom.document(assets, properties={}, timestamp=WHEN, serial=SERIAL,
                                      where=HSM2M))
    assert ours.rstrip("\n") == _library(assets, {}, HSM2M)
    doc = json.loads(ours)
    assert doc["metadata"]["component"]["name"] == "hsm2m"
    algorithms = [c["cryptoProperties"]["algorithmProperties"] for c in doc["components"]
                  if c["cryptoProperties"]["assetType"] == "algorithm"]
    assert {(a["executionEnvironment"], tuple(a["certificationLevel"])) for a in algorithms} \
        == {("hardware", ("fips140-3-l3",))}


@pytest.mark.parametrize(("cluster", "expected"), [
    ({"name": "hsm1", "hsm_type": "hsm1.medium", "mode": "FIPS"}, ("hardware", "fips140-2-l3")),
    ({"name": "hsm2m", "hsm_type": "hsm2m.medium", "mode": "FIPS"},
     ("hardware", "fips140-3-l3")),
    ({"name": "hsm2m", "hsm_type": "hsm2m.medium", "mode": "NON_FIPS"}, ("hardware", "none")),
    ({"name": "hsm2", "mode": "NON_FIPS", "token": {"manufacturer": "SoftHSM project",
                                                   "model": "SoftHSM v2"}},
     ("software-plain-ram", "none")),
    # the CloudHSM stand-in is SoftHSM, whatever its profile declares
    ({"name": "hsm1", "hsm_type": "hsm1.medium", "mode": "FIPS",
      "token": {"manufacturer": "SoftHSM project", "model": "SoftHSM v2"}},
     ("software-plain-ram", "none")),
    ({"name": "hsm9", "mode": "FIPS", "token": {"model": "Luna K7"}}, ("unknown", "unknown")),
])
def test_certification_level_by_hsm_type_and_mode(cluster, expected):
    where = cbom.platform(cluster)
    assert (where.environment, where.certification) == expected


def test_the_run_cbom_is_of_the_target_and_names_the_sources_level():
    doc = json.loads((TESTDATA / "evidence-failing.json").read_text())
    out = json.loads(cbom.from_evidence(doc))
    assert out["metadata"]["component"]["name"] == doc["clusters"]["target"]["name"]
    meta = {p["name"]: p["value"] for p in out["metadata"]["properties"]}
    assert meta["keyparity:source-certification-level"] == "none"  # SoftHSM
    algorithms = [c["cryptoProperties"]["algorithmProperties"] for c in out["components"]
                  if c["cryptoProperties"]["assetType"] == "algorithm"]
    assert algorithms and all(a["executionEnvironment"] == "software-plain-ram"
                              and a["certificationLevel"] == ["none"] for a in algorithms)


def test_a_cbom_that_breaks_a_format_is_refused():
    """The schema's formats are checked (rfc3339-validator, rfc3986-validator, and keyparity's
    iri-reference): a timestamp that is no date-time does not pass."""
    doc = cbom.document(_assets(2), timestamp=WHEN)
    doc["metadata"]["timestamp"] = "yesterday"
    with pytest.raises(cbom.CbomError, match="is not a 'date-time'"):
        cbom.validate(json.dumps(doc))


@pytest.mark.parametrize("iri, valid", [
    ("https://example.com/keys/k-aes128", True), ("urn:uuid:3c04f7aa-0000-4000-8000-000000000001",
                                                  True),
    ("https://example.com/schl\u00fcssel?\u00e4=1#\u00df", True), ("../evidence.json", True),
    ("https://example.com/a key", False), ("http://[::1", False), ("%zz", False)])
def test_iri_references_are_checked_without_rfc3987_syntax(iri, valid):
    """RFC 3987's mapping to a URI-reference (RFC 3986) decides; an IRI-reference in the CBOM
    that is none is refused by the validator."""
    assert cbom.iri_reference(iri) is valid
    doc = cbom.document(_assets(1), timestamp=WHEN)
    doc["externalReferences"] = [{"type": "other", "url": iri}]
    if valid:
        cbom.validate(json.dumps(doc))
    else:
        with pytest.raises(cbom.CbomError, match=r"externalReferences\[0\]\.url"):
            cbom.validate(json.dumps(doc))


def test_a_validator_that_cannot_check_the_formats_is_an_error(monkeypatch):
    """Without the packages that check formats, jsonschema lets any string pass: the CBOM
    is then refused as not validated, never passed half-checked."""
    from jsonschema import Draft7Validator

    assert cbom.missing_formats() == []
    checkers = dict(Draft7Validator.FORMAT_CHECKER.checkers)
    checkers.pop("date-time")
    monkeypatch.setattr(Draft7Validator.FORMAT_CHECKER, "checkers", checkers)
    with pytest.raises(cbom.CbomError, match="does not check date-time"):
        cbom.validate(cbom.to_json(cbom.document(_assets(1))))


def test_two_keys_with_one_label_are_refused():
    twice = [cbom.Asset(label="k", type="aes", size=256, state=cbom.ACTIVE)] * 2
    with pytest.raises(cbom.CbomError, match="two keys labelled 'k'"):
        cbom.document(twice)


def test_sample_keeps_one_component_per_shape():
    doc = json.loads(cbom.to_json(cbom.document(_assets(600))))
    sampled = cbom.sample(doc)
    kinds = {(c["name"].startswith("k-"), c["cryptoProperties"]["assetType"])
             for c in sampled["components"]}
    assert len(doc["components"]) == 602  # 600 keys, 2 algorithms
    # keys of two types (their size and algorithm differ in value, not in shape) and two
    # algorithms of different shapes: at most a handful, never one per key
    assert len(sampled["components"]) <= 6
    assert (True, "related-crypto-material") in kinds and (False, "algorithm") in kinds
    assert {d["ref"] for d in sampled["dependencies"]} <= {c["bom-ref"]
                                                           for c in sampled["components"]}


def test_an_invalid_component_among_many_is_still_refused():
    doc = json.loads(cbom.to_json(cbom.document(_assets(cbom.FULL_VALIDATION + 50))))
    doc["components"][-1]["cryptoProperties"]["relatedCryptoMaterialProperties"]["state"] = \
        "misplaced"  # not a CycloneDX key state: a shape of its own
    with pytest.raises(cbom.CbomError, match="does not validate against CycloneDX 1.6"):
        cbom.validate(json.dumps(doc))
    doc["components"][-1]["cryptoProperties"]["relatedCryptoMaterialProperties"]["state"] = \
        "active"
    doc["components"][-2]["bogus"] = "x"  # strict: no property the schema does not define
    with pytest.raises(cbom.CbomError):
        cbom.validate(json.dumps(doc))
