"""RUL intervals and horizon failure probabilities: the calibration (intervals.py), the refit that
fits it (train.calibrate_intervals) and the endpoint fields (codec), on synthetic fleets and FD001."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import train_subprocess
from training_src import preprocess
from training_src import train as T
from training_src.predmaint_serving import codec, handler
from training_src.predmaint_serving import intervals as IV
from training_src.predmaint_serving import model as M


# ------------------------------------------------------------------------------- synthetic fleets
def fleet(n_assets: int, seed: int, cap: float = 125.0) -> pd.DataFrame:
    """Run-to-failure assets (lives 120-330) with a model-like prediction: the capped true RUL plus an
    error that grows with the RUL (a few cycles near failure, tens near the cap)."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_assets):
        life = int(rng.integers(120, 331))
        t = np.arange(1, life + 1)
        rul = life - t
        bias = rng.normal(0, 1)  # a per-asset error: rows of one asset are not independent
        err = (2 + 0.15 * np.minimum(rul, cap)) * (0.6 * bias + 0.8 * rng.normal(size=life))
        pred = np.clip(np.minimum(rul, cap) + err, 0, cap)
        rows.append(pd.DataFrame({"asset": a, "time": t, "rul": rul.astype(float), "pred": pred}))
    return pd.concat(rows, ignore_index=True)


def cut(frame: pd.DataFrame, seed: int, min_readings: int = 2) -> pd.DataFrame:
    """The last kept reading of each asset cut at random by the test protocol (preprocess.truncation_cuts)."""
    ids = frame["asset"].to_numpy()
    assets, cuts = preprocess.truncation_cuts(ids, min_readings, seed)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # assets are contiguous, in order
    assert (ids[starts] == assets).all()
    return frame.iloc[starts + cuts - 1]


def test_weighted_quantiles_match_numpy_on_equal_weights():
    rng = np.random.default_rng(1)
    v = rng.normal(size=501)
    levels = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    np.testing.assert_array_equal(IV.weighted_quantiles(v, np.ones_like(v), levels),
                                  np.quantile(v, levels, method="inverted_cdf"))


def test_row_weights_are_the_expectation_of_the_random_cut_protocol():
    # the test protocol (preprocess.truncation_cuts) cuts each asset once, uniformly; weighting every
    # eligible reading 1/(readings of its asset) is that protocol's expectation: compare with many cuts
    cal = fleet(30, seed=2)
    ids = cal["asset"].to_numpy()
    sampled = np.concatenate([cut(cal, s, min_readings=1)["rul"].to_numpy() for s in range(400)])
    w = IV.interval_weights(ids)
    levels = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    got = IV.weighted_quantiles(cal["rul"].to_numpy(), w, levels)
    np.testing.assert_allclose(got, np.quantile(sampled, levels), atol=4.0)


def test_interval_covers_the_level_on_new_assets_cut_at_random():
    cal, new = fleet(200, seed=3), fleet(600, seed=4)
    doc = IV.fit(cal["pred"], cal["rul"], cal["asset"], level=0.8)
    c = IV.Calibration.from_doc(doc)
    # one random cut per new asset, as the test protocol does
    last = cut(new, seed=5)
    lo, hi = c.interval(last["pred"].to_numpy())
    covered = (last["rul"].to_numpy() >= lo) & (last["rul"].to_numpy() <= hi)
    assert 0.76 <= covered.mean() <= 0.85, covered.mean()
    assert (lo >= 0).all() and (hi >= lo).all()
    # conditional on the prediction: narrow near failure, wide near the cap
    near, far = last["pred"].to_numpy() < 20, last["pred"].to_numpy() > 110
    assert (hi - lo)[near].mean() < 0.3 * (hi - lo)[far].mean()
    # the training-only estimate agrees
    assert doc["check"]["folds"] == 5 and 0.75 <= doc["check"]["coverage"] <= 0.86
    assert 5 <= len(doc["bins"]) <= 10 and all(b["assets"] >= 10 for b in doc["bins"])  # ties at the cap merge bins
    assert len(json.dumps(doc)) < 20_000  # small enough for model_meta.json


def test_bounds_are_the_bins_residual_quantiles_at_the_level_without_a_finite_sample_widening():
    # each bin's bounds are its weighted residual quantiles at (1 -/+ level) / 2 exactly; the split-conformal
    # (n+1)/n widening, counted in assets, made an 80 % interval cover 82-84 % of held-out engines
    cal = fleet(60, seed=11)
    doc = IV.fit(cal["pred"], cal["rul"], cal["asset"], level=0.8)
    for b in doc["bins"]:
        assert b["offsets"] == [b["quantiles"][10], b["quantiles"][90]]  # GRID[10] = 0.1, GRID[90] = 0.9
    assert IV.tail_levels(0.8) == pytest.approx((0.1, 0.9)) and IV.tail_levels(0.5) == pytest.approx((0.25, 0.75))


def test_the_training_only_estimate_is_close_to_the_level():
    # calibrating folds of assets and scoring the others (check) lands on the level, not above it
    cal = fleet(200, seed=12)
    check = IV.fit(cal["pred"], cal["rul"], cal["asset"], level=0.8)["check"]
    assert abs(check["coverage"] - 0.8) <= 0.005, check  # with the widening: 0.809


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_other_levels_cover_their_level(level):
    cal, new = fleet(200, seed=6), fleet(600, seed=7)
    c = IV.Calibration.from_doc(IV.fit(cal["pred"], cal["rul"], cal["asset"], level=level))
    last = cut(new, seed=8)
    lo, hi = c.interval(last["pred"].to_numpy())
    covered = ((last["rul"].to_numpy() >= lo) & (last["rul"].to_numpy() <= hi)).mean()
    assert abs(covered - level) <= 0.05, covered


def test_failure_probability_is_monotone_in_the_horizon_and_calibrated():
    cal, new = fleet(200, seed=9), fleet(600, seed=10)
    c = IV.Calibration.from_doc(IV.fit(cal["pred"], cal["rul"], cal["asset"]))
    last = cut(new, seed=11)
    pred, rul = last["pred"].to_numpy(), last["rul"].to_numpy()
    hs = np.array([0, 1, 5, 10, 20, 30, 50, 80, 125, 200, 400, 1e6])
    probs = np.stack([c.failure_probability(pred, np.full(len(pred), h)) for h in hs])
    assert (np.diff(probs, axis=0) >= 0).all() and (probs >= 0).all() and (probs <= 1).all()
    assert (probs[-1] == 1).all()
    for h in (10, 30, 60):  # the mean probability matches the observed share failing within h
        p = c.failure_probability(pred, np.full(len(pred), h))
        assert abs(p.mean() - (rul <= h).mean()) < 0.04, h


def test_expected_rul_adds_the_bins_mean_residual_and_lowers_the_true_rul_error():
    """The true-RUL protocol's answer of a capped model: the prediction plus its bin's mean residual."""
    # one bin (every prediction at the cap), residuals 0..100 evenly: the expectation is the cap + 50
    resid = np.linspace(0.0, 100.0, 1001)
    c = IV.Calibration.from_doc(IV.fit(np.full(1001, 125.0), 125.0 + resid, np.arange(1001)))
    assert c.expected_rul(np.array([125.0]))[0] == pytest.approx(175.0, abs=0.1)
    # a bin whose engines had less left than predicted: lowered, never below 0
    c = IV.Calibration.from_doc(IV.fit(np.full(50, 5.0), np.zeros(50), np.arange(50)))
    assert c.expected_rul(np.array([5.0, 2.0])).tolist() == [0.0, 0.0]
    # on new engines cut at random, the expectation errs less against the true RUL than the capped answer
    cal, new = fleet(200, seed=13), fleet(400, seed=14)
    c = IV.Calibration.from_doc(IV.fit(cal["pred"], cal["rul"], cal["asset"]))
    last = cut(new, seed=15)
    pred, rul = last["pred"].to_numpy(), last["rul"].to_numpy()
    e = c.expected_rul(pred)
    assert np.sqrt(np.mean((e - rul) ** 2)) < np.sqrt(np.mean((pred - rul) ** 2)) - 1.0


def _cdf_loop(q: np.ndarray, x: float) -> float:
    """The per-asset definition the endpoint looped over before ``cdf_rows`` (kept as the reference)."""
    if x < q[0]:
        return 0.0
    if x >= q[-1]:
        return 1.0
    j = int(np.searchsorted(q, x, side="right"))  # q[j-1] <= x < q[j]
    lo, hi = q[j - 1], q[j]
    frac = 0.0 if hi <= lo else (x - lo) / (hi - lo)
    return float(min(1.0, max(0.0, IV.GRID[j - 1] + frac * (IV.GRID[j] - IV.GRID[j - 1]))))


def _quantile_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, len(GRID)) non-decreasing rows: smooth, heavy-tailed, rounded to 3 decimals as stored (ties),
    all equal, a few plateaus, huge and tiny spreads."""
    g = len(IV.GRID)
    rows = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            r = np.sort(rng.normal(0, 30, g))
        elif kind == 1:
            r = np.round(np.sort(rng.standard_t(2, g) * 20), 3)
        elif kind == 2:
            r = np.full(g, rng.normal(0, 10))
        elif kind == 3:  # long plateaus: many equal quantiles
            r = np.sort(rng.integers(-5, 5, g).astype(float))
        elif kind == 4:
            r = np.sort(rng.normal(0, 1e-9, g)) + rng.normal(0, 1e3)
        else:
            r = np.cumsum(rng.exponential(1e6, g)) - 5e7
        rows.append(r)
    return np.asarray(rows)


def test_vectorised_cdf_is_bit_identical_to_the_per_asset_loop():
    rng = np.random.default_rng(2024)
    q = _quantile_rows(rng, 3000)
    pick = rng.integers(0, len(IV.GRID), len(q))
    edge = np.stack([q[:, 0] - 1, q[:, 0], q[:, -1], q[:, -1] + 1, q[np.arange(len(q)), pick],
                     np.nextafter(q[:, 0], -np.inf), np.nextafter(q[:, -1], -np.inf),
                     np.nextafter(q[np.arange(len(q)), pick], np.inf)], axis=1)
    inside = q[:, 0][:, None] + rng.random((len(q), 8)) * (q[:, -1] - q[:, 0])[:, None]
    rows, order = q.tolist(), rng.permutation(len(q)).tolist()  # rows taken in any order, some twice
    order[:50] = order[50:100]
    for xs in np.concatenate([edge, inside, rng.normal(0, 100, (len(q), 4))], axis=1).T:
        want = np.array([_cdf_loop(q[k], xs[k]) for k in order])
        got = np.asarray(IV.cdf_rows(rows, order, xs[order].tolist()))
        assert got.dtype == np.float64 and got.shape == want.shape
        assert np.array_equal(got.view(np.int64), want.view(np.int64))  # bit for bit (signed zeros too)
    assert IV.cdf_rows(rows, [], []) == []


def test_failure_probability_equals_the_loop_on_a_fitted_calibration_and_horizon_0():
    cal = fleet(200, seed=9)
    c = IV.Calibration.from_doc(json.loads(json.dumps(IV.fit(cal["pred"], cal["rul"], cal["asset"]))))
    rng = np.random.default_rng(3)
    pred = np.concatenate([rng.uniform(0, 125, 2000), [0.0, 125.0], c.edges, np.nextafter(c.edges, -np.inf)])
    for horizon in (np.zeros(len(pred)), rng.uniform(0, 300, len(pred)), np.round(rng.uniform(0, 60, len(pred))),
                    np.full(len(pred), 1e9)):
        q = c.quantiles[IV.bin_of(c.edges, pred)]
        want = np.array([_cdf_loop(q[i], horizon[i] - pred[i]) for i in range(len(pred))])
        got = c.failure_probability(pred, horizon)
        assert got.dtype == np.float64 and got.shape == pred.shape
        assert np.array_equal(got.view(np.int64), want.view(np.int64))


def test_a_single_bin_and_tied_predictions_work():
    cal = fleet(12, seed=12)
    cal["pred"] = 125.0  # every prediction at the cap: one bin
    doc = IV.fit(cal["pred"], cal["rul"], cal["asset"])
    c = IV.Calibration.from_doc(doc)
    assert doc["edges"] == [] and len(doc["bins"]) == 1
    lo, hi = c.interval(np.array([125.0, 0.0]))
    assert lo[1] == 0.0 and hi[0] > 125


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(format="x"), "not a predmaint-intervals/1 document"),
    (lambda d: d.pop("bins"), "malformed document"),
    (lambda d: d.update(level=1.5), "disagree in shape or range"),
    (lambda d: d["bins"][0]["quantiles"].reverse(), "must not decrease"),
    (lambda d: d.update(edges=d["edges"][::-1]), "edges must increase"),
])
def test_a_corrupt_document_is_refused_with_one_line(mutate, fragment):
    cal = fleet(40, seed=13)
    doc = IV.fit(cal["pred"], cal["rul"], cal["asset"])
    mutate(doc)
    with pytest.raises(IV.CalibrationError) as err:
        IV.Calibration.from_doc(doc)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_fit_refuses_bad_input():
    with pytest.raises(IV.CalibrationError, match="non-empty"):
        IV.fit([], [], [])
    with pytest.raises(IV.CalibrationError, match="finite"):
        IV.fit([1.0, np.nan], [1.0, 2.0], [0, 1])
    with pytest.raises(IV.CalibrationError, match="strictly between"):
        IV.fit([1.0], [1.0], [0], level=1.0)


@pytest.mark.parametrize("value, ok", [(0, True), (30, True), (2.5, True), (-1, False), (True, False),
                                       ("30", False), (None, False), (float("nan"), False), (10**400, False)])
def test_horizon_values(value, ok):
    assert IV.is_valid_horizon(value) is ok


# ------------------------------------------------------------------------------- the refit on FD001
@pytest.fixture(scope="module")
def calibrated(fd001_refit):
    """The FD001 refit (train+validation) with few rounds: the artifact carries its calibration."""
    return M.load(fd001_refit)


def test_refit_stores_a_calibration_from_held_out_assets(calibrated, fd001):
    doc = calibrated.meta["intervals"]
    assert doc["format"] == IV.FORMAT and doc["level"] == 0.8 and doc["folds"] == 5
    n_assets = fd001["manifest"]["assets"]["train"] + fd001["manifest"]["assets"]["validation"]
    assert all(b["assets"] <= n_assets for b in doc["bins"]) and len(doc["bins"]) == 10
    # every eligible reading (all but each asset's first, min_readings = 2) of every asset calibrates
    assert sum(b["rows"] for b in doc["bins"]) == fd001["manifest"]["rows"]["baseline_train"] - n_assets
    assert 0.74 <= doc["check"]["coverage"] <= 0.88
    assert isinstance(calibrated.intervals, IV.Calibration)


def test_trials_and_calibration_folds_0_store_no_calibration(fd001, fd001_model, tmp_path):
    assert "intervals" not in json.loads((fd001_model / "model_meta.json").read_text())  # a trial (fit on train)
    proc = train_subprocess(fd001["out"], tmp_path / "model", "--num_round", "5", "--fit_on", "train+validation",
                            "--calibration_folds", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "model" / "model_meta.json").read_text())["intervals"] is None


def test_bad_calibration_hyperparameters_fail_with_one_line(fd001, tmp_path):
    proc = train_subprocess(fd001["out"], tmp_path / "model", "--num_round", "5", "--fit_on", "train+validation",
                            "--interval_level", "1.5")
    assert proc.returncode == 2 and "interval_level=1.5 outside" in proc.stderr
    assert not (tmp_path / "model" / "model_meta.json").exists()


def test_true_rul_is_uncapped():
    frame = pd.DataFrame({"_asset": [1, 1, 1, 2, 2], "_time": [1, 2, 300, 5, 6], "_label": [125, 125, 0, 1, 0]})
    np.testing.assert_array_equal(T.true_rul(frame), [299, 298, 0, 1, 0])


# ------------------------------------------------------------------------------- the endpoint

def ask(model, doc):
    status, out, _ = handler.handle(model, json.dumps(doc).encode(), "application/json", None)
    return status, json.loads(out)


def test_every_rul_answer_carries_its_interval(calibrated, units):
    status, doc = ask(calibrated, {"instances": [{"asset_id": u, "readings": units[u]} for u in (1, 2, 3)]})
    assert status == 200
    for p in doc["predictions"]:
        assert set(p) == {"asset_id", "rul", "rul_lower", "rul_upper", "interval_level"}
        assert 0 <= p["rul_lower"] <= p["rul_upper"] and p["interval_level"] == 0.8
        lo, hi = calibrated.intervals.interval(np.array([p["rul"]]))
        assert (p["rul_lower"], p["rul_upper"]) == (round(lo[0], 3), round(hi[0], 3))


def test_horizon_adds_a_failure_probability_monotone_in_the_horizon(calibrated, units):
    instances = [{"asset_id": u, "readings": units[u]} for u in (1, 31, 34, 68)]  # long and short RUL
    probs = []
    for h in (0, 5, 10, 20, 40, 80, 160, 1000):
        status, doc = ask(calibrated, {"instances": instances, "horizon": h})
        assert status == 200 and all(p["horizon"] == h for p in doc["predictions"])
        probs.append([p["failure_probability"] for p in doc["predictions"]])
    probs = np.asarray(probs)
    assert (np.diff(probs, axis=0) >= 0).all() and (probs[-1] == 1).all() and (probs[0] < 0.5).all()


def test_an_instance_horizon_overrides_the_requests(calibrated, units):
    status, doc = ask(calibrated, {"horizon": 20, "instances": [
        {"asset_id": "a", "readings": units[1], "horizon": 200.5}, {"asset_id": "b", "readings": units[1]}]})
    assert status == 200
    a, b = doc["predictions"]
    assert a["horizon"] == 200.5 and b["horizon"] == 20 and a["failure_probability"] >= b["failure_probability"]
    status, doc = ask(calibrated, {"instances": [{"asset_id": "a", "readings": units[1], "horizon": 30},
                                                 {"asset_id": "b", "readings": units[1]}]})
    assert "failure_probability" in doc["predictions"][0] and "horizon" not in doc["predictions"][1]


@pytest.mark.parametrize("change, message", [
    ({"horizon": -1}, "horizon: must be a number of cycles >= 0"),
    ({"horizon": "30"}, "horizon: must be a number of cycles >= 0"),
    ({"horizon": True}, "horizon: must be a number of cycles >= 0"),
    ({"horizon": None}, "horizon: must be a number of cycles >= 0"),
    ({"horizon": [30]}, "horizon: must be a number of cycles >= 0"),
    ({"instance_horizon": -0.5}, "instances[1].horizon: must be a number of cycles >= 0"),
    ({"instance_horizon": {"h": 1}}, "instances[1].horizon: must be a number of cycles >= 0"),
])
def test_a_bad_horizon_is_a_400_naming_it(calibrated, units, change, message):
    instances = [{"asset_id": "a", "readings": units[1]}, {"asset_id": "b", "readings": units[2]}]
    if "instance_horizon" in change:
        instances[1]["horizon"] = change.pop("instance_horizon")
    status, doc = ask(calibrated, {"instances": instances, **change})
    assert status == 400 and doc == {"error": message}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_instance_horizon_is_a_400_naming_it(calibrated, units, number):
    """The strict parser refuses the body; the field is still named, as for the request's horizon."""
    doc = {"instances": [{"asset_id": "a", "readings": units[1]}, {"asset_id": "b", "readings": units[2], "horizon": "@h"}]}
    body = json.dumps(doc).replace('"@h"', number).encode()
    status, out, _ = handler.handle(calibrated, body, "application/json", None)
    assert status == 400 and json.loads(out) == {"error": "instances[1].horizon: must be a number of cycles >= 0"}


def test_a_huge_horizon_number_is_refused_not_crashed(calibrated, units):
    body = json.dumps({"instances": [{"readings": units[1]}]}).encode()[:-1] + b', "horizon": 1e999}'
    status, out, _ = handler.handle(calibrated, body, "application/json", None)
    assert status == 400 and b"horizon: must be a number of cycles >= 0" in out


def _both(model, body: bytes) -> tuple:
    """(status, body) of ``handle`` with the compiled reader and without it (the Python path)."""
    fast = handler.handle(model, body, "application/json", None)[:2]
    reader, model.reader = model.reader, None
    try:
        return fast, handler.handle(model, body, "application/json", None)[:2]
    finally:
        model.reader = reader


def test_compiled_reader_reads_horizons_and_answers_as_the_python_path(calibrated, units):
    """Valid horizons (the request's, an instance's own, both; ints, floats, exponents, zeros) are read by the
    compiled reader, and the answers (failure probabilities included) equal the Python path's byte for byte;
    anything ``is_valid_horizon`` does not plainly accept is declined and gets the Python path's answer."""
    assert calibrated.reader is not None  # FD001: the compiled reader serves plain requests
    plain = {"instances": [{"asset_id": "a", "readings": units[5]}, {"asset_id": 7, "readings": units[7]}]}
    text = json.dumps(plain)
    assert calibrated.reader.read(text.encode()) is not None
    own = {"instances": [{**plain["instances"][0], "horizon": 12.25}, plain["instances"][1]]}
    read = [{**plain, "horizon": 30}, {**plain, "horizon": 30.5}, {**plain, "horizon": 0}, {**plain, "horizon": 0.0},
            {"instances": [{**i, "horizon": 30} for i in plain["instances"]]}, own, {**own, "horizon": 200},
            {**plain, "horizon": 2**53 - 1}, {**plain, "horizon": 1e300}]
    bodies = [json.dumps(doc).encode() for doc in read]
    bodies += [text[:-1].encode() + b', "horizon": ' + h + b"}" for h in (b"3e1", b"-0", b"-0.0", b"0.5E-3")]
    for body in bodies:
        got = calibrated.reader.read(body)
        assert got is not None, body[-40:]  # read, not declined
        features = codec.read(body, calibrated)
        assert features.horizons == codec.read_python(body, calibrated).horizons
        assert [type(h) for h in features.horizons] == [type(h) for h in codec.read_python(body, calibrated).horizons]
        fast, slow = _both(calibrated, body)
        assert fast == slow and fast[0] == 200, (fast, slow)
        assert all("failure_probability" in p for p in json.loads(fast[1])["predictions"]
                   if "horizon" in p)
    assert json.loads(_both(calibrated, bodies[0])[0][1])["predictions"][0]["horizon"] == 30
    declined = [{**plain, "horizon": -1}, {**plain, "horizon": -0.5}, {**plain, "horizon": "30"},
                {**plain, "horizon": True}, {**plain, "horizon": None}, {**plain, "horizon": [30]},
                {**plain, "horizon": 2**53}, {"instances": [{**plain["instances"][0], "horizon": -3}]},
                {"instances": [{**plain["instances"][0], "horizon": False}]}]
    bodies = [json.dumps(doc).encode() for doc in declined]
    bodies += [text[:-1].encode() + b', "horizon": ' + h + b"}" for h in (b"1e999", b"-1e-400", b"1e-400")]
    bodies.append(text[:-1].encode() + b', "horizon": 1, "horizon": 2}')
    bodies.append(json.dumps(own).replace('"horizon": 12.25', '"horizon": 1, "horizon": 12.25').encode())
    for body in bodies:
        assert calibrated.reader.read(body) is None, body[-40:]
        fast, slow = _both(calibrated, body)
        assert fast == slow, (fast, slow)
    # the same prediction and interval either way
    _, a = ask(calibrated, plain)
    _, b = ask(calibrated, {**plain, "horizon": 30})
    assert {k: b["predictions"][0][k] for k in a["predictions"][0]} == a["predictions"][0]


def test_a_model_without_calibration_answers_as_before_and_refuses_a_horizon(fd001_model, units):
    model = M.load(fd001_model)  # a trial's artifact: no calibration
    status, doc = ask(model, {"instances": [{"readings": units[1]}]})
    assert status == 200 and set(doc["predictions"][0]) == {"asset_id", "rul"}
    status, doc = ask(model, {"instances": [{"readings": units[1]}], "horizon": 10})
    assert status == 400 and doc["error"].startswith("horizon: this model was trained without interval calibration")


def test_classification_keeps_its_answer_and_refuses_a_horizon(data_dir):
    from training_src import features as F
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    p = load_profile("ai4i2020")
    rows = read_table(resolve_file(data_dir, p.file("data")), p).head(500)
    model = M.for_spec(F.fit_spec(F.validate_readings(rows, p), p))
    row = {c: float(rows.iloc[0][c]) for c in model.required}
    row.update({c: rows.iloc[0][c] for c in model.spec.categorical})
    body = json.dumps({"instances": [row], "horizon": 10}).encode()
    with pytest.raises(codec.InferenceError) as err:
        codec.read(body, model)
    assert err.value.status_code == 400 and err.value.message.startswith("horizon: this model classifies failures")
    # a row-wise instance's "horizon" key is one of its columns, not a horizon
    assert codec.read(json.dumps({"instances": [{**row, "horizon": -3}]}).encode(), model).horizons is None
