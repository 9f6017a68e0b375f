"""preprocess.py / train.py / evaluate.py under the SageMaker script contract, on real data."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import train_subprocess
from training_src import preprocess
from training_src.candidates.base import OBJECTIVE_REGEX
from training_src.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]


def test_no_unit_in_two_splits_and_test_protocol(fd001):
    f = fd001["frames"]
    train, val = set(f["train"]["_asset"]), set(f["validation"]["_asset"])
    assert not train & val and len(train) == 80 and len(val) == 20
    test = f["test"]
    assert len(test) == 100 and test["_asset"].is_unique  # last cycle of each test unit
    assert test["_label"].between(7, 145).all()  # true, uncapped RUL from RUL_FD001
    assert f["train"]["_label"].max() == 125  # capped training labels
    assert f["baseline_train"]["_label"].max() > 125  # baseline: uncapped


def test_ai4i_split_is_stratified_and_leak_free(data_dir):
    p = load_profile("ai4i2020")
    frames, spec, _ = preprocess.build_datasets(p, data_dir, seed=0)
    rates = [frames[k]["_label"].mean() for k in ("train", "validation", "test")]
    assert max(rates) - min(rates) < 0.002
    ids = [set(frames[k]["_asset"]) for k in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    forbidden = {"udi", "product_id", "twf", "hdf", "pwf", "osf", "rnf", "machine_failure"}
    assert not forbidden & set(spec.feature_names)
    assert {"power", "temperature_difference", "wear_torque"} <= set(spec.feature_names)


def test_preprocess_is_reproducible(data_dir, fd001):
    p = load_profile("cmapss", "FD001")
    again = preprocess.build_datasets(p, data_dir, seed=0)[2]
    assert again["test_fingerprint"] == fd001["manifest"]["test_fingerprint"]
    other = preprocess.build_datasets(p, data_dir, seed=1)[0]
    assert set(other["validation"]["_asset"]) != set(fd001["frames"]["validation"]["_asset"])


def test_preprocess_bad_file_exit_2_and_nothing_written(tmp_path):
    raw = tmp_path / "raw" / "cmapss"
    raw.mkdir(parents=True)
    good = " ".join(["1"] * 26)
    (raw / "train_FD001.txt").write_text(f"{good}\n1 2 x {' '.join(['1'] * 23)}\n")
    (raw / "test_FD001.txt").write_text(good + "\n")
    (raw / "RUL_FD001.txt").write_text("5\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss",
                           "--subset", "FD001", "--data-dir", str(tmp_path / "raw"), "--output-dir", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "train_FD001.txt: row 2, column 'setting_1': not a number: 'x'" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_train_subprocess_contract(fd001, fd001_model):
    files = {p.name for p in fd001_model.iterdir()}
    assert {"xgboost-model", "feature_spec.json", "model_meta.json", "code"} <= files
    assert {"inference.py", "pyproject.toml", "training_src"} == {p.name for p in (fd001_model / "code").iterdir()}
    shipped = fd001_model / "code" / "training_src"
    assert {"inference.py", "profiles.py", "features", "candidates", "predmaint_serving"} <= {p.name for p in shipped.iterdir()}
    meta = json.loads((fd001_model / "model_meta.json").read_text())
    assert meta["hyperparameters"]["num_round"] == "60" and meta["algorithm"] == "xgboost"


def test_train_prints_objective_for_the_tuning_regex(fd001, tmp_path):
    proc = train_subprocess(fd001["out"], tmp_path / "m", "--algorithm", "xgboost", "--num_round", "50",
                            "--max_depth", "3", "--eta", "0.2")
    assert proc.returncode == 0, proc.stderr
    # the built-in XGBoost algorithm's regex for validation:rmse, on the log as SageMaker reads it (tab = #011)
    regex = OBJECTIVE_REGEX.format(metric="validation-rmse")
    values = [m[1] for line in proc.stdout.splitlines() if (m := re.match(regex, line.replace("\t", "#011")))]
    assert len(values) == 2  # one intermediate (round 25), one final
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("final [50]\t")
    final = float(values[-1])
    assert 8 < final < 40


def test_train_linear_candidate_and_bad_hyperparameters(fd001, tmp_path):
    proc = train_subprocess(fd001["out"], tmp_path / "lin", "--algorithm", "linear", "--alpha", "10")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lin" / "linear-model.json").exists()
    bad = train_subprocess(fd001["out"], tmp_path / "bad", "--algorithm", "xgboost", "--eta", "fast")
    assert bad.returncode == 2 and "eta='fast' is not a float" in bad.stderr
    bad = train_subprocess(fd001["out"], tmp_path / "bad2", "--algorithm", "xgboost", "--max_depth", "99")
    assert bad.returncode == 2 and "max_depth=99 outside" in bad.stderr


def test_evaluate_report_has_baseline_ablation_and_plots(fd001, fd001_model, tmp_path):
    from training_src import evaluate

    out = fd001["out"]
    report = evaluate.evaluate(fd001_model, out / "test", out / "baseline", None, None, None, tmp_path, nthread=1)
    rm = report["regression_metrics"]
    assert set(rm) == {"rmse", "mae", "r2"} and rm["rmse"]["value"] > 0
    preds = pd.read_csv(tmp_path / "test_predictions.csv")
    d = preds.predicted - preds.true
    assert report["nasa_score"] == pytest.approx(float(np.sum(np.where(d > 0, np.exp(d / 10) - 1,
                                                                       np.exp(-d / 13) - 1))))
    assert np.sqrt(np.mean(d ** 2)) == pytest.approx(rm["rmse"]["value"])
    assert report["baseline"]["rmse"] > rm["rmse"]["value"]
    assert report["improvement_pct"] == pytest.approx(
        100 * (report["baseline"]["rmse"] - rm["rmse"]["value"]) / report["baseline"]["rmse"])
    assert report["ablation"][0]["step"].startswith("baseline") and len(report["ablation"]) == 2
    assert report["test_fingerprint"] == fd001["manifest"]["test_fingerprint"]
    for name in ("pred_vs_true.png", "residuals.png", "feature_importance.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
