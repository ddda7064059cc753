"""The keyparity command line itself: --help describes every command in plain text, --version,
nested commands (plan create|sign|verify, demo STEP), the previous release's spellings with a
line on stderr, progress on stderr for reads of many keys, and an error listing many problems
capped with a count and written whole to a file."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyparity import __version__, cli


def keyparity(*args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyparity.cli", *args], capture_output=True,
                          text=True, check=False, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          timeout=300)


def parsers(p: argparse.ArgumentParser, name: str = "keyparity"
            ) -> list[tuple[str, argparse.ArgumentParser, dict[str, str]]]:
    """Every parser below ``p`` (itself included), with its subcommands' help by name."""
    out = []
    for action in p._actions:  # argparse keeps its sub-parsers there, nowhere public
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            out.append((name, p, helps))
            for sub, child in action.choices.items():
                out += parsers(child, f"{name} {sub}")
    return out or [(name, p, {})]


def test_help_lists_and_describes_every_command_in_plain_text():
    out = keyparity("--help")
    assert out.returncode == 0 and out.stderr == ""
    assert "`" not in out.stdout
    groups = {name: (p, helps) for name, p, helps in parsers(cli.parser())}
    top = set(groups["keyparity"][1])
    assert top == {"inventory", "plan", "sign", "verify", "retire", "cleanup", "copies", "journal",
                   "demo", "bench", "approve"}
    for name, (p, helps) in groups.items():
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:  # a command without steps
            continue
        assert set(helps) == set(sub.choices), f"{name}: a command without a description"
        for command, text in helps.items():
            assert text and "`" not in text, f"{name} {command}: {text!r}"
        assert "`" not in (p.description or "") + (p.epilog or "")
    for command in top:
        assert f"    {command}" in out.stdout


def test_every_option_is_described_without_rest_markup():
    seen = 0
    for name, p, _ in parsers(cli.parser()):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    for option in child._actions:
                        assert "`" not in (option.help or ""), (name, child_name, option.dest)
                        seen += 1
    assert seen > 50


def test_version():
    out = keyparity("--version")
    assert (out.returncode, out.stdout) == (0, f"keyparity {__version__}\n")


@pytest.mark.parametrize(("argv", "spelled"), [
    (["plan", "prod", "--out", "p"], ["plan", "create", "prod", "--out", "p"]),
    (["plan", "create", "prod"], ["plan", "create", "prod"]),
    (["plan", "sign", "p", "--signer", "c1"], ["plan", "sign", "p", "--signer", "c1"]),
    (["plan", "verify", "p"], ["plan", "verify", "p"]),
    (["plan", "--help"], ["plan", "--help"]),
    (["verify", "reports/x"], ["verify", "reports/x"]),
])
def test_plan_is_a_group_and_plan_profile_is_short_for_plan_create(argv, spelled):
    assert cli.spelled(argv) == spelled


@pytest.mark.parametrize(("argv", "func"), [
    (["plan", "create", "prod"], "_plan"), (["plan", "sign", "d", "--profile", "p",
                                             "--signer", "s"], "_plan_sign"),
    (["plan", "verify", "d"], "_plan_verify"), (["demo", "seed", "softhsm"], "_seed"),
    (["demo", "custodians", "--state", "s"], "_demo_custodians"),
    (["demo", "pki", "--state", "s"], "_demo_pki"),
])
def test_nested_commands_reach_their_handlers(argv, func):
    assert cli.parser().parse_args(argv).func is getattr(cli, func)


@pytest.mark.parametrize(("old", "new"), [
    ("seed", "demo seed"), ("demo-pki", "demo pki"), ("demo-custodians", "demo custodians"),
    ("softhsm-init", "demo softhsm-init"), ("softhsm-restore", "demo softhsm-restore")])
def test_the_previous_spellings_still_work_with_a_line_on_stderr(old, new):
    out = keyparity(old, "--help")
    assert out.returncode == 0
    assert out.stderr == (f"keyparity: {old!r} is deprecated and will be removed in the next "
                          f"release; use 'keyparity {new}'\n")
    assert out.stdout.startswith(f"usage: keyparity {new} ")


def test_an_error_with_many_problems_is_capped_and_written_whole(monkeypatch, tmp_path, capsys):
    from keyparity.errors import listed
    from keyparity.attest.plan import PlanError
    problems = [f"'k-{i:04d}' (aes) not found on hsm1" for i in range(5000)]

    def failing(args: Any) -> int:
        raise listed(PlanError, f"no plan written: {len(problems)} problem(s)", problems)

    monkeypatch.setattr(cli, "_plan", failing)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert cli.main(["plan", "prod"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and len(err) < 1000
    written = sorted((tmp_path / ".keyparity" / "errors").iterdir())
    assert len(written) == 1 and written[0].name.startswith("plan-create-")
    assert err == ("keyparity plan create: error: no plan written: 5000 problem(s): "
                   + "; ".join(problems[:10]) + f"; ... and 4990 more (all 5000 in {written[0]})\n")
    assert written[0].read_text().splitlines() == problems


def test_a_short_list_is_said_whole(monkeypatch, capsys):
    from keyparity.errors import listed
    from keyparity.attest.plan import PlanError

    def failing(args: Any) -> int:
        raise listed(PlanError, "no plan written: 2 problem(s)", ["a", "b"])

    monkeypatch.setattr(cli, "_plan", failing)
    assert cli.main(["plan", "prod"]) == 1
    assert capsys.readouterr().err == ("keyparity plan create: error: no plan written: 2 "
                                       "problem(s): a; b\n")


# ---- against a token: progress and a capped list, as an operator sees them ------------------

AES = [{"label": f"k-aes-{i:02d}", "type": "aes", "size": 128} for i in range(25)]


def test_inventory_says_how_far_it_is_on_stderr(lab):
    """25 keys (more than progress.FEW) read without a terminal: the count on stderr, the
    draft alone on stdout."""
    lab.seed(AES)
    out = keyparity("inventory", str(lab.profile(AES)), cwd=lab.root, env=lab.env)
    assert out.returncode == 0, out.stderr
    assert [line.split(" (")[0] for line in out.stderr.splitlines()] == [
        "keyparity: read objects on hsm1: 25"]
    assert "keyparity:" not in out.stdout


def test_plan_with_many_keys_missing_caps_its_error_and_says_how_far_it_is(lab):
    """Keys the source does not hold: one error line with the first ten and a count, the
    whole list in a file; the keys read are counted on stderr first."""
    (lab.root / "pytest.ini").write_text("[pytest]\n")
    lab.custodian()
    profile = lab.profile(AES, evidence=lab.custodian())
    out = keyparity("plan", str(profile), "--unsigned", "--out", str(lab.root / "plan"),
                    cwd=lab.root, env=lab.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert len(out.stderr.splitlines()) == 2, out.stderr
    progress, error = out.stderr.splitlines()
    assert progress.startswith("keyparity: read keys on hsm1: 25 of 25 (")
    (written,) = (lab.root / ".keyparity" / "errors").iterdir()
    assert error.startswith("keyparity plan create: error: no plan written: 25 problem(s): "
                            "'k-aes-00' (aes) not found on hsm1; ")
    assert error.endswith(f"; ... and 15 more (all 25 in {written})")
    assert written.read_text().splitlines() == [f"'k-aes-{i:02d}' (aes) not found on hsm1"
                                                for i in range(25)]
