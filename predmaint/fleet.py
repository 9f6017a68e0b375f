"""Bring your own fleet: draft a profile from a data file, and check a profile against a data file.

``predmaint profile init DATAFILE`` (``draft_profile``) reads the file (CSV with or without a header
row, or whitespace-separated text; plain or .gz) and proposes a profile document:

* column names from the header, made snake_case (units in brackets dropped) through ``format.rename``;
  ``column_1``, ... for a header-less file;
* the task: ``failure_classification`` if a 0/1 column is named like a failure label (``failure``,
  ``label``, ``target``, ``fault``, ...), else ``rul_regression`` if an integer column holds each asset's
  readings in one contiguous block and another column increases within every block (asset id and
  time; names like ``unit``/``machine``/``id`` and ``cycle``/``hours``/``time`` are preferred);
* settings: numeric columns named like settings (``setting``, ``condition``, ``mode``, ``regime``) or
  taking at most 10 distinct levels at 1% of their range, each seen 10+ times on average (operating
  set points, as FD002's settings cluster around six conditions; sensors that are constant within a
  condition look the same, and the notes say so); every other numeric column is a sensor;
* categorical columns: text columns with at most 20 distinct values (levels in order of first
  appearance); other text columns (serial numbers, product codes) and, for labelled rows, other 0/1
  columns (failure modes would leak the label) are excluded;
* the label rule (RUL capped at about 60% of the median asset life, in time units), windows that fit
  the assets' lengths, regime detection when there are settings, the split and the metrics.

The draft is validated like any profile before it is shown; it is a starting point to review, not a
decision (notes say why each column got its role).

``predmaint profile check PROFILE DATAFILE`` (``check_file``) applies the two validations a run
applies, on the whole file: the prepare Lambda's ``validate_object`` (what AWS runs before any job)
and preprocess's reader (``read_table`` + ``features.validate_readings``: gaps, duplicate or
decreasing times, contiguous assets, minimum readings). Errors name the file, row and column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

ID_HINTS = re.compile(r"(^|_)(id|unit|units|asset|machine|engine|serial|pump|device|equipment|turbine|vehicle)(_|$)")
TIME_HINTS = re.compile(r"(^|_)(time|cycle|cycles|hour|hours|step|steps|timestamp|day|days|t|age|runtime)(_|$)")
LABEL_HINTS = re.compile(r"fail|label|target|fault|broken|anomal|defect|alarm")
SETTING_HINTS = re.compile(r"setting|condition|regime|(^|_)mode(_|$)|op_?set")
MAX_LEVELS = 20  # more distinct texts than this is an identifier, not a category
MAX_SETTING_LEVELS = 10  # distinct values at 1% of the range: operating set points, not a measurement
DRAFT_ROWS = 1_000_000  # rows read to draft a profile (a sample is enough to see the columns)
WINDOW_CANDIDATES = (10, 30, 75)  # as the shipped C-MAPSS profile, when the assets are long enough


@dataclass
class CheckResult:
    """What ``check_file`` found: the file's role, rows, assets and the columns it did not use."""

    path: Path
    role: str
    rows: int
    assets: int | None
    readings_per_asset: tuple[int, int] | None
    ignored_columns: list[str]


def column_name(raw: str, position: int) -> str:
    """A profile column name for a header cell: snake_case, units in brackets dropped
    (``Air temperature [K]`` -> ``air_temperature``); ``column_<n>`` if nothing is left."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", str(raw))
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    if not text:
        return f"column_{position + 1}"
    return f"c_{text}" if text[0].isdigit() else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _blank(text: str) -> bool:
    return text.strip().lower() in ("", "nan", "na")


def sniff_format(text: str) -> tuple[str, bool]:
    """``(format type, has a header row)`` from the first two non-empty lines."""
    lines = [ln for ln in text.splitlines() if ln.strip()][:2]
    if not lines:
        raise UsageError("the file is empty")
    file_format = "csv" if "," in lines[0] else "whitespace"

    def fields(line: str) -> list[str]:
        return next(csv.reader([line])) if file_format == "csv" else line.split()

    def words(row: list[str]) -> int:
        return sum(1 for v in row if not _blank(v) and not _is_number(v.strip()))

    first = fields(lines[0])
    second = fields(lines[1]) if len(lines) > 1 else []
    return file_format, words(first) > words(second)


def _numeric(values: Any) -> Any:
    """float array of a text column, or None if a non-blank cell is not a number."""
    import numpy as np
    import pandas as pd

    conv = pd.to_numeric(values, errors="coerce")
    blank = values.str.strip().str.lower().isin(["", "nan", "na"])
    if (conv.isna() & ~blank).any():
        return None
    return conv.to_numpy(dtype=float) if not blank.all() else np.full(len(values), np.nan)


def _sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits (a readable starting point)."""
    if value <= 0:
        return value
    return float(round(value, digits - 1 - math.floor(math.log10(value))))


def _fleet_columns(frame: dict[str, Any], names: list[str], rows: int) -> tuple[str, str] | None:
    """(id column, time column) of a run-to-failure fleet of ``rows`` readings, or None: an integer column whose values
    come in contiguous blocks (each asset's readings together, on average 3+ per asset) and a column
    that strictly increases within every block. Hinted names first, then file order."""
    import numpy as np

    def order(cols: list[str], hints: re.Pattern) -> list[str]:
        return sorted(cols, key=lambda c: (not hints.search(c), names.index(c)))

    ids = []
    for c, v in frame.items():
        if v is None or not np.isfinite(v).all() or not (v == np.trunc(v)).all():
            continue
        blocks = int((v[1:] != v[:-1]).sum()) + 1
        unique = len(np.unique(v))
        if blocks == unique and 2 <= unique <= rows / 3:
            ids.append(c)
    for idc in order(ids, ID_HINTS):
        same = frame[idc][1:] == frame[idc][:-1]
        for tc in order([c for c, v in frame.items() if c != idc and v is not None], TIME_HINTS):
            t = frame[tc]
            if np.isfinite(t).all() and (np.diff(t)[same] > 0).all():
                return idc, tc
    return None


def _relative_file(path: Path, data_dir: Path | None, name: str, notes: list[str]) -> str:
    """The profile's ``files`` path of ``path``: relative to the data directory, in a dataset folder."""
    file_name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if data_dir is not None:
        try:
            rel = path.resolve().relative_to(Path(data_dir).resolve())
        except ValueError:
            rel = None
        if rel is not None and len(rel.parts) >= 2:
            return "/".join((*rel.parts[:-1], file_name))
    target = Path(data_dir or "<data-dir>") / name / file_name
    notes.append(f"files: copy {path} to {target} (a profile's files are relative to --data-dir, "
                 f"and the folder is raw/{name}/ in S3)")
    return f"{name}/{file_name}"


def draft_profile(path: Path, data_dir: Path | None = None, name: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Draft a profile document for the fleet in ``path``; returns ``(document, notes)``.

    ``data_dir`` is where runs will find the file (its ``files`` path is made relative to it);
    ``name`` defaults to the file's stem. Raises ``UsageError`` when the file cannot be read or
    nothing in it says what to predict; the document passes ``profiles.parse_profile``.
    """
    import numpy as np
    import pandas as pd

    from training_src import dataio
    from training_src.profiles import METRICS, NAME_RE, ProfileError, RegimeSpec, SplitSpec, parse_profile

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist")
    try:
        text = dataio.read_text(path)
    except dataio.DataError as exc:
        raise UsageError(str(exc)) from None
    try:
        file_format, header = sniff_format(text)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    try:
        df = pd.read_csv(io.StringIO(text), sep="," if file_format == "csv" else r"\s+",
                         header=0 if header else None, dtype=str, keep_default_na=False, nrows=DRAFT_ROWS)
    except (pd.errors.ParserError, ValueError) as exc:
        raise UsageError(f"{path}: cannot parse as {file_format}: {' '.join(str(exc).split())}") from None
    if df.empty:
        raise UsageError(f"{path}: no data rows")
    raw_names = [str(c) for c in df.columns] if header else [f"column_{i + 1}" for i in range(df.shape[1])]
    names: list[str] = []
    for i, raw in enumerate(raw_names):
        n = column_name(raw, i)
        names.append(n if n not in names else f"{n}_{i + 1}")
    df.columns = names
    name = name or column_name(path.name.split(".")[0], 0).replace("_", "-")
    if not NAME_RE.match(name):
        raise UsageError(f"profile name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (--name)")
    notes: list[str] = []
    numeric = {c: _numeric(df[c]) for c in names}
    binary = [c for c, v in numeric.items() if v is not None and set(np.unique(v[np.isfinite(v)])) == {0.0, 1.0}]
    label = next((c for c in binary if LABEL_HINTS.search(c)), None)
    fleet = _fleet_columns(numeric, names, len(df))
    cats: dict[str, list[str]] = {}
    exclude: list[str] = []
    for c in names:
        if numeric[c] is None:
            levels = list(pd.unique(df[c][df[c].str.strip() != ""]))
            if len(levels) <= MAX_LEVELS and len(levels) < len(df):
                cats[c] = [str(x) for x in levels]
                notes.append(f"categorical: {c} {cats[c]}")
            else:
                exclude.append(c)
                notes.append(f"excluded: {c} (text with {len(levels)} distinct values: an identifier, not a category)")
    doc: dict[str, Any] = {"name": name}
    if label is not None:
        task, idc, tc = "failure_classification", None, None
        unique_ids = [c for c in names if c != label and numeric[c] is not None and np.isfinite(numeric[c]).all()
                      and (numeric[c] == np.trunc(numeric[c])).all() and len(np.unique(numeric[c])) == len(df)]
        idc = next((c for c in unique_ids if ID_HINTS.search(c)), None) or next(
            (c for c in unique_ids if (np.diff(numeric[c]) > 0).all()), None)
        if idc:
            exclude.append(idc)
            notes.append(f"id column: {idc} (unique per row; excluded from the features)")
        leaks = [c for c in binary if c not in (label, idc)]
        exclude += leaks
        if leaks:
            notes.append(f"excluded: {leaks} (other 0/1 columns, e.g. failure modes, would leak the label; "
                         "move real inputs to sensor_columns)")
        notes.append(f"label: {label} (0/1, {int(np.nansum(numeric[label]))} of {len(df)} rows are 1)")
    elif fleet is not None:
        task, (idc, tc) = "rul_regression", fleet
        ids, t = numeric[idc], numeric[tc]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)] - 1
        lengths = ends - starts + 1
        life = float(np.median(t[ends] - t[starts]))
        notes.append(f"id column: {idc} ({len(starts)} assets, {lengths.min()}-{lengths.max()} readings each); "
                     f"time column: {tc}")
    else:
        raise UsageError(f"{path}: cannot tell what to predict: no asset id column whose readings come in "
                         "blocks with a time column increasing within each asset (a run-to-failure fleet), and "
                         "no 0/1 failure label column (named like 'failure', 'label' or 'target'); write the "
                         "profile by hand (docs/profiles.md)")
    used = {idc, tc, label, *cats, *exclude}
    settings, sensors = [], []
    for c in names:
        v = numeric[c]
        if c in used or v is None:
            continue
        finite = v[np.isfinite(v)]
        span = float(finite.max() - finite.min()) if len(finite) else 0.0
        levels = len(np.unique(np.round((finite - finite.min()) / span * 100))) if span > 0 else 1
        # set points repeat: a few levels, each seen many times (a short file shows few levels of anything)
        if SETTING_HINTS.search(c) or (c not in binary and 2 <= levels <= MAX_SETTING_LEVELS
                                       and len(finite) >= 10 * levels):
            settings.append(c)
        else:
            sensors.append(c)
    if settings:
        notes.append(f"settings: {settings} (named like settings, or set-point-like values; regimes are detected "
                     "from them. A sensor that only follows the operating condition looks the same: move it to "
                     "sensor_columns if so)")
    if not sensors:
        raise UsageError(f"{path}: no numeric column is left for sensor readings")
    notes.append(f"sensors: {sensors}")
    fmt: dict[str, Any] = {"type": file_format, "header": header}
    if not header:
        fmt["columns"] = names
    rename = {raw: n for raw, n in zip(raw_names, names, strict=True) if raw != n}
    if header and rename:
        fmt["rename"] = rename
    role = "train" if task == "rul_regression" else "data"
    doc.update({
        "task": task,
        "description": f"Drafted by `predmaint profile init` from {path.name} ({len(df)} rows); review every "
                       "column's role, the label rule and the windows before training.",
        "format": fmt,
        "files": {role: _relative_file(path, data_dir, name, notes)},
        "id_column": idc, "time_column": tc,
        "setting_columns": settings, "sensor_columns": sensors,
        "categorical_columns": cats, "exclude_columns": exclude,
    })
    split = SplitSpec(validation_fraction=0.2, test_fraction=0.2)
    if task == "rul_regression":
        median_len = float(np.median(lengths))
        sizes = [0, *(w for w in WINDOW_CANDIDATES if w <= median_len / 2)]
        if len(sizes) == 1:
            sizes.append(max(2, int(median_len // 4)))
        cap = _sig(0.6 * life)
        doc["label"] = {"type": "rul", "cap": cap}
        notes.append(f"label: RUL in {tc} units, capped at {cap:g} (about 60% of the median life, {life:g}); "
                     "choose the cap by cross-validation")
        doc["regimes"] = ({"max_clusters": RegimeSpec.max_clusters,
                           "min_explained_variance": RegimeSpec.min_explained_variance} if settings else None)
        doc["windows"] = {"sizes": sizes, "stats": ["mean", "slope"], "ewm_spans": []}
        doc["min_readings"] = 2
    else:
        doc["label"] = {"type": "binary", "column": label}
        doc["regimes"] = None
        doc["windows"] = None
        doc["min_readings"] = 1
    doc["split"] = {"validation_fraction": split.validation_fraction, "test_fraction": split.test_fraction}
    doc["metrics"] = list(METRICS[task][:3])
    try:
        parse_profile(doc, source="draft")
    except ProfileError as exc:  # a drafting bug, not the user's: say so
        raise UsageError(f"{path}: the drafted profile is not valid ({exc}); write it by hand") from None
    return doc, notes


def infer_role(profile: Any, path: Path) -> str:
    """The profile's file role whose file name matches ``path`` (``x.csv`` or ``x.csv.gz``), else
    ``train`` (or ``data`` for a profile without a train file)."""
    names = {path.name, path.name[:-3] if path.name.endswith(".gz") else path.name}
    for role in profile.files:
        if Path(profile.file(role)).name in names:
            return role
    return "train" if "train" in profile.files else "data"


def check_file(profile: Any, path: Path, role: str | None = None) -> CheckResult:
    """Validate the whole of ``path`` against ``profile`` as a run would; raises the validators' own
    errors (``InputError`` of the prepare Lambda as ``UsageError``, ``DataError``, ``FeatureError``),
    each naming the file, row and column."""
    from training_src import dataio, preprocess

    from .runner import prepare_module

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist")
    role = role or infer_role(profile, path)
    if role not in profile.files:
        raise UsageError(f"--role {role!r}: profile {profile.name} has files for {sorted(profile.files)}")
    prepare = prepare_module()
    body = path.read_bytes()
    try:  # what the prepare Lambda checks before any job (here on every row, not a sample)
        prepare.validate_object(profile, role, prepare.ObjectInfo(str(path), len(body)), body)
    except prepare.InputError as exc:
        raise UsageError(str(exc)) from None
    if role == "test_rul":
        values = dataio.read_rul_file(path)
        return CheckResult(path, role, len(values), None, None, [])
    df = preprocess.read_readings(path, profile)  # what preprocess.py reads: gaps, times, assets
    assets = lengths = None
    if profile.id_column:
        counts = df.groupby(profile.id_column, sort=False).size()
        assets, lengths = len(counts), (int(counts.min()), int(counts.max()))
    known = {*profile.required_columns, *profile.exclude_columns}
    ignored = [c for c in df.columns if c not in known]
    return CheckResult(path, role, len(df), assets, lengths, ignored)
