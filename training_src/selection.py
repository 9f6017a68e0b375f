"""Choose the bounded window W and the RUL label cap by grouped cross-validation on training assets.

Used by preprocessing when the profile lists candidates (``windows.cv_sizes``, ``label.cv_caps``).
The protocol imitates the test protocol and the callers the model will serve:

* assets are split into ``FOLDS`` groups; everything (regimes, normalisation, health index, model) is
  fitted on the other groups' assets only;
* each validation asset is cut at ``CUTS`` random readings, uniform from one full window (the largest
  candidate W, or the whole asset if it is shorter) to its end (the C-MAPSS test protocol), and the
  caller is assumed to send only its last ``max(cv_sizes)`` readings before the cut;
* the last reading before each cut is scored against the true RUL ("uncapped") and against the RUL
  capped at the profile's default cap ("capped", the protocol most published results use).

The scoring model is a fixed, cheap XGBoost regressor (the tuned candidates come later, in
training): the choice compares inputs and targets, not algorithms.

Rules (one-standard-error rules, so that noise does not decide):
* W: the smallest candidate whose capped RMSE is within one standard error of the best one
  (fewer readings to send for the same accuracy);
* cap: among the candidates whose capped RMSE is within one standard error of the best, the one
  with the lowest uncapped RMSE (a cap that helps the true-RUL protocol without hurting the capped one).

Standard errors are over assets (the cuts of one asset are not independent): the per-asset mean
squared errors' standard error, carried to the RMSE by the delta method.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
import pandas as pd

from training_src import features as F
from training_src.profiles import Profile
from training_src.threads import parallel, trim_malloc

FOLDS = 3
CUTS = 5
STRIDE = 2  # the proxy model trains on every second reading of each asset (neighbours are near copies)
#: a proxy fit reads at most about this many rows: above it the stride grows with the fold's rows, so the
#: choice costs the same on a large fleet as on FD002 (whose folds, ~28,500 rows, keep STRIDE)
PROXY_MAX_ROWS = 20_000
PROXY = {"max_depth": 5, "eta": 0.1, "min_child_weight": 16.0, "subsample": 0.8, "colsample_bytree": 0.6,
         "tree_method": "hist", "objective": "reg:squarederror", "nthread": 1}
PROXY_ROUNDS = 200


def folds(ids: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint groups of asset ids (a seeded permutation of the unique ids, split evenly)."""
    assets = pd.unique(ids)
    perm = np.random.default_rng(seed).permutation(len(assets))
    return [assets[p] for p in np.array_split(perm, k)]


def cut_views(df: pd.DataFrame, profile: Profile, send: int, min_cut: int, seed: int
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Test-like truncated views of the assets in ``df``: ``CUTS`` cuts per asset, each keeping the last
    ``send`` readings before the cut.

    Returns (stacked raw columns, offsets (m+1,), true RUL at each cut (m,), asset of each cut (m,)).
    """
    rng = np.random.default_rng(seed)
    idc, tc = profile.id_column, profile.time_column
    ids = df[idc].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    rows, lens, true, owner = [], [], [], []
    t = df[tc].to_numpy(dtype=float)
    for a, b in itertools.pairwise(bounds):
        n = b - a
        for c in rng.integers(min(min_cut, n), n + 1, size=CUTS):
            lo = max(a, a + c - send)
            rows.append(np.arange(lo, a + c))
            lens.append(a + c - lo)
            true.append(t[b - 1] - t[a + c - 1])
            owner.append(ids[a])
    idx = np.concatenate(rows)
    cols = {c: df[c].to_numpy()[idx] for c in df.columns}
    return cols, np.r_[0, np.cumsum(lens)], np.asarray(true), np.asarray(owner)


def proxy_stride(rows: int) -> int:
    """Every how many readings of each asset a proxy fit on ``rows`` training rows reads: ``STRIDE``, or
    more above ``PROXY_MAX_ROWS * STRIDE`` rows (the smallest stride that keeps about that many)."""
    return max(STRIDE, -(-rows // PROXY_MAX_ROWS))


def _fit_predict(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, seed: int) -> np.ndarray:
    import xgboost as xgb

    # QuantileDMatrix keeps the rows' histogram bins alone (1 byte per value), not DMatrix's sparse page (a
    # float and a column index per value) beside the float32 copy: two proxy fits run at once and their
    # matrices are a share of preprocessing's peak; ``hist`` grows the same trees from either (the bins are
    # cut from the same sketch: candidates/xgb.py fits the same way, and a test compares the boosters)
    dtrain = xgb.QuantileDMatrix(X.astype(np.float32), label=y, nthread=PROXY["nthread"])
    booster = xgb.train({**PROXY, "seed": seed}, dtrain, PROXY_ROUNDS)
    del dtrain
    return np.clip(booster.inplace_predict(Xv.astype(np.float32)), 0.0, None)


#: the spec fits (regimes' k-means, the health index's ridge regression) run one at a time, never beside
#: each other: BLAS sums in an order that depends on the threads it uses for a call, and scikit-learn's
#: k-means lowers the process's BLAS threads while it runs (``threadpool_limits``, process-wide: two at
#: once can leave it lowered for the rest of the run, seen as last-bit changes of the final spec's
#: health-index weights on FD002 x4). Serialised, each fit runs as in a sequential loop.
BLAS = threading.Lock()


class Fold:
    """One fold's fitted state, shared by every candidate scored on it: its training rows ``tr``, the spec
    fitted on them (``base``: regimes, normalisation), the rows' ``features.normalised`` values under it
    (``norm``) and those of the fold's cut views (``view_norm``), and per label cap the spec with that
    cap's health index and the index's values on the rows and on the views (``health_index``)."""

    def __init__(self, tr: pd.DataFrame, base: F.FeatureSpec, view_cols: dict[str, np.ndarray]):
        self.base = base
        # 8 bytes per fold row and sensor (and per view row), for as long as the choice runs
        self.norm = F.normalised(base, tr)
        self.view_norm = F.normalised(base, view_cols)
        # past this point the fold's settings and sensors are read through ``norm`` alone: ``tr`` keeps the
        # columns the health index's labels and the proxy's rows still read (``Fold.columns``), not a copy of
        # every raw column for as long as the choice runs
        self.tr = tr[self.columns(base, tr)]
        self._hi: dict[float | None, tuple[F.FeatureSpec, np.ndarray | None, np.ndarray | None]] = {}

    @staticmethod
    def columns(spec: F.FeatureSpec, tr: pd.DataFrame) -> list[str]:
        """The columns of ``tr`` a fold reads once it has ``norm``: the asset and time (labels, windows), the
        derived features' inputs and the categorical columns (``transform_rows`` reads them raw)."""
        used = [spec.id_column, spec.time_column, *(c for d in spec.derived for c in d.get("columns", ())),
                *(d.get("limit_by") for d in spec.derived), *spec.categorical]
        return [c for c in dict.fromkeys(used) if c and c in tr.columns]

    def health_index(self, profile: Profile, cap: float | None
                     ) -> tuple[F.FeatureSpec, np.ndarray | None, np.ndarray | None]:
        """(the spec with ``cap`` and its health index, the index at each training row, at each view row);
        fitted once per cap: the index depends on the cap alone, not on the window (every window size
        tried at one cap reads the same index, as ``with_choice`` would refit it, bit for bit)."""
        with BLAS:  # the health index's ridge fit, one at a time (see BLAS); a second caller waits for it
            got = self._hi.get(cap)
            if got is None:
                spec = F.with_choice(self.base, self.tr, profile, self.base.window_sizes, cap, self.norm)
                # the index column that ``_pointwise`` appends (the same expressions, kept for every window)
                hi = (F._pointwise(spec, self.tr, self.norm)[0][:, -1].copy(),
                      F._pointwise(spec, None, self.view_norm)[0][:, -1].copy()) if spec.hi_weights else (None, None)
                got = self._hi[cap] = (spec, *hi)
            return got


def _with_index(norm: tuple[np.ndarray, np.ndarray], hi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``_pointwise``'s result from ``normalised``'s and the health index's values: the same array it builds."""
    z, reg = norm
    return (np.column_stack([z, hi]) if hi is not None else z), reg


def _fold_predictions(fold: Fold, cols: dict[str, np.ndarray], offsets: np.ndarray, profile: Profile, size: int,
                      cap: float | None, seed: int) -> np.ndarray:
    """One fold's predictions at its cuts for one candidate (window ``size``, label ``cap``): the proxy
    fitted on the fold's training rows with its spec (regimes, normalisation fitted on them), the
    cap's health index and the window."""
    hspec, hi_tr, hi_view = fold.health_index(profile, cap)
    spec = F.with_windows(hspec, [size])
    tr = fold.tr
    y = F.rul_labels(tr, profile, spec.label_cap)
    stride = proxy_stride(len(tr))
    keep = np.flatnonzero(tr.groupby(profile.id_column, sort=False).cumcount().to_numpy() % stride == stride - 1)
    # only the rows the proxy reads are featurised (the same values as the full transform's rows)
    X = F.transform_rows(tr, keep, spec, point=_with_index(fold.norm, hi_tr))
    pred = _fit_predict(X, y[keep], F.transform_last(cols, offsets, spec, point=_with_index(fold.view_norm, hi_view)),
                        seed)
    del X, y
    # the fit's matrices, freed in pieces below the mmap threshold, given back before the next fit in this
    # thread: two fits run at once, each leaving free holes in the heap that the other's sizes do not fit,
    # and the choice's peak is preprocessing's at FD002 x1 (the values computed are the same)
    trim_malloc()
    return pred


def cv_predictions_many(fold_fits: list[Fold], profile: Profile, views: list[tuple],
                        candidates: list[tuple[int, float | None]], seed: int) -> list[np.ndarray]:
    """Out-of-fold predictions at every cut for each candidate (window size, label cap), in order;
    ``fold_fits`` holds each fold's fitted state (``Fold``), ``views`` its cut views.
    Every (candidate, fold) fit is independent: they run in threads (``threads.parallel``)."""
    jobs = [(fold, cols, offsets, profile, size, cap, seed) for size, cap in candidates
            for fold, (cols, offsets, _, _) in zip(fold_fits, views, strict=True)]
    # each (candidate, fold) fit is one xgboost thread; xgboost's hist result does not depend on the
    # thread count, and each fit is independent: the results are the sequential loop's, bit for bit
    preds = parallel(_fold_predictions, jobs)
    k = len(fold_fits)
    return [np.concatenate(preds[i * k:(i + 1) * k]) for i in range(len(candidates))]


def cv_predictions(fold_fits: list[Fold], profile: Profile, views: list[tuple],
                   size: int, cap: float | None, seed: int) -> np.ndarray:
    """Out-of-fold predictions at every cut for one candidate (``cv_predictions_many`` of one)."""
    return cv_predictions_many(fold_fits, profile, views, [(size, cap)], seed)[0]


def _rmse_se(pred: np.ndarray, true: np.ndarray, owner: np.ndarray) -> tuple[float, float]:
    """RMSE over cuts and its standard error over assets (delta method on per-asset mean squared errors)."""
    sq = pd.Series((pred - true) ** 2).groupby(owner).mean().to_numpy()
    mse = float(np.mean((pred - true) ** 2))
    rmse = float(np.sqrt(mse))
    se = float(np.std(sq, ddof=1) / np.sqrt(len(sq)) / (2 * rmse)) if len(sq) > 1 and rmse > 0 else 0.0
    return rmse, se


def choose(train: pd.DataFrame, profile: Profile, seed: int = 0) -> dict[str, Any]:
    """Cross-validate the profile's candidates on validated training rows ``train``.

    Returns ``{"window_sizes": [W], "cap": cap, "record": {...}}``; the record (every candidate's
    capped and uncapped RMSE and standard error, the rule, the protocol) goes into the feature spec.
    """
    w = profile.windows
    sizes = list(w.cv_sizes) if w and w.cv_sizes else list(w.sizes) if w else []
    default_cap = profile.label.cap
    caps = list(profile.label.cv_caps)
    send = max(sizes)
    groups = folds(train[profile.id_column].to_numpy(), FOLDS, seed)
    ids = train[profile.id_column].to_numpy()
    views = [cut_views(train[np.isin(ids, g)].reset_index(drop=True), profile, send, send, seed + 1 + i)
             for i, g in enumerate(groups)]
    true = np.concatenate([v[2] for v in views])
    owner = np.concatenate([v[3] for v in views])
    eval_cap = default_cap if default_cap is not None else float("inf")

    def fold_fit(g: np.ndarray, view: tuple) -> Fold:
        tr = train[~np.isin(ids, g)]
        tr.index = pd.RangeIndex(len(tr))  # renumbered in place (``reset_index`` copies every column)
        base = F.fit_spec(tr, profile, seed=seed, window_sizes=[sizes[0]], exclusive=BLAS)
        base.life_stats = []  # W and the cap are chosen for callers that send the window alone
        # the fold's normalised sensors and regimes (of its rows and of its cut views), computed once for
        # every candidate's fit: each candidate's health index and windows are built from them
        return Fold(tr, base, view[0])

    # the folds' fits side by side, their k-means and ridge fits one at a time (``exclusive``, see BLAS)
    fold_fits = parallel(fold_fit, list(zip(groups, views, strict=True)))

    memo: dict[tuple[int, float | None], dict[str, float]] = {}

    def score_all(candidates: list[tuple[int, float | None]]) -> None:
        """Score the candidates not scored yet, all their fits at once (``cv_predictions_many``)."""
        todo = [c for c in dict.fromkeys(candidates) if c not in memo]
        for c, p in zip(todo, cv_predictions_many(fold_fits, profile, views, todo, seed) if todo else [],
                        strict=True):
            memo[c] = _score(p)

    def score(size: int, cap: float | None) -> dict[str, float]:
        score_all([(size, cap)])
        return memo[size, cap]

    def _score(p: np.ndarray) -> dict[str, float]:
        rc, sc = _rmse_se(p, np.minimum(true, eval_cap), owner)
        ru, su = _rmse_se(p, true, owner)
        return {"rmse_capped": round(rc, 4), "se_capped": round(sc, 4), "rmse_uncapped": round(ru, 4),
                "se_uncapped": round(su, 4)}

    record: dict[str, Any] = {
        "protocol": f"{FOLDS}-fold grouped CV on training assets; {CUTS} random cuts per validation asset, "
                    f"the caller sends its last {send} readings; capped = against RUL capped at {default_cap:g}",
        "proxy_model": {**PROXY, "num_round": PROXY_ROUNDS, "train_stride": STRIDE,
                        **({"train_stride_above": {"rows": PROXY_MAX_ROWS * STRIDE,
                                                   "strides": [proxy_stride(len(f.tr)) for f in fold_fits]}}
                           if any(proxy_stride(len(f.tr)) > STRIDE for f in fold_fits) else {})},
    }
    chosen_w = sizes[0]
    if len(sizes) > 1:
        score_all([(s, default_cap) for s in sizes])
        rows = {s: score(s, default_cap) for s in sizes}
        best = min(rows.values(), key=lambda r: r["rmse_capped"])
        chosen_w = min(s for s, r in rows.items() if r["rmse_capped"] <= best["rmse_capped"] + best["se_capped"])
        record["window"] = {"rule": "smallest W within one standard error of the best capped RMSE",
                            "candidates": {str(s): r for s, r in rows.items()}, "chosen": chosen_w}
    chosen_cap = default_cap
    if caps:
        score_all([(chosen_w, c) for c in caps])
        rows_c = {c: score(chosen_w, c) for c in caps}
        best = min(rows_c.values(), key=lambda r: r["rmse_capped"])
        ok = [c for c, r in rows_c.items() if r["rmse_capped"] <= best["rmse_capped"] + best["se_capped"]]
        chosen_cap = min(ok, key=lambda c: rows_c[c]["rmse_uncapped"])
        record["cap"] = {"rule": "lowest uncapped RMSE among caps within one standard error of the best "
                                 "capped RMSE", "candidates": {f"{c:g}": r for c, r in rows_c.items()},
                         "chosen": chosen_cap}
    return {"window_sizes": [chosen_w], "cap": chosen_cap, "record": record}
