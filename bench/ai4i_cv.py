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

``--part model`` compares model-side candidates on the profile's features as they are, paired against
the fixed XGBoost above on the same folds and fold seeds (``python bench/ai4i_cv.py --part model
[--tuning LABEL=tuning.json ...]``): class weighting (``scale_pos_weight`` 1, sqrt(neg/pos), neg/pos),
``max_delta_step``, monotone constraints on the failure-rule margins, the ``hgb`` candidate and the
mean of its and XGBoost's probabilities, and the best hyperparameters of local tuning runs (each
``tuning.json``'s best per candidate: best of 30 trials against best of more shows whether the
tuning budget limits it). Printed per candidate: PR-AUC and best F1 (mean ± standard error over fold
seeds) and their paired differences from the fixed XGBoost (same folds, same fold seed). First, the
decision threshold: train.py takes the best-F1 threshold of 5-fold out-of-fold predictions on the
rows the final model is fitted on (``oof_threshold``); here each rule picks its threshold from four
folds' out-of-fold probabilities of the fixed XGBoost and is scored on the fifth, so the F1 printed
is the F1 a rule achieves on rows it did not pick its threshold from.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from collections.abc import Callable
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
    from sklearn.metrics import average_precision_score

    X, y, names = profile_xy(profile, data_dir)
    res = {"pr_auc": [], "f1": [], "features": len(names)}
    for s in seeds:
        p = T.oof_predictions("xgboost", X, y, profile.task, FIXED, 2, s, folds)
        res["pr_auc"].append(float(average_precision_score(y, p)))
        res["f1"].append(best_f1(y, p))
    return res


#: fit(X, y, seed) -> the fitted model's predict(X) (probabilities)
Fit = Callable[[np.ndarray, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]


def profile_xy(profile: Profile, data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (float32), labels and feature names of the seed-0 split's train + validation rows."""
    out, spec, _ = P.build_datasets(profile, data_dir, seed=0)
    rows = [out["train"], out["validation"]]
    names = F.feature_names(spec)
    X = np.vstack([r[names].to_numpy(np.float32) for r in rows])
    y = np.concatenate([r["_label"].to_numpy(float) for r in rows])
    return X, y, names


def best_f1(y: np.ndarray, p: np.ndarray) -> float:
    """The best F1 over thresholds of ``p``."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, _ = precision_recall_curve(y, p)
    return float(np.max(2 * prec * rec / np.maximum(prec + rec, 1e-12)))


def xgb_extra_fit(extra: dict) -> Fit:
    """A fit(X, y, seed) -> predict function for the ``xgboost`` candidate at ``FIXED`` with booster
    parameters ``extra`` added (ones the candidate does not take): the candidate's own booster
    parameters and QuantileDMatrix, so ``extra={}`` grows the candidate's trees."""
    import xgboost as xgb

    from training_src.candidates import xgb as XC

    def fit(X: np.ndarray, y: np.ndarray, seed: int):
        params, rounds = XC.booster_params(FIXED, "failure_classification", 2, seed)
        params.update(extra)
        d = xgb.QuantileDMatrix(X, label=y, nthread=2, max_bin=params["max_bin"])
        return xgb.train(params, d, rounds).inplace_predict
    return fit


def candidate_fit(algorithm: str, hp: dict) -> Fit:
    """A fit(X, y, seed) -> predict function for a candidate at hyperparameters ``hp`` (train.py's fit)."""
    hp = {k: str(v) for k, v in hp.items()}

    def fit(X: np.ndarray, y: np.ndarray, seed: int):
        m, _ = T.fit_model(algorithm, X, y, "failure_classification", hp, 2, seed)
        return lambda Z: T.predict(algorithm, m, Z)
    return fit


def oof(fit: Fit, X: np.ndarray, y: np.ndarray, seed: int, folds: int) -> np.ndarray:
    """Out-of-fold probabilities on train.py's folds (``oof_predictions``: stratified, shuffled with the
    fold seed, which also seeds the model)."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        out[te] = fit(X[tr], y[tr], seed)(X[te])
    return out


#: threshold rules compared, each (y, out-of-fold p) -> threshold
def _rule_best(y: np.ndarray, p: np.ndarray) -> float:
    return T.best_f1_threshold(y, p)  # train.py's rule: the score of the lowest positive it keeps


def _rule_mid(y: np.ndarray, p: np.ndarray) -> float:
    """Halfway (in log-odds) between the best-F1 threshold and the next lower score."""
    t = T.best_f1_threshold(y, p)
    below = p[p < t]
    if not len(below):
        return t
    lo, hi = np.clip([below.max(), t], 1e-7, 1 - 1e-7)
    z = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
    return float(1 / (1 + np.exp(-z)))


def _rule_smooth(y: np.ndarray, p: np.ndarray) -> float:
    """The middle of the thresholds whose F1 is within 0.005 of the best (a flat optimum's centre)."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    near = thr[f1 >= f1.max() - 0.005]
    return float(np.median(near))


RULES = {"best-F1 threshold of out-of-fold predictions (train.py)": _rule_best,
         "halfway to the next lower score (log-odds)": _rule_mid,
         "median threshold within 0.005 of the best F1": _rule_smooth,
         "fixed 0.5": lambda y, p: 0.5}


def threshold_f1(y: np.ndarray, p: np.ndarray, seed: int, folds: int) -> dict[str, float]:
    """F1 of each rule's threshold on rows it did not pick it from: for each fold of ``oof``'s split, the
    threshold is picked from the other folds' out-of-fold probabilities and applied to this fold's."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    pred = {r: np.zeros(len(y), bool) for r in RULES}
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p.reshape(-1, 1), y):
        for r, rule in RULES.items():
            pred[r][te] = p[te] >= rule(y[tr], p[tr])  # evaluate.py: failure when p >= threshold
    return {r: float(f1_score(y, pr)) for r, pr in pred.items()}


def _ms(v: np.ndarray) -> str:
    return f"{v.mean():.4f} ± {v.std(ddof=1) / np.sqrt(len(v)):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def _dms(v: np.ndarray) -> str:
    return f"{v.mean():+.4f} ± {v.std(ddof=1) / np.sqrt(len(v)):.4f}" if len(v) > 1 else f"{v.mean():+.4f}"


def model_part(data_dir: Path, seeds: list[int], folds: int, tunings: list[str], cache: Path | None,
               only: str | None = None) -> None:
    """Print the threshold rules' table and the model-side candidates' table (see the module docstring),
    a row as soon as its candidate is measured. ``only``: the candidates whose label contains it."""
    import json

    from sklearn.metrics import average_precision_score

    profile = load_profile("ai4i2020")
    X, y, names = profile_xy(profile, data_dir)
    ratio = float((y == 0).sum() / (y == 1).sum())
    # failure-rule margins: overstrain grows with its margin (+1); the others are safe when positive (-1)
    sign = {"overstrain_margin": 1, "power_margin": -1, "temperature_margin": -1, "speed_margin": -1,
            "heat_dissipation_margin": -1}
    mono = "(" + ",".join(str(sign.get(n, 0)) for n in names) + ")"
    from training_src.candidates import hgb as HC

    cands: list[tuple[str, Fit]] = [
        (f"scale_pos_weight neg/pos = {ratio:.1f}", xgb_extra_fit({"scale_pos_weight": ratio})),
        ("max_delta_step 1", xgb_extra_fit({"max_delta_step": 1.0})),
        ("monotone constraints on the five failure-rule margins", xgb_extra_fit({"monotone_constraints": mono})),
        ("hgb at its starting point (START)", candidate_fit("hgb", HC.START)),
        (f"scale_pos_weight sqrt(neg/pos) = {np.sqrt(ratio):.2f}", xgb_extra_fit({"scale_pos_weight": np.sqrt(ratio)})),
    ]
    for spec in tunings:  # LABEL=path of a tuning.json: its best xgboost (hgb's when it moved from START)
        label, path = spec.split("=", 1)
        doc = json.loads(Path(path).read_text())
        for algo, best in doc["best_by_algorithm"].items():
            hp = {k.split(".", 1)[-1]: v for k, v in best["params"].items()}
            if algo == "linear" or (algo == "hgb" and hp == HC.START):
                continue
            cands.append((f"{algo}, best of {label} ({doc['n_trials']} trials, objective {best['value']:.4f})",
                          candidate_fit(algo, hp)))

    def measure(label: str, fit: Fit) -> dict[int, np.ndarray]:
        out = {}
        for s in seeds:
            key = hashlib.sha256(f"{label}|{s}|{folds}".encode()).hexdigest()[:16]
            f = cache / f"{key}.npy" if cache else None
            if f is not None and f.exists():
                out[s] = np.load(f)
                continue
            out[s] = oof(fit, X, y, s, folds)
            if f is not None:
                np.save(f, out[s])
        return out

    ref_label = "fixed XGBoost (the reference)"
    ref = measure(ref_label, xgb_extra_fit({}))
    print(f"Decision threshold (reference's out-of-fold probabilities): F1 of each rule's threshold picked on "
          f"the other {folds - 1} folds and applied to the fold left out\n")
    print("| rule | F1 on the folds left out, mean ± s.e. | Δ F1 against train.py's rule (paired) |")
    print("|---|---:|---:|")
    res = {s: threshold_f1(y, ref[s], s, folds) for s in seeds}
    first = next(iter(RULES))
    for r in RULES:
        v = np.array([res[s][r] for s in seeds])
        print(f"| {r} | {_ms(v)} | {_dms(v - np.array([res[s][first] for s in seeds]))} |", flush=True)
    print("\n| candidate | PR-AUC, mean ± s.e. | Δ PR-AUC (paired) | best F1, mean ± s.e. | Δ best F1 (paired) |")
    print("|---|---:|---:|---:|---:|")
    base_pa = np.array([average_precision_score(y, ref[s]) for s in seeds])
    base_f1 = np.array([best_f1(y, ref[s]) for s in seeds])

    def row(label: str, ps: dict[int, np.ndarray]) -> None:
        pa = np.array([average_precision_score(y, ps[s]) for s in seeds])
        f1 = np.array([best_f1(y, ps[s]) for s in seeds])
        print(f"| {label} | {_ms(pa)} | {_dms(pa - base_pa)} | {_ms(f1)} | {_dms(f1 - base_f1)} |", flush=True)

    row(ref_label, ref)
    for label, fit in cands:
        if only and only not in label:
            continue
        ps = measure(label, fit)
        row(label, ps)
        if label.startswith("hgb"):
            row("mean of the reference's and hgb's probabilities", {s: (ref[s] + ps[s]) / 2 for s in seeds})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds (default 0,1,2)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    ap.add_argument("--part", choices=("features", "model"), default="features",
                    help="derived-feature sets (default) or model-side candidates on the profile's features")
    ap.add_argument("--tuning", action="append", default=[], metavar="LABEL=PATH",
                    help="--part model: a local run's tuning.json whose best xgboost and hgb to compare")
    ap.add_argument("--cache", help="--part model: folder keeping out-of-fold probabilities between runs")
    ap.add_argument("--only", help="--part model: only the candidates whose label contains this text")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    for t in a.tuning:
        if "=" not in t or not Path(t.split("=", 1)[1]).is_file():
            ap.error(f"--tuning {t!r}: expected LABEL=PATH of an existing tuning.json")
    if a.part == "model":
        print(f"# AI4I model-side CV · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · train + validation "
              f"rows of the seed-0 split · profile's features · {a.folds} stratified folds × fold seeds "
              f"{a.seeds} · reference: fixed XGBoost {FIXED}\n")
        cache = Path(a.cache) if a.cache else None
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
        model_part(Path(a.data_dir), seeds, a.folds, a.tuning, cache, a.only)
        return 0
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
