"""Drift check: captured requests against a baseline of the training data's serving inputs.

One copy of the check, run three ways: ``predmaint drift`` on the local server's capture records,
the scheduled SageMaker processing job in AWS (``python3 processing.py drift.py ...``, see
``main``), and the tests/bench on real C-MAPSS traffic.

**Baseline** (``drift_baseline.json``, written by preprocess.py beside ``feature_spec.json`` and
shipped inside the model artifact by train.py). Per operating regime of the spec, for every kept
sensor and setting (the raw readings) and every model feature: ``BINS`` equal-frequency bins of the
training rows (the decile edges) and the training counts in them, plus each regime's share of the
rows. A few kilobytes per regime and column; no training row is stored.

**Capture records** are SageMaker's data-capture format, one JSON object per line::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON" | "BASE64" | "CSV"},
                     "endpointOutput": {...same keys, "mode": "OUTPUT"...}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-11-30T21:00:00Z"},
     "eventVersion": "0"}

Each request is decoded by the project's request codec (``predmaint_serving.codec``: the same
validation and features the endpoint computed); a request the endpoint refused (a 4xx body) is
counted and skipped. The raw readings of all requests (each ``(asset, time)`` once) and the features
of each instance's last reading are binned per regime.

**Test.** For each (column, regime) with at least ``MIN_SAMPLES`` captured values: the population
stability index ``PSI = sum((q - p) * ln(q / p))`` over the baseline bins (p baseline shares, q
captured shares, both with a half-count added to every bin so empty bins stay finite). Under no
drift ``PSI / (1/n + 1/m)`` follows approximately a chi-square with ``bins - 1`` degrees of
freedom (PSI is the symmetrised Kullback-Leibler divergence, whose second-order expansion is
Pearson's chi-square), so each PSI has a p-value. A column drifts in a regime when BOTH:

* ``PSI >= psi_threshold`` (default 0.25, the usual "significant shift" level): an effect large
  enough to matter, however much traffic was captured (with thousands of readings the test alone
  flags shifts too small to hurt the model);
* the p-value, Bonferroni-adjusted over every (column, regime) tested, is below ``alpha`` (0.001):
  with a few dozen instances PSI is noisy (its null mean is about ``(bins-1)/n``), and a check that
  tests hundreds of columns must not alarm because one of them came out high by chance. 0.001 per
  check is at most one false alarm in about three years of daily checks if the chi-square
  approximation held exactly; the bench measures the real rate, since it does not (window features
  of one asset are correlated with each other, and test fleets are not cut exactly uniformly).

``n`` is the number of distinct instances (assets) behind the values, not the readings: readings
of one asset are strongly autocorrelated, so counting them as independent would overstate the
evidence. The false-alarm rate of this rule on no-drift traffic is measured by ``bench/drift.py``.

The result (``drift_result.json``) names every drifted column with its regime, PSI and adjusted
p-value; its ``metric`` (the number of drifted columns) is what the AWS job publishes to CloudWatch.
Pure NumPy/pandas/SciPy (SciPy ships in the SageMaker XGBoost container, scikit-learn needs it).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_src import features as F
from training_src.predmaint_serving import codec
from training_src.predmaint_serving import model as serving_model

FORMAT = "predmaint-drift-baseline/1"
RESULT_FORMAT = "predmaint-drift-result/1"
BASELINE_FILE = "drift_baseline.json"
#: why a model can lack the baseline, said with the error
NO_BASELINE_WHY = ("(the model was trained before drift baselines, or its data was preprocessed by a sampled fit "
                   "(fit_sample_objects) of an earlier version, which wrote none: retrain it)")
RESULT_FILE = "drift_result.json"
BINS = 10
PSI_THRESHOLD = 0.25
ALPHA = 0.001
MIN_SAMPLES = 30
METRIC_NAME = "DriftedFeatures"
#: baseline rows used per regime: the deciles of 20 000 rows are as good as of all of them
MAX_BASELINE_ROWS = 20_000
#: simulated requests per training asset (``serving_rows``)
DRAWS = 50


class DriftError(ValueError):
    """Bad input to the drift check (baseline, capture records, arguments); the message says where."""


# ----------------------------------------------------------------------------------------------
# Baseline
# ----------------------------------------------------------------------------------------------
def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 below ``edges[0]``, i for ``edges[i-1] <= v < edges[i]``, len(edges) above."""
    return np.searchsorted(edges, values, side="right")


def sketch(values: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Equal-frequency bin edges of ``values`` (finite ones) and the counts of ``values`` in them.

    Ties collapse edges (a sensor read at coarse resolution has fewer than ``bins`` bins); a
    constant column gets the edges ``[c, next float above c]`` so values below, at and above ``c``
    fall in three different bins and a change away from the constant is still seen.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"edges": [], "counts": [0]}
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    if v.min() == v.max():
        edges = np.array([v[0], np.nextafter(v[0], np.inf)])
    counts = np.bincount(bin_index(v, edges), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def raw_columns(spec: F.FeatureSpec) -> list[str]:
    """The raw reading columns the baseline describes: the settings and the kept sensors."""
    return [*spec.setting_columns, *spec.sensors]


def feature_columns(spec: F.FeatureSpec) -> list[str]:
    """The model features the baseline describes: all but the regime indicators (constant within a
    regime; the regime mix is compared on its own) and the time column (the age of the asset, which
    depends on when clients ask, not on the asset's condition) and the life-summary features (missing
    whenever a caller keeps no summary)."""
    skip = {f"regime_{r}" for r in range(spec.n_regimes)} | {spec.time_column} | set(F.life_names(spec))
    return [n for n in spec.feature_names if n not in skip]


def regimes_of(spec: F.FeatureSpec, cols: dict[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
    """Operating regime of each reading (the spec's own assignment, as the features use it)."""
    return F.reading_regimes(spec, cols)


def build_baseline(raw: pd.DataFrame, features: pd.DataFrame, spec: F.FeatureSpec,
                   bins: int = BINS, seed: int = 0, raw_features: pd.DataFrame | None = None,
                   raw_rows: np.ndarray | None = None) -> dict[str, Any]:
    """The baseline document from training rows: ``raw`` holds readings (settings and sensors, one
    row per reading), ``features`` the model's features of the readings in ``raw_features`` (the
    readings the features were computed at; default ``raw``, row for row). ``raw_rows``: the positions
    in ``raw`` of the readings to describe (default all; may repeat a reading), read column by column
    instead of copied out as a frame (served-request samples repeat each reading many times)."""
    at = raw if raw_features is None else raw_features
    if len(at) != len(features):
        raise DriftError(f"baseline: {len(at)} readings but {len(features)} feature rows")
    rows = np.arange(len(raw)) if raw_rows is None else np.asarray(raw_rows, dtype=np.intp)
    regs = {"raw": regimes_of(spec, raw)[rows], "features": regimes_of(spec, at)}
    reg = regs["features"]
    rng = np.random.default_rng(seed)
    doc: dict[str, Any] = {"format": FORMAT, "bins": bins, "n_regimes": spec.n_regimes,
                           "spec_sha256": hashlib.sha256(spec.to_json().encode()).hexdigest(),
                           "regime_counts": np.bincount(reg, minlength=spec.n_regimes).tolist(),
                           "raw": {}, "features": {}}
    rcols, fcols = raw_columns(spec), feature_columns(spec)
    for kind, frame, cols in (("raw", raw, rcols), ("features", features, fcols)):
        per: dict[str, list[dict[str, Any]]] = {c: [] for c in cols}
        for r in range(spec.n_regimes):
            idx = np.flatnonzero(regs[kind] == r)
            if len(idx) > MAX_BASELINE_ROWS:
                idx = np.sort(rng.choice(idx, MAX_BASELINE_ROWS, replace=False))
            for c in cols:
                # features as the model sees them (float32, as the codec hands them over): a
                # discrete sensor's value on a float64 edge would otherwise land in another bin
                dtype = np.float32 if kind == "features" else float
                at_rows = idx if kind == "features" else rows[idx]  # positions, whatever the frame's index
                per[c].append(sketch(frame[c].to_numpy(dtype=dtype)[at_rows].astype(float), bins))
        doc[kind] = per
    return doc


def serving_rows(assets: np.ndarray, history: int, min_readings: int, draws: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows a served request would carry, simulated on training assets: ``draws`` times per asset, a
    cut uniform in its life (the C-MAPSS test protocol: an asset is asked about at a random age), the
    features of the reading at the cut and the raw readings of the ``history`` readings up to it.

    ``assets`` is the asset id of each row (assets contiguous, time-ordered). Returns (feature row
    indices, raw row indices). Every row of a run-to-failure fleet would over-represent the last,
    degraded cycles, which no asset still in service sends: that alone reads as drift."""
    starts = np.flatnonzero(np.r_[True, assets[1:] != assets[:-1]])
    ends = np.r_[starts[1:], len(assets)]
    feat, raw = [], []
    for a, b in zip(starts, ends, strict=True):
        n = int(b - a)
        cuts = rng.integers(min(min_readings, n), n + 1, size=draws)
        feat.append(a + cuts - 1)
        raw.extend(np.arange(a + max(0, c - history), a + c) for c in cuts)
    return np.concatenate(feat), np.concatenate(raw)


def baseline_from_frames(frames: dict[str, pd.DataFrame], spec: F.FeatureSpec, draws: int = DRAWS,
                         seed: int = 0) -> dict[str, Any] | None:
    """The baseline from preprocessing's frames: the ``train`` features and the raw readings of the
    same rows (``baseline_train`` holds the raw readings of train and validation rows, in order).
    Fleets (window features) are sampled as served requests (``serving_rows``); row-wise data
    uses every row. None when the frames do not have both."""
    train, raw = frames.get("train"), frames.get("baseline_train")
    if train is None or raw is None or train.empty:
        return None
    if "_time" in train.columns:
        key = pd.MultiIndex.from_frame(raw[["_asset", "_time"]])
        keep = key.isin(pd.MultiIndex.from_frame(train[["_asset", "_time"]]))
    else:
        keep = raw["_asset"].isin(train["_asset"]).to_numpy()
    # the training rows' positions in ``raw``, read through them (not a copy of those rows of ``raw``)
    pos = np.flatnonzero(keep)
    if len(pos) != len(train) or any(c not in raw.columns for c in raw_columns(spec)):
        return None
    if spec.window_sizes and "_time" in train.columns:
        history = min(spec.history_needed, len(train))
        fi, ri = serving_rows(train["_asset"].to_numpy(), history, spec.profile_obj.min_readings, draws,
                              np.random.default_rng(seed))
        # only the sampled rows' features are copied out (not every training row's), in one gather
        X = train.iloc[fi, train.columns.get_indexer(spec.feature_names)]
        return build_baseline(raw, X, spec, raw_features=raw.iloc[pos[fi]], raw_rows=pos[ri])
    return build_baseline(raw, train[spec.feature_names].reset_index(drop=True), spec,
                          raw_features=raw.iloc[pos], raw_rows=pos)


def load_baseline(path: Path, spec: F.FeatureSpec | None = None) -> dict[str, Any]:
    """Read and check a baseline (and that it was made with ``spec``)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise DriftError(f"{path}: cannot read the drift baseline ({exc.strerror})") from None
    except ValueError as exc:
        raise DriftError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DriftError(f"{path}: not a {FORMAT} document")
    if spec is not None:
        digest = hashlib.sha256(spec.to_json().encode()).hexdigest()
        if doc.get("spec_sha256") != digest:
            raise DriftError(f"{path}: made for another feature spec than the model's")
    return doc


# ----------------------------------------------------------------------------------------------
# Capture records
# ----------------------------------------------------------------------------------------------
def capture_record(body: bytes, content_type: str, answer: bytes, answer_type: str,
                   event_id: str, when: datetime) -> dict[str, Any]:
    """One SageMaker data-capture record for a JSON request/response (``encoding`` JSON as SageMaker
    writes content types listed in ``CaptureContentTypeHeader.JsonContentTypes``)."""
    def part(mode: str, data: bytes, ctype: str) -> dict[str, str]:
        try:
            return {"observedContentType": ctype, "mode": mode, "data": data.decode("utf-8"), "encoding": "JSON"}
        except UnicodeDecodeError:
            return {"observedContentType": ctype, "mode": mode,
                    "data": base64.b64encode(data).decode("ascii"), "encoding": "BASE64"}

    return {"captureData": {"endpointInput": part("INPUT", body, content_type),
                            "endpointOutput": part("OUTPUT", answer, answer_type)},
            "eventMetadata": {"eventId": event_id,
                              "inferenceTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"},
            "eventVersion": "0"}


def capture_files(root: Path) -> list[Path]:
    """Every ``*.jsonl`` under ``root`` (a folder or one file), in path order (= time order in
    SageMaker's ``.../yyyy/mm/dd/hh/`` layout)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DriftError(f"{root}: no such capture folder or file")
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


@dataclass
class Captured:
    """A capture record's request: body bytes, content type, when, and where it came from."""

    body: bytes
    content_type: str
    when: datetime | None
    where: str


def _parse_time(text: Any, where: str = "") -> datetime | None:
    """``eventMetadata.inferenceTime`` (ISO 8601 with a time zone, as SageMaker writes it: ``...Z``); None
    when absent or unreadable. A time without a zone is refused: it cannot be compared with the window."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        raise DriftError(f"{where}: eventMetadata.inferenceTime {text!r} has no time zone (SageMaker writes UTC, "
                         "ending in Z)")
    return when


def read_captures(paths: Iterable[Path]) -> Iterator[Captured]:
    """The requests of capture files; raise ``DriftError`` naming the file and line of a record
    that is not SageMaker's capture format."""
    for path in paths:
        with open(path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    rec = json.loads(line)
                except RecursionError:
                    raise DriftError(f"{where}: not a JSON capture record (nested too deeply)") from None
                except ValueError as exc:
                    raise DriftError(f"{where}: not a JSON capture record ({exc})") from None
                data_part = rec.get("captureData") if isinstance(rec, dict) else None
                inp = data_part.get("endpointInput") if isinstance(data_part, dict) else None
                if not isinstance(inp, dict) or not isinstance(inp.get("data"), str):
                    raise DriftError(f"{where}: no captureData.endpointInput.data (not a SageMaker capture record)")
                enc = str(inp.get("encoding", "")).upper()
                data = inp["data"]
                if enc == "BASE64":
                    try:
                        body = base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError):
                        raise DriftError(f"{where}: endpointInput.data is not valid base64") from None
                elif enc in ("JSON", "CSV"):
                    body = data.encode("utf-8", "surrogatepass")
                else:
                    raise DriftError(f"{where}: unknown endpointInput.encoding {inp.get('encoding')!r}")
                meta = rec.get("eventMetadata")
                if meta is not None and not isinstance(meta, dict):
                    raise DriftError(f"{where}: eventMetadata must be an object (not a SageMaker capture record)")
                when = _parse_time((meta or {}).get("inferenceTime"), where)
                yield Captured(body, str(inp.get("observedContentType") or ""), when, where)


@dataclass
class Traffic:
    """Decoded traffic: raw readings and last-reading features, each with regime and instance count."""

    raw: dict[str, np.ndarray]
    raw_regime: np.ndarray
    raw_owner: np.ndarray  # instance index of each reading (for the effective sample size)
    features: np.ndarray  # (instances, features)
    feature_regime: np.ndarray
    requests: int = 0
    refused: int = 0
    skipped_old: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def decode_traffic(captured: Iterable[Captured], spec: F.FeatureSpec, since: datetime | None = None) -> Traffic:
    """Decode every captured request with the request codec (refused requests are counted, not
    used); each (asset, time) reading is kept once, however many requests repeated it."""
    model = serving_model.for_spec(spec)  # the endpoint's own request reading, without a predictor
    rcols = raw_columns(spec)
    raw_parts: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    last_regimes: list[np.ndarray] = []
    seen: set[tuple[Any, float]] = set()
    t = Traffic({}, np.zeros(0, int), np.zeros(0, int), np.zeros((0, len(spec.feature_names))), np.zeros(0, int))
    n_inst = 0
    for cap in captured:
        if since is not None and cap.when is not None and cap.when < since:
            t.skipped_old += 1
            continue
        t.requests += 1
        try:
            body = codec.accept_body(cap.body, cap.content_type or codec.JSON)
            req = codec.parse_instances(codec.decode(body), model)
            X = codec.features_matrix(req, model)
        except codec.InferenceError as exc:
            t.refused += 1
            t.refusals[str(exc.status_code)] = t.refusals.get(str(exc.status_code), 0) + 1
            continue
        cols = req.columns
        reg = regimes_of(spec, cols)
        block = np.column_stack([np.asarray(cols[c], dtype=float) for c in rcols]) if rcols else \
            np.zeros((len(reg), 0))
        tc = spec.time_column
        times = np.asarray(cols[tc], dtype=float) if tc else None
        lengths = np.diff(np.asarray(req.offsets))
        owner = np.repeat(np.arange(n_inst, n_inst + len(req.asset_ids)), lengths)
        keep = np.ones(len(reg), dtype=bool)
        if times is not None:
            keys = list(zip(np.repeat(np.asarray(req.asset_ids, dtype=object), lengths).tolist(),
                            times.tolist(), strict=True))
            keep = np.fromiter((k not in seen for k in keys), bool, len(keys))
            seen.update(keys)
        raw_parts.append(np.column_stack([block[keep], reg[keep]]))
        owners.append(owner[keep])
        feats.append(np.asarray(X, dtype=float))
        last_regimes.append(reg[np.asarray(req.offsets[1:]) - 1])
        n_inst += len(req.asset_ids)
    if raw_parts:
        allraw = np.vstack(raw_parts)
        t.raw = {c: allraw[:, i] for i, c in enumerate(rcols)}
        t.raw_regime = allraw[:, -1].astype(int)
        t.raw_owner = np.concatenate(owners)
        t.features = np.vstack(feats)
        t.feature_regime = np.concatenate(last_regimes)
    return t


def replay_bodies(readings: pd.DataFrame, spec: F.FeatureSpec, rng: np.random.Generator,
                  assets: list[Any] | None = None, cut: bool = True, per_request: int = 10,
                  shift: dict[str, float] | None = None) -> list[bytes]:
    """Request bodies that replay a fleet's readings as clients would send them (tests, the bench,
    rehearsing a check): each asset's readings up to a random cut (the C-MAPSS test protocol;
    ``cut=False`` keeps them all), the trailing ``spec.history_needed`` of them, ``per_request``
    assets per request; ``shift`` adds a constant to columns (a drifted sensor)."""
    prof = spec.profile_obj
    idc, cols = prof.id_column, [c for c in spec.numeric_inputs if c in readings.columns]
    groups = dict(tuple(readings.groupby(idc, sort=False)))
    chosen = list(groups) if assets is None else assets
    instances = []
    for a in chosen:
        g = groups[a]
        n = int(rng.integers(min(prof.min_readings, len(g)), len(g) + 1)) if cut else len(g)
        part = g.iloc[max(0, n - spec.history_needed):n][cols].astype(float)
        for c, delta in (shift or {}).items():
            part[c] = part[c] + delta
        instances.append({"asset_id": a if isinstance(a, str) else int(a),
                          "readings": part.to_dict(orient="records")})
    return [json.dumps({"instances": instances[i:i + per_request]}).encode()
            for i in range(0, len(instances), per_request)]


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------
def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (half-count smoothing)."""
    p = (np.asarray(expected, float) + 0.5) / (np.sum(expected) + 0.5 * len(expected))
    q = (np.asarray(actual, float) + 0.5) / (np.sum(actual) + 0.5 * len(actual))
    return float(np.sum((q - p) * np.log(q / p)))


def psi_pvalue(value: float, n: int, m: int, bins: int) -> float:
    """P(PSI >= value) under no drift: PSI / (1/n + 1/m) ~ chi-square(bins - 1) (large samples)."""
    from scipy.stats import chi2

    if bins < 2 or n <= 0:
        return 1.0
    return float(chi2.sf(value / (1.0 / n + 1.0 / max(m, 1)), bins - 1))


@dataclass(frozen=True)
class Settings:
    """The decision rule's parameters (see the module docstring for why these defaults)."""

    psi_threshold: float = PSI_THRESHOLD
    alpha: float = ALPHA
    min_samples: int = MIN_SAMPLES


def compare(baseline: dict[str, Any], traffic: Traffic, spec: F.FeatureSpec,
            settings: Settings = Settings()) -> dict[str, Any]:
    """The drift result document for ``traffic`` against ``baseline`` (pure)."""
    tests: list[dict[str, Any]] = []
    fnames = spec.feature_names
    for kind, values, regimes in (("raw", traffic.raw, traffic.raw_regime),
                                  ("features", {n: traffic.features[:, i] for i, n in enumerate(fnames)},
                                   traffic.feature_regime)):
        for col, per_regime in baseline[kind].items():
            if col not in values:
                continue
            v = np.asarray(values[col], dtype=float)
            for r, sk in enumerate(per_regime):
                mask = regimes == r
                n_values = int(mask.sum())
                n_eff = len(np.unique(traffic.raw_owner[mask])) if kind == "raw" else n_values
                if n_eff < settings.min_samples or sum(sk["counts"]) == 0:
                    continue
                edges = np.asarray(sk["edges"], dtype=float)
                counts = np.bincount(bin_index(v[mask], edges), minlength=len(edges) + 1)
                value = psi(np.asarray(sk["counts"]), counts)
                tests.append({"kind": kind, "column": col, "regime": r, "n": n_eff, "values": n_values,
                              "psi": value,
                              "p": psi_pvalue(value, n_eff, sum(sk["counts"]), len(edges) + 1)})
    # the regime mix: a fleet flying other conditions than the training fleet
    if spec.n_regimes > 1 and len(traffic.feature_regime) >= settings.min_samples:
        counts = np.bincount(traffic.feature_regime, minlength=spec.n_regimes)
        value = psi(np.asarray(baseline["regime_counts"]), counts)
        tests.append({"kind": "regimes", "column": "regime", "regime": None, "n": int(counts.sum()),
                      "values": int(counts.sum()), "psi": value,
                      "p": psi_pvalue(value, int(counts.sum()), sum(baseline["regime_counts"]), spec.n_regimes)})
    m = max(1, len(tests))
    drifted = []
    for t in tests:
        t["p_adjusted"] = min(1.0, t["p"] * m)
        t["drift"] = bool(t["psi"] >= settings.psi_threshold and t["p_adjusted"] < settings.alpha)
        if t["drift"]:
            drifted.append(t)
    drifted.sort(key=lambda t: -t["psi"])
    top = sorted(tests, key=lambda t: -t["psi"])[:10]
    clean = lambda t: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in t.items()}  # noqa: E731
    return {"format": RESULT_FORMAT, "drift": bool(drifted), "metric": len(drifted),
            "settings": {"psi_threshold": settings.psi_threshold, "alpha": settings.alpha,
                         "min_samples": settings.min_samples, "bins": baseline.get("bins"),
                         "correction": "bonferroni"},
            "requests": traffic.requests, "refused_requests": traffic.refused,
            "skipped_before_window": traffic.skipped_old,
            "instances": len(traffic.feature_regime), "readings": len(traffic.raw_regime),
            "tests": len(tests), "drifted": [clean(t) for t in drifted], "largest": [clean(t) for t in top]}


def check(capture: Path, spec: F.FeatureSpec, baseline: dict[str, Any], settings: Settings = Settings(),
          since: datetime | None = None) -> dict[str, Any]:
    """Read the capture records under ``capture`` and compare them with ``baseline``."""
    files = capture_files(capture)
    traffic = decode_traffic(read_captures(files), spec, since)
    result = compare(baseline, traffic, spec, settings)
    result["capture_files"] = len(files)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines: what was read, then one line per drifted column."""
    lines = [f"drift check: {result['requests']} request(s) ({result['refused_requests']} refused), "
             f"{result['instances']} instance(s), {result['readings']} reading(s), {result['tests']} test(s) "
             f"(PSI >= {result['settings']['psi_threshold']:g} and Bonferroni p < {result['settings']['alpha']:g})"]
    if result["tests"] == 0:
        lines.append(f"not enough traffic to test: every regime has fewer than "
                     f"{result['settings']['min_samples']} instances")
    for t in result["drifted"]:
        where = "" if t["regime"] is None else f" regime {t['regime']}"
        lines.append(f"DRIFT {t['kind']} {t['column']}{where}: PSI {t['psi']:.3f}, p_adj {t['p_adjusted']:.2g}, "
                     f"n {t['n']}")
    lines.append(f"drift: {'yes' if result['drift'] else 'no'} ({result['metric']} drifted)")
    return lines


# ----------------------------------------------------------------------------------------------
# Model folder / artifact
# ----------------------------------------------------------------------------------------------
def load_model_files(model: Path) -> tuple[F.FeatureSpec, dict[str, Any]]:
    """The feature spec and drift baseline of a model: an extracted model folder, a folder holding
    ``model.tar.gz`` (a processing job's input), or the ``model.tar.gz`` itself."""
    model = Path(model)
    if model.is_dir() and not (model / "feature_spec.json").is_file():
        tars = sorted(model.glob("*.tar.gz"))
        if len(tars) == 1:
            model = tars[0]
    if model.is_file():
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(model) as tar:
            for name in ("feature_spec.json", BASELINE_FILE):
                try:
                    member = tar.getmember(name)
                except KeyError:
                    why = f" {NO_BASELINE_WHY}" if name == BASELINE_FILE else ""
                    raise DriftError(f"{model}: no {name} in the model artifact{why}") from None
                tar.extract(member, tmp, filter="data")
            return _read_pair(Path(tmp))
    if not model.is_dir():
        raise DriftError(f"{model}: no such model folder or model.tar.gz")
    return _read_pair(model)


def _read_pair(folder: Path) -> tuple[F.FeatureSpec, dict[str, Any]]:
    spec_path, base_path = folder / "feature_spec.json", folder / BASELINE_FILE
    if not spec_path.is_file():
        raise DriftError(f"{folder}: no feature_spec.json (not a model folder)")
    if not base_path.is_file():
        raise DriftError(f"{folder}: no {BASELINE_FILE} {NO_BASELINE_WHY}")
    try:
        spec = F.FeatureSpec.from_json(spec_path.read_text())
    except (ValueError, TypeError) as exc:
        raise DriftError(f"{spec_path}: unreadable feature spec ({exc})") from None
    return spec, load_baseline(base_path, spec)


# ----------------------------------------------------------------------------------------------
# Processing-job entry point
# ----------------------------------------------------------------------------------------------
def put_metric(namespace: str, dimensions: dict[str, str], result: dict[str, Any]) -> None:
    """Publish the number of drifted columns (and the largest PSI) to CloudWatch."""
    import boto3

    dims = [{"Name": k, "Value": v} for k, v in dimensions.items()]
    largest = result["largest"][0]["psi"] if result["largest"] else 0.0
    boto3.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": METRIC_NAME, "Dimensions": dims, "Value": float(result["metric"]), "Unit": "Count"},
        {"MetricName": "LargestPSI", "Dimensions": dims, "Value": float(largest), "Unit": "None"}])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Drift check of captured requests against the model's baseline.")
    ap.add_argument("--capture-dir", default="/opt/ml/processing/input/capture",
                    help="folder of SageMaker capture records (*.jsonl, searched recursively), or one file")
    ap.add_argument("--model", default="/opt/ml/processing/input/model",
                    help="model folder, model.tar.gz, or a folder holding model.tar.gz")
    ap.add_argument("--output-dir", default="/opt/ml/processing/output",
                    help=f"where {RESULT_FILE} goes")
    ap.add_argument("--window-hours", type=float, default=0.0,
                    help="only requests captured in the last N hours (0: every record)")
    ap.add_argument("--psi-threshold", type=float, default=PSI_THRESHOLD)
    ap.add_argument("--alpha", type=float, default=ALPHA)
    ap.add_argument("--min-samples", type=int, default=MIN_SAMPLES)
    ap.add_argument("--metric-namespace", default=None, help="publish the result to this CloudWatch namespace")
    ap.add_argument("--metric-dimension", action="append", default=[], metavar="NAME=VALUE",
                    help="dimension of the published metric (repeatable)")
    args = ap.parse_args(argv)
    if not 0 < args.alpha < 1:
        ap.error("--alpha must be between 0 and 1")
    if args.psi_threshold < 0 or args.min_samples < 1 or args.window_hours < 0:
        ap.error("--psi-threshold and --window-hours must be >= 0, --min-samples >= 1")
    for d in args.metric_dimension:
        if "=" not in d:
            ap.error(f"--metric-dimension {d!r}: expected NAME=VALUE")
    return args


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``drift_result.json`` atomically (temp file, then rename)."""
    target = out_dir / RESULT_FILE
    tmp = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".drift-")
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, a read-only folder, a parent that is a file: nothing left behind
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise DriftError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec, baseline = load_model_files(Path(args.model))
        since = datetime.now(UTC) - timedelta(hours=args.window_hours) if args.window_hours else None
        result = check(Path(args.capture_dir), spec, baseline,
                       Settings(args.psi_threshold, args.alpha, args.min_samples), since)
        write_result(Path(args.output_dir), result)
    except DriftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    if args.metric_namespace:
        put_metric(args.metric_namespace, dict(d.split("=", 1) for d in args.metric_dimension), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
