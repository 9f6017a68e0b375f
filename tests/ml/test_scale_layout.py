"""Memory layout at fleet scale: the processing outputs, the drift baseline's sample and the fit's rows
hold the values the models read, in fewer bytes, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training_src import drift as D
from training_src import features as F
from training_src.dataio import read_table, resolve_file
from training_src.preprocess import fit_regression_spec


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


def test_a_folds_health_index_per_cap_equals_each_candidates_own_fit(data_dir):
    """The choice fits a fold's health index once per label cap and reuses it, with the fold's normalised
    sensors, for every window: each candidate's spec, training rows and cut-view features equal those of
    its own ``with_choice`` fit, bit for bit (FD002: six regimes)."""
    from training_src import selection
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD002")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    train = train[train[p.id_column] <= 40].reset_index(drop=True)
    held = train[p.id_column].to_numpy() > 30
    tr, va = train[~held].reset_index(drop=True), train[held].reset_index(drop=True)
    cols, offsets, _, _ = selection.cut_views(va, p, 30, 30, seed=1)
    base = F.fit_spec(tr, p, seed=0, window_sizes=[15])
    base.life_stats = []
    fold = selection.Fold(tr, base, cols)
    rows = np.arange(3, len(tr), 7)
    for size, cap in ((15, 125.0), (30, 125.0), (30, 150.0), (20, None)):
        own = F.with_choice(base, tr, p, [size], cap, F.normalised(base, tr))
        hspec, hi_tr, hi_view = fold.health_index(p, cap)
        spec = F.with_windows(hspec, [size])
        assert spec.to_json() == own.to_json()
        np.testing.assert_array_equal(F.transform_rows(tr, rows, spec, point=selection._with_index(fold.norm, hi_tr)),
                                      F.transform_rows(tr, rows, own))
        np.testing.assert_array_equal(
            F.transform_last(cols, offsets, spec, point=selection._with_index(fold.view_norm, hi_view)),
            F.transform_last(cols, offsets, own))


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
    thread limit scikit-learn's k-means sets process-wide while it runs: the threaded choice (and the
    final spec's fit beside it) runs them one at a time, so each sums as in the sequential loop and the
    limit is restored after it."""
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

    from training_src.features import fit as FIT

    # the fits that use BLAS, wherever they are called from (the folds' specs fit side by side)
    monkeypatch.setattr(FIT, "detect_regimes", counted(FIT.detect_regimes))
    monkeypatch.setattr(FIT, "fit_health_index", counted(FIT.fit_health_index))
    monkeypatch.setattr(threads, "workers", lambda: 2)
    selection.choose(train, p, seed=0)  # loads scikit-learn's libraries (and their thread pools)
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    most[0] = 0
    selection.choose(train, p, seed=0)
    assert most[0] == 1
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before
    most[0] = 0
    fit_regression_spec(train, p, 0)  # the choice with the final spec's regimes fitted beside it
    assert most[0] == 1
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before


def test_the_choices_proxy_fit_holds_its_rows_bins_and_predicts_what_a_dmatrix_fit_predicts(monkeypatch):
    """The window/cap choice's proxy fits (two at once; at FD002 x1 the choice holds preprocessing's peak) read
    their rows as a QuantileDMatrix, the histogram bins alone, not a DMatrix, whose sparse page is a float and
    a column index per value beside the rows: the predictions are the plain DMatrix fit's, bit for bit."""
    import xgboost as xgb

    from training_src import selection

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 20))
    X[:, 1] = np.round(X[:, 1])  # a column with few distinct values, as the regime indicators are
    y = 100 + 30 * X[:, 0] + 5 * X[:, 1] + rng.standard_normal(3000)
    Xv = rng.standard_normal((200, 20))
    plain = xgb.train({**selection.PROXY, "seed": 3}, xgb.DMatrix(X.astype(np.float32), label=y),
                      selection.PROXY_ROUNDS)
    expected = np.clip(plain.inplace_predict(Xv.astype(np.float32)), 0.0, None)

    def float_copy(*args, **kwargs):
        raise AssertionError("the proxy fit built a DMatrix: a float copy of its rows")

    monkeypatch.setattr(xgb, "DMatrix", float_copy)
    np.testing.assert_array_equal(selection._fit_predict(X, y, Xv, 3), expected)


def test_each_proxy_fit_of_the_choice_gives_the_freed_heap_back_after_it(data_dir, monkeypatch):
    """Each proxy fit frees its matrices in pieces below the mmap threshold, and the fit running beside it
    does not fit in those holes: ``_fold_predictions`` trims glibc's heap after every fit, before the next
    one in its thread starts (what the choice records is unchanged: the choice tests above)."""
    from training_src import selection, threads
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    train = train[train[p.id_column] <= 30].reset_index(drop=True)
    events = []
    monkeypatch.setattr(selection, "trim_malloc", lambda: events.append("trim") or True)
    fit = selection._fit_predict
    monkeypatch.setattr(selection, "_fit_predict", lambda *args: events.append("fit") or fit(*args))
    monkeypatch.setattr(threads, "workers", lambda: 1)
    selection.choose(train, p, seed=0)
    assert len(events) >= 2 * selection.FOLDS and events == ["fit", "trim"] * (len(events) // 2)


def test_the_final_spec_fitted_beside_the_choice_equals_the_sequential_fit(data_dir):
    """Preprocessing fits the final spec's regimes and normalisation while the window/cap choice runs, then
    the chosen cap's health index: the spec JSON of ``fit_spec`` with the chosen window and cap, byte for
    byte (FD002: six regimes)."""
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD002")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    train = train[train[p.id_column] <= 45].reset_index(drop=True)
    spec = fit_regression_spec(train, p, 0)
    sequential = F.fit_spec(train, p, seed=0, window_sizes=spec.window_sizes, cap=spec.label_cap)
    sequential.selection = spec.selection
    assert spec.to_json() == sequential.to_json()


def test_preprocessing_caps_the_malloc_arenas_on_glibc():
    """Preprocessing runs NumPy and pandas work in several threads at once; on glibc each thread that finds
    the arenas busy takes a new one and the process keeps their memory (FD002 x4: 885-997 MB peak against
    789 MB with two arenas). ``limit_malloc_arenas`` reaches glibc's ``mallopt`` and sets the cap."""
    import platform

    from training_src.threads import limit_malloc_arenas

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt only")
    assert limit_malloc_arenas() is True


def test_preprocessing_writes_its_files_through_the_system_allocator(monkeypatch, tmp_path):
    """pyarrow's own pool (mimalloc or jemalloc) keeps the pages of the buffers it freed: preprocessing's
    ``main`` sets the system allocator before it reads or writes anything, so what the parquet writers
    encode is given back after each file (FD002 x1 under load: the writing's peak 402-409 MB, 364 MB)."""
    import pyarrow as pa

    from training_src import preprocess as P

    before = pa.default_memory_pool()
    for name in ("mimalloc", "jemalloc"):  # a pool that keeps freed pages, whatever an earlier test set
        try:
            pa.set_memory_pool(getattr(pa, f"{name}_memory_pool")())
            break
        except (AttributeError, NotImplementedError):
            continue
    else:
        pytest.skip("this pyarrow has no pool other than the system allocator")
    seen = []

    def stop(*args, **kwargs):
        seen.append(pa.default_memory_pool().backend_name)
        raise P.DataError("stopped here")

    monkeypatch.setattr(P, "build_datasets", stop)
    try:
        assert P.main(["--profile", "cmapss", "--subset", "FD001", "--data-dir", str(tmp_path),
                       "--output-dir", str(tmp_path / "out")]) == 2
    finally:
        pa.set_memory_pool(before)
    assert seen == ["system"]


def test_rows_read_column_by_column_equal_the_channel_frames_rows(fd001, tmp_path):
    """``train.read_rows`` (what evaluate.py's ablation reads) holds ``split_xy`` of the channels' frames bit
    for bit (missing life features too), in C order; with ``keep``, those rows; without names, every
    column not starting with ``_`` (the raw-reading baseline's rows); a missing column is named."""
    import pytest

    from training_src import train as T

    spec, out = fd001["spec"], fd001["out"]
    files = T.channel_files(out / "train") + T.channel_files(out / "validation")
    frame = pd.concat([T.read_channel(out / "train"), T.read_channel(out / "validation")], ignore_index=True)
    want_x, want_y = T.split_xy(frame, spec.feature_names)
    got_x, got_y = T.read_rows(files, spec.feature_names)
    assert got_x.dtype == np.float32 and got_x.flags.c_contiguous
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_array_equal(got_y, want_y)
    keep = T.stride_mask(T.read_column(files, "_asset"), 2)
    strided_x, strided_y = T.read_rows(files, spec.feature_names, keep)
    np.testing.assert_array_equal(strided_x, want_x[keep])
    np.testing.assert_array_equal(strided_y, want_y[keep])
    raw = pd.read_parquet(out / "baseline" / "train.parquet")
    raw_x, raw_y = T.read_rows([out / "baseline" / "train.parquet"])
    np.testing.assert_array_equal(raw_x, raw[[c for c in raw.columns if not c.startswith("_")]].to_numpy(np.float32))
    np.testing.assert_array_equal(raw_y, raw["_label"].to_numpy(float))
    with pytest.raises(T.TrainError, match="lacks feature columns"):
        T.read_rows(files, [*spec.feature_names, "no_such_feature"])
    # missing values (parquet nulls, as pandas writes NaN) read as NaN, as the frame holds them
    holes = frame.iloc[:50].copy()
    holes.iloc[::3, holes.columns.get_loc(spec.feature_names[-1])] = np.nan
    holes.to_parquet(tmp_path / "holes.parquet", index=False)
    got_x, _ = T.read_rows([tmp_path / "holes.parquet"], spec.feature_names)
    assert np.isnan(got_x[::3, -1]).all()
    np.testing.assert_array_equal(got_x, T.split_xy(pd.read_parquet(tmp_path / "holes.parquet"), spec.feature_names)[0])


def _recorded_ablation(fd001, fd001_model, tmp_path, monkeypatch):
    """evaluate.py on FD001 with a tuning record whose best XGBoost is not the model's (so the ablation
    fits its tuned step too), 5 rounds per fit; returns each feature fit's (rows matrix, its rows as
    the fit got them, its rows after the fit, fits running at its start)."""
    import json
    import threading

    from training_src import evaluate as E
    from training_src import train as T

    calls, running, lock = [], [0], threading.Lock()
    fit_models = T.fit_models

    def recorded(algorithm, X, y, *args, **kwargs):
        with lock:
            running[0] += 1
            seen, at_start = X.copy(), running[0]
        try:
            return fit_models(algorithm, X, y, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1
                calls.append((X, seen, X.copy(), at_start))

    monkeypatch.setattr(T, "fit_models", recorded)
    monkeypatch.setattr(E, "DEFAULT_XGB_ROUNDS", 5)
    tmp_path.mkdir(exist_ok=True)
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps({"best_by_algorithm": {"xgboost": {
        "value": 1.0, "trial": 0, "params": {"num_round": 5, "max_depth": 3}}}}))
    out = fd001["out"]
    report = E.evaluate(fd001_model, out / "test", out / "baseline", out / "train", out / "validation", tuning,
                        tmp_path / "evaluation", nthread=2)
    assert [s["step"] for s in report["ablation"]][1:3] == [
        "+ feature engineering (default XGBoost)", "+ hyperparameter tuning (best XGBoost)"]
    return calls


def test_the_ablations_feature_fits_read_one_matrix_one_fit_at_a_time(fd001, fd001_model, tmp_path, monkeypatch):
    """The ablation's feature fits (default and tuned XGBoost, each a pair that blanks its rows' life columns
    in place) get the one matrix of rows, never a copy each, and run one at a time, each finding the rows
    as read: the first fit's blanked life columns are put back, the last fit's stay blank (nothing reads
    the matrix after it)."""
    calls = _recorded_ablation(fd001, fd001_model, tmp_path, monkeypatch)
    assert len(calls) == 2
    (first, seen1, after1, n1), (second, seen2, after2, n2) = calls
    assert second is first and n1 == n2 == 1
    np.testing.assert_array_equal(seen2, seen1)
    np.testing.assert_array_equal(after1, seen1)
    k = len(F.life_names(fd001["spec"]))
    assert k and np.isnan(after2[:, -k:]).all()
    np.testing.assert_array_equal(after2[:, :-k], seen1[:, :-k])


def test_the_ablations_window_fits_hold_no_copy_of_the_life_columns(fd001, fd001_model, tmp_path, monkeypatch):
    """A pair's window fit blanks the rows' life columns in place: in the ablation neither feature fit holds
    a copy of them through it (the first reads them again from the channel files afterwards, the last
    leaves them blank). What numpy and Python hold (``tracemalloc``) when each window fit starts is what
    they held when its life fit started, give or take far less than those columns' bytes."""
    import tracemalloc

    from training_src import evaluate as E
    from training_src import train as T

    monkeypatch.setattr(E, "_plots", lambda *args, **kwargs: [])  # no allocations beside the fits but theirs
    held, fit_model = [], T.fit_model

    def recorded(algorithm, X, *args, **kwargs):
        held.append((tracemalloc.get_traced_memory()[0], X.shape))
        return fit_model(algorithm, X, *args, **kwargs)

    monkeypatch.setattr(T, "fit_model", recorded)
    tracemalloc.start()
    try:
        calls = _recorded_ablation(fd001, fd001_model, tmp_path, monkeypatch)
    finally:
        tracemalloc.stop()
    rows = calls[0][0]
    k = len(F.life_names(fd001["spec"]))
    life_bytes = rows.shape[0] * k * rows.itemsize
    feature_fits = [h for h, shape in held if shape == rows.shape]  # life then window fit, twice
    assert len(feature_fits) == 4 and life_bytes > 1 << 20
    for life_fit, window_fit in zip(feature_fits[::2], feature_fits[1::2], strict=True):
        assert window_fit - life_fit < life_bytes // 4, (window_fit - life_fit, life_bytes)


def test_the_ablation_fits_the_final_fits_rows_above_the_stated_size(fd001, fd001_model, tmp_path, monkeypatch):
    """Above ``FINAL_FIT_ROWS`` (lowered here below FD001's train + validation) the ablation's feature fits
    read what the final fit reads, ``stride_mask(.., final_fit_stride)`` of train then validation; at or
    below it, every row."""
    from training_src import train as T

    out = fd001["out"]
    frame = pd.concat([T.read_channel(out / "train"), T.read_channel(out / "validation")], ignore_index=True)
    assets = frame["_asset"].to_numpy()
    X, _ = T.split_xy(frame, fd001["spec"].feature_names)
    keep = T.stride_mask(assets, 2)
    monkeypatch.setattr(T, "FINAL_FIT_ROWS", len(assets) - 1)
    strided = _recorded_ablation(fd001, fd001_model, tmp_path / "strided", monkeypatch)
    assert [len(seen) for _, seen, _, _ in strided] == [int(keep.sum())] * 2
    np.testing.assert_array_equal(strided[0][1], X[keep])
    monkeypatch.setattr(T, "FINAL_FIT_ROWS", len(assets))
    every = _recorded_ablation(fd001, fd001_model, tmp_path / "all", monkeypatch)
    np.testing.assert_array_equal(every[0][1], X)


def test_a_fits_channel_read_column_by_column_equals_the_frames_split(fd001):
    """``train.read_fit_rows`` (what train.py reads, on one host and on each of several): the channel's meta
    columns and its rows read column by column, without building the channel's frame: the matrix and labels
    of ``split_xy`` bit for bit, and the meta columns of ``read_channel``."""
    from training_src import train as T

    names = fd001["spec"].feature_names
    for channel in ("train", "validation"):
        path = fd001["out"] / channel
        frame = T.read_channel(path)
        want_X, want_y = T.split_xy(frame, names)
        meta, none, X, y, Xv, yv = T.read_fit_rows(path, None, names, "train", 1)
        assert none is None and Xv is None and yv is None
        np.testing.assert_array_equal(X, want_X)
        assert X.dtype == want_X.dtype and X.flags.c_contiguous
        np.testing.assert_array_equal(y, want_y)
        assert list(meta.columns) == ["_asset", "_time", "_label"]
        pd.testing.assert_frame_equal(meta[["_asset", "_time", "_label"]], frame[["_asset", "_time", "_label"]])


def test_an_hgb_fit_bins_the_callers_rows_and_gives_them_back_as_they_were(monkeypatch):
    """A window model's life columns hold no value, which scikit-learn cannot bin: the hgb candidate sets
    them to 0 for the fit in the caller's own array (no copy of the rows) and back to NaN after it, also when
    the fit fails."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from training_src.candidates import hgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    X[:, 3] = np.nan
    before = X.copy()
    y = rng.normal(size=400)
    seen = []
    fit = HistGradientBoostingRegressor.fit

    def recording(self, Xf, yf, *a, **k):
        seen.append((np.shares_memory(Xf, X), float(np.nanmax(np.abs(Xf[:, 3])))))
        return fit(self, Xf, yf, *a, **k)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", recording)
    model, _ = hgb.fit(X, y, "rul_regression", {"max_iter": "5"}, 1, 0)
    assert seen == [(True, 0.0)]
    np.testing.assert_array_equal(X, before)  # NaN where it was
    assert model.doc["trees"]

    def failing(self, Xf, yf, *a, **k):
        raise RuntimeError("fit failed")

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", failing)
    with pytest.raises(RuntimeError):
        hgb.fit(X, y, "rul_regression", {"max_iter": "5"}, 1, 0)
    np.testing.assert_array_equal(X, before)


_MMAP_PROBE = """
import ctypes, sys
import numpy as np
from training_src.threads import fix_mmap_threshold, trim_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold() is True
a = np.ones((20 << 20) // 8)  # a 20 MB array, mapped, then freed: glibc raises its threshold to 20 MB
del a
b = np.ones((10 << 20) // 8)
print(libc.mallinfo2().hblkhd >= b.nbytes, isinstance(trim_malloc(), bool))
"""


def test_preprocessing_gives_large_arrays_their_own_mappings_whatever_was_freed_before(repo):
    """glibc raises its mmap threshold to the size of each mapped block freed (up to 32 MB), so after one
    large array is freed the next ones of up to that size come from the heap, which keeps them resident in
    pieces once freed (FD002 x4 preprocessing: 130-330 MB of free heap at its peak). ``fix_mmap_threshold``
    (called by preprocessing's main) keeps every array from 4 MB up in a mapping of its own."""
    import ctypes
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or \
            not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("glibc's mallopt and mallinfo2 only")

    def mapped(mode: str) -> str:
        proc = subprocess.run([sys.executable, "-c", _MMAP_PROBE, mode], cwd=repo, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert mapped("default") == "False True"  # glibc's own behaviour: the 10 MB array sits in the heap
    assert mapped("fixed") == "True True"


def test_a_fold_of_the_choice_keeps_only_the_columns_it_reads_after_normalising(data_dir):
    """Once a fold's sensors are normalised (``Fold.norm``), its health index and proxy rows read the asset
    and time columns alone: the fold keeps those, not a copy of every raw column of its training rows for
    as long as the choice runs; what it computes is unchanged (the choice tests above)."""
    from training_src import selection
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD002")
    train = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    tr = train[train[p.id_column] <= 20].reset_index(drop=True)
    cols, _, _, _ = selection.cut_views(tr, p, 30, 30, seed=1)
    base = F.fit_spec(tr, p, seed=0, window_sizes=[15])
    fold = selection.Fold(tr, base, cols)
    assert fold.tr.columns.tolist() == [p.id_column, p.time_column]
    np.testing.assert_array_equal(fold.tr.to_numpy(), tr[[p.id_column, p.time_column]].to_numpy())
    hspec, _, _ = fold.health_index(p, 125.0)
    assert hspec.to_json() == F.with_choice(base, tr, p, [15], 125.0).to_json()


def _traced_peak(fn):
    """(result, peak bytes allocated during ``fn()`` above what was allocated before: NumPy's arrays included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_the_baseline_readings_are_one_copy_of_the_columns(data_dir):
    """``baseline_matrix`` (the raw-reading frames preprocessing writes) holds one copy of the readings at
    its peak, not three made one after the other (selection, cast, copy); the same values."""
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    rows = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    out, peak = _traced_peak(lambda: F.baseline_matrix(rows, p))
    cols = [p.time_column, *p.setting_columns, *p.sensor_columns]
    np.testing.assert_array_equal(out.to_numpy(), rows[cols].to_numpy(dtype=float))
    assert peak < 1.5 * out.to_numpy().nbytes


def test_normalised_sensors_are_computed_in_their_own_array(data_dir):
    """``features.normalised`` subtracts and divides in the array it gathered the sensors into: at its peak
    one array of the result's size (FD001, one regime), not three; the same values as ``(x - mean) / std``."""
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    rows = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    spec = F.fit_spec(rows, p)
    (z, reg), peak = _traced_peak(lambda: F.normalised(spec, rows))
    x = rows[spec.sensors].to_numpy(dtype=float)
    np.testing.assert_array_equal(z, (x - spec._mean[0]) / spec._std[0])
    assert peak < 2 * z.nbytes + reg.nbytes


def test_the_drift_baseline_reads_the_training_rows_of_the_raw_frame_by_position(fd001, monkeypatch):
    """``baseline_from_frames`` reads the raw readings of the training rows where they are in the
    ``baseline_train`` frame (by position), not from a copy of those rows (0.8 of the frame); the same
    document as from the copied rows."""
    spec, frames = fd001["spec"], fd001["frames"]
    raw, train = frames["baseline_train"], frames["train"]
    kept = raw[raw["_asset"].isin(train["_asset"]).to_numpy()].reset_index(drop=True)
    fi, ri = D.serving_rows(train["_asset"].to_numpy(), min(spec.history_needed, len(train)),
                            spec.profile_obj.min_readings, D.DRAWS, np.random.default_rng(0))
    copied = D.build_baseline(kept, train.iloc[fi][spec.feature_names], spec, raw_features=kept.iloc[fi], raw_rows=ri)
    read = []
    build = D.build_baseline
    monkeypatch.setattr(D, "build_baseline", lambda frame, *a, **kw: read.append(frame) or build(frame, *a, **kw))
    assert D.baseline_from_frames(frames, spec) == copied
    assert read[0] is raw


def test_hgb_rows_are_read_as_float64_which_scikit_learn_fits_without_a_copy(fd001, tmp_path, monkeypatch):
    """A candidate's ``ROW_DTYPE`` is the dtype train.py reads a refit's rows in: hgb float64 (scikit-learn
    bins float64 and copies rows of any other dtype for the whole fit), xgboost float32; a trial's rows are
    float32. The float64 rows are ``split_xy``'s float32 values widened, and scikit-learn's own check takes
    them as they are."""
    from sklearn.utils import check_array

    from training_src import candidates
    from training_src import train as T

    assert candidates.get("hgb").ROW_DTYPE == "float64"
    assert candidates.get("xgboost").ROW_DTYPE == "float32" and candidates.get("linear").ROW_DTYPE == "float32"
    names, out = fd001["spec"].feature_names, fd001["out"]
    files = T.channel_files(out / "train")
    X64, y64 = T.read_rows(files, names, dtype=np.float64)
    X32, y32 = T.split_xy(T.read_channel(out / "train"), names)
    assert X64.dtype == np.float64 and X64.flags.c_contiguous
    np.testing.assert_array_equal(X64, X32.astype(np.float64))
    np.testing.assert_array_equal(y64, y32)
    assert np.shares_memory(check_array(X64, dtype=[np.float64], ensure_all_finite=False), X64)
    with pytest.raises(ValueError, match="float32 or float64"):
        T.read_rows(files, names, dtype=np.int64)

    from training_src.candidates import hgb
    seen = []
    fit = hgb.fit

    def recording(X, y, *a, **k):
        seen.append(X.dtype)
        return fit(X, y, *a, **k)

    monkeypatch.setattr(hgb, "fit", recording)
    argv = ["--train", str(out / "train"), "--validation", str(out / "validation"), "--nthread", "1",
            "--algorithm", "hgb", "--max_iter", "3", "--row_stride", "3", "--output-data-dir", str(tmp_path / "o")]
    assert T.main([*argv, "--fit_on", "train", "--model-dir", str(tmp_path / "trial")]) == 0
    assert T.main([*argv, "--fit_on", "train+validation", "--calibration_folds", "2",
                   "--model-dir", str(tmp_path / "refit")]) == 0
    # the trial's rows float32 (its peak is after the fit), the refit's and its 2 folds' float64: pairs
    assert seen == [np.dtype(np.float32)] * 2 + [np.dtype(np.float64)] * (2 + 2 * 2)
    # above FINAL_FIT_ROWS the refit's rows stay float32: its final fit and folds fit strided copies of them
    seen.clear()
    monkeypatch.setattr(T, "FINAL_FIT_ROWS", 10)
    assert T.main([*argv, "--fit_on", "train+validation", "--calibration_folds", "2",
                   "--model-dir", str(tmp_path / "strided")]) == 0
    assert len(seen) == 6 and set(seen) == {np.dtype(np.float32)}


def test_the_fit_rows_are_read_once_a_trials_strided_rows_and_the_refits_channels_in_one_matrix(fd001, monkeypatch):
    """``train.read_fit_rows``: a trial's rows are the old ``X[stride_mask]`` of the channel, read as such (no
    matrix of every row is written); the refit's one matrix is the old ``vstack`` of train and validation, and
    its validation rows a view of that matrix's last rows."""
    from training_src import train as T

    names, out = fd001["spec"].feature_names, fd001["out"]
    train, val = T.read_channel(out / "train"), T.read_channel(out / "validation")
    Xt, yt = T.split_xy(train, names)
    Xv, yv = T.split_xy(val, names)
    shapes = []
    read_rows = T.read_rows

    def recording(files, cols=None, keep=None, dtype=np.float32):
        X, y = read_rows(files, cols, keep, dtype)
        shapes.append(X.shape)
        return X, y

    monkeypatch.setattr(T, "read_rows", recording)
    tm, vm, X, y, gxv, gyv = T.read_fit_rows(out / "train", out / "validation", names, "train", 3, np.float64)
    keep = T.stride_mask(train["_asset"].to_numpy(), 3)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, Xt[keep])
    np.testing.assert_array_equal(y, yt[keep])
    assert gxv.dtype == np.float32
    np.testing.assert_array_equal(gxv, Xv)
    np.testing.assert_array_equal(gyv, yv)
    assert shapes == [(int(keep.sum()), len(names)), Xv.shape]  # never every train row
    pd.testing.assert_frame_equal(tm, train[["_asset", "_time", "_label"]])
    pd.testing.assert_frame_equal(vm, val[["_asset", "_time", "_label"]])
    shapes.clear()
    tm, vm, X, y, gxv, gyv = T.read_fit_rows(out / "train", out / "validation", names, "train+validation", 3,
                                             np.float32)
    np.testing.assert_array_equal(X, np.vstack([Xt, Xv]))
    np.testing.assert_array_equal(y, np.concatenate([yt, yv]))
    assert np.shares_memory(gxv, X) and np.shares_memory(gyv, y)
    np.testing.assert_array_equal(gxv, Xv)
    np.testing.assert_array_equal(gyv, yv)
    assert shapes == [(len(Xt) + len(Xv), len(names))]


def test_the_refits_validation_score_after_the_fit_equals_the_doubled_rows_score(fd001):
    """``train.validation_predictions``: the predictions of ``with_and_without_life(Xv)`` in its order, from
    Xv itself (its life columns blanked in place and put back), for a pair and for one model."""
    from training_src import train as T

    spec, out = fd001["spec"], fd001["out"]
    X, y = T.read_rows(T.channel_files(out / "train"), spec.feature_names, dtype=np.float64)
    Xv, yv = T.read_rows(T.channel_files(out / "validation"), spec.feature_names, dtype=np.float64)
    before = Xv.copy()
    doubled, _ = F.with_and_without_life(Xv, yv, spec)
    pair, _ = T.fit_models("hgb", X, y, spec.task, {"max_iter": "5"}, 1, 0, spec=spec)
    one, _ = T.fit_model("xgboost", X.astype(np.float32), y, spec.task, {"num_round": "5"}, 1, 0)
    for algorithm, model, rows in (("hgb", pair, Xv), ("xgboost", one, Xv.astype(np.float32))):
        want = T.predict(algorithm, model, doubled.astype(rows.dtype))
        kept = rows.copy()
        got = T.validation_predictions(algorithm, model, rows, spec)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(rows, kept)
    np.testing.assert_array_equal(Xv, before)


def test_a_pairs_window_fit_puts_back_the_life_columns_it_is_given_instead_of_a_copy(fd001, monkeypatch):
    """``fit_models(life_columns=...)``: the window model fits X with its life columns blank, then X's life
    columns are what the function answers (no copy of them held through the fit), or stay blank for None;
    the models are those of the default (a copy put back)."""
    from training_src import train as T

    spec, out = fd001["spec"], fd001["out"]
    k = len(F.life_names(spec))
    X, y = T.read_rows(T.channel_files(out / "train"), spec.feature_names, dtype=np.float64)
    before = X.copy()
    want, _ = T.fit_models("hgb", X, y, spec.task, {"max_iter": "5"}, 1, 0, spec=spec)
    np.testing.assert_array_equal(X, before)
    calls = []

    def life_columns():
        calls.append(np.isnan(X[:, -k:]).all())  # still blank when it is asked
        return before[:, -k:]

    got, _ = T.fit_models("hgb", X, y, spec.task, {"max_iter": "5"}, 1, 0, spec=spec, life_columns=life_columns)
    assert calls == [True]
    np.testing.assert_array_equal(X, before)
    assert got.window.doc == want.window.doc and got.life.doc == want.life.doc
    T.fit_models("hgb", X, y, spec.task, {"max_iter": "5"}, 1, 0, spec=spec, life_columns=lambda: None)
    assert np.isnan(X[:, -k:]).all()
    np.testing.assert_array_equal(X[:, :-k], before[:, :-k])


def test_a_fit_reads_through_the_system_allocator_with_two_malloc_arenas(monkeypatch):
    """``train.keep_less_freed_memory`` (called first in ``main``): pyarrow allocates from the system
    allocator (its default mimalloc pool keeps the column buffers it freed) and glibc's arenas are capped."""
    import pyarrow as pa

    from training_src import train as T

    capped, mapped = [], []
    monkeypatch.setattr(T, "limit_malloc_arenas", lambda: capped.append(True) or True)
    monkeypatch.setattr(T, "fix_mmap_threshold", lambda threshold: mapped.append(threshold) or True)
    before = pa.default_memory_pool()
    try:
        T.keep_less_freed_memory()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)
    assert capped == [True]
    assert mapped == [T.MMAP_THRESHOLD]  # arrays of 4 MB and more in their own mappings, given back when freed


def test_every_fit_gives_the_freed_heap_back_before_it_starts(fd001, monkeypatch):
    """A fit's peak is at its start (hgb's binning beside its float64 sample of the rows, xgboost's
    QuantileDMatrix): ``train.fit_model`` trims glibc's heap first, so what an earlier fit freed (a pair's
    life model's histograms, before the window model's binning) is not held beside it; both fits of a pair
    go through it."""
    from training_src import candidates
    from training_src import train as T

    spec = fd001["spec"]
    frame = fd001["frames"]["train"]
    X, y = T.split_xy(frame.iloc[:3000], spec.feature_names)
    events = []
    monkeypatch.setattr(T, "trim_malloc", lambda: events.append("trim") or True)
    fit = candidates.get("xgboost").fit

    def recording_fit(*args, **kwargs):
        events.append("fit")
        return fit(*args, **kwargs)

    monkeypatch.setattr(candidates.get("xgboost"), "fit", recording_fit)
    T.fit_models("xgboost", X, y, spec.task, {"num_round": "3"}, 1, 0, spec=spec)
    assert events == ["trim", "fit"] * (2 if F.two_models(spec) else 1)


def test_the_evaluation_reads_through_the_allocators_a_fit_uses(monkeypatch, tmp_path):
    """``evaluate.main`` sets ``train.keep_less_freed_memory``'s allocators before it reads anything (here a
    missing model, which it reports with exit code 2)."""
    from training_src import evaluate as E
    from training_src import train as T

    calls = []
    monkeypatch.setattr(T, "keep_less_freed_memory", lambda *threshold: calls.append(threshold))
    assert E.main(["--model", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")]) == 2
    # XGBoost's buffers of a few hundred KB in mappings of their own, given back when freed
    assert calls == [(E.MMAP_THRESHOLD,)] and E.MMAP_THRESHOLD < T.MMAP_THRESHOLD


def _script_in_a_fresh_interpreter(script: str, args: list[str], env: dict[str, str], before: str = "",
                                   after: str = "", unset: tuple[str, ...] = (), timeout: int = 600):
    """``training_src/<script>`` run as SageMaker runs it: a fresh interpreter executing the script as
    ``__main__`` with ``args``, in this process's environment without the variables ``unset``, with a job's
    (``threads.JOB_ENVIRONMENT``) where it does not set them, ``env`` and the repo on PYTHONPATH.
    ``before`` is Python run first (in the wrapper, after ``import json, runpy, sys``), ``after`` Python run
    when the script has ended, either way (both at the wrapper's top level, no indent); the finished process."""
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = ("import json, runpy, sys\n" + before + "sys.argv = sys.argv[1:]\ntry:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\nfinally:\n"
            + textwrap.indent(after or "pass\n", "    "))
    from training_src.threads import job_environment

    base = job_environment({name: value for name, value in os.environ.items() if name not in unset})
    return subprocess.run([sys.executable, "-c", code, str(repo / "training_src" / script), *args],
                          env={**base, **env, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                          timeout=timeout)


def test_the_evaluations_process_imports_matplotlib_only_after_the_ablations_fits(fd001, fd001_model, tmp_path):
    """evaluate.py run as SageMaker runs it (a fresh interpreter): matplotlib, which holds about 30 MB once it
    has drawn, is not in the process while any of the ablation's fits runs (the raw-reading baseline, then
    the feature-engineering pair), so it is not held at their peak; the plots are drawn all the same."""
    import json

    seen = tmp_path / "seen.json"
    before = ("from training_src import train as T\n"
              "seen, fit_model = [], T.fit_model\n"
              "def recorded(*args, **kwargs):\n"
              "    seen.append('matplotlib' in sys.modules)\n"
              "    return fit_model(*args, **kwargs)\n"
              "T.fit_model = recorded\n")
    out = fd001["out"]
    proc = _script_in_a_fresh_interpreter(
        "evaluate.py", ["--model", str(fd001_model), "--test", str(out / "test"), "--baseline", str(out / "baseline"),
                        "--train", str(out / "train"), "--validation", str(out / "validation"),
                        "--tuning", str(tmp_path / "none.json"), "--output-dir", str(tmp_path / "evaluation"),
                        "--nthread", "2"], {}, before=before,
        after=f"open({str(seen)!r}, 'w').write(json.dumps(seen))\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fits = json.loads(seen.read_text())
    assert len(fits) == (3 if F.two_models(fd001["spec"]) else 2) and not any(fits), fits
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert report["plots"] and all((tmp_path / "evaluation" / name).is_file() for name in report["plots"])


def _hgb_refit_in_a_fresh_interpreter(fd001: dict, tmp_path) -> dict:
    """train.py refitting hgb on FD001's channels as SageMaker runs it (a fresh interpreter): what its
    process held when it ended, ``modules`` (``sys.modules``) and ``mimalloc_bytes`` (the most bytes
    pyarrow's mimalloc pool ever held, None where pyarrow has no mimalloc), and ``meta`` (model_meta.json)."""
    import json

    out = tmp_path / "process.json"
    after = ("import pyarrow as pa\n"
             "try:\n"
             "    held = pa.mimalloc_memory_pool().max_memory()\n"
             "except NotImplementedError:\n"
             "    held = None\n"
             f"open({str(out)!r}, 'w').write(json.dumps({{'modules': sorted(sys.modules), 'mimalloc_bytes': held}}))\n")
    env = {"SM_CHANNEL_TRAIN": str(fd001["out"] / "train"), "SM_CHANNEL_VALIDATION": str(fd001["out"] / "validation"),
           "SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"), "SM_NUM_CPUS": "1"}
    proc = _script_in_a_fresh_interpreter(
        "train.py", ["--algorithm", "hgb", "--max_iter", "5", "--fit_on", "train+validation"], env, after=after,
        unset=("ARROW_DEFAULT_MEMORY_POOL",), timeout=300)  # the pool a job starts with, not one this process was given
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {**json.loads(out.read_text()),
            "meta": json.loads((tmp_path / "model" / "model_meta.json").read_text())}


def test_an_hgb_refits_process_imports_neither_xgboost_nor_matplotlib(fd001, tmp_path):
    """train.py refitting hgb, run as SageMaker runs it (a fresh interpreter): what its process holds is
    its own imports; XGBoost (whose version the model's metadata records all the same) and matplotlib are
    not among them."""
    process = _hgb_refit_in_a_fresh_interpreter(fd001, tmp_path)
    modules = {m.split(".")[0] for m in process["modules"]}
    assert "sklearn" in modules and not {"xgboost", "matplotlib"} & modules
    import xgboost

    assert process["meta"]["xgboost_version"] == xgboost.__version__


def test_a_refits_parquet_reads_allocate_nothing_from_mimalloc(fd001, tmp_path):
    """train.py run as a job's script (in a job's environment, ``threads.JOB_ENVIRONMENT``) has pyarrow's C++
    code (the parquet reader's buffers) allocate from the system allocator, not libarrow's default mimalloc
    pool, which keeps the pages the reads freed resident beside the fit that follows (FD002 x4 hgb refit:
    30-38 MB at its peak). ``pa.set_memory_pool`` alone leaves that pool to libarrow's own reads; the pool is
    chosen when pyarrow is loaded."""
    process = _hgb_refit_in_a_fresh_interpreter(fd001, tmp_path)
    if process["mimalloc_bytes"] is None:
        pytest.skip("this pyarrow has no mimalloc pool")
    assert process["mimalloc_bytes"] == 0


_POOL_PROBE = """\
import runpy, sys
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, "--help"]
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
except SystemExit:
    pass
import pyarrow as pa
print(pa.default_memory_pool().backend_name)
"""


def _started_as(start: str, probe: str, tmp_path) -> str:
    """Run ``probe`` (a Python file: ``_POOL_PROBE``) the way ``start`` starts a job's script, in this process's
    environment; its last line of output. ``start``: ``training`` (sagemaker-training's ``python -m train``, the
    entry module at the top of ``sourcedir.tar.gz``: the probe runs that module), ``processing``
    (``processing.environment``), ``runner`` (the local runner's refit, evaluation and preprocessing:
    ``runner._run_script``), ``server`` (a local tuning trial: a fork of the run's script server, started as
    the runner starts it, with the trial's environment) or ``trial`` (a tuning trial where no server runs:
    ``tuning.trial_environment``)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from predmaint import runner, tuning
    from training_src import processing
    from training_src.predmaint_build_backend import ENTRY_MODULES

    repo = Path(__file__).resolve().parents[2]
    script = str(repo / "training_src" / "train.py")
    if start == "runner":
        return runner._run_script([str(probe), "path", script], None, "probe", cwd=tmp_path).strip().splitlines()[-1]
    if start == "server":
        server = runner._start_server(tmp_path)
        if server is None:
            pytest.skip("no script server on this platform")
        try:
            forked = server.spawn(probe, ["path", script], tuning.trial_environment(tmp_path, tmp_path / "trial", 1))
            out, err = forked.communicate()
            assert forked.wait() == 0, err[-2000:]
        finally:
            server.close()
        return out.strip().splitlines()[-1]
    args = ["path", script]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    if start == "training":
        (tmp_path / "train.py").write_text(ENTRY_MODULES["train.py"])  # what stacks/assets.py ships at the top
        env["PYTHONPATH"] = os.pathsep.join([str(repo), str(tmp_path)])
        args = ["module", "train"]
    elif start == "processing":
        env = processing.environment(repo)
        args = ["module", "training_src.evaluate"]
    else:
        env = tuning.trial_environment(tmp_path, tmp_path / "trial", 1)
    done = subprocess.run([sys.executable, str(probe), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("start", ["training", "processing", "runner", "server", "trial"])
def test_every_way_a_job_starts_has_libarrow_load_with_the_system_allocator(start, tmp_path, monkeypatch):
    """However a job's script is started (SageMaker training's entry module, a processing job, the local
    runner's scripts, its script server's trials or its trials without a server), libarrow's own default pool,
    which the parquet reader's buffers come from and which is chosen once, when pyarrow loads, is the system
    allocator: the job's process started with ``threads.JOB_ENVIRONMENT``. Checked by running train.py (or
    evaluate.py) with ``--help``, which exits before ``main`` sets the pool of pyarrow's Python layer, so what
    is printed is the pool libarrow picked at load."""
    import subprocess
    import sys

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)  # the pool the job gets, not this process's
    default = subprocess.run([sys.executable, "-c", "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"],
                             capture_output=True, text=True, check=True, timeout=300).stdout.strip()
    if default == "system":
        pytest.skip("this pyarrow's default pool is the system allocator already")
    probe = tmp_path / "probe.py"
    probe.write_text(_POOL_PROBE)
    assert _started_as(start, str(probe), tmp_path) == "system"
