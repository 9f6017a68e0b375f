"""train.py checkpoints (training_src/checkpoints.py): a training run killed mid-way and restarted
continues from its newest checkpoint and ends with the same model as an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import xgboost as xgb

from tests.conftest import REPO

ROUNDS, EVERY = 100, 10
HP = ["--algorithm", "xgboost", "--num_round", str(ROUNDS), "--max_depth", "3", "--eta", "0.05",
      "--row_stride", "4"]  # every 4th reading per asset (as tuning trials do): a quicker fit
OBJECTIVE = re.compile(r"^final \[\d+\]\tvalidation-rmse:([0-9.]+)$", re.M)


def _command(channels: Path, model_dir: Path, checkpoints: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(channels / "train"),
           "SM_CHANNEL_VALIDATION": str(channels / "validation"), "SM_MODEL_DIR": str(model_dir),
           "SM_OUTPUT_DATA_DIR": str(model_dir.parent / "output"), "SM_NUM_CPUS": "1"}
    cmd = [sys.executable, str(REPO / "training_src" / "train.py"), *HP, *extra,
           "--checkpoint-dir", str(checkpoints), "--checkpoint-every", str(EVERY)]
    return cmd, env


def _run(channels: Path, model_dir: Path, checkpoints: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd, env = _command(channels, model_dir, checkpoints, *extra)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _killed_mid_training(channels: Path, model_dir: Path, checkpoints: Path, *extra: str) -> int:
    """Start train.py, SIGKILL it once it has written a checkpoint past round 30; that fit's newest round."""
    before = set(checkpoints.glob("xgb-*.ubj"))  # another fit's files may share the directory

    def rounds() -> list[int]:
        return [int(p.stem.rsplit("-", 1)[1]) for p in set(checkpoints.glob("xgb-*.ubj")) - before]

    cmd, env = _command(channels, model_dir, checkpoints, *extra)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and max(rounds(), default=0) < 30:
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "train.py finished before it could be interrupted"
    assert not (model_dir / "xgboost-model").exists(), "killed before writing the model"
    return max(rounds())


def test_killed_and_restarted_training_gives_the_uninterrupted_model(fd001, tmp_path):
    """One checkpoint directory shared by two fits (as tuning trials and the refit share one S3 prefix):
    each restart resumes its own fit only; without sampling the result is byte-identical to an
    uninterrupted run, with row sampling it is complete (XGBoost restarts its sampler on every
    train() call, so not the same bytes)."""
    channels, shared = fd001["out"], tmp_path / "shared"
    whole = _run(channels, tmp_path / "whole" / "model", tmp_path / "whole" / "ckpt")
    assert whole.returncode == 0, whole.stderr
    kept: dict[str, list[str]] = {}  # fit key -> its checkpoints' rounds
    for p in sorted((tmp_path / "whole" / "ckpt").glob("xgb-*.ubj")):
        kept.setdefault(p.name[:-11], []).append(p.name[-10:])
    # two fits (the life model, then the window model: candidates/pair.py), each keeps its newest two
    assert list(kept.values()) == [[f"{ROUNDS - EVERY:06d}.ubj", f"{ROUNDS:06d}.ubj"]] * 2
    assert "resuming" not in whole.stdout

    done = _killed_mid_training(channels, tmp_path / "plain" / "model", shared)
    assert 30 <= done < ROUNDS and done % EVERY == 0
    sampled = tmp_path / "sampled" / "model"
    done_sampled = _killed_mid_training(channels, sampled, shared, "--subsample", "0.8")
    again = _run(channels, sampled, shared, "--subsample", "0.8")
    assert again.returncode == 0, again.stderr
    assert f"checkpoint: resuming at round {done_sampled} of {ROUNDS}" in again.stdout
    booster = xgb.Booster()
    booster.load_model(bytearray((sampled / "xgboost-model").read_bytes()))
    assert booster.num_boosted_rounds() == ROUNDS

    again = _run(channels, tmp_path / "plain" / "model", shared)
    assert again.returncode == 0, again.stderr
    assert f"checkpoint: resuming at round {done} of {ROUNDS}" in again.stdout
    # the objective lines are still printed, the last one is what the tuning job reads
    assert OBJECTIVE.findall(again.stdout)[-1] == OBJECTIVE.findall(whole.stdout)[-1]
    for name in ("xgboost-model", "life/xgboost-model"):  # the window model, and the life model that resumed
        assert (tmp_path / "plain" / "model" / name).read_bytes() == (tmp_path / "whole" / "model" / name).read_bytes()
