"""Interval coverage by nested cross-validation on training engines only (no test data).

Usage: ``python bench/intervals_cv.py [--subsets FD001,FD002] [--seed 0] [--folds 3]``.

The question it answers: does the 80 % RUL interval that ``train.py`` stores with the model cover
80 % of assets the model never saw? The training engines of each subset are split into ``--folds``
asset groups (``selection.folds``). For each group, everything is fitted on the other groups' engines
exactly as the refit does it: the feature spec (the profile's window 30 and cap 125, as
``bench/life_cv.py``), the model (``train.fit_model`` on every row with and without its life features,
the fixed hyperparameters of ``bench/intervals.py``) and the interval calibration
(``train.calibrate_intervals``: cross-conformal, its own inner folds). The held-out engines are cut
as the test protocol cuts (``selection.cut_views``: 5 uniform cuts per engine) and answered twice:
with a life summary of everything before the cut, and from the last 30 readings alone. Each
answer's interval (``intervals.Calibration``) is scored against the true, uncapped RUL.

Prints Markdown: per subset and kind of caller, the coverage (share of cuts inside the interval; each
engine has the same number of cuts, so each engine counts once), its standard error over engines,
the mean width, and the training-only estimate the calibration stores (``check``, averaged over
the outer folds).
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

from intervals import FIXED  # noqa: E402

from training_src import features as F  # noqa: E402
from training_src import selection as S  # noqa: E402
from training_src import train as T  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.predmaint_serving import intervals as IV  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402

WINDOW, CAP = 30, 125.0
HP = {k: v for k, v in FIXED.items() if k != "algorithm"}


def channel(df: pd.DataFrame, spec: F.FeatureSpec) -> pd.DataFrame:
    """The rows as preprocessing writes a channel: ``_asset``, ``_time``, ``_label``, then the features."""
    feats = F.transform(df, spec)
    meta = pd.DataFrame({"_asset": df[spec.id_column].to_numpy(), "_time": df[spec.time_column].to_numpy(),
                         "_label": F.rul_labels(df, spec.profile_obj, spec.label_cap)}, index=feats.index)
    return pd.concat([meta, feats], axis=1)


def nested_cv(subset: str, data_dir: Path, seed: int, folds: int, nthread: int) -> dict[str, np.ndarray]:
    """Per outer cut: the interval bounds of each kind of caller, the true RUL and the engine; and each
    outer fold's stored ``check`` coverage per kind of caller."""
    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    out: dict[str, list] = {k: [] for k in ("life_lo", "life_hi", "life_pred", "win_lo", "win_hi", "win_pred",
                                            "true", "owner", "check_life", "check_win")}
    for i, group in enumerate(S.folds(ids, folds, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        spec = F.with_choice(F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW]), tr, prof, [WINDOW], CAP)
        frame = channel(tr, spec)
        names = spec.feature_names
        doc = T.calibrate_intervals("xgboost", [frame], names, spec, HP, nthread, seed)
        cal = IV.Calibration.from_doc(doc)
        X, y = F.with_and_without_life(*T.split_xy(frame, names), spec)
        model, _ = T.fit_model("xgboost", X, y, spec.task, HP, nthread, seed)
        window, w_off, true, owner = S.cut_views(va, prof, WINDOW, WINDOW, seed + 1 + i)
        whole, h_off, _, _ = S.cut_views(va, prof, 10**9, WINDOW, seed + 1 + i)
        Xw = F.transform_last(window, w_off, spec)
        Xl = F.transform_last(whole, h_off, spec, [F.NEW_LIFE] * (len(h_off) - 1))
        for key, Xc, with_life in (("life", Xl, True), ("win", Xw, False)):
            pred = F.clip_rul(T.predict("xgboost", model, Xc.astype(np.float32)), spec.label_cap)
            lo, hi = cal.of(with_life).interval(pred)
            out[f"{key}_lo"].append(lo)
            out[f"{key}_hi"].append(hi)
            out[f"{key}_pred"].append(pred)
        out["true"].append(true)
        out["owner"].append(owner)
        out["check_life"].append(doc["life"]["check"]["coverage"])
        out["check_win"].append(doc["check"]["coverage"])
    return {k: np.concatenate(v) if isinstance(v[0], np.ndarray) else np.asarray(v) for k, v in out.items()}


def coverage(lo: np.ndarray, hi: np.ndarray, true: np.ndarray, owner: np.ndarray) -> tuple[float, float, float]:
    """(coverage, its standard error over engines, mean width) of intervals at cuts owned by engines."""
    per = pd.Series(((true >= lo) & (true <= hi)).astype(float)).groupby(owner).mean().to_numpy()
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per))), float(np.mean(hi - lo))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--nthread", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    print(f"# interval coverage, nested CV · {time.strftime('%Y-%m-%d')} · {platform.machine()}, {os.cpu_count()} "
          f"cores · seed {a.seed} · {a.folds} outer folds, {S.CUTS} cuts per engine, W {WINDOW}, cap {CAP:g}, "
          f"level {IV.DEFAULT_LEVEL:g}\n")
    print("| fleet | caller sends | coverage | mean width | stored check (mean of folds) | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for subset in a.subsets.split(","):
        t0 = time.time()
        r = nested_cv(subset, Path(a.data_dir), a.seed, a.folds, a.nthread)
        secs = time.time() - t0
        for key, sends in (("life", "last 30 + summary"), ("win", "last 30")):
            c, se, w = coverage(r[f"{key}_lo"], r[f"{key}_hi"], r["true"], r["owner"])
            print(f"| {subset} | {sends} | {100 * c:.1f}% ± {100 * se:.1f} | {w:.1f} | "
                  f"{100 * float(np.mean(r[f'check_{key}'])):.1f}% | {secs:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
