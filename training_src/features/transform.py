"""Transforms: the features of every reading (batch) and of each asset's last reading (served).

``transform`` computes the features of every row of validated readings; ``transform_last`` (and
``transform_asset``, one asset) those of each asset's last reading from its raw readings alone, with
vectorised NumPy (no pandas), equal to the batch features of that reading.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from .life import LifeOverflowError, LifeState, _life_block, life_overflows
from .regimes import _health_index, assign_regimes
from .spec import FeatureSpec, life_names
from .windows import _expanding, _windows_last, window_block, windows_at


class ColumnMatrix(dict):
    """Named columns that are views of ONE (n, c) float matrix: a dict of 1-D arrays, plus
    ``take(names)``, which gathers several columns in one indexing call instead of stacking them
    (the serving hot path builds one; everything else may pass any mapping of columns).

    Views are made on first access (``__missing__``): a request reads only a few columns by name.
    """

    def __init__(self, matrix: np.ndarray, names: list[str]):
        super().__init__()
        self.matrix = matrix
        self.position = {c: j for j, c in enumerate(names)}

    def __missing__(self, name: str) -> np.ndarray:
        view = self.matrix[:, self.position[name]]  # KeyError for an unknown column, like a dict
        self[name] = view
        return view

    def __contains__(self, name: object) -> bool:
        return name in self.position

    def __iter__(self) -> Any:
        return iter(self.position)

    def __len__(self) -> int:
        return len(self.position)

    def keys(self) -> Any:
        return self.position.keys()

    def values(self) -> Any:
        return [self[c] for c in self.position]

    def items(self) -> Any:
        return [(c, self[c]) for c in self.position]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self.position else default

    def take(self, names: list[str]) -> np.ndarray:
        """(n, len(names)) C-ordered copy of those columns.

        C order matters: NumPy sums the window axis of a C-ordered block in order, as the batch
        code's does, but pairwise along an F-ordered one (``matrix[:, idx]`` is F-ordered), which
        changes the last bits of window statistics.
        """
        return self.matrix.take([self.position[c] for c in names], axis=1)


def reading_regimes(spec: FeatureSpec, cols: dict[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
    """Operating regime (n,) of each reading, from its settings alone (what ``_pointwise`` normalises by)."""
    if spec.setting_columns and spec.n_regimes > 1:
        st = np.column_stack([np.asarray(cols[c], dtype=float) for c in spec.setting_columns])
        st = (st - np.asarray(spec.settings_center)) / np.asarray(spec.settings_scale)
        return assign_regimes(st, np.asarray(spec.centroids))
    n = len(cols[spec.sensors[0]]) if spec.sensors else len(next(iter(cols.values())))
    return np.zeros(n, dtype=np.int64)


def normalised(spec: FeatureSpec, cols: dict[str, np.ndarray] | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-regime z-scored kept sensors (n, s) and regime ids (n,): the part of ``_pointwise`` that
    depends on the spec's regimes and normalisation alone (not on its windows, cap or health index),
    so a caller that tries several windows and caps on the same rows computes it once."""
    reg = reading_regimes(spec, cols)
    if isinstance(cols, ColumnMatrix):
        x = cols.take(spec.sensors)
    else:
        x = np.column_stack([np.asarray(cols[s], dtype=float) for s in spec.sensors]) if spec.sensors \
            else np.zeros((len(reg), 0))
    # ``x`` is this call's own copy of the columns: normalised in place, the same subtraction and division
    # element by element as ``(x - mean) / std`` without its two temporaries of x's size
    if spec.n_regimes == 1:  # one regime: broadcast the row instead of gathering it n times
        x -= spec._mean[0]
        x /= spec._std[0]
    else:
        x -= spec._mean[reg]
        x /= spec._std[reg]
    return x, reg


def _pointwise(spec: FeatureSpec, cols: dict[str, np.ndarray] | pd.DataFrame,
               norm: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-regime z-scored kept sensors plus the health index (n, channels) and regime ids (n,);
    ``norm``: ``normalised(spec, cols)`` when the caller has it already."""
    z, reg = norm if norm is not None else normalised(spec, cols)
    if spec.hi_weights:
        z = np.column_stack([z, _health_index(spec, z, reg)])
    return z, reg


def _derive(raw: dict[str, np.ndarray] | pd.DataFrame, derived: list[dict[str, Any]]) -> np.ndarray:
    """Raw derived features (n, d) from their source columns (or earlier derived features).

    Element-wise per row, so a row's value never depends on other rows (batch == serving).
    """
    n = len(raw[next(iter(raw))]) if isinstance(raw, dict) else len(raw)
    out = np.empty((n, len(derived)))
    position = {d["name"]: j for j, d in enumerate(derived)}
    for j, d in enumerate(derived):
        if d.get("features"):
            cols = [out[:, position[f]] for f in d["features"]]
        else:
            cols = [np.asarray(raw[c], dtype=float) for c in d["columns"]]
        op = d["op"]
        if op == "product":
            v = np.prod(cols, axis=0)
        elif op == "sum":
            v = np.sum(cols, axis=0)
        elif op == "difference":
            v = cols[0] - cols[1]
        elif op == "value":
            v = cols[0].copy()
        elif op == "max":
            v = np.max(cols, axis=0)
        elif op == "min":
            v = np.min(cols, axis=0)
        else:  # ratio
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(cols[1] == 0, 0.0, cols[0] / np.where(cols[1] == 0, 1.0, cols[1]))
        v = v * d.get("scale", 1.0)
        limit = d.get("limit")
        if limit is not None:  # signed relative distance to the limit (0 at the limit)
            if isinstance(limit, dict):  # one limit per level of a categorical column
                levels = np.asarray(raw[d["limit_by"]])
                lim = np.full(n, np.nan)
                for level, value in limit.items():
                    lim[levels == level] = value
            else:
                lim = float(limit)
            v = (v - lim) / np.abs(lim)
        band = d.get("band")
        if band is not None:  # signed distance inside [low, high]: 1 mid-band, 0 at an edge
            low, high = band
            v = np.minimum(v - low, high - v) / ((high - low) / 2.0)
        out[:, j] = v
    return out


def _assemble(spec: FeatureSpec, cols: Any, z: np.ndarray, reg: np.ndarray, win: np.ndarray | None,
              t: np.ndarray | None, life: np.ndarray | None = None, dtype: Any = float, order: str = "C",
              out: np.ndarray | None = None) -> np.ndarray:
    """The features (n, f) from their parts; ``out``: an (n, f) array (or view) of ``dtype`` to write them
    into, column block by column block, instead of a new array (the same values)."""
    parts = []
    if spec.time_column and spec.window_sizes:
        parts.append(np.asarray(t, dtype=float)[:, None])
    parts.append(z)
    if win is not None:
        parts.append(win)
    if spec.n_regimes > 1:
        parts.append(np.eye(spec.n_regimes)[reg])
    if spec.derived:
        dv = (_derive(cols, spec.derived) - np.asarray(spec.derived_mean)) / np.asarray(spec.derived_std)
        parts.append(dv)
    for col, levels in spec.categorical.items():
        v = np.asarray(cols[col])
        parts.append(np.column_stack([(v == lvl).astype(float) for lvl in levels]))
    if life is not None:
        parts.append(life)
    # the parts are float64; a float32 result is each value rounded once, as ``astype(np.float32)`` does
    if (order == "F" or out is not None) and parts:  # column-major: each feature's values contiguous
        if out is None:
            out = np.empty((len(z), sum(p.shape[1] for p in parts)), dtype=dtype, order="F")
        at = 0
        for p in parts:
            if not np.may_share_memory(p, out):  # a part written into its own columns of ``out`` already
                out[:, at:at + p.shape[1]] = p
            at += p.shape[1]
        return out
    return np.hstack(parts, dtype=dtype) if parts else np.zeros((len(z), 0), dtype=dtype)


#: rows per block of whole assets in ``transform`` when the caller runs the blocks itself (``run``): small
#: enough that a few blocks keep every core busy and each block's float64 temporaries stay tens of MB
BLOCK_ROWS = 32_768


def asset_blocks(ids: np.ndarray | None, n: int, rows: int | None = None) -> list[tuple[int, int]]:
    """Row ranges ``(a, b)`` covering ``0:n`` in order, each about ``rows`` rows of whole assets (``ids``:
    each row's asset, assets contiguous; None: rows are independent and cut anywhere). An asset longer
    than ``rows`` is one block of its own."""
    rows = rows or BLOCK_ROWS
    if n == 0:
        return []
    if ids is None:
        cuts = list(range(rows, n, rows))
    else:
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # each asset's first row
        # the asset start at or after each multiple of ``rows``: whole assets, about ``rows`` rows each
        cuts = sorted(set(starts[np.searchsorted(starts, np.arange(rows, n, rows))].tolist()) - {0}) \
            if len(starts) > 1 else []
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    return list(itertools.pairwise(bounds))


def transform(df: pd.DataFrame, spec: FeatureSpec, life: bool = True, dtype: Any = float,
              order: str = "C", run: Any = None) -> pd.DataFrame:
    """Features for every row of validated readings (assets contiguous, time-ordered).

    Returns a frame with ``spec.feature_names`` columns of ``dtype`` (float64, or float32: the same
    values as the float64 features cast, what the models read), index aligned with ``df``. Life-summary
    features (``spec.life_stats``) are those of each reading's whole history so far: what a caller
    that has kept the asset's summary since its first reading sends; ``life=False`` leaves them
    missing, as for a caller that sends none (``with_and_without_life`` trains on both). ``order="F"``
    stores each feature column contiguously (the same values): pyarrow then writes the frame's
    columns to parquet without copying them.

    ``run``: a map ``run(fn, jobs) -> [fn(*job) for job in jobs]`` (e.g. ``threads.parallel``) for blocks
    of about ``BLOCK_ROWS`` rows of whole assets, each written into its rows of one result array. Every
    feature of a row depends on that row and its own asset's earlier rows alone (normalisation, health
    index, derived and categorical columns row by row; windows and life sums within the asset), and each
    block runs the same NumPy expressions as the whole frame would, so the values are the same bit for bit
    whatever the blocks and however ``run`` schedules them (a test compares them). Default: one block.
    """
    n, f = len(df), len(spec.feature_names)
    ids = df[spec.id_column].to_numpy() if spec.window_sizes else None
    blocks = [(0, n)] if run is None or n == 0 else asset_blocks(ids, n)
    if len(blocks) == 1:
        x = _transform_block(df, spec, life, dtype, order)
        return pd.DataFrame(x, columns=spec.feature_names, index=df.index)
    x = np.empty((n, f), dtype=dtype, order=order)
    # the columns each block reads, as arrays (a dict of slices, not a frame copy per block)
    used = {spec.id_column, spec.time_column, *spec.setting_columns, *spec.sensors, *spec.categorical,
            *(c for d in spec.derived for c in (*d.get("columns", ()), d.get("limit_by")))} - {None, ""}
    cols = {c: df[c].to_numpy() for c in used if c in df.columns}

    def one(a: int, b: int) -> None:
        # written straight into its rows of the result (a block's own matrix, then copied, was one more
        # float copy of the block per thread)
        _transform_block({c: v[a:b] for c, v in cols.items()}, spec, life, dtype, order, out=x[a:b])

    run(one, blocks)
    return pd.DataFrame(x, columns=spec.feature_names, index=df.index)


def _transform_block(df: pd.DataFrame | dict[str, np.ndarray], spec: FeatureSpec, life: bool, dtype: Any,
                     order: str, out: np.ndarray | None = None) -> np.ndarray:
    """``transform``'s matrix (n, f) for rows of whole assets (a frame, or a dict of its columns); ``out``:
    the (n, f) array (or view) to write it into (``_assemble``)."""
    z, reg = _pointwise(spec, df)
    win = t = block = None
    n = len(z)
    if spec.window_sizes:
        ids = np.asarray(df[spec.id_column])
        t = np.asarray(df[spec.time_column], dtype=float)
        bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
        # each asset's block goes straight into one array (a list of blocks then stacked is a second copy):
        # with ``out``, into the window columns of ``out`` themselves (each value rounded once to its dtype,
        # as ``_assemble`` would round it), not into a float64 array of the block's windows first
        win = None
        at = (1 if spec.time_column else 0) + z.shape[1]  # the window columns follow the time and signals
        for a, b in itertools.pairwise(bounds):
            w = window_block(z[a:b], t[a:b], spec)
            if win is None:
                win = out[:, at:at + w.shape[1]] if out is not None else np.empty((n, w.shape[1]))
            win[a:b] = w
        if spec.life_stats and life:
            k = len(life_names(spec))  # the life features are the last columns (``_assemble``)
            block = out[:, out.shape[1] - k:] if out is not None else np.empty((n, k))
            for a, b in itertools.pairwise(bounds):
                block[a:b] = np.stack(_expanding(z[a:b], t[a:b], spec.life_stats), axis=2).reshape(b - a, -1)
        elif spec.life_stats:
            block = _missing_life(n, spec)
    return _assemble(spec, df, z, reg, win, t, block, dtype, order, out)


#: readings per gather in ``transform_rows`` (bounds its temporaries at a few MB whatever the row count)
ROWS_CHUNK = 2048


def transform_rows(df: pd.DataFrame, rows: np.ndarray, spec: FeatureSpec,
                   norm: tuple[np.ndarray, np.ndarray] | None = None,
                   point: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Features (len(rows), f) of the readings at positions ``rows`` of validated readings ``df`` (assets
    contiguous, time-ordered), each from its asset's history: equal, bit for bit, to those rows of
    ``transform(df, spec, life=False)`` (life features missing), at the cost of len(rows) windows
    instead of every reading's (a proxy fit that reads every k-th reading computes 1/k of them).
    ``norm``: ``normalised(spec, df)``, when the caller has it already; ``point``: ``_pointwise(spec, df)``
    (the normalised sensors with the health index), when the caller has that."""
    rows = np.asarray(rows, dtype=np.intp)
    z, reg = point if point is not None else _pointwise(spec, df, norm)
    used = {c for d in spec.derived for c in d["columns"]} | set(spec.categorical)
    pick = {k: df[k].to_numpy()[rows] for k in used}
    win = t = block = None
    if spec.window_sizes:
        ids = df[spec.id_column].to_numpy()
        t = df[spec.time_column].to_numpy(dtype=float)
        first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # each asset's first row
        starts = first[np.searchsorted(first, rows, side="right") - 1]
        # in chunks: a gather holds (rows, W, channels) values several times over, per row independent
        win = np.vstack([windows_at(z, t, starts[i:i + ROWS_CHUNK], rows[i:i + ROWS_CHUNK] + 1, spec)
                         for i in range(0, len(rows), ROWS_CHUNK)]) if len(rows) else windows_at(
            z, t, starts, rows + 1, spec)
        t = t[rows]
        if spec.life_stats:
            block = _missing_life(len(rows), spec)
    return _assemble(spec, pick, z[rows], reg[rows], win, t, block)


def _missing_life(n: int, spec: FeatureSpec) -> np.ndarray:
    """The life features (n, k) of n rows whose callers sent no summary: all missing."""
    return np.full((n, len(life_names(spec))), np.nan)


def with_and_without_life(X: np.ndarray | list[np.ndarray], y: np.ndarray,
                          spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training rows for a model with life-summary features: every row twice, with its life features and
    with them missing (a caller that sends no summary), so one model answers both. Unchanged without.

    ``X`` may be a list of row blocks (e.g. the train then the validation channel's rows): they are
    written into the result one after the other, as ``np.vstack(X)`` would be, without that copy."""
    k = len(life_names(spec))
    blocks = X if isinstance(X, list) else [X]
    if not k:
        return (np.vstack(blocks) if isinstance(X, list) else X), y
    # one allocation (not a copy of X that is then stacked into another): the rows twice, then blank
    n = sum(len(b) for b in blocks)
    out = np.empty((2 * n, blocks[0].shape[1]), dtype=np.result_type(*blocks))
    at = 0
    for b in blocks:
        out[at:at + len(b)] = b
        out[n + at:n + at + len(b)] = b
        at += len(b)
    out[n:, -k:] = np.nan
    return out, np.concatenate([y, y])


def life_rows(X: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Which rows of a feature matrix X (n, f) carry a life summary: a bool mask (n,).

    A row carries one when any of its life features (the last ``len(life_names(spec))`` columns) is
    not missing; a caller that sends no summary leaves all of them missing (``_missing_life``). This is
    the one rule that routes a row to the model trained on rows with a summary, when the artifact holds
    one (``candidates.LIFE_MODEL_DIR``). All False for a spec without life features."""
    k = len(life_names(spec))
    if not k or len(X) == 0:
        return np.zeros(len(X), dtype=bool)
    return ~np.isnan(X[:, -k:]).all(axis=1)


def transform_last(cols: dict[str, np.ndarray], offsets: np.ndarray, spec: FeatureSpec,
                   life: list[LifeState | None] | None = None,
                   point: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Features (m, f) of the LAST reading of each of m assets whose readings are stacked.

    ``cols`` maps column name -> 1-D array over all stacked readings; asset i owns rows
    ``offsets[i]:offsets[i+1]`` (non-empty, validated, sorted by time). Each row equals the batch
    ``transform`` features of that asset's last reading (parity-tested on every FD001 test unit).
    Only trailing windows are read, so a longer history than ``spec.history_needed`` changes nothing.
    Vectorised across assets: one gather per window size, one ``reduceat`` per whole-history sum.
    Life-summary features come from ``life`` (one state or None per asset; None: all missing).
    ``point``: ``_pointwise(spec, cols)``, when the caller has it already (the window/cap choice scores
    several candidates on the same readings).
    """
    return _transform_last(cols, offsets, spec, life, point)[0]


def transform_last_life(cols: dict[str, np.ndarray], offsets: np.ndarray, spec: FeatureSpec,
                        life: list[LifeState | None] | None = None
                        ) -> tuple[np.ndarray, list[LifeState | None] | None]:
    """``transform_last`` and each asset's updated life summary (None where it sent none).

    Raises ``LifeOverflowError`` (naming the asset) when an updated summary or its life features leave the
    float range (float32 for the features, as the models read them)."""
    X, updated = _transform_last(cols, offsets, spec, life)
    k = len(life_names(spec))
    for i, u in enumerate(updated or []):
        if u is not None and life_overflows(u, X[i, -k:]):
            raise LifeOverflowError(i)
    return X, updated


def _transform_last(cols: dict[str, np.ndarray], offsets: np.ndarray, spec: FeatureSpec,
                    life: list[LifeState | None] | None,
                    point: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, list[LifeState | None] | None]:
    offsets = np.asarray(offsets, dtype=np.intp)
    last = offsets[1:] - 1
    z, reg = point if point is not None else _pointwise(spec, cols)
    # the raw columns _assemble reads (derived inputs, categoricals), at each asset's last reading
    used = {c for d in spec.derived for c in d["columns"]} | set(spec.categorical)
    pick = {k: np.asarray(cols[k])[last] for k in used}
    if not spec.window_sizes:  # row-wise profiles: the features of the last row
        return _assemble(spec, pick, z[last], reg[last], None, None), None
    t = np.asarray(cols[spec.time_column], dtype=float)
    win = _windows_last(z, t, offsets, spec)
    block, updated = None, None
    if spec.life_stats and life is None:  # no summaries (the hot path): the life features are missing
        block = _missing_life(len(last), spec)
    elif spec.life_stats:
        block, updated = _life_block(z, t, offsets, spec, life)
    return _assemble(spec, pick, z[last], reg[last], win, t[last], block), updated


def transform_asset(readings: dict[str, np.ndarray], spec: FeatureSpec) -> np.ndarray:
    """Features (f,) of the last reading of ONE asset, from that asset's raw readings alone.

    ``readings`` maps column name -> 1-D array, already validated and sorted by time. Only the
    trailing ``spec.history_needed`` readings matter. Vectorised NumPy, no pandas: the hot path
    (``transform_last`` with one asset).
    """
    n = len(next(iter(readings.values())))
    return transform_last(readings, np.array([0, n]), spec)[0]

