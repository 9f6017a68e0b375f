"""Raw readings against the data contract: numeric coercion, NaN/inf policy, ordering and the gap policy.

Ids, times and labels must be present. An isolated gap in a setting or sensor (at most ``MAX_GAP``
consecutive missing readings of one asset) is filled with the asset's previous reading (the next one at
the start of a history); longer gaps, a column missing for a whole asset, inf, and any gap in row-wise
(classification) data are errors (``FeatureError``, naming the row or asset and the column).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from training_src.profiles import Profile

from .spec import FeatureError

MAX_GAP = 3


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


def finite_or_raise(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise FeatureError(f"{what} is not finite")
    return x
