"""The true-RUL protocol: a second cap, or a transform of the capped model's output? Grouped CV on
training engines only (no test data).

Usage: ``python bench/true_rul_cv.py [--subsets FD001,FD002] [--seed 0] [--caps 150,175,200,none]``.

The protocol of ``training_src/selection.py`` and ``bench/life_cv.py`` (3 asset-grouped folds;
regimes, normalisation, health index and model fitted on the other folds' engines; 5 test-like random
cuts per validation engine; the fixed proxy XGBoost; W 30), with the model trained as ``train.py``
trains it: every training row with and without its life features, scored once as a caller that sends
its last 30 readings with its life summary and once as one that sends the window alone. Candidates
for the answer against the true (uncapped) RUL:

* ``cap 125``: the model chosen for the capped protocol, its output as is (what a caller gets today);
* ``cap C``: a second model trained on the RUL capped at C (``none``: uncapped);
* ``cap 125 + isotonic``: the cap-125 model's output mapped by a monotone (isotonic) regression of the
  true RUL on the prediction, one map per kind of caller, fitted on out-of-fold predictions of an
  inner 2-fold split of the outer fold's training engines only (same cuts; the outer fold's fitted
  regimes and normalisation reused), then applied to the outer validation engines. It costs two
  extra fits at training time and a table lookup at serving time, no second model;
* ``cap 125 + calibration bin mean`` / ``median``: no extra fit at all: the interval calibration every
  RUL model already stores (``predmaint_serving/intervals.py``: per predicted-RUL bin, quantiles of
  the true RUL minus the prediction) fitted on the same inner out-of-fold predictions, and the
  prediction's bin's mean (or median) residual added to it.

Prints RMSE against the true RUL and against the RUL capped at 125, each with its standard error
over engines (``selection._rmse_se``).
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
from training_src.predmaint_serving import intervals as IV  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402

WINDOW, CAP = 30, 125.0


def _views(df, prof, seed: int):
    """The same cuts twice: the last 30 readings (window alone), and everything before the cut (to
    start a summary). Returns (window view, whole view, true RUL, owner)."""
    window, w_off, true, owner = S.cut_views(df, prof, WINDOW, WINDOW, seed)
    whole, h_off, _, _ = S.cut_views(df, prof, 10**9, WINDOW, seed)
    return (window, w_off), (whole, h_off), true, owner


def _fit_both(tr, prof, spec, cap: float | None, seed: int):
    """The proxy model on every (strided) training row with and without its life features."""
    import xgboost as xgb

    keep = tr.groupby(prof.id_column, sort=False).cumcount().to_numpy() % S.STRIDE == S.STRIDE - 1
    X = F.transform(tr, spec).to_numpy()[keep]
    y = F.rul_labels(tr, prof, cap)[keep]
    X2, y2 = F.with_and_without_life(X, y, spec)
    return xgb.train({**S.PROXY, "seed": seed}, xgb.DMatrix(X2.astype(np.float32), label=y2), S.PROXY_ROUNDS)


def _predict(booster, spec, win, whole) -> tuple[np.ndarray, np.ndarray]:
    """(with summary, window alone) predictions at every cut, clipped to [0, cap] as served."""
    Xl = F.transform_last(whole[0], whole[1], spec, [F.NEW_LIFE] * (len(whole[1]) - 1))
    Xw = F.transform_last(win[0], win[1], spec)
    p = F.clip_rul(booster.inplace_predict(np.vstack([Xl, Xw]).astype(np.float32)), spec.label_cap)
    return p[:len(Xl)], p[len(Xl):]


def cross_validate(subset: str, data_dir: Path, seed: int, caps: list[float | None]) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of every candidate and caller kind at every cut, with true RUL and owner."""
    from sklearn.isotonic import IsotonicRegression

    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    out: dict[str, list[np.ndarray]] = {"true": [], "owner": []}

    def add(key: str, value: np.ndarray) -> None:
        out.setdefault(key, []).append(value)

    for i, group in enumerate(S.folds(ids, S.FOLDS, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        base = F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW])
        win, whole, true, owner = _views(va, prof, seed + 1 + i)
        out["true"].append(true)
        out["owner"].append(owner)
        spec125 = None
        for cap in [CAP, *caps]:
            spec = F.with_choice(base, tr, prof, [WINDOW], cap)
            pl, pw = _predict(_fit_both(tr, prof, spec, cap, seed), spec, win, whole)
            name = f"cap {cap:g}" if cap is not None else "uncapped"
            add(f"{name}|summary", pl)
            add(f"{name}|window", pw)
            if cap == CAP:
                spec125 = spec
        # the isotonic map, fitted on an inner 2-fold split of this fold's training engines only
        tids = tr[prof.id_column].to_numpy()
        inner_p: dict[str, list] = {"summary": [], "window": []}
        inner_t, inner_o = [], []
        for j, g in enumerate(S.folds(tids, 2, seed + 100 + i)):
            itr = tr[~np.isin(tids, g)].reset_index(drop=True)
            iva = tr[np.isin(tids, g)].reset_index(drop=True)
            iwin, iwhole, itrue, iown = _views(iva, prof, seed + 200 + 10 * i + j)
            pl, pw = _predict(_fit_both(itr, prof, spec125, CAP, seed), spec125, iwin, iwhole)
            inner_p["summary"].append(pl)
            inner_p["window"].append(pw)
            inner_t.append(itrue)
            inner_o.append(iown)
        it, io = np.concatenate(inner_t), np.concatenate(inner_o)
        for kind in ("summary", "window"):
            ip = np.concatenate(inner_p[kind])
            p125 = out[f"cap 125|{kind}"][-1]
            iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(ip, it)
            add(f"cap 125 + isotonic|{kind}", iso.predict(p125))
            # the interval calibration every model already stores (per-bin residual quantiles of the true
            # RUL): its bin's mean or median residual added to the prediction, no extra fit at all
            cal = IV.Calibration.from_doc(IV.fit(ip, it, io, seed=seed))
            q = cal.quantiles[IV.bin_of(cal.edges, p125)]
            add(f"cap 125 + calibration bin mean|{kind}", cal.expected_rul(p125))
            add(f"cap 125 + calibration bin median|{kind}", np.maximum(p125 + q[:, len(IV.GRID) // 2], 0.0))
        print(f"  {subset} fold {i + 1}/{S.FOLDS} done", file=sys.stderr, flush=True)
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caps", default="150,175,200,none", help="second-model caps to try ('none': uncapped)")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    caps = [None if c.strip() == "none" else float(c) for c in a.caps.split(",") if c.strip()]
    print(f"# true-RUL protocol CV · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · seed {a.seed} · "
          f"{S.FOLDS} folds, {S.CUTS} cuts per engine, W {WINDOW}; each model trained on every row with and "
          "without its life features\n")
    print("| fleet | candidate | caller sends | RMSE vs true RUL | RMSE vs RUL capped at 125 |")
    print("|---|---|---|---:|---:|")
    for subset in a.subsets.split(","):
        r = cross_validate(subset, Path(a.data_dir), a.seed, caps)
        for key in [k for k in r if "|" in k]:
            name, kind = key.split("|")
            ru, su = S._rmse_se(r[key], r["true"], r["owner"])
            rc, sc = S._rmse_se(r[key], np.minimum(r["true"], CAP), r["owner"])
            sends = "last 30 + summary" if kind == "summary" else "last 30"
            print(f"| {subset} | {name} | {sends} | {ru:.2f} ± {su:.2f} | {rc:.2f} ± {sc:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
