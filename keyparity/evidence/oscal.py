"""``assessment-results.json``: the run as a NIST OSCAL assessment-results document (OSCAL 1.1.x
JSON) for GRC tools.

Shape (validated in the tests with compliance-trestle's pydantic models):

* ``metadata``: title, ``last-modified`` (the run's end), ``version`` (the run id),
  ``oscal-version``.
* ``import-ap``: there is no OSCAL assessment plan; the keyparity profile is the plan. It is a
  back-matter resource (name, path and SHA-256 as recorded in the evidence), and ``import-ap``
  points at it with ``#<uuid>`` (OSCAL's way to reference a back-matter resource).
* one ``result`` for the run (``start``/``end`` from the evidence), reviewing NIST SP 800-53
  Rev. 5 SC-12 (cryptographic key establishment and management); the key's move between the
  clusters is assessed against objective ``sc-12_obj-2`` ("keys are managed").
  ``local-definitions`` describe keyparity (the tool, origin of every observation), the two
  clusters (components) and every inventory key (inventory items, the subjects).
* per key one ``observation`` (method ``TEST``: migration status, KCV/fingerprint, vectors,
  attribute differences, test outcomes) and one ``finding`` whose target status is
  ``satisfied`` (key verdict passed, reason ``pass``) or ``not-satisfied``. A failed key is
  ``not-satisfied`` with reason ``fail``. A key marked ``rotate`` was not migrated by design:
  it is ``not-satisfied`` with reason ``other`` and a remark carrying the rotation advice, so a
  GRC tool tracks it as open work instead of counting it as proven; keys skipped or not run are
  ``not-satisfied``/``other`` too (nothing was proven about them).
* one run-level observation and finding for the run's overall verdict (a run can fail outside
  any key, e.g. a cluster unreachable or wrapping objects left behind).
* ``back-matter``: ``evidence.json`` with ``rlinks`` ``[{"href": "evidence.json", "hashes":
  [{"algorithm": "SHA-256", "value": <sha256>}]}]``; every observation's ``relevant-evidence``
  points at that resource (``#<uuid>``), i.e. at the bundle by hash.

Determinism: every UUID is a UUIDv5 derived from the run id (the document's own from the run id
and the evidence hash, since OSCAL wants a new document UUID when the content changes), and
every timestamp comes from the evidence. The output is a pure function of (evidence, hash):
rebuilt, it is byte-identical, so it can be signed with the bundle and re-checked.

Free text (OSCAL markup) that contains user input such as key labels puts it in Markdown code
spans, so a GRC tool that renders the Markdown shows it literally.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from .. import __version__
from .evidence import FAILED, key_verdict

OSCAL_VERSION = "1.1.2"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:keyparity:oscal")
PROP_NS = "urn:keyparity:oscal"
CONTROL_ID = "sc-12"
OBJECTIVE_ID = "sc-12_obj-2"


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _line(text: Any) -> str:
    """A single-line value (OSCAL titles and prop values): no line breaks, no edge spaces."""
    out = re.sub(r"\s+", " ", str(text)).strip()
    return out or "-"


def _code(text: Any) -> str:
    """``text`` as a Markdown code span: rendered literally whatever it contains."""
    s = _line(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _prop(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "ns": PROP_NS, "value": _line(value)}


def _time(value: Any, fallback: str) -> str:
    """An OSCAL date-time (with time zone) from the evidence, or ``fallback``."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed.isoformat()
    return fallback


def _pointer(label: str) -> str:
    """The JSON pointer of a key's entry in evidence.json (RFC 6901)."""
    return "/keys/" + label.replace("~", "~0").replace("/", "~1")


def _status(verdict: str, entry: dict[str, Any]) -> tuple[str, str, str | None]:
    """(state, reason, remarks) of a key's finding."""
    migration = _dict(entry.get("migration"))
    if verdict == "passed":
        return "satisfied", "pass", None
    if verdict in FAILED:
        return "not-satisfied", "fail", None
    if verdict == "rotate":
        advice = migration.get("detail") or ("rotate it: generate a new key on the target, "
                                             "decrypt with the old key, re-encrypt with the new")
        return ("not-satisfied", "other",
                f"Not migrated by design (disposition rotate); open action: {advice}")
    return "not-satisfied", "other", f"Nothing was proven about this key (verdict {verdict})."


def _key_summary(label: str, entry: dict[str, Any], tests: list[dict[str, Any]],
                 verdict: str) -> str:
    migration = _dict(entry.get("migration"))
    identity = _dict(entry.get("identity")) or _dict(migration.get("identity"))
    vectors = [v for v in _list(entry.get("vectors")) if isinstance(v, dict)]
    diffs = [d for d in _list(_dict(entry.get("attributes")).get("differences"))
             if isinstance(d, dict)]
    outcomes = Counter(t.get("outcome") for t in tests)
    lines = [f"Key {_code(label)}: verdict **{verdict}**."]
    if migration:
        lines.append(f"- Migration: {migration.get('status', '-')}"
                     + (f" ({migration['detail']})" if migration.get("detail") else "") + ".")
    if identity:
        match = {True: "match", False: "MISMATCH"}.get(identity.get("match"), "not compared")
        lines.append(f"- Identity ({identity.get('method', '-')}): source "
                     f"{_code(identity.get('source'))}, target {_code(identity.get('target'))}: "
                     f"{match}.")
    if vectors:
        ok = sum(1 for v in vectors if v.get("ok") is True)
        bad = sum(1 for v in vectors if v.get("ok") is False)
        na = len(vectors) - ok - bad
        lines.append(f"- Vectors exchanged between the clusters: {ok} passed, {bad} failed"
                     + (f", {na} not applicable" if na else "") + ".")
    if diffs:
        unexpected = [d for d in diffs if not d.get("expected")]
        lines.append(f"- Attribute differences: {len(diffs) - len(unexpected)} expected, "
                     f"{len(unexpected)} unexpected"
                     + (" (" + ", ".join(_code(d.get("attribute")) for d in unexpected) + ")"
                        if unexpected else "") + ".")
    if tests:
        lines.append("- Tests: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
                     + ".")
    return "\n".join(lines)


def assessment_results(doc: dict, evidence_sha256: str) -> dict:
    """The OSCAL assessment-results document (``{"assessment-results": {...}}``) of a run."""
    run = _dict(doc.get("run"))
    summary = _dict(doc.get("summary"))
    run_id = str(run.get("run_id") or "unknown-run")
    tests = [t for t in _list(doc.get("tests")) if isinstance(t, dict)]
    fallback = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    start = _time(run.get("started"), fallback)
    end = _time(run.get("finished"), None) if run.get("finished") else None
    stamp = end or start

    evidence_res = _uuid(run_id, "resource", "evidence.json")
    profile_res = _uuid(run_id, "resource", "profile")
    tool = _uuid(run_id, "component", "keyparity")
    origins = [{"actors": [{"type": "tool", "actor-uuid": tool}]}]

    clusters = _dict(doc.get("clusters"))
    components = [{
        "uuid": tool, "type": "software", "title": f"keyparity {run.get('keyparity') or ''}"
        .strip(), "description": "pytest harness that migrates keys between PKCS #11 clusters "
        "and proves each arrived intact and usable (KCVs or public-key fingerprints, "
        "cross-cluster vectors, attribute comparison).",
        "props": [_prop("version", run.get("keyparity") or __version__)]
        + ([_prop("git-commit", run["git_commit"])] if run.get("git_commit") else []),
        "status": {"state": "operational"}}]
    cluster_uuid = {}
    for role, c in clusters.items():
        c = _dict(c)
        token = _dict(c.get("token"))
        cluster_uuid[role] = _uuid(run_id, "component", role)
        props = [_prop("role", role)] + [
            _prop(name, value) for name, value in (
                ("mode", c.get("mode")), ("mode-source", c.get("mode_source")),
                ("token-label", token.get("label")), ("manufacturer", token.get("manufacturer")),
                ("model", token.get("model")), ("serial-number", token.get("serial")),
                ("firmware-version", token.get("firmware")), ("pkcs11-module", c.get("module")))
            if value not in (None, "")]
        components.append({
            "uuid": cluster_uuid[role], "type": "hardware",
            "title": _line(f"{role} cluster {c.get('name') or ''}"),
            "description": f"PKCS #11 cluster {_code(c.get('name'))}, the {role} of the "
                           f"migration; mode {c.get('mode') or '-'} "
                           f"({c.get('mode_source') or 'unknown'}).",
            "props": props, "status": {"state": "operational"}})

    entries = dict(_dict(doc.get("keys")))
    for t in tests:
        if t.get("key") and t["key"] not in entries:
            entries[t["key"]] = {"label": t["key"]}
    items, observations, findings = [], [], []
    for label, entry in entries.items():
        label, entry = str(label), _dict(entry)
        key_tests = [t for t in tests if t.get("key") == label]
        verdict = key_verdict(entry, [str(t.get("outcome")) for t in key_tests])
        item = _uuid(run_id, "inventory-item", label)
        key_type = entry.get("type") or _dict(_dict(entry.get("attributes")).get("source")).get(
            "key_type")
        items.append({
            "uuid": item,
            "description": f"Key {_code(label)} in the migration inventory.",
            "props": [_prop("key-label", label)]
            + ([_prop("key-type", key_type)] if key_type else [])
            + ([_prop("target-label", entry["target_label"])]
               if entry.get("target_label") else [])
            + ([_prop("disposition", entry["disposition"])] if entry.get("disposition") else [])
            + [_prop(name, entry[name]) for name in ("size", "curve")
               if entry.get(name) not in (None, "")],
            "implemented-components": [{"component-uuid": u} for u in cluster_uuid.values()]
            or None})
        if items[-1]["implemented-components"] is None:
            del items[-1]["implemented-components"]
        obs = _uuid(run_id, "observation", label)
        observations.append({
            "uuid": obs, "title": _line(f"Key {_code(label)}: migration and equivalence tests"),
            "description": _key_summary(label, entry, key_tests, verdict),
            "props": [_prop("key-label", label), _prop("verdict", verdict)],
            "methods": ["TEST"], "types": ["control-objective"], "origins": origins,
            "subjects": [{"subject-uuid": item, "type": "inventory-item",
                          "title": _line(label)}],
            "relevant-evidence": [{
                "href": f"#{evidence_res}",
                "description": f"`evidence.json`, entry `{_pointer(label)}` (JSON pointer) and "
                               "the tests whose key is this one; the file is identified by its "
                               "SHA-256 in the back matter."}],
            "collected": stamp})
        state, reason, remarks = _status(verdict, entry)
        finding: dict[str, Any] = {
            "uuid": _uuid(run_id, "finding", label),
            "title": _line(f"Key {_code(label)}: {verdict}"),
            "description": f"Key {_code(label)} was "
                           f"{'proven' if state == 'satisfied' else 'not proven'} "
                           "intact and usable on the target cluster.",
            "props": [_prop("key-label", label), _prop("verdict", verdict)],
            "origins": origins,
            "target": {"type": "objective-id", "target-id": OBJECTIVE_ID,
                       "status": {"state": state, "reason": reason}},
            "related-observations": [{"observation-uuid": obs}]}
        if remarks:
            finding["target"]["status"]["remarks"] = remarks
            finding["remarks"] = remarks
        findings.append(finding)

    verdict = summary.get("verdict") or "INCOMPLETE"
    failures = [t for t in tests if t.get("outcome") in FAILED]
    run_obs = _uuid(run_id, "observation", "run")
    test_counts = Counter(str(t.get("outcome")) for t in tests)
    key_counts = Counter(key_verdict(_dict(e), [str(t.get("outcome")) for t in tests
                                                  if t.get("key") == k])
                         for k, e in entries.items())
    observations.append({
        "uuid": run_obs, "title": _line(f"keyparity run {run_id}: overall verdict {verdict}"),
        "description": "\n".join(
            [f"Run {_code(run_id)} of profile {_code(run.get('profile'))}: verdict **{verdict}**.",
             "- Keys: " + (", ".join(f"{n} {v}" for v, n in sorted(key_counts.items()))
                           or "none") + ".",
             "- Tests: " + (", ".join(f"{n} {o}" for o, n in sorted(test_counts.items()))
                            or "none") + "."]
            + [f"- {t.get('outcome')}: {_code(t.get('nodeid'))}" for t in failures]),
        "props": [_prop("verdict", verdict)],
        "methods": ["TEST"], "types": ["control-objective"], "origins": origins,
        "subjects": [{"subject-uuid": u, "type": "component", "title": _line(role)}
                     for role, u in cluster_uuid.items()] or None,
        "relevant-evidence": [{"href": f"#{evidence_res}",
                               "description": "`evidence.json`: `/run`, `/summary`, `/tests`."}],
        "collected": stamp})
    if observations[-1]["subjects"] is None:
        del observations[-1]["subjects"]
    findings.append({
        "uuid": _uuid(run_id, "finding", "run"),
        "title": _line(f"keyparity run {run_id}: {verdict}"),
        "description": "The run as a whole: every test passed (or was skipped with a reason) "
                       "and the run ended cleanly." if verdict == "PASS" else
                       "The run as a whole did not pass; see the failing tests in the related "
                       "observation.",
        "props": [_prop("verdict", verdict)],
        "origins": origins,
        "target": {"type": "objective-id", "target-id": OBJECTIVE_ID,
                   "status": {"state": "satisfied" if verdict == "PASS" else "not-satisfied",
                              "reason": "pass" if verdict == "PASS" else "fail"}},
        "related-observations": [{"observation-uuid": run_obs}]})

    result: dict[str, Any] = {
        "uuid": _uuid(run_id, "result"),
        "title": _line(f"keyparity run {run_id}"),
        "description": f"Migration of the keys of profile {_code(run.get('profile'))} from "
                       f"{_code(_dict(clusters.get('source')).get('name'))} to "
                       f"{_code(_dict(clusters.get('target')).get('name'))} "
                       f"({run.get('migration_mode') or '-'}, environment "
                       f"{run.get('environment') or '-'}), verified by keyparity.",
        "start": start,
        "props": [_prop("run-id", run_id), _prop("verdict", verdict)]
        + [_prop(name, run[field]) for name, field in (
            ("profile", "profile"), ("profile-sha256", "profile_sha256"),
            ("environment", "environment"), ("migration-mode", "migration_mode"),
            ("seed", "seed")) if run.get(field) not in (None, "")],
        "local-definitions": {"components": components,
                              **({"inventory-items": items} if items else {})},
        "reviewed-controls": {
            "description": "NIST SP 800-53 Rev. 5 SC-12, Cryptographic Key Establishment and "
                           "Management: keys moved between HSM clusters arrived intact and "
                           "usable.",
            "control-selections": [{"include-controls": [{"control-id": CONTROL_ID}]}],
            "control-objective-selections": [{"include-objectives": [
                {"objective-id": OBJECTIVE_ID}]}]},
        "observations": observations,
        "findings": findings,
        "remarks": f"Overall verdict {verdict}.",
    }
    if end:
        result["end"] = end
    profile_resource: dict[str, Any] = {
        "uuid": profile_res,
        "title": _line(f"keyparity profile {run.get('profile') or '-'} (the assessment plan)"),
        "description": "No OSCAL assessment plan exists for this run: the keyparity profile "
                       "(clusters, wrapping parameters, key inventory) is the plan.",
        "props": [_prop("profile", run.get("profile") or "-")]}
    if run.get("profile_path") and run.get("profile_sha256"):
        profile_resource["rlinks"] = [{"href": str(run["profile_path"]),
                                       "media-type": "application/yaml",
                                       "hashes": [{"algorithm": "SHA-256",
                                                   "value": str(run["profile_sha256"])}]}]
    return {"assessment-results": {
        "uuid": _uuid(run_id, "assessment-results", evidence_sha256),
        "metadata": {
            "title": _line(f"keyparity assessment results: run {run_id}"
                           f" ({run.get('profile') or '-'}): {verdict}"),
            "last-modified": stamp,
            "version": _line(run_id),
            "oscal-version": OSCAL_VERSION,
        },
        "import-ap": {"href": f"#{profile_res}",
                      "remarks": "The keyparity profile stands in for an assessment plan; see "
                                 "the back-matter resource."},
        "results": [result],
        "back-matter": {"resources": [
            {"uuid": evidence_res,
             "title": _line(f"keyparity evidence of run {run_id}"),
             "description": "The run's evidence document; this assessment result is derived "
                            "from it. Identified by its SHA-256.",
             "props": [_prop("run-id", run_id)],
             "rlinks": [{"href": "evidence.json", "media-type": "application/json",
                         "hashes": [{"algorithm": "SHA-256", "value": evidence_sha256}]}]},
            profile_resource]},
    }}


def write_assessment_results(run_dir: Path, doc: dict) -> Path:
    """Write ``run_dir/assessment-results.json`` for ``run_dir/evidence.json``, which must hold
    ``doc``: the result names the file by its SHA-256, so it must describe that file."""
    run_dir = Path(run_dir)
    raw = (run_dir / "evidence.json").read_bytes()
    if json.loads(raw) != json.loads(json.dumps(doc)):
        raise ValueError(f"{run_dir / 'evidence.json'} does not hold this evidence document; "
                         "write the evidence first")
    out = assessment_results(doc, hashlib.sha256(raw).hexdigest())
    path = run_dir / "assessment-results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
