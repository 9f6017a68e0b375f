"""What a final fit loses by reading every s-th reading of each asset: grouped CV on training engines.

Usage: ``python bench/fit_stride_cv.py [--subsets FD001,FD002] [--strides 1,2,3,4] [--seed 0]``.

The protocol of ``training_src/selection.py`` and ``bench/life_cv.py`` (3 asset-grouped folds on the
real training engines, no replication; everything fitted on the other folds' engines; 5 test-like
random cuts per validation engine; the fixed proxy XGBoost of ``selection.PROXY``), with the window
(30 readings) and cap (125) the profile chooses. The model is fitted as ``train.py`` fits the final
model: every kept training row with and without its life features (``features.with_and_without_life``),
scored once for a caller that keeps a life summary and once for one that sends its last 30 readings.
The rows kept are ``train.stride_mask(assets, s)``: every s-th reading of each asset (s = 1: all).

Prints, per subset, stride and caller, the capped RMSE ± its standard error over engines
(``selection._rmse_se``) and the difference from s = 1 ± its paired standard error: the standard
error over engines of the per-engine mean squared error's difference, carried to the RMSE by the
delta method (divided by twice the s = 1 RMSE). The same cuts and folds serve every stride, so the
paired difference removes the engines' own difficulty from the comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402

from training_src import features as F  # noqa: E402
from training_src import selection as S  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402
from training_src.train import stride_mask  # noqa: E402

WINDOW, CAP = 30, 125.0
CALLERS = ("with", "without")  # a caller that keeps a life summary, one that sends the window alone


def cross_validate(subset: str, data_dir: Path, strides: list[int], seed: int) -> dict[str, np.ndarray]:
    """Out-of-fold predictions at every cut for each stride and caller (keys ``"s/with"``,
    ``"s/without"``), with the cuts' true RUL (``true``) and engine (``owner``)."""
    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    out: dict[str, list[np.ndarray]] = {"true": [], "owner": []}
    for i, group in enumerate(S.folds(ids, S.FOLDS, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        spec = F.with_choice(F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW]), tr, prof, [WINDOW], CAP)
        window, w_off, true, owner = S.cut_views(va, prof, WINDOW, WINDOW, seed + 1 + i)
        whole, h_off, _, _ = S.cut_views(va, prof, 10**9, WINDOW, seed + 1 + i)
        X = F.transform(tr, spec).to_numpy(dtype=np.float32)
        y = F.rul_labels(tr, prof, CAP)
        Xq = np.vstack([F.transform_last(whole, h_off, spec, [F.NEW_LIFE] * (len(h_off) - 1)),
                        F.transform_last(window, w_off, spec)])  # with a summary, then the window alone
        n = len(true)
        for s in strides:
            keep = stride_mask(tr[prof.id_column].to_numpy(), s)
            X2, y2 = F.with_and_without_life(X[keep], y[keep], spec)
            p = S._fit_predict(X2, y2, Xq, seed)
            out.setdefault(f"{s}/with", []).append(p[:n])
            out.setdefault(f"{s}/without", []).append(p[n:])
            print(f"  {subset} fold {i} s={s}: {int(keep.sum()):,} of {len(keep):,} rows", file=sys.stderr, flush=True)
        out["true"].append(true)
        out["owner"].append(owner)
    return {key: np.concatenate(v) for key, v in out.items()}


def paired(pred: np.ndarray, ref: np.ndarray, true: np.ndarray, owner: np.ndarray) -> tuple[float, float]:
    """RMSE(pred) - RMSE(ref) and its paired standard error over engines (delta method)."""
    d = pd.Series((pred - true) ** 2 - (ref - true) ** 2).groupby(owner).mean().to_numpy()
    r_pred, r_ref = np.sqrt(np.mean((pred - true) ** 2)), np.sqrt(np.mean((ref - true) ** 2))
    return float(r_pred - r_ref), float(np.std(d, ddof=1) / np.sqrt(len(d)) / (2 * r_ref))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--strides", default="1,2,3,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    try:
        strides = sorted({int(s) for s in a.strides.split(",")} | {1})
    except ValueError:
        ap.error(f"--strides must be comma-separated integers, got {a.strides!r}")
    if min(strides) < 1:
        ap.error("--strides must be >= 1")
    started = time.time()
    print(f"# final-fit stride CV · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.machine()}, "
          f"{os.cpu_count()} cores · {load()} · seed {a.seed} · {S.FOLDS} folds, {S.CUTS} cuts per engine, "
          f"W {WINDOW}, cap {CAP:g}, proxy XGBoost {S.PROXY_ROUNDS} rounds\n")
    print("| fleet | caller sends | s | rows read | capped RMSE | vs s = 1 (paired s.e.) |")
    print("|---|---|---:|---:|---:|---:|")
    for subset in a.subsets.split(","):
        r = cross_validate(subset, Path(a.data_dir), strides, a.seed)
        capped = np.minimum(r["true"], CAP)
        for caller in CALLERS:
            ref = r[f"1/{caller}"]
            for s in strides:
                p = r[f"{s}/{caller}"]
                rc, sc = S._rmse_se(p, capped, r["owner"])
                diff = "—" if s == 1 else "{:+.2f} ± {:.2f}".format(*paired(p, ref, capped, r["owner"]))
                sends = "last 30 + summary" if caller == "with" else "last 30"
                print(f"| {subset} | {sends} | {s} | 1/{s} | {rc:.2f} ± {sc:.2f} | {diff} |", flush=True)
    print(f"\n{time.time() - started:.0f} s wall, {time.process_time():.0f} s CPU · {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
