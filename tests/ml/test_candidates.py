"""The candidate algorithms (training_src/candidates): each module's contract, and the hgb candidate's
JSON trees against scikit-learn itself (real FD001 features and AI4I-like classification)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import train_subprocess
from training_src import candidates, search_space
from training_src import features as F
from training_src import inference as I
from training_src import train as T
from training_src.candidates import hgb, pair


@pytest.mark.parametrize("name", list(candidates.CANDIDATES))
def test_each_candidate_declares_its_contract(name: str) -> None:
    c = candidates.get(name)
    assert name == c.NAME and c.MODEL_FILE and isinstance(c.DISTRIBUTED, bool)
    for attr in ("fit", "predict", "save", "load"):
        assert callable(getattr(c, attr)), f"{name} lacks {attr}"
    names = [p.name for p in c.PARAMS]
    assert len(set(names)) == len(names) and set(c.START) == set(names)
    for p in c.PARAMS:  # the starting trial lies inside the tuned ranges
        assert p.low <= c.START[p.name] <= p.high, (name, p.name)
    assert search_space.SEARCH_SPACE[name] == c.PARAMS  # the search space is the modules' ranges


def test_model_files_are_distinct_and_unknown_algorithms_are_named() -> None:
    files = [c.MODEL_FILE for c in candidates.CANDIDATES.values()]
    assert len(set(files)) == len(files)
    with pytest.raises(candidates.TrainError, match="unknown algorithm 'gbm'; candidates are"):
        candidates.get("gbm")


def test_several_training_hosts_tune_only_the_candidates_with_a_collective_fit() -> None:
    """On several hosts a candidate without a distributed fit would be fitted on the first host over every
    host's rows; so the tuning (state machine and prepare Lambda alike) leaves it out there."""
    assert search_space.tuned_algorithms() == search_space.tuned_algorithms(1) == search_space.ALGORITHMS
    several = search_space.tuned_algorithms(2)
    assert several == tuple(n for n in search_space.ALGORITHMS if candidates.get(n).DISTRIBUTED)
    assert several == ("xgboost",) and search_space.tuned_algorithms(100) == several
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ValueError, match=r"training_instances must be an integer >= 1, got"):
            search_space.tuned_algorithms(bad)  # type: ignore[arg-type]


def _small_problem(task: str, n: int = 600, f: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, f)).astype(np.float32)
    X[::9, 2] = np.nan  # missing values take the learned direction
    signal = 3 * X[:, 0] - 2 * np.nan_to_num(X[:, 2]) + X[:, 1] * X[:, 3]
    y = (signal + rng.normal(size=n) > 1.5).astype(float) if task == "failure_classification" else 50 + 10 * signal
    return X, y


#: a few boosting rounds, whatever the candidate calls them: each candidate's starting point, made quick
_QUICK = {"num_round": 40, "max_iter": 40}
HP = {name: {k: str(_QUICK.get(k, v)) for k, v in c.START.items()} for name, c in candidates.CANDIDATES.items()}


@pytest.mark.parametrize("task", ["rul_regression", "failure_classification"])
@pytest.mark.parametrize("name", list(candidates.CANDIDATES))
def test_a_saved_candidate_serves_what_it_trained(name: str, task: str, fd001: dict, tmp_path: Path) -> None:
    c = candidates.get(name)
    X, y = _small_problem(task)
    if name == "linear":  # features are complete for the linear candidate (it has no missing-value rule)
        X = np.nan_to_num(X)
    names = [f"f{i}" for i in range(X.shape[1])]
    model, pv = c.fit(X[:500], y[:500], task, HP[name], 1, 0, X[500:], y[500:], names)
    assert pv is not None and len(pv) == 100
    c.save(model, tmp_path)
    spec = type("Spec", (), {"feature_names": names})()
    loaded = c.load(tmp_path, spec)
    want = np.asarray(c.predict(model, X), dtype=np.float64)
    got = np.asarray(loaded.predict(X), dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    contrib = np.asarray(loaded.contributions(X[:20]), dtype=np.float64)
    assert contrib.shape == (20, X.shape[1] + 1)
    margin = contrib.sum(axis=1)
    p = got[:20]
    expected_margin = np.log(p / (1 - p)) if task == "failure_classification" else p
    np.testing.assert_allclose(margin, expected_margin, rtol=1e-4, atol=1e-3)  # additive explanations
    imp = np.asarray(loaded.importance())
    assert imp.shape == (X.shape[1],) and imp[0] > 0


def test_hgb_trees_predict_exactly_as_scikit_learn_on_fd001(fd001: dict) -> None:
    spec = fd001["spec"]
    tr, te = fd001["frames"]["train"], fd001["frames"]["test"]
    X, y = T.split_xy(tr, spec.feature_names)
    Xt, _ = T.split_xy(te, spec.feature_names)
    model, _ = hgb.fit(X[::3], y[::3], "rul_regression", {"max_iter": "120", "learning_rate": "0.1"}, 1, 0)
    walker = hgb.Trees(json.loads(json.dumps(model.doc)))  # through JSON text, as serving reads it
    assert np.array_equal(walker.predict(Xt), model.estimator.predict(Xt))  # bit for bit


def test_hgb_refuses_a_model_file_of_another_format(tmp_path: Path) -> None:
    (tmp_path / hgb.MODEL_FILE).write_text(json.dumps({"format": "predmaint-hgb-trees/99", "trees": []}))
    with pytest.raises(ValueError, match="format 'predmaint-hgb-trees/99'; this code reads 'predmaint-hgb-trees/1'"):
        hgb.load(tmp_path, None)


def test_hgb_trains_through_train_py_and_serves_through_the_hooks(fd001: dict, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    proc = train_subprocess(fd001["out"], model_dir, "--algorithm", "hgb", "--max_iter", "60",
                            "--row_stride", "3")
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"final \[\d+\]\tvalidation-rmse:[0-9.]+$", proc.stdout.strip().splitlines()[-1])
    assert (model_dir / "hgb-model.json").is_file() and (model_dir / "code" / "training_src" / "candidates" / "hgb.py").is_file()
    meta = json.loads((model_dir / "model_meta.json").read_text())
    assert meta["algorithm"] == "hgb"
    model = I.model_fn(str(model_dir))
    # a pair (candidates/pair.py): the window model and the life model, both hgb trees
    assert model.booster is None and isinstance(model.predictor, pair.Pair)
    assert isinstance(model.predictor.window, hgb.Trees) and isinstance(model.predictor.life, hgb.Trees)
    test = fd001["frames"]["test"]
    X = test[model.spec.feature_names].to_numpy(dtype=np.float32)
    from training_src.predmaint_serving import predictors

    p = predictors.predict_matrix(model, X)
    assert p.shape == (len(X),) and p.min() >= 0 and p.max() <= model.spec.label_cap
    if model.compiled is not None:  # forest.c walks the trees: the NumPy walk's bits, with and without life features
        assert isinstance(model.compiled.window, predictors.CompiledTrees)
        bare = X.copy()
        bare[:, -len(F.life_names(model.spec)):] = np.nan
        for rows in (X, bare, X[:1]):
            assert np.array_equal(model.compiled.predict(rows), model.predictor.predict(rows))
    top = predictors.explain(model, X[:2])
    assert len(top) == 2 and len(top[0]) == predictors.TOP_CONTRIBUTIONS


def test_bad_hgb_hyperparameters_fail_the_job_naming_them(fd001: dict, tmp_path: Path) -> None:
    proc = train_subprocess(fd001["out"], tmp_path / "model", "--algorithm", "hgb", "--max_bins", "300")
    assert proc.returncode == 2 and "hyperparameter max_bins=300 outside [2, 255]" in proc.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("max_bin", ["64", "256", "1024"])
def test_xgboost_candidate_grows_the_trees_a_plain_dmatrix_grows(max_bin: str) -> None:
    """candidates/xgb.py fits from QuantileDMatrix (bins only, less memory than DMatrix's float copy):
    the model must be the one DMatrix gives, byte for byte, whatever max_bin, with a validation set
    (which must share the training set's bins and max_bin)."""
    import xgboost as xgb

    from training_src.candidates import xgb as cx

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 12)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values, as life features are for half the rows
    y = 50 + 20 * np.nan_to_num(X[:, 0]) + rng.standard_normal(3000)
    hp = {"num_round": "40", "max_depth": "4", "subsample": "0.8", "colsample_bytree": "0.6", "max_bin": max_bin}
    model, pv = cx.fit(X[:2400], y[:2400], "rul_regression", hp, 1, 0, X[2400:], y[2400:], report_every=1000)
    params, rounds = cx.booster_params(hp, "rul_regression", 1, 0)
    plain = xgb.train(params, xgb.DMatrix(X[:2400], label=y[:2400]), rounds)
    assert bytes(model.save_raw("ubj")) == bytes(plain.save_raw("ubj"))
    assert np.array_equal(pv, plain.inplace_predict(X[2400:]))
