"""Fixtures for the bring-your-own-fleet tests: a synthetic pump fleet (neither C-MAPSS nor AI4I) in its
own data directory. tests/fleet and tests/local (localkit: ServerProcess, free_port) are put on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fleetkit
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))  # localkit

from fleetkit import write_fleet


@pytest.fixture(scope="module")
def pump_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``pumps/pumps.csv`` (48 pumps run to failure)."""
    data = tmp_path_factory.mktemp("pump-data")
    write_fleet(data / "pumps" / "pumps.csv")
    return data
