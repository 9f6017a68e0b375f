"""Why life summaries: grouped cross-validation on training engines only (no test data).

Usage: ``python bench/life_cv.py [--subsets FD001,FD002] [--seed 0]``.

The protocol of ``training_src/selection.py`` (3 asset-grouped folds; everything fitted on the other
folds' engines; 5 test-like random cuts per validation engine; the fixed proxy XGBoost), with the
profile's chosen window (30 readings) and cap (125). Three ways to train, scored at every cut:

* ``window only``: the model without life-summary features, the caller sending its last 30 readings;
* ``always a summary``: trained and scored with the life features (the caller keeps a summary);
* ``one model, both callers`` (what ``train.py`` does): every training row with and without its life
  features, scored once with a summary and once without.

Prints capped and uncapped RMSE with their standard errors over engines (``selection._rmse_se``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training_src import features as F  # noqa: E402
from training_src import selection as S  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402

WINDOW, CAP = 30, 125.0


def cross_validate(subset: str, data_dir: Path, seed: int) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of each way to train at every cut, with the cuts' true RUL and engine."""
    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("window", "always", "both_with", "both_without",
                                                          "true", "owner")}
    for i, group in enumerate(S.folds(ids, S.FOLDS, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        spec = F.with_choice(F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW]), tr, prof, [WINDOW], CAP)
        k = len(F.life_names(spec))
        # the same cuts twice: the caller's last 30 readings, and everything before the cut (to start a summary)
        window, w_off, true, owner = S.cut_views(va, prof, WINDOW, WINDOW, seed + 1 + i)
        whole, h_off, _, _ = S.cut_views(va, prof, 10**9, WINDOW, seed + 1 + i)
        keep = tr.groupby(prof.id_column, sort=False).cumcount().to_numpy() % S.STRIDE == S.STRIDE - 1
        X = F.transform(tr, spec).to_numpy()[keep]
        y = F.rul_labels(tr, prof, CAP)[keep]
        Xw = F.transform_last(window, w_off, spec)  # life features missing
        Xl = F.transform_last(whole, h_off, spec, [F.NEW_LIFE] * (len(h_off) - 1))
        out["window"].append(S._fit_predict(X[:, :-k], y, Xw[:, :-k], seed))
        out["always"].append(S._fit_predict(X, y, Xl, seed))
        X2, y2 = F.with_and_without_life(X, y, spec)
        both = S._fit_predict(X2, y2, np.vstack([Xl, Xw]), seed)
        out["both_with"].append(both[:len(Xl)])
        out["both_without"].append(both[len(Xl):])
        out["true"].append(true)
        out["owner"].append(owner)
    return {key: np.concatenate(v) for key, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    print(f"# life-summary CV · {time.strftime('%Y-%m-%d')} · seed {a.seed} · {S.FOLDS} folds, {S.CUTS} cuts per "
          f"engine, W {WINDOW}, cap {CAP:g}\n")
    print("| fleet | trained | caller sends | capped RMSE | uncapped RMSE |")
    print("|---|---|---|---:|---:|")
    rows = (("window", "window only", "last 30"), ("always", "always a summary", "last 30 + summary"),
            ("both_with", "one model, both callers", "last 30 + summary"),
            ("both_without", "one model, both callers", "last 30"))
    for subset in a.subsets.split(","):
        r = cross_validate(subset, Path(a.data_dir), a.seed)
        for key, trained, sends in rows:
            rc, sc = S._rmse_se(r[key], np.minimum(r["true"], CAP), r["owner"])
            ru, su = S._rmse_se(r[key], r["true"], r["owner"])
            print(f"| {subset} | {trained} | {sends} | {rc:.2f} ± {sc:.2f} | {ru:.2f} ± {su:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
