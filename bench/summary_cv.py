"""Which richer life summaries and window features pay: grouped CV on training engines only (no test data).

Usage: ``python bench/summary_cv.py [--subsets FD001,FD002] [--seed 0] [--sets base,life_std,...]``.

The protocol and cuts of ``bench/life_cv.py`` (``training_src/selection.py``: 3 asset-grouped folds,
everything fitted on the other folds' engines, 5 test-like random cuts per validation engine, the fixed
proxy XGBoost, W 30, cap 125). The product's features (``training_src/features``) are the base; each
candidate set adds prototype columns computed here, per reading from that asset's readings up to it
(so a training row and a cut see the same causal values):

life-summary candidates (missing for a caller without a summary; each streams exactly from running
sums or values frozen after a fixed number of readings):

* ``life_std``: whole-life standard deviation of every channel (one more sum per channel, sum z^2);
* ``life_quad``: whole-life quadratic trend of every channel: its curvature and its fitted slope at the
  last reading (sums t^3, t^4 and t^2 z beside the linear ones);
* ``life_base``: early-life baseline, the mean of the life's first K = 20 readings, and the window's mean
  and the last value minus it (one frozen sum per channel);
* ``life_minmax``: whole-life minimum and maximum of every channel (the product's ``min``/``max`` life stats);
* ``life_regime``: per-regime whole-life means of every channel (a count and a sum per regime and channel);
* ``life_hi_count``: how many readings of the life had the health index below each of its training
  10/25/50 % quantiles (three counts);

window candidates (what a caller sending its last 30 readings alone still gives):

* ``win_ms``: means and slopes over the last 5 and 10 readings beside the 30-reading ones;
* ``win_hi``: health-index dynamics in the window: its slope over the last 5 and 10, its minimum,
  standard deviation and quadratic curvature over the 30.

Scored three ways (as ``life_cv.py``): the window model (base window features + window candidates),
the model always given a summary, and the one model for both callers (every training row with and
without its life columns), scored with and without a summary. Prints capped and uncapped RMSE with
standard errors over engines, and each candidate's change of the capped RMSE against ``base`` with
its paired standard error (same engines, same cuts).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training_src import features as F  # noqa: E402
from training_src import selection as S  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402

WINDOW, CAP, BASE_K = 30, 125.0, 20


def _per_asset(fn: Callable[..., np.ndarray], bounds: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    return np.vstack([fn(*(a[lo:hi] for a in arrays)) for lo, hi in itertools.pairwise(bounds)])


def _cum_quad(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Whole-life quadratic least-squares fit of each channel at every reading: curvature and the fitted
    slope at that reading, (n, 2 s); missing below 3 readings."""
    n, s = z.shape
    u = ((t - t[0]) / 100.0)[:, None]  # scaled time keeps the normal equations well conditioned
    p = [np.cumsum(u ** k, axis=0) for k in range(5)]  # sums of u^0..u^4, (n, 1)
    q = [np.cumsum(u ** k * z, axis=0) for k in range(3)]  # sums of u^k z, (n, s)
    A = np.empty((n, 3, 3))
    for i in range(3):
        for j in range(3):
            A[:, i, j] = p[i + j][:, 0]
    B = np.stack(q, axis=1)  # (n, 3, s)
    out = np.full((n, 2 * s), np.nan)
    ok = np.arange(n) >= 2
    ok &= np.abs(np.linalg.det(A)) > 1e-12
    coef = np.linalg.solve(A[ok], B[ok])  # (k, 3, s): a, b, c
    out[ok, :s] = coef[:, 2, :] / 1e4  # per cycle^2
    out[ok, s:] = (coef[:, 1, :] + 2 * coef[:, 2, :] * u[ok]) / 100.0  # per cycle
    return out


def _cum_std(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    c = np.arange(1, len(z) + 1, dtype=float)[:, None]
    m = np.cumsum(z, axis=0) / c
    return np.sqrt(np.maximum(np.cumsum(z * z, axis=0) / c - m * m, 0.0))


def _baseline(z: np.ndarray, t: np.ndarray, wmean: np.ndarray) -> np.ndarray:
    c = np.minimum(np.arange(1, len(z) + 1), BASE_K).astype(float)[:, None]
    cs = np.cumsum(z, axis=0)
    base = cs[np.minimum(np.arange(len(z)), BASE_K - 1)] / c
    return np.hstack([base, wmean - base, z - base])


def _trailing(z: np.ndarray, t: np.ndarray, spec: F.FeatureSpec, sizes: list[int], stats: list[str]) -> np.ndarray:
    sp = copy.copy(spec)
    sp.window_sizes, sp.window_stats, sp.ewm_spans = sizes, stats, []
    return F.window_block(z, t, sp)


def _quad_window(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Quadratic curvature of one signal over its trailing WINDOW readings, (n, 1)."""
    n = len(h)
    out = np.full((n, 1), np.nan)
    for i in range(2, n):
        lo = max(0, i - WINDOW + 1)
        tt = t[lo:i + 1] - t[i]
        out[i, 0] = np.polyfit(tt, h[lo:i + 1], 2)[0]
    return out


def candidate_blocks(df, spec: F.FeatureSpec, prof, hi_q: np.ndarray) -> dict[str, tuple[bool, np.ndarray]]:
    """Every candidate's columns for every row of ``df``: name -> (is a life column, (n, k))."""
    z, reg = F._pointwise(spec, df)
    t = df[prof.time_column].to_numpy(dtype=float)
    ids = df[prof.id_column].to_numpy()
    b = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    s = z.shape[1]
    hi = z[:, -1:]
    wmean = _trailing(z, t, spec, [WINDOW], ["mean"])
    out: dict[str, tuple[bool, np.ndarray]] = {}
    out["life_std"] = (True, _per_asset(_cum_std, b, z, t))
    out["life_quad"] = (True, _per_asset(_cum_quad, b, z, t))
    out["life_base"] = (True, _per_asset(_baseline, b, z, t, wmean))
    out["life_minmax"] = (True, _per_asset(lambda zz: np.hstack([np.minimum.accumulate(zz, axis=0),
                                                                  np.maximum.accumulate(zz, axis=0)]), b, z))
    if spec.n_regimes > 1:
        onehot = np.eye(spec.n_regimes)[reg]  # (n, R)

        def regime_means(zz: np.ndarray, oh: np.ndarray) -> np.ndarray:
            cnt = np.cumsum(oh, axis=0)  # (n, R)
            sums = np.cumsum(oh[:, :, None] * zz[:, None, :], axis=0)  # (n, R, s)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(cnt[:, :, None] > 0, sums / cnt[:, :, None], np.nan).reshape(len(zz), -1)
        out["life_regime"] = (True, _per_asset(regime_means, b, z, onehot))
    below = (hi < hi_q[None, :]).astype(float)
    out["life_hi_count"] = (True, _per_asset(lambda x: np.cumsum(x, axis=0), b, below))
    out["win_ms"] = (False, _per_asset(lambda zz, tt: _trailing(zz, tt, spec, [5, 10], ["mean", "slope"]), b, z, t))
    hi_dyn = np.hstack([
        _per_asset(lambda h, tt: _trailing(h, tt, spec, [5, 10], ["slope"]), b, hi, t),
        _per_asset(lambda h, tt: _trailing(h, tt, spec, [WINDOW], ["min", "std"]), b, hi, t),
        _per_asset(_quad_window, b, hi[:, 0], t),
    ])
    out["win_hi"] = (False, hi_dyn)
    assert all(v.shape[0] == len(df) for _, v in out.values()), s
    return out


def cut_rows(va, prof, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row numbers in ``va`` of the cuts ``life_cv.py`` scores (the same random draws), true RUL, engine."""
    cols, _, true, owner = S.cut_views(va, prof, 1, WINDOW, seed)
    key = {(u, c): i for i, (u, c) in enumerate(zip(va[prof.id_column].to_numpy(),
                                                    va[prof.time_column].to_numpy(), strict=True))}
    rows = np.array([key[u, c] for u, c in zip(cols[prof.id_column], cols[prof.time_column], strict=True)])
    return rows, true, owner


def cross_validate(subset: str, data_dir: Path, seed: int, sets: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold predictions per candidate set and way to train, plus the cuts' true RUL and engine."""
    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    res: dict[str, dict[str, list[np.ndarray]]] = {c: {k: [] for k in ("window", "always", "both_with",
                                                                      "both_without")} for c in sets}
    true_all, owner_all = [], []
    for i, group in enumerate(S.folds(ids, S.FOLDS, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        spec = F.with_choice(F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW]), tr, prof, [WINDOW], CAP)
        k = len(F.life_names(spec))
        rows, true, owner = cut_rows(va, prof, seed + 1 + i)
        true_all.append(true)
        owner_all.append(owner)
        keep = tr.groupby(prof.id_column, sort=False).cumcount().to_numpy() % S.STRIDE == S.STRIDE - 1
        Xtr = F.transform(tr, spec).to_numpy()
        Xva = F.transform(va, spec).to_numpy()[rows]
        y = F.rul_labels(tr, prof, CAP)[keep]
        hi_tr = F._pointwise(spec, tr)[0][:, -1]
        hi_q = np.quantile(hi_tr, [0.10, 0.25, 0.50])
        c_tr = candidate_blocks(tr, spec, prof, hi_q)
        c_va = candidate_blocks(va, spec, prof, hi_q)
        for name in sets:
            parts = [] if name == "base" else name.split("+")
            parts = [p for p in parts if p in c_tr]
            wtr = [Xtr[:, :-k]] + [c_tr[p][1] for p in parts if not c_tr[p][0]]
            ltr = [Xtr[:, -k:]] + [c_tr[p][1] for p in parts if c_tr[p][0]]
            wva = [Xva[:, :-k]] + [c_va[p][1][rows] for p in parts if not c_va[p][0]]
            lva = [Xva[:, -k:]] + [c_va[p][1][rows] for p in parts if c_va[p][0]]
            W_tr, L_tr = np.hstack(wtr)[keep], np.hstack(ltr)[keep]
            W_va, L_va = np.hstack(wva), np.hstack(lva)
            r = res[name]
            if not any(c_tr[p][0] for p in parts) or name == "base":  # the window model sees no life column
                r["window"].append(S._fit_predict(W_tr, y, W_va, seed))
            A_tr, A_va = np.hstack([W_tr, L_tr]), np.hstack([W_va, L_va])
            if any(c_tr[p][0] for p in parts) or name == "base":
                r["always"].append(S._fit_predict(A_tr, y, A_va, seed))
            nan_l = np.hstack([W_va, np.full_like(L_va, np.nan)])
            A2 = np.vstack([A_tr, np.hstack([W_tr, np.full_like(L_tr, np.nan)])])
            both = S._fit_predict(A2, np.concatenate([y, y]), np.vstack([A_va, nan_l]), seed)
            r["both_with"].append(both[:len(A_va)])
            r["both_without"].append(both[len(A_va):])
            print(f"  {subset} fold {i} {name} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    out = {name: {key: np.concatenate(v) for key, v in r.items() if v} for name, r in res.items()}
    out["_"] = {"true": np.concatenate(true_all), "owner": np.concatenate(owner_all)}
    return out


def _paired(pred: np.ndarray, ref: np.ndarray, true: np.ndarray, owner: np.ndarray) -> tuple[float, float]:
    """RMSE of ``pred`` minus that of ``ref`` on the same cuts, and its standard error over engines (the
    per-engine differences of mean squared errors, carried to the RMSE by the delta method): the noise of
    the comparison, much smaller than either RMSE's own standard error because both see the same engines."""
    import pandas as pd

    d = pd.Series((pred - true) ** 2 - (ref - true) ** 2).groupby(owner).mean().to_numpy()
    r1, r0 = float(np.sqrt(np.mean((pred - true) ** 2))), float(np.sqrt(np.mean((ref - true) ** 2)))
    return r1 - r0, float(np.std(d, ddof=1) / np.sqrt(len(d)) / (r1 + r0))


def table(subset: str, r: dict[str, dict[str, np.ndarray]], sets: list[str]) -> list[str]:
    """Markdown rows: per candidate and way of scoring, capped and uncapped RMSE ± standard error, and the
    change of the capped RMSE against ``base`` ± its paired standard error."""
    true, owner = r["_"]["true"], r["_"]["owner"]
    lines = []
    for name in sets:
        cells = []
        for key in ("window", "always", "both_with", "both_without"):
            src = r[name] if key in r[name] else r.get("base", {})
            if key not in src:
                cells.append("")
                continue
            rc, sc = S._rmse_se(src[key], np.minimum(true, CAP), owner)
            ru, su = S._rmse_se(src[key], true, owner)
            cell = f"{rc:.2f} ± {sc:.2f} / {ru:.2f} ± {su:.2f}"
            if name != "base" and key in r[name] and "base" in r:
                d, sd = _paired(src[key], r["base"][key], np.minimum(true, CAP), owner)
                cell += f" ({d:+.2f} ± {sd:.2f})"
            elif name != "base":
                cell = "as base"
            cells.append(cell)
        lines.append(f"| {subset} | {name} | " + " | ".join(cells) + " |")
    if "base" in r and {"window", "always"} <= set(r["base"]):
        # two models (one per kind of caller) against the one model: paired changes of the capped RMSE
        b, cap = r["base"], np.minimum(true, CAP)
        dw, sw = _paired(b["window"], b["both_without"], cap, owner)
        da, sa = _paired(b["always"], b["both_with"], cap, owner)
        lines.append(f"| {subset} | two models against the one (base) | {dw:+.2f} ± {sw:.2f} | {da:+.2f} ± {sa:.2f} "
                     "| | |")
    return lines


DEFAULT_SETS = ("base,life_std,life_minmax,life_quad,life_base,life_regime,life_hi_count,"
                "life_std+life_minmax,life_std+life_quad+life_base+life_hi_count,win_ms,win_hi,win_ms+win_hi")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=DEFAULT_SETS, help="comma-separated candidate sets; '+' joins candidates")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    sets = a.sets.split(",")
    print(f"# summary-candidate CV · {time.strftime('%Y-%m-%d %H:%M')} UTC · seed {a.seed} · {S.FOLDS} folds, "
          f"{S.CUTS} cuts per engine, W {WINDOW}, cap {CAP:g}\n")
    print("Cells: capped RMSE ± s.e. / uncapped RMSE ± s.e. (change of the capped RMSE against base ± paired s.e.)\n")
    print("| fleet | candidate | window model, last 30 | always a summary | one model + summary "
          "| one model, last 30 |")
    print("|---|---|---:|---:|---:|---:|")
    for subset in a.subsets.split(","):
        t0 = time.time()
        r = cross_validate(subset, Path(a.data_dir), a.seed, sets)
        for line in table(subset, r, sets):
            print(line, flush=True)
        print(f"  {subset}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
