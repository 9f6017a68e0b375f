"""Feature engineering, one copy used by preprocessing, training, evaluation and inference.

Pipeline (``fit_spec`` learns on training data only; ``transform`` applies it):

1. ``validate_readings``: numeric coercion, NaN/inf policy, duplicate and ordering checks.
2. Operating regimes: k-means on standardised settings; the smallest k whose clusters explain
   ``min_explained_variance`` of the settings' variance (1 for FD001, 6 for FD002/FD004).
3. Per-regime normalisation of every sensor (z-score with that regime's training mean/std);
   sensors constant within every regime carry no information and are dropped.
4. Derived features (profile ``derived_features``: product/difference/ratio/sum/value/max/min of raw
   columns or earlier derived features, optionally as a signed distance to a limit or band),
   standardised; one-hot encoding of categorical columns with the profile's fixed level list.
5. Per-asset window features over the trailing ``sizes`` readings: mean, std, slope (per time
   unit, least squares), min, max; a truncated exponentially weighted mean per ``ewm_spans``;
   plus the time column itself (cycle count). Windows at the start of a history are partial.
6. Optional health index (``windows.health_index``): a per-regime linear fit of the capped label on
   the normalised sensors, treated as one more normalised signal (its value, window mean and slope).
   It summarises the degradation in one number that a short window can still trend.
7. RUL labels: ``max(time of asset) - time``, capped at ``label.cap`` (piecewise-linear target).
   With ``windows.cv_sizes`` / ``label.cv_caps`` preprocessing chooses the window and the cap by
   grouped cross-validation (``training_src/selection.py``) and records it in ``spec.selection``.

Missing-value policy (documented in the README): ids, times and labels must be present. An
isolated gap in a setting or sensor (at most ``MAX_GAP`` consecutive missing readings of one asset)
is filled with the asset's previous reading (the next one at the start of a history); longer gaps,
a column missing for a whole asset, inf, and any gap in row-wise (classification) data are errors.

The fitted ``FeatureSpec`` is JSON; it is everything inference needs. ``transform_asset`` computes
the features of one asset's last reading from that asset's raw readings alone with vectorised NumPy
(no pandas), and equals the batch features of that reading (tested for every FD001 test unit).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

try:
    from .profiles import Profile, parse_profile
except ImportError:  # SageMaker container: siblings are top-level modules
    from profiles import Profile, parse_profile

MAX_GAP = 3
WHOLE_HISTORY = 10**9  # history_needed of a spec with a whole-history (size 0) window
STD_FLOOR = 1e-8
SPEC_VERSION = 1


class FeatureError(ValueError):
    """Input readings violate the data contract; the message names the row/asset and column."""


# ----------------------------------------------------------------------------------------------
# The fitted specification
# ----------------------------------------------------------------------------------------------
@dataclass
class FeatureSpec:
    """Everything learned from training data that inference needs, serialisable as JSON."""

    profile: dict[str, Any]
    task: str
    id_column: str | None
    time_column: str | None
    setting_columns: list[str]
    sensors: list[str]  # kept sensors, in order
    dropped_sensors: list[str]
    settings_center: list[float]
    settings_scale: list[float]
    centroids: list[list[float]]  # in standardised settings space; one row per regime
    sensor_mean: list[list[float]]  # [regime][sensor]
    sensor_std: list[list[float]]
    derived: list[dict[str, Any]]
    derived_mean: list[float]
    derived_std: list[float]
    categorical: dict[str, list[str]]
    window_sizes: list[int]
    window_stats: list[str]
    ewm_spans: list[int]
    label_cap: float | None
    feature_names: list[str] = field(default_factory=list)
    version: int = SPEC_VERSION
    # linear health index per regime (``windows.health_index``): hi = hi_bias[r] + sum_j hi_weights[r][j] * z_j,
    # a virtual sensor appended after the kept sensors (empty lists: no health index)
    hi_weights: list[list[float]] = field(default_factory=list)
    hi_bias: list[float] = field(default_factory=list)
    # how the window size and the label cap were chosen (cross-validation records; empty: fixed by the profile)
    selection: dict[str, Any] = field(default_factory=dict)
    # whole-life statistics of every channel, from a life summary (``windows.life_stats``): the last features,
    # missing (NaN) when a request carries no summary; empty: none
    life_stats: list[str] = field(default_factory=list)

    # -- serialisation --------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        doc = json.loads(text)
        if doc.get("version") != SPEC_VERSION:
            raise ValueError(f"feature spec version {doc.get('version')!r} is not {SPEC_VERSION}")
        return cls(**doc)

    @property
    def n_regimes(self) -> int:
        return len(self.centroids)

    @property
    def channels(self) -> list[str]:
        """The normalised signals window statistics are taken of: kept sensors, then the health index."""
        return [*self.sensors, *(["hi"] if self.hi_weights else [])]

    @property
    def min_readings(self) -> int | None:
        """Readings a request should carry per asset for full-accuracy features (the longest trailing
        window); None for a whole-history model (every reading since the asset's first) or row-wise data."""
        need = self.history_needed
        return None if need >= WHOLE_HISTORY or not self.window_sizes else need

    @property
    def history_needed(self) -> int:
        """Readings of trailing history that determine the last reading's features exactly.

        A whole-history window (size 0) needs every reading since the asset's first one.
        """
        if 0 in self.window_sizes:
            return WHOLE_HISTORY
        return max([1, *self.window_sizes, *[3 * s for s in self.ewm_spans]])

    @property
    def numeric_inputs(self) -> list[str]:
        """Numeric columns a reading must carry (settings and all profile sensors)."""
        prof = self.profile_obj
        cols = [*prof.setting_columns, *prof.sensor_columns]
        if self.time_column:
            cols.insert(0, self.time_column)
        return cols

    @property
    def profile_obj(self) -> Profile:
        cached = getattr(self, "_profile_cache", None)
        if cached is None:
            cached = parse_profile(self.profile, subset=self.profile.get("subset"), source="feature spec")
            object.__setattr__(self, "_profile_cache", cached)
        return cached

    @property
    def _mean(self) -> np.ndarray:
        return _cached(self, "_mean_arr", lambda: np.asarray(self.sensor_mean, dtype=float).reshape(
            self.n_regimes, len(self.sensors)))

    @property
    def _std(self) -> np.ndarray:
        return _cached(self, "_std_arr", lambda: np.asarray(self.sensor_std, dtype=float).reshape(
            self.n_regimes, len(self.sensors)))


def _cached(obj: Any, name: str, make: Any) -> Any:
    value = obj.__dict__.get(name)
    if value is None:
        value = make()
        obj.__dict__[name] = value
    return value


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _aid(value: Any) -> str:
    """An asset id for messages: 7.0 -> '7'."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return repr(str(int(value)))
    return repr(str(value))


def validate_readings(df: pd.DataFrame, profile: Profile, source: str = "data", *,
                      require_label: bool = False, sort: bool = False, first_row: int = 1) -> pd.DataFrame:
    """Check and clean raw readings; return a new frame with float columns and filled gaps.

    ``sort=False`` (files) demands that each asset's times strictly increase in file order;
    ``sort=True`` (requests) sorts by time first and only rejects duplicates. Row numbers in
    messages are positions in ``df`` counted from ``first_row`` (1; a file read with one header line
    passes 2, so they are the file's row numbers as ``dataio.read_table`` reports them).
    """
    if df.empty:
        raise FeatureError(f"{source}: no rows")
    df = df.reset_index(drop=True).copy()
    numeric = [c for c in profile.required_columns if c not in profile.categorical_columns]
    if not require_label and profile.label.column in numeric:
        numeric.remove(profile.label.column)
    missing = [c for c in numeric + list(profile.categorical_columns) if c not in df.columns]
    if missing:
        raise FeatureError(f"{source}: missing column(s) {missing}")
    for col in numeric:
        if df[col].dtype.kind not in "fiub":
            conv = pd.to_numeric(df[col], errors="coerce")
            bad = conv.isna() & df[col].notna()
            if bad.any():
                i = int(np.argmax(bad.to_numpy()))
                raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: not a number: {df[col].iat[i]!r}")
            df[col] = conv
        df[col] = df[col].astype("float64")
        arr = df[col].to_numpy()
        inf = np.isinf(arr)
        if inf.any():
            i = int(np.argmax(inf))
            raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: infinite value")
    for col, levels in profile.categorical_columns.items():
        bad = ~df[col].isin(levels)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: unknown level {df[col].iat[i]!r}; "
                               f"expected one of {list(levels)}")
    must = [c for c in (profile.id_column, profile.time_column) if c and c in numeric]
    if require_label and profile.label.column:
        must.append(profile.label.column)
    for col in must:
        nan = df[col].isna().to_numpy()
        if nan.any():
            i = int(np.argmax(nan))
            raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: missing value")

    value_cols = [*profile.setting_columns, *profile.sensor_columns]
    if profile.task == "failure_classification" or not profile.time_column:
        for col in value_cols:
            nan = df[col].isna().to_numpy()
            if nan.any():
                i = int(np.argmax(nan))
                raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: missing value")
        return df

    idc, tc = profile.id_column, profile.time_column
    if sort:
        df = df.sort_values([idc, tc], kind="stable").reset_index(drop=True)
    ids = df[idc].to_numpy()
    times = df[tc].to_numpy()
    same = ids[1:] == ids[:-1]
    dup = same & (times[1:] == times[:-1])
    if dup.any():
        i = int(np.argmax(dup)) + 1
        raise FeatureError(f"{source}: row {i + first_row}: duplicate {tc} {times[i]:g} for asset {_aid(ids[i])}")
    back = same & (times[1:] < times[:-1])
    if back.any():
        i = int(np.argmax(back)) + 1
        raise FeatureError(f"{source}: row {i + first_row}: {tc} {times[i]:g} does not increase for asset {_aid(ids[i])} "
                           f"(previous {times[i - 1]:g})")
    # rows of one asset must be contiguous, or windows would mix histories
    starts = np.r_[True, ~same]
    seen_ids = ids[starts]
    if len(pd.unique(seen_ids)) != len(seen_ids):
        raise FeatureError(f"{source}: rows of an asset are not contiguous; group each asset's readings together")
    counts = pd.Series(ids).value_counts()
    if profile.min_readings > 1 and (counts < profile.min_readings).any():
        bad_id = counts[counts < profile.min_readings].index[0]
        raise FeatureError(f"{source}: asset {_aid(bad_id)} has {int(counts[bad_id])} reading(s); "
                           f"the profile needs at least {profile.min_readings}")
    gaps = df[value_cols].isna()
    if gaps.to_numpy().any():
        for col in value_cols:
            nan = gaps[col]
            if not nan.any():
                continue
            # longest run of consecutive missing values per asset
            run = nan.groupby((~nan).cumsum()).cumsum()
            worst = int(run.max())
            whole = nan.groupby(df[idc]).all()
            if whole.any():
                raise FeatureError(f"{source}: column {col!r} is missing for every reading of asset "
                                   f"{_aid(whole[whole].index[0])}")
            if worst > MAX_GAP:
                i = int(np.argmax((run > MAX_GAP).to_numpy()))
                raise FeatureError(f"{source}: row {i + first_row}, column {col!r}: gap of more than {MAX_GAP} "
                                   "consecutive missing readings")
        df[value_cols] = df.groupby(idc, sort=False)[value_cols].transform(lambda s: s.ffill().bfill())
    return df


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------
def _standardise_settings(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale < STD_FLOOR, 1.0, scale)
    return center, scale


def detect_regimes(settings: np.ndarray, max_clusters: int, min_explained: float,
                   seed: int = 0) -> np.ndarray:
    """Centroids (standardised space) of the operating regimes found in ``settings`` (n, k).

    Returns the centroids of the smallest k in 1..max_clusters whose clustering explains at least
    ``min_explained`` of the total variance; one centroid (the mean) if none does.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    total = float(((settings - settings.mean(axis=0)) ** 2).sum())
    one = settings.mean(axis=0, keepdims=True)
    if total <= 0 or max_clusters < 2:
        return one
    sample = settings
    if len(settings) > 5_000:  # the structure is coarse; a sample finds it as well
        rng = np.random.default_rng(seed)
        sample = settings[rng.choice(len(settings), 5_000, replace=False)]
        total = float(((sample - sample.mean(axis=0)) ** 2).sum())
    for k in range(2, max_clusters + 1):
        if k > len(np.unique(sample, axis=0)):
            break
        # one OpenMP thread: on a busy machine KMeans's thread team spin-waits (27 s instead of 3 s
        # measured with other jobs running), and 5,000 rows of settings take well under a second on one
        with threadpool_limits(limits=1, user_api="openmp"):
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(sample)
        if 1.0 - km.inertia_ / total >= min_explained:
            # deterministic order: sort centroids lexicographically so regime ids are stable
            c = km.cluster_centers_
            order = np.lexsort(c.T[::-1])
            return c[order]
    return one


def assign_regimes(settings_std: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each row of standardised settings."""
    if len(centroids) == 1:
        return np.zeros(len(settings_std), dtype=np.int64)
    d = ((settings_std[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


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


def feature_names(spec: FeatureSpec) -> list[str]:
    """Column names of the feature matrix, in order."""
    names: list[str] = []
    if spec.time_column and spec.window_sizes:
        names.append(spec.time_column)
    names += [f"{s}_z" for s in spec.channels]
    if spec.window_sizes:
        for s in spec.channels:
            for w in spec.window_sizes:
                names += [f"{s}_{stat}_{w or 'all'}" for stat in spec.window_stats]
            names += [f"{s}_ewm_{span}" for span in spec.ewm_spans]
    if spec.n_regimes > 1:
        names += [f"regime_{r}" for r in range(spec.n_regimes)]
    names += [d["name"] for d in spec.derived]
    for col, levels in spec.categorical.items():
        names += [f"{col}_{lvl}" for lvl in levels]
    return names + life_names(spec)


def life_names(spec: FeatureSpec) -> list[str]:
    """Names of the life-summary features, the last ``len(life_names(spec))`` columns of the matrix."""
    return [f"{s}_{stat}_life" for s in spec.channels for stat in spec.life_stats]


_PROFILE_CAP = object()  # fit_spec's default cap: the profile's


def fit_spec(train: pd.DataFrame, profile: Profile, seed: int = 0, *, window_sizes: list[int] | None = None,
             cap: Any = _PROFILE_CAP) -> FeatureSpec:
    """Learn regimes, normalisation, kept sensors, derived-feature scaling and the health index from
    training rows.

    ``train`` must already have passed ``validate_readings``. ``window_sizes`` and ``cap`` override
    the profile's (cross-validation passes each candidate; ``cap=None`` means uncapped labels).
    """
    settings = train[list(profile.setting_columns)].to_numpy(dtype=float) if profile.setting_columns \
        else np.zeros((len(train), 0))
    center, scale = _standardise_settings(settings) if settings.shape[1] else (np.zeros(0), np.zeros(0))
    std_settings = (settings - center) / scale if settings.shape[1] else settings
    if profile.regimes and settings.shape[1]:
        centroids = detect_regimes(std_settings, profile.regimes.max_clusters,
                                   profile.regimes.min_explained_variance, seed)
    else:
        centroids = np.zeros((1, settings.shape[1]))
    regimes = assign_regimes(std_settings, centroids) if settings.shape[1] else np.zeros(len(train), int)
    sensors_all = list(profile.sensor_columns)
    values = train[sensors_all].to_numpy(dtype=float)
    k = len(centroids)
    mean = np.zeros((k, len(sensors_all)))
    std = np.ones((k, len(sensors_all)))
    constant = np.ones(len(sensors_all), dtype=bool)
    for r in range(k):
        rows = values[regimes == r]
        if len(rows) == 0:
            continue
        mean[r] = rows.mean(axis=0)
        s = rows.std(axis=0)
        const_r = s <= 1e-6 * (np.abs(mean[r]) + 1.0)
        constant &= const_r
        std[r] = np.where(s < STD_FLOOR, 1.0, s)
    keep = ~constant
    derived = [d.to_spec() for d in profile.derived_features]
    if derived:
        dv = _derive(train, derived)
        dmean, dstd = dv.mean(axis=0), dv.std(axis=0)
        dstd = np.where(dstd < STD_FLOOR, 1.0, dstd)
    else:
        dmean, dstd = np.zeros(0), np.zeros(0)
    w = profile.windows
    label_cap = profile.label.cap if cap is _PROFILE_CAP else cap
    spec = FeatureSpec(
        profile=profile.to_dict(), task=profile.task, id_column=profile.id_column,
        time_column=profile.time_column, setting_columns=list(profile.setting_columns),
        sensors=[s for s, kp in zip(sensors_all, keep, strict=True) if kp],
        dropped_sensors=[s for s, kp in zip(sensors_all, keep, strict=True) if not kp],
        settings_center=center.tolist(), settings_scale=scale.tolist(), centroids=centroids.tolist(),
        sensor_mean=mean[:, keep].tolist(), sensor_std=std[:, keep].tolist(),
        derived=derived, derived_mean=dmean.tolist(), derived_std=dstd.tolist(),
        categorical={c: list(v) for c, v in profile.categorical_columns.items()},
        window_sizes=list(window_sizes if window_sizes is not None else w.sizes) if w else [],
        window_stats=list(w.stats) if w else [],
        ewm_spans=list(w.ewm_spans) if w else [], label_cap=label_cap,
        life_stats=list(w.life_stats) if w and profile.time_column else [],
    )
    return _finish_spec(spec, train, profile)


def _finish_spec(spec: FeatureSpec, train: pd.DataFrame, profile: Profile) -> FeatureSpec:
    """Fit the health index (if the profile asks for one) for the spec's cap and name the features."""
    w = profile.windows
    if w and w.health_index and spec.sensors and profile.time_column:
        z, reg = _pointwise(spec, train)
        weights, bias = fit_health_index(z, reg, rul_labels(train, profile, spec.label_cap), spec.n_regimes)
        spec.hi_weights, spec.hi_bias = weights.tolist(), bias.tolist()
    spec.feature_names = feature_names(spec)
    return spec


def with_choice(base: FeatureSpec, train: pd.DataFrame, profile: Profile, window_sizes: list[int],
                cap: float | None) -> FeatureSpec:
    """``base`` (fitted on ``train``) with other window sizes and label cap: regimes and normalisation
    are kept (they do not depend on either), the health index is refitted for the cap. Equals
    ``fit_spec(train, profile, window_sizes=..., cap=...)`` without repeating the regime search."""
    spec = FeatureSpec(**{**asdict(base), "window_sizes": list(window_sizes), "label_cap": cap,
                          "hi_weights": [], "hi_bias": [], "feature_names": []})
    return _finish_spec(spec, train, profile)


def fit_health_index(z: np.ndarray, reg: np.ndarray, y: np.ndarray, n_regimes: int,
                     alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-regime ridge regression of the (capped) RUL label ``y`` (n,) on normalised sensors ``z`` (n, s).

    Returns weights (n_regimes, s) and intercepts (n_regimes,): a linear "health index" in label
    units, one per operating regime because a sensor's degradation signature differs by condition.
    A regime without training rows gets the pooled fit.
    """
    from sklearn.linear_model import Ridge

    pooled = Ridge(alpha=alpha).fit(z, y)
    weights = np.tile(pooled.coef_, (n_regimes, 1))
    bias = np.full(n_regimes, float(pooled.intercept_))
    if n_regimes > 1:
        for r in range(n_regimes):
            rows = reg == r
            if rows.sum() > z.shape[1] + 1:
                m = Ridge(alpha=alpha).fit(z[rows], y[rows])
                weights[r], bias[r] = m.coef_, float(m.intercept_)
    return weights, bias


def _health_index(spec: FeatureSpec, z: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """The health index (n,) of normalised sensors ``z`` (n, s) in regimes ``reg``.

    Summed sensor by sensor in order (not ``@`` or ``.sum``, whose order depends on the BLAS and the
    shape): the compiled kernel repeats exactly these additions, so the bits agree.
    """
    w = _cached(spec, "_hi_w_arr", lambda: np.asarray(spec.hi_weights, dtype=float))
    b = _cached(spec, "_hi_b_arr", lambda: np.asarray(spec.hi_bias, dtype=float))
    wr = w[reg] if spec.n_regimes > 1 else np.broadcast_to(w[0], z.shape)
    h = b[reg] if spec.n_regimes > 1 else np.full(len(z), b[0])
    for j in range(z.shape[1]):
        h = h + wr[:, j] * z[:, j]
    return h


# ----------------------------------------------------------------------------------------------
# Transforming
# ----------------------------------------------------------------------------------------------
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


def _pointwise(spec: FeatureSpec, cols: dict[str, np.ndarray] | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-regime z-scored kept sensors plus the health index (n, channels) and regime ids (n,)."""
    if spec.setting_columns and spec.n_regimes > 1:
        st = np.column_stack([np.asarray(cols[c], dtype=float) for c in spec.setting_columns])
        st = (st - np.asarray(spec.settings_center)) / np.asarray(spec.settings_scale)
        reg = assign_regimes(st, np.asarray(spec.centroids))
    else:
        n = len(cols[spec.sensors[0]]) if spec.sensors else len(next(iter(cols.values())))
        reg = np.zeros(n, dtype=np.int64)
    if isinstance(cols, ColumnMatrix):
        x = cols.take(spec.sensors)
    else:
        x = np.column_stack([np.asarray(cols[s], dtype=float) for s in spec.sensors]) if spec.sensors \
            else np.zeros((len(reg), 0))
    if spec.n_regimes == 1:  # one regime: broadcast the row instead of gathering it n times
        z = (x - spec._mean[0]) / spec._std[0]
    else:
        z = (x - spec._mean[reg]) / spec._std[reg]
    if spec.hi_weights:
        z = np.column_stack([z, _health_index(spec, z, reg)])
    return z, reg


def _ewm_weights(span: int) -> np.ndarray:
    """Weights of a truncated, normalised EWM over the last 3*span readings (newest last)."""
    alpha = 2.0 / (span + 1.0)
    length = 3 * span
    w = (1 - alpha) ** np.arange(length)[::-1]
    return w


#: the running sums (``_sum_terms``) each statistic needs, besides the count
SUMS_FOR = {"mean": ("z",), "std": ("z", "zz"), "slope": ("z", "t", "tt", "tz"), "min": ("min",), "max": ("max",)}


def sum_keys(stats: list[str]) -> list[str]:
    """The running sums that ``stats`` need, in a fixed order."""
    need = {k for st in stats for k in SUMS_FOR[st]}
    return [k for k in ("z", "zz", "t", "tt", "tz", "min", "max") if k in need]


def _sum_terms(z: np.ndarray, t0: np.ndarray, key: str) -> np.ndarray:
    """Per-reading terms (n, s) or (n, 1) of running sum ``key``; ``t0`` (n, 1) is time since the first reading."""
    if key in ("z", "min", "max"):
        return z
    if key == "zz":
        return z * z
    if key == "t":
        return t0
    if key == "tt":
        return t0 * t0
    return t0 * z  # "tz"


def _accumulate(key: str, terms: np.ndarray) -> np.ndarray:
    """Running sums (or minima/maxima) down axis 0: sequential, so continuing from a stored running value
    (a life summary's, stacked as the first row) repeats the batch additions exactly."""
    if key == "min":
        return np.minimum.accumulate(terms, axis=0)
    if key == "max":
        return np.maximum.accumulate(terms, axis=0)
    return np.cumsum(terms, axis=0)


def _stats_from_sums(c: np.ndarray, sums: dict[str, np.ndarray], stats: list[str]) -> list[np.ndarray]:
    """Statistics (rows, s) from counts ``c`` (rows, 1) and running sums: the one formula of whole-history
    (and life-summary) mean, std, least-squares slope, min and max."""
    out = []
    sz = sums.get("z")
    mean = sz / c if sz is not None else None
    for stat in stats:
        if stat == "mean":
            v = mean
        elif stat == "std":
            v = np.sqrt(np.maximum(sums["zz"] / c - mean ** 2, 0.0))
        elif stat in ("min", "max"):
            v = sums[stat]
        else:  # slope
            st, stt, stz = sums["t"], sums["tt"], sums["tz"]
            sxx = stt - st * st / c
            sxy = stz - st * sz / c
            v = np.where(sxx > 1e-12, sxy / np.where(sxx > 1e-12, sxx, 1.0), 0.0)
        out.append(v)
    return out


def _expanding(z: np.ndarray, t: np.ndarray, stats: list[str]) -> list[np.ndarray]:
    """Whole-history statistics at every reading (n, s) per stat, from cumulative sums."""
    c = np.arange(1, len(z) + 1, dtype=float)[:, None]
    t0 = (t - t[0])[:, None]  # shift keeps the sums small (precision)
    sums = {k: _accumulate(k, _sum_terms(z, t0, k)) for k in sum_keys(stats)}
    return _stats_from_sums(c, sums, stats)


def window_block(z: np.ndarray, t: np.ndarray, spec: FeatureSpec, *, last_only: bool = False) -> np.ndarray:
    """Window features of one asset, rows in time order.

    ``z`` is (n, s) normalised sensors, ``t`` (n,) times. Returns (n, f) features for every reading,
    or (1, f) for the last reading only (the serving hot path; same values).
    Feature order per sensor: for each window size, the stats in ``spec.window_stats``; then EWMs.
    """
    n, s = z.shape
    if last_only:
        return _windows_last(z, t, np.array([0, n]), spec)
    sizes, stats, spans = spec.window_sizes, spec.window_stats, spec.ewm_spans
    per_sensor = len(sizes) * len(stats) + len(spans)
    rows = n
    out = np.empty((rows, s, per_sensor))
    col = 0
    for w in sizes:
        if w == 0:  # whole history so far: cumulative sums
            for v in _expanding(z, t, stats):
                out[:, :, col] = v
                col += 1
            continue
        pad = np.full((w - 1, s), np.nan)
        zp = np.vstack([pad, z])
        win = np.lib.stride_tricks.sliding_window_view(zp, w, axis=0).transpose(0, 2, 1)  # (n, w, s)
        tp = np.concatenate([np.full(w - 1, np.nan), t])
        tw = np.lib.stride_tricks.sliding_window_view(tp, w)  # (n, w)
        valid = ~np.isnan(tw)
        for v in _window_stats(win, tw, valid, stats):
            out[:, :, col] = v
            col += 1
    for span in spans:
        wts = _ewm_weights(span)
        length = len(wts)
        zp = np.vstack([np.full((length - 1, s), np.nan), z])
        win = np.lib.stride_tricks.sliding_window_view(zp, length, axis=0).transpose(0, 2, 1)
        out[:, :, col] = _ewm_stat(win, ~np.isnan(win[:, :, 0]), wts)
        col += 1
    return out.reshape(rows, s * per_sensor)


def _window_stats(win: np.ndarray, tw: np.ndarray, valid: np.ndarray | None, stats: list[str]) -> list[np.ndarray]:
    """Stats (rows, s) of windows ``win`` (rows, w, s) at times ``tw`` (rows, w); ``valid`` masks padding.

    Shared by the batch path (sliding windows) and the serving path (gathered trailing windows): the
    same NumPy expressions on same-shaped rows give bit-identical features, which matters because
    a tree split can sit exactly on a value (e.g. a slope of 0 over a constant window).
    ``valid=None`` means no padding (the serving path's full windows): the masks would keep every
    value as it is, so skipping them changes no bit and saves a dozen array passes per window.
    """
    if valid is None:
        cnt = np.full(len(win), win.shape[1])
        vz, tv = win, tw
    else:
        cnt = valid.sum(axis=1)  # (rows,)
        vz = np.where(valid[:, :, None], win, 0.0)
        tv = np.where(valid, tw, 0.0)
    mean = vz.sum(axis=1) / cnt[:, None]
    dev = None
    out = []
    for stat in stats:
        if stat == "mean":
            v = mean
        elif stat in ("std", "slope"):
            if dev is None:
                dev = win - mean[:, None, :]
                if valid is not None:
                    dev = np.where(valid[:, :, None], dev, 0.0)
            if stat == "std":
                v = np.sqrt((dev ** 2).sum(axis=1) / cnt[:, None])
            else:  # slope: least-squares d(z)/d(t) over the window
                tmean = tv.sum(axis=1) / cnt
                dt = tw - tmean[:, None]
                if valid is not None:
                    dt = np.where(valid, dt, 0.0)
                sxx = (dt ** 2).sum(axis=1)
                sxy = (dt[:, :, None] * dev).sum(axis=1)
                v = np.where(sxx[:, None] > 0, sxy / np.where(sxx > 0, sxx, 1.0)[:, None], 0.0)
        elif stat == "min":
            v = (win if valid is None else np.where(valid[:, :, None], win, np.inf)).min(axis=1)
        else:  # max
            v = (win if valid is None else np.where(valid[:, :, None], win, -np.inf)).max(axis=1)
        out.append(v)
    return out


def _ewm_stat(win: np.ndarray, valid: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Truncated normalised EWM (rows, s) of windows ``win`` (rows, 3*span, s); shared like ``_window_stats``."""
    ww = np.where(valid, wts[None, :], 0.0)
    return (ww[:, :, None] * np.where(valid[:, :, None], win, 0.0)).sum(axis=1) / ww.sum(axis=1)[:, None]


def _gather_windows(z: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The w-reading window ending at each asset's last reading: (m, w, s) values, (m, w) times and mask.

    Padded at the front where an asset has fewer than w readings, like the batch code's sliding
    windows, so ``_window_stats`` sees the same numbers in the same places. Padding entries hold
    some other reading's values (every use of them is masked by ``valid``; the batch holds NaN).
    """
    idx = ends[:, None] - w + np.arange(w)[None, :]  # (m, w) row numbers, oldest first
    valid = idx >= starts[:, None]
    safe = np.maximum(idx, 0)
    return z[safe], t[safe], valid


def _sequential_sum(a: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of a C-contiguous (m, L, k) block, adding in order like ``np.cumsum``.

    With k > 1 NumPy reduces a middle axis row by row (in order, and without writing the prefix
    sums); with k == 1 it would sum pairwise instead, so the cumulative sum's last element is used.
    """
    if a.shape[2] > 1:
        return a.sum(axis=1)
    return np.cumsum(a, axis=1)[:, -1]


def _expanding_last(z: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    stats: list[str], chunk: int = 64) -> list[np.ndarray]:
    """``_expanding``'s value at each asset's last reading, for m stacked assets: (m, s) per stat.

    Bit-identical to the batch code: each asset's history is gathered into a zero-padded block
    (padding in front, where adding 0.0 changes nothing) and summed in order (``_sequential_sum``),
    as the batch's cumulative sums add (a pairwise ``np.sum``/``reduceat`` differs in the last
    bits). Assets go in chunks of similar length so padding stays small.
    """
    lens = ends - starts
    m, s = len(starts), z.shape[1]
    out = [np.empty((m, s)) for _ in stats]
    if m == 1:  # one asset: its rows are the block, nothing to pad or mask (same values, same sums)
        a, b = int(starts[0]), int(ends[0])
        parts = [(np.zeros(1, dtype=np.intp), z[None, a:b], (t[a:b] - t[a])[None, :, None], None)]
    else:
        parts = []
        order = np.argsort(lens, kind="stable")
        for part in np.array_split(order, max(1, -(-m // chunk))):
            L = int(lens[part].max())
            idx = ends[part][:, None] - L + np.arange(L)[None, :]
            valid = idx >= starts[part][:, None]
            safe = np.where(valid, idx, 0)
            zc = np.where(valid[:, :, None], z[safe], 0.0)  # (c, L, s)
            t0 = np.where(valid, t[safe] - t[starts[part]][:, None], 0.0)[:, :, None]  # (c, L, 1)
            parts.append((part, zc, t0, valid))
    for part, zc, t0, valid in parts:
        sums = {}
        for key in sum_keys(stats):
            if key == "min":
                sums[key] = (zc if valid is None else np.where(valid[:, :, None], zc, np.inf)).min(axis=1)
            elif key == "max":
                sums[key] = (zc if valid is None else np.where(valid[:, :, None], zc, -np.inf)).max(axis=1)
            else:
                sums[key] = _sequential_sum(_sum_terms(zc, t0, key))
        for k, v in enumerate(_stats_from_sums(lens[part].astype(float)[:, None], sums, stats)):
            out[k][part] = v
    return out


def _windows_last(z: np.ndarray, t: np.ndarray, offsets: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Window features (m, s * per_sensor) of the last reading of each of m stacked assets.

    Asset i owns rows ``offsets[i]:offsets[i+1]`` of ``z`` (n, s) and ``t`` (n,). Vectorised across
    assets (one gather per window size); bit-identical to ``window_block``'s rows.
    """
    starts, ends = offsets[:-1], offsets[1:]
    m, s = len(starts), z.shape[1]
    per_sensor = len(spec.window_sizes) * len(spec.window_stats) + len(spec.ewm_spans)
    out = np.empty((m, s, per_sensor))
    col = 0
    one = m == 1  # the one-asset request: full windows are plain slices, no gathers or masks
    n = int(ends[0] - starts[0]) if one else 0
    for w in spec.window_sizes:
        if w == 0:
            vals = _expanding_last(z, t, starts, ends, spec.window_stats)
        elif one and n >= w:
            a = int(ends[0]) - w
            vals = _window_stats(z[None, a:a + w], t[None, a:a + w], None, spec.window_stats)
        else:
            win, tw, valid = _gather_windows(z, t, starts, ends, w)
            vals = _window_stats(win, tw, valid, spec.window_stats)
        for v in vals:
            out[:, :, col] = v
            col += 1
    for span in spec.ewm_spans:
        wts = _ewm_weights(span)
        win, _, valid = _gather_windows(z, t, starts, ends, len(wts))
        out[:, :, col] = _ewm_stat(win, valid, wts)
        col += 1
    return out.reshape(m, s * per_sensor)


# ----------------------------------------------------------------------------------------------
# Life summaries
# ----------------------------------------------------------------------------------------------
# A bounded window forgets an asset's early life, which says much about its condition (its own
# baseline, the rate it degrades at). A life summary keeps that for a few hundred bytes: the count
# and running sums (or minima/maxima) of every normalised channel over every reading since the
# asset's first, enough for ``life_stats`` of the whole life. The endpoint returns an updated
# summary with each answer; the caller stores it beside the asset and sends it back with the next
# readings. Sums continue exactly where they stopped (``_accumulate``), so a summary plus the new
# readings gives the same bits as the batch features of the whole history.
@dataclass(frozen=True)
class LifeState:
    """A life summary read from a request: running values over ``count`` readings, ``first`` to ``last``
    (times); ``sums`` maps each key of ``sum_keys(spec.life_stats)`` to a (1, channels) or (1, 1) array.
    ``count`` 0 (``NEW_LIFE``) starts a summary: the readings sent begin at the asset's first."""

    first: float
    last: float
    count: int
    sums: dict[str, np.ndarray]


NEW_LIFE = LifeState(math.nan, -math.inf, 0, {})
MAX_LIFE_COUNT = 2**53  # readings a summary can count exactly (its count is a float in the formulas)
LIFE_SCALARS = ("t", "tt")  # sums over time alone: one number, not one per channel


def life_fingerprint(spec: FeatureSpec) -> str:
    """Which model a summary belongs to: its sums are in that spec's normalised units."""
    import hashlib

    return _cached(spec, "_life_fp", lambda: hashlib.sha256(spec.to_json().encode()).hexdigest()[:16])


def _finite(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def parse_life(doc: Any, spec: FeatureSpec) -> LifeState | None:
    """A request's life summary: ``{}`` (start one) or a summary an earlier answer returned.

    Returns None when the summary was made by another model (its sums mean nothing to this one);
    raises ``FeatureError`` naming the key when it is malformed.
    """
    if not isinstance(doc, dict):
        raise FeatureError("must be an object: {} to start a life summary, or the 'life' of an earlier answer")
    if not doc:
        return NEW_LIFE
    keys = sum_keys(spec.life_stats)
    expected = {"model", "first", "last", "count", *keys}
    unknown = sorted(set(doc) - expected)
    if unknown:
        raise FeatureError(f"{unknown[0]}: unknown key; a life summary has {sorted(expected)}")
    missing = sorted(expected - set(doc))
    if "model" not in missing and not isinstance(doc["model"], str):
        raise FeatureError("model: must be a string")
    if "model" in doc and doc["model"] != life_fingerprint(spec):
        return None
    if missing:
        raise FeatureError(f"{missing[0]}: missing")
    for k in ("first", "last"):
        if not _finite(doc[k]):
            raise FeatureError(f"{k}: must be a finite number")
    count = doc["count"]
    if type(count) is not int or not 1 <= count <= MAX_LIFE_COUNT:
        raise FeatureError(f"count: must be a whole number from 1 to {MAX_LIFE_COUNT}")
    if doc["first"] > doc["last"]:
        raise FeatureError("first: after last")
    width = len(spec.channels)
    sums = {}
    for k in keys:
        v = doc[k]
        if k in LIFE_SCALARS:
            if not _finite(v):
                raise FeatureError(f"{k}: must be a finite number")
            sums[k] = np.array([[float(v)]])
        else:
            if not isinstance(v, list) or len(v) != width or not all(_finite(x) for x in v):
                raise FeatureError(f"{k}: must be a list of {width} finite numbers")
            sums[k] = np.asarray(v, dtype=float)[None, :]
    return LifeState(float(doc["first"]), float(doc["last"]), count, sums)


def life_document(state: LifeState, spec: FeatureSpec) -> dict[str, Any]:
    """The JSON form of a summary (what an answer returns and the next request sends back)."""
    doc: dict[str, Any] = {"model": life_fingerprint(spec), "first": state.first, "last": state.last,
                           "count": state.count}
    for k, v in state.sums.items():
        doc[k] = float(v[0, 0]) if k in LIFE_SCALARS else v[0].tolist()
    return doc


def life_overflows(state: LifeState, features: np.ndarray) -> bool:
    """Whether an updated summary or its features (the life columns of one row) left the float range
    (float32 for the features, as the models read them): only a summary no endpoint made can do that."""
    big = float(np.finfo(np.float32).max)
    return not (all(np.isfinite(v).all() for v in state.sums.values())
                and np.isfinite(features).all() and (np.abs(features) <= big).all())


def _life_block(z: np.ndarray, t: np.ndarray, offsets: np.ndarray, spec: FeatureSpec,
                states: list[LifeState | None]) -> tuple[np.ndarray, list[LifeState | None]]:
    """Life features (m, channels * len(life_stats)) of m stacked assets and their updated summaries.

    Asset i owns rows ``offsets[i]:offsets[i+1]`` of ``z`` (n, channels) and ``t`` (n,), time-ordered;
    ``states[i]`` None leaves its features missing (NaN). A summary takes in the readings after its
    ``last`` time (all of them for ``NEW_LIFE``), so resending a reading counts it once.
    """
    stats = spec.life_stats
    keys = sum_keys(stats)
    m, s = len(states), z.shape[1]
    out = np.full((m, s, len(stats)), np.nan)
    updated: list[LifeState | None] = [None] * m
    for i, st in enumerate(states):
        if st is None:
            continue
        a, b = int(offsets[i]), int(offsets[i + 1])
        lo = a if st.count == 0 else a + int(np.searchsorted(t[a:b], st.last, side="right"))
        first = float(t[a]) if st.count == 0 else st.first
        t0 = (t[lo:b] - first)[:, None]
        sums = {}
        for k in keys:
            terms = _sum_terms(z[lo:b], t0, k)
            if st.count:
                terms = np.vstack([st.sums[k], terms])
            sums[k] = _accumulate(k, terms)[-1:]
        count = st.count + (b - lo)
        for q, v in enumerate(_stats_from_sums(np.array([[float(count)]]), sums, stats)):
            out[i, :, q] = v[0]
        updated[i] = LifeState(first, float(t[b - 1]) if b > lo else st.last, count, sums)
    return out.reshape(m, s * len(stats)), updated


def _assemble(spec: FeatureSpec, cols: Any, z: np.ndarray, reg: np.ndarray, win: np.ndarray | None,
              t: np.ndarray | None, life: np.ndarray | None = None) -> np.ndarray:
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
    return np.hstack(parts) if parts else np.zeros((len(z), 0))


def transform(df: pd.DataFrame, spec: FeatureSpec, life: bool = True) -> pd.DataFrame:
    """Features for every row of validated readings (assets contiguous, time-ordered).

    Returns a frame with ``spec.feature_names`` columns, index aligned with ``df``. Life-summary
    features (``spec.life_stats``) are those of each reading's whole history so far: what a caller
    that has kept the asset's summary since its first reading sends; ``life=False`` leaves them
    missing, as for a caller that sends none (``with_and_without_life`` trains on both).
    """
    z, reg = _pointwise(spec, df)
    win = t = block = None
    if spec.window_sizes:
        ids = df[spec.id_column].to_numpy()
        t = df[spec.time_column].to_numpy(dtype=float)
        bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
        blocks = [window_block(z[a:b], t[a:b], spec) for a, b in itertools.pairwise(bounds)]
        win = np.vstack(blocks)
        if spec.life_stats and life:
            block = np.vstack([np.stack(_expanding(z[a:b], t[a:b], spec.life_stats), axis=2).reshape(b - a, -1)
                               for a, b in itertools.pairwise(bounds)])
        elif spec.life_stats:
            block = _missing_life(len(df), spec)
    x = _assemble(spec, df, z, reg, win, t, block)
    return pd.DataFrame(x, columns=spec.feature_names, index=df.index)


def _missing_life(n: int, spec: FeatureSpec) -> np.ndarray:
    """The life features (n, k) of n rows whose callers sent no summary: all missing."""
    return np.full((n, len(life_names(spec))), np.nan)


def with_and_without_life(X: np.ndarray, y: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training rows for a model with life-summary features: every row twice, with its life features and
    with them missing (a caller that sends no summary), so one model answers both. Unchanged without."""
    k = len(life_names(spec))
    if not k:
        return X, y
    bare = X.copy()
    bare[:, -k:] = np.nan
    return np.vstack([X, bare]), np.concatenate([y, y])


def transform_last(cols: dict[str, np.ndarray], offsets: np.ndarray, spec: FeatureSpec,
                   life: list[LifeState | None] | None = None) -> np.ndarray:
    """Features (m, f) of the LAST reading of each of m assets whose readings are stacked.

    ``cols`` maps column name -> 1-D array over all stacked readings; asset i owns rows
    ``offsets[i]:offsets[i+1]`` (non-empty, validated, sorted by time). Each row equals the batch
    ``transform`` features of that asset's last reading (parity-tested on every FD001 test unit).
    Only trailing windows are read, so a longer history than ``spec.history_needed`` changes nothing.
    Vectorised across assets: one gather per window size, one ``reduceat`` per whole-history sum.
    Life-summary features come from ``life`` (one state or None per asset; None: all missing).
    """
    return transform_last_life(cols, offsets, spec, life)[0]


def transform_last_life(cols: dict[str, np.ndarray], offsets: np.ndarray, spec: FeatureSpec,
                        life: list[LifeState | None] | None = None
                        ) -> tuple[np.ndarray, list[LifeState | None] | None]:
    """``transform_last`` and each asset's updated life summary (None where it sent none)."""
    offsets = np.asarray(offsets, dtype=np.intp)
    last = offsets[1:] - 1
    z, reg = _pointwise(spec, cols)
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


def clip_rul(p: np.ndarray, cap: float | None) -> np.ndarray:
    """Predicted RUL as served and scored: at least 0, at most the label ``cap`` (None: no upper bound)."""
    return np.clip(p, 0.0, cap if cap else None)


def rul_labels(df: pd.DataFrame, profile: Profile, cap: float | None) -> np.ndarray:
    """Run-to-failure RUL at each row: ``max(time of its asset) - time``, clipped at ``cap``."""
    t = df[profile.time_column].to_numpy(dtype=float)
    last = df.groupby(profile.id_column, sort=False)[profile.time_column].transform("max").to_numpy(dtype=float)
    rul = last - t
    return np.minimum(rul, cap) if cap is not None else rul


def baseline_matrix(df: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """The baseline's inputs: the raw readings of the current row (time, settings, sensors, categories)."""
    cols = [c for c in (profile.time_column, *profile.setting_columns, *profile.sensor_columns) if c]
    out = df[cols].astype(float).copy()
    for col, levels in profile.categorical_columns.items():
        for lvl in levels:
            out[f"{col}_{lvl}"] = (df[col] == lvl).astype(float)
    return out


def nasa_score(pred: np.ndarray, true: np.ndarray) -> float:
    """PHM08 asymmetric score: sum of exp(d/10)-1 for late (d>0) and exp(-d/13)-1 for early, d=pred-true."""
    d = np.asarray(pred, dtype=float) - np.asarray(true, dtype=float)
    return float(np.sum(np.where(d > 0, np.exp(d / 10.0) - 1.0, np.exp(-d / 13.0) - 1.0)))


def finite_or_raise(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise FeatureError(f"{what} is not finite")
    return x
