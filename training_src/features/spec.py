"""The fitted feature specification: everything learned from training data that inference needs.

``FeatureSpec`` is JSON (``to_json``/``from_json``); ``feature_names`` gives the columns of the feature
matrix in order, ``life_names`` the life-summary columns at its end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training_src.profiles import Profile, parse_profile

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


def two_models(spec: FeatureSpec) -> bool:
    """Whether training fits two models (``candidates.pair``: a window model and a life model) rather than
    one on every row with and without its life features: a spec with life features whose profile says
    ``windows.life_models: "two"`` (the default)."""
    windows = spec.profile_obj.windows
    return bool(life_names(spec)) and windows is not None and windows.life_models == "two"

