"""Bounded-window models (issue 15): the health-index channel, the window and cap chosen by grouped
cross-validation, the short-request warning and `invoke --last`."""

from __future__ import annotations

import itertools
import json

import numpy as np

from training_src import features as F
from training_src import inference as I
from training_src import selection
from training_src.dataio import read_table, resolve_file
from training_src.predmaint_serving import codec
from training_src.profiles import load_profile, parse_profile


def _fleet(data_dir, subset: str, role: str, units: int):
    p = load_profile("cmapss", subset)
    df = F.validate_readings(read_table(resolve_file(data_dir, p.file(role)), p), p)
    return p, df[df["unit"] <= units].reset_index(drop=True)


def test_health_index_is_a_windowed_channel_with_batch_serving_parity(data_dir):
    """FD002 (six conditions): one HI per regime, its value/mean/slope are features, and the features of
    an asset's last W readings alone equal the batch features of that reading, bit for bit."""
    p, train = _fleet(data_dir, "FD002", "train", 60)
    spec = F.fit_spec(train, p)
    assert spec.n_regimes == 6 and len(spec.hi_weights) == 6 and spec.channels[-1] == "hi"
    assert {"hi_z", "hi_mean_30", "hi_slope_30"} <= set(spec.feature_names)
    assert spec.min_readings == 30 and spec.history_needed == 30
    # the HI by hand at one reading: intercept of its regime plus weights times normalised sensors
    row = train.iloc[[100]]
    z, reg = F._pointwise(spec, row)
    x = (row[spec.sensors].to_numpy()[0] - np.asarray(spec.sensor_mean)[reg[0]]) / np.asarray(spec.sensor_std)[reg[0]]
    by_hand = spec.hi_bias[reg[0]] + float(np.dot(spec.hi_weights[reg[0]], x))
    assert abs(z[0, -1] - by_hand) < 1e-9
    _, test = _fleet(data_dir, "FD002", "test", 40)
    batch = F.transform(test, spec, life=False).to_numpy()
    ids = test["unit"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    for a, b in itertools.pairwise(bounds):
        lo = max(a, b - 30)  # only the window: older readings change nothing
        one = F.transform_asset({c: test[c].to_numpy()[lo:b] for c in test.columns}, spec)
        np.testing.assert_array_equal(one, batch[b - 1])


def test_cap_override_and_with_choice_equal_a_fresh_fit(data_dir):
    p, train = _fleet(data_dir, "FD001", "train", 40)
    base = F.fit_spec(train, p)
    again = F.with_choice(base, train, p, [20], 140.0)
    fresh = F.fit_spec(train, p, window_sizes=[20], cap=140.0)
    assert json.loads(again.to_json()) == json.loads(fresh.to_json())
    assert fresh.label_cap == 140.0 and fresh.window_sizes == [20] and fresh.hi_weights != base.hi_weights


def test_rmse_standard_error_by_hand():
    pred, true = np.array([1.0, 3.0, 0.0, 0.0]), np.zeros(4)
    owner = np.array(["a", "a", "b", "b"])
    rmse, se = selection._rmse_se(pred, true, owner)
    assert rmse == np.sqrt(10 / 4)
    per_asset = np.array([5.0, 0.0])  # mean squared error of each asset
    assert abs(se - np.std(per_asset, ddof=1) / np.sqrt(2) / (2 * rmse)) < 1e-12


def test_selection_chooses_from_the_candidates_and_records_why(data_dir):
    """A small fleet, two windows and two caps: the rules pick from the candidates and the record says
    each candidate's CV figures under both protocols."""
    p, train = _fleet(data_dir, "FD001", "train", 45)
    doc = p.to_dict()
    doc["windows"] = {**doc["windows"], "sizes": [20], "cv_sizes": [10, 20]}
    doc["label"] = {"type": "rul", "cap": 125, "cv_caps": [100, 125]}
    prof = parse_profile(doc, subset="FD001", source="test")
    out = selection.choose(train, prof, seed=0)
    rec = out["record"]
    assert out["window_sizes"][0] in (10, 20) and out["cap"] in (100.0, 125.0)
    w = rec["window"]["candidates"]
    best = min(r["rmse_capped"] for r in w.values())
    ok = [int(k) for k, r in w.items() if r["rmse_capped"] <= best + min(w.values(), key=lambda r: r["rmse_capped"])["se_capped"]]
    assert out["window_sizes"] == [min(ok)]
    assert set(rec["cap"]["candidates"]) == {"100", "125"} and "last 20 readings" in rec["protocol"]


def test_short_request_gets_its_prediction_and_a_warning(fd001_model, data_dir):
    model = I.model_fn(str(fd001_model))
    minimum = model.spec.min_readings
    assert minimum == 30
    _, test = _fleet(data_dir, "FD001", "test", 1)
    rows = test.drop(columns=["unit"]).to_dict("records")

    def ask(n):
        body = codec.dumps({"instances": [{"asset_id": "short", "readings": rows[-n:]},
                                          {"asset_id": "full", "readings": rows}]})
        status, out, _ = I.handle(model, body, "application/json", None)
        assert status == 200
        return json.loads(out)["predictions"]

    short, full = ask(5)
    assert "warning" not in full and "rul" in short
    assert short["warning"].startswith("5 reading(s) sent") and f"last {minimum} readings" in short["warning"]
    assert all("warning" not in p for p in ask(minimum))


def test_invoke_last_sends_each_assets_last_readings():
    from predmaint.cli import last_readings
    from predmaint.client import Instance

    inst = [Instance("a", readings=[{"cycle": float(i)} for i in range(50)]), Instance("b", row={"x": 1.0})]
    out = last_readings(inst, 30)
    assert [r["cycle"] for r in out[0].readings] == [float(i) for i in range(20, 50)] and out[1] == inst[1]
    assert len(inst[0].readings) == 50  # the caller's instances are left as they were
