"""The auditor's page: ``report.html``, one self-contained file rendered from ``evidence.json``.

The page is a view of the evidence, never a second source of truth: everything on it comes from
the evidence document. It has no scripts, no external resources (a Content-Security-Policy
forbids loading any) and inline CSS only, so it reads the same offline, archived or printed.
Every value is escaped by Jinja's autoescape: key labels and messages are user input.

The template reads a view model built here (``_view``) in which every name exists, so the
template can run with ``StrictUndefined``; fields the evidence may lack (older runs, fields other
parts of keyparity add later such as ``type``, ``target_label``, ``signing``, ``tls``, ``mode``)
are optional here and rendered only when present.
"""
from __future__ import annotations

import functools
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from .. import atomic
from ..evidence.verdict import FAILED, NOT_RECORDED

TEMPLATE = "report.html.j2"
# order of keys and tests on the page: what needs attention first
_KEY_ORDER = {"failed": 0, "error": 0, "partial": 1, "not run": 1, NOT_RECORDED: 1, "skipped": 2, "rotate": 3,
              "passed": 4}
_TEST_ORDER = {"failed": 0, "error": 0, "skipped": 1, "passed": 2}
_COUNT_ORDER = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}
DEFAULT_SIGNERS = ("custodian-1", "custodian-2")
DEFAULT_THRESHOLD = 2
# At scale (an hsm2m cluster holds up to 16,666 keys) the page stays quick to open: the key
# table is cut into blocks the browser lays out only when scrolled to (CSS content-visibility),
# and the long lists show their first LIST_LIMIT entries and say how many more evidence.json
# holds. Failures come first in every list.
PAGE_ROWS = 250
LIST_LIMIT = 500
NOT_RUN_SHOWN = 20  # expected tests that did not run, named in the report (evidence.json: all)
BANNER_KEYS = 3  # failed keys the banner names with their reasons, before "and N more"
FAILED_KEYS_SHOWN = 200  # failure groups (one per failed key) shown in full


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("keyparity", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    return env


def fmt(value: Any) -> str:
    """A scalar as an auditor reads it (the result is escaped by the template)."""
    if value is None:
        return "—"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value == "":
        return "(empty)"
    return str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _key_row(index: int, label: str, entry: dict[str, Any],
             tests: list[dict[str, Any]], cause: dict[str, Any]) -> dict[str, Any]:
    migration = _dict(entry.get("migration"))
    identity = _dict(entry.get("identity")) or _dict(migration.get("identity"))
    attributes = _dict(entry.get("attributes"))
    differences = [d for d in _list(attributes.get("differences")) if isinstance(d, dict)]
    vectors = [v for v in _list(entry.get("vectors")) if isinstance(v, dict)]
    outcomes = Counter(t.get("outcome") for t in tests)
    verdict = str(entry.get("verdict") or NOT_RECORDED)  # as the run recorded it
    key_type = entry.get("type") or _dict(attributes.get("source")).get("key_type")
    if key_type and entry.get("size"):
        key_type = f"{key_type}, {entry['size']} bits"
    elif key_type and entry.get("curve"):
        key_type = f"{key_type}, {entry['curve']}"
    target_label = entry.get("target_label")
    return {
        "anchor": f"key-{index}",
        "label": label,
        "target_label": target_label if target_label not in (None, label) else None,
        "type": key_type,
        "disposition": entry.get("disposition"),
        "migration_status": migration.get("status"),
        "migration_detail": migration.get("detail"),
        "identity": {"method": identity.get("method"), "source": identity.get("source"),
                     "target": identity.get("target"), "match": identity.get("match")}
        if identity else None,
        "vectors_ok": sum(1 for v in vectors if v.get("ok") is True),
        "vectors_failed": [v for v in vectors if v.get("ok") is False],
        "vectors_na": [v for v in vectors if "ok" not in v or v.get("ok") is None],
        "vectors_total": len(vectors),
        "differences": sorted(differences, key=lambda d: bool(d.get("expected"))),
        "diff_expected": sum(1 for d in differences if d.get("expected")),
        "diff_unexpected": sum(1 for d in differences if not d.get("expected")),
        "verdict": verdict,
        "role": entry.get("role"),
        "role_violations": [str(x) for x in _list(_dict(entry.get("role_check")).get(
            "violations"))],
        "check_values": _check_values(entry),
        "reason": cause.get("reason"),
        "tests": dict(outcomes),
        "failures": [t for t in tests if t.get("outcome") in FAILED],
    }


def _check_values(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A key's check values by algorithm, each with its value (or why none) per cluster."""
    rows: dict[str, dict[str, Any]] = {}
    for value in _list(entry.get("check_values")):
        if isinstance(value, dict):
            row = rows.setdefault(str(value.get("algorithm")), {
                "algorithm": value.get("algorithm"), "method": value.get("method"), "by": {}})
            row["by"][value.get("cluster")] = value.get("value") or f"none: {value.get('reason')}"
    return list(rows.values())


def _keys(doc: dict[str, Any], tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every key of the run: those with evidence, and any that only appear in test results (a
    key whose every test errored before it recorded anything)."""
    entries = dict(_dict(doc.get("keys")))
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for t in tests:
        if t.get("key"):
            by_key.setdefault(t["key"], []).append(t)
            if t["key"] not in entries:
                entries[t["key"]] = {"label": t["key"]}
    causes = _dict(_dict(doc.get("summary")).get("causes"))
    rows = [_key_row(i, str(label), _dict(entry), by_key.get(label, []),
                     _dict(causes.get(label)))
            for i, (label, entry) in enumerate(entries.items())]
    return sorted(rows, key=lambda r: _KEY_ORDER.get(r["verdict"], 1))


# the TLS suite's checks (evidence "tls": role -> {"cluster", "configured", "checks"}), in the
# order an auditor follows them: inner connection, HSM identity, outer connection
_TLS_TITLES = (
    ("cluster_certificate", "Cluster certificate is issued by customerCA.crt, valid past cutover"),
    ("hsm_certificate", "HSM certificate chains to the AWS and manufacturer roots (pinned)"),
    ("cluster_csr", "Cluster CSR holds the HSM certificate's key"),
    ("client_certificate", "client.crt is issued by customerCA.crt and matches its key"),
    ("mutual_tls_handshake", "Mutual TLS handshake"),
)


def _tls_check(name: str, check: dict[str, Any]) -> dict[str, Any]:
    order, title = next(((i, t) for i, (prefix, t) in enumerate(_TLS_TITLES)
                         if name.startswith(prefix)), (len(_TLS_TITLES), name))
    details, endpoint = _dict(check.get("details")), _dict(check.get("endpoint"))
    if endpoint:
        title += f" with {endpoint.get('host')}:{endpoint.get('port')}"
    outcome = check.get("outcome") or ("passed" if check.get("ok") else "failed")
    return {"order": order, "name": name, "title": title, "outcome": outcome,
            "message": check.get("message"), "test": check.get("test"),
            "warnings": [str(w) for w in _list(check.get("warnings"))],
            "certificates": [c for c in _list(check.get("certificates")) if isinstance(c, dict)],
            "chains": [(f"{label} chain", [str(c) for c in _list(_dict(path).get("chain"))])
                       for label, path in _dict(details.get("chains")).items()]
            or [("chain", [str(c) for c in _list(check.get("chain"))])],
            "protocol": details.get("protocol"), "cipher": details.get("cipher"),
            "simulated": endpoint.get("simulated") is True, "note": endpoint.get("note")}


def _tls(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cluster, its TLS checks (failures first); [] when the evidence has none in the
    suite's shape (the page then shows whatever ``tls`` holds as it is)."""
    out = []
    for role, entry in _dict(doc.get("tls")).items():
        entry = _dict(entry)
        if not isinstance(entry.get("checks"), dict):
            return []
        checks = [_tls_check(str(n), _dict(c)) for n, c in entry["checks"].items()]
        checks.sort(key=lambda c: (_TEST_ORDER.get(c["outcome"], 0), c["order"], c["name"]))
        counts = Counter(c["outcome"] for c in checks)
        out.append({"role": role, "cluster": entry.get("cluster"),
                    "configured": entry.get("configured"), "reason": entry.get("reason"),
                    "checks": checks,
                    "counts": sorted(counts.items(), key=lambda kv: _COUNT_ORDER.get(kv[0], 1))})
    return sorted(out, key=lambda c: (c["role"] != "source", c["role"] != "target", c["role"]))


def _verify(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    signing = _dict(doc.get("signing"))
    signers = [str(s) for s in _list(signing.get("signers"))]
    recorded = bool(signers)
    unsigned = "signing" in doc and not signers  # the profile names no signer
    if not recorded:
        signers = list(DEFAULT_SIGNERS)
    threshold = signing.get("threshold")
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        threshold = min(DEFAULT_THRESHOLD, len(signers)) if not recorded else len(signers)
    words = ["keyparity", "verify", f"reports/{run_id}"]
    for name in signers:
        words += ["--key", f"{name}.pub.pem"]
    words += ["--threshold", str(threshold)]
    return {"command": shlex.join(words), "signers": signers, "threshold": threshold,
            "recorded": recorded, "unsigned": unsigned}


def _failures(doc: dict[str, Any], failures: list[dict[str, Any]],
              keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failing tests, in groups as the run recorded their causes (``summary.causes``):
    the tests of no key first (a run-level check), then each failed key with its root
    failures (the best explanation first) and, folded under them, the tests that failed only
    because its migration did; any other failure after them. A group: ``key`` (a row of the
    key table, or None), ``reason``, ``tests``, ``dependent``."""
    causes = _dict(_dict(doc.get("summary")).get("causes"))
    by_node: dict[str, list[dict[str, Any]]] = {}
    for t in failures:
        by_node.setdefault(str(t.get("nodeid")), []).append(t)
    rows = {k["label"]: k for k in keys}
    run_level = [t for t in failures if t.get("key") is None]
    groups = [{"key": None, "reason": None, "tests": run_level, "dependent": []}] \
        if run_level else []
    placed = {str(t.get("nodeid")) for t in run_level}
    for label, cause in causes.items():
        cause = _dict(cause)
        roots = [t for n in _list(cause.get("tests")) for t in by_node.get(str(n), [])]
        dependent = [t for n in _list(cause.get("dependent")) for t in by_node.get(str(n), [])]
        placed |= {str(t.get("nodeid")) for t in roots + dependent}
        groups.append({"key": rows.get(label, {"label": label, "anchor": None}),
                       "reason": cause.get("reason"), "tests": roots, "dependent": dependent})
    rest = [t for t in failures if str(t.get("nodeid")) not in placed]
    for label in dict.fromkeys(str(t.get("key")) for t in rest):
        groups.append({"key": rows.get(label, {"label": label, "anchor": None}),
                       "reason": None, "tests": [t for t in rest if str(t.get("key")) == label],
                       "dependent": []})
    return groups


def _pages(rows: list[Any], size: int = PAGE_ROWS) -> list[list[Any]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _first(items: list[Any], limit: int = LIST_LIMIT) -> dict[str, Any]:
    """A list cut to its first ``limit`` entries, and how many more there are."""
    return {"shown": items[:limit], "more": max(0, len(items) - limit), "total": len(items)}


def _expected_differences(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expected attribute differences summed over the keys: attribute, reason, how many keys
    show it, and the two values when every key shows the same (a KCV differs by key). The
    same table for every key would fill the page."""
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for k in keys:
        for d in k["differences"]:
            if not d.get("expected"):
                continue
            values = (d.get("source"), d.get("target"))
            entry = out.setdefault((d.get("attribute"), d.get("reason")), {
                "attribute": d.get("attribute"), "reason": d.get("reason"), "key_count": 0,
                "source": values[0], "target": values[1], "values": values})
            entry["key_count"] += 1
            if entry["values"] != values:
                entry["source"] = entry["target"] = "(differs by key)"
    return sorted(out.values(), key=lambda e: (-e["key_count"], str(e["attribute"])))


def _not_applicable(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Vectors that did not apply (a FIPS side may not produce 3DES), summed likewise."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for k in keys:
        for x in k["vectors_na"]:
            sig = (x.get("vector"), x.get("direction"), x.get("comment"))
            entry = out.setdefault(sig, {"vector": sig[0], "direction": sig[1],
                                         "comment": sig[2], "key_count": 0})
            entry["key_count"] += 1
    return sorted(out.values(), key=lambda e: (-e["key_count"], str(e["vector"])))


def _skips(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Skipped tests grouped by their reason, most frequent first, with one example."""
    out: dict[str, dict[str, Any]] = {}
    for t in tests:
        if t.get("outcome") == "skipped":
            reason = str(t.get("message") or "(no reason recorded)")
            entry = out.setdefault(reason, {"reason": reason, "count": 0,
                                            "example": t.get("nodeid")})
            entry["count"] += 1
    return sorted(out.values(), key=lambda e: -e["count"])


def _attention(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keys whose details an auditor must read: an unexpected attribute difference, a failed
    vector, or key material that differs. Worst first."""
    return sorted([k for k in keys if k["diff_unexpected"] or k["vectors_failed"]
                   or (k["identity"] and k["identity"]["match"] is False)],
                  key=lambda k: (-k["diff_unexpected"], -len(k["vectors_failed"])))


def _headline(summary: dict[str, Any], verdict: str, keys: list[dict[str, Any]],
              key_counts: Counter, failures: list[dict[str, Any]], run: dict[str, Any],
              target: str) -> str:
    """The signed headline, or one made from the counts of evidence without a summary."""
    to_migrate = [k for k in keys if k["verdict"] != "rotate"]
    if summary.get("headline"):
        headline = str(summary["headline"])
    elif verdict == "PASS":
        headline = (f"All {len(to_migrate)} migrated keys were proven intact and usable on "
                    f"{target}." if to_migrate else "No key failed.")
    elif verdict == "FAIL":
        bad = key_counts.get("failed", 0)
        headline = (f"{bad} of {len(keys)} keys failed; {len(failures)} "
                    f"test{'s' if len(failures) != 1 else ''} failed or errored." if bad else
                    f"{len(failures)} test{'s' if len(failures) != 1 else ''} failed or "
                    "errored." if failures else
                    f"The run ended with exit status {run.get('exit_status')}.")
    else:
        headline = "The run did not finish: this evidence is incomplete."
    rotate = key_counts.get("rotate", 0)
    if rotate and verdict != "INCOMPLETE" and not summary.get("headline"):
        headline += (f" {rotate} key{' is' if rotate == 1 else 's are'} not migrated by design "
                     "and must be rotated.")
    return headline


def _owners(doc: dict[str, Any], keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-owner strategy: each owner's logins and its keys with their recorded verdicts,
    and the labels its view of the source held (the census)."""
    verdicts = {k["label"]: k for k in keys}
    views = _dict(_dict(_dict(_dict(doc.get("census")).get("source")).get("owners"))
                  .get("views"))
    out = []
    for name, owner in _dict(doc.get("owners")).items():
        owner = _dict(owner)
        mine = [verdicts.get(str(label), {"label": label, "verdict": NOT_RECORDED,
                                          "anchor": None})
                for label in _list(owner.get("keys"))]
        out.append({"name": name, "source_user": owner.get("source_user"),
                    "target_user": owner.get("target_user"), "keys": mine,
                    "counts": sorted(Counter(k["verdict"] for k in mine).items()),
                    "view": _list(views.get(name)) if name in views else None})
    return out


def _failed_keys(keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The failed keys the banner names: grouped by their reason (one cause of many keys, a
    cluster that is down, is said once), BANNER_KEYS keys in all, and how many more."""
    groups: dict[str, list[dict[str, Any]]] = {}
    failed = [k for k in keys if k["verdict"] == "failed"]
    for k in failed[:BANNER_KEYS]:
        groups.setdefault(str(k["reason"] or ""), []).append(k)
    return {"shown": [{"reason": r, "keys": ks} for r, ks in groups.items()],
            "more": max(0, len(failed) - BANNER_KEYS), "total": len(failed)}


def _not_proven(summary: dict[str, Any]) -> dict[str, Any]:
    """The keys the run did not prove, each with its verdict, its recorded reason (a failed
    key's root cause) and the proofs that did not run."""
    scope = _dict(summary.get("scope"))
    causes = _dict(summary.get("causes"))
    missing = _dict(scope.get("proofs_not_run"))
    return _first([{"label": label, "verdict": verdict,
                    "reason": _dict(causes.get(label)).get("reason"),
                    "missing": [str(m) for m in _list(missing.get(label))]}
                   for label, verdict in _dict(scope.get("keys_not_proven")).items()])


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    run = _dict(doc.get("run"))
    summary = _dict(doc.get("summary"))
    tests = [t for t in _list(doc.get("tests")) if isinstance(t, dict)]
    keys = _keys(doc, tests)
    failures = [t for t in tests if t.get("outcome") in FAILED]
    test_counts = Counter(t.get("outcome") for t in tests)
    key_counts = Counter(k["verdict"] for k in keys)
    verdict = summary.get("verdict") or "INCOMPLETE"  # no summary: the run did not finish
    clusters = _dict(doc.get("clusters"))
    target = _dict(clusters.get("target")).get("name") or "the target"
    headline = _headline(summary, verdict, keys, key_counts, failures, run, target)
    command = run.get("command")
    run_id = str(run.get("run_id") or "RUN-ID")
    return {
        "verdict": verdict,
        "verdict_class": f"verdict-{verdict.lower()}",  # verdict-preflight-pass, -no-tests
        "headline": headline,
        "key_counts": [(name, key_counts[name]) for name in
                       ("passed", "failed", "partial", "rotate", "skipped", "not run")
                       if key_counts[name] or name in ("passed", "failed", "rotate")]
        + [(name, n) for name, n in key_counts.items() if name not in _KEY_ORDER],
        "keys_total": len(keys),
        "test_counts": sorted(test_counts.items(), key=lambda kv: _COUNT_ORDER.get(kv[0], 1)),
        "tests_total": len(tests),
        "run": run,
        "baseline": doc.get("baseline") or {},
        "plan": doc.get("plan") or {},
        "run_id": run_id,
        "command": shlex.join(str(w) for w in command) if isinstance(command, list)
        else command,
        "packages": sorted(_dict(run.get("packages")).items()),
        "clusters": [(role, _dict(clusters[role])) for role in ("source", "target")
                     if role in clusters] + [(role, _dict(c)) for role, c in clusters.items()
                                             if role not in ("source", "target")],
        "run_facts": _dict(doc.get("run_facts")),
        "failures": _first(failures),
        "failure_groups": _first(_failures(doc, failures, keys), FAILED_KEYS_SHOWN),
        "failed_keys": _failed_keys(keys),
        "names": {"source": _dict(clusters.get("source")).get("name") or "source",
                  "target": _dict(clusters.get("target")).get("name") or "target"},
        "anchors": {k["label"]: k["anchor"] for k in keys},
        "key_pages": _pages(keys),
        "keys_all": keys,
        "attention": _first(_attention(keys)),
        "expected_differences": _expected_differences(keys),
        "not_applicable": _not_applicable(keys),
        "skips": _skips(tests),
        "not_fips_keys": _first(_list(_dict(doc.get("compliance")).get(
            "not_fips_approved_keys")), 5),
        "rotate": [k for k in keys
                   if k["disposition"] == "rotate" or k["migration_status"] == "rotate"],
        "tls": doc.get("tls"),
        "tls_clusters": _tls(doc),
        "mode": doc.get("mode"),
        "compliance": _dict(doc.get("compliance")),
        "verify": _verify(doc, run_id),
        "schema_version": doc.get("schema_version"),
        "scope": _dict(summary.get("scope")),
        "not_run": _first([str(n) for n in _list(_dict(summary.get("scope")).get("not_run"))],
                          NOT_RUN_SHOWN),
        "not_proven": _not_proven(summary),
        "census": _dict(doc.get("census")),
        "owners": _owners(doc, keys),
    }


def render_report(doc: dict) -> str:
    """The auditor's HTML page for an evidence document."""
    return _environment().get_template(TEMPLATE).render(v=_view(doc))


def write_report(run_dir: Path, doc: dict) -> Path:
    """Write ``run_dir/report.html`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return atomic.write(run_dir / "report.html", render_report(doc))
