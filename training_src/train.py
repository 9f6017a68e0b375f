"""SageMaker training entry point (script mode in the SageMaker XGBoost container).

Contract (docs/contract.md, "Scripts in the SageMaker containers"): channels from ``SM_CHANNEL_TRAIN`` (features + ``feature_spec.json``) and
``SM_CHANNEL_VALIDATION``; the model goes to ``SM_MODEL_DIR`` (SageMaker tars it into
``model.tar.gz``); hyperparameters arrive as ``--name value`` (tuned ones under the built-in XGBoost
algorithm's tunable names, mapped back by ``candidates.base.from_wire``). The objective is printed in
XGBoost's evaluation-log format, ``[25]<TAB>validation-rmse:12.340000`` (regression) or
``validation-aucpr`` (classification), every 25 rounds while boosting (for early stopping / pruning)
and once at the end, ``final [<rounds>]<TAB>validation-rmse:...`` (the value tuning uses; a refit, whose
validation rows are fitted rows, scores them after its fit and prints only this line), as the
built-in algorithm's documented metrics ``validation:rmse`` / ``validation:aucpr`` are read.

Candidate algorithms (``--algorithm``): the modules of ``candidates/`` (``candidates.CANDIDATES``);
each fits, predicts and saves its own model. ``--fit_on train+validation`` refits on both channels
(the final model after tuning).

The model directory holds the candidate's model file (``xgboost-model``, XGBoost's own format;
``linear-model.json``; ...; with two models, ``candidates/pair.py``, the window model's, and ``life/`` the
life model's), ``feature_spec.json``, ``model_meta.json`` and ``code/`` (``inference.py``, a
two-line entry module, beside the ``training_src`` package with what serving needs: the hooks module, the
``features`` and ``candidates`` packages and the ``predmaint_serving`` package with its compiled libraries),
so the artifact serves in the SageMaker XGBoost container with ``SAGEMAKER_PROGRAM=inference.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_src import candidates
from training_src import checkpoints as C
from training_src import distributed as D
from training_src import features as F
from training_src.candidates import pair
from training_src.candidates.base import TrainError, from_wire, metric_name, objective_line
from training_src.candidates.base import number as _num
from training_src.predmaint_build_backend import ENTRY_MODULES, PYPROJECT_TOML
from training_src.predmaint_serving import intervals as IV
from training_src.threads import arrow_system_pool, fix_mmap_threshold, limit_malloc_arenas, trim_malloc

HERE = Path(__file__).resolve().parent
#: the modules of training_src the model artifact's code/training_src holds: the hooks module, the profile
#: parser the spec needs, the code directory's build backend
CODE_FILES = ("__init__.py", "inference.py", "profiles.py", "predmaint_build_backend.py")
SERVING_PACKAGE = "predmaint_serving"
#: the packages it holds (the feature code, the candidates' load/predict/explain, the serving code)
CODE_PACKAGES = ("features", "candidates", SERVING_PACKAGE)
SERVING_SUFFIXES = (".py", ".c", ".h")
META_COLUMNS = ("_asset", "_time", "_label")
__all__ = ["TrainError", "channel_files", "check_rows", "fit_model", "fit_models", "main", "predict", "read_channel",
           "read_column", "read_fit_rows", "read_rows", "split_xy", "validation_predictions",
           "write_model"]


def channel_files(path: str | os.PathLike) -> list[Path]:
    """The ``*.parquet`` / ``*.csv`` files of a channel directory (shards in name order), or the one file."""
    p = Path(path)
    files = sorted([*p.glob("*.parquet"), *p.glob("*.csv")]) if p.is_dir() else [p]
    if not files or not all(f.exists() for f in files):
        raise TrainError(f"channel {p}: no .parquet or .csv files")
    return files


def read_channel(path: str | os.PathLike) -> pd.DataFrame:
    """Concatenate every ``*.parquet`` / ``*.csv`` file of a channel directory (shards in name order)."""
    p = Path(path)
    frames = [pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in channel_files(p)]
    df = pd.concat(frames, ignore_index=True)
    if "_label" not in df.columns:
        raise TrainError(f"channel {p}: no _label column")
    return df


class _Columns:
    """One channel file read a column at a time: a parquet file column chunk by column chunk (nothing
    else decoded), a csv file as a frame."""

    def __init__(self, path: Path):
        self.path = path
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            self._file: Any = pq.ParquetFile(path)
            self.names: list[str] = self._file.schema_arrow.names
            self.rows: int = self._file.metadata.num_rows
        else:
            self._file = pd.read_csv(path)
            self.names, self.rows = list(self._file.columns), len(self._file)

    def column(self, name: str) -> np.ndarray:
        """The column's values (parquet nulls as NaN, as ``pd.read_parquet`` reads them)."""
        if isinstance(self._file, pd.DataFrame):
            return self._file[name].to_numpy()
        return self._file.read(columns=[name], use_pandas_metadata=False).column(0).to_numpy()


def read_column(files: list[Path], name: str) -> np.ndarray | None:
    """Column ``name`` of the files' rows (in file order), or None when a file lacks it."""
    readers = [_Columns(f) for f in files]
    if not all(name in r.names for r in readers):
        return None
    return np.concatenate([r.column(name) for r in readers])


def _checked(readers: list[_Columns], names: list[str] | None) -> list[str]:
    if names is None:
        names = [c for c in readers[0].names if not c.startswith("_")]
    for r in readers:
        if "_label" not in r.names:
            raise TrainError(f"channel {r.path}: no _label column")
        missing = [n for n in names if n not in r.names]
        if missing:
            raise TrainError(f"channel lacks feature columns {missing[:5]} (spec/channel mismatch)")
    return names


def check_rows(files: list[Path], names: list[str] | None = None) -> None:
    """Raise ``TrainError`` where ``read_rows(files, names)`` would (a file without ``_label`` or without a
    feature column), reading only the files' schemas (and csv files)."""
    _checked([_Columns(f) for f in files], names)


def read_rows(files: list[Path], names: list[str] | None = None, keep: np.ndarray | None = None,
              dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``split_xy`` of the files' rows (``read_channel`` of them) without the frame: the feature matrix
    (C order, as XGBoost and scikit-learn read it without a copy; float32 unless ``dtype`` says float64)
    and the float64 labels.

    In: channel files (``channel_files``); ``names`` the feature columns in matrix order (None: every
    column whose name does not start with ``_``, in the first file's order); ``keep`` (bool, one per row
    of the files in order) the rows to read, or None for all: only those rows are written, into a matrix
    of their size (no matrix of every row, no copy of it); ``dtype`` float32, or float64 for a candidate
    that fits float64 rows (``ROW_DTYPE``): the float32 values widened exactly, as a float64 copy of the
    float32 matrix holds them. Each column is read and written into the matrix on its own, so beside the
    matrix only one file's column is held: no frame (of float64 features, or of the columns a split
    would copy). Values are those of ``split_xy`` bit for bit."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"rows are read as float32 or float64, not {dtype}")
    readers = [_Columns(f) for f in files]
    names = _checked(readers, names)
    total = sum(r.rows for r in readers)
    if keep is not None and len(keep) != total:
        raise ValueError(f"keep has {len(keep)} entries for {total} rows")
    X = np.empty((total if keep is None else int(np.count_nonzero(keep)), len(names)), dtype=dtype)
    y = np.empty(len(X), dtype=np.float64)
    start = at = 0  # the file's first row among all rows; among the rows read
    for r in readers:
        mask = None if keep is None else keep[start:start + r.rows]
        n = r.rows if mask is None else int(np.count_nonzero(mask))
        for j, name in enumerate(names):
            # rounded to float32 (split_xy's to_numpy rounds alike; a float32 parquet column already is),
            # then written: widened exactly into a float64 matrix
            values = r.column(name)
            if values.dtype != np.float32:
                values = values.astype(np.float32)
            X[at:at + n, j] = values if mask is None else values[mask]
        values = r.column("_label")
        y[at:at + n] = values if mask is None else values[mask]
        start, at = start + r.rows, at + n
    return X, y


def _meta_frame(files: list[Path]) -> pd.DataFrame:
    """The files' meta columns (``META_COLUMNS`` the files have) as a frame, read column by column."""
    meta = {c: read_column(files, c) for c in META_COLUMNS}
    return pd.DataFrame({c: v for c, v in meta.items() if v is not None})


def read_fit_rows(train: str | os.PathLike, validation: str | os.PathLike | None, names: list[str], fit_on: str,
                  stride: int, dtype: Any = np.float32) -> tuple[pd.DataFrame, pd.DataFrame | None, np.ndarray,
                                                                 np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A host's fit rows (on several hosts, its part's), each read once, straight into the matrix the fit
    reads (``read_rows``).

    In: the train channel; the validation channel, or None; the feature columns; ``fit_on`` ("train" or
    "train+validation"); ``stride``, a tuning trial's ``row_stride``; ``dtype``, the candidate's
    ``ROW_DTYPE``, the refit's. Out: the channels' meta columns as frames (None for a
    missing validation channel), the fit's rows X, y, and the validation rows Xv, yv (None without a
    validation channel). With ``train+validation`` X holds train's rows then validation's, and Xv, yv are
    views of its last rows: no stacked copy, no second matrix of the validation rows; above
    ``FINAL_FIT_ROWS`` (the final fit reads a strided copy) float32 whatever ``dtype``. With ``train``, a
    stride above 1 and an ``_asset`` column, X holds only every ``stride``-th reading of each asset
    (``stride_mask``), read as such: no matrix of every row that the kept rows are then copied out of;
    with ``train`` every matrix is float32 whatever ``dtype``. The values are those of ``split_xy`` of the
    frames (stacked; ``[stride_mask]``), in that dtype."""
    train_files = channel_files(train)
    val_files = None if validation is None else channel_files(validation)
    train_meta = _meta_frame(train_files)
    val_meta = None if val_files is None else _meta_frame(val_files)
    if fit_on == "train+validation" and val_files is not None:
        if final_fit_stride(len(train_meta) + len(val_meta)) > 1:
            # the final fit reads a strided copy of these rows (and the calibration a fold's copy): float64
            # rows and a float64 copy would hold 8 + 4 bytes per value, float32 rows, a float32 copy and the
            # fit's float64 copy of that 4 + 2 + 4
            dtype = np.float32
        X, y = read_rows(train_files + val_files, names, dtype=dtype)
        return train_meta, val_meta, X, y, X[len(train_meta):], y[len(train_meta):]
    keep = None
    if fit_on == "train" and stride > 1 and "_asset" in train_meta.columns:
        keep = stride_mask(train_meta["_asset"].to_numpy(), stride)
    # a trial's rows float32 whatever the candidate fits from: its peak is the prediction of the doubled
    # validation rows after the fit, where float64 rows would still be held (FD002 x4 hgb trial:
    # 474,684-476,648 KB with float64 rows, 454,088-459,132 KB with float32 ones); its validation rows
    # are only predicted
    X, y = read_rows(train_files, names, keep)
    Xv, yv = (None, None) if val_files is None else read_rows(val_files, names)
    return train_meta, val_meta, X, y, Xv, yv


def split_xy(df: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix in spec order and labels; raise if the channel's columns do not match the spec."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise TrainError(f"channel lacks feature columns {missing[:5]} (spec/channel mismatch)")
    return df[names].to_numpy(dtype=np.float32), df["_label"].to_numpy(dtype=np.float64)


def parse_hyperparameters(extra: list[str]) -> dict[str, str]:
    """``["--eta", "0.1", "--max_depth", "5"]`` -> ``{"eta": "0.1", "max_depth": "5"}``."""
    if len(extra) % 2:
        raise TrainError(f"hyperparameters must come as --name value pairs, got {extra}")
    out = {}
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        if not k.startswith("--"):
            raise TrainError(f"expected --name, got {k!r}")
        out[k[2:].replace("-", "_")] = v
    return out


def score(task: str, y: np.ndarray, p: np.ndarray) -> float:
    """The tuning objective: RMSE (regression) or average precision = PR-AUC (classification)."""
    if task == "rul_regression":
        return float(np.sqrt(np.mean((p - y) ** 2)))
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, p))


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Probability threshold maximising F1 on held-out predictions."""
    from sklearn.metrics import precision_recall_curve
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))]) if len(thr) else 0.5


def fit_model(algorithm: str, X: np.ndarray, y: np.ndarray, task: str, hp: dict[str, str], nthread: int,
              seed: int, Xv: np.ndarray | None = None, yv: np.ndarray | None = None,
              names: list[str] | None = None, report_every: int = 25,
              checkpoints: C.Checkpoints | None = None) -> tuple[Any, np.ndarray | None]:
    """Fit one candidate (``candidates.get(algorithm).fit``); it prints the objective on validation data
    while it learns, where it can. Returns (model, validation predictions or None)."""
    # a fit's peak is at its start (hgb: binning, beside the rows its float64 sample of up to 200,000 of them;
    # xgboost: its QuantileDMatrix): what earlier work freed into glibc's heap is given back first, rather
    # than held beside it (FD002 x4 hgb refit: a first model's histograms, 60 MB, at the second's binning)
    trim_malloc()
    return candidates.get(algorithm).fit(X, y, task, hp, nthread, seed, Xv, yv, names, report_every, checkpoints)


def fit_models(algorithm: str, X: np.ndarray, y: np.ndarray, task: str, hp: dict[str, str], nthread: int,
               seed: int, Xv: np.ndarray | None = None, yv: np.ndarray | None = None,
               names: list[str] | None = None, report_every: int = 25,
               checkpoints: C.Checkpoints | None = None, *, spec: F.FeatureSpec,
               life_columns: Any = None) -> tuple[Any, np.ndarray | None]:
    """The model of a spec (``fit_model``'s arguments; X, y the training rows once, as read).

    ``features.two_models(spec)``: a ``pair.Pair`` of two fits of the candidate with the same hyperparameters,
    the life model on X as it is, then the window model on X with its life columns blanked in place (no
    doubled matrix in memory; X's life columns are put back before returning). The validation rows, when
    given, are those of ``with_and_without_life`` (each row with, then without, its summary): the window
    fit reports the objective on the rows without (pruning reads those lines), and the pair predicts all.
    A spec with life features and ``life_models: one``: one model on X with and without its life features.
    Otherwise ``fit_model``. ``life_columns``: None, X's life columns are copied before they are blanked
    and put back from that copy; or a function called after the window fit, whose answer (X's life
    columns, e.g. read again from the channel files, or None for rows no longer needed: they stay blank)
    is put back instead, so no copy is held through the window fit. Returns (model, validation
    predictions or None)."""
    if not F.two_models(spec):
        X, y = F.with_and_without_life(X, y, spec)
        return fit_model(algorithm, X, y, task, hp, nthread, seed, Xv, yv, names, report_every, checkpoints)
    k = len(F.life_names(spec))
    life, _ = fit_model(algorithm, X, y, task, hp, nthread, seed, None, None, names, report_every, checkpoints)
    # k of f columns: what the in-place blanking must give back (FD002: 44 of 117)
    kept = X[:, -k:].copy() if life_columns is None else None
    X[:, -k:] = np.nan
    try:
        blank = None if Xv is None else ~F.life_rows(Xv, spec)
        window, _ = fit_model(algorithm, X, y, task, hp, nthread, seed, None if Xv is None else Xv[blank],
                              None if yv is None else yv[blank], names, report_every, checkpoints)
    finally:
        if kept is None:
            kept = life_columns()
        if kept is not None:
            X[:, -k:] = kept
    model = pair.Pair(window, life, spec)
    return model, None if Xv is None else predict(algorithm, model, Xv)


def validation_predictions(algorithm: str, model: Any, Xv: np.ndarray, spec: F.FeatureSpec) -> np.ndarray:
    """``predict(algorithm, model, with_and_without_life(Xv))`` without that doubled matrix: the rows as
    they are, then the same rows with their life columns blanked in place (and put back before returning:
    ``Xv`` may be a view of rows still needed). Each row's prediction depends on that row alone, so the
    values, and their order, are those of the doubled matrix's."""
    first = predict(algorithm, model, Xv)
    k = len(F.life_names(spec))
    if not k:
        return first
    kept = Xv[:, -k:].copy()
    Xv[:, -k:] = np.nan
    try:
        second = predict(algorithm, model, Xv)
    finally:
        Xv[:, -k:] = kept
    return np.concatenate([first, second])


def predict(algorithm: str, model: Any, X: np.ndarray) -> np.ndarray:
    """Candidate ``algorithm``'s predictions (probabilities or uncapped RUL) of a fitted ``model`` (one
    model, or a ``pair.Pair`` of them: each row from its model)."""
    module = candidates.get(algorithm)
    if isinstance(model, pair.Pair):
        return model.route(X, module.predict)
    return module.predict(model, X)


def oof_predictions(algorithm: str, X: np.ndarray, y: np.ndarray, task: str, hp: dict[str, str],
                    nthread: int, seed: int, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions of ``folds`` stratified folds (classification) or plain folds."""
    from sklearn.model_selection import KFold, StratifiedKFold
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if task == "failure_classification" \
        else KFold(folds, shuffle=True, random_state=seed)
    oof = np.zeros(len(y))
    for tr, te in splitter.split(X, y):
        m, _ = fit_model(algorithm, X[tr], y[tr], task, hp, nthread, seed)
        oof[te] = predict(algorithm, m, X[te])
    return oof


def oof_threshold(algorithm: str, X: np.ndarray, y: np.ndarray, task: str, hp: dict[str, str],
                  nthread: int, seed: int, folds: int = 5) -> float:
    """Decision threshold from out-of-fold predictions (used when no held-out validation remains)."""
    return best_f1_threshold(y, oof_predictions(algorithm, X, y, task, hp, nthread, seed, folds))


def stride_mask(assets: np.ndarray, stride: int) -> np.ndarray:
    """Rows kept (bool, (n,)) when a fit reads every ``stride``-th reading of each asset (the
    ``stride``-th, ``2 * stride``-th, ... row of each asset in row order; all rows when ``stride`` is 1).
    ``assets`` (n,) is each row's asset. Adjacent readings are near-duplicates, so such a fit ranks
    hyperparameters and estimates held-out errors as well as one on every reading, at a fraction of the cost."""
    if stride <= 1:
        return np.ones(len(assets), dtype=bool)
    pos = pd.Series(assets).groupby(assets, sort=False).cumcount().to_numpy()
    return pos % stride == stride - 1


#: above this many rows (the final fit's train + validation readings, before they are doubled with and
#: without life features) the final model, and its interval calibration's fold models, read every
#: ``FINAL_FIT_STRIDE``-th reading of each asset. Grouped CV on the real FD001/FD002 training engines
#: (bench/fit_stride_cv.py, bench/results-fit-stride-cv.md; 3 seeds) found every 2nd reading within noise
#: of every reading on both (every 4th lost on FD001), on fits of 13,000-36,000 rows; above this size a
#: fit still reads 250,000 or more, and adjacent readings are near copies. Below it nothing changes.
FINAL_FIT_ROWS = 500_000
FINAL_FIT_STRIDE = 2


def final_fit_stride(rows: int) -> int:
    """Every how many readings of each asset the final fit on ``rows`` readings reads (``stride_mask``):
    1 up to ``FINAL_FIT_ROWS``, ``FINAL_FIT_STRIDE`` above."""
    return FINAL_FIT_STRIDE if rows > FINAL_FIT_ROWS else 1


#: above this many assets the interval calibration fits only the first of its folds (one extra model each,
#: on 4/5 of the rows) that hold at least this many held-out assets, and calibrates on those assets alone.
#: Calibrations on n assets drawn from FD001's and FD002's held-out training predictions, scored on other
#: training assets (bench/calibration_size.py, bench/results-calibration-size.md): the central 90 % of their
#: 80 % intervals' coverage lies within +-1.9-2.2 points at 200 assets, +-1.3-1.5 at 400 and +-0.9-1.1 at 800
#: (the spread shrinks as 1/sqrt(n)); 800 keeps a margin under +-1.5. At or below this size (FD001: 100 assets, FD002:
#: 260) every fold is fitted, as before; a 4,160-asset fleet fits one of 5 folds (832 held-out assets).
CALIBRATION_ASSETS = 800


def calibration_folds_fitted(assets: int, folds: int) -> int:
    """How many of the interval calibration's ``folds`` folds (the first ones) are fitted and predicted
    when ``assets`` assets are dealt into them (asset i of a shuffled order into fold ``i % folds``):
    all up to ``CALIBRATION_ASSETS`` assets; above, the fewest first folds that hold at least
    ``CALIBRATION_ASSETS`` of them."""
    if assets <= CALIBRATION_ASSETS or folds <= 1:
        return folds
    held = 0
    for k in range(folds):
        held += assets // folds + (1 if k < assets % folds else 0)
        if held >= CALIBRATION_ASSETS:
            return k + 1
    return folds


def true_rul(frame: pd.DataFrame) -> np.ndarray:
    """Uncapped RUL of each row of a run-to-failure channel (``_asset``, ``_time``): the asset's last
    time minus the row's (``features.rul_labels`` without the cap, on the channel's meta columns)."""
    last = frame.groupby("_asset", sort=False)["_time"].transform("max").to_numpy(dtype=float)
    return last - frame["_time"].to_numpy(dtype=float)


@dataclass(frozen=True)
class HeldOut:
    """The interval calibration's held-out predictions (``held_out_predictions``), one entry per row of
    the frames: ``pred`` the answers without life features, ``pred_life`` those with them (None for a
    spec without), both clipped as served; ``true`` the uncapped RUL; ``asset``; ``eligible`` the rows
    that calibrate (a possible test cut of an asset whose fold was fitted); ``folds`` the folds the
    assets were dealt into and ``fitted`` how many of them were fitted and predicted
    (``calibration_folds_fitted``)."""

    pred: np.ndarray
    pred_life: np.ndarray | None
    true: np.ndarray
    asset: np.ndarray
    eligible: np.ndarray
    folds: int
    fitted: int


def held_out_predictions(algorithm: str, frames: list[pd.DataFrame], names: list[str], spec: F.FeatureSpec,
                         hp: dict[str, str], nthread: int, seed: int,
                         xy: tuple[np.ndarray, np.ndarray] | None = None, every_fold: bool = False) -> HeldOut | None:
    """The held-out predictions the interval calibration fits (``calibrate_intervals``' arguments), or
    None when the spec or hyperparameters ask for no calibration.

    The assets are dealt into ``calibration_folds`` folds (hyperparameter, default 5; 0 turns calibration
    off); each fitted fold is predicted by the candidate fitted with the same hyperparameters on the other
    folds, so every prediction is held out (cross-conformal, at the cost of one extra fit per fitted fold).
    The first ``calibration_folds_fitted`` folds are fitted (every fold with ``every_fold``, or up to
    ``CALIBRATION_ASSETS`` assets). Those fits read every ``row_stride``-th reading of each asset, as
    tuning trials do (default 1: all); every reading of a fitted fold is predicted. Only readings that
    can be a test cut are eligible (at least ``min_readings`` of history, as ``preprocess.truncation_cuts``
    cuts).
    """
    folds = _num(hp, "calibration_folds", int, 0, 20, "5")
    stride = _num(hp, "row_stride", int, 1, 100, "1")
    if spec.task != "rul_regression" or folds == 0 or not spec.time_column:
        return None
    if not all({"_asset", "_time"} <= set(f.columns) for f in frames):
        return None
    df = pd.concat([f[["_asset", "_time"]] for f in frames], ignore_index=True)
    assets = df["_asset"].to_numpy()
    uniq = pd.unique(assets)
    if len(uniq) < max(folds, 2):
        raise TrainError(f"interval calibration needs at least {max(folds, 2)} assets, the channels have "
                         f"{len(uniq)} (set calibration_folds=0 to train without intervals)")
    if xy is None:
        parts = [split_xy(f, names) for f in frames]
        xy = (np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])) if len(parts) > 1 \
            else parts[0]
        del parts
    X, y = xy
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(uniq).tolist(), np.arange(len(uniq)) % folds, strict=True))
    fold = np.asarray([fold_of[a] for a in assets.tolist()])
    fitted = folds if every_fold else calibration_folds_fitted(len(uniq), folds)
    fit_rows = stride_mask(assets, stride)
    # a model with life-summary features answers with and without them (``fit_models``: the life model
    # and the window model of a pair, or one model fitted on both): ``pred`` holds the answers
    # without, ``pred_life`` those with them
    k_life = len(F.life_names(spec))
    pred = np.zeros(len(y))
    pred_life = np.zeros(len(y)) if k_life else None
    for k in range(fitted):
        Xk = X[(fold != k) & fit_rows]  # a copy: one fold's rows at a time
        m, _ = fit_models(algorithm, Xk, y[(fold != k) & fit_rows], spec.task, hp, nthread, seed, spec=spec,
                          life_columns=lambda: None)  # Xk is dropped after the fit: its life columns stay blank
        del Xk
        held = fold == k
        Xh = X[held]
        if pred_life is not None:
            pred_life[held] = predict(algorithm, m, Xh)
            Xh[:, -k_life:] = np.nan
        pred[held] = predict(algorithm, m, Xh)
    position = df.groupby("_asset", sort=False)["_time"].rank(method="first").to_numpy()
    count = df.groupby("_asset", sort=False)["_time"].transform("size").to_numpy()
    eligible = position >= np.minimum(spec.profile_obj.min_readings, count)
    if fitted < folds:
        eligible &= fold < fitted
    return HeldOut(F.clip_rul(pred, spec.label_cap),  # as served
                   None if pred_life is None else F.clip_rul(pred_life, spec.label_cap),
                   true_rul(df), assets, eligible, folds, fitted)


def calibrate_intervals(algorithm: str, frames: list[pd.DataFrame], names: list[str], spec: F.FeatureSpec,
                        hp: dict[str, str], nthread: int, seed: int,
                        xy: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any] | None:
    """The RUL interval calibration stored in ``model_meta.json`` (``intervals.fit``), or None.

    In: the frames of the rows the final model is fitted on (train, and validation for the refit),
    with ``_asset``/``_time``; ``xy``, when given, their feature matrix and labels in the same row order
    (``split_xy`` of the frames, which then need no feature columns). The calibration rows are
    ``held_out_predictions``' eligible rows. The document records ``folds`` (the folds the assets were
    dealt into) and, when fewer were fitted (``calibration_folds_fitted``), ``folds_fitted``.
    """
    level = _num(hp, "interval_level", float, 0.05, 0.99, str(IV.DEFAULT_LEVEL))
    h = held_out_predictions(algorithm, frames, names, spec, hp, nthread, seed, xy)
    if h is None:
        return None

    def calibrate(p: np.ndarray) -> dict[str, Any]:
        try:
            doc = IV.fit(p[h.eligible], h.true[h.eligible], h.asset[h.eligible], level=level, seed=seed)
        except IV.CalibrationError as exc:
            raise TrainError(f"interval calibration: {exc}") from None
        doc["folds"] = h.folds
        if h.fitted < h.folds:  # absent: every fold fitted
            doc["folds_fitted"] = h.fitted
        return doc

    # one calibration per kind of caller (Mondrian): answers from a life summary are more accurate,
    # so pooling them would widen its intervals and narrow those of callers without one
    doc = calibrate(h.pred)
    if h.pred_life is not None:
        doc["life"] = calibrate(h.pred_life)
    return doc


def write_model(model_dir: Path, algorithm: str, model: Any, spec_text: str, meta: dict[str, Any]) -> None:
    """The candidate's model file (and, for a ``pair.Pair``, ``life/`` with the life model's) + feature spec + metadata + inference code into ``model_dir``."""
    model_dir.mkdir(parents=True, exist_ok=True)
    pair.save(candidates.get(algorithm), model, model_dir)  # a Pair's life model into LIFE_MODEL_DIR
    (model_dir / "feature_spec.json").write_text(spec_text)
    (model_dir / "model_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    code = model_dir / "code"
    shipped = code / "training_src"  # the package itself: it imports as training_src.<module> there too
    shipped.mkdir(parents=True, exist_ok=True)
    for name in CODE_FILES:
        shutil.copy2(HERE / name, shipped / name)
    for name in CODE_PACKAGES:
        package = shipped / name
        package.mkdir(exist_ok=True)
        for src in sorted((HERE / name).iterdir()):
            if src.is_file() and src.suffix in SERVING_SUFFIXES:
                shutil.copy2(src, package / src.name)
    (code / "inference.py").write_text(ENTRY_MODULES["inference.py"])
    # the container pip-installs code/ before serving: an in-tree backend, so it installs offline with any pip
    (code / "pyproject.toml").write_text(PYPROJECT_TOML)
    package = shipped / SERVING_PACKAGE
    from training_src.predmaint_serving import native  # the compiled tree walker and request reader
    native.build_native_libraries(package)


#: a fit's allocations from this size up get mappings of their own (``keep_less_freed_memory``). Not lower for
#: train.py: an hgb fit's histograms (about 600 KB each, FD002) would each be mapped and unmapped, which cost
#: the FD002 x4 refit 9 system CPU s more at 256 KB and no memory
MMAP_THRESHOLD = 4 << 20


def xgboost_version() -> str:
    """The installed XGBoost's ``__version__`` (recorded with every model) without importing it, which a
    refit of another candidate never needs (its instance would hold the library for one string): the
    package's ``VERSION`` file, which its ``__version__`` is read from (whatever distribution installed it:
    ``xgboost`` or ``xgboost-cpu``), else the imported module's."""
    import importlib.util

    spec = importlib.util.find_spec("xgboost")  # a top-level package: found, not imported
    version = Path(spec.origin).with_name("VERSION") if spec is not None and spec.origin else None
    if version is not None and version.is_file():
        return version.read_text(encoding="ascii").strip()
    import xgboost

    return xgboost.__version__


def keep_less_freed_memory(mmap_threshold: int = MMAP_THRESHOLD) -> None:
    """Allocators for a fit that return freed memory: pyarrow's reads through the system allocator, not its
    default mimalloc pool, which keeps the pages of the column buffers it freed (FD002 x4: reading the
    validation channel's rows kept 42 MB of them, 8 MB with the system allocator; this sets the pool of
    pyarrow's Python layer only: libarrow's own, which the parquet reader's buffers come from, is chosen
    when pyarrow is loaded, from the environment the job was started with: ``threads.JOB_ENVIRONMENT``),
    glibc's malloc arenas capped at two (``threads.limit_malloc_arenas``; scikit-learn bins columns in threads), and allocations of
    ``mmap_threshold`` bytes and more (4 MB: ``MMAP_THRESHOLD``) in mappings of their own, unmapped when
    freed (``threads.fix_mmap_threshold``: otherwise, once a large array is freed, arrays of up to 32 MB come
    from the heap, which keeps what they leave, e.g. an hgb fit's 25 MB mask of its empty columns). Memory
    only: nothing read or fitted changes."""
    arrow_system_pool()
    limit_malloc_arenas()
    fix_mmap_threshold(mmap_threshold)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, str]]:
    ap = argparse.ArgumentParser(description="Train one candidate model (SageMaker script mode).")
    ap.add_argument("--algorithm", default="xgboost")
    ap.add_argument("--profile", default="")
    ap.add_argument("--subset", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nthread", type=int, default=int(os.environ.get("SM_NUM_CPUS", os.cpu_count() or 1)))
    ap.add_argument("--fit_on", default="train", choices=["train", "train+validation"])
    ap.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    ap.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION",
                                                             "/opt/ml/input/data/validation"))
    ap.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    ap.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    # SageMaker syncs this directory to CheckpointConfig.S3Uri (spot training); checkpoints are written only
    # when it is given (here or in PREDMAINT_CHECKPOINT_DIR) or exists, as it does when a job declares one
    ap.add_argument("--checkpoint-dir", default=os.environ.get("PREDMAINT_CHECKPOINT_DIR"))
    ap.add_argument("--checkpoint-every", type=int, default=C.DEFAULT_EVERY, help="rounds between checkpoints")
    args, extra = ap.parse_known_args(argv)
    return args, parse_hyperparameters(extra)


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    dist = None  # a D.Session only when SageMaker runs this job on several hosts (see distributed.py)
    try:
        args, hp = parse_args(argv)
        keep_less_freed_memory()
        # tuned values arrive under the built-in algorithm's tunable names (candidates/base.py TUNABLE_XGBOOST_NAMES)
        hp = from_wire(candidates.get(args.algorithm).PARAMS, hp)  # an unknown algorithm fails before any work
        dist = D.connect()
        spec_path = Path(args.train) / "feature_spec.json"
        if dist is not None:
            spec_path = dist.share_spec(spec_path)
        if not spec_path.exists():
            raise TrainError(f"train channel {args.train} has no feature_spec.json")
        spec_text = spec_path.read_text()
        spec = F.FeatureSpec.from_json(spec_text)
        task, names = spec.task, spec.feature_names
        # the channels' frames keep only their meta columns once the features are read into float32
        # matrices (a float64 frame is 8 bytes per feature and row); the interval calibration reads
        # the meta columns and these same matrices (``fit_xy``: on several hosts, the first host's part
        # and the validation rows, which its frames hold)
        val_path = Path(args.validation)
        stride = _num(hp, "row_stride", int, 1, 100, "1")
        # the hosts of a refit after the first fit their part alone, every final_fit_stride-th reading of it
        # above FINAL_FIT_ROWS (final_keep below): read as such, as a trial's strided rows are
        refit_other = dist is not None and args.fit_on == "train+validation" and not dist.is_first
        every_other = final_fit_stride(sum(_Columns(f).rows for f in channel_files(args.train))) if refit_other else 1
        if dist is None:
            # one host: the refit's train and validation rows into one matrix, in the dtype the candidate
            # fits from (ROW_DTYPE: no copy of them in the fit); a trial's strided rows only
            train, validation, X, y, Xv, yv = read_fit_rows(
                args.train, val_path if val_path.exists() else None, names, args.fit_on, stride,
                candidates.get(args.algorithm).ROW_DTYPE)
        else:
            # several hosts read as one host does, float32 (the collective's QuantileDMatrix reads it as it
            # is): a trial its part's strided rows only and the validation rows; the refit's first host its
            # part then the validation rows in one matrix (Xv a view of its end: the fit adds them once),
            # the other hosts their part alone (the refit scores the validation rows after its fit, on the
            # first host)
            train, validation, X, y, Xv, yv = read_fit_rows(
                args.train, val_path if val_path.exists() and not refit_other else None, names,
                "train" if every_other > 1 else args.fit_on, every_other if every_other > 1 else stride)
        frames = [train]  # the rows the model is fitted on, for the interval calibration
        if validation is not None and args.fit_on == "train+validation" and (dist is None or dist.is_first):
            frames.append(validation)
        del validation
        held_out = Xv is not None and args.fit_on == "train"
        final_keep = None  # the final fit's rows (of train then validation) above FINAL_FIT_ROWS
        if args.fit_on == "train+validation" and all("_asset" in f.columns for f in frames):
            every = final_fit_stride(sum(len(f) for f in frames))
            if every > 1:
                final_keep = stride_mask(np.concatenate([f["_asset"].to_numpy() for f in frames]), every)
                hp = {**hp, "row_stride": str(max(stride, every))}  # its calibration folds read no more
        del train
        fit_xy = None  # the refit's rows (each once, as read), for the calibration
        if args.fit_on == "train+validation" and (dist is None or dist.is_first):
            if Xv is None:
                raise TrainError("--fit_on train+validation needs a validation channel")
            # read_fit_rows read train (on several hosts, this host's part) then validation into one
            # matrix, Xv a view of its end: the validation rows are fitted once, on the first host
            fit_xy = (X, y)
        # a model with life-summary features answers callers that keep a summary and callers that do
        # not (``fit_models``: two models, or one that learns every row with and without them), and is
        # scored on both: every validation row with and without its summary
        if final_keep is not None and every_other == 1:  # above FINAL_FIT_ROWS the final fit reads every 2nd
            X, y = X[final_keep], y[final_keep]  # reading (a copy; the refit's other hosts read only those)
        # a trial's fit reports the objective on the validation rows while it learns (pruning reads it);
        # the refit's validation rows are fitted rows, scored after the fit (``validation_predictions``)
        # rather than held through it doubled (on several hosts by the first host; the others hold none)
        score_after = not held_out and Xv is not None  # a refit, on one host or on the first of several
        if Xv is not None and not score_after:
            Xv, yv = F.with_and_without_life(Xv, yv, spec)
        checkpoint_dir = args.checkpoint_dir or (C.DEFAULT_DIR if Path(C.DEFAULT_DIR).is_dir() else None)
        ckpt = C.Checkpoints(checkpoint_dir, args.checkpoint_every) if checkpoint_dir else None
        fit = functools.partial(fit_models, spec=spec)
        collective = dist is not None and not D.gather_reason(args.algorithm, task, hp, held_out)
        if (dist is None or collective) and fit_xy is not None and F.two_models(spec):
            # the window fit blanks the life columns of the rows the calibration reads next: read them again
            # from the channels after it (or leave them, in the final fit's strided copy), rather than hold a
            # copy of them through it (FD002 x4, hgb: 44 float64 columns, 76 MB at the fit's peak)
            k_life = len(F.life_names(spec))
            files = channel_files(args.train) + channel_files(val_path)
            fit = functools.partial(fit, life_columns=(lambda: None) if final_keep is not None else (
                lambda: read_rows(files, names[-k_life:], dtype=fit_xy[0].dtype)[0]))
        elif collective:
            # a collective fit's rows are not read after it but by the refit's first host (above): the
            # window fit's blanked life columns stay blank, no copy of them held through it
            fit = functools.partial(fit, life_columns=lambda: None)
        # the rows a fit reports the objective on while it learns: a trial's; none for a refit (score_after)
        Xr, yr = (None, None) if score_after else (Xv, yv)
        if dist is None:
            model, pv = fit(args.algorithm, X, y, task, hp, args.nthread, args.seed, Xr, yr, names, checkpoints=ckpt)
        else:
            model, pv, X, y = dist.fit(fit, args.algorithm, X, y, task, hp, args.nthread, args.seed, Xr, yr, names,
                                       held_out, checkpoints=ckpt)
            if not dist.is_first:
                return 0  # the first host writes the model and prints the objective
        if score_after:  # a refit (one host, or the first of several): its validation rows scored after the fit
            pv = validation_predictions(args.algorithm, model, Xv, spec)
            yv = np.concatenate([yv, yv]) if F.life_names(spec) else yv
    except D.DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if dist is not None:
            dist.close()
        return 1
    except (TrainError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if dist is not None:
            dist.fail(str(exc))
        return 2
    if task == "rul_regression" and pv is not None:
        pv = np.clip(pv, 0.0, spec.label_cap if spec.label_cap else None)
    value = score(task, yv, pv) if pv is not None else float("nan")
    threshold = None
    folds = _num(hp, "cv_folds", int, 1, 20, "1")
    if held_out and folds > 1:
        # small positive classes make one validation split a noisy objective (AI4I: 68 failures);
        # score the trial on out-of-fold predictions over train+validation instead
        Xa, ya = np.vstack([X, Xv]), np.concatenate([y, yv])
        oof = oof_predictions(args.algorithm, Xa, ya, task, hp, args.nthread, args.seed, folds)
        value = score(task, ya, oof)
        if task == "failure_classification":
            threshold = best_f1_threshold(ya, oof)
    if task == "failure_classification" and threshold is None:
        threshold = best_f1_threshold(yv, pv) if held_out else \
            oof_threshold(args.algorithm, X, y, task, hp, args.nthread, args.seed)
    meta = {
        "algorithm": args.algorithm, "task": task, "hyperparameters": hp, "feature_names": names,
        "threshold": threshold, "label_cap": spec.label_cap, "fit_on": args.fit_on, "n_train": len(y),
        "validation_metric": {"name": metric_name(task), "value": value, "held_out": held_out},
        "xgboost_version": xgboost_version(), "seed": args.seed,
        "profile": spec.profile.get("name"), "subset": spec.profile.get("subset"),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if dist is not None:
        meta.update(dist.meta())
    if args.fit_on == "train+validation":  # the final model: its interval calibration
        X = Xv = None  # the final fit's (doubled) rows are no longer needed: free them before the folds
        try:
            meta["intervals"] = calibrate_intervals(args.algorithm, frames, names, spec, hp, args.nthread, args.seed,
                                                    fit_xy)
        except TrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    write_model(Path(args.model_dir), args.algorithm, model, spec_text, meta)
    baseline = spec_path.parent / "drift_baseline.json"  # preprocess.py writes it beside the spec
    if baseline.is_file():  # the drift check reads it from the model artifact
        shutil.copy2(baseline, Path(args.model_dir) / baseline.name)
    out = Path(args.output_data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(meta["validation_metric"]))
    print(f"train: {args.algorithm} on {meta['n_train']} rows, {len(names)} features, {time.time() - started:.1f}s",
          flush=True)
    # The last objective line is what the tuning job (the built-in algorithm's regex) and local tuning read.
    print(objective_line(task, value, _num(hp, "num_round", int, 1, 10**6, "1"), final=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
