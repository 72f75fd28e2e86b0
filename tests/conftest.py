"""Fixtures shared by the whole suite. The local hub and Azurite fixtures come from
devstack/pytest_plugin.py (registered in pyproject.toml's addopts)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def warehouse_env(tmp_path: Path) -> dict[str, str]:
    """Settings for an `amlwh` process that writes a fresh warehouse under tmp_path."""
    return {"AMLWH_WAREHOUSE__PATH": str(tmp_path / "warehouse")}
