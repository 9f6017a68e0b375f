"""Two models for a profile with life features (``candidates.pair``): the life model answers the rows that
carry a life summary, the window model the rows without one, each bit for bit as the lone booster would;
the fast paths and explanations are routed by the same rule; a one-model artifact loads and answers as
before; training fits the pair without a doubled matrix."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from training_src import candidates
from training_src import features as F
from training_src import inference as I
from training_src import train as T
from training_src.candidates import pair
from training_src.predmaint_serving import predictors
from training_src.profiles import ProfileError, parse_profile


def _booster(path):
    import xgboost as xgb

    b = xgb.Booster()
    b.load_model(bytearray(path.read_bytes()))
    return b


@pytest.fixture(scope="module")
def test_rows(fd001):
    """FD001 test features (whole histories, so life features present), every third row without its summary."""
    spec = fd001["spec"]
    X = fd001["frames"]["test"][spec.feature_names].to_numpy(dtype=np.float32)
    X[::3, -len(F.life_names(spec)):] = np.nan
    return X


def test_the_artifact_holds_the_window_model_and_the_life_model(fd001_model):
    assert (fd001_model / "xgboost-model").is_file()
    assert (fd001_model / candidates.LIFE_MODEL_DIR / "xgboost-model").is_file()
    model = I.model_fn(str(fd001_model))
    assert isinstance(model.predictor, pair.Pair) and model.booster is None
    assert isinstance(model.compiled, pair.Pair)  # both compiled walkers built and self-checked


def test_each_row_is_answered_by_its_model_bit_for_bit(fd001_model, test_rows, monkeypatch):
    """The pair, the compiled walkers, the NumPy walkers and the booster path all give each row the lone
    booster's answer: the life model's where the row carries a summary, the window model's elsewhere."""
    window, life = _booster(fd001_model / "xgboost-model"), _booster(fd001_model / "life" / "xgboost-model")
    X = test_rows
    mask = F.life_rows(X, I.model_fn(str(fd001_model)).spec)
    assert mask.any() and not mask.all()
    want = np.empty(len(X), dtype=np.float32)
    want[mask], want[~mask] = life.inplace_predict(X[mask]), window.inplace_predict(X[~mask])
    assert not np.array_equal(life.inplace_predict(X[~mask]), want[~mask])  # the two models differ
    model = I.model_fn(str(fd001_model))
    assert np.array_equal(model.predictor.predict(X), want)
    cap = model.spec.label_cap
    served = F.clip_rul(want.astype(float), cap)
    assert np.array_equal(predictors.predict_matrix(model, X), served)  # compiled walkers
    for i in (0, 1):  # one row, without then with its summary: no masking, the same answer
        assert np.array_equal(predictors.predict_matrix(model, X[i:i + 1]), served[i:i + 1])
    monkeypatch.setenv("PREDMAINT_COMPILED_FOREST", "0")
    model = I.model_fn(str(fd001_model))
    assert model.compiled is None and isinstance(model.forest, pair.Pair)
    small = X[:predictors.NumpyForest.MAX_ROWS]
    assert np.array_equal(predictors.predict_matrix(model, small), served[:len(small)])  # NumPy walkers
    assert np.array_equal(predictors.predict_matrix(model, X), served)  # above MAX_ROWS: the boosters
    monkeypatch.setenv("PREDMAINT_FOREST", "0")
    model = I.model_fn(str(fd001_model))
    assert model.compiled is None and model.forest is None
    assert np.array_equal(predictors.predict_matrix(model, X[:5]), served[:5])


def test_explanations_come_from_each_rows_model(fd001_model, test_rows):
    import xgboost as xgb

    model = I.model_fn(str(fd001_model))
    X = test_rows[:6]
    names = model.spec.feature_names
    window, life = _booster(fd001_model / "xgboost-model"), _booster(fd001_model / "life" / "xgboost-model")
    got = model.predictor.contributions(X)
    for i, row in enumerate(X):
        lone = window if np.isnan(row[-len(F.life_names(model.spec)):]).all() else life
        assert np.array_equal(got[i], lone.predict(xgb.DMatrix(X[i:i + 1], feature_names=names), pred_contribs=True)[0])
    top = predictors.explain(model, X)
    assert len(top) == 6 and all(len(t) == predictors.TOP_CONTRIBUTIONS for t in top)
    imp = model.predictor.importance()
    assert imp.shape == (len(names),) and np.all(imp >= 0)
    k = len(F.life_names(model.spec))
    assert np.array_equal(np.asarray(model.predictor.window.importance())[-k:], np.zeros(k))  # never sees them


def _train_xy(fd001, n_units=30):
    spec = fd001["spec"]
    df = fd001["frames"]["train"]
    df = df[df["_asset"].isin(sorted(df["_asset"].unique())[:n_units])]
    return T.split_xy(df, spec.feature_names)


HP = {"num_round": "15", "max_depth": "3", "eta": "0.2"}


def test_fit_models_fits_the_pair_without_a_doubled_copy(fd001):
    """The life model is the lone fit on the rows as read, the window model the lone fit on the same rows
    with their life columns missing (same bytes); the caller's rows come back unchanged."""
    spec = fd001["spec"]
    X, y = _train_xy(fd001)
    before = X.copy()
    model, pv = T.fit_models("xgboost", X, y, spec.task, HP, 1, 0, spec=spec)
    assert isinstance(model, pair.Pair) and pv is None
    assert np.array_equal(X, before, equal_nan=True)  # the blanked life columns were put back
    life, _ = T.fit_model("xgboost", X, y, spec.task, HP, 1, 0)
    blank = X.copy()
    blank[:, -len(F.life_names(spec)):] = np.nan
    window, _ = T.fit_model("xgboost", blank, y, spec.task, HP, 1, 0)
    assert model.life.save_raw("ubj") == life.save_raw("ubj")
    assert model.window.save_raw("ubj") == window.save_raw("ubj")
    Xv, yv = F.with_and_without_life(X[:50], y[:50], spec)
    _, pv = T.fit_models("xgboost", X, y, spec.task, HP, 1, 0, Xv, yv, spec=spec)
    assert np.array_equal(pv, np.concatenate([life.inplace_predict(X[:50]), window.inplace_predict(blank[:50])]))


def test_life_models_one_keeps_the_one_model_on_doubled_rows(fd001, tmp_path):
    """``windows.life_models: "one"``: the one model fitted on every row with and without its life features,
    as before the pair; saved as a one-model artifact (no life folder), loaded as a lone predictor."""
    spec = fd001["spec"]
    doc = json.loads(json.dumps(spec.profile))
    doc["windows"]["life_models"] = "one"
    one = F.FeatureSpec(**{**dataclasses.asdict(spec), "profile": doc})
    assert F.two_models(spec) and not F.two_models(one)
    X, y = _train_xy(fd001, 20)
    model, _ = T.fit_models("xgboost", X, y, one.task, HP, 1, 0, spec=one)
    lone, _ = T.fit_model("xgboost", *F.with_and_without_life(X, y, one), one.task, HP, 1, 0)
    assert model.save_raw("ubj") == lone.save_raw("ubj")
    pair.save(candidates.get("xgboost"), model, tmp_path)
    assert not (tmp_path / candidates.LIFE_MODEL_DIR).exists()
    assert isinstance(pair.load(candidates.get("xgboost"), tmp_path, one), candidates.get("xgboost").Predictor)


def test_a_one_model_artifact_loads_and_answers_as_before(fd001_model, test_rows, tmp_path):
    """An artifact without ``life/`` (registered before the pair): its one model answers every row."""
    old = tmp_path / "model"
    shutil.copytree(fd001_model, old)
    shutil.rmtree(old / candidates.LIFE_MODEL_DIR)
    model = I.model_fn(str(old))
    assert not isinstance(model.predictor, pair.Pair) and model.booster is not None
    lone = _booster(old / "xgboost-model").inplace_predict(test_rows)
    assert np.array_equal(predictors.predict_matrix(model, test_rows), F.clip_rul(lone.astype(float), 125))
    assert model.version != I.model_fn(str(fd001_model)).version  # the pair's version hashes both models


def test_save_load_round_trip_of_a_pair(fd001, tmp_path):
    spec = fd001["spec"]
    X, y = _train_xy(fd001, 20)
    model, _ = T.fit_models("xgboost", X, y, spec.task, HP, 1, 0, spec=spec)
    pair.save(candidates.get("xgboost"), model, tmp_path)
    loaded = pair.load(candidates.get("xgboost"), tmp_path, spec)
    Xt = X[:40].copy()
    Xt[::2, -len(F.life_names(spec)):] = np.nan
    assert isinstance(loaded, pair.Pair)
    assert np.array_equal(loaded.predict(Xt), T.predict("xgboost", model, Xt))


@pytest.mark.parametrize("algorithm", ["linear", "hgb"])
def test_other_candidates_make_pairs_too(fd001, tmp_path, algorithm):
    spec = fd001["spec"]
    X, y = _train_xy(fd001, 20)
    module = candidates.get(algorithm)
    model, _ = T.fit_models(algorithm, X, y, spec.task, {}, 1, 0, spec=spec)
    pair.save(module, model, tmp_path)
    loaded = pair.load(module, tmp_path, spec)
    Xt = X[:30].copy()
    Xt[::2, -len(F.life_names(spec)):] = np.nan
    m = F.life_rows(Xt, spec)
    got = loaded.predict(Xt)
    assert np.array_equal(got[m], module.load(tmp_path / "life", spec).predict(Xt[m]))
    assert np.array_equal(got[~m], module.load(tmp_path, spec).predict(Xt[~m]))


def test_life_models_must_be_one_or_two(fd001):
    doc = json.loads(json.dumps(fd001["spec"].profile))
    doc["windows"]["life_models"] = "three"
    with pytest.raises(ProfileError, match=r"windows\.life_models"):
        parse_profile(doc, subset="FD001", source="test")
