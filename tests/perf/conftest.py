"""Fixtures for the serving-path tests: the shared FD001 data and model from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_src import features as F
from training_src.dataio import read_table, resolve_file
from training_src.profiles import load_profile


@pytest.fixture(scope="session")
def fd001_perf(fd001: dict, fd001_model: Path) -> dict:
    """FD001 through preprocess and a small xgboost model trained by train.py as SageMaker runs it."""
    return {"profile": fd001["profile"], "frames": fd001["frames"], "spec": fd001["spec"], "model_dir": fd001_model}


@pytest.fixture(scope="session")
def test_fleet(data_dir: Path):
    """The FD001 test fleet (100 engines, 13,096 readings), validated."""
    p = load_profile("cmapss", "FD001")
    return F.validate_readings(read_table(resolve_file(data_dir, p.file("test")), p), p)
