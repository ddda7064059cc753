#!/usr/bin/env python3
"""Mutation testing of the modules that decide a verdict (issue 11), with mutmut 3.

    .venv/bin/python mutation/run.py [MODULE ...] [--jobs N] [--show] [--fail-under PCT]

(``./run mutation`` installs mutmut, the ``mutation`` extra of pyproject.toml, then runs this.)

For each module a snapshot of the checkout (keyparity/, tests/, fixtures/, suites/,
conftest.py, pyproject.toml) is copied to ``.keyparity/mutation/<module>/`` with a setup.cfg
of its own (mutmut reads its configuration from setup.cfg in its working directory), and
``mutmut run`` mutates that one module inside its own copy (``mutants/``): the working tree is
never touched, so a run can go on while someone edits keyparity/. Each mutant is tested by
the tests of the module's subset that execute the mutated function (mutmut records which in
a first pass), in a forked process, stopping at the first failure.

Score: killed / total, where total counts every mutant mutmut made in the module (a module
may be limited to some of its functions; none is now: the journal's chain check has a module
of its own, keyparity/journal/chain.py) and a timeout counts as killed (the tests did not pass; mutmut's own score does the same); "no tests",
"suspicious" and "survived" are not killed. Surviving mutants named in
mutation/EQUIVALENT.md (equivalent: no test can tell them apart) are also shown as an adjusted
score, total minus those equivalents.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".keyparity" / "mutation"
EQUIVALENT = Path(__file__).with_name("EQUIVALENT.md")
COPY = ("keyparity", "tests", "fixtures", "suites", "conftest.py", "pyproject.toml")


@dataclass(frozen=True)
class Module:
    path: str                     # the file mutated
    tests: tuple[str, ...]        # its fast test subset (files or node ids)
    deselect: str = ""            # a -k expression leaving out slow tests of those files
    functions: tuple[str, ...] = ()  # only these functions' mutants count (empty: all)
    notes: str = ""

    @property
    def dotted(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


# The fast subsets: unit-level tests; none starts a child pytest run (the suites run through
# pytester are left out: they take minutes and run keyparity in a child process, where mutmut
# cannot see which function they execute).
NO_CHILDREN = "not cli and not openssl"  # tests/tools/test_verify.py: `keyparity verify`, openssl
MODULES: dict[str, Module] = {
    "attributes": Module("keyparity/hsm/attributes.py",
                         ("tests/unit/test_attributes_unit.py",
                          "tests/token/test_attributes_token.py")),
    "identity": Module("keyparity/hsm/identity.py", ("tests/token/test_identity_unit.py",)),
    "vectors": Module("keyparity/hsm/vectors.py", ("tests/token/test_vectors_unit.py",)),
    # the vectors' parameter classes (Cipher.param) and allowed/defaults, as data
    "vector_table": Module("keyparity/vector_table.py", ("tests/unit/test_vector_table_unit.py",)),
    "verify": Module("keyparity/attest/verify.py",
                     ("tests/tools/test_verify.py", "tests/unit/test_verify_unit.py"),
                     deselect=NO_CHILDREN),
    # the envelope both verifications read (the signatures, the threshold, the statement)
    "envelope": Module("keyparity/attest/envelope.py",
                       ("tests/tools/test_verify.py", "tests/unit/test_verify_unit.py"),
                       deselect=NO_CHILDREN),
    # tests/tools/test_verify.py signs a bundle in every test's fixture: with it, each of the two
    # mutants of walk() that loop for ever costs minutes before its timeout, and it kills no
    # mutant that tests/unit/test_statement_unit.py does not
    "statement": Module("keyparity/attest/statement.py",
                        ("tests/unit/test_statement_unit.py", "tests/token/test_signing.py"),
                        deselect="not kms and not pkcs11_signer"),
    # the whole module: chain.py is the chain check and nothing else (entry_hash, verify,
    # require_intact, open_error); the journal's storage (store.py: locks, WAL, records)
    # decides no verdict
    "journal": Module("keyparity/journal/chain.py",
                      ("tests/unit/test_journal_chain.py", "tests/tools/test_journal.py"),
                      deselect="not lock"),
    # issue 14: the known answers a baseline keeps and a re-verify checks, and the cluster's
    # lineage through AWS (both decide a re-verify's verdict)
    "known_answers": Module("keyparity/hsm/known_answers.py",
                            ("tests/token/test_known_answers.py",)),
    "lineage": Module("keyparity/cloudhsm/lineage.py", ("tests/unit/test_lineage.py",)),
    "census": Module("keyparity/hsm/census.py",
                     ("tests/suites/test_census.py::test_census_changes_compare_identity_not_order",
                      "tests/token/test_census_unit.py", "tests/token/test_census_scan_unit.py")),
    # the strong identity proof every command that acts on identity uses (issue 21)
    "proof": Module("keyparity/hsm/proof.py", ("tests/token/test_proof_unit.py",)),
    "verdict": Module("keyparity/evidence/verdict.py",
                      ("tests/suites/test_verdict.py", "tests/unit/test_verdict_unit.py"),
                      deselect="not collect and not nothing_to_check and not labels"),
}


def _cfg_list(values: list[str]) -> str:
    return "".join(f"\n    {v}" for v in values)


def stage(name: str, module: Module, without: tuple[str, ...] = ()) -> Path:
    """A fresh snapshot of the checkout for one module, with mutmut's setup.cfg."""
    where = WORK / name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, where / item, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(src, where / item)
    tests = [t for t in module.tests if (where / t.split("::")[0]).exists()
             and t.split("::")[0] not in without]
    if not tests:
        raise SystemExit(f"mutation: no test of {name}'s subset is here: {module.tests}")
    selection = tests + (["-k", module.deselect] if module.deselect else [])
    (where / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = keyparity\n"
        f"only_mutate = {module.path}\n"
        f"also_copy ={_cfg_list(['fixtures', 'suites', 'conftest.py'])}\n"
        f"pytest_add_cli_args_test_selection ={_cfg_list(selection)}\n"
        f"pytest_add_cli_args ={_cfg_list(['-p', 'no:cacheprovider', '-p', 'no:xdist'])}\n"
        # a mutant that loops: killed after (its tests' time + 2 s) x 10 CPU seconds
        "timeout_multiplier = 5\n"
        "timeout_constant = 2\n")
    return where


@dataclass
class Score:
    name: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant -> status
    seconds: float = 0.0
    error: str = ""

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def killed(self) -> int:
        """Killed, counting a timeout as killed (the tests did not pass), as mutmut does."""
        return self.count("killed") + self.count("timeout")

    def survivors(self) -> list[str]:
        return sorted((m for m, s in self.statuses.items() if s not in DETECTED), key=_natural)


DETECTED = ("killed", "timeout")


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def mutmut(where: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # child processes the tests start (tests/helpers/tokentool.py) import the unmutated snapshot
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(where), env.get("PYTHONPATH")]))
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True,
                              check=False)
    with open(log, "w") as fh:
        return subprocess.run(cmd, cwd=where, env=env, stdout=fh, stderr=subprocess.STDOUT,
                              text=True, check=False, preexec_fn=_limit_memory)


def _limit_memory() -> None:
    """A mutant that allocates without end (a loop that never pops) fails with MemoryError
    instead of taking the machine's memory: 4 GiB of address space per process."""
    import resource
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_module(name: str, module: Module, jobs: int, without: tuple[str, ...] = ()) -> Score:
    where = stage(name, module, without)
    score = Score(name)
    globs = [f"{module.dotted}.x_{fn}__mutmut_*" for fn in module.functions]
    start = time.monotonic()
    proc = mutmut(where, "run", "--max-children", str(jobs), *globs, log=where / "mutmut.log")
    score.seconds = time.monotonic() - start
    listing = mutmut(where, "results", "--all", "true")
    for line in listing.stdout.splitlines():
        key, sep, status = line.strip().rpartition(": ")
        if sep and key.startswith(module.dotted + "."):
            if not globs or any(fnmatch.fnmatchcase(key, g) for g in globs):
                score.statuses[key] = status
    if proc.returncode != 0 or not score.statuses:
        tail = (where / "mutmut.log").read_text(errors="replace")[-2000:]
        score.error = f"mutmut run exited {proc.returncode}; see {where / 'mutmut.log'}\n{tail}"
    return score


def equivalents() -> dict[str, str]:
    """Mutant name -> reason, from the table in mutation/EQUIVALENT.md."""
    out = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            names = re.findall(r"`(keyparity\.[\w.]+__mutmut_\d+)`", line)
            for n in names:
                out[n] = cells[-1] if cells else ""
    return out


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}%" if b else "  n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="mutants tested at once (default: half the CPUs)")
    parser.add_argument("--show", action="store_true",
                        help="print the diff of every mutant not killed")
    parser.add_argument("--without", nargs="+", default=[], metavar="TEST_FILE",
                        help="leave these test files out of the subsets (to measure what they "
                             "add, e.g. the score before them)")
    parser.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                        help="exit 1 when a module's adjusted score is below PCT")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = args.modules or list(MODULES)
    eq = equivalents()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scores = []
    for name in names:
        print(f"mutation: {name} ({MODULES[name].path}) ...", flush=True)
        score = run_module(name, MODULES[name], args.jobs, tuple(args.without))
        scores.append(score)
        if score.error:
            print(score.error, file=sys.stderr)
    status = 0
    header = (f"{'module':<13} {'killed':>6} {'total':>5} {'score':>6}   {'equiv':>5} "
              f"{'adjusted':>8}   {'survived':>8} {'no tests':>8} {'timeout':>7} {'other':>5} "
              f"{'time':>6}")
    print("\n" + header + "\n" + "-" * len(header))
    for s in scores:
        counts = Counter(s.statuses.values())
        equiv = sum(1 for m, st in s.statuses.items() if st not in DETECTED and m in eq)
        other = (s.total - counts["killed"] - counts["timeout"] - counts["survived"]
                 - counts["no tests"])
        adjusted_total = s.total - equiv
        label = name_with_scope(s.name)
        print(f"{label:<13} {s.killed:>6} {s.total:>5} {pct(s.killed, s.total):>6}   {equiv:>5} "
              f"{pct(s.killed, adjusted_total):>8}   {counts['survived']:>8} "
              f"{counts['no tests']:>8} {counts['timeout']:>7} {other:>5} {s.seconds:>5.0f}s")
        if s.error or (args.fail_under is not None and adjusted_total
                       and 100.0 * s.killed / adjusted_total < args.fail_under):
            status = 1
    for s in scores:
        if MODULES[s.name].functions:
            print(f"{name_with_scope(s.name)} {MODULES[s.name].notes}")
    print("killed counts timeouts; adjusted: killed / (total - equivalents listed in "
          "mutation/EQUIVALENT.md)")
    print(f"\ntotal time {time.monotonic() - started:.0f}s; details and mutants in {WORK}/<module>/")
    for s in scores:
        left = [m for m in s.survivors() if m not in eq]
        stale = [m for m in eq if m.startswith(MODULES[s.name].dotted + ".")
                 and s.statuses.get(m) in (None, *DETECTED) and (
                     not MODULES[s.name].functions or m in s.statuses)]
        if left:
            print(f"\n{s.name}: {len(left)} not killed and not listed as equivalent:")
            for m in left:
                print(f"  {m}: {s.statuses[m]}")
                if args.show:
                    diff = mutmut(WORK / s.name, "show", m).stdout
                    print("\n".join("      " + ln for ln in diff.splitlines()[1:]))
        if stale:
            print(f"\n{s.name}: listed in EQUIVALENT.md but killed or gone (the code changed; "
                  f"update the list): {', '.join(stale)}")
    return status


def name_with_scope(name: str) -> str:
    return name + ("*" if MODULES[name].functions else "")


if __name__ == "__main__":
    sys.exit(main())
