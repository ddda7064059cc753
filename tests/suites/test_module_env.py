"""A profile's module_env (keyparity.module_env): refused for a PIN reference's variable or a
loader variable before anything runs, and applied only while the PKCS #11 module loads: the
module reads it, the process's environment and the processes it starts never hold it."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import run_suites
from test_bad_input import edit_profile

AES = {"label": "k-aes128", "type": "aes", "size": 128}

LOAD = """
import json, os, subprocess, sys
from keyparity.hsm.cluster import load_module
from keyparity.hsm.softhsm import find_module
lib = load_module(find_module(), {"SOFTHSM2_CONF": sys.argv[1]})
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('SOFTHSM2_CONF'))"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps({"tokens": sorted(t.label for t in lib.get_tokens() if t.label),
                  "here": os.environ.get("SOFTHSM2_CONF"), "child": child}))
"""


def test_module_env_is_set_while_the_module_loads_only(lab):
    env = {k: v for k, v in lab.env.items() if k != "SOFTHSM2_CONF"}
    out = subprocess.run([sys.executable, "-c", LOAD, str(lab.conf)], env=env, cwd=lab.root,
                         capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == {"tokens": ["hsm1", "hsm2"], "here": None,
                                      "child": "None"}


def test_a_run_refuses_module_env_with_a_pin_variable_or_ld_preload(lab, suites):
    lab.seed([AES])
    (lab.root / "src.pin").write_text((lab.root / "hsm1.pin").read_text())

    def pin_in_module_env(d):
        d["clusters"]["source"]["pin"] = "env:SRC_PIN"
        d["module_env"]["SRC_PIN"] = (lab.root / "hsm1.pin").read_text().strip()

    def preload(d):
        d["module_env"]["LD_PRELOAD"] = str(lab.root / "any.so")

    for name, change in (("SRC_PIN", pin_in_module_env), ("LD_PRELOAD", preload)):
        profile = edit_profile(lab.profile([AES], name=f"env-{name.lower()}"), change)
        result = run_suites(suites, profile)
        assert result.ret == 4, result.stdout.str()
        errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
        assert len(errors) == 1 and f"module_env.{name}: {name} " in errors[0], errors
        assert lab.pins["hsm1"] not in result.stderr.str() + result.stdout.str()
    assert not (suites.path / "reports").exists()
    assert lab.tokens({"op": "count", "token": "hsm2"}) == [0]
