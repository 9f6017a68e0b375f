"""SageMaker Processing entry point: raw fleet files -> features for train/validation/test + spec.

Contract (docs/contract.md, "Scripts in the SageMaker containers"): reads ``/opt/ml/processing/input/raw`` (the data directory layout, e.g.
``cmapss/train_FD001.txt.gz``, or a role's file partitioned by asset into parts under
``cmapss/train_FD001/``) and the run's profile named by ``--profile`` (a shipped name, or a file: the
pipeline passes ``/opt/ml/processing/input/profile/profile.json``, the document the prepare Lambda
validated, so every job of a run reads the same profile); writes under ``/opt/ml/processing/output``::

    train/train.parquet  train/feature_spec.json   (the spec travels with the train channel)
    validation/validation.parquet
    test/test.parquet                              (C-MAPSS: last reading of each test asset, true RUL)
    baseline/train.parquet  baseline/test.parquet  (raw current readings, uncapped labels)
    spec/feature_spec.json  manifest.json      (lineage: file checksums, row and asset counts)
    train/drift_baseline.json  spec/drift_baseline.json  (drift.py: per-regime bins of the training
                                                   rows' readings and features; stage all, or
                                                   stage fit when it reads every object)

Parquet columns (pyarrow ships in the SageMaker XGBoost container): ``_asset``, ``_time`` (fleets only), ``_label``, then the features in spec order.
Every path is overridable (``--input-dir``, ``--output-dir``) so local mode and tests run it
anywhere. Nothing is written unless the whole run succeeds (output staged, then moved).

Usage: ``python preprocess.py --profile cmapss|PROFILE.json --subset FD001 [--seed 0] [--spec path]``.
With ``--spec`` an existing fitted spec is applied instead of fitting.

Stages (``--stage``), for fleets too big for one instance:

* ``all`` (default): everything above in one process (local mode, tests, one processing instance).
* ``fit``: one instance reads every raw object, assigns validation/test exactly as ``all`` does
  (asset-grouped for fleets, stratified rows for labelled rows, truncation cuts, true RUL per test
  asset) and fits the feature spec; writes ``spec/feature_spec.json``, ``spec/split.json`` (the
  assignment, with each object's SHA-256) and ``train/feature_spec.json``, and the drift baseline
  beside both specs (computed as ``all`` computes it, from every training row). With
  ``--fit-sample-objects K`` the spec and the drift baseline are fitted on the training rows of K
  evenly spaced raw objects only (the split still sees every asset); the default 0 fits on all of
  them, like ``all``, up to ``FIT_MAX_ROWS`` estimated rows, and on a sample of about that many above.
* ``transform``: any number of instances, each with a shard of the raw objects (``ShardedByS3Key``)
  and the fit output (``--fitted``, default ``<input-dir>/spec``), writes one part per raw object::

      train/part-00003.parquet  validation/part-00003.parquet  test/part-00003.parquet
      baseline/train-0-00003.parquet  baseline/train-1-00003.parquet  baseline/test-00003.parquet

  (the number is the object's position among its role's objects in key order). Each object goes to
  exactly one instance, so names never clash, and reading a channel's parts in name order gives
  the rows of ``all`` in the same order. ``manifest-<host>.json`` records what one instance did
  (host from ``/opt/ml/config/resourceconfig.json``, or ``--host``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_src import drift as D
from training_src import features as F
from training_src import selection
from training_src.dataio import DataError, list_parts, read_rul_file, read_table, resolve_file, resolve_parts
from training_src.profiles import Profile, ProfileError, load_profile
from training_src.threads import (
    arrow_system_pool,
    fix_mmap_threshold,
    limit_malloc_arenas,
    parallel,
    trim_malloc,
)

META = ["_asset", "_time", "_label"]
STAGES = ("all", "fit", "transform")
SPLIT_FORMAT = "predmaint-split/1"
SPLIT_FILE = "split.json"
SPEC_FILE = "feature_spec.json"
RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")  # SageMaker: {"current_host", "hosts"}
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


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


def truncation_cuts(ids: np.ndarray, min_readings: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(assets in first-appearance order, readings kept per asset): each held-out test asset is cut at
    a random reading (the C-MAPSS test protocol). ``ids`` are the test assets' rows in file order."""
    rng = np.random.default_rng(seed)
    assets, first, counts = np.unique(ids, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    cuts = [int(rng.integers(min(min_readings, int(n)), int(n) + 1)) for n in counts[order]]
    return assets[order], np.asarray(cuts, dtype=np.int64)


def truncate_with_cuts(df: pd.DataFrame, profile: Profile, cuts: dict[Any, int]) -> tuple[pd.DataFrame, np.ndarray]:
    """Keep the first ``cuts[asset]`` readings of each asset; return them and each asset's true RUL."""
    keep, true = [], []
    for asset, g in df.groupby(profile.id_column, sort=False):
        part = g.iloc[:cuts[asset]]
        keep.append(part)
        true.append(float(g[profile.time_column].iloc[-1] - part[profile.time_column].iloc[-1]))
    return pd.concat(keep), np.asarray(true)


def truncate_assets(df: pd.DataFrame, profile: Profile, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cut each run-to-failure asset at a random reading (the C-MAPSS test protocol) for held-out
    test assets of fleets that ship no test file. Returns the truncated rows and true RUL per asset."""
    assets, cuts = truncation_cuts(df[profile.id_column].to_numpy(), profile.min_readings, seed)
    return truncate_with_cuts(df, profile, dict(zip(assets.tolist(), cuts.tolist(), strict=True)))


def _frame(features: pd.DataFrame, asset: np.ndarray, time_: np.ndarray | None, label: np.ndarray) -> pd.DataFrame:
    """``features`` with the meta columns ``_asset`` (``_time``) ``_label`` in front, added in place."""
    # the meta columns go in front of ``features`` itself (a concat copies every feature column)
    meta = {"_asset": asset}
    if time_ is not None:
        meta["_time"] = time_
    meta["_label"] = label
    for name, values in reversed(meta.items()):
        features.insert(0, name, values)
    return features


# ----------------------------------------------------------------------------------------------
# Raw objects
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawObject:
    """One raw file of a role: the whole file or one part of a fleet partitioned by asset."""

    role: str
    key: str  # path relative to the data dir, '/'-separated (= the S3 key under raw/)
    path: Path
    index: int  # position among the role's objects, in key order


def raw_objects(profile: Profile, data_dir: Path, role: str) -> list[RawObject]:
    """The role's objects under ``data_dir`` (the file, its .gz, or the parts of its folder)."""
    paths = resolve_parts(data_dir, profile.file(role))
    return [RawObject(role, p.relative_to(data_dir).as_posix(), p, i) for i, p in enumerate(paths)]


def read_readings(path: Path, profile: Profile) -> pd.DataFrame:
    """Read and validate one raw object (row numbers in errors are the object's own rows, header included)."""
    raw = read_table(path, profile)
    return F.validate_readings(raw, profile, source=str(path), require_label=not profile.is_regression,
                               first_row=2 if profile.header else 1)


def check_assets_disjoint(profile: Profile, keyed_ids: list[tuple[str, np.ndarray]]) -> None:
    """Every asset's readings must sit in one object: windows need its whole history on one instance."""
    if len(keyed_ids) < 2 or not (profile.id_column and profile.time_column):
        return
    uniq = [(key, pd.unique(ids)) for key, ids in keyed_ids]
    ids = pd.Series(np.concatenate([u for _, u in uniq]))
    owner = np.repeat(np.arange(len(uniq)), [len(u) for _, u in uniq])
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        where = [uniq[o][0] for o in owner[dup & (ids == ids.iat[i]).to_numpy()]]
        raise DataError(f"asset {F._aid(ids.iat[i])} has readings in {len(where)} objects ({', '.join(where)}): "
                        "partition the fleet by asset, with every reading of an asset in one object")


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _files_entry(profile: Profile, role: str, objs: list[RawObject], digests: list[str]) -> dict:
    if len(objs) == 1:
        return {"path": str(Path(profile.file(role))) if role != "test_rul" else profile.file(role),
                "sha256": digests[0]}
    return {"path": str(Path(profile.file(role))), "parts": [{"path": o.key, "sha256": d}
                                                             for o, d in zip(objs, digests, strict=True)]}


# ----------------------------------------------------------------------------------------------
# Fit: split assignment + feature spec
# ----------------------------------------------------------------------------------------------
#: the fit stage holds every training row it fits on (its memory per row: docs/scale.md): above about
#: this many rows of the training role (its first raw object's rows times the number of objects) it
#: fits on evenly spaced objects holding about this many, unless ``--fit-sample-objects`` says otherwise
FIT_MAX_ROWS = 1_000_000


def auto_sample_objects(n_objects: int, first_rows: int) -> int:
    """How many objects the fit stage samples when none is asked for: 0 (all) up to ``FIT_MAX_ROWS``
    estimated rows, else the number of objects of ``first_rows`` rows that holds about that many."""
    if n_objects <= 1 or first_rows * n_objects <= FIT_MAX_ROWS:
        return 0
    return max(1, FIT_MAX_ROWS // max(first_rows, 1))


def _sample_indices(n: int, k: int) -> set[int]:
    """``k`` evenly spaced object positions out of ``n`` (all of them when k is 0 or >= n)."""
    if k <= 0 or k >= n:
        return set(range(n))
    return set(np.unique(np.linspace(0, n - 1, k).round().astype(int)).tolist())


def fit(profile: Profile, data_dir: Path, seed: int = 0, spec: F.FeatureSpec | None = None,
        sample_objects: int = 0, auto_sample: bool = False) -> tuple[dict, F.FeatureSpec, dict[str, pd.DataFrame], dict]:
    """Read every raw object, assign validation/test, fit the spec (unless given).

    Returns ``(split, spec, frames, manifest)``: ``split`` is the JSON-able assignment that
    ``transform`` applies to any subset of the objects; ``frames`` holds the concatenated validated
    rows per role when every object was kept (``sample_objects`` 0), else only the sample's.
    ``auto_sample`` (the fit stage): with ``sample_objects`` 0, sample ``auto_sample_objects`` objects.
    """
    data_dir = Path(data_dir)
    manifest: dict = {"profile": profile.name, "subset": profile.subset, "seed": seed, "files": {}}
    data_role = "train" if profile.is_regression or not profile.file("data") else "data"
    objects: list[dict] = []
    frames: dict[str, pd.DataFrame] = {}
    split: dict[str, Any] = {"format": SPLIT_FORMAT, "profile": profile.name, "subset": profile.subset,
                             "task": profile.task, "seed": seed}

    def read_role(role: str, keep: set[int] | None) -> tuple[list[RawObject], list[pd.DataFrame | None],
                                                               list[np.ndarray], list[np.ndarray | None]]:
        objs = raw_objects(profile, data_dir, role)
        digests, kept, ids, labels = [], [], [], []
        for o in objs:
            df = read_readings(o.path, profile)
            digests.append(file_sha256(o.path))
            objects.append({"role": role, "key": o.key, "index": o.index, "sha256": digests[-1], "rows": len(df)})
            ids.append(df[profile.id_column].to_numpy() if profile.id_column else np.arange(len(df)))
            labels.append(None if profile.is_regression else df[profile.label.column].to_numpy())
            kept.append(df if keep is None or o.index in keep else None)
        manifest["files"][role] = _files_entry(profile, role, objs, digests)
        check_assets_disjoint(profile, [(o.key, i) for o, i in zip(objs, ids, strict=True)])
        return objs, kept, ids, labels

    n_data = len(resolve_parts(data_dir, profile.file(data_role)))
    if auto_sample and sample_objects == 0 and n_data > 1:
        first = raw_objects(profile, data_dir, data_role)[0]
        sample_objects = auto_sample_objects(n_data, len(read_readings(first.path, profile)))
    sample = _sample_indices(n_data, sample_objects)
    objs, kept, ids_list, labels_list = read_role(data_role, None if len(sample) == n_data else sample)
    ids_full = np.concatenate(ids_list)
    sampled = [o.key for o in objs if o.index in sample]
    fit_rows = pd.concat([d for d in kept if d is not None], ignore_index=True) if len(kept) > 1 else kept[0]

    if profile.is_regression:
        held = group_split(ids_full, profile.validation_fraction, seed)
        split["validation"] = np.unique(ids_full[held]).tolist()
        test: dict[str, Any] = {"source": None}
        if profile.file("test"):
            _, tkept, tids, _ = read_role("test", None)
            rul_path = resolve_file(data_dir, profile.file("test_rul"))
            rul_key = rul_path.relative_to(data_dir).as_posix()
            digest = file_sha256(rul_path)
            manifest["files"]["test_rul"] = {"path": profile.file("test_rul"), "sha256": digest}
            objects.append({"role": "test_rul", "key": rul_key, "index": 0, "sha256": digest, "rows": None})
            true_rul = read_rul_file(rul_path)
            assets = pd.unique(np.concatenate(tids))
            if len(true_rul) != len(assets):
                raise DataError(f"{rul_path}: {len(true_rul)} RUL values for {len(assets)} test assets")
            test = {"source": "file", "assets": assets.tolist(), "true_rul": true_rul.tolist()}
            frames["test"] = _concat(tkept)
        elif profile.test_fraction > 0:
            test_mask = group_split(ids_full, profile.test_fraction, seed + 1) & ~held
            assets, cuts = truncation_cuts(ids_full[test_mask], profile.min_readings, seed)
            test = {"source": "split", "assets": assets.tolist(), "cuts": cuts.tolist()}
        split["test"] = test
        if spec is None:
            out_of_train = split["validation"] + (test["assets"] if test["source"] == "split" else [])
            train_rows = fit_rows[~np.isin(fit_rows[profile.id_column].to_numpy(), out_of_train)]
            # renumbered in place: ``reset_index`` would copy every column beside the masked rows, and both
            # copies would be held while the window/cap choice runs
            train_rows.index = pd.RangeIndex(len(train_rows))
            spec = fit_regression_spec(train_rows, profile, seed)
            del train_rows
    else:
        y = np.concatenate(labels_list)
        if not set(np.unique(y)) <= {0.0, 1.0}:
            raise DataError(f"label column {profile.label.column!r} must hold 0/1 values")
        test_mask = stratified_split(y, profile.test_fraction, seed) if profile.test_fraction > 0 \
            else np.zeros(len(y), bool)
        rest = ~test_mask
        val_mask = np.zeros(len(y), dtype=bool)
        val_mask[np.flatnonzero(rest)[stratified_split(y[rest], profile.validation_fraction /
                                                       (1 - profile.test_fraction), seed + 1)]] = True
        codes = np.where(test_mask, SPLIT_CODES["test"], np.where(val_mask, SPLIT_CODES["validation"], 0))
        offsets = np.cumsum([0] + [len(i) for i in ids_list])
        split["rows"] = {o.key: {"offset": int(offsets[o.index]),
                                 "codes": "".join(map(str, codes[offsets[o.index]:offsets[o.index + 1]]))}
                         for o in objs}
        if spec is None:
            kept_codes = np.concatenate([codes[offsets[i]:offsets[i + 1]] for i in sorted(sample)])
            spec = F.fit_spec(fit_rows[kept_codes == 0], profile, seed=seed)
    frames[data_role] = fit_rows  # the sample's rows when the fit read a sample
    split["objects"] = objects
    split["spec_sha256"] = hashlib.sha256(spec.to_json().encode()).hexdigest()
    split["fit"] = {"sample_objects": "all" if len(sample) == n_data else sampled}
    return split, spec, frames, manifest


def fit_regression_spec(train_rows: pd.DataFrame, profile: Profile, seed: int) -> F.FeatureSpec:
    """The feature spec of a run-to-failure fleet; when the profile lists candidate windows
    (``windows.cv_sizes``) or caps (``label.cv_caps``), they are chosen first by grouped
    cross-validation on these training rows (``selection.choose``), recorded in ``spec.selection``."""
    w = profile.windows
    if not ((w and w.cv_sizes) or profile.label.cv_caps):
        return F.fit_spec(train_rows, profile, seed=seed)

    def job(kind: str) -> Any:
        if kind == "choose":
            return selection.choose(train_rows, profile, seed)
        # the spec's regimes and normalisation depend on neither the window nor the cap: fitted while the
        # choice runs (its k-means and ridge fit one at a time beside the choice's, ``exclusive``)
        return F.fit_spec(train_rows, profile, seed=seed, exclusive=selection.BLAS)

    chosen, base = parallel(job, [("choose",), ("base",)])
    # the chosen window and cap's health index: the spec ``fit_spec(..., window_sizes=W, cap=cap)`` fits (the
    # rows' normalised sensors computed now, not held while the choice runs)
    spec = F.with_choice(base, train_rows, profile, chosen["window_sizes"], chosen["cap"],
                         F.normalised(base, train_rows))
    spec.selection = chosen["record"]
    return spec


# ----------------------------------------------------------------------------------------------
# Transform: features for any subset of the objects, with the fitted split and spec
# ----------------------------------------------------------------------------------------------
def transform(profile: Profile, spec: F.FeatureSpec, split: dict, data: pd.DataFrame | None,
              test_df: pd.DataFrame | None, row_offset: int = 0, codes: str | None = None,
              merge_baseline: bool = True) -> dict[str, pd.DataFrame]:
    """Feature frames for ``data`` (rows of the train/data role) and ``test_df`` (rows of the test
    role), which may be the whole fleet or whole-asset parts of it. Pure (no writes)."""
    out: dict[str, pd.DataFrame] = {}
    if profile.is_regression:
        test = split["test"]
        true_rul = None
        if data is not None:
            ids = data[profile.id_column].to_numpy()
            held = np.isin(ids, split["validation"])
            if test["source"] == "split":
                test_mask = np.isin(ids, test["assets"])
                cuts = dict(zip(test["assets"], test["cuts"], strict=True))
                test_df, true_rul = truncate_with_cuts(data[test_mask], profile, cuts) if test_mask.any() \
                    else (None, None)
                data, held = data[~test_mask], held[~test_mask]
            def frame_of(name: str, part: pd.DataFrame) -> pd.DataFrame:
                if name == "baseline_train":
                    X, labels = F.baseline_matrix(part, profile), F.rul_labels(part, profile, None)
                else:
                    X, labels = F.transform(part, spec, dtype=FEATURE_DTYPE, order="F", run=parallel), F.rul_labels(part, profile, spec.label_cap)
                return _frame(X, part[profile.id_column].to_numpy(), part[profile.time_column].to_numpy(), labels)

            # the single-process path keeps today's frames even when empty; parts skip empty ones
            jobs = [(name, part) for name, part in (("train", data[~held]), ("validation", data[held]),
                                                    ("baseline_train", data)) if len(part) or merge_baseline]
            # independent frames, built at once on a multi-core instance (their NumPy work releases the GIL)
            out.update(zip([name for name, _ in jobs], parallel(frame_of, jobs), strict=True))
        if test_df is not None and test["source"] == "file":
            rul = dict(zip(test["assets"], test["true_rul"], strict=True))
            last_ids = test_df.groupby(profile.id_column, sort=False).tail(1)[profile.id_column].tolist()
            unknown = [a for a in last_ids if a not in rul]
            if unknown:
                raise DataError(f"test asset {F._aid(unknown[0])} has no true RUL in the fitted split")
            true_rul = np.asarray([rul[a] for a in last_ids])
        if test_df is not None and true_rul is not None:
            Xt = F.transform(test_df, spec, dtype=FEATURE_DTYPE, order="F", run=parallel)
            last = test_df.groupby(profile.id_column, sort=False).tail(1).index
            out["test"] = _frame(Xt.loc[last], test_df.loc[last, profile.id_column].to_numpy(),
                                 test_df.loc[last, profile.time_column].to_numpy(), true_rul)
            out["baseline_test"] = _frame(F.baseline_matrix(test_df.loc[last], profile),
                                          test_df.loc[last, profile.id_column].to_numpy(),
                                          test_df.loc[last, profile.time_column].to_numpy(), true_rul)
        return out
    if data is None:
        return out
    y = data[profile.label.column].to_numpy()
    if codes is None:
        raise DataError("transform of labelled rows needs the rows' split codes")
    code = np.frombuffer(codes.encode(), dtype=np.uint8) - ord("0")
    if len(code) != len(data):
        raise DataError(f"the fitted split has {len(code)} rows for an object with {len(data)} rows")
    ids = data[profile.id_column].to_numpy() if profile.id_column else np.arange(row_offset, row_offset + len(data))
    for name in ("train", "validation", "test"):
        m = code == SPLIT_CODES[name]
        if not m.any():
            continue
        part = data[m]
        out[name] = _frame(F.transform(part, spec, dtype=FEATURE_DTYPE, order="F", run=parallel), ids[m], None, y[m])
        out[f"baseline_{name}"] = _frame(F.baseline_matrix(part, profile), ids[m], None, y[m])
    if merge_baseline:
        out["baseline_train"] = pd.concat([out["baseline_train"], out.pop("baseline_validation")])
    return out


def fitted_rows(profile: Profile, split: dict, frames: dict[str, pd.DataFrame]
                ) -> tuple[pd.DataFrame | None, str | None]:
    """``fit``'s training-role rows (the sample's when it fitted on a sample of objects) and, for
    labelled rows, their split codes in row order: what ``transform`` takes for the training data."""
    data = frames.get("train" if "train" in frames else "data")
    sampled = split.get("fit", {}).get("sample_objects", "all")
    codes = None if profile.is_regression else "".join(
        r["codes"] for key, r in split["rows"].items() if sampled == "all" or key in sampled)
    return data, codes


def build_datasets(profile: Profile, data_dir: Path, seed: int = 0,
                   spec: F.FeatureSpec | None = None) -> tuple[dict[str, pd.DataFrame], F.FeatureSpec, dict]:
    """Read, validate, split and featurise. Returns ({name: frame}, spec, manifest). Pure (no writes)."""
    split, spec, frames, manifest = fit(profile, data_dir, seed, spec)
    data, codes = fitted_rows(profile, split, frames)
    trim_malloc()  # what the window/cap choice left free in the heap, given back before the frames are built
    out = transform(profile, spec, split, data, frames.get("test"), 0, codes)
    del data, frames
    trim_malloc()  # and what the transform left, before the files are written and the drift baseline built
    _summarise(manifest, out, spec)
    if "test" in out:
        manifest["test_fingerprint"] = test_fingerprint(out["test"])
    return out, spec, manifest


def _summarise(manifest: dict, out: dict[str, pd.DataFrame], spec: F.FeatureSpec) -> None:
    for name, frame in out.items():
        manifest.setdefault("rows", {})[name] = len(frame)
        manifest.setdefault("assets", {})[name] = int(frame["_asset"].nunique())
    manifest["n_features"] = len(spec.feature_names)
    manifest["n_regimes"] = spec.n_regimes
    manifest["dropped_sensors"] = spec.dropped_sensors


def test_fingerprint(test: pd.DataFrame) -> str:
    """Identity of a test set: hash of its asset ids, times and labels (same set -> same hash)."""
    cols = [c for c in META if c in test.columns]
    payload = test[cols].to_csv(index=False, float_format="%.6g").encode()
    return hashlib.sha256(payload).hexdigest()[:16]


#: the feature columns of the train/validation/test frames: every model reads its features as float32
#: (train.py, evaluate.py, the serving path casts its float64 features), so float32 files hand them the
#: same values at half the bytes. The baseline frames (raw readings) stay float64: the drift baseline
#: bins raw readings as float64.
FEATURE_DTYPE = np.float32

LAYOUT = {"train": "train/train.parquet", "validation": "validation/validation.parquet",
          "test": "test/test.parquet", "baseline_train": "baseline/train.parquet",
          "baseline_test": "baseline/test.parquet"}
#: sharded transform: one file per raw object; name order = the row order of the single-process layout
PART_LAYOUT = {"train": "train/part-{i}.parquet", "validation": "validation/part-{i}.parquet",
               "test": "test/part-{i}.parquet", "baseline_train": "baseline/train-0-{i}.parquet",
               "baseline_validation": "baseline/train-1-{i}.parquet", "baseline_test": "baseline/test-{i}.parquet"}
CHANNELS = ("train", "validation", "test", "baseline", "spec")


def split_by_asset(frame: pd.DataFrame, parts: int) -> list[pd.DataFrame]:
    """``frame`` cut into ``parts`` contiguous blocks of whole assets (rows and order kept), as even
    in rows as whole assets allow. Multi-instance training shards the train channel by object
    (``ShardedByS3Key``), so each host needs a file of its own; a part may be empty only when
    there are fewer assets than parts (``train.py`` then names the empty host)."""
    if parts <= 1 or frame.empty:
        return [frame]
    ids = frame["_asset"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # first row of each asset run
    # cut at the asset start nearest to each even row boundary
    targets = np.arange(1, parts) * len(frame) / parts
    cuts = starts[np.clip(np.searchsorted(starts, targets), 0, len(starts) - 1)]
    bounds = [0, *sorted(set(int(c) for c in cuts if c > 0)), len(frame)]
    blocks = [frame.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    return blocks + [frame.iloc[0:0]] * (parts - len(blocks))


def write_outputs(out_dir: Path, frames: dict[str, pd.DataFrame], spec: F.FeatureSpec, manifest: dict,
                  train_parts: int = 1) -> None:
    """Write all outputs into a staging dir beside ``out_dir``, then move them in: all or nothing.

    ``train_parts`` > 1 writes the train channel as ``train/part-00000.parquet``... (whole assets,
    name order = row order) instead of ``train/train.parquet``: one object per training host."""
    files: dict[str, pd.DataFrame | str] = {LAYOUT[name]: frame for name, frame in frames.items()
                                            if not (name == "train" and train_parts > 1)}
    if train_parts > 1:
        for i, part in enumerate(split_by_asset(frames["train"], train_parts)):
            files[f"train/part-{i:05d}.parquet"] = part
    for rel in ("train/feature_spec.json", "spec/feature_spec.json"):
        files[rel] = spec.to_json()
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True)
    # the drift baseline (one core's NumPy and pandas work) is computed while the parquet files are written
    _write(out_dir, files, replace_dirs=True, more=lambda: drift_baseline_files(frames, spec))


def drift_baseline_files(frames: dict[str, pd.DataFrame], spec: F.FeatureSpec) -> dict[str, str]:
    """The drift baseline (drift.py) beside both copies of the spec; none when the frames lack it."""
    doc = D.baseline_from_frames(frames, spec)
    if doc is None:
        return {}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    return {f"train/{D.BASELINE_FILE}": text, f"spec/{D.BASELINE_FILE}": text}


def _write(out_dir: Path, files: dict[str, pd.DataFrame | str], *, replace_dirs: bool,
           clear: tuple[str, ...] = (), more: Callable[[], dict[str, str]] | None = None) -> None:
    """Stage ``files`` (relative path -> frame or text) beside ``out_dir``, then move them in.
    ``replace_dirs``: each top-level entry replaces what was there (a fresh dataset); otherwise
    files are moved one by one next to the parts other instances (or earlier shards) wrote.
    ``more``: computes further text files (relative path -> text) while the parquet files are written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".preprocess-", dir=out_dir))
    try:
        def write_text(texts: dict[str, str]) -> None:
            for rel, content in texts.items():
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                (stage / rel).write_text(content)

        for rel in files:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        write_text({rel: c for rel, c in files.items() if isinstance(c, str)})

        def job(rel: str | None, frame: pd.DataFrame | None) -> dict[str, str] | None:
            if frame is None:
                return more() if more is not None else None
            frame.to_parquet(stage / rel, index=False)
            return None

        # the parquet files at once, one per core (pyarrow encodes and writes without the GIL), the largest
        # first so that the longest write starts at once; ``more`` second, beside it
        jobs: list[tuple[str | None, pd.DataFrame | None]] = sorted(
            ((rel, c) for rel, c in files.items() if not isinstance(c, str)), key=lambda rc: -rc[1].size)
        jobs.insert(min(1, len(jobs)), (None, None))
        for texts in parallel(job, jobs):
            write_text(texts or {})
        for name in clear:
            if (out_dir / name).is_dir() and not (stage / name).exists():
                shutil.rmtree(out_dir / name)
        moves = sorted(stage.iterdir()) if replace_dirs else \
            sorted(p for p in stage.rglob("*") if p.is_file())
        for child in moves:
            target = out_dir / child.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(child, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------
def run_fit(profile: Profile, data_dir: Path, out_dir: Path, seed: int = 0, spec: F.FeatureSpec | None = None,
            sample_objects: int = 0) -> tuple[dict, F.FeatureSpec, dict]:
    """The fit stage: writes spec/feature_spec.json, spec/split.json, train/feature_spec.json,
    manifest.json and the drift baseline beside both specs (the transform instances each see a shard,
    so only this instance can write it: from every training row, or from the sample's when the fit
    read a sample, chosen by ``sample_objects`` or automatically above ``FIT_MAX_ROWS``); clears the
    channels of an earlier dataset in ``out_dir``."""
    split, spec, frames, manifest = fit(profile, data_dir, seed, spec, sample_objects, auto_sample=True)
    counts = {"validation_assets": len(split.get("validation", []))} if profile.is_regression else {
        name: sum(r["codes"].count(str(c)) for r in split["rows"].values()) for name, c in SPLIT_CODES.items()}
    if profile.is_regression and split["test"]["source"]:
        counts["test_assets"] = len(split["test"]["assets"])
    manifest.update({"stage": "fit", "objects": len(split["objects"]), "split": counts, "fit": split["fit"],
                     "n_features": len(spec.feature_names), "n_regimes": spec.n_regimes,
                     "dropped_sensors": spec.dropped_sensors})
    text = json.dumps(split, separators=(",", ":"), sort_keys=True)
    files = {f"spec/{SPEC_FILE}": spec.to_json(), f"spec/{SPLIT_FILE}": text, f"train/{SPEC_FILE}": spec.to_json()}
    data, codes = fitted_rows(profile, split, frames)  # the sample's rows when the fit read a sample
    if data is not None:
        files.update(drift_baseline_files(transform(profile, spec, split, data, None, 0, codes), spec))
    manifest["drift_baseline"] = f"train/{D.BASELINE_FILE}" in files
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True)
    _write(out_dir, files, replace_dirs=True, clear=CHANNELS)
    return split, spec, manifest


def load_fitted(fitted_dir: Path, profile: Profile) -> tuple[F.FeatureSpec, dict]:
    """The fit stage's spec and split, checked against each other and the profile."""
    paths = {name: Path(fitted_dir) / name for name in (SPEC_FILE, SPLIT_FILE)}
    for p in paths.values():
        if not p.is_file():
            raise DataError(f"{p} not found: the transform stage applies the fit stage's output "
                            "(run preprocess.py --stage fit first; in AWS the FitFeatures job writes it)")
    text = paths[SPEC_FILE].read_text()
    try:
        spec = F.FeatureSpec.from_json(text)
        split = json.loads(paths[SPLIT_FILE].read_text())
    except (ValueError, TypeError) as exc:
        raise DataError(f"{fitted_dir}: unreadable fit output: {exc}") from exc
    if not isinstance(split, dict) or split.get("format") != SPLIT_FORMAT:
        raise DataError(f"{paths[SPLIT_FILE]}: not a {SPLIT_FORMAT} split assignment")
    if split.get("spec_sha256") != hashlib.sha256(text.encode()).hexdigest():
        raise DataError(f"{fitted_dir}: {SPEC_FILE} and {SPLIT_FILE} come from different fit runs")
    if (split.get("profile"), split.get("subset")) != (profile.name, profile.subset):
        raise DataError(f"{paths[SPLIT_FILE]}: fitted for profile {split.get('profile')}/{split.get('subset')}, "
                        f"not {profile.name}/{profile.subset}")
    return spec, split


def local_objects(profile: Profile, data_dir: Path, split: dict) -> list[tuple[dict, Path]]:
    """The raw objects of this instance's shard, each with its fitted record; raise DataError for an
    object the fit never saw or whose bytes changed since."""
    known = {o["key"]: o for o in split["objects"]}
    found: list[tuple[dict, Path]] = []
    if not data_dir.is_dir():
        return found
    for role in sorted(profile.files):
        rel = profile.file(role)
        try:
            paths = [resolve_file(data_dir, rel)]
        except DataError:
            paths = list_parts(data_dir, rel)
        for p in paths:
            key = p.relative_to(data_dir).as_posix()
            rec = known.get(key)
            if rec is None:
                raise DataError(f"{p}: not one of the {len(known)} raw objects the fit stage assigned; "
                                "rerun the fit on the current raw data")
            if rec["role"] != role:
                raise DataError(f"{p}: fitted as role {rec['role']!r}, found as {role!r}")
            if file_sha256(p) != rec["sha256"]:
                raise DataError(f"{p}: content differs from the object the fit stage read (SHA-256 "
                                f"{rec['sha256'][:12]}...); rerun the fit on the current raw data")
            found.append((rec, p))
    return found


def current_host(override: str | None = None) -> tuple[str, list[str]]:
    """(this instance's host name, all hosts) from SageMaker's resource config; ``local`` elsewhere."""
    if override:
        return override, [override]
    try:
        doc = json.loads(RESOURCE_CONFIG.read_text())
        return str(doc["current_host"]), [str(h) for h in doc.get("hosts", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return "local", ["local"]


def run_transform(profile: Profile, data_dir: Path, out_dir: Path, fitted_dir: Path,
                  host: str | None = None) -> dict:
    """The transform stage on one instance: featurise the objects of its shard into per-object parts."""
    spec, split = load_fitted(fitted_dir, profile)
    me, hosts = current_host(host)
    objs = local_objects(profile, Path(data_dir), split)
    width = max(5, len(str(max((o["index"] for o in split["objects"]), default=0))))
    files: dict[str, pd.DataFrame | str] = {}
    rows: dict[str, int] = {}
    for rec, path in objs:
        if rec["role"] == "test_rul":
            continue  # the fit stage recorded each test asset's true RUL in the split
        df = read_readings(path, profile)
        if rec["rows"] is not None and len(df) != rec["rows"]:
            raise DataError(f"{path}: {len(df)} rows, the fit stage read {rec['rows']}")
        is_test = rec["role"] == "test"
        rows_rec = split.get("rows", {}).get(rec["key"], {})
        frames = transform(profile, spec, split, None if is_test else df, df if is_test else None,
                           rows_rec.get("offset", 0), rows_rec.get("codes"), merge_baseline=False)
        for name, frame in frames.items():
            if len(frame):
                files[PART_LAYOUT[name].format(i=f"{rec['index']:0{width}d}")] = frame
                rows[name] = rows.get(name, 0) + len(frame)
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", me)
    manifest = {"stage": "transform", "host": me, "hosts": hosts, "profile": profile.name,
                "subset": profile.subset, "spec_sha256": split["spec_sha256"],
                "objects": [rec["key"] for rec, _ in objs], "parts": sorted(files), "rows": rows}
    files[f"manifest-{safe}.json"] = json.dumps(manifest, indent=1, sort_keys=True)
    _write(Path(out_dir), files, replace_dirs=False)
    return manifest


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
    ap.add_argument("--stage", choices=STAGES, default="all",
                    help="all: one process; fit: split + spec once; transform: one shard with the fit output")
    ap.add_argument("--fitted", default=None,
                    help="transform: dir with the fit stage's feature_spec.json and split.json (default: <input-dir>/spec)")
    ap.add_argument("--fit-sample-objects", type=int,
                    default=int(os.environ.get("PREDMAINT_FIT_SAMPLE_OBJECTS") or 0),
                    help="fit: fit the spec on this many evenly spaced raw objects (0: all, or a sample of "
                         f"about {FIT_MAX_ROWS:,} rows above that many)")
    ap.add_argument("--train-parts", type=int, default=1,
                    help="write the train channel as this many part files of whole assets (one per "
                         "training instance when training is multi-instance; default 1: train.parquet)")
    ap.add_argument("--host", default=None, help="transform: this instance's name (default: SageMaker's current_host)")
    args = ap.parse_args(argv)
    if args.fit_sample_objects < 0:
        ap.error("--fit-sample-objects must be >= 0")
    if not 1 <= args.train_parts <= 1000:
        ap.error("--train-parts must be between 1 and 1000")
    if args.train_parts > 1 and args.stage != "all":
        ap.error("--train-parts applies to --stage all; the transform stage writes one part per raw object")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    limit_malloc_arenas()  # the threads' work below would otherwise keep one malloc arena each
    fix_mmap_threshold()  # large arrays given back when freed, not kept in the heap in pieces
    arrow_system_pool()  # the parquet writers' buffers given back too, not kept by pyarrow's own pool
    try:
        profile = load_profile(args.profile, args.subset)
        spec = F.FeatureSpec.from_json(Path(args.spec).read_text()) if args.spec else None
        data_dir = Path(args.data_dir) if args.data_dir else Path(args.input_dir) / "raw"
        out_dir = Path(args.output_dir)
        if args.stage == "fit":
            _, spec, manifest = run_fit(profile, data_dir, out_dir, args.seed, spec, args.fit_sample_objects)
            print(f"preprocess fit: {profile.name} {profile.subset or ''} objects={manifest['objects']} "
                  f"regimes={spec.n_regimes} features={len(spec.feature_names)} split: "
                  + ", ".join(f"{k}={v}" for k, v in manifest["split"].items())
                  + f" ({time.time() - started:.1f}s)")
            return 0
        if args.stage == "transform":
            fitted = Path(args.fitted) if args.fitted else Path(args.input_dir) / "spec"
            manifest = run_transform(profile, data_dir, out_dir, fitted, args.host)
            rows = ", ".join(f"{k}={v}" for k, v in manifest["rows"].items()) or "none"
            print(f"preprocess transform on {manifest['host']}: {len(manifest['objects'])} raw object(s), "
                  f"{len(manifest['parts'])} part(s), rows: {rows} ({time.time() - started:.1f}s)")
            return 0
        frames, spec, manifest = build_datasets(profile, data_dir, args.seed, spec)
        write_outputs(out_dir, frames, spec, manifest, train_parts=args.train_parts)
    except (ProfileError, DataError, F.FeatureError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{k}={v}" for k, v in manifest["rows"].items())
    print(f"preprocess: {profile.name} {profile.subset or ''} regimes={spec.n_regimes} "
          f"features={len(spec.feature_names)} rows: {rows} ({time.time() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
