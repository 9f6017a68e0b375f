"""RUL prediction intervals and the probability of failure within a horizon (Mondrian split conformal).

One copy of the logic for both sides: ``train.py`` fits a calibration from out-of-fold predictions on
training assets (``fit``) and stores the document in ``model_meta.json`` (``"intervals"``); the
endpoint loads it (``Calibration``) and answers each RUL with ``[lower, upper]`` and, when a request
names a horizon ``h``, ``P(RUL <= h)``.

Why this method (docs/contract.md "Intervals"): the residual ``true RUL - predicted RUL`` of a
run-to-failure asset depends strongly on the prediction (near the label cap the model cannot tell
100 cycles left from 300; near failure it is sharp), so one residual distribution would be too wide
late in life and too narrow early. The calibration rows are therefore binned by predicted RUL
(Mondrian conformal: one residual distribution per bin) and an interval is
``[max(0, pred + q_lo), pred + q_hi]`` with the bin's residual quantiles. No model is refitted and
no distributional assumption is made; the bins' quantiles come from assets the model producing
them never saw.

The calibration set is viewed as the test set is: the project's test protocol cuts each held-out
asset at a reading drawn uniformly among those with at least ``min_readings`` readings of history
(``preprocess.truncation_cuts``) and scores its last reading. Every eligible reading of a calibration
asset is such a cut, so each reading gets weight ``1 / (eligible readings of its asset)``: the weighted
rows are exactly the expectation of that protocol over all cuts (each asset counts once), with no
sampling noise. Residuals use the true, uncapped RUL: a prediction at the cap means "at least this
much", and the interval says how much more.

Document (``FORMAT``): ``edges`` (interior bin edges on the predicted RUL, ascending), per bin
``quantiles`` (the weighted residual quantiles at ``GRID`` levels), ``assets`` and ``rows``; ``level``
and per-bin ``offsets`` ``[q_lo, q_hi]`` for that level; ``check``: coverage and mean width of the
same procedure when the assets are split in folds (calibrate on the others, score each fold's assets),
an estimate from training data only. NumPy only (the SageMaker containers' NumPy is older).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT = "predmaint-intervals/1"
DEFAULT_LEVEL = 0.8
#: quantile levels stored per bin: every percent (P(RUL <= h) resolution; linear in between)
GRID = np.linspace(0.0, 1.0, 101)
MAX_BINS = 10
MIN_ASSETS_PER_BIN = 10  # fewer assets than 10 per bin: fewer bins (a bin's quantiles need assets)
CHECK_FOLDS = 5


class CalibrationError(ValueError):
    """Calibration data or a stored calibration document that cannot be used."""


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Inverted-CDF quantiles of ``values`` (n,) with ``weights`` (n,) at ``levels`` (k,) in [0, 1]:
    the smallest value whose weighted share at or below it reaches the level (level 0: the minimum)."""
    order = np.argsort(values, kind="stable")
    v, cdf = values[order], np.cumsum(weights[order])
    cdf = cdf / cdf[-1]
    idx = np.searchsorted(cdf, np.asarray(levels) - 1e-12, side="left")
    return v[np.clip(idx, 0, len(v) - 1)]


def bin_of(edges: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Bin index of each predicted RUL: the number of interior ``edges`` at or below it."""
    return np.searchsorted(edges, pred, side="right")


def tail_levels(level: float) -> tuple[float, float]:
    """Quantile levels ``((1 - level) / 2, (1 + level) / 2)`` of the interval's two residual bounds.

    No split-conformal finite-sample correction ((n+1)/n): it is meant for n exchangeable scores,
    but a bin here holds weighted rows of most calibration assets (every asset's predictions sweep the
    bins as it ages), so it widened an 80 % interval to about 82 % in nominal terms, and the
    cross-conformal predictions (each from a model fitted on 4/5 of the assets) already err wide.
    Measured by nested cross-validation on training engines (``bench/intervals_cv.py``): with the
    correction the 80 % interval covered 82.8 % / 84.4 % of held-out FD001 engines (summary /
    window alone), without it 79.2 % / 82.4 %."""
    a = (1.0 - level) / 2.0
    return a, 1.0 - a


def interval_weights(asset: np.ndarray) -> np.ndarray:
    """Weight of each row: 1 / (rows of its asset), so every asset counts once (one test cut each)."""
    _, inverse, counts = np.unique(asset, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def _fit_bins(pred: np.ndarray, resid: np.ndarray, asset: np.ndarray, w: np.ndarray, level: float,
              n_bins: int) -> dict[str, Any]:
    """The per-bin residual distributions (the document minus ``check``)."""
    # equal-weight bins of the predictions; ties (many predictions at the cap) merge bins
    edges = np.unique(weighted_quantiles(pred, w, np.linspace(0, 1, n_bins + 1)[1:-1])) if n_bins > 1 \
        else np.zeros(0)
    edges = edges[edges > pred.min()]  # an edge at the minimum would leave its lower bin empty
    b = bin_of(edges, pred)
    bins = []
    for k in range(len(edges) + 1):
        m = b == k
        if not m.any():  # edges come from the predictions, so only a tie-collapsed bin is empty
            raise CalibrationError("empty calibration bin")
        q = weighted_quantiles(resid[m], w[m], GRID)
        n_assets = len(np.unique(asset[m]))
        lo, hi = tail_levels(level)
        bins.append({"quantiles": [round(float(x), 3) for x in q], "assets": n_assets, "rows": int(m.sum()),
                     "offsets": [round(float(np.interp(lo, GRID, q)), 3), round(float(np.interp(hi, GRID, q)), 3)]})
    return {"format": FORMAT, "level": level, "edges": [round(float(e), 3) for e in edges], "bins": bins}


def fit(pred: np.ndarray, true_rul: np.ndarray, asset: np.ndarray, level: float = DEFAULT_LEVEL,
        n_bins: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Calibration document from held-out predictions.

    ``pred`` (n,) the predictions as served (clipped to [0, cap]) of rows whose assets the predicting
    model never saw; ``true_rul`` (n,) their true, uncapped RUL; ``asset`` (n,) the asset of each row.
    Rows are the eligible test cuts (see the module docstring). ``n_bins`` defaults to
    ``min(MAX_BINS, assets // MIN_ASSETS_PER_BIN)`` (at least 1). Raises ``CalibrationError``.
    """
    pred, true_rul, asset = np.asarray(pred, float), np.asarray(true_rul, float), np.asarray(asset)
    if not (len(pred) == len(true_rul) == len(asset)) or len(pred) == 0:
        raise CalibrationError(f"calibration needs equal, non-empty pred/true/asset arrays, got "
                               f"{len(pred)}/{len(true_rul)}/{len(asset)}")
    if not (np.isfinite(pred).all() and np.isfinite(true_rul).all()):
        raise CalibrationError("calibration predictions and true RUL must be finite")
    if not 0.0 < level < 1.0:
        raise CalibrationError(f"interval level {level} must lie strictly between 0 and 1")
    assets = np.unique(asset)
    if n_bins is None:
        n_bins = max(1, min(MAX_BINS, len(assets) // MIN_ASSETS_PER_BIN))
    resid = true_rul - pred
    w = interval_weights(asset)
    doc = _fit_bins(pred, resid, asset, w, level, n_bins)
    doc["check"] = _check(pred, true_rul, asset, level, n_bins, seed)
    return doc


def _check(pred: np.ndarray, true_rul: np.ndarray, asset: np.ndarray, level: float, n_bins: int,
           seed: int) -> dict[str, Any] | None:
    """Coverage and mean width when each fold of assets is scored by a calibration of the others
    (same weights: each asset once). None with fewer than two assets per fold."""
    assets = np.unique(asset)
    folds = min(CHECK_FOLDS, len(assets) // 2)
    if folds < 2:
        return None
    fold_of = dict(zip(np.random.default_rng(seed).permutation(assets).tolist(),
                       np.arange(len(assets)) % folds, strict=True))
    f = np.asarray([fold_of[a] for a in asset.tolist()])
    covered = width = total = 0.0
    for k in range(folds):
        cal, test = f != k, f == k
        part = _fit_bins(pred[cal], true_rul[cal] - pred[cal], asset[cal], interval_weights(asset[cal]), level,
                         max(1, min(n_bins, len(np.unique(asset[cal])) // MIN_ASSETS_PER_BIN)))
        c = Calibration.from_doc(part)
        lo, hi = c.interval(pred[test])
        w = interval_weights(asset[test])
        covered += float(np.sum(w * ((true_rul[test] >= lo) & (true_rul[test] <= hi))))
        width += float(np.sum(w * (hi - lo)))
        total += float(np.sum(w))
    return {"folds": folds, "coverage": round(covered / total, 4), "mean_width": round(width / total, 3)}


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration document: intervals and horizon probabilities for predicted RULs."""

    level: float
    edges: np.ndarray  # (B-1,)
    quantiles: np.ndarray  # (B, len(GRID)) residual quantiles per bin, ascending
    offsets: np.ndarray  # (B, 2) [q_lo, q_hi] for ``level``
    life: Calibration | None = None  # the calibration of answers made with a life summary (``"life"``)
    #: ``quantiles`` as lists of Python floats (the same doubles), for ``cdf_rows``
    rows: list[list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", self.quantiles.tolist())

    @classmethod
    def from_doc(cls, doc: Any) -> Calibration:
        """Check and load a document (``fit``'s output); raises ``CalibrationError`` naming what is wrong."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CalibrationError(f"intervals: not a {FORMAT} document")
        try:
            level = float(doc["level"])
            edges = np.asarray(doc["edges"], dtype=float).reshape(-1)
            bins = doc["bins"]
            quantiles = np.asarray([b["quantiles"] for b in bins], dtype=float)
            offsets = np.asarray([b["offsets"] for b in bins], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"intervals: malformed document ({exc})") from None
        if not 0.0 < level < 1.0 or quantiles.shape != (len(edges) + 1, len(GRID)) or offsets.shape != (len(bins), 2):
            raise CalibrationError("intervals: level, edges, quantiles and offsets disagree in shape or range")
        if not (np.isfinite(quantiles).all() and np.isfinite(offsets).all() and np.isfinite(edges).all()):
            raise CalibrationError("intervals: non-finite values")
        if (np.diff(edges) <= 0).any() or (np.diff(quantiles, axis=1) < 0).any() or (offsets[:, 0] > offsets[:, 1]).any():
            raise CalibrationError("intervals: edges must increase, quantiles and offsets must not decrease")
        life = cls.from_doc(doc["life"]) if doc.get("life") is not None else None
        return cls(level, edges, quantiles, offsets, life)

    def of(self, with_life: bool) -> Calibration:
        """The calibration of answers made with (``life``, when calibrated) or without a life summary."""
        return self.life if with_life and self.life is not None else self

    def interval(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds (n,) of predicted RULs ``pred`` (n,); the lower bound is at least 0."""
        pred = np.asarray(pred, dtype=float)
        off = self.offsets[bin_of(self.edges, pred)]
        return np.maximum(pred + off[:, 0], 0.0), np.maximum(pred + off[:, 1], 0.0)

    def expected_rul(self, pred: np.ndarray) -> np.ndarray:
        """The true (uncapped) RUL to expect (n,) for predicted RULs ``pred`` (n,): the prediction plus
        the mean calibration residual of its bin (the mean of the distribution the stored quantiles
        give, trapezoid over the percent levels), at least 0. A capped model's answer for the true-RUL
        protocol without a second model: near the cap it adds what the calibration engines had left
        beyond the cap on average. Chosen by grouped CV on training engines (``bench/true_rul_cv.py``)."""
        pred = np.asarray(pred, dtype=float)
        q = self.quantiles[bin_of(self.edges, pred)]
        mean = (q[:, 0] / 2 + q[:, 1:-1].sum(axis=1) + q[:, -1] / 2) / (len(GRID) - 1)
        return np.maximum(pred + mean, 0.0)

    def failure_probability(self, pred: np.ndarray, horizon: np.ndarray) -> np.ndarray:
        """P(RUL <= horizon) (n,) for predicted RULs ``pred`` (n,) and horizons (n,) (cycles, >= 0):
        the bin's weighted share of calibration residuals r with ``pred + r <= horizon``, linear
        between the stored percent levels; non-decreasing in the horizon."""
        pred, horizon = np.asarray(pred, dtype=float), np.asarray(horizon, dtype=float)
        return np.asarray(cdf_rows(self.rows, bin_of(self.edges, pred).tolist(), (horizon - pred).tolist()),
                          dtype=float)


_GRID = GRID.tolist()  # the same doubles as Python floats (cdf_rows)


def cdf_rows(rows: list[list[float]], row: list[int], x: list[float]) -> list[float]:
    """Share at or below ``x[i]`` of the distribution given by its quantiles ``rows[row[i]]`` (each a
    non-decreasing list at ``GRID`` levels): 0 below the first quantile, 1 at or above the last, else
    linear from the level of the last quantile at or below ``x[i]`` (every level whose quantile equals
    it is reached at ``x[i]``) towards the next level.

    Plain floats and ``bisect`` on lists, not NumPy: a request has 1 to 1,000 instances, and per-element
    NumPy calls (the earlier loop: ~2.5 us an instance) or a dozen whole-array NumPy calls (~1-3 us
    each, whatever the length) cost more than this below several hundred instances (measured:
    ``bench/serving.py`` and docs/performance.md). Python floats are IEEE doubles with NumPy's float64
    arithmetic, so the operations here, in this order, give the bit-identical values:
    ``frac = (x - lo) / (hi - lo)`` (0 where ``hi <= lo``), ``GRID[j-1] + frac * (GRID[j] - GRID[j-1])``,
    clamped to [0, 1]."""
    out = []
    for k, v in zip(row, x, strict=True):
        q = rows[k]
        if v < q[0]:
            out.append(0.0)
        elif v >= q[-1]:
            out.append(1.0)
        else:
            j = bisect.bisect_right(q, v)  # q[j-1] <= v < q[j]
            lo, hi = q[j - 1], q[j]
            frac = 0.0 if hi <= lo else (v - lo) / (hi - lo)
            out.append(min(1.0, max(0.0, _GRID[j - 1] + frac * (_GRID[j] - _GRID[j - 1]))))
    return out


def is_valid_horizon(value: Any) -> bool:
    """A horizon is a finite number of cycles >= 0 (JSON booleans are not numbers)."""
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:  # an integer beyond the float range
        return False
