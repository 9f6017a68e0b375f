"""Memory layout at fleet scale: the processing outputs, the drift baseline's sample and the fit's rows
hold the values the models read, in fewer bytes, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training_src import drift as D
from training_src import features as F
from training_src.dataio import read_table, resolve_file


def test_feature_frames_are_float32_and_hold_the_float64_features_cast(data_dir, fd001):
    """train/validation/test features are written as float32: each value the float64 feature rounded once,
    as train.py and evaluate.py read them; meta columns and the raw-reading baseline frames stay float64."""
    p, spec, frames = fd001["profile"], fd001["spec"], fd001["frames"]
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    full = F.transform(train, spec)
    for name in ("train", "validation"):
        frame = frames[name]
        assert set(frame[spec.feature_names].dtypes) == {np.dtype(np.float32)}
        assert frame["_label"].dtype == np.float64
        rows = full.loc[frame.index, spec.feature_names].to_numpy().astype(np.float32)
        np.testing.assert_array_equal(frame[spec.feature_names].to_numpy(), rows)
    written = pd.read_parquet(fd001["out"] / "train" / "train.parquet")
    assert set(written[spec.feature_names].dtypes) == {np.dtype(np.float32)}
    assert set(frames["baseline_train"].drop(columns=["_asset", "_time", "_label"]).dtypes) == {np.dtype(float)}


def test_baseline_from_sampled_positions_equals_the_baseline_of_the_copied_rows(fd001):
    """``build_baseline(raw_rows=...)`` reads the sampled raw readings by position (repeated ones too),
    the same document as from a frame of those rows copied out."""
    spec, frames = fd001["spec"], fd001["frames"]
    raw = frames["baseline_train"].reset_index(drop=True)
    train = frames["train"]
    raw = raw[pd.MultiIndex.from_frame(raw[["_asset", "_time"]]).isin(
        pd.MultiIndex.from_frame(train[["_asset", "_time"]]))].reset_index(drop=True)
    fi, ri = D.serving_rows(train["_asset"].to_numpy(), spec.history_needed, 1, 5, np.random.default_rng(0))
    X = train[spec.feature_names].iloc[fi]
    by_position = D.build_baseline(raw, X, spec, raw_features=raw.iloc[fi], raw_rows=ri)
    copied = D.build_baseline(raw.iloc[ri], X.reset_index(drop=True), spec, raw_features=raw.iloc[fi])
    assert by_position == copied
    assert D.regimes_of(spec, raw).tolist() == F._pointwise(spec, raw)[1].tolist()


def test_fit_rows_from_row_blocks_are_the_stacked_rows_twice(fd001):
    """``with_and_without_life`` from row blocks (train then validation, as evaluate.py passes them)
    holds exactly the stacked rows, twice, the second copy's life features missing."""
    spec = fd001["spec"]
    k, f = len(F.life_names(spec)), len(spec.feature_names)
    assert k
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(5, f)).astype(np.float32), rng.normal(size=(3, f)).astype(np.float32)]
    y = np.arange(8.0)
    want, wy = F.with_and_without_life(np.vstack(blocks), y, spec)
    got, gy = F.with_and_without_life(blocks, y, spec)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(gy, wy)
    assert np.isnan(got[8:, -k:]).all() and not np.isnan(got[:8]).any()


def test_final_fit_stride_reads_every_reading_up_to_the_stated_size_and_every_second_above():
    """The one rule for the final fit's rows: all readings up to ``FINAL_FIT_ROWS``, every 2nd above."""
    from training_src import train as T

    assert T.FINAL_FIT_ROWS == 500_000 and T.FINAL_FIT_STRIDE == 2
    assert T.final_fit_stride(53_759) == 1 and T.final_fit_stride(T.FINAL_FIT_ROWS) == 1
    assert T.final_fit_stride(T.FINAL_FIT_ROWS + 1) == 2


def test_a_refit_above_the_stated_size_fits_every_second_reading_and_calibrates_every_reading(
        fd001, tmp_path, monkeypatch):
    """Above ``FINAL_FIT_ROWS`` (lowered here to FD001's size) the refit fits on ``stride_mask(.., 2)`` of
    train + validation (each row once in ``n_train``, whichever model it fits), and its calibration still predicts
    every reading; the calibration folds keep the pipeline's row_stride (3, no more than the fit reads)."""
    import json

    from training_src import train as T

    train = pd.read_parquet(fd001["out"] / "train" / "train.parquet", columns=["_asset"])
    val = pd.read_parquet(fd001["out"] / "validation" / "validation.parquet", columns=["_asset"])
    rows = len(train) + len(val)
    kept = int(T.stride_mask(np.concatenate([train["_asset"].to_numpy(), val["_asset"].to_numpy()]), 2).sum())
    argv = ["--train", str(fd001["out"] / "train"), "--validation", str(fd001["out"] / "validation"),
            "--output-data-dir", str(tmp_path / "out"), "--nthread", "1", "--fit_on", "train+validation",
            "--num_round", "5", "--row_stride", "3"]
    monkeypatch.setattr(T, "FINAL_FIT_ROWS", rows - 1)
    assert T.main([*argv, "--model-dir", str(tmp_path / "strided")]) == 0
    meta = json.loads((tmp_path / "strided" / "model_meta.json").read_text())
    assert meta["n_train"] == kept < rows
    assert meta["hyperparameters"]["row_stride"] == "3"
    assert meta["intervals"] is not None
    monkeypatch.setattr(T, "FINAL_FIT_ROWS", rows)
    assert T.main([*argv, "--model-dir", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "model_meta.json").read_text())["n_train"] == rows


def test_calibration_fits_every_fold_up_to_the_stated_size_and_the_fewest_first_folds_above():
    """The one rule for the calibration's fold fits: all folds up to ``CALIBRATION_ASSETS`` assets; above,
    the first folds (asset i in fold i % folds) until they hold at least ``CALIBRATION_ASSETS`` assets."""
    from training_src import train as T

    a = T.CALIBRATION_ASSETS
    assert T.calibration_folds_fitted(100, 5) == 5 and T.calibration_folds_fitted(260, 5) == 5  # FD001, FD002
    assert T.calibration_folds_fitted(a, 5) == 5
    assert T.calibration_folds_fitted(5 * a, 5) == 1 and T.calibration_folds_fitted(5 * a - 1, 5) == 1
    assert T.calibration_folds_fitted(5 * a - 5, 5) == 2  # the first fold holds a - 1
    assert T.calibration_folds_fitted(4160, 5) == -(-a // 832)  # the x16 fleet: 832 assets per fold
    assert T.calibration_folds_fitted(10 * a, 0) == 0 and T.calibration_folds_fitted(10 * a, 1) == 1
    for n in range(a + 1, a + 60):
        k = T.calibration_folds_fitted(n, 5)
        held = sum(1 for i in range(n) if i % 5 < k)  # the fitted folds' assets
        assert held >= a and (k == 1 or sum(1 for i in range(n) if i % 5 < k - 1) < a)


def test_a_calibration_above_the_stated_size_fits_fewer_folds_and_calibrates_their_assets_only(
        fd001, monkeypatch):
    """Above ``CALIBRATION_ASSETS`` (lowered here to 30 of FD001's 100 assets) the calibration fits 2 of its
    5 folds (40 held-out assets), calibrates on those assets' readings alone and records the folds fitted;
    at FD001's size (the constant as stated) every fold is fitted, as before."""
    from training_src import train as T

    spec = fd001["spec"]
    frames = [pd.read_parquet(fd001["out"] / c / f"{c}.parquet") for c in ("train", "validation")]
    hp = {"num_round": "5", "max_depth": "3", "row_stride": "3"}
    fits = []
    real = T.fit_models

    def counted(*args, **kw):
        fits.append(len(args[1]))
        return real(*args, **kw)

    monkeypatch.setattr(T, "fit_models", counted)
    full = T.calibrate_intervals("xgboost", frames, spec.feature_names, spec, hp, 1, 0)
    assert len(fits) == 5 and "folds_fitted" not in full and full["folds"] == 5
    fits.clear()
    monkeypatch.setattr(T, "CALIBRATION_ASSETS", 30)
    doc = T.calibrate_intervals("xgboost", frames, spec.feature_names, spec, hp, 1, 0)
    assert len(fits) == 2 and doc["folds"] == 5 and doc["folds_fitted"] == 2
    h = T.held_out_predictions("xgboost", frames, spec.feature_names, spec, hp, 1, 0)
    calibrating = np.unique(h.asset[h.eligible])
    assert len(calibrating) == 40 and max(b["assets"] for b in doc["bins"]) <= 40
    assert sum(b["rows"] for b in doc["bins"]) == int(h.eligible.sum())
    assert sum(b["rows"] for b in doc["life"]["bins"]) == int(h.eligible.sum())
    # the calibrated assets' held-out answers are those of the full calibration's first two folds
    full_h = T.held_out_predictions("xgboost", frames, spec.feature_names, spec, hp, 1, 0, every_fold=True)
    np.testing.assert_array_equal(h.pred[h.eligible], full_h.pred[h.eligible])


def test_the_window_and_cap_choice_in_threads_equals_the_sequential_choice(data_dir, monkeypatch):
    """The choice's fold fits and proxy fits run in threads: the record, W and cap are the one-thread
    loop's, bit for bit (each proxy fit is independent, and xgboost's hist result ignores threads)."""
    import json

    from training_src import selection, threads
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    train = train[train[p.id_column] <= 30].reset_index(drop=True)  # 30 engines keep it quick
    monkeypatch.setattr(threads, "workers", lambda: 3)
    threaded = selection.choose(train, p, seed=0)
    monkeypatch.setattr(threads, "workers", lambda: 1)
    assert json.dumps(threaded, sort_keys=True) == json.dumps(selection.choose(train, p, seed=0), sort_keys=True)


def test_column_major_feature_frames_hold_the_same_values_and_write_the_same_parquet(data_dir, fd001, tmp_path):
    """``transform(order="F")`` (what preprocessing writes) equals the row-major frame value for value,
    and the parquet file pyarrow writes from it is byte-identical."""
    p, spec = fd001["profile"], fd001["spec"]
    raw = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p).iloc[:3000]
    c = F.transform(raw, spec, dtype=np.float32)
    f = F.transform(raw, spec, dtype=np.float32, order="F")
    assert f.to_numpy().flags.f_contiguous and c.to_numpy().flags.c_contiguous
    np.testing.assert_array_equal(c.to_numpy(), f.to_numpy())
    c.to_parquet(tmp_path / "c.parquet", index=False)
    f.to_parquet(tmp_path / "f.parquet", index=False)
    assert (tmp_path / "c.parquet").read_bytes() == (tmp_path / "f.parquet").read_bytes()


def test_the_choice_never_runs_two_spec_fits_at_once(data_dir, monkeypatch):
    """k-means and the health index's ridge fit (inside ``fit_spec`` / ``with_choice``) use BLAS, whose
    thread limit scikit-learn's k-means sets process-wide while it runs: the threaded choice runs them
    one at a time, so each sums as in the sequential loop and the limit is restored after it."""
    import threading

    from threadpoolctl import threadpool_info

    from training_src import selection, threads
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    train = train[train[p.id_column] <= 30].reset_index(drop=True)
    running, most, lock = [0], [0], threading.Lock()

    def counted(fn):
        def wrapper(*args, **kwargs):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1
        return wrapper

    monkeypatch.setattr(F, "fit_spec", counted(F.fit_spec))
    monkeypatch.setattr(F, "with_choice", counted(F.with_choice))
    monkeypatch.setattr(threads, "workers", lambda: 2)
    selection.choose(train, p, seed=0)  # loads scikit-learn's libraries (and their thread pools)
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    most[0] = 0
    selection.choose(train, p, seed=0)
    assert most[0] == 1
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before
