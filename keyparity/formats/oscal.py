"""``assessment-results.json``: the run as a NIST OSCAL assessment-results document (OSCAL 1.2.1
JSON, the version compliance-trestle's models carry) for GRC tools.

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
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from . import jsonfile
from ..attest.digest import sha256_file
from ..evidence.verdict import FAILED, NOT_RECORDED

OSCAL_VERSION = "1.2.1"  # compliance-trestle 5.2's models (trestle.oscal.OSCAL_VERSION)
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


def _recorded(entry: dict[str, Any]) -> str:
    """A key's verdict as the run recorded it (keyparity.evidence.verdict decides it)."""
    return str(entry.get("verdict") or NOT_RECORDED)


def _pointer(label: str) -> str:
    """The JSON pointer of a key's entry in evidence.json (RFC 6901)."""
    return "/keys/" + label.replace("~", "~0").replace("/", "~1")


def _status(verdict: str, entry: dict[str, Any]) -> tuple[str, str, str | None]:
    """(state, reason, remarks) of a key's finding."""
    migration = _dict(entry.get("migration"))
    if verdict == "passed":
        return "satisfied", "pass", None
    if verdict == "failed":
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


@dataclass(frozen=True)
class _Run:
    """What every part of the document needs about the run: its id, its times, the UUIDs the
    parts point at, and the origin (keyparity, the tool) of every observation and finding."""
    run: dict[str, Any]
    run_id: str
    tests: list[dict[str, Any]]
    by_key: dict[Any, list[dict[str, Any]]]  # the tests of each key, grouped once
    start: str
    end: str | None
    stamp: str
    evidence_res: str
    profile_res: str
    tool: str
    origins: list[dict[str, Any]]


def _run_context(doc: dict) -> _Run:
    run = _dict(doc.get("run"))
    run_id = str(run.get("run_id") or "unknown-run")
    tests = [t for t in _list(doc.get("tests")) if isinstance(t, dict)]
    fallback = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    start = _time(run.get("started"), fallback)
    end = _time(run.get("finished"), None) if run.get("finished") else None
    tool = _uuid(run_id, "component", "keyparity")
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for t in tests:
        if t.get("key"):
            by_key.setdefault(t["key"], []).append(t)
    return _Run(run=run, run_id=run_id, tests=tests, by_key=by_key, start=start, end=end, stamp=end or start,
                evidence_res=_uuid(run_id, "resource", "evidence.json"),
                profile_res=_uuid(run_id, "resource", "profile"), tool=tool,
                origins=[{"actors": [{"type": "tool", "actor-uuid": tool}]}])


# --------------------------------------------------------------------------- local definitions


def _tool_component(ctx: _Run) -> dict[str, Any]:
    """keyparity itself, the origin of every observation."""
    run = ctx.run
    return {
        "uuid": ctx.tool, "type": "software", "title": f"keyparity {run.get('keyparity') or ''}"
        .strip(), "description": "pytest harness that migrates keys between PKCS #11 clusters "
        "and proves each arrived intact and usable (KCVs or public-key fingerprints, "
        "cross-cluster vectors, attribute comparison).",
        "props": [_prop("version", run.get("keyparity") or __version__)]
        + ([_prop("git-commit", run["git_commit"])] if run.get("git_commit") else []),
        "status": {"state": "operational"}}


def _cluster_component(ctx: _Run, role: str, cluster: Any) -> dict[str, Any]:
    """One cluster (source or target) as a hardware component."""
    c = _dict(cluster)
    token = _dict(c.get("token"))
    props = [_prop("role", role)] + [
        _prop(name, value) for name, value in (
            ("mode", c.get("mode")), ("mode-source", c.get("mode_source")),
            ("token-label", token.get("label")), ("manufacturer", token.get("manufacturer")),
            ("model", token.get("model")), ("serial-number", token.get("serial")),
            ("firmware-version", token.get("firmware")), ("pkcs11-module", c.get("module")))
        if value not in (None, "")]
    return {
        "uuid": _uuid(ctx.run_id, "component", role), "type": "hardware",
        "title": _line(f"{role} cluster {c.get('name') or ''}"),
        "description": f"PKCS #11 cluster {_code(c.get('name'))}, the {role} of the "
                       f"migration; mode {c.get('mode') or '-'} "
                       f"({c.get('mode_source') or 'unknown'}).",
        "props": props, "status": {"state": "operational"}}


def _components(ctx: _Run, clusters: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                dict[str, str]]:
    """The tool and the clusters; and the UUID of each cluster by role."""
    components = [_tool_component(ctx)]
    cluster_uuid = {}
    for role, c in clusters.items():
        components.append(_cluster_component(ctx, role, c))
        cluster_uuid[role] = components[-1]["uuid"]
    return components, cluster_uuid


def _key_entries(doc: dict, tests: list[dict[str, Any]]) -> dict[Any, Any]:
    """The evidence's keys, and the keys known only from their tests."""
    entries = dict(_dict(doc.get("keys")))
    for t in tests:
        if t.get("key") and t["key"] not in entries:
            entries[t["key"]] = {"label": t["key"]}
    return entries


def _inventory_item(ctx: _Run, label: str, entry: dict[str, Any],
                    cluster_uuid: dict[str, str]) -> dict[str, Any]:
    """A key of the inventory: the subject of its observation."""
    key_type = entry.get("type") or _dict(_dict(entry.get("attributes")).get("source")).get(
        "key_type")
    item: dict[str, Any] = {
        "uuid": _uuid(ctx.run_id, "inventory-item", label),
        "description": f"Key {_code(label)} in the migration inventory.",
        "props": [_prop("key-label", label)]
        + ([_prop("key-type", key_type)] if key_type else [])
        + ([_prop("target-label", entry["target_label"])]
           if entry.get("target_label") else [])
        + ([_prop("disposition", entry["disposition"])] if entry.get("disposition") else [])
        + [_prop(name, entry[name]) for name in ("size", "curve")
           if entry.get(name) not in (None, "")]}
    if cluster_uuid:
        item["implemented-components"] = [{"component-uuid": u} for u in cluster_uuid.values()]
    return item


# --------------------------------------------------------------------------- per key


def _key_observation(ctx: _Run, label: str, entry: dict[str, Any],
                     key_tests: list[dict[str, Any]], verdict: str, item: str) -> dict[str, Any]:
    """What was tested about one key (method TEST), pointing at its entry in evidence.json."""
    return {
        "uuid": _uuid(ctx.run_id, "observation", label),
        "title": _line(f"Key {_code(label)}: migration and equivalence tests"),
        "description": _key_summary(label, entry, key_tests, verdict),
        "props": [_prop("key-label", label), _prop("verdict", verdict)],
        "methods": ["TEST"], "types": ["control-objective"], "origins": ctx.origins,
        "subjects": [{"subject-uuid": item, "type": "inventory-item",
                      "title": _line(label)}],
        "relevant-evidence": [{
            "href": f"#{ctx.evidence_res}",
            "description": f"`evidence.json`, entry `{_pointer(label)}` (JSON pointer) and "
                           "the tests whose key is this one; the file is identified by its "
                           "SHA-256 in the back matter."}],
        "collected": ctx.stamp}


def _key_finding(ctx: _Run, label: str, entry: dict[str, Any], verdict: str,
                 obs: str) -> dict[str, Any]:
    """Whether one key satisfies the objective (``_status``), with the rotation advice."""
    state, reason, remarks = _status(verdict, entry)
    finding: dict[str, Any] = {
        "uuid": _uuid(ctx.run_id, "finding", label),
        "title": _line(f"Key {_code(label)}: {verdict}"),
        "description": f"Key {_code(label)} was "
                       f"{'proven' if state == 'satisfied' else 'not proven'} "
                       "intact and usable on the target cluster.",
        "props": [_prop("key-label", label), _prop("verdict", verdict)],
        "origins": ctx.origins,
        "target": {"type": "objective-id", "target-id": OBJECTIVE_ID,
                   "status": {"state": state, "reason": reason}},
        "related-observations": [{"observation-uuid": obs}]}
    if remarks:
        finding["target"]["status"]["remarks"] = remarks
        finding["remarks"] = remarks
    return finding


def _per_key(ctx: _Run, entries: dict[Any, Any], cluster_uuid: dict[str, str]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per key: its inventory item, its observation and its finding."""
    items, observations, findings = [], [], []
    for label, entry in entries.items():
        label, entry = str(label), _dict(entry)
        key_tests = ctx.by_key.get(label, [])
        verdict = _recorded(entry)
        items.append(_inventory_item(ctx, label, entry, cluster_uuid))
        observations.append(_key_observation(ctx, label, entry, key_tests, verdict,
                                             items[-1]["uuid"]))
        findings.append(_key_finding(ctx, label, entry, verdict, observations[-1]["uuid"]))
    return items, observations, findings


# --------------------------------------------------------------------------- the run as a whole


def _run_observation(ctx: _Run, verdict: str, entries: dict[Any, Any],
                     cluster_uuid: dict[str, str]) -> dict[str, Any]:
    """The run's overall verdict: key verdicts and test outcomes counted, failures listed."""
    tests = ctx.tests
    failures = [t for t in tests if t.get("outcome") in FAILED]
    test_counts = Counter(str(t.get("outcome")) for t in tests)
    key_counts = Counter(_recorded(_dict(e)) for e in entries.values())
    observation = {
        "uuid": _uuid(ctx.run_id, "observation", "run"),
        "title": _line(f"keyparity run {ctx.run_id}: overall verdict {verdict}"),
        "description": "\n".join(
            [f"Run {_code(ctx.run_id)} of profile {_code(ctx.run.get('profile'))}: verdict "
             f"**{verdict}**.",
             "- Keys: " + (", ".join(f"{n} {v}" for v, n in sorted(key_counts.items()))
                           or "none") + ".",
             "- Tests: " + (", ".join(f"{n} {o}" for o, n in sorted(test_counts.items()))
                            or "none") + "."]
            + [f"- {t.get('outcome')}: {_code(t.get('nodeid'))}" for t in failures]),
        "props": [_prop("verdict", verdict)],
        "methods": ["TEST"], "types": ["control-objective"], "origins": ctx.origins,
        "subjects": [{"subject-uuid": u, "type": "component", "title": _line(role)}
                     for role, u in cluster_uuid.items()] or None,
        "relevant-evidence": [{"href": f"#{ctx.evidence_res}",
                               "description": "`evidence.json`: `/run`, `/summary`, `/tests`."}],
        "collected": ctx.stamp}
    if observation["subjects"] is None:
        del observation["subjects"]
    return observation


def _run_finding(ctx: _Run, verdict: str, run_obs: str) -> dict[str, Any]:
    """Whether the run as a whole satisfies the objective (a run can fail outside any key)."""
    return {
        "uuid": _uuid(ctx.run_id, "finding", "run"),
        "title": _line(f"keyparity run {ctx.run_id}: {verdict}"),
        "description": "The run as a whole: every test passed (or was skipped with a reason) "
                       "and the run ended cleanly." if verdict == "PASS" else
                       "The run as a whole did not pass; see the failing tests in the related "
                       "observation.",
        "props": [_prop("verdict", verdict)],
        "origins": ctx.origins,
        "target": {"type": "objective-id", "target-id": OBJECTIVE_ID,
                   "status": {"state": "satisfied" if verdict == "PASS" else "not-satisfied",
                              "reason": "pass" if verdict == "PASS" else "fail"}},
        "related-observations": [{"observation-uuid": run_obs}]}


# --------------------------------------------------------------------------- the result


def _reviewed_controls() -> dict[str, Any]:
    """NIST SP 800-53 Rev. 5 SC-12, objective ``sc-12_obj-2``."""
    return {
        "description": "NIST SP 800-53 Rev. 5 SC-12, Cryptographic Key Establishment and "
                       "Management: keys moved between HSM clusters arrived intact and "
                       "usable.",
        "control-selections": [{"include-controls": [{"control-id": CONTROL_ID}]}],
        "control-objective-selections": [{"include-objectives": [
            {"objective-id": OBJECTIVE_ID}]}]}


def _result(ctx: _Run, verdict: str, clusters: dict[str, Any],
            local_definitions: dict[str, Any], observations: list[dict[str, Any]],
            findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's one ``result``: its description and props, what it reviewed and found."""
    run = ctx.run
    result: dict[str, Any] = {
        "uuid": _uuid(ctx.run_id, "result"),
        "title": _line(f"keyparity run {ctx.run_id}"),
        "description": f"Migration of the keys of profile {_code(run.get('profile'))} from "
                       f"{_code(_dict(clusters.get('source')).get('name'))} to "
                       f"{_code(_dict(clusters.get('target')).get('name'))} "
                       f"({run.get('migration_mode') or '-'}, environment "
                       f"{run.get('environment') or '-'}), verified by keyparity.",
        "start": ctx.start,
        "props": [_prop("run-id", ctx.run_id), _prop("verdict", verdict)]
        + [_prop(name, run[field]) for name, field in (
            ("profile", "profile"), ("profile-sha256", "profile_sha256"),
            ("environment", "environment"), ("migration-mode", "migration_mode"),
            ("seed", "seed")) if run.get(field) not in (None, "")],
        "local-definitions": local_definitions,
        "reviewed-controls": _reviewed_controls(),
        "observations": observations,
        "findings": findings,
        "remarks": f"Overall verdict {verdict}.",
    }
    if ctx.end:
        result["end"] = ctx.end
    return result


# --------------------------------------------------------------------------- the document


def _metadata(ctx: _Run, verdict: str) -> dict[str, Any]:
    return {
        "title": _line(f"keyparity assessment results: run {ctx.run_id}"
                       f" ({ctx.run.get('profile') or '-'}): {verdict}"),
        "last-modified": ctx.stamp,
        "version": _line(ctx.run_id),
        "oscal-version": OSCAL_VERSION,
    }


def _import_ap(ctx: _Run) -> dict[str, Any]:
    """No OSCAL assessment plan: ``import-ap`` points at the profile's back-matter resource."""
    return {"href": f"#{ctx.profile_res}",
            "remarks": "The keyparity profile stands in for an assessment plan; see "
                       "the back-matter resource."}


def _profile_resource(ctx: _Run) -> dict[str, Any]:
    """The keyparity profile (the plan): name, and path and SHA-256 when recorded."""
    run = ctx.run
    resource: dict[str, Any] = {
        "uuid": ctx.profile_res,
        "title": _line(f"keyparity profile {run.get('profile') or '-'} (the assessment plan)"),
        "description": "No OSCAL assessment plan exists for this run: the keyparity profile "
                       "(clusters, wrapping parameters, key inventory) is the plan.",
        "props": [_prop("profile", run.get("profile") or "-")]}
    if run.get("profile_path") and run.get("profile_sha256"):
        resource["rlinks"] = [{"href": str(run["profile_path"]),
                               "media-type": "application/yaml",
                               "hashes": [{"algorithm": "SHA-256",
                                           "value": str(run["profile_sha256"])}]}]
    return resource


def _evidence_resource(ctx: _Run, evidence_sha256: str) -> dict[str, Any]:
    """``evidence.json``, named by its SHA-256: what every observation's evidence points at."""
    return {"uuid": ctx.evidence_res,
            "title": _line(f"keyparity evidence of run {ctx.run_id}"),
            "description": "The run's evidence document; this assessment result is derived "
                           "from it. Identified by its SHA-256.",
            "props": [_prop("run-id", ctx.run_id)],
            "rlinks": [{"href": "evidence.json", "media-type": "application/json",
                        "hashes": [{"algorithm": "SHA-256", "value": evidence_sha256}]}]}


def _plan_props(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The signed plan a run followed (``--hsm-plan``): its id, plan.json's SHA-256 and who
    approved it, as the result's props; none without a plan."""
    if not plan.get("plan_id"):
        return []
    approvers = ", ".join(str(a) for a in _list(plan.get("approved_by"))) or "-"
    return [_prop("plan-id", plan["plan_id"]), _prop("plan-sha256", plan.get("sha256") or "-"),
            _prop("plan-approved-by", approvers)]


def assessment_results(doc: dict, evidence_sha256: str) -> dict:
    """The OSCAL assessment-results document (``{"assessment-results": {...}}``) of a run."""
    ctx = _run_context(doc)
    clusters = _dict(doc.get("clusters"))
    components, cluster_uuid = _components(ctx, clusters)
    entries = _key_entries(doc, ctx.tests)
    items, observations, findings = _per_key(ctx, entries, cluster_uuid)
    verdict = _dict(doc.get("summary")).get("verdict") or "INCOMPLETE"
    observations.append(_run_observation(ctx, verdict, entries, cluster_uuid))
    findings.append(_run_finding(ctx, verdict, observations[-1]["uuid"]))
    local_definitions = {"components": components,
                         **({"inventory-items": items} if items else {})}
    result = _result(ctx, verdict, clusters, local_definitions, observations, findings)
    result["props"] += _plan_props(_dict(doc.get("plan")))
    return {"assessment-results": {
        "uuid": _uuid(ctx.run_id, "assessment-results", evidence_sha256),
        "metadata": _metadata(ctx, verdict),
        "import-ap": _import_ap(ctx),
        "results": [result],
        "back-matter": {"resources": [_evidence_resource(ctx, evidence_sha256),
                                      _profile_resource(ctx)]},
    }}


def write_assessment_results(run_dir: Path, doc: dict) -> Path:
    """Write ``run_dir/assessment-results.json`` for ``run_dir/evidence.json``, which must hold
    ``doc``: the result names the file by its SHA-256, so it must describe that file."""
    run_dir = Path(run_dir)
    path = run_dir / "evidence.json"
    sha = sha256_file(path)  # by digest: no copy of a 10,000-key file in memory
    if sha != jsonfile.digest(doc) and json.loads(path.read_bytes()) != json.loads(
            json.dumps(doc)):  # the second test only for a file laid out otherwise
        raise ValueError(f"{path} does not hold this evidence document; write the evidence "
                         "first")
    out = assessment_results(doc, sha)
    return jsonfile.write(run_dir / "assessment-results.json", out)
