"""Shared fixtures: the real data directory (CI points PREDMAINT_DATA_DIR at ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    env = os.environ.get("PREDMAINT_DATA_DIR")
    for candidate in (env, REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "cmapss").is_dir():
            return Path(candidate)
    raise RuntimeError("no data: set PREDMAINT_DATA_DIR to a folder holding cmapss/ and ai4i2020/ "
                       "(run `predmaint data` to download them)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _data_dir()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
