"""Fitting the feature spec on training rows: regimes, normalisation, kept sensors, derived-feature
scaling and the health index (``fit_spec``), or another window/cap choice of a fitted one (``with_choice``)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from training_src.profiles import Profile

from .labels import rul_labels
from .regimes import _standardise_settings, assign_regimes, detect_regimes, fit_health_index
from .spec import STD_FLOOR, FeatureSpec, feature_names
from .transform import _derive, _pointwise

_PROFILE_CAP = object()  # fit_spec's default cap: the profile's


def fit_spec(train: pd.DataFrame, profile: Profile, seed: int = 0, *, window_sizes: list[int] | None = None,
             cap: Any = _PROFILE_CAP, exclusive: Any = None) -> FeatureSpec:
    """Learn regimes, normalisation, kept sensors, derived-feature scaling and the health index from
    training rows.

    ``train`` must already have passed ``validate_readings``. ``window_sizes`` and ``cap`` override
    the profile's (cross-validation passes each candidate; ``cap=None`` means uncapped labels).
    ``exclusive``: a context manager (a lock) held around the two fits that use BLAS, k-means and the
    health index's ridge regression, for callers that fit several specs in threads: scikit-learn's k-means
    sets the process's BLAS threads while it runs, and a BLAS sum's order depends on its threads, so these
    fits run one at a time (as in a sequential loop) while the rest of the fits run side by side.
    """
    exclusive = exclusive if exclusive is not None else nullcontext()
    settings = train[list(profile.setting_columns)].to_numpy(dtype=float) if profile.setting_columns \
        else np.zeros((len(train), 0))
    center, scale = _standardise_settings(settings) if settings.shape[1] else (np.zeros(0), np.zeros(0))
    std_settings = (settings - center) / scale if settings.shape[1] else settings
    if profile.regimes and settings.shape[1]:
        with exclusive:
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
    return _finish_spec(spec, train, profile, exclusive=exclusive)


def _finish_spec(spec: FeatureSpec, train: pd.DataFrame, profile: Profile,
                 norm: tuple[np.ndarray, np.ndarray] | None = None, exclusive: Any = None) -> FeatureSpec:
    """Fit the health index (if the profile asks for one) for the spec's cap and name the features;
    ``norm``: ``normalised(spec, train)`` when the caller has it already; ``exclusive``: see ``fit_spec``."""
    w = profile.windows
    if w and w.health_index and spec.sensors and profile.time_column:
        z, reg = _pointwise(spec, train, norm)
        y = rul_labels(train, profile, spec.label_cap)
        with exclusive if exclusive is not None else nullcontext():
            weights, bias = fit_health_index(z, reg, y, spec.n_regimes)
        spec.hi_weights, spec.hi_bias = weights.tolist(), bias.tolist()
    spec.feature_names = feature_names(spec)
    return spec


def with_choice(base: FeatureSpec, train: pd.DataFrame, profile: Profile, window_sizes: list[int],
                cap: float | None, norm: tuple[np.ndarray, np.ndarray] | None = None) -> FeatureSpec:
    """``base`` (fitted on ``train``) with other window sizes and label cap: regimes and normalisation
    are kept (they do not depend on either), the health index is refitted for the cap. Equals
    ``fit_spec(train, profile, window_sizes=..., cap=...)`` without repeating the regime search.
    ``norm``: ``normalised(base, train)`` when the caller has it (the same for every window and cap)."""
    spec = FeatureSpec(**{**asdict(base), "window_sizes": list(window_sizes), "label_cap": cap,
                          "hi_weights": [], "hi_bias": [], "feature_names": []})
    return _finish_spec(spec, train, profile, norm)


def with_windows(spec: FeatureSpec, window_sizes: list[int]) -> FeatureSpec:
    """``spec`` with other window sizes and everything else kept (regimes, normalisation, the health
    index, the cap): the windows are computed from the normalised signals, never fitted, so this equals
    ``with_choice(base, train, profile, window_sizes, spec.label_cap)`` for the ``base`` and ``train``
    ``spec`` came from, without refitting the health index."""
    out = FeatureSpec(**{**asdict(spec), "window_sizes": list(window_sizes), "feature_names": []})
    out.feature_names = feature_names(out)
    return out
