"""Fleet scoring: every asset of a fleet file scored at once, locally or as a SageMaker Batch Transform.

Local (``predmaint score --input FILE --output FILE [--model VERSION]``):

1. read the file as the model's profile describes it (the raw format, e.g. C-MAPSS whitespace text,
   plain or .gz), or a ``.csv`` with a header row of the profile's column names;
2. validate it with the batch code (``features.validate_readings``: numeric types, gaps, duplicate
   times; readings may come in any order, they are sorted per asset);
3. compute the features of every asset's LAST reading, vectorised across assets
   (``features.transform_last``, bit-identical to the batch features of that reading), in chunks
   of assets so memory stays bounded;
4. one prediction call per chunk (``predmaint_serving.predictors.predict_matrix``);
5. write ``asset_id,rul`` (or ``asset_id,failure_probability,failure``) as CSV, JSON lines when the
   output ends in ``.jsonl`` or Parquet for ``.parquet`` (any other suffix is refused up front).

The model is the registry's artifact, loaded exactly as the endpoint loads it (``code/inference.py``
by path, ``model_fn``), so batch scores equal what the endpoint would answer for the same history.

SageMaker (``predmaint score --batch-transform --model-name NAME --input s3://... --output s3://...``):
the same ``model.tar.gz`` registered as a SageMaker Model (the endpoint stack's, or any model created
from the registry's package) serves a Batch Transform job. The artifact's hooks (code/inference.py)
answer each request the container sends; the input objects hold request documents
(``{"instances": [...]}``), one per line
(``SplitType=Line``, ``BatchStrategy=MultiRecord`` packs lines up to 6 MB per call), and the output
objects hold one response per line (``AssembleWith=Line``). ``batch_transform_request`` builds the
``CreateTransformJob`` call; ``to_request_lines`` turns a fleet file into such input lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ASSETS = 256  # assets per feature chunk: arrays stay a few MB (cache- and allocator-friendly)


@dataclasses.dataclass
class ScoreResult:
    """What ``score_file`` did: counts, timings (seconds) and where the scores went."""

    assets: int
    readings: int
    read_seconds: float
    score_seconds: float
    write_seconds: float
    output: Path

    @property
    def assets_per_second(self) -> float:
        """Scoring throughput (validate + features + predict), file I/O excluded."""
        return self.assets / self.score_seconds if self.score_seconds > 0 else float("inf")


def load_model(model_dir: Path) -> tuple[Any, Any]:
    """(scoring functions, model) from an extracted artifact, loaded as the endpoint loads it.

    The scoring functions are the artifact's own: ``.F`` (its feature module) and
    ``.predict_matrix`` (its ``predmaint_serving/predictors.py``), found through the package its
    ``inference.model_fn`` comes from.
    """
    import importlib
    import types

    from .server import load_inference_module

    module = load_inference_module(Path(model_dir))
    package_name = module.model_fn.__module__.rpartition(".")[0]  # "predmaint_serving" in code/
    try:
        package = importlib.import_module(package_name)
        predictors = importlib.import_module(f"{package_name}.predictors")
        api = types.SimpleNamespace(F=package.F, predict_matrix=predictors.predict_matrix)
    except (ImportError, ValueError, AttributeError):
        # an artifact packaged before the serving package existed: its booster and spec, this project's code
        from training_src import inference as module
        from training_src import predmaint_serving as serving
        from training_src.predmaint_serving import predictors
        api = types.SimpleNamespace(F=serving.F, predict_matrix=predictors.predict_matrix)
    return api, module.model_fn(str(model_dir))


def read_fleet(path: Path, profile: Any) -> Any:
    """The fleet's readings as a DataFrame: the profile's raw format, or a headed ``.csv``.

    A clean all-numeric file is parsed straight to float64 (``_read_numeric``, ~10x faster); any
    other file goes through ``dataio.read_table``, which reads every value as text first so that a
    bad value is reported with its row and column. Both parse numbers with the same routine (pandas'
    ``xstrtod``), so the values are bit-identical (tested).
    """
    from training_src import dataio

    from .errors import UsageError

    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    if path.name.lower().endswith((".csv", ".csv.gz")) and not (profile.file_format == "csv" and profile.header):
        profile = dataclasses.replace(profile, file_format="csv", header=True)
    fast = _read_numeric(path, profile)
    return fast if fast is not None else dataio.read_table(path, profile, allow_label=False)


def _read_numeric(path: Path, profile: Any, block: int = 4 << 20) -> Any:
    """The file as float64 columns if it is clean; None for anything ``read_table`` must look at.

    Clean: UTF-8 (optionally gzip), every cell a finite number, the profile's column count (no
    header) or header names, every column one the profile requires, no categorical columns. The
    result then equals ``read_table``'s: same names, float64 values parsed by the same routine
    (pandas' C parser). The text is cut into blocks of whole lines as it is decompressed, and the
    blocks are parsed by one thread per core while the next ones decompress (both release the GIL).
    """
    import gzip
    import io
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    if profile.file_format not in ("whitespace", "csv") or profile.categorical_columns:
        return None
    sep = r"\s+" if profile.file_format == "whitespace" else ","

    def parse(chunk: bytes) -> np.ndarray:
        chunk.decode("utf-8")  # read_table refuses non-UTF-8 text with its own message
        return pd.read_csv(io.BytesIO(chunk), sep=sep, header=None, dtype=np.float64, engine="c",
                           na_filter=False).to_numpy()

    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        names: list[str] | None = None if profile.header else list(profile.columns or ())
        parts, rest, start = [], b"", True
        with opener(path, "rb") as fh, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            while True:
                data = fh.read(block)
                buf = rest + data
                cut = len(buf) if not data else buf.rfind(b"\n") + 1
                text, rest = buf[:cut], buf[cut:]
                if start and text:  # the first whole line(s): byte-order mark, header
                    start = False
                    if text[:3] == b"\xef\xbb\xbf":
                        text = text[3:]
                    if names is None:
                        line_end = text.find(b"\n") + 1 or len(text)
                        names = list(pd.read_csv(io.BytesIO(text[:line_end]), sep=sep, header=0,
                                                 nrows=0).columns)
                        text = text[line_end:]
                if text.strip():
                    parts.append(pool.submit(parse, text))
                if not data:
                    break
            arrays = [f.result() for f in parts]
    except Exception:  # anything unusual: the careful reader explains it
        return None
    if not arrays or not names or any(a.shape[1] != len(names) for a in arrays):
        return None
    values = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if not np.isfinite(values).all():
        return None  # short rows (NaN padding), gaps, nan/inf text: read_table's checks and messages
    df = pd.DataFrame(values, columns=names)
    df = df.rename(columns=dict(profile.rename))
    required = {c for c in profile.required_columns if c != profile.label.column}
    if not required <= set(df.columns) or not set(df.columns) <= set(profile.required_columns) \
            or df.columns.duplicated().any():
        return None
    return df


def score_frame(df: Any, module: Any, model: Any, chunk: int = CHUNK_ASSETS,
                workers: int | None = None, whole_histories: bool = False) -> tuple[list[Any], np.ndarray]:
    """Asset ids (first-seen order) and predictions (n_assets,) for every asset of ``df``.

    ``df`` holds raw readings with the profile's columns; rows of one asset need not be contiguous
    or ordered (they are sorted per asset). Raises ``FeatureError`` naming the row and column of bad
    data. Row-wise (classification) profiles score every row, the asset id being the row's id column
    or its position.

    Fast path: one float matrix of the required columns, sorted by (asset, time) with one lexsort;
    if it is already clean (finite, strictly increasing times, enough readings per asset) it is
    exactly what ``validate_readings`` would return, so the pandas validation (gap filling and
    precise error messages) runs only for fleets that need it. Features are computed for chunks of
    assets (bounded memory) by ``workers`` threads (default: one per core; NumPy and the predictors
    release the GIL), each scoring its contiguous share of the fleet with one prediction call. Every
    asset's features and prediction depend only on its own rows, so the split changes no number.

    ``whole_histories``: every asset's rows start at its first reading, so a model with life-summary
    features gets them (each asset's summary started from its rows, as ``"life": {}`` does at the
    endpoint); otherwise they are missing, as for a caller that sends its window alone.
    """

    F = module.F
    spec = model.spec
    profile = spec.profile_obj
    if not spec.window_sizes:
        return _score_rows(df, module, model)
    idc, tc = spec.id_column, spec.time_column
    codes = _group_codes(df[idc].to_numpy())
    needed = [c for c in model.required if c in df.columns]
    values = df[needed].to_numpy(dtype=float)
    t = values[:, needed.index(tc)]
    if (np.diff(codes) >= 0).all() and (np.diff(t)[np.diff(codes) == 0] > 0).all():
        order = np.arange(len(codes))  # already grouped and time-ordered (the usual file): no copy
    else:
        order = np.lexsort((t, codes))
        values, codes = values[order], codes[order]
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    t = values[:, needed.index(tc)]
    steps = np.diff(t) > 0
    steps[bounds[1:-1] - 1] = True  # a step from one asset to the next is not a time step
    clean = (len(needed) == len(model.required) and not spec.categorical and (codes >= 0).all()
             and np.isfinite(values).all() and steps.all()
             and (profile.min_readings <= 1 or np.diff(bounds).min() >= profile.min_readings))
    if clean:
        ids_col = df[idc].to_numpy()[order]
        cols = F.ColumnMatrix(values, needed)
    else:  # the batch validation: fills short gaps, or raises naming the row and column
        df = F.validate_readings(df.iloc[order].reset_index(drop=True), profile, source="fleet")
        ids_col = df[idc].to_numpy()
        bounds = np.flatnonzero(np.r_[True, ids_col[1:] != ids_col[:-1], True])
        cols = {c: (df[c].to_numpy() if c in spec.categorical else df[c].to_numpy(dtype=float))
                for c in [*model.required, *spec.categorical] if c in df.columns}
    n_assets = len(bounds) - 1
    X = np.empty((n_assets, len(spec.feature_names)), dtype=np.float32)
    preds = np.empty(n_assets, dtype=float)

    # life summaries started from each asset's rows (the Python feature path: the compiled one reads none);
    # an artifact written before life summaries has neither the spec field nor NEW_LIFE
    life = whole_histories and bool(getattr(spec, "life_stats", None)) and hasattr(F, "NEW_LIFE")
    # the compiled request reader's feature code (request.c, same numbers) when the matrix is clean
    # (an artifact written by an older version may lack it: getattr)
    fleet = getattr(getattr(model, "reader", None), "features", None) \
        if clean and needed == model.required and not life else None
    if fleet is not None:
        values = np.ascontiguousarray(values)  # once, not per chunk

    def share(first: int, last: int) -> None:  # assets [first, last): features by chunk, one predict
        for a in range(first, last, chunk):
            b = min(a + chunk, last)
            lo, hi = bounds[a], bounds[b]
            fast = fleet(values[lo:hi], bounds[a:b + 1] - lo) if fleet is not None else None
            if fast is not None:
                X[a:b] = fast
                continue
            part = F.ColumnMatrix(cols.matrix[lo:hi], needed) if isinstance(cols, F.ColumnMatrix) \
                else {c: v[lo:hi] for c, v in cols.items()}
            X[a:b] = F.transform_last(part, bounds[a:b + 1] - lo, spec, [F.NEW_LIFE] * (b - a) if life else None)
        if last > first:
            preds[first:last] = module.predict_matrix(model, X[first:last])

    n_chunks = -(-n_assets // chunk)
    workers = max(1, min(workers or os.cpu_count() or 1, n_chunks))
    cuts = [round(i * n_chunks / workers) * chunk for i in range(workers)] + [n_assets]
    cuts = [min(c, n_assets) for c in cuts]
    if workers == 1:
        share(0, n_assets)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(share, cuts[i], cuts[i + 1]) for i in range(workers)]:
                f.result()
    return _plain_ids(ids_col[bounds[:-1]]), preds


def _group_codes(ids: np.ndarray) -> np.ndarray:
    """``pd.factorize`` codes of an id column (first-seen order, -1 for missing); fast when each
    asset's rows are contiguous (the usual file): a running count of id changes."""
    import pandas as pd

    if ids.dtype.kind in "iuf" and len(ids):
        change = np.r_[True, ids[1:] != ids[:-1]]
        firsts = ids[change]
        if not (ids.dtype.kind == "f" and np.isnan(firsts).any()) and len(np.unique(firsts)) == len(firsts):
            return np.cumsum(change) - 1
    return pd.factorize(ids)[0]


def _plain_ids(ids: np.ndarray) -> list[Any]:
    """``[_plain(v) for v in ids]``, vectorised for the usual integral float or int ids."""
    if ids.dtype.kind in "iu":
        return ids.tolist()
    if ids.dtype.kind == "f" and len(ids) and np.isfinite(ids).all() and (np.abs(ids) < 2**53).all() \
            and (ids == np.trunc(ids)).all():
        return ids.astype(np.int64).tolist()
    return [_plain(v) for v in ids]


def _score_rows(df: Any, module: Any, model: Any) -> tuple[list[Any], np.ndarray]:
    """Row-wise (classification) profiles: every row is an instance."""
    spec = model.spec
    df = module.F.validate_readings(df, spec.profile_obj, source="fleet")
    idc = spec.id_column
    ids = df[idc].to_numpy() if idc and idc in df.columns else np.arange(len(df))
    cols = {c: (df[c].to_numpy() if c in spec.categorical else df[c].to_numpy(dtype=float))
            for c in [*model.required, *spec.categorical] if c in df.columns}
    X = module.F.transform_last(cols, np.arange(len(df) + 1), spec).astype(np.float32)
    return [_plain(v) for v in ids], module.predict_matrix(model, X)


def _plain(v: Any) -> Any:
    """numpy scalars -> int/float/str for the output (7.0 -> 7)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


#: scores file formats by the output's suffix
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def output_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the output file's suffix; ``UsageError`` for anything else
    (a .parquet name over CSV bytes, or a .txt nobody can tell, helps no reader)."""
    from .errors import UsageError

    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"--output {path}: unknown format {Path(path).suffix or '(no suffix)'!r}; "
                         f"name it .csv, .jsonl or .parquet")
    return fmt


def write_scores(path: Path, ids: list[Any], preds: np.ndarray, model: Any) -> None:
    """CSV (``asset_id,rul`` or ``asset_id,failure_probability,failure``), JSON lines for ``.jsonl`` or
    Parquet for ``.parquet`` (same columns, full float64 predictions; ids as integers when they all
    are, else text). Written to a temporary name and renamed: readers never see half a file."""
    from .errors import UsageError

    fmt = output_format(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique per writer: two scorers never share it
    regression = model.is_regression
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            import pandas as pd

            plain = all(isinstance(a, int) for a in ids)
            cols: dict[str, Any] = {"asset_id": pd.array(ids, dtype="int64") if plain else [str(a) for a in ids]}
            if regression:
                cols["rul"] = np.asarray(preds, dtype=float)
            else:
                cols["failure_probability"] = np.asarray(preds, dtype=float)
                cols["failure"] = np.asarray(preds) >= model.threshold
            pd.DataFrame(cols).to_parquet(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                if fmt == "jsonl":
                    for a, p in zip(ids, preds, strict=True):
                        doc = {"asset_id": a, "rul": round(float(p), 3)} if regression else \
                            {"asset_id": a, "failure_probability": round(float(p), 6),
                             "failure": bool(p >= model.threshold)}
                        fh.write(json.dumps(doc) + "\n")
                elif regression:
                    fh.write("asset_id,rul\n")
                    fh.writelines(f"{a},{p:.3f}\n" for a, p in zip(ids, preds, strict=True))
                else:
                    fh.write("asset_id,failure_probability,failure\n")
                    fh.writelines(f"{a},{p:.6f},{str(bool(p >= model.threshold)).lower()}\n"
                                  for a, p in zip(ids, preds, strict=True))
        tmp.replace(path)  # readers never see a half-written file
    except OSError as exc:  # read-only folder, full disk, a parent that is a file: one line, exit 2
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):  # the folder may refuse even this (read-only)
            tmp.unlink(missing_ok=True)


def score_file(model_dir: Path, input_path: Path, output_path: Path, whole_histories: bool = False) -> ScoreResult:
    """Score every asset of ``input_path`` with the artifact in ``model_dir``; write ``output_path``.
    ``whole_histories``: see ``score_frame``."""
    output_format(output_path)  # before any work
    module, model = load_model(model_dir)
    t0 = time.perf_counter()
    df = read_fleet(input_path, model.spec.profile_obj)
    t1 = time.perf_counter()
    ids, preds = score_frame(df, module, model, whole_histories=whole_histories)
    t2 = time.perf_counter()
    write_scores(output_path, ids, preds, model)
    t3 = time.perf_counter()
    return ScoreResult(len(ids), len(df), t1 - t0, t2 - t1, t3 - t2, output_path)


# ---------------------------------------------------------------------- SageMaker Batch Transform
def to_request_lines(df: Any, spec: Any, assets_per_line: int = 50, whole_histories: bool = False) -> list[str]:
    """A fleet as Batch Transform input: JSON request documents, one per line (<= 6 MB each).

    Each line is ``{"instances": [{"asset_id": ..., "readings": [...]}, ...]}`` - the endpoint
    contract - so the container's hooks answer it like a real-time request; with ``whole_histories``
    each instance also starts its life summary (``"life": {}``).
    """
    idc = spec.id_column
    cols = [c for c in df.columns if c != idc]
    lines, batch = [], []
    for asset, g in df.groupby(idc, sort=False):
        batch.append({"asset_id": _plain(asset), "readings": g[cols].to_dict("records"),
                      **({"life": {}} if whole_histories else {})})
        if len(batch) == assets_per_line:
            lines.append(json.dumps({"instances": batch}))
            batch = []
    if batch:
        lines.append(json.dumps({"instances": batch}))
    return lines


def batch_transform_request(model_name: str, input_s3: str, output_s3: str, *, job_name: str | None = None,
                            instance_type: str = "ml.m5.large", instance_count: int = 1,
                            max_payload_mb: int = 6, max_concurrent: int = 2) -> dict[str, Any]:
    """Keyword arguments of ``sagemaker.create_transform_job`` for a fleet of request lines."""
    from .errors import UsageError

    for name, uri in (("--input", input_s3), ("--output", output_s3)):
        if not uri.startswith("s3://"):
            raise UsageError(f"{name} must be an s3:// URI for --batch-transform, got {uri!r}")
    return {
        "TransformJobName": job_name or f"predmaint-score-{time.strftime('%Y%m%d-%H%M%S')}",
        "ModelName": model_name,
        "MaxConcurrentTransforms": max_concurrent,
        "MaxPayloadInMB": max_payload_mb,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_s3}},
            "ContentType": "application/json",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output_s3, "Accept": "application/json", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "Environment": {"OMP_NUM_THREADS": "1"},
    }


def start_batch_transform(client: Any, **kwargs: Any) -> str:
    """Start the job with a boto3 SageMaker ``client``; returns the job's ARN."""
    request = batch_transform_request(**kwargs)
    return client.create_transform_job(**request)["TransformJobArn"]
