"""The rootdir a pytest run started in a directory would have, for the ``keyparity`` commands:
the journal (``<rootdir>/.keyparity/journal.sqlite``) and the run directories
(``<rootdir>/reports``) are found where the suites' run put them, not beside the working
directory.

pytest's rule ("Initialization: determining rootdir and configfile" in its documentation), for
a run given no path: from the directory up, the first that holds pytest.ini or .pytest.ini, a
pyproject.toml with ``[tool.pytest.ini_options]`` or ``[tool.pytest]``, a tox.ini with
``[pytest]`` or a setup.cfg with ``[tool:pytest]``; else the first that holds setup.py; else
the first that holds any of those files; else the directory itself.
"""
from __future__ import annotations

from pathlib import Path

_SECTIONS = {"pytest.ini": None, ".pytest.ini": None,
             "pyproject.toml": ("[tool.pytest.ini_options]", "[tool.pytest]"),
             "tox.ini": ("[pytest]",), "setup.cfg": ("[tool:pytest]",)}


def _configures_pytest(path: Path) -> bool:
    sections = _SECTIONS[path.name]
    if sections is None:
        return True
    try:
        lines = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    except (OSError, UnicodeDecodeError):
        return False
    return any(section in lines for section in sections)


def find(start: Path | None = None) -> Path:
    """The rootdir of a pytest run started in ``start`` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    ancestors = [here, *here.parents]
    for folder in ancestors:
        if any(_configures_pytest(folder / name) for name in _SECTIONS
               if (folder / name).is_file()):
            return folder
    for folder in ancestors:
        if (folder / "setup.py").is_file():
            return folder
    for folder in ancestors:
        if any((folder / name).is_file() for name in _SECTIONS):
            return folder
    return here
