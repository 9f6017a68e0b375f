"""RUL labels, the served clipping of predictions, the baseline's inputs and the PHM08 score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training_src.profiles import Profile


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
    # ``df[cols]`` is a new frame already: cast in place of a further copy (float64 columns are not copied twice)
    out = df[cols].astype(float, copy=False)
    for col, levels in profile.categorical_columns.items():
        for lvl in levels:
            out[f"{col}_{lvl}"] = (df[col] == lvl).astype(float)
    return out


def nasa_score(pred: np.ndarray, true: np.ndarray) -> float:
    """PHM08 asymmetric score: sum of exp(d/10)-1 for late (d>0) and exp(-d/13)-1 for early, d=pred-true."""
    d = np.asarray(pred, dtype=float) - np.asarray(true, dtype=float)
    return float(np.sum(np.where(d > 0, np.exp(d / 10.0) - 1.0, np.exp(-d / 13.0) - 1.0)))

