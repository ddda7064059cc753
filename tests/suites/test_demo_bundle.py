"""The demo's bundle as an auditor receives it: made by the demo's own commands (softhsm-init,
demo-custodians, demo-pki, seed, then every suite under the demo profile) in a directory of
its own, never the checkout's ./run demo state. The bundle holds evidence only (no runtime
file of the run), nothing in it names a host's absolute path, ``keyparity verify`` ends with
its signed verdict, and docs/auditors.md's recipe verifies it without keyparity."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TMPFS

BUNDLE = ["allure-results.tar.gz", "approvals", "assessment-results.json", "cbom.json", "evidence.dsse.json",
          "evidence.json", "journal.json", "junit.xml", "profile", "report.html", "signers",
          "statement.json"]
# what makes it self-contained (keyparity.attest.contents)
INSIDE = ["profile/softhsm.yaml", "signers/custodian-1.pem", "signers/custodian-2.pem",
          "approvals/approvers", "approvals/approvers/security-officer.pub.pem",
          "approvals/softhsm-wrap-exception.dsse.json", "approvals/softhsm-non-fips.dsse.json"]


@dataclass
class Demo:
    root: Path  # what ./run demo's checkout would be: hsm_profiles/, suites/, .keyparity/
    run_dir: Path
    output: str

    @property
    def keys(self) -> list[Path]:
        return [self.root / ".keyparity" / "evidence" / f"custodian-{i}.pub.pem" for i in (1, 2)]


def keyparity(root: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "keyparity.cli", *args], capture_output=True,
                         text=True, check=False, cwd=root, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def demo() -> Demo:
    root = Path(tempfile.mkdtemp(prefix="keyparity-demo-", dir=TMPFS))
    try:
        for name in ("suites", "fixtures", "hsm_profiles"):
            shutil.copytree(REPO / name, root / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "conftest.py", root / "conftest.py")
        (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
        state = root / ".keyparity"
        keyparity(root, "demo", "softhsm-init", "--state", str(state / "softhsm"),
                  "--token", "hsm1", "--token", "hsm2")
        keyparity(root, "demo", "custodians", "--state", str(state))
        keyparity(root, "demo", "pki", "--state", str(state))
        keyparity(root, "demo", "seed", "softhsm")
        keyparity(root, "demo", "approvals", "softhsm", "--state", str(state))
        run = subprocess.run([sys.executable, "-m", "pytest", "suites", "--hsm-profile=softhsm",
                              "--hsm-run-id=20261207T120000Z-d3e0b1", "-p", "no:randomly"],
                             capture_output=True, text=True, check=False, cwd=root, timeout=600)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        yield Demo(root, root / "reports" / "20261207T120000Z-d3e0b1", run.stdout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def texts(run_dir: Path) -> dict[str, str]:
    """Every signed text of a bundle, by name: each file, the envelope's payload decoded, and
    each member of the Allure archive."""
    out = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = str(path.relative_to(run_dir))
        out[name] = path.read_bytes().decode("utf-8", "replace")
        if name.endswith(".tar.gz"):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        data = archive.extractfile(member).read()  # type: ignore[union-attr]
                        out[f"{name}/{member.name}"] = data.decode("utf-8", "replace")
    envelope = json.loads(out["evidence.dsse.json"])
    out["evidence.dsse.json:payload"] = base64.b64decode(envelope["payload"]).decode()
    return out


def test_the_bundle_holds_evidence_only(demo):
    """No runtime file of the run (the login state and its lock) is in the bundle, so none is
    signed; and the run's runtime directory is gone once the bundle is signed."""
    assert sorted(str(p.relative_to(demo.run_dir)) for p in demo.run_dir.rglob("*")) == sorted(
        BUNDLE + INSIDE)
    statement = json.loads((demo.run_dir / "statement.json").read_text())
    assert sorted(s["name"] for s in statement["subject"]) == sorted(
        set(BUNDLE + INSIDE) - {"statement.json", "evidence.dsse.json", "profile", "signers",
                                "approvals", "approvals/approvers"})
    assert not (demo.root / ".keyparity" / "run" / demo.run_dir.name).exists()


def test_nothing_signed_names_a_host_path(demo):
    """The demo's directory (the checkout of a ./run demo) and this repository appear nowhere
    in the statement, the envelope or any file of the bundle; the journal and the profile are
    named relative to the profile's directory."""
    found = {name: [where for where in (str(demo.root), str(REPO)) if where in text]
             for name, text in texts(demo.run_dir).items()}
    assert {name: where for name, where in found.items() if where} == {}
    predicate = json.loads((demo.run_dir / "statement.json").read_text())["predicate"]
    assert predicate["journal"]["path"] == "../.keyparity/journal.sqlite"
    doc = json.loads((demo.run_dir / "evidence.json").read_text())
    assert doc["run"]["profile_path"] == "softhsm.yaml"
    assert {f["file"] for f in doc["run"]["secret_files"]} >= {"../.keyparity/softhsm/hsm1.pin"}


def test_verify_ends_with_the_signed_verdict(demo):
    keys = [a for k in demo.keys for a in ("--key", str(k))]
    out = subprocess.run([sys.executable, "-m", "keyparity.cli", "verify", str(demo.run_dir),
                          *keys, "--require-verdict", "PASS"], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "keyparity verify: authentic; signed verdict PASS"


# ---- docs/auditors.md: verifying a bundle without keyparity ---------------------------------

def recipe() -> str:
    """The script docs/auditors.md gives, exactly as written there (the first ```sh block after
    the heading "Without keyparity")."""
    text = (REPO / "docs" / "auditors.md").read_text()
    section = text.split("### Without keyparity", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "docs/auditors.md: no sh block under 'Without keyparity'"
    return match.group(1)


def run_recipe(bundle: Path, keys: list[Path], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run the recipe as the doc says (sh check-bundle.sh BUNDLE KEY...), with a PATH that has
    no keyparity and a Python that has no keyparity to import."""
    script = tmp / "check-bundle.sh"
    script.write_text(recipe())
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LC_ALL": "C"}
    return subprocess.run(["sh", str(script), str(bundle), *map(str, keys)], capture_output=True,
                          text=True, check=False, cwd=tmp, env=env, timeout=120)


def test_the_recipe_needs_no_keyparity(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(["python3", "-c", "import keyparity"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert out.returncode != 0  # the interpreter the recipe runs cannot import keyparity
    assert "keyparity" not in recipe().replace("keyparity.dev", "")


def test_the_recipe_verifies_the_demo_bundle(demo, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo.run_dir, bundle)
    out = run_recipe(bundle, demo.keys, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "authentic; signed verdict PASS"
    assert sorted(p.name for p in bundle.iterdir()) == BUNDLE  # it wrote nothing into it


@pytest.mark.parametrize("tamper", ["edit-file", "add-file", "remove-file", "edit-statement",
                                    "one-key-only", "foreign-key"])
def test_the_recipe_goes_red_on_a_tampered_bundle(demo, tmp_path, tamper):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo.run_dir, bundle)
    keys = list(demo.keys)
    if tamper == "edit-file":
        (bundle / "report.html").write_text((bundle / "report.html").read_text() + " ")
    elif tamper == "add-file":
        (bundle / "notes.txt").write_text("added after signing\n")
    elif tamper == "remove-file":
        (bundle / "cbom.json").unlink()
    elif tamper == "edit-statement":
        text = (bundle / "statement.json").read_text()
        (bundle / "statement.json").write_text(text.replace('"PASS"', '"FAIL"'))
    elif tamper == "one-key-only":
        keys = keys[:1]  # the signed threshold is 2
    else:
        other = tmp_path / "other.pub.pem"
        subprocess.run(["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out",
                        str(tmp_path / "other.key")], check=True)
        subprocess.run(["openssl", "ec", "-in", str(tmp_path / "other.key"), "-pubout", "-out",
                        str(other)], check=True, capture_output=True)
        keys = [keys[0], other]
    out = run_recipe(bundle, keys, tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "authentic" not in out.stdout


def test_texts_reads_inside_the_archive(tmp_path):
    """The host-path check reads the Allure archive's members, not its compressed bytes."""
    run = tmp_path / "run"
    run.mkdir()
    data = f"at {tmp_path}".encode()
    with tarfile.open(run / "allure-results.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("x-result.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    payload = base64.b64encode(b"{}").decode()
    (run / "evidence.dsse.json").write_text(json.dumps({"payload": payload}))
    assert str(tmp_path) in texts(run)["allure-results.tar.gz/x-result.json"]
    assert os.fspath(tmp_path) not in texts(run)["allure-results.tar.gz"]
