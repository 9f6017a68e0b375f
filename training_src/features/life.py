"""Life summaries: the maths (``LifeState``, taking new readings into the running sums).

The summary's JSON form (reading it from a request, writing it into an answer) belongs to the request
codec (``predmaint_serving/codec.py``); this module only computes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .spec import FeatureError, FeatureSpec, _cached
from .windows import _accumulate, _stats_from_sums, _sum_terms, sum_keys


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


class LifeOverflowError(FeatureError):
    """An updated summary (of asset ``index`` of the request) or its features left the float range: only a
    summary no endpoint made can do that."""

    def __init__(self, index: int):
        super().__init__(f"asset {index}: its life summary overflows with the readings sent")
        self.index = index


def life_fingerprint(spec: FeatureSpec) -> str:
    """Which model a summary belongs to: its sums are in that spec's normalised units."""
    return _cached(spec, "_life_fp", lambda: hashlib.sha256(spec.to_json().encode()).hexdigest()[:16])


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

