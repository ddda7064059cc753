"""Load and validate a YAML HSM migration profile into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from jsonschema import Draft202012Validator, ValidationError

from . import keytypes, module_env, roles, vector_table
from .errors import ProfileError
from .secrets import SecretRef, exposure, file_refusal, parse_secret_ref

__all__ = [
    "ATTRIBUTE_NAMES",
    "CURVE_ALIASES",
    "DIFFERENCE_NAMES",
    "KEY_TYPES",
    "Cluster",
    "KeySpec",
    "Profile",
    "ProfileError",
    "Wrapping",
    "default_vectors",
    "load_profile",
    "resolve_profile_arg",
]

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "token", "private", "sensitive", "extractable", "modifiable", "copyable",
    "destroyable", "encrypt", "decrypt", "wrap", "unwrap", "sign", "verify",
    "derive", "trusted", "wrap_with_trusted", "id",
)
DIFFERENCE_NAMES: tuple[str, ...] = ATTRIBUTE_NAMES + (
    "local", "always_sensitive", "never_extractable", "check_value",
    "key_gen_mechanism", "unique_id", "label", "start_date", "end_date",
)
CURVE_ALIASES = keytypes.CURVE_ALIASES
KEY_TYPES: tuple[str, ...] = tuple(keytypes.KEY_TYPES)


def default_vectors(key_type: str, curve: str | None = None) -> tuple[str, ...]:
    """Default vectors for a key type (ec needs its normalised or aliased curve)."""
    return vector_table.defaults(key_type, CURVE_ALIASES.get(curve or "", curve))


class _FrozenDict(dict):
    """A read-only dict (still JSON-serialisable, picklable and copyable)."""

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("profile mappings are read-only")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))


@dataclass(frozen=True)
class TlsSpec:
    """A cluster's TLS trust setup (CloudHSM: client <-> server on 2223, client <-> HSM)."""

    customer_ca: Path
    cluster_certificate: Path | None = None
    hsm_certificate: Path | None = None
    aws_hardware_certificate: Path | None = None
    aws_root: Path | None = None
    aws_root_sha256: str | None = None  # lower-case hex, no colons
    manufacturer_hardware_certificate: Path | None = None
    manufacturer_root: Path | None = None
    manufacturer_root_sha256: str | None = None
    cluster_csr: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None
    client_key_password: SecretRef | None = None
    default_client_certificate: Path | None = None
    trust_dir: Path = Path("/opt/cloudhsm/etc/certs")
    endpoints: tuple[str, ...] = ()
    port: int = 2223
    simulated_server: bool = False
    server_certificate: Path | None = None
    server_key: Path | None = None
    min_days_valid: int = 30
    warn_days_valid: int = 90
    timeout_s: float = 5.0


@dataclass(frozen=True)
class AwsSpec:
    """Where the cluster lives in AWS, for cloudhsmv2.describe_clusters."""

    cluster_id: str
    region: str
    profile: str | None = None
    role_arn: str | None = None
    min_active_hsms: int = 2
    backup_max_age_days: int = 7  # the source's newest READY backup may be this old at most
    kms_key_stores: bool = True  # look for KMS custom key stores backed by the cluster
    # read the cluster's HSM audit logs (CloudWatch Logs) and CloudTrail for the run's writes;
    # None: in production only (keyparity.cloudhsm.audit_log)
    audit_logs: bool | None = None


@dataclass(frozen=True)
class CloudHsmCliSpec:
    """The CloudHSM CLI, run in single-command mode as ``user`` (CLOUDHSM_ROLE/CLOUDHSM_PIN)."""

    user: str
    password: SecretRef
    path: Path = Path("/opt/cloudhsm/bin/cloudhsm-cli")
    role: str = "crypto-user"


@dataclass(frozen=True)
class OwnerSpec:
    """A key owner of the per-owner strategy: its crypto user on each cluster (``owners``)."""

    name: str
    source: CloudHsmCliSpec
    target: CloudHsmCliSpec


@dataclass(frozen=True)
class Cluster:
    role: str  # "source" | "target"
    name: str
    module: Path
    token_label: str | None
    slot: int | None
    pin: SecretRef
    mode: str  # "FIPS" | "NON_FIPS" (declared)
    tls: TlsSpec | None = None
    user: str | None = None  # CloudHSM: the PKCS #11 PIN is "user:password", the password is `pin`
    hsm_type: str | None = None  # expected: hsm1.medium | hsm2m.medium
    aws: AwsSpec | None = None
    cloudhsm_cli: CloudHsmCliSpec | None = None
    # the CloudHSM client's configuration on this host (the key availability check); None:
    # /opt/cloudhsm/etc/cloudhsm-pkcs11.cfg when the cluster has an aws block
    client_config: Path | None = None
    # where the per-key locks of runs writing to this cluster live (keyparity.hsm.lockdir);
    # None: the default for its module
    lock_dir: Path | None = None

    @property
    def is_cloudhsm(self) -> bool:
        """The profile says this is an AWS CloudHSM cluster (an HSM type, an aws or a
        cloudhsm_cli block), whose attribute rules then apply at unwrap."""
        return bool(self.hsm_type or self.aws or self.cloudhsm_cli)


@dataclass(frozen=True)
class Wrapping:
    mechanism: str
    rsa_bits: int
    oaep_hash: str
    mgf: str
    aes_bits: int
    trusted: bool = False  # an admin marks the wrapping key trusted (wrap-with-trusted keys)


@dataclass(frozen=True)
class KeySpec:
    index: int
    label: str
    target_label: str
    type: str
    size: int | None
    curve: str | None
    attributes: Mapping[str, bool | str]
    vectors: tuple[str, ...]
    disposition: str
    expected_differences: Mapping[str, str]
    owner: str | None = None
    share_with: tuple[str, ...] = ()
    id: str | None = None  # the source key's CKA_ID as inventoried (hex, lower case)
    role: str = roles.UNSPECIFIED  # what the key is for (keyparity.roles)

    @property
    def is_asymmetric(self) -> bool:
        return keytypes.KEY_TYPES[self.type].asymmetric


@dataclass(frozen=True)
class Exclusion:
    """An object on the source that is known and deliberately not migrated (``exclude:``)."""

    label: str
    reason: str
    cls: str | None = None  # secret | private | public | data | certificate ...; None: every
    #                         object of the label

    def covers(self, label: str | None, cls: str) -> bool:
        return label == self.label and self.cls in (None, cls)


@dataclass(frozen=True)
class SignerSpec:
    """One evidence signer: a PEM key file, a key inside a PKCS #11 token, or an AWS KMS key."""

    name: str
    type: str  # "file" | "pkcs11" | "kms"
    path: Path | None = None  # file: PEM private key
    password: SecretRef | None = None  # file: optional passphrase
    module: Path | None = None  # pkcs11
    token_label: str | None = None
    slot: int | None = None
    pin: SecretRef | None = None
    key_label: str | None = None
    key_id: str | None = None  # kms: key id, ARN or alias
    region: str | None = None
    aws_profile: str | None = None
    certificate: Path | None = None  # an X.509 certificate binding the key to a person


@dataclass(frozen=True)
class TimestampSpec:
    """The RFC 3161 time-stamping authority that stamps each signature (evidence.timestamp)."""

    url: str  # http(s)://..., or file:PATH (absolute): a file whose first line is the URL
    ca: Path  # PEM: the TSA's root certificate(s) (self-signed) and any intermediates
    hash: str = "sha256"  # sha256 | sha512: the message imprint's hash
    timeout_s: float = 10.0


@dataclass(frozen=True)
class EvidenceSpec:
    signers: tuple[SignerSpec, ...] = ()
    threshold: int = 0  # signatures `keyparity verify` requires by default; 0 when unsigned
    timestamp: TimestampSpec | None = None  # None: the times are the host's own
    # the signer whose key the run (and a retirement) signs with; the others countersign
    # apart (keyparity sign). None: every signer signs in the running process
    operator: str | None = None

    def run_signers(self) -> tuple[SignerSpec, ...]:
        """Who signs in the process that makes a bundle: the operator alone, or all."""
        if self.operator is None:
            return self.signers
        return tuple(s for s in self.signers if s.name == self.operator)


PATH_FIELDS = ("path", "key_path", "trust_dir")  # what a record names a file or directory by


@dataclass(frozen=True)
class Profile:
    path: Path
    sha256: str
    name: str
    description: str
    environment: str
    module_env: Mapping[str, str]
    source: Cluster | None  # None only in a reverify run (the cluster as it is now: target)
    target: Cluster | None  # None only in a baseline run (one cluster: source)
    wrapping: Wrapping
    migration_mode: str  # migrate | verify-only | baseline | reverify
    keys: tuple[KeySpec, ...]
    evidence: EvidenceSpec = EvidenceSpec()
    cutover: datetime.date | None = None  # the planned cutover date; None: the day of the run
    migration_backend: str = "pkcs11"  # pkcs11 | cloudhsm-cli
    apply_sharing: bool = False
    acknowledge_non_fips: Mapping[str, str] | None = None  # reason, approver, [ticket, date]
    # signed approvals (keyparity approve): approver name -> public key PEM; the envelopes
    approvers: Mapping[str, Path] = _FrozenDict()
    approvals: tuple[Path, ...] = ()
    exclude: tuple[Exclusion, ...] = ()
    # file: secrets and their modes (keyparity never reads them here): field, file, mode, ok
    secret_files: tuple[Mapping[str, Any], ...] = ()
    baseline: Path | None = None  # reverify: the baseline run directory (migration.baseline)
    owners: tuple[OwnerSpec, ...] = ()  # the per-owner strategy; () one user per cluster
    deactivation_days: int | None = None  # retirement.deactivation_days (keyparity.retire)
    classification: str = "internal"  # the bundle's classification, recorded and shown

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def without_role(self) -> tuple[KeySpec, ...]:
        """The keys whose profile names no role (a test environment only)."""
        return tuple(k for k in self.keys if k.role == roles.UNSPECIFIED)

    def cli_spec(self, role: str, owner: str | None = None) -> CloudHsmCliSpec | None:
        """The CLI login of ``role`` for keys of ``owner``: that owner's user when the profile
        names owners, else the cluster's ``cloudhsm_cli`` (None without one)."""
        cluster: Cluster | None = getattr(self, role)
        for o in self.owners:
            if o.name == owner:
                return getattr(o, role)
        return cluster.cloudhsm_cli if cluster is not None else None

    def owner_of(self, spec: KeySpec) -> str | None:
        """The owner ``spec`` is migrated as (per-owner strategy), None otherwise."""
        return spec.owner if self.owners else None

    @property
    def single(self) -> bool:
        """A run on one cluster across time (baseline or reverify), not between two."""
        return self.migration_mode in SINGLE_CLUSTER_MODES

    @property
    def clusters(self) -> tuple[Cluster, ...]:
        """The clusters the profile names: source and target, or the one of a baseline
        (source) or a reverify (target)."""
        return tuple(c for c in (self.source, self.target) if c is not None)

    @property
    def cluster(self) -> Cluster:
        """The one cluster of a baseline or reverify run."""
        (one,) = self.clusters
        return one

    @property
    def pair(self) -> str:
        """``hsm1 -> hsm2``, or the one cluster with what the run does to it."""
        if self.single:
            return f"{self.cluster.name} ({self.migration_mode})"
        return f"{self.source.name} -> {self.target.name}"  # type: ignore[union-attr]

    def shown(self, path: str | Path) -> str:
        """A path as evidence records it: relative to the profile's directory, as the profile
        writes its own paths, when it lies in the project that holds the profile (the parent
        of the profile's directory); else its name alone. What is signed never holds the
        host's absolute paths."""
        return shown_path(path, self.path.parent)

    def shown_paths(self, record: Any, names: tuple[str, ...] = PATH_FIELDS) -> Any:
        """A copy of a record (a check's, a plan's) whose fields ``names``, at any depth, are
        shown as ``shown`` shows a path."""
        if isinstance(record, dict):
            return {k: self.shown(v) if k in names and isinstance(v, (str, Path))
                    else self.shown_paths(v, names) for k, v in record.items()}
        if isinstance(record, list):
            return [self.shown_paths(v, names) for v in record]
        return record

    def key(self, label: str) -> KeySpec:
        """The key spec with this (source) label; KeyError if absent."""
        for spec in self.keys:
            if spec.label == label:
                return spec
        raise KeyError(label)


def shown_path(path: str | Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies under ``base``'s parent, else its name (the
    rule of ``Profile.shown``)."""
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    if path.is_relative_to(base.parent) and base.parent != Path(base.anchor):
        return os.path.relpath(path, base)
    return path.name


def resolve_profile_arg(arg: str, rootdir: Path) -> Path:
    """Map a --hsm-profile value to a path: a path as given, or a name in hsm_profiles/."""
    if "/" in arg or arg.endswith((".yaml", ".yml")):
        return Path(arg)
    return Path(rootdir) / "hsm_profiles" / f"{arg}.yaml"


# --------------------------------------------------------------------------- loading


def load_profile(path: str | Path) -> Profile:
    """Read, parse, schema-check and semantically check a profile; raise ProfileError."""
    shown = Path(path)
    abspath = Path(os.path.normpath(shown.absolute()))
    try:
        raw = abspath.read_bytes()
    except FileNotFoundError:
        raise ProfileError(shown, "", "profile file not found") from None
    except OSError as exc:
        raise ProfileError(shown, "", f"cannot read profile: {exc.strerror or exc}") from None
    data = _parse_yaml(shown, raw)
    _validate_schema(shown, data)
    return _build(shown, abspath, hashlib.sha256(raw).hexdigest(), data)


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys and aliases, and keeps dates as text (an
    unquoted ``cutover: 2027-03-31`` is a date string like any other, checked once, by our
    rules).

    An alias (``*name``) is refused where it is read, before anything is built from it: a
    profile is short enough to write out, and aliases are how a small file becomes a huge or
    recursive structure (9 levels of 10 aliases: 10^9 paths to walk)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}) is not allowed in a profile: write "
                "the value out", event.start_mark)
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable key: reported by construct_mapping
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(shown: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = yaml.load(raw, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(shown, "", f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(shown, "", "invalid YAML: " + " ".join(str(exc).split())) from None
    except ValueError as exc:  # PyYAML's int(): "!!int 0x_", more than 4300 digits
        raise ProfileError(shown, "", "invalid YAML: " + " ".join(str(exc).split())) from None
    except RecursionError:
        raise ProfileError(shown, "", "invalid YAML: nested too deeply") from None
    if data is None:
        raise ProfileError(shown, "", "profile is empty (expected a mapping)")
    if not isinstance(data, dict):
        raise ProfileError(shown, "", f"top level must be a mapping, got {_type_name(data)}")
    return data


# --------------------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    text = resources.files("keyparity.schemas").joinpath("profile.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _validate_schema(shown: Path, data: dict[str, Any]) -> None:
    errors = list(_validator().iter_errors(data))
    if errors:
        first = min(errors, key=lambda e: _error_rank(e, data))
        field, message = _describe(first)
        raise ProfileError(shown, field, message)


_KEYWORD_RANK = {"type": 0, "additionalProperties": 1, "required": 2}


def _error_rank(error: ValidationError, data: Any) -> tuple[Any, ...]:
    """Shallowest first, then document order, then keyword priority."""
    positions: list[int] = []
    node = data
    for part in error.path:
        if isinstance(node, dict):
            positions.append(list(node).index(part))
        else:
            positions.append(int(part))
        node = node[part]
    return (len(positions), positions, _KEYWORD_RANK.get(str(error.validator), 9))


def _describe(error: ValidationError) -> tuple[str, str]:
    """Turn a jsonschema error into (field path, one-line message) without echoing secrets."""
    parts: list[str | int] = list(error.path)
    keyword = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if "propertyNames" in error.schema_path:
        parts.append(str(instance))
    if keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extra = [k for k in instance if k not in allowed][0]
        parts.append(str(extra))
        return _fmt(parts), f"unknown field {str(extra)!r} (allowed: {', '.join(allowed)})"
    if keyword == "required":
        missing = [k for k in error.validator_value if k not in instance][0]
        parts.append(missing)
        return _fmt(parts), "required field missing"
    if "x-error" in schema:
        return _fmt(parts), schema["x-error"]
    if keyword == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, str) else expected[0]
        return _fmt(parts), f"expected {_ARTICLE_TYPES.get(expected, expected)}, got {_type_name(instance)}"
    if keyword == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        return _fmt(parts), f"{_show(instance)} is not one of: {options}"
    messages = {
        "minLength": "must not be empty",
        "minItems": f"must contain at least {error.validator_value} item(s)",
        "uniqueItems": "must not contain duplicates",
        "minimum": f"must be >= {error.validator_value}",
        "maximum": f"must be <= {error.validator_value}",
        "pattern": f"must match the pattern {error.validator_value}",
    }
    return _fmt(parts), messages.get(str(keyword), f"fails schema keyword {keyword!r}")


_ARTICLE_TYPES = {
    "string": "a string", "integer": "an integer", "boolean": "a boolean (true/false)",
    "object": "a mapping", "array": "a list", "number": "a number",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"),
                       (str, "string"), (list, "list"), (dict, "mapping")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)


def _fmt(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- semantics

_Fail = Callable[[str, str], ProfileError]


def _build(shown: Path, abspath: Path, digest: str, data: dict[str, Any]) -> Profile:
    base = abspath.parent

    def fail(field: str, message: str) -> ProfileError:
        return ProfileError(shown, field, message)

    env = {name: _resolve_dot_path(value, base)
           for name, value in data.get("module_env", {}).items()}
    mode = data.get("migration", {}).get("mode", "migrate")
    roles = _roles(mode, data["clusters"], data.get("migration", {}), fail)
    clusters = data["clusters"]
    source = _cluster("source", clusters["source"], base, fail) if "source" in roles else None
    target = _cluster("target", clusters["target"], base, fail) if "target" in roles else None
    wrap = data.get("wrapping", {})
    oaep = wrap.get("oaep_hash", "sha256")
    wrapping = Wrapping(
        mechanism=wrap.get("mechanism", "rsa-aes"),
        # what the target supports best: a CloudHSM target RSA-4096 (SoftHSM's 2048 is
        # faster, and its OAEP-SHA-1 bounds its chain at 128 bits anyway)
        rsa_bits=int(wrap.get("rsa_bits", 4096 if target and target.is_cloudhsm else 2048)),
        oaep_hash=oaep,
        mgf=wrap.get("mgf", f"mgf1-{oaep}"),
        aes_bits=int(wrap.get("aes_bits", 256)),
        trusted=bool(wrap.get("trusted", False)),
    )
    if wrapping.mgf != f"mgf1-{oaep}":  # cloudhsm_cli-key-wrap-rsa-aes: the hashes must match
        raise fail("wrapping.mgf", f"{wrapping.mgf} does not match the OAEP hash {oaep}: the "
                                   f"mask generation function's hash must be the OAEP hash "
                                   f"(CloudHSM refuses any other), so it must be mgf1-{oaep}")
    keys = tuple(_key(i, item, fail) for i, item in enumerate(data["keys"]))
    _check_unique(keys, data["keys"], fail)
    exclude = _exclude(data.get("exclude", []), keys, fail)
    profile = Profile(
        path=abspath,
        sha256=digest,
        name=data["name"],
        description=data["description"],
        environment=data["environment"],
        module_env=_FrozenDict(env),
        source=source,
        target=target,
        wrapping=wrapping,
        migration_mode=mode,
        keys=keys,
        evidence=_evidence(data.get("evidence", {}), base, fail),
        cutover=_cutover(data.get("cutover"), fail),
        migration_backend=data.get("migration", {}).get("backend", "pkcs11"),
        apply_sharing=bool(data.get("migration", {}).get("apply_sharing", False)),
        acknowledge_non_fips=_ack(data.get("compliance", {}).get("acknowledge_non_fips")),
        approvers=_approvers(data.get("compliance", {}), base, fail),
        approvals=tuple(_under(base, p) for p in data.get("compliance", {}).get("approvals", [])),
        exclude=exclude,
        baseline=_baseline(data.get("migration", {}), base, fail) if mode == "reverify" else None,
        owners=_owners(data, source, target, keys, base, fail),
        deactivation_days=data.get("retirement", {}).get("deactivation_days"),
        classification=data.get("classification", "internal"),
    )
    _module_env(profile, fail)
    files = _secret_files(profile)
    if profile.environment == "production":
        for entry in files:
            if not entry["ok"]:
                fix = ("chmod 600" if "owned by" not in entry["problem"] else
                       "chown it to the user keyparity runs as:")
                raise fail(entry["field"], f"secret file {entry['file']} {entry['problem']}: a "
                           f"production profile refuses it; {fix} {entry['file']}")
        _production_minimum(profile, "classification" in data, fail)
    return dataclasses.replace(profile, secret_files=tuple(_FrozenDict(f) for f in files))


# keys[i].attributes.trusted: true is refused (keyparity.cloudhsm.key_policy says the same)
TRUSTED_AT_UNWRAP = (
    "trusted: true cannot be set at unwrap: the crypto user who unwraps cannot set trusted, "
    "only an admin can, afterwards (`key set-attribute --filter key-reference=<key-reference> "
    "--name trusted --value true`, logged in as an admin); remove trusted from the key's "
    "attributes")

# keys[i].share_with: "You can share a key with up to seven CUs in addition to the key owner."
# (AWS CloudHSM, cloudhsm_cli-key-share)
SHARE_MAX = 7

SINGLE_CLUSTER_MODES = ("baseline", "reverify")
# migration.mode -> the clusters it names
_ROLES = {"migrate": ("source", "target"), "verify-only": ("source", "target"),
          "baseline": ("source",), "reverify": ("target",)}
_WHY = {"baseline": "a baseline records one cluster as it is: clusters.source only",
        "reverify": "a re-verify proves one cluster against its baseline: clusters.target only "
                    "(the cluster as it is now)"}


def _roles(mode: str, clusters: Mapping[str, Any], migration: Mapping[str, Any],
           fail: _Fail) -> tuple[str, ...]:
    """The clusters ``mode`` needs; ProfileError for one missing or one too many."""
    roles = _ROLES[mode]
    for role in ("source", "target"):
        if role in roles and role not in clusters:
            raise fail(f"clusters.{role}", "required" + (f": {_WHY[mode]}" if mode in _WHY
                                                          else " (a migration has two clusters)"))
        if role not in roles and role in clusters:
            raise fail(f"clusters.{role}", f"not allowed with migration.mode {mode}: {_WHY[mode]}")
    if (mode == "reverify") != ("baseline" in migration):
        raise fail("migration.baseline", "required with migration.mode reverify: the baseline "
                   "run directory to prove the cluster against" if mode == "reverify" else
                   f"only with migration.mode reverify (this profile's mode is {mode})")
    return roles


def _baseline(migration: Mapping[str, Any], base: Path, fail: _Fail) -> Path:
    """The baseline run directory, relative to the profile's folder; it must hold a bundle."""
    path = Path(migration["baseline"])
    path = Path(os.path.normpath(path if path.is_absolute() else base / path))
    if not (path / "baseline.json").is_file():
        raise fail("migration.baseline", f"{path} holds no baseline.json: give the run "
                   "directory of a baseline run (migration.mode: baseline)")
    return path


def _secret_refs(profile: Profile) -> list[SecretRef]:
    """Every secret reference of the profile."""
    refs: list[SecretRef | None] = []
    for cluster in profile.clusters:
        refs.append(cluster.pin)
        refs.append(cluster.cloudhsm_cli.password if cluster.cloudhsm_cli else None)
        refs.append(cluster.tls.client_key_password if cluster.tls else None)
    for owner in profile.owners:
        refs += [owner.source.password, owner.target.password]
    for signer in profile.evidence.signers:
        refs += [signer.pin, signer.password]
    return [ref for ref in refs if ref is not None]


def _module_env(profile: Profile, fail: _Fail) -> None:
    """module_env sets only what a known PKCS #11 module reads, never a secret reference's
    variable (keyparity.module_env)."""
    secret_names = {ref.target: ref.field for ref in _secret_refs(profile)
                    if ref.scheme == "env"}
    for name in profile.module_env:
        why = module_env.refusal(name, secret_names)
        if why is not None:
            raise fail(f"module_env.{name}", why)


def _secret_files(profile: Profile) -> list[dict[str, Any]]:
    """Each file of the profile that holds a secret (a ``file:`` reference, a file signer's
    private key) with its mode: ``ok`` when neither the group nor others may read it and the
    user keyparity runs as owns it (keyparity.secrets.exposure: as ssh insists for a private
    key); ``problem`` says why not. The values are never read here."""
    files = [(ref.field, ref.target) for ref in _secret_refs(profile) if ref.scheme == "file"]
    files += [(f"evidence.signers[{i}].path", str(s.path))
              for i, s in enumerate(profile.evidence.signers) if s.type == "file"]
    out = []
    for field, path in files:
        mode, problem = exposure(path)
        out.append({"field": field, "file": path, "mode": mode, "ok": problem is None,
                    **({"problem": problem} if problem else {})})
    return out


_KEY_CLASSES = ("secret", "private", "public")  # a key's objects: migrated, never excluded


def _exclude(raw: list[dict[str, Any]], keys: tuple[KeySpec, ...],
             fail: _Fail) -> tuple[Exclusion, ...]:
    """``exclude:`` entries; one may not name an inventory key's objects (its certificate, a
    data object under its label may be), nor repeat another."""
    inventory = {k.label for k in keys}
    out: list[Exclusion] = []
    for i, item in enumerate(raw):
        entry = Exclusion(label=item["label"], reason=item["reason"], cls=item.get("class"))
        if entry.label in inventory and entry.cls in _KEY_CLASSES + (None,):
            raise fail(f"exclude[{i}].label", f"'{entry.label}' is an inventory key (keys:); "
                       "a key is either migrated or excluded")
        for j, other in enumerate(out):
            if other.label == entry.label and (None in (other.cls, entry.cls)
                                               or other.cls == entry.cls):
                raise fail(f"exclude[{i}]", f"'{entry.label}' is excluded twice "
                           f"(also exclude[{j}])")
        out.append(entry)
    return tuple(out)


_SIGNER_FIELDS = {
    "file": ({"path"}, {"password"}),
    "pkcs11": ({"module", "pin", "key_label"}, {"token_label", "slot"}),
    "kms": ({"key_id"}, {"region", "aws_profile"}),
}


def _evidence(raw: dict[str, Any], base: Path, fail: _Fail) -> EvidenceSpec:
    signers = tuple(_signer(i, item, base, fail) for i, item in enumerate(raw.get("signers", [])))
    names = [s.name for s in signers]
    keys = [_signer_key(s) for s in signers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise fail(f"evidence.signers[{i}].name", f"duplicate signer name '{name}'")
        if keys[i] in keys[:i]:
            other = names[keys.index(keys[i])]
            raise fail(f"evidence.signers[{i}]", f"signer '{name}' uses the same key as "
                       f"'{other}' ({keys[i]}): dual control needs a key per custodian")
    threshold = raw.get("threshold", len(signers))
    if threshold > len(signers):
        raise fail("evidence.threshold",
                   f"{threshold} signatures required but {len(signers)} signer(s) configured")
    operator = raw.get("operator")
    if operator is not None and operator not in names:
        raise fail("evidence.operator", f"no signer named '{operator}' (the signers are "
                   f"{', '.join(names) or 'none'})")
    return EvidenceSpec(signers=signers, threshold=threshold, operator=operator,
                        timestamp=_timestamp(raw.get("timestamp"), base, fail))


def _timestamp(raw: dict[str, Any] | None, base: Path, fail: _Fail) -> TimestampSpec | None:
    """evidence.timestamp: its files resolved against the profile's folder and present."""
    if raw is None:
        return None

    def present(field: str, value: str) -> Path:
        path = Path(os.path.normpath(base / value))
        if not path.is_file():
            raise fail(f"evidence.timestamp.{field}", f"file not found: {path}")
        return path

    url = raw["url"]
    if url.startswith("file:"):
        url = f"file:{present('url', url.removeprefix('file:'))}"
    return TimestampSpec(url=url, ca=present("ca", raw["ca"]), hash=raw.get("hash", "sha256"),
                         timeout_s=float(raw.get("timeout_s", 10)))


def _signer(index: int, raw: dict[str, Any], base: Path, fail: _Fail) -> SignerSpec:
    prefix = f"evidence.signers[{index}]"
    required, optional = _SIGNER_FIELDS[raw["type"]]
    for name in sorted(set(raw) - {"name", "type", "certificate"} - required - optional):
        raise fail(f"{prefix}.{name}", f"not allowed for a {raw['type']} signer")
    for name in sorted(required - set(raw)):
        raise fail(f"{prefix}.{name}", f"required field missing for a {raw['type']} signer")

    def path(field: str) -> Path | None:
        if field not in raw:
            return None
        value = Path(raw[field])
        value = Path(os.path.normpath(value if value.is_absolute() else base / value))
        if field == "path":  # a private key: a secret file
            why = file_refusal(value)
            if why is not None:
                raise fail(f"{prefix}.{field}", why)
        elif not value.is_file():
            raise fail(f"{prefix}.{field}", f"file not found: {value}")
        return value

    def secret(field: str) -> SecretRef | None:
        return _secret(f"{prefix}.{field}", raw[field], base, fail) if field in raw else None

    if raw["type"] == "pkcs11" and ("token_label" in raw) == ("slot" in raw):
        raise fail(prefix, "exactly one of token_label or slot is required")
    return SignerSpec(
        name=raw["name"], type=raw["type"], path=path("path"), password=secret("password"),
        module=path("module"), token_label=raw.get("token_label"), slot=raw.get("slot"),
        pin=secret("pin"), key_label=raw.get("key_label"), key_id=raw.get("key_id"),
        region=raw.get("region"), aws_profile=raw.get("aws_profile"),
        certificate=path("certificate"))


def _signer_key(signer: SignerSpec) -> str:
    """What names a signer's key in the profile itself: a key file by its real path, a token's
    key by module, token and label, a KMS key by id and region. (Two copies of one key file
    have one key id: the run's start loads the signers and refuses them.)"""
    if signer.type == "file":
        return f"the key file {os.path.realpath(str(signer.path))}"
    if signer.type == "pkcs11":
        token = signer.token_label if signer.token_label is not None else f"slot {signer.slot}"
        return (f"the key {signer.key_label!r} of token {token} of "
                f"{os.path.realpath(str(signer.module))}")
    return f"the KMS key {signer.key_id} in {signer.region or 'the default region'}"


_TLS_PATHS = ("customer_ca", "cluster_certificate", "hsm_certificate", "aws_hardware_certificate",
              "aws_root", "manufacturer_hardware_certificate", "manufacturer_root",
              "cluster_csr", "client_certificate", "client_key", "default_client_certificate",
              "server_certificate", "server_key")
_TLS_GROUPS = (
    ("aws_hardware_certificate", "aws_root", "aws_root_sha256"),
    ("manufacturer_hardware_certificate", "manufacturer_root", "manufacturer_root_sha256"),
    ("client_certificate", "client_key"),
    ("server_certificate", "server_key"),
)


def _secret(field: str, text: str, base: Path, fail: _Fail) -> SecretRef:
    """A secret reference (env:NAME or file:PATH); a file reference must exist. Never read."""
    try:
        ref = parse_secret_ref(text, field, base)
    except ValueError as exc:
        raise fail(field, str(exc)) from None
    why = file_refusal(ref.target) if ref.scheme == "file" else None
    if why is not None:
        raise fail(field, why)
    return ref


def _ack(raw: dict[str, str] | None) -> Mapping[str, str] | None:
    return _FrozenDict(raw) if raw is not None else None


def _under(base: Path, value: str) -> Path:
    path = Path(value)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _approvers(compliance: Mapping[str, Any], base: Path, fail: _Fail) -> Mapping[str, Path]:
    """``compliance.approvers``: who may sign an approval (keyparity.attest.signoff), each by
    the public key its signature is verified with."""
    out: dict[str, Path] = {}
    for i, item in enumerate(compliance.get("approvers", [])):
        if item["name"] in out:
            raise fail(f"compliance.approvers[{i}].name", f"duplicate approver {item['name']!r}")
        out[item["name"]] = _under(base, item["public_key"])
    return _FrozenDict(out)


def _cli(prefix: str, raw: dict[str, Any], base: Path, fail: _Fail) -> CloudHsmCliSpec:
    password = _secret(f"{prefix}.password", raw["password"], base, fail)
    extra = {"path": Path(raw["path"])} if "path" in raw else {}
    if "path" in raw and not extra["path"].is_absolute():
        extra["path"] = Path(os.path.normpath(base / extra["path"]))
    return CloudHsmCliSpec(user=raw["user"], password=password,
                           role=raw.get("role", "crypto-user"), **extra)


def _owners(data: Mapping[str, Any], source: Cluster | None, target: Cluster | None,
            keys: tuple[KeySpec, ...], where: Path, fail: _Fail) -> tuple[OwnerSpec, ...]:
    """``owners``: each a source and a target crypto user, run by the clusters' CLIs; every
    key to migrate names its owner among them (the backend must move keys per owner:
    keyparity.backends.owners_errors)."""
    raw = data.get("owners")
    if not raw:
        return ()
    out: list[OwnerSpec] = []
    for i, item in enumerate(raw):
        logins = {}
        for role, cluster in (("source", source), ("target", target)):
            if cluster is None or cluster.cloudhsm_cli is None:
                raise fail(f"owners[{i}].{role}", f"clusters.{role} has no cloudhsm_cli block "
                                                  "(its path runs this owner's CLI)")
            login = item[role]
            logins[role] = CloudHsmCliSpec(
                user=login["user"], path=cluster.cloudhsm_cli.path, role="crypto-user",
                password=_secret(f"owners[{i}].{role}.password", login["password"], where,
                                 fail))
        if item["name"] in {o.name for o in out}:
            raise fail(f"owners[{i}].name", f"duplicate owner {item['name']!r}")
        out.append(OwnerSpec(item["name"], logins["source"], logins["target"]))
    names = {o.name for o in out}
    for spec in keys:
        if spec.disposition == "migrate" and spec.owner not in names:
            said = f"owner {spec.owner!r} is not" if spec.owner else "no owner is"
            raise fail(f"keys[{spec.index}].owner",
                       f"{said} one of owners ({', '.join(sorted(names))}): with owners, each "
                       "key to migrate names the owner it is moved as")
    return tuple(out)


def _cutover(value: str | None, fail: _Fail) -> datetime.date | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise fail("cutover", f"'{value}' is not a date (YYYY-MM-DD)") from None


def _tls(prefix: str, raw: dict[str, Any], base: Path, fail: _Fail) -> TlsSpec:
    """File paths are resolved against the profile directory and must exist."""
    values: dict[str, Any] = {}
    for name in _TLS_PATHS:
        if name in raw:
            path = Path(raw[name])
            path = Path(os.path.normpath(path if path.is_absolute() else base / path))
            if not path.is_file():
                raise fail(f"{prefix}.{name}", f"file not found: {path}")
            values[name] = path
    for group in _TLS_GROUPS:
        given = [name for name in group if name in raw]
        if given and len(given) != len(group):
            missing = next(name for name in group if name not in raw)
            raise fail(f"{prefix}.{missing}", f"required with {given[0]}")
    if raw.get("hsm_certificate") is None and any(
            name in raw for name in ("aws_hardware_certificate", "manufacturer_hardware_certificate")):
        raise fail(f"{prefix}.hsm_certificate", "required with the hardware certificates")
    if raw.get("simulated_server") and "server_certificate" not in raw:
        raise fail(f"{prefix}.server_certificate", "required with simulated_server: true")
    for name in ("aws_root_sha256", "manufacturer_root_sha256"):
        if name in raw:
            pin = raw[name]
            if pin.startswith("file:"):  # a pin file, e.g. written by `keyparity demo pki`
                pin_path = Path(os.path.normpath(base / pin[5:]))
                if not pin_path.is_file():
                    raise fail(f"{prefix}.{name}", f"file not found: {pin_path}")
                pin = pin_path.read_text().strip()
            values[name] = pin.lower().removeprefix("sha256:").replace(":", "")
            if len(values[name]) != 64 or not all(c in "0123456789abcdef" for c in values[name]):
                raise fail(f"{prefix}.{name}", "a SHA-256 fingerprint has 64 hex digits")
    if "client_key_password" in raw:
        values["client_key_password"] = _secret(f"{prefix}.client_key_password",
                                                raw["client_key_password"], base, fail)
    if "trust_dir" in raw:
        trust = Path(raw["trust_dir"])
        values["trust_dir"] = Path(os.path.normpath(trust if trust.is_absolute() else base / trust))
    warn = raw.get("warn_days_valid", 90)
    least = raw.get("min_days_valid", 30)
    if warn < least:
        raise fail(f"{prefix}.warn_days_valid", f"{warn} is below min_days_valid ({least})")
    return TlsSpec(**values, endpoints=tuple(raw.get("endpoints", ())), port=raw.get("port", 2223),
                   simulated_server=bool(raw.get("simulated_server", False)),
                   min_days_valid=least, warn_days_valid=warn,
                   timeout_s=float(raw.get("timeout_s", 5.0)))


def _resolve_dot_path(value: str, base: Path) -> str:
    """Resolve values starting with ./ or ../ against the profile directory."""
    if value.startswith(("./", "../")):
        return os.path.normpath(base / value)
    return value


def _cluster(role: str, raw: dict[str, Any], base: Path, fail: _Fail) -> Cluster:
    prefix = f"clusters.{role}"
    if ("token_label" in raw) == ("slot" in raw):
        raise fail(prefix, "exactly one of token_label or slot is required")
    module = Path(raw["module"])
    module = Path(os.path.normpath(module if module.is_absolute() else base / module))
    if not module.is_file():
        raise fail(f"{prefix}.module", f"PKCS#11 module not found: {module}")
    pin = _secret(f"{prefix}.pin", raw["pin"], base, fail)
    return Cluster(
        role=role,
        name=raw["name"],
        module=module,
        token_label=raw.get("token_label"),
        slot=raw.get("slot"),
        pin=pin,
        mode=raw["mode"],
        tls=_tls(f"{prefix}.tls", raw["tls"], base, fail) if "tls" in raw else None,
        user=raw.get("user"),
        hsm_type=raw.get("hsm_type"),
        aws=AwsSpec(**raw["aws"]) if "aws" in raw else None,
        cloudhsm_cli=_cli(f"{prefix}.cloudhsm_cli", raw["cloudhsm_cli"], base, fail)
        if "cloudhsm_cli" in raw else None,
        client_config=Path(os.path.normpath(base / raw["client_config"]))
        if "client_config" in raw else None,
        lock_dir=Path(os.path.normpath(base / raw["lock_dir"])) if "lock_dir" in raw else None,
    )


def _production_minimum(profile: Profile, classified: bool, fail: _Fail) -> None:
    """What a production profile must say that a test one may leave out: every key's role (an
    unchecked key usage is what PCI DSS 3.6.1 and PCI PIN key separation ask about) and the
    bundle's classification."""
    for spec in profile.without_role:
        raise fail(f"keys[{spec.index}].role", "required in production: what the key is for ("
                   f"{', '.join(n for n in roles.NAMES if n != roles.UNSPECIFIED)}); its "
                   "target attributes and vectors are checked against it")
    if not classified:
        raise fail("classification", "required in production: the bundle's classification "
                   "(e.g. confidential), recorded in the evidence and shown in the report")


def _role(prefix: str, raw: dict[str, Any], key_type: str, fail: _Fail) -> str:
    """The key's role (``unspecified`` when the profile names none)."""
    role = raw.get("role", roles.UNSPECIFIED)
    problem = roles.problem(role, key_type)
    if problem is not None:
        raise fail(f"{prefix}.role", problem)
    return role


def _key(index: int, raw: dict[str, Any], fail: _Fail) -> KeySpec:
    prefix = f"keys[{index}]"
    key_type = raw["type"]
    size = int(raw["size"]) if "size" in raw else None
    check_size(key_type, size, f"{prefix}.size", fail)
    curve = raw.get("curve")
    if key_type == "ec" and curve is None:
        raise fail(f"{prefix}.curve", "required field missing for type ec")
    if key_type != "ec" and curve is not None:
        raise fail(f"{prefix}.curve", f"not allowed for type {key_type}")
    curve = CURVE_ALIASES[curve] if curve is not None else None
    role = _role(prefix, raw, key_type, fail)
    allowed = vector_table.allowed(key_type)
    vectors = (tuple(raw["vectors"]) if "vectors" in raw
               else vector_table.defaults(key_type, curve, role))
    for j, vector in enumerate(vectors):
        if vector not in allowed:
            raise fail(
                f"{prefix}.vectors[{j}]",
                f"'{vector}' is not allowed for type {key_type} (allowed: {', '.join(allowed)})",
            )
        if not roles.permits(role, vector_table.TABLE[vector].operations):
            raise fail(f"{prefix}.vectors[{j}]", (
                f"'{vector}' makes the key {' and '.join(vector_table.TABLE[vector].operations)}"
                f", which a {role} key may not do (keys[{index}].role)"))
    if raw.get("attributes", {}).get("trusted") is True:
        raise fail(f"{prefix}.attributes.trusted", TRUSTED_AT_UNWRAP)
    if len(raw.get("share_with", ())) > SHARE_MAX:
        raise fail(f"{prefix}.share_with", (
            f"CloudHSM shares a key with at most {SHARE_MAX} crypto users besides its owner "
            f"(AWS CloudHSM, cloudhsm_cli-key-share); {len(raw['share_with'])} given"))
    return KeySpec(
        index=index,
        label=raw["label"],
        target_label=raw.get("target_label", raw["label"]),
        type=key_type,
        size=size,
        curve=curve,
        attributes=_FrozenDict(raw.get("attributes", {})),
        vectors=vectors,
        disposition=raw.get("disposition", "migrate"),
        expected_differences=_FrozenDict(raw.get("expected_differences", {})),
        owner=raw.get("owner"),
        share_with=tuple(raw.get("share_with", ())),
        id=raw["id"].lower() if "id" in raw else None,
        role=role,
    )


def check_size(key_type: str, size: int | None, field: str, fail: _Fail) -> None:
    problem = keytypes.size_problem(key_type, size)
    if problem is not None:
        raise fail(field, problem)


def _check_unique(keys: tuple[KeySpec, ...], raw: list[dict[str, Any]], fail: _Fail) -> None:
    labels: dict[str, int] = {}
    targets: dict[str, int] = {}
    for spec in keys:
        if spec.label in labels:
            raise fail(
                f"keys[{spec.index}].label",
                f"duplicate label '{spec.label}' (also keys[{labels[spec.label]}])",
            )
        labels[spec.label] = spec.index
    for spec in keys:
        if spec.target_label in targets:
            attr = "target_label" if "target_label" in raw[spec.index] else "label"
            raise fail(
                f"keys[{spec.index}].{attr}",
                f"duplicate target label '{spec.target_label}' (also keys[{targets[spec.target_label]}])",
            )
        targets[spec.target_label] = spec.index
