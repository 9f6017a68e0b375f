"""Fixtures of the streaming tests: the calibrated FD001 model (tests/conftest.py) loaded once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_src.stream import model_api


@pytest.fixture(scope="module")
def scorer(fd001_refit) -> model_api.InProcessScorer:
    return model_api.InProcessScorer(model_api.load_model(fd001_refit))
