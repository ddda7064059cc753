"""The documentation: a short README, and docs/ that cannot drift from the code.

- docs/profile.md is exactly what docs/generate_profile_reference.py makes of the profile
  schema now, and every field of the schema has a description (the schema's or the
  generator's); the generator describes no field the schema does not have.
- README.md stays short (5,000 to 8,192 bytes), names the two set-up commands, and its suites
  table lists every suite in suites/.
- Every relative link in README.md and docs/*.md points at a file that exists (and, for a
  Markdown file, at a heading that exists).
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import REPO

ROOT = REPO
README = ROOT / "README.md"
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location(
        "generate_profile_reference", DOCS / "generate_profile_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema():
    return json.loads((ROOT / "keyparity" / "schemas" / "profile.schema.json").read_text("utf-8"))


# --------------------------------------------------------------------------- profile reference


def test_profile_reference_is_what_the_generator_makes_now(generator, schema):
    current = (DOCS / "profile.md").read_text("utf-8")
    assert current == generator.render(schema), (
        "docs/profile.md is out of date with keyparity/schemas/profile.schema.json: run "
        ".venv/bin/python docs/generate_profile_reference.py")


def test_every_schema_field_has_a_description(generator, schema):
    missing = generator.undocumented(schema)
    assert not missing, (
        "profile schema fields without a description (add one to DESCRIPTIONS in "
        "docs/generate_profile_reference.py): " + ", ".join(missing))


def test_the_generator_describes_only_fields_of_the_schema(generator, schema):
    stale = generator.unknown(schema)
    assert not stale, ("DESCRIPTIONS in docs/generate_profile_reference.py names fields the "
                       "schema does not have: " + ", ".join(stale))


def test_every_field_of_the_schema_is_a_row_of_the_reference(generator, schema):
    text = (DOCS / "profile.md").read_text("utf-8")
    for field in generator.fields(schema):
        last = field.path.rpartition(".")[2]
        assert f"`{field.path}`" in text or f"`.{last}`" in text, field.path


def test_a_new_field_without_a_description_is_caught(generator, schema):
    changed = copy.deepcopy(schema)
    changed["$defs"]["cluster"]["properties"]["brand_new"] = {"type": "string"}
    changed["properties"]["wrapping"]["properties"]["also_new"] = {"type": "boolean"}
    assert generator.undocumented(changed) == ["profile: wrapping.also_new", "cluster: brand_new"]
    with pytest.raises(ValueError, match="brand_new"):
        generator.render(changed)
    # a description in the schema is enough
    changed["$defs"]["cluster"]["properties"]["brand_new"]["description"] = "described"
    changed["properties"]["wrapping"]["properties"]["also_new"]["description"] = "described"
    assert generator.undocumented(changed) == []
    assert "| `brand_new` | string |  | described |" in generator.render(changed)


def test_a_change_to_the_schema_changes_the_reference(generator, schema):
    current = (DOCS / "profile.md").read_text("utf-8")
    changed = copy.deepcopy(schema)
    changed["$defs"]["aws"]["properties"]["min_active_hsms"]["minimum"] = 2
    assert generator.render(changed) != current
    # a description the schema gains wins over the generator's, and is no error
    changed["properties"]["cutover"]["description"] = "the day the keys are used on the target"
    assert generator.unknown(changed) == []
    assert generator.redundant(changed) == ["profile: cutover"]
    assert "| the day the keys are used on the target |" in generator.render(changed)


def test_a_removed_field_leaves_a_stale_description(generator, schema):
    changed = copy.deepcopy(schema)
    del changed["$defs"]["tls"]["properties"]["timeout_s"]
    assert generator.unknown(changed) == ["tls: timeout_s"]


def test_the_generator_check_mode_agrees(generator):
    assert generator.main(["--check"]) == 0


# --------------------------------------------------------------------------- README


def test_readme_is_short():
    size = len(README.read_bytes())
    assert 5000 <= size <= 8192, f"README.md is {size} bytes; keep it between 5,000 and 8,192"


def test_readme_names_the_two_setup_commands():
    text = README.read_text("utf-8")
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the set-up section has no sh code block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./run demo", "./run tests"]


def test_readme_suites_table_lists_every_suite():
    text = README.read_text("utf-8")
    section = text.split("## What the suites prove", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    suites = sorted(p.name for p in (ROOT / "suites").glob("test_*.py"))
    assert suites
    for name in suites:
        matching = [row for row in rows if f"suites/{name}" in row]
        assert len(matching) == 1, f"README's suites table must have one row for suites/{name}"
        short = name.removeprefix("test_").removesuffix(".py")
        assert short in matching[0].split("|")[1], f"the row of {name} names it {short!r}"


# --------------------------------------------------------------------------- links


def _markdown_files() -> list[Path]:
    return [README] + sorted(DOCS.glob("*.md"))


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", path.read_text("utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def _links(path: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", _without_code(path.read_text("utf-8")))


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(path):
    broken = []
    for link in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto:, ...
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{link} (no such heading in {file.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


# the folders of the repository whose files the documentation names by path (hsm_profiles/ is
# left out: the docs name profiles a user writes there)
NAMED = ("tests", "keyparity", "docs", "suites", "fixtures", "mutation", "native", ".ci")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./*<>-]*[\w*/>])" % "|".join(map(re.escape, NAMED)))


def stale_paths(text: str) -> list[str]:
    """The repository paths ``text`` names that do not exist (a glob that matches nothing
    included; a ``<placeholder>`` is not a path)."""
    out = []
    for match in PATH.finditer(text):
        path = match.group(1).split("::")[0]
        if "<" in path:
            continue
        if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            out.append(path)
    return out


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_the_docs_name_exist(path):
    """A file moved (tests/ grouped by folder, a module to another room) leaves no doc naming
    it where it was."""
    assert stale_paths(path.read_text("utf-8")) == []


def test_a_stale_path_is_caught():
    assert stale_paths("see `tests/test_verdict.py::test_x` and tests/unit/test_docs.py, "
                       "tests/data/cloudhsm_cli/nothing_*.json, tests/<folder>/test_<x>.py") == [
        "tests/test_verdict.py", "tests/data/cloudhsm_cli/nothing_*.json"]


def test_docs_have_links_to_check():
    assert len(_links(README)) >= 8
    assert (DOCS / "profile.md") in _markdown_files()


def test_the_production_example_gives_the_cloudhsm_commands_as_aws_documents_them():
    """configure-pkcs11's add-cluster is a subcommand, not an option (cloudhsm_cli-configs-
    multi-cluster), and describe-clusters returns the cluster CSR only while the cluster is
    UNINITIALIZED (initialize-cluster, "Get the cluster CSR")."""
    text = (ROOT / "hsm_profiles" / "prod.example.yaml").read_text()
    assert "--add-cluster" not in text and "configure-pkcs11 add-cluster" in text
    csr = [line for line in text.splitlines() if "describe-clusters" in line]
    assert csr and all("UNINITIALIZED" in line or "UNINITIALIZED" in text[text.index(line):][
        :300] for line in csr)


def test_the_auditors_guide_shows_the_fail_reports_first_screen_the_tests_make():
    """docs/auditors.md shows the first screen of a FAIL run's report.html: the picture
    tests/suites/test_failure_report.py makes in headless Chromium (and writes with
    KEYPARITY_UPDATE_DOCS=1), a 1280×800 screen."""
    from PIL import Image
    picture = "images/report-fail-first-screen.png"
    assert f"]({picture})" in (DOCS / "auditors.md").read_text("utf-8")
    maker = (REPO / "tests" / "suites" / "test_failure_report.py").read_text("utf-8")
    assert 'REPO / "docs" / "images" / "report-fail-first-screen.png"' in maker
    with Image.open(DOCS / picture) as img:
        assert img.format == "PNG" and img.size == (1280, 800)
