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


@pytest.fixture(scope="session")
def second_model(data_dir, tmp_path_factory) -> Path:
    """Another calibrated FD001 model whose features were fitted on another split (seed 1): another
    life-summary fingerprint, as after a retraining on new data."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import train_subprocess  # tests/conftest.py

    from training_src import preprocess
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    frames, spec, manifest = preprocess.build_datasets(profile, data_dir, seed=1)
    out = tmp_path_factory.mktemp("fd001-seed1")
    preprocess.write_outputs(out, frames, spec, manifest)
    model_dir = out / "model"
    proc = train_subprocess(out, model_dir, "--algorithm", "xgboost", "--num_round", "40", "--max_depth", "4",
                            "--eta", "0.15", "--fit_on", "train+validation")
    assert proc.returncode == 0, proc.stderr
    return model_dir
