"""``keyparity retire`` with a profile whose time-stamping authority is down: refused before any
key is destroyed (the record could not be stamped), nothing written. The plan and the run of the
same profile were stamped while the TSA was up (a local TSA in its own process)."""
from __future__ import annotations

import json

import pytest
import yaml
from local_tsa import local_tsa

from test_bad_input import counts
from test_retire import pass_run, retire
from test_plan import seeded_profile, signed_plan


@pytest.fixture
def suites(all_suites: pytest.Pytester) -> pytest.Pytester:
    """Every suite keyparity ships: retire needs a PASS."""
    return all_suites


def test_retire_destroy_with_its_tsa_down_destroys_nothing(lab, suites, tmp_path):
    profile = seeded_profile(lab)
    with local_tsa(tmp_path / "tsa") as tsa:
        url = tsa.url
        doc = yaml.safe_load(profile.read_text())
        doc["evidence"]["timestamp"] = {"url": url, "ca": str(tsa.root), "timeout_s": 5}
        profile.write_text(yaml.safe_dump(doc, sort_keys=False))
        plan_dir = signed_plan(lab, profile)
        run_id = pass_run(lab, suites, profile, plan_dir)
    assert len(json.loads((plan_dir / "plan.tsr.json").read_text())["tokens"]) == 2
    assert (suites.path / "reports" / run_id / "evidence.tsr.json").is_file()
    before = counts(lab)

    done = retire(lab, suites, profile, run_id, "--destroy", f"--plan={plan_dir}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"TSA {url} cannot be reached" in done.stderr
    assert counts(lab) == before  # no source key destroyed
    assert not list((suites.path / "reports").glob("retire-*"))
