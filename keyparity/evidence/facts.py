"""The evidence of a run, assembled from test reports in the controller process.

Tests attach facts to their reports (``user_properties`` under the name ``keyparity``); under
xdist those travel with the reports, so the controller alone writes the file. Nothing secret is
ever attached: no PIN, no key value.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..formats import jsonfile
from . import causes, verdict as verdicts
from .verdict import strip_group

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..profile import KeySpec, Profile

SCHEMA_VERSION = "1"
def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Evidence:
    """Collects run metadata, per-key facts and test outcomes; writes ``evidence.json``."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.specs: list[KeySpec] = []
        self.doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run": {**meta,
                                    "started": _now()}, "clusters": {}, "keys": {}, "tests": []}

    def key(self, label: str) -> dict[str, Any]:
        return self.doc["keys"].setdefault(label, {"label": label})

    def add_inventory(self, keys: Iterable[KeySpec]) -> None:
        """Every inventory key, with what the profile says of it, whether or not a test runs."""
        for spec in keys:
            self.specs.append(spec)
            entry = self.key(spec.label)
            entry.update(type=spec.type, target_label=spec.target_label,
                         disposition=spec.disposition, role=spec.role)
            if spec.size is not None:
                entry["size"] = spec.size
            if spec.curve is not None:
                entry["curve"] = spec.curve
            if spec.owner is not None:
                entry["owner"] = spec.owner

    def add_owners(self, profile: Profile) -> None:
        """The per-owner strategy: each owner's logins and its keys, in the profile's order."""
        if profile.owners:
            self.doc["owners"] = {o.name: {"source_user": o.source.user,
                                           "target_user": o.target.user,
                                           "keys": [k.label for k in profile.keys
                                                    if profile.owner_of(k) == o.name]}
                                  for o in profile.owners}

    def set_signing(self, signers: list[str], threshold: int) -> None:
        """Who is to sign the bundle, recorded before signing (evidence.json is signed too)."""
        self.doc["signing"] = {"signers": list(signers), "threshold": int(threshold)}

    def add_report(self, nodeid: str, label: str | None, outcome: str, when: str,
                   duration: float, message: str | None, facts: list[dict[str, Any]],
                   function: str | None = None, param: str | None = None) -> None:
        """One phase of a test. ``function`` and ``param``: what the verdict matches it by
        (keyparity.evidence.verdict), with ``label`` the key it is about; None for a test that
        is not one of keyparity's suites'."""
        nodeid = strip_group(nodeid)  # xdist's loadgroup tag
        test: dict[str, Any] = {"nodeid": nodeid, "key": label, "outcome": outcome,
                                "phase": when, "duration_s": round(duration, 4)}
        if function is not None:
            test["function"] = function
        if param is not None:
            test["param"] = param
        if message:
            test["message"] = message
        self.doc["tests"].append(test)
        for fact in facts:
            if not label and "tls" in fact:  # the TLS suite: per cluster, see _add_tls
                fact = dict(fact)
                self._add_tls(fact.pop("tls"))
                if not fact:
                    continue
            if not label and "census" in fact:  # the census suite: see _add_census
                fact = dict(fact)
                self._add_census(fact.pop("census"))
                if not fact:
                    continue
            if not label and "cluster" in fact:  # the cluster suite: see _add_cluster
                fact = dict(fact)
                self._add_cluster(fact.pop("cluster"))
                if not fact:
                    continue
            target = self.key(label) if label else self.doc.setdefault("run_facts", {})
            for name, value in fact.items():
                if name == "vectors":
                    target.setdefault("vectors", []).extend(value)
                elif name == "reverify":  # each re-verify test adds its part
                    target.setdefault("reverify", {}).update(value)
                else:
                    target[name] = value

    def _add_tls(self, facts: dict[str, Any]) -> None:
        """``{role: {"cluster", "configured", "reason"?, "checks": {name: check}}}`` merged
        into ``doc["tls"]``: one entry per cluster, one check per TLS test."""
        tls = self.doc.setdefault("tls", {})
        for role, entry in facts.items():
            section = tls.setdefault(role, {})
            checks = section.setdefault("checks", {})
            checks.update(entry.get("checks", {}))
            section.update({k: v for k, v in entry.items() if k != "checks"})
            section["checks"] = dict(sorted(checks.items()))
        self.doc["tls"] = dict(sorted(tls.items()))  # source before target

    def _add_census(self, facts: dict[str, Any]) -> None:
        """``{role: {part: record}}``: the source's census at the ``start`` and ``end`` of the
        run, the target's ``reconciliation``; merged into ``doc["census"]``."""
        census = self.doc.setdefault("census", {})
        for role, parts in facts.items():
            census.setdefault(role, {}).update(parts)
        self.doc["census"] = dict(sorted(census.items()))  # source before target

    def _add_cluster(self, facts: dict[str, Any]) -> None:
        """``{role: {"aws"?, "mode_source"?, "verification", "checks": {name: check}}}`` from
        the cluster suite, merged into ``doc["clusters"][role]``; ``doc["mode"]`` gets the
        declared and observed mode per cluster name."""
        for role, entry in facts.items():
            cluster = self.doc["clusters"].setdefault(role, {})
            if "checks" in entry or "verification_checks" in cluster:
                checks = cluster.get("verification_checks", {})
                checks.update(entry.get("checks", {}))
                cluster["verification_checks"] = dict(sorted(checks.items()))
            if "lineage_checks" in entry:
                cluster.setdefault("lineage_checks", {}).update(entry["lineage_checks"])
            for name in ("aws", "mode_source", "verification", "lineage", "before_after"):
                if name in entry:
                    cluster[name] = entry[name]
            observed = entry.get("aws", {}).get("mode")
            if observed is not None and cluster.get("name"):
                self.doc.setdefault("mode", {})[cluster["name"]] = {
                    "declared": cluster.get("mode"), "observed": observed,
                    "match": observed == cluster.get("mode"),
                    "source": "cloudhsmv2.describe_clusters"}

    def finish(self, exitstatus: int, *, expect: Mapping[str, Sequence[str | None]],
               deselected: Mapping[str, int] | None = None) -> Path:
        """Decide the verdict (keyparity.evidence.verdict) and write ``evidence.json``.
        ``expect``: the tests the run expects (``verdict.expected``); ``deselected``: tests
        deselected per suite. A run interrupted by a signal says so (``run.interrupted``)."""
        self.doc["run"]["finished"] = _now()
        self.doc["run"]["exit_status"] = int(exitstatus)
        mode = str(self.doc["run"].get("migration_mode", "migrate"))
        summary = verdicts.decide(self.doc, self.specs, expect=expect,
                                  deselected=deselected or {}, exitstatus=exitstatus, mode=mode,
                                  interrupted=self.doc["run"].get("interrupted"))
        summary["causes"] = causes.causes(self.doc, summary["key_verdicts"])
        clusters = self.doc.get("clusters", {})
        one = clusters.get("source") or clusters.get("target") or {}
        summary["headline"] = verdicts.headline(
            summary, one.get("name", "the source") if mode in verdicts.SINGLE_PROOFS else
            clusters.get("source", {}).get("name", "the source"),
            clusters.get("target", {}).get("name", "the target"), mode=mode,
            baseline=self.doc.get("baseline"))
        closed = clusters.get("target", {}).get("lineage_checks", {}).get(
            "rollback", {}).get("headline")
        if closed:  # a re-verify past the HSM type change's rollback deadline says so first
            summary["headline"] = f"{closed[0].upper()}{closed[1:]}. {summary['headline']}"
        for label, verdict in summary.pop("key_verdicts").items():
            self.key(label)["verdict"] = verdict
        self.doc["summary"] = summary
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return jsonfile.write(self.run_dir / "evidence.json", self.doc)
