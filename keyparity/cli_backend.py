"""``migration.backend: cloudhsm-cli``: keys move with the CloudHSM guide's own CLI commands
instead of PKCS #11 wrap calls; the suites then verify every key through PKCS #11 as usual.

1. target: ``key generate-asymmetric-pair rsa`` (public ``wrap=true``, private ``unwrap=true``)
2. target: ``key generate-file --encoding pem`` of the public half
3. source: ``key import pem --key-type-class rsa-public --attributes wrap=true``
4. per key, source: ``key wrap rsa-aes`` into a blob file; target: ``key unwrap rsa-aes`` with
   the source key's attributes (or the inventory's) under the target label
5. ``key delete`` of the three wrapping objects.

The PEM and blob files live in a private (0700) temporary directory; each blob is removed as
soon as its key is unwrapped, the directory when the channel closes. The wrapping objects are
token objects here (single-command mode has no lasting session), so ``close`` deletes them and
reports what it could not delete.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from pkcs11 import Attribute

from . import attributes
from .cloudhsm_cli import CloudHsmCli
from .cluster import ClusterSession
from .errors import KeyNotFound, KeyparityError, MechanismUnsupported, pkcs11_step
from .keytypes import key_class
from .migrate import Side, locate
from .profile import KeySpec, Wrapping

KEY_TYPE_CLASS = {"aes": "aes", "des3": "des3", "generic-secret": "generic-secret",
                  "rsa": "rsa-private", "ec": "ec-private"}
# attributes given at unwrap, by their PKCS #11 name; CKA_PRIVATE and CKA_COPYABLE are not
# passed (CloudHSM keys are always private; the CLI documents no copyable attribute)
_NOT_PASSED = frozenset({"private", "copyable", "token"})


def cli_class(spec: KeySpec) -> str:
    return "private-key" if spec.is_asymmetric else "secret-key"


def unwrap_attributes(source: Mapping[str, Any], spec: KeySpec) -> list[str]:
    """``name=value`` pairs for ``key unwrap --attributes``: the source key's settable
    attributes, then the inventory's; CloudHSM CLI names (``wrap-with-trusted``)."""
    values: dict[str, Any] = {}
    for attr in attributes.SET_AT_UNWRAP[key_class(spec.type)]:
        name = attributes.name(attr)
        value = source.get(name, attributes.ABSENT)
        if name in _NOT_PASSED or value in (attributes.ABSENT, attributes.UNAVAILABLE):
            continue
        values[name] = value
    values.update({k: v for k, v in spec.attributes.items() if k not in _NOT_PASSED})
    out = []
    for name, value in values.items():
        if name == "id":
            if value:
                out.append(f"id=0x{value}")
            continue
        out.append(f"{name.replace('_', '-')}={'true' if value else 'false'}")
    return out


class CliChannel:
    """Moves keys from ``source`` to ``target`` with the CloudHSM CLI's RSA-AES wrap/unwrap."""

    def __init__(self, source: CloudHsmCli, target: CloudHsmCli, wrapping: Wrapping,
                 label: str) -> None:
        self.source, self.target, self.wrapping = source, target, wrapping
        self.public_label, self.private_label = f"{label}-public", f"{label}-private"
        self.imported_label = f"{label}-imported"
        self.method = (f"CloudHSM CLI key wrap/unwrap rsa-aes ({wrapping.oaep_hash}, "
                       f"{wrapping.mgf})")
        self.dir = Path(tempfile.mkdtemp(prefix="keyparity-cli-"))  # mode 0700
        self.live: list[tuple[CloudHsmCli, dict[str, str]]] = []
        self._n = 0
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        t, s, w = self.target, self.source, self.wrapping
        t.run("key", "generate-asymmetric-pair", "rsa", "--public-exponent", "65537",
              "--modulus-size-bits", str(w.rsa_bits), "--public-label", self.public_label,
              "--private-label", self.private_label, "--public-attributes", "wrap=true",
              "--private-attributes", "unwrap=true")
        self.live += [(t, {"label": self.public_label, "class": "public-key"}),
                      (t, {"label": self.private_label, "class": "private-key"})]
        pem = self.dir / "wrapping-public.pem"
        try:
            t.run("key", "generate-file", "--encoding", "pem", "--path", str(pem), "--filter",
                  f"attr.label={self.public_label}", "attr.class=public-key")
            s.run("key", "import", "pem", "--path", str(pem), "--label", self.imported_label,
                  "--key-type-class", "rsa-public", "--attributes", "wrap=true")
            self.live.append((s, {"label": self.imported_label, "class": "public-key"}))
        finally:
            pem.unlink(missing_ok=True)

    def move(self, spec: KeySpec, source_attributes: Mapping[str, Any],
             target: ClusterSession) -> Side:
        """Wrap ``spec`` on the source, unwrap it on the target; return it as PKCS #11 sees it."""
        if spec.type not in KEY_TYPE_CLASS:
            raise MechanismUnsupported(
                f"{spec.label!r}: the CloudHSM CLI has no key type for {spec.type} (CloudHSM "
                "does not hold 2-key 3DES); migrate it with migration.backend: pkcs11 or rotate it")
        self._n += 1
        blob = self.dir / f"key-{self._n}.bin"
        w = self.wrapping
        try:
            self.source.run(
                "key", "wrap", "rsa-aes", "--payload-filter", f"attr.label={spec.label}",
                f"attr.class={cli_class(spec)}", "--wrapping-filter",
                f"attr.label={self.imported_label}", "attr.class=public-key",
                "--hash-function", w.oaep_hash, "--mgf", w.mgf, "--path", str(blob))
            extra = unwrap_attributes(source_attributes, spec)
            self.target.run(
                "key", "unwrap", "rsa-aes", "--filter", f"attr.label={self.private_label}",
                "attr.class=private-key", "--key-type-class", KEY_TYPE_CLASS[spec.type],
                "--label", spec.target_label, "--hash-function", w.oaep_hash, "--mgf", w.mgf,
                "--data-path", str(blob), *(["--attributes", *extra] if extra else []))
        finally:
            blob.unlink(missing_ok=True)
        return find_unwrapped(target, spec)

    def close(self) -> list[str]:
        """Delete the wrapping objects and the temporary directory; returns what is left."""
        left = []
        for cli, filters in reversed(self.live):
            try:
                cli.delete(filters)
            except KeyparityError as exc:
                left.append(f"{cli.where}: {filters['label']} ({type(exc).__name__})")
        self.live.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


def find_unwrapped(cluster: ClusterSession, spec: KeySpec) -> Side:
    """The key the CLI just unwrapped, found through PKCS #11 (the object index was built
    before it existed, so the token is asked again)."""
    cls = key_class(spec.type)
    with pkcs11_step("find the unwrapped key", cluster.name):
        found = list(cluster.session.get_objects({Attribute.CLASS: cls,
                                                  Attribute.LABEL: spec.target_label}))
    known = {o.handle for o in cluster.index.find(cls, spec.target_label)}
    for obj in found:
        if obj.handle not in known:
            cluster.index.add(obj, spec.target_label)
    side = locate(cluster, spec, spec.target_label)
    if side is None:
        raise KeyNotFound(f"{spec.target_label!r} was unwrapped by the CloudHSM CLI but is not "
                          f"visible through PKCS #11 on {cluster.name}: check that the CLI and "
                          "PKCS #11 use the same crypto user and cluster")
    return side
