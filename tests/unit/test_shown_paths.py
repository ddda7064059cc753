"""What evidence records of a path (keyparity.profile.Profile.shown and shown_paths, the run's
command line): relative to the profile's directory inside the project that holds the profile,
else the name alone; never the host's absolute path."""
from __future__ import annotations

import sys
from pathlib import Path

from keyparity import runinfo
from keyparity.profile import Profile, shown_path

PROJECT = Path("/srv/checkout")
PROFILE_DIR = PROJECT / "hsm_profiles"


def test_a_path_in_the_project_is_relative_to_the_profile_directory():
    assert shown_path(PROJECT / ".keyparity" / "journal.sqlite", PROFILE_DIR) == \
        "../.keyparity/journal.sqlite"
    assert shown_path(PROFILE_DIR / "prod.yaml", PROFILE_DIR) == "prod.yaml"


def test_a_path_outside_the_project_is_named():
    assert shown_path("/var/lib/keyparity/journal.sqlite", PROFILE_DIR) == "journal.sqlite"
    assert shown_path("/j.sqlite", Path("/p")) == "j.sqlite"  # a profile at the top: named too


def test_shown_paths_rewrites_every_path_field_at_any_depth():
    profile = Profile.__new__(Profile)  # only its path matters here
    object.__setattr__(profile, "path", PROFILE_DIR / "prod.yaml")
    record = {"path": str(PROJECT / "plans" / "p1"), "keys": 3,
              "details": {"key_path": PROJECT / "pki" / "client.key", "now": "2026"},
              "checks": [{"trust_dir": "/etc/certs"}]}
    shown = profile.shown_paths(record)
    assert shown == {"path": "../plans/p1", "keys": 3,
                     "details": {"key_path": "../pki/client.key", "now": "2026"},
                     "checks": [{"trust_dir": "certs"}]}
    assert record["path"] == str(PROJECT / "plans" / "p1")  # a copy


def test_the_recorded_command_line_leaves_the_rootdir_out(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/srv/checkout/.venv/bin/pytest", "--hsm-profile=softhsm",
                                      "--hsm-plan=/srv/checkout/.keyparity/plans/p1"])
    assert runinfo.environment(PROJECT)["command"] == [
        "pytest", "--hsm-profile=softhsm", "--hsm-plan=.keyparity/plans/p1"]
