"""The fast serving path gives exactly the batch answers, and refuses exactly what the checked path refuses."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from training_src import features as F
from training_src import inference as I
from training_src.predmaint_serving import native, predictors
from training_src.profiles import load_profile, parse_profile


@pytest.fixture(scope="module")
def model(fd001_perf):
    return I.model_fn(str(fd001_perf["model_dir"]))


def _bounds(df):
    ids = df["unit"].to_numpy()
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])


def test_transform_last_is_bit_identical_to_batch(fd001_perf, test_fleet):
    spec = fd001_perf["spec"]
    batch = F.transform(test_fleet, spec, life=False).to_numpy()
    b = _bounds(test_fleet)
    cols = {c: test_fleet[c].to_numpy(dtype=float) for c in test_fleet.columns}
    np.testing.assert_array_equal(F.transform_last(cols, b, spec), batch[b[1:] - 1])
    # one asset per call (the one-asset fast path: full windows are slices, no masks), every unit
    for a, z in itertools.pairwise(b):
        np.testing.assert_array_equal(F.transform_asset({c: v[a:z] for c, v in cols.items()}, spec), batch[z - 1])


def test_every_window_stat_and_ewm_bit_identical(test_fleet):
    """A profile with std/min/max/ewm and short windows (assets shorter than a window get padding)."""
    doc = load_profile("cmapss", "FD001").to_dict()
    doc["windows"] = {"sizes": [0, 5, 40], "stats": ["mean", "std", "slope", "min", "max"], "ewm_spans": [4, 20]}
    profile = parse_profile(doc, subset="FD001", source="test")
    df = F.validate_readings(test_fleet, profile)
    spec = F.fit_spec(df, profile)
    batch = F.transform(df, spec, life=False).to_numpy()
    b = _bounds(df)
    cols = {c: df[c].to_numpy(dtype=float) for c in df.columns}
    np.testing.assert_array_equal(F.transform_last(cols, b, spec), batch[b[1:] - 1])
    # and one asset at a time, cut to 3 readings (shorter than every window but the whole history)
    short = {c: v[:3] for c, v in cols.items()}
    np.testing.assert_array_equal(F.transform_asset(short, spec), batch[2])
    # the longest unit, one call per length 1..60 (windows empty, partly and wholly full)
    k = int(np.argmax(np.diff(b)))
    first = int(b[k])
    assert b[k + 1] - first >= 60
    for n in range(1, 61):
        one = {c: v[first:first + n] for c, v in cols.items()}
        np.testing.assert_array_equal(F.transform_asset(one, spec), batch[first + n - 1])


def test_numpy_forest_equals_booster_on_the_whole_test_fleet(fd001_perf, test_fleet, monkeypatch):
    monkeypatch.setenv("PREDMAINT_COMPILED_FOREST", "0")
    model = I.model_fn(str(fd001_perf["model_dir"]))
    assert model.compiled is None and model.forest is not None
    X = F.transform(test_fleet, fd001_perf["spec"], life=False).to_numpy(dtype=np.float32)  # every row, 13k
    want = model.predictor.predict(X)
    got = model.forest.predict(X)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.array_equal(got, want)  # in fact bit-identical: same float32 compares and summation order


needs_cc = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler here")


@needs_cc
def test_compiled_forest_equals_booster_on_the_whole_test_fleet(fd001_perf, model, test_fleet):
    assert model.compiled is not None  # a C compiler is here, so the walker was built and loaded
    X = F.transform(test_fleet, fd001_perf["spec"], life=False).to_numpy(dtype=np.float32)
    X[::97, 3] = np.nan  # missing values take each node's default branch
    want = model.predictor.predict(X)
    got = model.compiled.predict(X)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.array_equal(got, want)


@needs_cc
def test_compiled_forest_on_a_classifier_equals_booster():
    import xgboost as xgb

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0.3).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgb.DMatrix(X, y), 40)
    compiled = predictors.CompiledForest.from_booster(booster)
    assert compiled is not None
    X[::5, 2] = np.nan
    # same margins; the sigmoid may differ from xgboost's in the last bit of float32 (<= 1.2e-7)
    np.testing.assert_allclose(compiled.predict(X), booster.inplace_predict(X), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        compiled.predict(X[:, :5])


@needs_cc
def test_artifact_carries_the_compiled_library(fd001_perf):
    code = fd001_perf["model_dir"] / "code" / "training_src" / "predmaint_serving"
    for source in native.SOURCES:
        assert (code / source).is_file()
    assert list(code.glob("forest-*.so")), "train.py builds the libraries into the artifact when it can"
    assert list(code.glob("request-*.so"))


def test_without_compiler_or_library_the_numpy_forest_serves(fd001_perf, tmp_path, monkeypatch):
    # an artifact whose code/ has no prebuilt library, no compiler, an empty cache: NumPy, same answers
    import shutil as sh

    model_dir = tmp_path / "model"
    sh.copytree(fd001_perf["model_dir"], model_dir, ignore=sh.ignore_patterns("*.so"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(native.shutil, "which", lambda _name: None)
    mod = I  # the repo copy reads its C sources next to native.py; the artifact's code is the same
    fallback = mod.model_fn(str(model_dir))
    assert fallback.compiled is None and fallback.forest is not None and fallback.reader is None
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.so"))


def test_forest_can_be_switched_off(fd001_perf, monkeypatch):
    monkeypatch.setenv("PREDMAINT_FOREST", "0")
    m = I.model_fn(str(fd001_perf["model_dir"]))
    assert m.forest is None and m.compiled is None


def _instances(df, units, n=None, reverse=False):
    out = []
    for u in units:
        rows = df[df["unit"] == u].drop(columns=["unit"]).to_dict("records")
        rows = rows[:n] if n else rows
        out.append({"asset_id": f"e{u}", "readings": rows[::-1] if reverse else rows})
    return out


def _post(model, doc):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    status, out, _ = I.handle(model, raw, "application/json", None)
    return status, json.loads(out)


@pytest.mark.parametrize("k", [1, 5, 40])  # compiled walker or NumPy forest (<= 16 rows) and booster
def test_requests_equal_batch_predictions(model, fd001_perf, test_fleet, k):
    spec = fd001_perf["spec"]
    batch = F.transform(test_fleet, spec, life=False).to_numpy(dtype=np.float32)
    b = _bounds(test_fleet)
    units = list(range(1, k + 1))
    want = np.clip(model.predictor.predict(batch[b[1:k + 1] - 1]), 0, spec.label_cap)
    status, doc = _post(model, {"instances": _instances(test_fleet, units, reverse=True)})
    assert status == 200
    np.testing.assert_array_equal([p["rul"] for p in doc["predictions"]], np.round(want.astype(float), 3))


def _readings(test_fleet, n=5):
    return test_fleet[test_fleet["unit"] == 1].drop(columns=["unit"]).head(n).to_dict("records")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_name_the_field(model, test_fleet, literal):
    rows = json.dumps({"instances": [{"asset_id": "a", "readings": _readings(test_fleet)}]})
    # put the literal as reading 3's sensor_2 (json.dumps wrote it as a plain number)
    doc = json.loads(rows)
    doc["instances"][0]["readings"][3]["sensor_2"] = "@@"
    body = json.dumps(doc).replace('"@@"', literal).encode()
    status, out = _post(model, body)
    assert status == 400
    assert out["error"].startswith("instances[0].readings[3].sensor_2: must be a finite number")
    assert "malformed JSON" in out["error"]


def test_non_finite_number_in_an_unused_field_is_still_malformed(model, test_fleet):
    doc = {"instances": [{"asset_id": "a", "readings": _readings(test_fleet)}], "note": "@@"}
    status, out = _post(model, json.dumps(doc).replace('"@@"', "NaN").encode())
    assert status == 400 and out["error"].startswith("body: malformed JSON")


def test_broken_json_stays_malformed(model):
    status, out = _post(model, b'{"instances": [NaN')
    assert status == 400 and out["error"].startswith("body: malformed JSON")


@pytest.mark.parametrize("value, message", [
    (True, "instances[0].readings[2].sensor_4: expected a number, got bool"),
    (False, "instances[0].readings[2].sensor_4: expected a number, got bool"),
    ("1.5", "instances[0].readings[2].sensor_4: expected a number, got str"),
    (None, "instances[0].readings[2].sensor_4: expected a number, got null"),
    ([1.0], "instances[0].readings[2].sensor_4: expected a number, got list"),
    (10 ** 400, "instances[0].readings[2].sensor_4: number out of range"),
], ids=["true", "false", "string", "null", "list", "huge-int"])
def test_fast_path_refuses_what_the_checked_path_refuses(model, test_fleet, value, message):
    rows = _readings(test_fleet)
    rows[2]["sensor_4"] = value
    body = json.dumps({"instances": [{"asset_id": "a", "readings": rows}]}).encode()
    status, out = _post(model, body)
    assert status == 400 and out["error"].startswith(message)


def test_one_and_zero_values_are_numbers(model, test_fleet):
    rows = _readings(test_fleet)
    rows[1]["sensor_4"], rows[2]["sensor_4"] = 1, 0.0  # equal to True/False, but numbers
    status, _ = _post(model, {"instances": [{"asset_id": "a", "readings": rows}]})
    assert status == 200


def test_duplicate_time_and_missing_field_are_named(model, test_fleet):
    rows = _readings(test_fleet)
    dup = [*rows, dict(rows[1])]
    status, out = _post(model, {"instances": [{"asset_id": "a", "readings": rows}, {"asset_id": "b", "readings": dup}]})
    assert status == 400 and out["error"] == "instances[1].readings[5].cycle: duplicate cycle 2"
    rows2 = [dict(r) for r in rows]
    del rows2[4]["sensor_9"]
    status, out = _post(model, {"instances": [{"asset_id": "a", "readings": rows2}]})
    assert status == 400 and out["error"] == "instances[0].readings[4].sensor_9: missing"
