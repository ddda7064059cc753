"""The bundle's own ``junit.xml``, whatever the command line says.

Without ``--junitxml``, pytest's junitxml plugin is pointed at the run directory. With
``--junitxml=FILE`` (CI systems pass one), that file is written as asked and a second writer,
the same class pytest uses, writes the run directory's copy: the signed bundle always holds
its junit.xml. With the junitxml plugin disabled (``-p no:junitxml``) there is none, and the
statement lists what is there.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.junitxml import LogXML

NAME = "junit.xml"


def bundle_copy(config: pytest.Config, run_dir: Path) -> None:
    """Called in the controller's pytest_configure, before the junitxml plugin's own (which
    opens its writer from ``config.option.xmlpath``)."""
    if not hasattr(config.option, "xmlpath"):  # -p no:junitxml
        return
    target = run_dir / NAME
    if config.option.xmlpath is None:
        config.option.xmlpath = str(target)
        return
    if Path(config.option.xmlpath).resolve() == target.resolve():
        return
    config.pluginmanager.register(LogXML(
        str(target), config.option.junitprefix, config.getini("junit_suite_name"),
        config.getini("junit_logging"), config.getini("junit_duration_report"),
        config.getini("junit_family"), config.getini("junit_log_passing_tests")),
        "keyparity-junit")
