#!/usr/bin/env python3
"""Generate docs/profile.md, the profile reference, from keyparity/schemas/profile.schema.json.

    .venv/bin/python docs/generate_profile_reference.py            # (re)write docs/profile.md
    .venv/bin/python docs/generate_profile_reference.py --check    # exit 1 if it is out of date
    .venv/bin/python docs/generate_profile_reference.py --stdout   # print it instead

Every field of the schema is one row: its path, its type and constraints (read from the
schema: enums, patterns, bounds, required), and what it means. The meaning is the schema's own
``description`` where it has one; otherwise it comes from DESCRIPTIONS below (the schema is
owned by keyparity/; the human texts live here). A schema field with neither is an error, and
so is an entry of DESCRIPTIONS that names no field: tests/unit/test_docs.py checks both, and that
docs/profile.md is exactly what this script produces now.

Sections: the top level of a profile, then one section per object of the schema's ``$defs``
(a cluster, its tls, aws and cloudhsm_cli blocks, a key, an exclusion, a signer), in the order
the schema first refers to them. Within a section a field is named by its path relative to the
section; ``name.*`` in DESCRIPTIONS covers every child of ``name`` not named on its own, and
rows that then read the same are printed as one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "keyparity" / "schemas" / "profile.schema.json"
OUTPUT = ROOT / "docs" / "profile.md"
ROOT_SECTION = "profile"

# --------------------------------------------------------------------------- the human texts
# section -> field path within the section -> meaning (Markdown). Links are relative to docs/.

DESCRIPTIONS: dict[str, dict[str, str]] = {
    ROOT_SECTION: {
        "name": "profile name (letters, digits, `_ . -`); recorded in the evidence with the "
                "profile's path and SHA-256",
        "description": "free text, recorded in the evidence",
        "environment": "`test` or `production`. Production: nothing is written without "
                       "`--hsm-confirm=<clusters.target.aws.cluster_id>` (without it the run is "
                       "preflight and verification only), and a `file:` secret that others may "
                       "read is refused; in `test` it is a warning in the header and "
                       "`run.secret_files` in the evidence. See "
                       "[production.md](production.md#safety-for-production)",
        "classification": "the bundle's classification (free text, e.g. `confidential`): "
                          "recorded as `run.classification` in the evidence and shown at the "
                          "top of report.html; default `internal` in a test environment, "
                          "required in production",
        "module_env": "environment variables a PKCS #11 module reads, set while the modules "
                      "load and put back afterwards (never process-wide): only `SOFTHSM2_CONF` "
                      "(SoftHSM), `PKCS11SPY` and `PKCS11SPY_OUTPUT` (OpenSC's pkcs11-spy), "
                      "`KEYPARITY_P11_TARGET` (keyparity's forwarding module, native/"
                      "p11forward); any other name is refused, a PIN reference's variable and `LD_*`/"
                      "`PYTHON*` included (see [production.md](production.md#module_env)); a "
                      "value starting with `./` or `../` is resolved against the profile's "
                      "directory",
        "clusters": "the two clusters",
        "clusters.source": "the cluster the keys move from (hsm1, FIPS, in the headline case): "
                           "a [cluster](#cluster). It may not be the same token as the target "
                           "(same module and token, or the same serial)",
        "clusters.target": "the cluster the keys move to (hsm2m, NON_FIPS): a "
                           "[cluster](#cluster). The wrapping pair is generated here",
        "wrapping": "how each key is wrapped on the source and unwrapped on the target (see "
                    "[design.md](design.md#how-keys-move))",
        "wrapping.mechanism": "`rsa-aes` (the only one, and the default): "
                              "`CKM_RSA_AES_KEY_WRAP`, or the same bytes in two steps inside "
                              "the HSMs",
        "wrapping.rsa_bits": "size of the wrapping RSA pair generated on the target: 2048, "
                             "3072, 4096; default 4096 on a CloudHSM target (an `hsm_type`, "
                             "`aws` or `cloudhsm_cli` block), else 2048. The chain's strength "
                             "(RSA, OAEP hash, AES key) is checked against each key's "
                             "(keyparity.strength): a weaker chain needs a signed wrap "
                             "exception",
        "wrapping.oaep_hash": "the OAEP hash, named as the CloudHSM CLI names them; default "
                              "`sha256`. Before the first key a throwaway key checks that both "
                              "tokens accept it (SoftHSM 2.6 accepts only `sha1`)",
        "wrapping.mgf": "the OAEP mask generation function; default `mgf1-<oaep_hash>`",
        "wrapping.aes_bits": "size of the ephemeral AES key: 128, 192, 256 (default)",
        "wrapping.trusted": "`true`: an admin will mark the wrapping key `trusted` before the "
                            "run, so keys with `wrap-with-trusted` can be wrapped (default "
                            "`false`: preflight fails such keys with the admin's step)",
        "migration": "how the suites treat the target",
        "migration.mode": "`migrate` (default: the suites perform the migration), "
                          "`verify-only` (keys were moved by other means; the target key is "
                          "found by label and nothing is written to either cluster), "
                          "`baseline` (one cluster, `clusters.source` only: record every key "
                          "and the census as they are, into the signed `baseline.json`) or "
                          "`reverify` (one cluster, `clusters.target` only: prove it against "
                          "`migration.baseline`); see [baseline.md](baseline.md)",
        "migration.baseline": "`reverify` only: the baseline run directory (relative to the "
                              "profile's folder); its bundle must verify with this profile's "
                              "`evidence.signers` and threshold, or the run is refused",
        "migration.backend": "`pkcs11` (default) or `cloudhsm-cli` (the CloudHSM guide's CLI "
                             "commands move the keys; see "
                             "[production.md](production.md#the-cli-as-migration-backend))",
        "migration.apply_sharing": "`true`: share keys with the missing `share_with` users "
                                   "(`key share`), then check again (default `false`)",
        "keys": "the inventory, one [key](#key) per entry; `keyparity inventory PROFILE` "
                "drafts it from the source. Labels must be unique, and so must target labels",
        "evidence": "who signs the evidence bundle (see "
                    "[auditors.md](auditors.md#signers-and-dual-control))",
        "evidence.signers": "the [signers](#signer); several signers put several signatures on "
                            "one envelope (dual control); names must be unique, and so must their "
                            "keys. Without signers "
                            "the statement is written in an envelope with no signature, the run "
                            "says `UNSIGNED`, and verification fails",
        "evidence.threshold": "signatures `keyparity verify` requires at least (default: all "
                              "signers; no more than there are signers); recorded in the "
                              "signed statement, so `verify --threshold` can raise it, never "
                              "lower it",
        "evidence.operator": "the signer (a `signers[].name`) whose key signs the run's bundle and "
                             "a retirement record in the running process; each other signer "
                             "countersigns apart, on their own machine (`keyparity sign "
                             "RUN_DIR --signer NAME --profile P --ack REF`). Without it every "
                             "signer signs in the running process, as before (see "
                             "[auditors.md](auditors.md#people-behind-the-signatures))",
        "evidence.timestamp": "an RFC 3161 time-stamping authority (TSA): each signature of "
                              "the run's bundle, the plan, the retirement record and a signed "
                              "journal head gets a time-stamp token from it, beside the "
                              "envelope (`evidence.tsr.json`, `plan.tsr.json`), which "
                              "`keyparity verify --tsa-root PEM` checks. A TSA that does not "
                              "answer stops a run (and `retire`) before it starts; one that "
                              "fails at the end fails the signing, in every environment: the "
                              "bundle is left unsigned and the run fails. Without it the "
                              "evidence says `run.time_source.tsa: null`: every time is the "
                              "host's own clock (see "
                              "[auditors.md](auditors.md#independent-time))",
        "evidence.timestamp.url": "the TSA's HTTP(S) endpoint (RFC 3161 §3.4), or `file:PATH` "
                                  "(relative to the profile's folder): a file whose first line "
                                  "is the URL (the demo TSA's free port)",
        "evidence.timestamp.ca": "PEM file (relative to the profile's folder) with the TSA's "
                                 "root certificate (self-signed) and any intermediates: each "
                                 "token is checked against it when it is received (message "
                                 "imprint, nonce, signature, chain, timeStamping EKU)",
        "evidence.timestamp.hash": "the message imprint's hash over the signature's bytes "
                                   "(default `sha256`)",
        "evidence.timestamp.timeout_s": "seconds to wait for the TSA (default 10)",
        "retirement": "how `keyparity retire` moves source keys through the NIST SP 800-57 "
                      "states (active, deactivated, destroyed)",
        "retirement.deactivation_days": "days a source key stays deactivated before `retire "
                                        "--destroy` may destroy it (default 0; required, at "
                                        "least 1, in production); a destroy before it ends is "
                                        "refused with the date it ends",
        "cutover": "the planned cutover date, `YYYY-MM-DD` (quote it in YAML; default: the day "
                   "of the run); certificates must stay valid past it",
        "compliance": "compliance acknowledgements",
        "compliance.acknowledge_non_fips": "a FIPS → NON_FIPS move needs it or a signed "
                                           "non-FIPS approval (`approvals`), which production "
                                           "requires (the run refuses to start without); "
                                           "recorded in the evidence (`compliance`, marked "
                                           "unsigned) and shown at the top of the report",
        "compliance.acknowledge_non_fips.reason": "why the keys leave FIPS mode",
        "compliance.acknowledge_non_fips.approver": "who approved it",
        "compliance.acknowledge_non_fips.ticket": "the change ticket (optional)",
        "compliance.acknowledge_non_fips.date": "the date of the approval (optional)",
        "compliance.approvers": "who may sign an approval (`keyparity approve`): each a `name` "
                                "(as the approval names them) and a `public_key`, the "
                                "approver's ECDSA P-384 public key (PEM) its signature is "
                                "verified with",
        "compliance.approvals": "signed approvals (`keyparity approve PROFILE --kind "
                                "wrap-exception|non-fips`): each verified before the run "
                                "starts (one that does not verify stops it) and recorded in "
                                "the evidence (`compliance`)",
    },
    "cluster": {
        "name": "display name used in messages and evidence",
        "module": "path of the PKCS #11 library (must exist). Each module is loaded once, by "
                  "its real path (a symlink and the file it names are one module); a module in "
                  "front of another, such as OpenSC's pkcs11-spy, cannot share it: give every "
                  "cluster and signer of a profile the same module path",
        "token_label": "which token, by label (exactly one of `token_label` and `slot`)",
        "slot": "which token, by slot number (exactly one of `token_label` and `slot`); "
                "CloudHSM SDK 5 with both clusters configured: one slot per cluster",
        "pin": "**a reference only**: `env:NAME` or `file:PATH` (one line: one trailing "
               "newline is stripped; the file must be a regular file, not a link). A literal PIN "
               "is rejected. For CloudHSM the PIN is `user:password` (see `user`). Never "
               "retried: see [production.md](production.md#logins) and "
               "[PIN files](production.md#pin-files)",
        "mode": "`FIPS` or `NON_FIPS`, as declared (recorded as *declared* in the evidence, "
                "*verified* where an `aws` block lets keyparity read it)",
        "tls": "the cluster's TLS trust setup: [tls](#tls). Without it the TLS suite skips the "
               "cluster, with that reason",
        "user": "CloudHSM crypto user: the PKCS #11 PIN becomes `user:password`, with `pin` the "
                "password",
        "hsm_type": "the expected HSM type (checked through `aws`)",
        "aws": "where the cluster lives in AWS: [aws](#aws). Without it the cluster suite is "
               "skipped and the mode is recorded as *declared*",
        "client_config": "the CloudHSM client's configuration on this host, checked for a "
                         "disabled key availability check (default with an `aws` block: "
                         "`/opt/cloudhsm/etc/cloudhsm-pkcs11.cfg`)",
        "cloudhsm_cli": "the CloudHSM CLI: [cloudhsm_cli](#cloudhsm_cli) (ownership, sharing, "
                        "CLI backend). Without it the ownership tests are skipped",
        "lock_dir": "the host directory for the per-key locks of a run writing to this cluster "
                    "(relative to the profile's folder); a subdirectory per cluster (its "
                    "`aws.cluster_id`, else its token's label and serial). Default: SoftHSM "
                    "beside its token directory (`<tokendir>.keyparity-locks/<serial>`), any "
                    "other module `/run/lock/keyparity`. Every run on one cluster must see the "
                    "same directory (runs on two hosts: a shared directory); see "
                    "[journal.md](journal.md#locks-and-resume)",
    },
    "tls": {
        "customer_ca": "`customerCA.crt`: the CA that issued the cluster certificate and the "
                       "client certificate",
        "cluster_certificate": "the cluster certificate: issued by `customer_ca`, valid now "
                               "and at least `min_days_valid` past `cutover`",
        "hsm_certificate": "the HSM certificate, which chains through the hardware certificates "
                           "to the AWS and manufacturer roots (required with them)",
        "aws_hardware_certificate": "the AWS hardware certificate (with `aws_root` and "
                                    "`aws_root_sha256`: all three or none)",
        "aws_root": "the AWS CloudHSM root certificate",
        "aws_root_sha256": "the AWS root's published SHA-256 fingerprint (hex, colons and a "
                           "`sha256:` prefix allowed), or `file:PATH` to a file holding one "
                           "(the demo's, written by `keyparity demo pki`)",
        "manufacturer_hardware_certificate": "the manufacturer's hardware certificate (with "
                                             "`manufacturer_root` and "
                                             "`manufacturer_root_sha256`: all three or none)",
        "manufacturer_root": "the manufacturer's root certificate (hsm1: Marvell "
                             "LiquidSecurity)",
        "manufacturer_root_sha256": "the manufacturer root's published SHA-256, as "
                                    "`aws_root_sha256`",
        "cluster_csr": "the cluster CSR: it must hold the HSM certificate's public key",
        "client_certificate": "`client.crt`: issued by `customer_ca` (or the package default) "
                              "and matching `client_key` (the two go together)",
        "client_key": "the client certificate's private key",
        "client_key_password": "the client key's password, a reference: `env:NAME` or "
                               "`file:PATH`",
        "default_client_certificate": "the package's default client certificate, accepted "
                                      "in place of one issued by `customer_ca`",
        "trust_dir": "directory of the trusted server certificates (`*.crt`, `*.pem`, …); "
                     "default `/opt/cloudhsm/etc/certs`",
        "endpoints": "the HSMs' addresses for the mutual-TLS handshake, `host[:port]`",
        "port": "port of an endpoint that names none (default 2223)",
        "simulated_server": "SoftHSM has no TLS front end: with `true` keyparity serves the "
                            "handshake on 127.0.0.1 (a free port) with `server_certificate` + "
                            "`server_key`, and the evidence says *simulated*",
        "server_certificate": "the simulated server's certificate (required with "
                              "`simulated_server: true`)",
        "server_key": "the simulated server's private key (with `server_certificate`)",
        "min_days_valid": "certificates must be valid at least this many days past `cutover` "
                          "(default 30)",
        "warn_days_valid": "a warning, in pytest and the evidence, below this many days "
                           "(default 90; not below `min_days_valid`)",
        "timeout_s": "handshake timeout in seconds (default 5)",
    },
    "aws": {
        "cluster_id": "the cluster's id; the target's is what `--hsm-confirm` must name in "
                      "production",
        "region": "its AWS region",
        "profile": "an AWS profile in `~/.aws/config` (default: the default credential chain)",
        "role_arn": "an IAM role to assume through STS (optional)",
        "min_active_hsms": "ACTIVE HSMs the cluster must have (default 2, for key "
                           "availability across AZs; 1 disables the check)",
        "backup_max_age_days": "the source's newest READY backup may be at most this old "
                               "when the inventory does not say when its newest key was made "
                               "(default 7)",
        "kms_key_stores": "`false`: do not look for KMS custom key stores backed by the "
                          "cluster (`kms:DescribeCustomKeyStores`; default `true`)",
        "audit_logs": "read the cluster's HSM audit logs (CloudWatch Logs "
                      "`/aws/cloudhsm/<cluster_id>`, `logs:FilterLogEvents`) and its CloudTrail "
                      "events (`cloudtrail:LookupEvents`) for the run's writes, each matched to "
                      "the journal (default: `true` in production, `false` elsewhere)",
    },
    "cloudhsm_cli": {
        "path": "the CLI (default `/opt/cloudhsm/bin/cloudhsm-cli`)",
        "user": "the user the CLI logs in as (single-command mode: role and PIN are passed "
                "as `CLOUDHSM_ROLE` and `CLOUDHSM_PIN`, never on the command line)",
        "password": "the user's password, a reference: `env:NAME` or `file:PATH`",
        "role": "the role the CLI logs in with (default `crypto-user`)",
    },
    "key": {
        "label": "the source key's label (unique)",
        "target_label": "label on the target (default: the same; unique)",
        "type": "the key type",
        "size": "bits: aes 128/192/256, generic-secret 8–4096 (multiple of 8), rsa "
                "1024–8192; required for those, not allowed for des2/des3/ec",
        "curve": "ec only (and required there)",
        "attributes": "attributes to set at unwrap, overriding the source's; the target must "
                      "then have the value asked",
        "attributes.*": "boolean attribute set at unwrap",
        "attributes.id": "CKA_ID to set at unwrap (hex); give one to a key whose CKA_ID would "
                         "be ambiguous on the target",
        "vectors": "which vectors to exercise (default per type): des2/des3 `des3-ecb "
                   "des3-cbc`; aes `aes-ecb aes-cbc aes-ctr aes-gcm`; generic-secret "
                   "`hmac-sha256` (also `hmac-sha384`, `hmac-sha512`); rsa "
                   "`rsa-pkcs1v15-sha256 rsa-pss-sha256 rsa-oaep-sha1` (also "
                   "`rsa-oaep-sha256`); ec `ecdsa-sha256` for P-256, `ecdsa-sha384` otherwise "
                   "(also `ecdsa-sha512`); also `des3-cmac`, `aes-cmac` (MACs) and "
                   "`aes-key-wrap` (a key-encrypting key wraps a session key made for the "
                   "vector). Only vectors the key's `role` permits: a role's default is the "
                   "type's defaults it permits, else the first vector of the type it permits "
                   "(a `mac` AES key: `aes-cmac`; a `key-encryption` AES key: `aes-key-wrap`)",
        "disposition": "`migrate` (default) or `rotate` (known non-extractable: reported as to "
                       "be rotated, never migrated, never silently skipped)",
        "role": "what the key is for (keyparity/roles.py): `data-encryption` (encrypt, decrypt), "
                "`key-encryption` (wrap, unwrap), `mac` (sign, verify), `pin` (encrypt, decrypt "
                "PIN blocks), `signing` and `ca` (sign, verify), `tokenisation` (encrypt, "
                "decrypt), `unspecified`. The target key may do nothing else (the attributes "
                "suite) and only the vectors the role permits run. Required in production; "
                "in a test environment a key without one is `unspecified`, with a warning, and "
                "its role check skips saying so",
        "expected_differences": "attribute name → reason, for differences you intend; "
                                "accepted with the reason given",
        "expected_differences.*": "why this attribute may differ on the target",
        "owner": "the crypto user expected to own the target key (checked through "
                 "`cloudhsm_cli`)",
        "share_with": "the crypto users the target key is shared with (checked through "
                      "`cloudhsm_cli`; see `migration.apply_sharing`)",
    },
    "exclude": {
        "label": "the object's label (an object without a label cannot be excluded); not an "
                 "inventory key's (but for an object of a class that is not a key's, such as "
                 "the key's certificate), and not excluded twice",
        "reason": "why it stays behind, recorded in the evidence",
        "class": "only objects of this class (default: every class): a key's (secret, "
                 "private, public), a data object (data), a certificate (certificate; keyparity "
                 "does not migrate certificates) or another PKCS #11 class",
    },
    "owner": {
        "name": "the owner's name, as `keys[].owner` gives it (unique): the crypto user who "
                "owns the key on the source, and who must own it on the target",
        "source": "the owner's login on the source: [owner_login](#owner_login); the source "
                  "cluster's `cloudhsm_cli.path` runs it",
        "target": "the owner's login on the target: [owner_login](#owner_login)",
    },
    "owner_login": {
        "user": "the crypto user the CLI logs in as for this owner's keys (only the owner may "
                "wrap a key; a key unwrapped by this user is owned by it)",
        "password": "the user's password, a reference: `env:NAME` or `file:PATH`",
    },
    "signer": {
        "name": "the signer's name (unique), named in the envelope and by `keyparity verify`",
        "type": "`file`: a PEM private key; `pkcs11`: a key inside an HSM, used through "
                "python-pkcs11, that never leaves it; `kms`: an AWS KMS `ECC_NIST_P384` key "
                "(Sign, `ECDSA_SHA_384`, `MessageType=DIGEST`). Whatever holds it, the key is "
                "ECDSA P-384 (any other is refused when the run starts: see "
                "[production.md](production.md#signer-keys))",
        "path": "`file`: the PEM private key (required; a regular file, not a link); held to "
                "the PIN-file rules: a `production` profile refuses one others may read or "
                "another user owns",
        "password": "`file`: the key's password, optional, a reference: `env:NAME` or "
                    "`file:PATH`",
        "module": "`pkcs11`: the PKCS #11 library (required)",
        "token_label": "`pkcs11`: which token (exactly one of `token_label` and `slot`)",
        "slot": "`pkcs11`: which token, by slot number",
        "pin": "`pkcs11`: the PIN, a reference (required; CloudHSM: `user:password`)",
        "key_label": "`pkcs11`: the signing key's label (required)",
        "key_id": "`kms`: the key id, ARN or alias (required)",
        "region": "`kms`: its region (optional)",
        "aws_profile": "`kms`: the AWS profile to use (optional)",
        "certificate": "an X.509 certificate (PEM) of the organisation's PKI binding this "
                       "signer's public key to a person (subject CN, e-mail); refused unless "
                       "its key is the signer's and it is valid when it signs; copied into the "
                       "bundle, and `keyparity verify --ca` names the person from it",
    },
}

INTRO = """\
# Profile reference

<!-- GENERATED by docs/generate_profile_reference.py from keyparity/schemas/profile.schema.json.
     Do not edit: change the schema or the generator's DESCRIPTIONS, then run
     .venv/bin/python docs/generate_profile_reference.py (tests/unit/test_docs.py checks it). -->

A profile is YAML: `--hsm-profile=NAME` reads `hsm_profiles/NAME.yaml`; anything with a `/` or
ending in `.yaml` is a path. It is validated once when pytest starts against
`keyparity/schemas/profile.schema.json`, then checked for what a schema cannot say (the rules
in the *meaning* column). Any error is one line naming the file and the field, e.g.
`hsm_profiles/prod.yaml: clusters.target.pin: a literal secret is not allowed; use env:NAME or
file:PATH`. A YAML mapping with a duplicate key is an error too. Relative paths (`module`, TLS
files, signer files, `file:` references, `module_env` values starting with `./` or `../`) are
resolved against the profile's directory.

Secrets are never in a profile: a PIN or password is a reference, `env:NAME` or `file:PATH`,
resolved when the run needs it (see [production.md](production.md#pin-files)).

Examples: `hsm_profiles/softhsm.yaml` is the embedded demo (3-key and 2-key 3DES, AES-128,
AES-256, an HMAC generic secret, RSA-2048, EC P-384, and one non-extractable AES key marked
`rotate`); `hsm_profiles/prod.example.yaml` is a complete, commented hsm1 (FIPS) → hsm2m
(NON_FIPS) profile.

*Required* is what the schema requires; a *meaning* may add conditions (e.g. exactly one of
`token_label` and `slot`).
"""


# --------------------------------------------------------------------------- the schema walk


class Field:
    """One row: a field of a section, with its schema and whether its parent requires it."""

    def __init__(self, section: str, path: str, schema: dict[str, Any], required: bool) -> None:
        self.section, self.path, self.schema, self.required = section, path, schema, required


def _def_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref", "")
    return ref.removeprefix("#/$defs/") if ref.startswith("#/$defs/") else None


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" and "properties" in schema


def _object_def(schema: dict[str, Any], defs: dict[str, Any]) -> str | None:
    """The $defs name when ``schema`` (or an array's items) refers to an object definition."""
    target = schema.get("items", schema) if schema.get("type") == "array" else schema
    name = _def_name(target)
    return name if name and _is_object(defs[name]) else None


def sections(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(section name, object schema, profile paths where it is used), the top level first, then
    the object definitions in the order the schema first refers to them."""
    defs = schema.get("$defs", {})
    order = [ROOT_SECTION]
    refs: dict[str, list[tuple[str, str]]] = {}  # definition -> [(referring section, path)]
    for section in order:  # grows while it is read: breadth first
        obj = schema if section == ROOT_SECTION else defs[section]
        for field in _walk(section, obj, ""):
            name = _object_def(field.schema, defs)
            if name is None:
                continue
            suffix = "[]" if field.schema.get("type") == "array" else ""
            refs.setdefault(name, []).append((section, field.path + suffix))
            if name not in order:
                order.append(name)

    def used_at(section: str, seen: tuple[str, ...] = ()) -> list[str]:
        if section == ROOT_SECTION:
            return [""]
        if section in seen:  # a recursive definition: name it once
            return [f"<{section}>"]
        return [f"{outer}.{path}" if outer else path
                for parent, path in refs[section] for outer in used_at(parent, seen + (section,))]

    return [(name, schema if name == ROOT_SECTION else defs[name],
             [] if name == ROOT_SECTION else used_at(name)) for name in order]


def _walk(section: str, obj: dict[str, Any], prefix: str) -> Iterator[Field]:
    """Every field of an object, depth first; inline objects are expanded, $refs are not."""
    required = set(obj.get("required", ()))
    for name, sub in obj.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield Field(section, path, sub, name in required)
        if _is_object(sub):
            yield from _walk(section, sub, path + ".")


def fields(schema: dict[str, Any]) -> list[Field]:
    return [f for name, obj, _ in sections(schema) for f in _walk(name, obj, "")]


def _lookup(section: str, path: str,
            descriptions: dict[str, dict[str, str]]) -> tuple[str | None, str | None]:
    """(text, the DESCRIPTIONS key that gave it) for a field without a schema description."""
    table = descriptions.get(section, {})
    if path in table:
        return table[path], path
    parent = path.rpartition(".")[0]
    while parent:
        if parent + ".*" in table:
            return table[parent + ".*"], parent + ".*"
        parent = parent.rpartition(".")[0]
    return None, None


def description(field: Field, descriptions: dict[str, dict[str, str]] = DESCRIPTIONS) -> str | None:
    if field.schema.get("description"):
        return field.schema["description"]
    return _lookup(field.section, field.path, descriptions)[0]


def undocumented(schema: dict[str, Any],
                 descriptions: dict[str, dict[str, str]] = DESCRIPTIONS) -> list[str]:
    """Schema fields that have no description, in the schema or here ("section: path")."""
    return [f"{f.section}: {f.path}" for f in fields(schema) if not description(f, descriptions)]


def unknown(schema: dict[str, Any],
            descriptions: dict[str, dict[str, str]] = DESCRIPTIONS) -> list[str]:
    """Entries of DESCRIPTIONS that describe no field of the schema (stale or misspelt)."""
    used = {(f.section, _lookup(f.section, f.path, descriptions)[1]) for f in fields(schema)}
    return [f"{section}: {path}" for section, table in descriptions.items() for path in table
            if (section, path) not in used]


def redundant(schema: dict[str, Any],
              descriptions: dict[str, dict[str, str]] = DESCRIPTIONS) -> list[str]:
    """Entries of DESCRIPTIONS for fields the schema now describes itself (the schema wins)."""
    return [f"{f.section}: {f.path}" for f in fields(schema)
            if f.schema.get("description") and f.path in descriptions.get(f.section, {})]


# --------------------------------------------------------------------------- rendering


def _code(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return "`" + text.replace("|", "\\|") + "`"


def type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    name = _def_name(schema)
    if name is not None:
        return f"[{name}](#{name})" if _is_object(defs[name]) else type_text(defs[name], defs)
    if "enum" in schema:
        return "one of " + ", ".join(_code(v) for v in schema["enum"])
    kind = schema.get("type")
    parts: list[str] = []
    if kind == "string":
        parts.append("string")
        if schema.get("format") == "date":
            parts.append("a date")
        if schema.get("minLength", 0) == 1:
            parts.append("non-empty")
        elif schema.get("minLength", 0) > 1:
            parts.append(f"at least {schema['minLength']} characters")
        if "pattern" in schema:
            parts.append("matching " + _code(schema["pattern"]))
    elif kind in ("integer", "number"):
        text = kind
        low = schema.get("minimum")
        high = schema.get("maximum")
        if schema.get("exclusiveMinimum") is not None:
            text += f" > {schema['exclusiveMinimum']}"
            if high is not None:
                text += f", ≤ {high}"
        elif low is not None and high is not None:
            text += f" {low}–{high}"
        elif low is not None:
            text += f" ≥ {low}"
        elif high is not None:
            text += f" ≤ {high}"
        parts.append(text)
    elif kind == "boolean":
        parts.append("boolean")
    elif kind == "array":
        item = type_text(schema.get("items", {}), defs)
        parts.append(f"list of ({item})" if ", " in item else f"list of {item}")
        if schema.get("minItems"):
            parts.append(f"at least {schema['minItems']}")
        if schema.get("uniqueItems"):
            parts.append("no duplicates")
    elif kind == "object":
        if _is_object(schema):
            parts.append("mapping (fields below)")
        else:
            keys = schema.get("propertyNames", {})
            key_text = "name" + (" matching " + _code(keys["pattern"]) if "pattern" in keys else "")
            parts.append(f"mapping of {key_text} → " + type_text(
                schema.get("additionalProperties", {}), defs))
    else:
        parts.append(kind or "any")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """One table cell: one line, and a bare ``|`` escaped (those in code spans already are)."""
    return re.sub(r"(?<!\\)\|", r"\\|", " ".join(text.split()))


def render(schema: dict[str, Any] | None = None,
           descriptions: dict[str, dict[str, str]] = DESCRIPTIONS) -> str:
    """The whole of docs/profile.md."""
    if schema is None:
        schema = json.loads(SCHEMA.read_text("utf-8"))
    defs = schema.get("$defs", {})
    missing = undocumented(schema, descriptions)
    if missing:
        raise ValueError("schema fields without a description: " + ", ".join(missing))
    out = [INTRO]
    index = ["## Sections", ""]
    body: list[str] = []
    for name, obj, used in sections(schema):
        if name == ROOT_SECTION:
            title, where = "The top level", "The fields of the profile file itself."
        else:
            title = name
            where = "Used at " + ", ".join(f"`{p}`" for p in used) + "; paths below are relative to it."
            if obj.get("description"):
                where = " ".join(obj["description"].split()) + "\n\n" + where
        anchor = "the-top-level" if name == ROOT_SECTION else name
        index.append(f"- [{title}](#{anchor})")
        body += ["", f"## {title}", "", where, "",
                 "| field | type | required | meaning |", "|---|---|---|---|"]
        rows: list[list[str]] = []
        parents: list[str] = []  # the parent path of each row's (first) field
        for field in _walk(name, obj, ""):
            parent, _, last = field.path.rpartition(".")
            row = [f"`{field.path}`", type_text(field.schema, defs),
                   "yes" if field.required else "", description(field, descriptions) or ""]
            if rows and parent and parents[-1] == parent and rows[-1][1:] == row[1:]:
                rows[-1][0] += f", `.{last}`"  # siblings that read the same: one row
            else:
                rows.append(row)
                parents.append(parent)
        body += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out + index + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/profile.md is stale")
    mode.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    schema = json.loads(SCHEMA.read_text("utf-8"))
    problems = [f"no description: {x}" for x in undocumented(schema)]
    problems += [f"describes no schema field: {x}" for x in unknown(schema)]
    for x in redundant(schema):
        print(f"note: the schema describes {x} itself; its entry here is unused", file=sys.stderr)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    text = render(schema)
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = OUTPUT.read_text("utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run "
                  f".venv/bin/python docs/generate_profile_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, "utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
