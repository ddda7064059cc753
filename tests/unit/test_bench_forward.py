"""keyparity.bench.forward: what the bench's profile loads the forwarding module with, and the
per-process counts files summed (the module's own behaviour: tests/tools/test_p11forward.py)."""
from __future__ import annotations

import json
from pathlib import Path

from keyparity.bench.forward import Forward, read_calls
from keyparity.profile import load_profile


def test_module_env_names_the_target_the_latency_and_one_counts_file_per_process(tmp_path):
    env = Forward(1500, tmp_path).module_env("/usr/lib/softhsm/libsofthsm2.so")
    assert env == {"KEYPARITY_P11_TARGET": "/usr/lib/softhsm/libsofthsm2.so",
                   "KEYPARITY_P11_LATENCY_US": "1500",
                   "KEYPARITY_P11_CALLS": str(tmp_path / "calls-%p.json")}


def test_a_profile_may_set_the_forwarding_modules_variables(tmp_path):
    """The bench's generated profile sets them in module_env: the allow-list admits them."""
    env = {"SOFTHSM2_CONF": str(tmp_path / "softhsm2.conf"),
           **Forward(1000, tmp_path).module_env("/usr/lib/softhsm/libsofthsm2.so")}
    module = tmp_path / "libp11forward.so"
    module.write_bytes(b"\x7fELF")
    side = {"module": str(module), "pin": "env:KP_TEST_PIN", "mode": "NON_FIPS"}
    doc = {"name": "f", "description": "d", "environment": "test", "module_env": env,
           "clusters": {"source": {**side, "name": "a", "token_label": "a"},
                        "target": {**side, "name": "b", "token_label": "b"}},
           "keys": [{"label": "k", "type": "aes", "size": 256}]}
    path = tmp_path / "f.yaml"
    path.write_text(json.dumps(doc))
    assert dict(load_profile(path).module_env) == env


def test_counts_are_summed_over_the_processes_files(tmp_path):
    for pid, calls in ((11, {"C_Encrypt": 3, "C_Login": 1}), (12, {"C_Encrypt": 5})):
        (tmp_path / f"calls-{pid}.json").write_text(json.dumps(
            {"pid": pid, "latency_us": 1000, "calls": calls}))
    (tmp_path / "other.json").write_text("{}")  # not a counts file: not read
    assert read_calls(tmp_path) == {"processes": 2, "total": 9,
                                    "calls": {"C_Encrypt": 8, "C_Login": 1},
                                    "by_process": {"11": 4, "12": 5}}
    assert read_calls(Path(tmp_path / "none")) == {"processes": 0, "total": 0, "calls": {},
                                                    "by_process": {}}
