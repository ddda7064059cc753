"""Key inventories as CycloneDX 1.6 CBOMs (cryptography bills of materials).

Written as data (``document``), in linear time, and validated against the CycloneDX 1.6 JSON
schema (cyclonedx-python-lib's strict validator) before anything is written: a CBOM that does
not validate is an error (``CbomError``), never a warning. The library's own model is not used
to build it: its ``Bom.validate`` is quadratic in the number of components (minutes at 16,000
keys; CycloneDX/cyclonedx-python-lib#1006). tests/unit/test_cbom.py builds the same keys with the
library's model and checks that both write the same bytes.

Shape. Each key is one component of type ``cryptographic-asset`` whose crypto properties are
of asset type ``related-crypto-material``: its material type (``secret-key`` for des2, des3,
aes and generic-secret keys; ``private-key`` for an RSA or EC key pair, whose public half is
identified by its fingerprint), its CKA_ID (``id``, when not empty), its size in bits, its key
state, and ``algorithmRef``: CycloneDX 1.6 names a key's algorithm by reference, so each
algorithm of the inventory (``AES-256``, ``3DES``, ``3DES (two-key)``, ``HMAC``, ``RSA-2048``,
``EC P-384``) is a component of asset type ``algorithm`` too, with its primitive, parameter
set, curve and security levels. What CycloneDX has no field for is a component property in
the ``keyparity:`` namespace: ``keyparity:kcv`` (``keyparity inventory``'s secret keys: the
3-byte key check value, computed by the token, for people to read) or
``keyparity:fingerprint`` (RSA and EC: SHA-256 of the public key's DER
SubjectPublicKeyInfo), a run's identity proof (``keyparity:identity-method``, ``-challenge``,
``-bits``, ``-source``, ``-target``, ``-match``: keyparity.hsm.proof), and the key's PKCS #11
type, cluster, disposition...

Nothing secret is in a CBOM: ``value`` of the related crypto material is never set, and a
KCV is 3 bytes of an encrypted zero block, not the key.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, atomic, keytypes
from ..errors import KeyparityError

SPEC_VERSION = "1.6"
FILE_NAME = "cbom.json"  # in a run directory

SECRET_KEY, PRIVATE_KEY, PUBLIC_KEY = "secret-key", "private-key", "public-key"
# key states (NIST SP 800-57 Part 1 section 7, as CycloneDX names them)
ACTIVE, PRE_ACTIVATION, SUSPENDED = "active", "pre-activation", "suspended"
DEACTIVATED, COMPROMISED, DESTROYED = "deactivated", "compromised", "destroyed"



class CbomError(KeyparityError):
    """A CBOM could not be built, or does not validate against the CycloneDX 1.6 schema."""


@dataclass(frozen=True)
class Asset:
    """One key of a CBOM. ``type``: keyparity's key type (des2 des3 aes generic-secret rsa ec);
    ``curve``: secp384r1 or P-384; ``properties``: ``keyparity:`` component properties (name ->
    text), written in this order."""

    label: str
    type: str
    state: str
    size: int | None = None
    curve: str | None = None
    cka_id: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def material(self) -> str:
        return PRIVATE_KEY if self.type in keytypes.ASYMMETRIC else SECRET_KEY

    @property
    def bits(self) -> int | None:
        """The key's size in bits as a CBOM gives it (an EC key: its curve's)."""
        if self.type == "ec":
            curve = keytypes.curve_of(self.curve)
            return curve.bits if curve else None
        info = keytypes.KEY_TYPES.get(self.type)
        return self.size or (info.stored_bits if info else None)


@dataclass(frozen=True)
class Algorithm:
    """The algorithm of a key, as a CycloneDX algorithm component describes it."""

    name: str
    primitive: str
    parameter_set: str | None = None
    curve: str | None = None  # https://neuromancer.sk/std/ name, e.g. nist/P-384
    classical: int | None = None  # classical security strength in bits (SP 800-57)
    quantum: int | None = None  # NIST PQC security category; 0: none is met
    oid: str | None = None

    @property
    def ref(self) -> str:
        return f"algorithm:{self.name}"


def algorithm(key_type: str, size: int | None, curve: str | None) -> Algorithm:
    """``AES-256``, ``3DES``, ``3DES (two-key)``, ``HMAC``, ``RSA-2048``, ``EC P-384``.

    Everything but the names is keyparity.keytypes' (security strengths: SP 800-57 Part 1,
    Table 2; quantum: NIST's PQC categories, AES-128/192/256: 1/3/5; RSA, EC, TDEA: 0)."""
    info = keytypes.KEY_TYPES.get(key_type)
    if info is None:
        return Algorithm(key_type, "unknown")
    name, parameter_set, named_curve = info.cbom_name, info.cbom_parameter_set, None
    if info.size_in_name and size:
        name, parameter_set = f"{name}-{size}", str(size)
    if key_type == "ec":
        known = keytypes.curve_of(curve)
        name = f"EC {known.nist}" if known else f"EC {curve or ''}".strip()
        named_curve = f"nist/{known.nist}" if known else None
    return Algorithm(name, info.cbom_primitive, parameter_set, curve=named_curve,
                     classical=keytypes.classical_strength(key_type, size, curve),
                     quantum=keytypes.quantum_category(key_type, size), oid=info.oid)


SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"

# CycloneDX 1.6 ``certificationLevel`` of the keys on a cluster, by its HSM type and mode. AWS
# CloudHSM User Guide, "Compliance validation for AWS CloudHSM" (fips-validation.html):
# hsm1.medium is FIPS 140-2 level 3 certified (certificate #4218), hsm2m.medium FIPS 140-3
# level 3 (certificate #4703); "AWS CloudHSM cluster modes" (cluster-hsm-types.html): only a
# FIPS-mode cluster restricts itself to FIPS-validated keys and algorithms, and "For clusters in
# FIPS mode, AWS CloudHSM provides FIPS-approved HSMs" - a NON_FIPS cluster's keys claim none.
CERTIFICATION = {("hsm1.medium", "FIPS"): "fips140-2-l3", ("hsm2m.medium", "FIPS"): "fips140-3-l3"}
NONE, UNKNOWN = "none", "unknown"
HARDWARE, SOFTWARE = "hardware", "software-plain-ram"  # CycloneDX executionEnvironment


@dataclass(frozen=True)
class Platform:
    """The cluster that holds a CBOM's keys: the BOM's ``metadata.component`` (a device), and
    the execution environment and certification level of every algorithm on it."""

    name: str
    environment: str = UNKNOWN
    certification: str = UNKNOWN
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"cluster:{self.name}"


def platform(cluster: Mapping[str, Any]) -> Platform:
    """The platform of a cluster as the evidence records it (``clusters.<role>``: name, mode,
    ``hsm_type``, the token read). SoftHSM is software and certified to nothing, whatever the
    profile declares; a CloudHSM cluster (an HSM type) is hardware, certified by CERTIFICATION
    (a NON_FIPS cluster: none); anything else is unknown."""
    token = cluster.get("token") if isinstance(cluster.get("token"), dict) else {}
    model = " ".join(str(token.get(k) or "") for k in ("manufacturer", "model")).strip()
    hsm_type, mode = cluster.get("hsm_type"), cluster.get("mode")
    if "SoftHSM" in model:
        environment, certification = SOFTWARE, NONE
    elif hsm_type:
        environment = HARDWARE
        certification = CERTIFICATION.get((hsm_type, mode),
                                          NONE if mode == "NON_FIPS" else UNKNOWN)
    else:
        environment = certification = UNKNOWN
    props = {"keyparity:mode": mode, "keyparity:mode-source": cluster.get("mode_source"),
             "keyparity:hsm-type": hsm_type, "keyparity:token-model": model or None,
             "keyparity:token-serial": token.get("serial"),
             "keyparity:aws-cluster-id": cluster.get("aws_cluster_id")}
    return Platform(str(cluster.get("name") or UNKNOWN), environment, certification,
                    {k: str(v) for k, v in props.items() if v})


def _algorithm_component(alg: Algorithm, where: Platform | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if where is not None:
        props["certificationLevel"] = [where.certification]
    if alg.classical is not None:
        props["classicalSecurityLevel"] = alg.classical
    if alg.curve:
        props["curve"] = alg.curve
    if where is not None:
        props["executionEnvironment"] = where.environment
    if alg.quantum is not None:
        props["nistQuantumSecurityLevel"] = alg.quantum
    if alg.parameter_set:
        props["parameterSetIdentifier"] = alg.parameter_set
    props["primitive"] = alg.primitive
    crypto: dict[str, Any] = {"algorithmProperties": props, "assetType": "algorithm"}
    if alg.oid:
        crypto["oid"] = alg.oid
    return {"bom-ref": alg.ref, "cryptoProperties": crypto, "name": alg.name,
            "type": "cryptographic-asset"}


def _key_component(asset: Asset, alg: Algorithm) -> dict[str, Any]:
    material: dict[str, Any] = {"algorithmRef": alg.ref}
    if asset.cka_id:
        material["id"] = asset.cka_id
    if asset.bits is not None:
        material["size"] = asset.bits
    material["state"] = asset.state
    material["type"] = asset.material
    component: dict[str, Any] = {
        "bom-ref": f"key:{asset.label}",
        "cryptoProperties": {"assetType": "related-crypto-material",
                             "relatedCryptoMaterialProperties": material},
        "name": asset.label}
    if asset.properties:
        component["properties"] = _properties(asset.properties)
    component["type"] = "cryptographic-asset"
    return component


def _properties(props: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted((k, str(v)) for k, v in props.items())]


def _dependencies(components: list[dict[str, Any]],
                  where: Platform | None) -> list[dict[str, Any]]:
    """One entry per component, as cyclonedx-python-lib's Bom.validate() registers them; the
    cluster (the BOM's subject) depends on the keys it holds."""
    out: list[dict[str, Any]] = [{"ref": c["bom-ref"]} for c in components]
    if where is not None:
        keys = sorted(c["bom-ref"] for c in components
                      if c["cryptoProperties"]["assetType"] == "related-crypto-material")
        out.append({"dependsOn": keys, "ref": where.ref} if keys else {"ref": where.ref})
    return sorted(out, key=lambda d: d["ref"])


def document(assets: Sequence[Asset], *, properties: Mapping[str, str] | None = None,
             timestamp: dt.datetime | None = None, serial: uuid.UUID | None = None,
             where: Platform | None = None) -> dict[str, Any]:
    """The CycloneDX 1.6 document: one related-crypto-material component per asset, one
    algorithm component per algorithm they use; ``properties``: the BOM's metadata
    properties (what the inventory is of); ``where``: the cluster holding the keys (the BOM's
    subject, and each algorithm's execution environment and certification level). Written as data, in linear time: the same
    document cyclonedx-python-lib's model writes for these assets (tests/unit/test_cbom.py
    compares the two), which takes O(n log n) objects and minutes at 16,000 keys."""
    algorithms: dict[str, dict[str, Any]] = {}
    keys: list[dict[str, Any]] = []
    labels: set[str] = set()
    for asset in assets:
        if asset.label in labels:
            raise CbomError(f"two keys labelled {asset.label!r}: a CBOM names each key once")
        labels.add(asset.label)
        alg = algorithm(asset.type, asset.size, asset.curve)
        if alg.ref not in algorithms:
            algorithms[alg.ref] = _algorithm_component(alg, where)
        keys.append(_key_component(asset, alg))
    components = sorted([*algorithms.values(), *keys], key=lambda c: (c["name"], c["bom-ref"]))
    metadata: dict[str, Any] = {}
    if where is not None:
        metadata["component"] = {"bom-ref": where.ref, "name": where.name,
                                 **({"properties": _properties(where.properties)}
                                    if where.properties else {}), "type": "device"}
    if properties:
        metadata["properties"] = _properties(properties)
    metadata["timestamp"] = (timestamp or dt.datetime.now(dt.timezone.utc)).isoformat()
    metadata["tools"] = {"components": [{"name": "keyparity", "type": "application",
                                         "version": __version__}]}
    return {"components": components,
            "dependencies": _dependencies(components, where),
            "metadata": metadata, "serialNumber": f"urn:uuid:{serial or uuid.uuid4()}",
            "version": 1, "$schema": SCHEMA, "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION}


def to_json(doc: Mapping[str, Any]) -> str:
    """The document as JSON text, validated against the CycloneDX 1.6 schema (strict: no
    property the schema does not define); CbomError when it does not validate."""
    text = json.dumps(doc)
    validate(text)
    return text + "\n"


# Schema validation costs about 2 ms per component (jsonschema): 20 s at 10,000 keys. Above
# this many components a run validates one component of each shape (below) instead of every
# one; the keyparity tests validate whole documents.
FULL_VALIDATION = 200
_ENUM = re.compile(r"^[a-z][a-z-]{0,31}$")  # "cryptographic-asset", "active", "secret-key"


def _shape(value: Any) -> Any:
    """What the schema can tell apart in a value: its structure, and every string that looks
    like an enumeration value (lower-case words); other strings and numbers by their type."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(v), sort_keys=True) for v in value})
    if isinstance(value, str):
        return value if _ENUM.match(value) else "<str>"
    return type(value).__name__


def sample(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with one component of each shape, and the dependencies of those."""
    kept: dict[str, Any] = {}
    for component in doc.get("components", []):
        kept.setdefault(json.dumps(_shape(component), sort_keys=True), component)
    refs = {c.get("bom-ref") for c in kept.values()}
    out = dict(doc, components=list(kept.values()))
    if "dependencies" in doc:
        out["dependencies"] = [d for d in doc["dependencies"] if d.get("ref") in refs]
    return out


# The formats the CycloneDX 1.6 schema (and the SPDX and JSF schemas it includes) uses.
# jsonschema checks a format only when the package that checks it is installed (pyproject:
# rfc3339-validator, rfc3986-validator; iri-reference is iri_reference below) and otherwise
# lets any string pass:
# a validation without them is refused, never silently partial.
FORMATS = ("date-time", "iri-reference", "uri", "idn-email")


def iri_reference(instance: object) -> bool:
    """An RFC 3987 IRI-reference: checked as the RFC 3986 URI-reference that RFC 3987 section
    3.1 maps it to (each non-ASCII character percent-encoded as UTF-8). jsonschema checks this
    format only with rfc3987 (GPL) or rfc3987-syntax, which builds an Earley parser when
    jsonschema is imported - two seconds of every keyparity process, the profile's validation
    imports jsonschema - so keyparity brings this check instead."""
    if not isinstance(instance, str):
        return True
    from rfc3986_validator import validate_rfc3986

    uri = "".join(c if ord(c) < 0x80 else urllib.parse.quote(c, safe="") for c in instance)
    return bool(validate_rfc3986(uri, rule="URI_reference"))


def missing_formats() -> list[str]:
    """The formats of FORMATS the schema validator cannot check here ([] when it checks all).
    CycloneDX's validator checks formats with jsonschema's Draft 7 checker: ``iri-reference``
    is added to it here (``iri_reference``) when jsonschema has none."""
    from jsonschema import Draft7Validator

    checker = Draft7Validator.FORMAT_CHECKER
    if "iri-reference" not in checker.checkers:
        checker.checks("iri-reference")(iri_reference)
    return [f for f in FORMATS if f not in checker.checkers]


def validate(text: str) -> None:
    """Raise CbomError unless ``text`` is a valid CycloneDX 1.6 JSON document (the
    library's strict JSON schema validator, formats included); above FULL_VALIDATION
    components, one component of each shape is validated (``sample``)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    missing = missing_formats()
    if missing:
        raise CbomError(f"the CBOM cannot be validated: the schema validator does not check "
                        f"{', '.join(missing)} here; install rfc3339-validator and"
                        " rfc3986-validator")

    doc = json.loads(text)
    if len(doc.get("components", [])) > FULL_VALIDATION:
        text = json.dumps(sample(doc))
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        data = getattr(error, "data", None)  # jsonschema's ValidationError
        detail = " ".join(str(getattr(data, "message", None) or error).split())
        where = getattr(data, "json_path", None)
        raise CbomError(f"the CBOM does not validate against CycloneDX {SPEC_VERSION}"
                        + (f" at {where}" if where else "") + f": {detail[:300]}")


def write(path: Path, text: str) -> Path:
    """Write a validated CBOM atomically (keyparity.atomic)."""
    return atomic.write(path, text)


# ---- the CBOM of a run: its evidence document ------------------------------------------------

def state_of(verdict: str | None) -> str:
    """The CycloneDX key state of a migrated key, from its verdict in the evidence.

    * ``passed`` -> ``active``: the key was proven intact and usable on the target
      (migration, identity, vectors and attributes): it may be used there.
    * ``failed`` -> ``suspended``: a proof failed; the target's copy (if any) must not be
      used until the failure is investigated - SP 800-57's suspension, a halt pending review.
    * anything else -> ``pre-activation``: no proven copy on the target yet - a key to rotate
      (its replacement is still to be generated there), or a migration whose proofs were
      only partly run, skipped or not run. The key is not to be used on the target.

    ``deactivated``, ``compromised`` and ``destroyed`` are never given: a run proves copies,
    it does not observe a key's retirement or compromise."""
    if verdict == "passed":
        return ACTIVE
    if verdict == "failed":
        return SUSPENDED
    return PRE_ACTIVATION


def _identity(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    found = entry.get("identity")
    if not isinstance(found, dict):
        migration = entry.get("migration")
        found = migration.get("identity") if isinstance(migration, dict) else None
    return found if isinstance(found, dict) else {}


def run_assets(doc: Mapping[str, Any]) -> list[Asset]:
    """The inventory keys of an evidence document (``doc["keys"]``), as assets of the target:
    label, type, size or curve, target label, disposition, verdict -> state, and the identity
    proof when the run recorded one (keyparity.hsm.proof: its method, challenge and bits and
    each side's SHA-256; a key pair's public-key fingerprint)."""
    target = doc.get("clusters", {}).get("target", {}) if isinstance(doc.get("clusters"),
                                                                      dict) else {}
    out = []
    for label, entry in (doc.get("keys") or {}).items():
        if not isinstance(entry, dict):
            continue
        key_type = str(entry.get("type") or "unknown")
        verdict = entry.get("verdict")
        props: dict[str, str] = {"keyparity:key-type": key_type}
        if entry.get("target_label"):
            props["keyparity:target-label"] = str(entry["target_label"])
        if isinstance(target, dict) and target.get("name"):
            props["keyparity:cluster"] = str(target["name"])
        for name in ("disposition", "verdict"):
            if entry.get(name):
                props[f"keyparity:{name}"] = str(entry[name])
        ident = _identity(entry)
        if ident.get("source") and key_type in keytypes.ASYMMETRIC:  # SHA-256 of the public key
            props["keyparity:fingerprint"] = str(ident["source"])
        for part in ("method", "challenge", "bits", "source", "target", "match"):
            if ident.get(part) is not None:
                value = ident[part]
                props[f"keyparity:identity-{part}"] = (str(value).lower()
                                                       if isinstance(value, bool) else str(value))
        found = entry.get("preflight", {}).get("as_found") if isinstance(
            entry.get("preflight"), dict) else None
        cka_id = found.get("id") if isinstance(found, dict) else None
        size = entry.get("size") if isinstance(entry.get("size"), int) else None
        out.append(Asset(label=str(label), type=key_type, state=state_of(verdict), size=size,
                         curve=entry.get("curve"), cka_id=cka_id or None, properties=props))
    return out


def _when(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def from_evidence(doc: Mapping[str, Any]) -> str:
    """The CBOM of a run (validated JSON text): the migrated inventory, on the target."""
    run = doc.get("run", {}) if isinstance(doc.get("run"), dict) else {}
    clusters = doc.get("clusters", {}) if isinstance(doc.get("clusters"), dict) else {}
    summary = doc.get("summary", {}) if isinstance(doc.get("summary"), dict) else {}
    meta = {"keyparity:inventory": "migrated inventory of a keyparity run, on its target",
            "keyparity:run-id": run.get("run_id"), "keyparity:profile": run.get("profile"),
            "keyparity:source-cluster": clusters.get("source", {}).get("name"),
            "keyparity:target-cluster": clusters.get("target", {}).get("name"),
            "keyparity:run-verdict": summary.get("verdict")}
    source, target = clusters.get("source"), clusters.get("target")
    if isinstance(source, dict) and source.get("name"):
        meta["keyparity:source-certification-level"] = platform(source).certification
    return to_json(document(run_assets(doc),
                            properties={k: str(v) for k, v in meta.items() if v},
                            timestamp=_when(run.get("finished")) or _when(run.get("started")),
                            where=platform(target) if isinstance(target, dict)
                            and target.get("name") else None))


def write_run_cbom(run_dir: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``run_dir/cbom.json`` from the run's evidence document (bundle.finalize calls
    this before signing: the statement covers it)."""
    return write(Path(run_dir) / FILE_NAME, from_evidence(doc))


__all__ = ["ACTIVE", "CERTIFICATION", "PRE_ACTIVATION", "SUSPENDED", "Algorithm", "Asset",
           "CbomError", "FORMATS", "Platform", "algorithm", "document", "missing_formats",
           "platform", "from_evidence", "run_assets", "state_of", "to_json",
           "sample", "validate", "write", "write_run_cbom"]
