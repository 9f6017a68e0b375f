"""Fixtures for the serving-path tests: FD001 preprocessed once and a small real model trained once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_src import preprocess
from training_src.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fd001_perf(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """FD001 through preprocess, and a 40-round xgboost model trained by train.py as SageMaker runs it."""
    profile = load_profile("cmapss", "FD001")
    frames, spec, manifest = preprocess.build_datasets(profile, data_dir, seed=0)
    out = tmp_path_factory.mktemp("perf-fd001")
    preprocess.write_outputs(out, frames, spec, manifest)
    model_dir = out / "model"
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(out / "train"), "SM_CHANNEL_VALIDATION": str(out / "validation"),
           "SM_MODEL_DIR": str(model_dir), "SM_OUTPUT_DATA_DIR": str(out / "output"), "SM_NUM_CPUS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "train.py"), "--algorithm", "xgboost",
                           "--num_round", "40", "--max_depth", "5", "--eta", "0.15"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {"profile": profile, "frames": frames, "spec": spec, "model_dir": model_dir}
