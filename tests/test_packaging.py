"""What a plain (non-editable) install ships: every package and every SQL file.

The suite runs from an editable install, which reads the source tree, so a module or SQL
folder missing from pyproject.toml would pass every other test and break `pip install .`
(a container image) at the first compaction."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed():
    found = {".".join(p.parent.relative_to(REPO).parts)
             for top in ("consumer", "transforms", "sql") for p in (REPO / top).rglob("__init__.py")}
    assert found - set(SETUPTOOLS["packages"]) == set()


def test_every_sql_file_is_package_data():
    globs = SETUPTOOLS["package-data"]["sql"]
    files = [str(p.relative_to(REPO / "sql")) for p in (REPO / "sql").rglob("*.sql")]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
