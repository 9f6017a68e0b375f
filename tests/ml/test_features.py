"""Feature code: hand-computed examples, the missing-value policy, regimes, and serving parity."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest

from training_src import features as F
from training_src.profiles import load_profile, parse_profile


def tiny_profile(**over):
    doc = {
        "name": "tiny", "task": "rul_regression", "format": {"type": "csv", "header": True},
        "files": {"train": "tiny/train.csv"}, "id_column": "unit", "time_column": "cycle",
        "setting_columns": ["op"], "sensor_columns": ["s1", "s2", "flat"],
        "label": {"type": "rul", "cap": 3},
        "windows": {"sizes": [3], "stats": ["mean", "std", "slope", "min", "max"], "ewm_spans": []},
    }
    doc.update(over)
    return parse_profile(doc, source="tiny")


def tiny_frame():
    return pd.DataFrame({
        "unit": [1, 1, 1, 1, 2, 2],
        "cycle": [1, 2, 3, 4, 1, 2],
        "op": [0.0] * 6,
        "s1": [1.0, 2.0, 4.0, 7.0, 3.0, 3.0],
        "s2": [10.0, 10.0, 12.0, 12.0, 11.0, 13.0],
        "flat": [5.0] * 6,
    })


def test_rul_labels_with_cap_by_hand():
    p = tiny_profile()
    y = F.rul_labels(tiny_frame(), p, cap=2)
    assert y.tolist() == [2, 2, 1, 0, 1, 0]
    assert F.rul_labels(tiny_frame(), p, cap=None).tolist() == [3, 2, 1, 0, 1, 0]


def test_window_statistics_by_hand():
    p = tiny_profile()
    df = F.validate_readings(tiny_frame(), p)
    spec = F.fit_spec(df, p)
    assert spec.dropped_sensors == ["flat"]  # constant on training data: no information
    X = F.transform(df, spec)
    mu, sd = np.mean([1, 2, 4, 7, 3, 3]), np.std([1, 2, 4, 7, 3, 3])
    z = (np.array([1.0, 2.0, 4.0, 7.0]) - mu) / sd
    # row 4 (unit 1, cycle 4): window of 3 = cycles 2..4
    w = z[1:4]
    assert X.loc[3, "s1_mean_3"] == pytest.approx(w.mean())
    assert X.loc[3, "s1_std_3"] == pytest.approx(w.std())
    assert X.loc[3, "s1_min_3"] == pytest.approx(w.min())
    assert X.loc[3, "s1_max_3"] == pytest.approx(w.max())
    assert X.loc[3, "s1_slope_3"] == pytest.approx(np.polyfit([2, 3, 4], w, 1)[0])
    # partial window at the start of a history; a single reading has slope and std 0
    assert X.loc[1, "s1_mean_3"] == pytest.approx(z[:2].mean())
    assert X.loc[0, "s1_slope_3"] == 0 and X.loc[0, "s1_std_3"] == 0
    # windows never cross assets: unit 2's first row sees only itself
    z2 = (3.0 - mu) / sd
    assert X.loc[4, "s1_mean_3"] == pytest.approx(z2)
    assert X.loc[3, "cycle"] == 4


def test_ewm_is_truncated_and_normalised():
    p = tiny_profile(windows={"sizes": [2], "stats": ["mean"], "ewm_spans": [1]})
    spec = F.fit_spec(F.validate_readings(tiny_frame(), p), p)
    X = F.transform(F.validate_readings(tiny_frame(), p), spec)
    # span 1 -> alpha 1: the EWM is the latest value
    assert X["s1_ewm_1"].to_numpy() == pytest.approx(X["s1_z"].to_numpy())


def test_regimes_six_operating_conditions_and_per_regime_normalisation():
    rng = np.random.default_rng(0)
    conditions = np.array([[0, 0, 100], [10, 0.25, 100], [20, 0.7, 100], [25, 0.62, 60], [35, 0.84, 100],
                           [42, 0.84, 100]], dtype=float)
    n = 3000
    c = rng.integers(0, 6, n)
    settings = conditions[c] + rng.normal(0, 0.002, (n, 3))
    level = np.array([500.0, 600, 700, 800, 900, 1000])[c]
    df = pd.DataFrame({"unit": np.repeat(np.arange(30), 100), "cycle": np.tile(np.arange(1, 101), 30),
                       "op": settings[:, 0], "s1": level + rng.normal(0, 1, n),
                       "s2": level * 0.1 + rng.normal(0, 1, n), "flat": np.full(n, 5.0)})
    df["op2"], df["op3"] = settings[:, 1], settings[:, 2]
    p = tiny_profile(setting_columns=["op", "op2", "op3"], regimes={"max_clusters": 8,
                                                                      "min_explained_variance": 0.999})
    spec = F.fit_spec(F.validate_readings(df, p), p)
    assert spec.n_regimes == 6
    X = F.transform(F.validate_readings(df, p), spec)
    # per-regime z-scores remove the operating condition: every regime centred, unit spread
    for r in range(6):
        zs = X.loc[X[f"regime_{r}"] == 1, "s1_z"]
        assert abs(zs.mean()) < 1e-9 and zs.std(ddof=0) == pytest.approx(1.0)
    # one operating condition with sensor noise (FD001) stays one regime
    one = df.assign(op=rng.normal(0, 0.002, n), op2=rng.normal(0, 0.0003, n), op3=100.0)
    assert F.fit_spec(F.validate_readings(one, p), p).n_regimes == 1


def test_derived_and_categorical_features_ai4i():
    p = load_profile("ai4i2020")
    df = pd.DataFrame({"udi": [1, 2], "type": ["L", "H"], "air_temperature": [300.0, 301.0],
                       "process_temperature": [310.0, 309.0], "rotational_speed": [1500.0, 1400.0],
                       "torque": [40.0, 50.0], "tool_wear": [10.0, 200.0], "machine_failure": [0, 1]})
    df = F.validate_readings(df, p, require_label=True)
    spec = F.fit_spec(df, p)
    X = F.transform(df, spec)
    raw = F._derive(df, spec.derived)
    assert raw[:, 0] == pytest.approx([40 * 1500 * 2 * np.pi / 60, 50 * 1400 * 2 * np.pi / 60])  # watts
    assert raw[:, 1] == pytest.approx([10.0, 8.0])  # process - air temperature
    assert raw[:, 2] == pytest.approx([400.0, 10000.0])  # tool wear x torque
    assert X[["type_L", "type_M", "type_H"]].to_numpy().tolist() == [[1, 0, 0], [0, 0, 1]]
    assert not {"udi", "product_id", "twf", "hdf", "pwf", "osf", "rnf"} & set(X.columns)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.assign(s1=d.s1.astype(object).where(d.index != 2, "abc")), "row 3, column 's1': not a number"),
    (lambda d: d.assign(cycle=[1, 2, 2, 4, 1, 2]), "row 3: duplicate cycle 2"),
    (lambda d: d.assign(cycle=[1, 3, 2, 4, 1, 2]), "row 3: cycle 2 does not increase"),
    (lambda d: d.assign(s2=[10.0, np.inf, 12, 12, 11, 13]), "row 2, column 's2': infinite"),
    (lambda d: d.assign(unit=[1, 1, np.nan, 1, 2, 2]), "row 3, column 'unit': missing value"),
    (lambda d: d.drop(columns=["s2"]), r"missing column\(s\) \['s2'\]"),
    (lambda d: d.assign(s1=[np.nan] * 4 + [3.0, 3.0]), "missing for every reading of asset '1'"),
    (lambda d: d.iloc[[0, 4, 1, 2, 3, 5]], "not contiguous"),
])
def test_bad_readings_are_rejected_with_row_and_column(edit, message):
    with pytest.raises(F.FeatureError, match=message):
        F.validate_readings(edit(tiny_frame()), tiny_profile(), source="t")


def test_isolated_gaps_are_filled_long_gaps_rejected():
    p = tiny_profile()
    df = tiny_frame().assign(s1=[1.0, np.nan, 4.0, 7.0, np.nan, 3.0])
    out = F.validate_readings(df, p)
    assert out.s1.tolist() == [1.0, 1.0, 4.0, 7.0, 3.0, 3.0]  # previous reading; next at the start
    long = pd.DataFrame({"unit": [1] * 6, "cycle": range(1, 7), "op": 0.0, "s2": 1.0, "flat": 1.0,
                         "s1": [1.0, np.nan, np.nan, np.nan, np.nan, 2.0]})
    with pytest.raises(F.FeatureError, match="gap of more than 3"):
        F.validate_readings(long, p)


def test_nasa_score_by_hand():
    assert F.nasa_score([110], [100]) == pytest.approx(np.e - 1)  # 10 cycles late
    assert F.nasa_score([87], [100]) == pytest.approx(np.e - 1)  # 13 cycles early
    assert F.nasa_score([100, 120, 80], [100, 100, 100]) == pytest.approx(
        0 + (np.exp(2) - 1) + (np.exp(20 / 13) - 1))
    assert F.nasa_score([105], [100]) > F.nasa_score([95], [100])  # late costs more than early


def test_spec_round_trips_as_json(fd001):
    spec = fd001["spec"]
    again = F.FeatureSpec.from_json(spec.to_json())
    assert again.feature_names == spec.feature_names and json.loads(again.to_json()) == json.loads(spec.to_json())


def test_parity_every_fd001_test_unit(data_dir, fd001):
    """Features of a unit's raw readings alone == the batch features of its last cycle."""
    from training_src.dataio import read_table, resolve_file

    p, spec = fd001["profile"], fd001["spec"]
    test = F.validate_readings(read_table(resolve_file(data_dir, p.file("test")), p), p)
    batch = F.transform(test, spec, life=False)
    with_life = F.transform(test, spec).to_numpy()
    assert spec.life_stats and np.isnan(batch.to_numpy()[:, -len(F.life_names(spec)):]).all()
    n = 0
    for _, g in test.groupby("unit"):
        shuffled = g.sample(frac=1, random_state=0)  # requests may come in any order
        ordered = shuffled.sort_values("cycle")
        cols = {c: ordered[c].to_numpy() for c in ordered.columns}
        one = F.transform_asset(cols, spec)
        np.testing.assert_allclose(one, batch.loc[g.index[-1]].to_numpy(), rtol=1e-9, atol=1e-9)
        # the whole history sent with a new life summary: the batch features, life ones included, bit for bit
        started = F.transform_last(cols, np.array([0, len(g)]), spec, [F.NEW_LIFE])[0]
        np.testing.assert_array_equal(started, with_life[test.index.get_loc(g.index[-1])])
        n += 1
    assert n == 100


def test_transform_rows_equals_those_rows_of_the_batch_features(data_dir, fd001):
    """Features of chosen readings (every 3rd, every 29th, single ones, first and last readings of an
    asset), each from its own asset's history: the batch rows bit for bit, at the cost of those rows only
    (what the window/cap choice's proxy fits read)."""
    from training_src.dataio import read_table, resolve_file

    p, spec = fd001["profile"], fd001["spec"]
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    for sizes in ([30], [15, 0]):  # a trailing window; a short one with a whole-history one
        s = F.with_choice(spec, train, p, sizes, spec.label_cap)
        batch = F.transform(train, s, life=False).to_numpy()
        ends = np.flatnonzero(np.r_[train["unit"].to_numpy()[1:] != train["unit"].to_numpy()[:-1], True])
        for rows in (np.arange(2, len(train), 3), np.arange(28, len(train), 29), np.array([0, 5, 191, 192]),
                     ends, np.arange(len(train))):
            np.testing.assert_array_equal(F.transform_rows(train, rows, s), batch[rows])


@pytest.mark.parametrize("subset", ["FD001", "FD002", "ai4i2020"])
def test_transform_in_asset_blocks_equals_the_whole_frame(data_dir, monkeypatch, subset):
    """``transform(..., run=...)``: blocks of whole assets, written into one array from threads, give the
    features of the one-block path bit for bit, whatever the block size, the number of threads and the
    order the blocks run in (FD001: one regime; FD002: six, the health index, life features; AI4I 2020:
    row-wise rows, derived features with a per-type limit, a categorical column)."""
    from concurrent.futures import ThreadPoolExecutor

    from training_src.dataio import read_table, resolve_file
    from training_src.threads import parallel

    T = importlib.import_module("training_src.features.transform")  # the module (the package exports the function)

    if subset == "ai4i2020":
        p = load_profile("ai4i2020")
        rows = F.validate_readings(read_table(resolve_file(data_dir, p.file("data")), p), p, require_label=True)
    else:
        p = load_profile("cmapss", subset)
        rows = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    spec = F.fit_spec(rows, p)
    if subset == "FD001":  # a short trailing window beside a whole-history one
        spec = F.with_choice(spec, rows, p, [15, 0], spec.label_cap)
    monkeypatch.setattr(T, "BLOCK_ROWS", 997)  # many blocks, cut wherever the assets allow

    def three_threads(fn, jobs):
        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(lambda job: fn(*job), jobs))

    def backwards(fn, jobs):
        return [fn(*job) for job in jobs[::-1]][::-1]

    for kw in ({}, {"dtype": np.float32, "order": "F"}, {"life": False}):
        whole = F.transform(rows, spec, **kw)
        for run in (parallel, three_threads, backwards):
            part = F.transform(rows, spec, run=run, **kw)
            assert part.columns.tolist() == whole.columns.tolist() and part.index.equals(whole.index)
            assert part.to_numpy().dtype == whole.to_numpy().dtype
            np.testing.assert_array_equal(part.to_numpy(), whole.to_numpy())
    if spec.window_sizes:
        blocks = T.asset_blocks(rows[spec.id_column].to_numpy(), len(rows), 997)
        starts = set(np.flatnonzero(np.r_[True, np.diff(rows[spec.id_column].to_numpy()) != 0]).tolist())
        assert len(blocks) > 10 and all(a in starts for a, _ in blocks)  # every block starts an asset


def test_whole_history_window_by_hand():
    p = tiny_profile(windows={"sizes": [0], "stats": ["mean", "std", "slope", "min", "max"]})
    df = F.validate_readings(tiny_frame(), p)
    spec = F.fit_spec(df, p)
    X = F.transform(df, spec)
    mu, sd = np.mean([1, 2, 4, 7, 3, 3]), np.std([1, 2, 4, 7, 3, 3])
    z = (np.array([1.0, 2.0, 4.0, 7.0]) - mu) / sd
    assert X.loc[3, "s1_mean_all"] == pytest.approx(z.mean())
    assert X.loc[3, "s1_std_all"] == pytest.approx(z.std())
    assert X.loc[3, "s1_slope_all"] == pytest.approx(np.polyfit([1, 2, 3, 4], z, 1)[0])
    assert X.loc[2, "s1_max_all"] == pytest.approx(z[2]) and X.loc[3, "s1_min_all"] == pytest.approx(z[0])
    assert spec.history_needed == F.WHOLE_HISTORY
    one = F.transform_asset({c: df.loc[:3, c].to_numpy() for c in df.columns}, spec)
    np.testing.assert_allclose(one, X.loc[3].to_numpy())


def test_physical_margin_features_ai4i_by_hand():
    """Distance-to-limit features of the AI4I profile (Matzka 2020 failure rules), computed by hand."""
    p = load_profile("ai4i2020")
    df = pd.DataFrame({"udi": [1, 2, 3, 4], "type": ["L", "M", "H", "L"],
                       "air_temperature": [300.0, 300.0, 300.0, 300.0],
                       "process_temperature": [310.0, 308.0, 308.0, 308.6],
                       "rotational_speed": [1500.0, 1300.0, 1400.0, 1380.0],
                       "torque": [40.0, 60.0, 65.0, 30.0], "tool_wear": [10.0, 200.0, 200.0, 0.0],
                       "machine_failure": [0, 1, 0, 0]})
    df = F.validate_readings(df, p, require_label=True)
    spec = F.fit_spec(df, p)
    raw = pd.DataFrame(F._derive(df, spec.derived), columns=[d["name"] for d in spec.derived])
    # overstrain: wear x torque against the type's limit (L 11,000 / M 12,000 / H 13,000 minNm)
    assert raw.overstrain_margin.tolist() == pytest.approx([400 / 11000 - 1, 12000 / 12000 - 1,
                                                            13000 / 13000 - 1, -1.0])
    # power band 3.5-9 kW: 1 mid-band, 0 at an edge, negative outside
    watts = df.torque * df.rotational_speed * 2 * np.pi / 60
    assert raw.power_margin.tolist() == pytest.approx(np.minimum(watts - 3500, 9000 - watts) / 2750)
    # heat dissipation: fails when BOTH dT < 8.6 K and speed < 1380 rpm, i.e. when the max margin < 0
    t_m = ((df.process_temperature - df.air_temperature) - 8.6) / 8.6
    s_m = (df.rotational_speed - 1380) / 1380
    assert raw.temperature_margin.tolist() == pytest.approx(t_m) and raw.speed_margin.tolist() == pytest.approx(s_m)
    assert raw.heat_dissipation_margin.tolist() == pytest.approx(np.maximum(t_m, s_m))
    assert (raw.heat_dissipation_margin < 0).tolist() == [False, True, False, False]
    assert raw.heat_dissipation_margin[3] == pytest.approx(0.0)  # on both limits at once
    # the original three stay first and unchanged (models trained before keep their meaning)
    assert [d["name"] for d in spec.derived][:3] == ["power", "temperature_difference", "wear_torque"]


def test_margin_features_parity_batch_vs_serving(data_dir):
    """Row-wise profiles: the serving path (one row per asset, stacked) == the batch features."""
    from training_src.dataio import read_table, resolve_file

    p = load_profile("ai4i2020")
    df = F.validate_readings(read_table(resolve_file(data_dir, p.file("data")), p), p, require_label=True)
    spec = F.fit_spec(df, p)
    rows = df.sample(500, random_state=0).reset_index(drop=True)
    batch = F.transform(rows, spec).to_numpy()
    cols = {c: rows[c].to_numpy() for c in p.input_columns}
    stacked = F.transform_last(cols, np.arange(len(rows) + 1), spec)
    np.testing.assert_array_equal(stacked, batch)
    one = F.transform_asset({c: rows[c].to_numpy()[7:8] for c in p.input_columns}, spec)
    np.testing.assert_array_equal(one, batch[7])
    # the spec (and so the model artifact) carries the declarations; a JSON round trip keeps them
    again = F.FeatureSpec.from_json(spec.to_json())
    np.testing.assert_array_equal(F.transform(rows, again).to_numpy(), batch)


def test_ai4i_request_answers_with_the_derived_features(data_dir):
    """A served AI4I request (JSON body of the raw fields) is read into the batch features, derived ones
    included: the physical quantities and failure-rule margins come from the request's own fields."""
    import json

    from training_src.dataio import read_table, resolve_file
    from training_src.predmaint_serving import codec
    from training_src.predmaint_serving import model as M

    p = load_profile("ai4i2020")
    df = F.validate_readings(read_table(resolve_file(data_dir, p.file("data")), p), p, require_label=True)
    spec = F.fit_spec(df, p)
    model = M.for_spec(spec)
    rows = df.sample(64, random_state=1).reset_index(drop=True)
    instances = [{**{c: float(r[c]) for c in model.required}, **{c: r[c] for c in spec.categorical}}
                 for _, r in rows.iterrows()]
    got = codec.read(json.dumps({"instances": instances}).encode(), model).X
    names = F.feature_names(spec)
    batch = F.transform(rows, spec)
    np.testing.assert_array_equal(got, batch.to_numpy(np.float32))
    derived = [d["name"] for d in spec.derived]
    assert set(derived) <= set(names) and len(derived) == len(p.derived_features)
    # the served power margin is the request's torque x angular speed against the 3.5-9 kW band
    j = names.index("power_margin")
    watts = rows.torque.to_numpy() * rows.rotational_speed.to_numpy() * 2 * np.pi / 60
    k = derived.index("power_margin")
    want = (np.minimum(watts - 3500, 9000 - watts) / 2750 - spec.derived_mean[k]) / spec.derived_std[k]
    np.testing.assert_allclose(got[:, j], want.astype(np.float32), rtol=1e-5, atol=1e-6)


def test_user_declared_margins_work_without_code(tmp_path):
    """A user's fleet declares its own limits (per level, band, combined) in the profile alone."""
    doc = {"name": "presses", "task": "failure_classification", "files": {"data": "presses/data.csv"},
           "id_column": "row", "sensor_columns": ["force", "stroke"], "categorical_columns": {"die": ["a", "b"]},
           "derived_features": [
               {"name": "work_margin", "op": "product", "columns": ["force", "stroke"], "scale": 0.5,
                "limit_by": "die", "limit": {"a": 100, "b": 200}},
               {"name": "force_band", "op": "value", "columns": ["force"], "band": [10, 30]},
               {"name": "worst", "op": "min", "features": ["work_margin", "force_band"]}],
           "label": {"type": "binary", "column": "failed"}, "split": {"validation_fraction": 0.2}}
    p = parse_profile(doc, source="presses.json")
    df = F.validate_readings(pd.DataFrame({"row": [1, 2], "die": ["a", "b"], "force": [20.0, 40.0],
                                           "stroke": [5.0, 5.0], "failed": [0, 1]}), p, require_label=True)
    spec = F.fit_spec(df, p)
    raw = F._derive(df, spec.derived)
    assert raw[:, 0].tolist() == pytest.approx([(50 - 100) / 100, (100 - 200) / 200])
    assert raw[:, 1].tolist() == pytest.approx([1.0, -1.0])
    assert raw[:, 2].tolist() == pytest.approx([-0.5, -1.0])


def test_a_transform_block_writes_its_features_into_the_callers_rows(data_dir):
    """``transform`` in blocks hands each block its rows of the result (``out``): the block's windows and
    life sums go straight into their columns there, each value rounded once to float32, the same values as
    the block computed on its own; nothing else of the result is touched."""
    T = importlib.import_module("training_src.features.transform")
    from training_src.dataio import read_table, resolve_file

    p = load_profile("cmapss", "FD002")
    rows = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    rows = rows[rows[p.id_column] <= 12].reset_index(drop=True)
    spec = F.fit_spec(rows, p)
    own = T._transform_block(rows, spec, True, np.float32, "F")
    x = np.full((len(rows) + 10, own.shape[1]), -1.0, dtype=np.float32, order="F")
    got = T._transform_block(rows, spec, True, np.float32, "F", out=x[5:5 + len(rows)])
    assert np.shares_memory(got, x)
    np.testing.assert_array_equal(x[5:5 + len(rows)], own)
    assert (x[:5] == -1).all() and (x[5 + len(rows):] == -1).all()
