"""SageMaker Processing entry point: raw fleet files -> features for train/validation/test + spec.

Contract (DESIGN.md): reads ``/opt/ml/processing/input/raw`` (the data directory layout, e.g.
``cmapss/train_FD001.txt.gz``) and optionally a profile JSON in ``/opt/ml/processing/input/profile``;
writes under ``/opt/ml/processing/output``::

    train/train.parquet  train/feature_spec.json   (the spec travels with the train channel)
    validation/validation.parquet
    test/test.parquet                              (C-MAPSS: last reading of each test asset, true RUL)
    baseline/train.parquet  baseline/test.parquet  (raw current readings, uncapped labels)
    spec/feature_spec.json  manifest.json      (lineage: file checksums, row and asset counts)

Parquet columns (pyarrow ships in the SageMaker XGBoost container): ``_asset``, ``_time`` (fleets only), ``_label``, then the features in spec order.
Every path is overridable (``--input-dir``, ``--output-dir``) so local mode and tests run it
anywhere. Nothing is written unless the whole run succeeds (output staged, then moved).

Usage: ``python preprocess.py --profile cmapss --subset FD001 [--seed 0] [--spec path]``.
With ``--spec`` an existing fitted spec is applied instead of fitting (sharded transform).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

try:
    from . import features as F
    from .dataio import DataError, read_rul_file, read_table, resolve_file
    from .profiles import Profile, ProfileError, load_profile
except ImportError:  # SageMaker container: siblings are top-level modules
    import features as F
    from dataio import DataError, read_rul_file, read_table, resolve_file
    from profiles import Profile, ProfileError, load_profile

META = ["_asset", "_time", "_label"]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes as stored (for lineage)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def group_split(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of rows whose asset is held out; ``fraction`` of the assets, never split."""
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    n_out = max(1, round(fraction * len(uniq)))
    held = rng.choice(uniq, size=n_out, replace=False)
    return np.isin(ids, held)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows, ``fraction`` of each class (at least one per class)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_out = max(1, round(fraction * len(idx)))
        mask[rng.choice(idx, size=n_out, replace=False)] = True
    return mask


def truncate_assets(df: pd.DataFrame, profile: Profile, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cut each run-to-failure asset at a random reading (the C-MAPSS test protocol) for held-out
    test assets of fleets that ship no test file. Returns the truncated rows and true RUL per asset."""
    rng = np.random.default_rng(seed)
    keep, true = [], []
    for _, g in df.groupby(profile.id_column, sort=False):
        n = len(g)
        cut = int(rng.integers(min(profile.min_readings, n), n + 1))
        part = g.iloc[:cut]
        keep.append(part)
        true.append(float(g[profile.time_column].iloc[-1] - part[profile.time_column].iloc[-1]))
    return pd.concat(keep), np.asarray(true)


def _frame(features: pd.DataFrame, asset: np.ndarray, time_: np.ndarray | None, label: np.ndarray) -> pd.DataFrame:
    meta = {"_asset": asset}
    if time_ is not None:
        meta["_time"] = time_
    meta["_label"] = label
    return pd.concat([pd.DataFrame(meta, index=features.index), features], axis=1)


def build_datasets(profile: Profile, data_dir: Path, seed: int = 0,
                   spec: F.FeatureSpec | None = None) -> tuple[dict[str, pd.DataFrame], F.FeatureSpec, dict]:
    """Read, validate, split and featurise. Returns ({name: frame}, spec, manifest). Pure (no writes)."""
    manifest: dict = {"profile": profile.name, "subset": profile.subset, "seed": seed, "files": {}}

    def read(role: str) -> pd.DataFrame:
        path = resolve_file(data_dir, profile.file(role))
        manifest["files"][role] = {"path": str(Path(profile.file(role))), "sha256": file_sha256(path)}
        raw = read_table(path, profile)
        return F.validate_readings(raw, profile, source=str(path), require_label=not profile.is_regression)

    out: dict[str, pd.DataFrame] = {}
    if profile.is_regression:
        full = read("train")
        held = group_split(full[profile.id_column].to_numpy(), profile.validation_fraction, seed)
        test_df, true_rul = None, None
        if profile.file("test"):
            test_df = read("test")
            rul_path = resolve_file(data_dir, profile.file("test_rul"))
            manifest["files"]["test_rul"] = {"path": profile.file("test_rul"), "sha256": file_sha256(rul_path)}
            true_rul = read_rul_file(rul_path)
            n_assets = test_df[profile.id_column].nunique()
            if len(true_rul) != n_assets:
                raise DataError(f"{rul_path}: {len(true_rul)} RUL values for {n_assets} test assets")
        elif profile.test_fraction > 0:
            test_mask = group_split(full[profile.id_column].to_numpy(), profile.test_fraction, seed + 1) & ~held
            test_df, true_rul = truncate_assets(full[test_mask], profile, seed)
            full, held = full[~test_mask], held[~test_mask]
        train_df, val_df = full[~held], full[held]
        if spec is None:
            spec = F.fit_spec(train_df, profile, seed=seed)
        for name, part in (("train", train_df), ("validation", val_df)):
            X = F.transform(part, spec)
            out[name] = _frame(X, part[profile.id_column].to_numpy(), part[profile.time_column].to_numpy(),
                               F.rul_labels(part, profile, spec.label_cap))
        out["baseline_train"] = _frame(F.baseline_matrix(full, profile), full[profile.id_column].to_numpy(),
                                       full[profile.time_column].to_numpy(), F.rul_labels(full, profile, None))
        if test_df is not None:
            Xt = F.transform(test_df, spec)
            last = test_df.groupby(profile.id_column, sort=False).tail(1).index
            out["test"] = _frame(Xt.loc[last], test_df.loc[last, profile.id_column].to_numpy(),
                                 test_df.loc[last, profile.time_column].to_numpy(), true_rul)
            out["baseline_test"] = _frame(F.baseline_matrix(test_df.loc[last], profile),
                                          test_df.loc[last, profile.id_column].to_numpy(),
                                          test_df.loc[last, profile.time_column].to_numpy(), true_rul)
    else:
        full = read("data" if profile.file("data") else "train")
        y = full[profile.label.column].to_numpy()
        if not set(np.unique(y)) <= {0.0, 1.0}:
            raise DataError(f"label column {profile.label.column!r} must hold 0/1 values")
        test_mask = stratified_split(y, profile.test_fraction, seed) if profile.test_fraction > 0 \
            else np.zeros(len(y), bool)
        rest = ~test_mask
        val_mask = np.zeros(len(y), dtype=bool)
        val_mask[np.flatnonzero(rest)[stratified_split(y[rest], profile.validation_fraction /
                                                       (1 - profile.test_fraction), seed + 1)]] = True
        train_mask = rest & ~val_mask
        if spec is None:
            spec = F.fit_spec(full[train_mask], profile, seed=seed)
        ids = full[profile.id_column].to_numpy() if profile.id_column else np.arange(len(full))
        for name, m in (("train", train_mask), ("validation", val_mask), ("test", test_mask)):
            if not m.any():
                continue
            part = full[m]
            out[name] = _frame(F.transform(part, spec), ids[m], None, y[m])
            out[f"baseline_{name}"] = _frame(F.baseline_matrix(part, profile), ids[m], None, y[m])
        out["baseline_train"] = pd.concat([out["baseline_train"], out.pop("baseline_validation")])
    for name, frame in out.items():
        manifest.setdefault("rows", {})[name] = len(frame)
        manifest.setdefault("assets", {})[name] = int(frame["_asset"].nunique())
    manifest["n_features"] = len(spec.feature_names)
    manifest["n_regimes"] = spec.n_regimes
    manifest["dropped_sensors"] = spec.dropped_sensors
    if "test" in out:
        manifest["test_fingerprint"] = test_fingerprint(out["test"])
    return out, spec, manifest


def test_fingerprint(test: pd.DataFrame) -> str:
    """Identity of a test set: hash of its asset ids, times and labels (same set -> same hash)."""
    cols = [c for c in META if c in test.columns]
    payload = test[cols].to_csv(index=False, float_format="%.6g").encode()
    return hashlib.sha256(payload).hexdigest()[:16]


LAYOUT = {"train": "train/train.parquet", "validation": "validation/validation.parquet",
          "test": "test/test.parquet", "baseline_train": "baseline/train.parquet",
          "baseline_test": "baseline/test.parquet"}


def write_outputs(out_dir: Path, frames: dict[str, pd.DataFrame], spec: F.FeatureSpec, manifest: dict) -> None:
    """Write all outputs into a staging dir beside ``out_dir``, then move them in: all or nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".preprocess-", dir=out_dir))
    try:
        for name, frame in frames.items():
            p = stage / LAYOUT[name]
            p.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(p, index=False)
        for rel in ("train/feature_spec.json", "spec/feature_spec.json"):
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_text(spec.to_json())
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for child in sorted(stage.iterdir()):
            target = out_dir / child.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(child, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=os.environ.get("PREDMAINT_PROFILE", "cmapss"),
                    help="shipped profile name or path to a profile JSON")
    ap.add_argument("--subset", default=os.environ.get("PREDMAINT_SUBSET") or None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-dir", default="/opt/ml/processing/input")
    ap.add_argument("--output-dir", default="/opt/ml/processing/output")
    ap.add_argument("--data-dir", default=None, help="raw data dir (default: <input-dir>/raw)")
    ap.add_argument("--spec", default=None, help="apply this fitted feature spec instead of fitting")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    try:
        profile_dir = Path(args.input_dir) / "profile"
        user_profiles = sorted(profile_dir.glob("*.json")) if profile_dir.is_dir() else []
        profile = load_profile(user_profiles[0] if user_profiles else args.profile, args.subset)
        spec = F.FeatureSpec.from_json(Path(args.spec).read_text()) if args.spec else None
        data_dir = Path(args.data_dir) if args.data_dir else Path(args.input_dir) / "raw"
        frames, spec, manifest = build_datasets(profile, data_dir, args.seed, spec)
        write_outputs(Path(args.output_dir), frames, spec, manifest)
    except (ProfileError, DataError, F.FeatureError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{k}={v}" for k, v in manifest["rows"].items())
    print(f"preprocess: {profile.name} {profile.subset or ''} regimes={spec.n_regimes} "
          f"features={len(spec.feature_names)} rows: {rows} ({time.time() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
