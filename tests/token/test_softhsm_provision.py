"""Provisioning re-initialises only the tokens it is asked for, never any other."""
import os
import subprocess

from keyparity.hsm.softhsm import has_token, provision


def labels(conf):
    out = subprocess.run(["softhsm2-util", "--show-slots"], capture_output=True, text=True,
                         env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True).stdout
    return sorted(line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.strip().startswith("Label:") and line.split(":", 1)[1].strip())


def test_reprovisioning_replaces_its_tokens_and_keeps_others(tmp_path):
    conf = provision(tmp_path, ["hsm1", "hsm2", "custodian"])
    before = {label: (tmp_path / f"{label}.pin").read_text() for label in ("hsm1", "custodian")}
    conf = provision(tmp_path, ["hsm1"])
    assert labels(conf) == ["custodian", "hsm1", "hsm2"]
    assert (tmp_path / "hsm1.pin").read_text() != before["hsm1"]  # a new token, a new PIN
    assert (tmp_path / "custodian.pin").read_text() == before["custodian"]
    assert oct((tmp_path / "hsm1.pin").stat().st_mode & 0o777) == "0o600"
    assert has_token("hsm2", {**os.environ, "SOFTHSM2_CONF": str(conf)})
