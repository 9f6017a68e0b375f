"""Fixtures for the serving-path tests: the shared FD001 data and model from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fd001_perf(fd001: dict, fd001_model: Path) -> dict:
    """FD001 through preprocess and a small xgboost model trained by train.py as SageMaker runs it."""
    return {"profile": fd001["profile"], "frames": fd001["frames"], "spec": fd001["spec"], "model_dir": fd001_model}
