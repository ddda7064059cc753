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
from cyclonedx.model.crypto import (AlgorithmProperties, CryptoAssetType, CryptoPrimitive,
                                    CryptoProperties, RelatedCryptoMaterialProperties,
                                    RelatedCryptoMaterialState, RelatedCryptoMaterialType)
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion

from keyparity import __version__
from keyparity.formats import cbom


def _assets(n: int, state: str = cbom.ACTIVE) -> list[cbom.Asset]:
    return [cbom.Asset(label=f"k-{i:05d}", type="aes" if i % 3 else "rsa", state=state,
                       size=256 if i % 3 else 2048, cka_id=f"{i:016x}",
                       properties={"keyparity:verdict": "passed"}) for i in range(n)]


WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SERIAL = uuid.UUID(int=7)


def _library(assets: list[cbom.Asset], properties: dict[str, str]) -> str:
    """The test oracle: the same CBOM built with cyclonedx-python-lib's model and written by
    its own outputter (quadratic in Bom.validate: fine at test sizes)."""
    bom = Bom(serial_number=SERIAL)
    bom.metadata.timestamp = WHEN
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
                        nist_quantum_security_level=alg.quantum)))
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
