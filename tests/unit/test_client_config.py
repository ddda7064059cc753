"""The CloudHSM client's key availability check (keyparity.cloudhsm.client_config) against
configuration files in the layout configure-pkcs11 writes (``clusters[].cluster.options``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from keyparity.cloudhsm.client_config import (DEFAULT_PATH, check_key_availability,
                                              configure_tool)


def config(options: dict[str, Any] | None = None, cluster_id: str = "cluster-abc",
           clusters: int = 1) -> dict[str, Any]:
    """A Client SDK 5 configuration file with these cluster options."""
    entry = {"type": "hsm2m", "cluster": {
        "hsm_ca_file": "/opt/cloudhsm/etc/customerCA.crt", "cluster_id": cluster_id,
        "servers": [{"hostname": "10.0.1.12", "port": 2223, "enable": True}]}}
    if options is not None:
        entry["cluster"]["options"] = options
    return {"clusters": [json.loads(json.dumps(entry)) for _ in range(clusters)],
            "logging": {"log_type": "file", "log_file": "/opt/cloudhsm/run/cloudhsm-pkcs11.log",
                        "log_interval": "daily", "log_level": "info"}}


def write(tmp_path: Path, doc: Any, name: str = "cloudhsm-pkcs11.cfg") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_the_default_path_is_the_pkcs11_client_configuration():
    assert DEFAULT_PATH == Path("/opt/cloudhsm/etc/cloudhsm-pkcs11.cfg")
    assert configure_tool(DEFAULT_PATH) == "/opt/cloudhsm/bin/configure-pkcs11"
    assert configure_tool(Path("/opt/cloudhsm/etc/cloudhsm-cli.cfg")) == \
        "/opt/cloudhsm/bin/configure-cli"


@pytest.mark.parametrize("options", [None, {}, {"disable_key_availability_check": False}])
def test_the_check_left_on_passes(tmp_path, options):
    path = write(tmp_path, config(options))
    check = check_key_availability(path)
    assert check.ok and check.skip is None, check.message
    assert check.facts["path"] == str(path) and check.facts["cluster_ids"] == ["cluster-abc"]
    expected = [] if not options else [{"at": "clusters[0].cluster.options."
                                               "disable_key_availability_check", "value": False}]
    assert check.facts["found"] == expected
    assert check.facts["value"] is (False if options else None)


def test_the_check_disabled_fails_with_the_configure_step(tmp_path):
    path = write(tmp_path, config({"disable_key_availability_check": True}))
    check = check_key_availability(path)
    assert not check.ok and check.facts["value"] is True
    assert check.message == (
        f"{path} disables the CloudHSM key availability check "
        "(clusters[0].cluster.options.disable_key_availability_check = true): keys that are on "
        "one HSM only would be used, and lost with it; turn it back on with `sudo "
        "/opt/cloudhsm/bin/configure-pkcs11 --enable-key-availability-check` (and run the "
        "cluster with at least two HSMs)")


def test_one_cluster_of_several_disabling_it_fails_and_is_named(tmp_path):
    doc = config({"disable_key_availability_check": False}, clusters=2)
    doc["clusters"][1]["cluster"]["options"]["disable_key_availability_check"] = True
    doc["clusters"][1]["cluster"]["cluster_id"] = "cluster-src"
    check = check_key_availability(write(tmp_path, doc, "cloudhsm-cli.cfg"))
    assert not check.ok and check.facts["value"] == [False, True]
    assert check.facts["cluster_ids"] == ["cluster-abc", "cluster-src"]
    assert "clusters[1].cluster.options.disable_key_availability_check = true" in check.message
    assert "clusters[0]" not in check.message
    assert "`sudo /opt/cloudhsm/bin/configure-cli --enable-key-availability-check`" \
        in check.message


@pytest.mark.parametrize("doc, at", [
    ({"disable_key_availability_check": True, "clusters": []}, "disable_key_availability_check"),
    ({"server": {"disable_key_availability_check": 1}}, "server.disable_key_availability_check"),
    (config({"disable_key_availability_check": "false"}),
     "clusters[0].cluster.options.disable_key_availability_check"),
])
def test_the_key_anywhere_else_or_not_a_boolean_is_not_passed(tmp_path, doc, at):
    check = check_key_availability(write(tmp_path, doc))
    assert not check.ok and f"({at} = " in check.message
    if not isinstance(check.facts["value"], bool):
        assert "(not a boolean)" in check.message


def test_no_configuration_file_is_not_a_cloudhsm_client_and_skips(tmp_path):
    check = check_key_availability(tmp_path / "cloudhsm-pkcs11.cfg")
    assert check.ok and check.skip is not None
    assert "does not exist, so this host is not a CloudHSM Client SDK 5 client" in check.skip
    assert check.facts["path"] == str(tmp_path / "cloudhsm-pkcs11.cfg")


@pytest.mark.parametrize("text", ["{\"clusters\": [", "", "not json"])
def test_invalid_json_fails_naming_the_file(tmp_path, text):
    path = write(tmp_path, text)
    check = check_key_availability(path)
    assert not check.ok and check.skip is None
    assert check.message.startswith(f"the CloudHSM client configuration {path} is not valid "
                                    "JSON")


def test_json_that_is_not_an_object_fails(tmp_path):
    check = check_key_availability(write(tmp_path, [config()]))
    assert not check.ok and "is JSON but not an object" in check.message


def test_an_unreadable_file_fails_naming_it(tmp_path):
    directory = tmp_path / "cloudhsm-pkcs11.cfg"
    directory.mkdir()  # exists, cannot be read as a file (works as root too)
    check = check_key_availability(directory)
    assert not check.ok and check.message.startswith(
        f"the CloudHSM client configuration {directory} cannot be read")
    if os.geteuid() != 0:
        path = write(tmp_path, config(), "other.cfg")
        path.chmod(0)
        denied = check_key_availability(path)
        assert not denied.ok and "PermissionError" in denied.message
