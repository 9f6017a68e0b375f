"""Which AI4I derived features pay: stratified cross-validation on the training split only (no test rows).

Usage: ``python bench/ai4i_cv.py [--seeds 0,1,2] [--folds 5]``.

The pipeline's own split (``preprocess.fit``, seed 0) sets the test rows aside; everything here reads
train + validation only (8,000 rows), the rows the pipeline's tuning objective and threshold choice
read. For each feature set (the profile with some of its ``derived_features`` left out, or with
candidates added) the feature spec is fitted by the pipeline's own code (``preprocess.build_datasets``
on a modified profile, so batch and serving compute the same columns), then a fixed XGBoost (the
``xgboost`` candidate at ``FIXED`` below: no tuning, so the comparison is of inputs) gives out-of-fold
probabilities over ``--folds`` stratified folds, once per fold seed. Printed per feature set: PR-AUC
(average precision) and the best F1 over thresholds of the out-of-fold probabilities, mean over fold
seeds with their spread (min-max).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training_src import features as F  # noqa: E402
from training_src import preprocess as P  # noqa: E402
from training_src import train as T  # noqa: E402
from training_src.profiles import DerivedFeature, Profile, load_profile  # noqa: E402

#: the fixed model: mid-range of the xgb candidate's search space where AI4I's tuned trials land
FIXED = {"num_round": "400", "max_depth": "7", "eta": "0.05", "min_child_weight": "1.0", "subsample": "0.8",
         "colsample_bytree": "0.8", "lambda": "1.0", "alpha": "0.01", "max_bin": "512"}
PHYSICS = ("power", "temperature_difference", "wear_torque")
MARGINS = ("overstrain_margin", "power_margin", "temperature_margin", "speed_margin", "heat_dissipation_margin")
def variants(profile: Profile) -> list[tuple[str, Profile]]:
    """(label, profile) per feature set compared."""
    by = {d.name: d for d in profile.derived_features}
    keep = lambda names: tuple(by[n] for n in by if n in names)  # noqa: E731
    extra = (DerivedFeature("tool_wear_margin", "value", ("tool_wear",), limit=200.0),
             DerivedFeature("torque_per_speed", "ratio", ("torque", "rotational_speed")),
             DerivedFeature("wear_power", "product", ("tool_wear", "torque", "rotational_speed"),
                            scale=0.10471975511965977))
    return [
        ("raw readings + type only (no derived features)", dataclasses.replace(profile, derived_features=())),
        ("+ physical quantities (power, temperature difference, wear x torque)",
         dataclasses.replace(profile, derived_features=keep(PHYSICS))),
        ("+ failure-rule margins (the profile's features)", profile),
        ("margins only (no physical quantities)", dataclasses.replace(profile, derived_features=keep(MARGINS))),
        ("profile + tool-wear margin (200 min), torque/speed, wear x power",
         dataclasses.replace(profile, derived_features=profile.derived_features + extra)),
    ]


def oof_scores(profile: Profile, data_dir: Path, seeds: list[int], folds: int) -> dict:
    """PR-AUC, best F1 and of out-of-fold predictions, one entry per fold seed."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    out, spec, _ = P.build_datasets(profile, data_dir, seed=0)
    rows = [out["train"], out["validation"]]
    names = F.feature_names(spec)
    X = np.vstack([r[names].to_numpy(np.float32) for r in rows])
    y = np.concatenate([r["_label"].to_numpy(float) for r in rows])
    res = {"pr_auc": [], "f1": [], "features": len(names)}
    for s in seeds:
        p = T.oof_predictions("xgboost", X, y, profile.task, FIXED, 2, s, folds)
        prec, rec, _ = precision_recall_curve(y, p)
        res["pr_auc"].append(float(average_precision_score(y, p)))
        res["f1"].append(float(np.max(2 * prec * rec / np.maximum(prec + rec, 1e-12))))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds (default 0,1,2)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    profile = load_profile("ai4i2020")
    print(f"# AI4I derived-feature CV · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · train + validation "
          f"rows of the seed-0 split · {a.folds} stratified folds × fold seeds {a.seeds} · fixed XGBoost {FIXED}\n")
    print("| feature set | features | out-of-fold PR-AUC, mean (min–max) | best F1, mean (min–max) |")
    print("|---|---:|---:|---:|")
    for label, prof in variants(profile):
        r = oof_scores(prof, Path(a.data_dir), seeds, a.folds)
        pa, f1 = np.array(r["pr_auc"]), np.array(r["f1"])
        print(f"| {label} | {r['features']} | {pa.mean():.4f} ({pa.min():.4f}–{pa.max():.4f}) | "
              f"{f1.mean():.4f} ({f1.min():.4f}–{f1.max():.4f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
