"""Dataset profiles: a small JSON document that describes a fleet's data, validated with clear errors.

A profile says which task the data supports (``rul_regression`` for run-to-failure fleets,
``failure_classification`` for labelled rows), which columns are ids, time, operating settings,
sensors and categories, how labels are made and which window features to compute. A user brings a
new fleet by writing a profile, not code.

This module is pure Python (no pandas) because the prepare Lambda imports it too.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

TASKS = ("rul_regression", "failure_classification")
WINDOW_STATS = ("mean", "std", "slope", "min", "max")
#: ``windows.life_models``: how a profile with life features is served (``WindowSpec.life_models``)
LIFE_MODELS = ("two", "one")
DERIVED_OPS = ("product", "difference", "ratio", "sum", "value", "max", "min")
DERIVED_OPS_INPUTS = {"difference": 2, "ratio": 2, "value": 1}  # exact input counts; others >= 2
FORMATS = ("whitespace", "csv")
FILE_ROLES = ("train", "test", "test_rul", "data")
#: the metrics evaluate.py reports, by task (a profile's ``metrics`` lists the ones to show first)
METRICS = {"rul_regression": ("rmse", "mae", "r2", "nasa_score"),
           "failure_classification": ("pr_auc", "roc_auc", "f1", "precision", "recall", "accuracy")}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class ProfileError(ValueError):
    """A profile is malformed, or asks for something the data or the code cannot give."""


@dataclass(frozen=True)
class DerivedFeature:
    """``v = scale * op(inputs)``, optionally expressed as a signed distance to a physical limit.

    Ops: product, sum, difference (a - b), ratio (a / b), value (one input, as is), max, min.
    Inputs are raw sensor/setting ``columns`` or, instead, earlier derived ``features`` (by name),
    so margins can be combined (e.g. ``max`` of two margins is negative only when both are).

    ``limit`` (a number, or one number per level of a categorical column: ``limit_by`` names the
    column, ``limit`` maps its levels) makes the feature ``(v - limit) / |limit|``: 0 at the limit,
    negative below it, one threshold for every level. ``band`` ``(low, high)`` makes it
    ``min(v - low, high - v) / ((high - low) / 2)``: 1 mid-band, 0 at either edge, negative outside.
    Trees then find a failure boundary with one split instead of one per level or side.
    """

    name: str
    op: str
    columns: tuple[str, ...]
    scale: float = 1.0
    features: tuple[str, ...] = ()
    limit: float | dict[str, float] | None = None
    limit_by: str | None = None
    band: tuple[float, float] | None = None

    def to_spec(self) -> dict[str, Any]:
        """The JSON form stored in a feature spec (only the keys a plain product/sum/... needs)."""
        out: dict[str, Any] = {"name": self.name, "op": self.op, "columns": list(self.columns), "scale": self.scale}
        if self.features:
            out["features"] = list(self.features)
        if self.limit is not None:
            out["limit"] = dict(self.limit) if isinstance(self.limit, dict) else self.limit
            if self.limit_by:
                out["limit_by"] = self.limit_by
        if self.band is not None:
            out["band"] = list(self.band)
        return out


@dataclass(frozen=True)
class WindowSpec:
    """Per-asset rolling features over trailing windows of ``sizes`` readings (0 = whole history)."""

    sizes: tuple[int, ...]
    stats: tuple[str, ...]
    ewm_spans: tuple[int, ...] = ()
    health_index: bool = False  # a per-regime linear health index as one more windowed signal
    cv_sizes: tuple[int, ...] = ()  # candidates for ONE bounded window, chosen by grouped CV (replaces sizes)
    # statistics of the asset's whole life so far, from a running summary the caller may send (features.life;
    # its wire form: predmaint_serving/codec.py); optional features, missing when a request carries no summary
    life_stats: tuple[str, ...] = ()
    # with life_stats: "two" models (a window model for callers without a summary, a life model for callers
    # with one: candidates/pair.py) or "one" model fitted on every row with and without its life features
    life_models: str = "two"

    @property
    def max_size(self) -> int:
        return max((*self.sizes, *(3 * s for s in self.ewm_spans)), default=1)


@dataclass(frozen=True)
class RegimeSpec:
    """Operating-regime detection by k-means on the settings.

    The smallest k whose clusters explain at least ``min_explained_variance`` of the (standardised)
    settings' variance is used; if none up to ``max_clusters`` does, the fleet has one regime.
    """

    max_clusters: int = 8
    min_explained_variance: float = 0.999


@dataclass(frozen=True)
class LabelSpec:
    """How labels are made: ``rul`` (remaining useful life, optionally capped) or ``binary`` (a 0/1 column)."""

    type: str  # "rul" or "binary"
    cap: float | None = None  # RUL cap (piecewise-linear target)
    column: str | None = None  # label column for binary labels
    cv_caps: tuple[float, ...] = ()  # candidate caps chosen by grouped CV (``cap`` is the default)


@dataclass(frozen=True)
class FileFormat:
    """The ``format`` object: how the raw files are written (``type`` csv or whitespace, ``header``,
    positional ``columns`` for header-less files, ``rename`` from file names to profile names)."""

    type: str = "csv"
    header: bool = True
    columns: tuple[str, ...] | None = None
    rename: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitSpec:
    """The ``split`` object: fractions of assets (fleets) or rows (labelled rows) held out."""

    validation_fraction: float = 0.2
    test_fraction: float = 0.0


@dataclass(frozen=True)
class Profile:
    """A validated dataset profile; see ``load_profile``."""

    name: str
    task: str
    description: str
    columns: tuple[str, ...] | None  # positional names for header-less files
    file_format: str
    header: bool
    rename: dict[str, str]
    files: dict[str, str]
    subsets: tuple[str, ...]
    subset: str | None
    id_column: str | None
    time_column: str | None
    setting_columns: tuple[str, ...]
    sensor_columns: tuple[str, ...]
    categorical_columns: dict[str, tuple[str, ...]]
    exclude_columns: tuple[str, ...]
    derived_features: tuple[DerivedFeature, ...]
    label: LabelSpec
    regimes: RegimeSpec | None
    windows: WindowSpec | None
    min_readings: int
    validation_fraction: float
    test_fraction: float
    metrics: tuple[str, ...]
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_regression(self) -> bool:
        return self.task == "rul_regression"

    @property
    def objective_metric(self) -> str:
        """The metric the tuning job optimises: the built-in XGBoost algorithm's documented name for what
        train.py prints (``candidates.base.tuning_metric``: ``validation-rmse`` lines are ``validation:rmse``)."""
        return "validation:rmse" if self.is_regression else "validation:aucpr"

    @property
    def objective_direction(self) -> str:
        return "Minimize" if self.is_regression else "Maximize"

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every raw file of this profile must carry (after renaming)."""
        cols: list[str] = []
        for c in (self.id_column, self.time_column, *self.setting_columns, *self.sensor_columns,
                  *self.categorical_columns):
            if c and c not in cols:
                cols.append(c)
        if self.label.column and self.label.column not in cols:
            cols.append(self.label.column)
        return tuple(cols)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Columns a prediction request must carry for one reading/row."""
        cols = [c for c in self.required_columns if c != self.label.column]
        if self.task == "failure_classification" and self.id_column in cols:
            cols.remove(self.id_column)  # ids are not features; the asset id travels separately
        if self.task == "rul_regression" and self.id_column in cols:
            cols.remove(self.id_column)
        return tuple(cols)

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.input_columns if c not in self.categorical_columns)

    def file(self, role: str) -> str | None:
        """Relative path of a data file (``train``, ``test``, ``test_rul``, ``data``) for this subset."""
        template = self.files.get(role)
        if template is None:
            return None
        return template.format(subset=self.subset or "")

    def to_dict(self) -> dict[str, Any]:
        """The profile as loaded (plus the chosen subset), for lineage and the feature spec."""
        out = dict(self.raw)
        out["subset"] = self.subset
        return out


def _err(source: str, where: str, what: str) -> ProfileError:
    return ProfileError(f"profile {source}: {where}: {what}")


def _keys(cls: type) -> set[str]:
    """The JSON keys of a nested profile object: its dataclass's field names."""
    return {f.name for f in fields(cls)}


#: top-level keys of a profile document ("subset" is recorded when a profile travels with a run or
#: is embedded in a feature spec)
TOP_KEYS = {"name", "task", "description", "subsets", "default_subset", "format", "files", "id_column",
            "time_column", "setting_columns", "sensor_columns", "categorical_columns", "exclude_columns",
            "derived_features", "label", "regimes", "windows", "min_readings", "split", "metrics", "subset"}
#: keys of one ``derived_features`` entry ("why" is a free-text note for readers)
DERIVED_KEYS = _keys(DerivedFeature) | {"why"}


def _object(value: Any, where: str, known: set[str], source: str) -> dict[str, Any]:
    """``value`` as an object whose keys are all ``known``; else a ProfileError naming the key path."""
    if not isinstance(value, dict):
        raise _err(source, where, f"must be an object, got {value!r}")
    unknown = sorted(set(value) - known)
    if unknown:
        paths = ", ".join(f"{where}.{k}" if where else str(k) for k in unknown)
        raise _err(source, paths, f"unknown key{'s' if len(unknown) > 1 else ''}; known keys"
                                  f"{' of ' + where if where else ''} are {sorted(known)}")
    return value


def _string(value: Any, where: str, source: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _err(source, where, f"must be a non-empty string{' or null' if optional else ''}, got {value!r}")
    return value


def _str_list(doc: dict, key: str, source: str, *, required: bool = False, where: str | None = None) -> tuple[str, ...]:
    where = where or key
    value = doc.get(key, [] if not required else None)
    if value is None:
        if required:
            raise _err(source, where, "is required")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(source, where, f"must be a list of column names, got {value!r}")
    if len(set(value)) != len(value):
        raise _err(source, where, f"lists a column twice: {value!r}")
    return tuple(value)


def _pos_int_list(value: Any, source: str, where: str, allow_zero: bool = False) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _err(source, where, f"must be a list of whole numbers, got {value!r}")
    if any(v < (0 if allow_zero else 1) for v in value):
        raise _err(source, where, f"window sizes must be >= {0 if allow_zero else 1}"
                   f"{' (0 = whole history)' if allow_zero else ''}, got {value!r}")
    if len(set(value)) != len(value):
        raise _err(source, where, f"has duplicates: {value!r}")
    return tuple(sorted(value))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_derived(docs: Any, cats: dict[str, tuple[str, ...]], source: str) -> list[DerivedFeature]:
    """Validate ``derived_features``; every error names the entry and the field."""
    if docs is None:
        return []
    if not isinstance(docs, list):
        raise _err(source, "derived_features", "must be a list of objects")
    derived: list[DerivedFeature] = []
    for i, d in enumerate(docs):
        where = f"derived_features[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise _err(source, where, "must be an object with name, op and columns (or features)")
        _object(d, where, DERIVED_KEYS, source)
        if d["name"] in {e.name for e in derived}:
            raise _err(source, f"{where}.name", f"{d['name']!r} is declared twice")
        if not isinstance(d.get("why", ""), str):
            raise _err(source, f"{where}.why", "must be a string (a note for readers)")
        op = d.get("op")
        if op not in DERIVED_OPS:
            raise _err(source, f"{where}.op", f"must be one of {list(DERIVED_OPS)}, got {op!r}")
        has_cols, has_feats = "columns" in d, "features" in d
        if has_cols == has_feats:
            raise _err(source, where, "give either columns (raw sensor/setting columns) or features "
                                      "(names of earlier derived features), not both or neither")
        key = "columns" if has_cols else "features"
        inputs = d[key]
        if not isinstance(inputs, list) or not all(isinstance(c, str) and c for c in inputs):
            raise _err(source, f"{where}.{key}", f"must be a list of names, got {inputs!r}")
        need = DERIVED_OPS_INPUTS.get(op)
        if need is not None and len(inputs) != need:
            raise _err(source, f"{where}.{key}", f"{op} takes exactly {need} input(s), got {len(inputs)}")
        if need is None and len(inputs) < 2:
            raise _err(source, f"{where}.{key}", f"{op} needs at least two inputs, got {len(inputs)}")
        if has_feats:
            earlier = {e.name for e in derived}
            bad = [f for f in inputs if f not in earlier]
            if bad:
                raise _err(source, f"{where}.features", f"{bad} are not derived features declared before "
                                                        f"this one; declared so far: {sorted(earlier)}")
        scale = d.get("scale", 1.0)
        if not _number(scale):
            raise _err(source, f"{where}.scale", "must be a number")
        limit, limit_by, band = d.get("limit"), d.get("limit_by"), d.get("band")
        if limit is not None and band is not None:
            raise _err(source, where, "give limit or band, not both")
        if limit_by is not None:
            if limit_by not in cats:
                raise _err(source, f"{where}.limit_by", f"{limit_by!r} is not a categorical column; "
                                                        f"categorical columns are {sorted(cats)}")
            if not isinstance(limit, dict):
                raise _err(source, f"{where}.limit", f"with limit_by, map every level of {limit_by!r} "
                                                     f"{list(cats[limit_by])} to a number")
            missing = [lvl for lvl in cats[limit_by] if lvl not in limit]
            extra = sorted(set(limit) - set(cats[limit_by]))
            if missing or extra:
                raise _err(source, f"{where}.limit", f"levels must be exactly {list(cats[limit_by])}"
                                                     f" (missing {missing}, unknown {extra})")
            if not all(_number(v) and v != 0 for v in limit.values()):
                raise _err(source, f"{where}.limit", f"per-level limits must be non-zero numbers, got {limit!r}")
            limit = {k: float(v) for k, v in limit.items()}
        elif limit is not None:
            if isinstance(limit, dict):
                raise _err(source, f"{where}.limit_by", "per-level limits need limit_by (a categorical column)")
            if not _number(limit) or limit == 0:
                raise _err(source, f"{where}.limit", f"must be a non-zero number, got {limit!r}")
            limit = float(limit)
        if band is not None:
            if not (isinstance(band, list) and len(band) == 2 and all(_number(v) for v in band)
                    and band[0] < band[1]):
                raise _err(source, f"{where}.band", f"must be [low, high] with low < high, got {band!r}")
            band = (float(band[0]), float(band[1]))
        derived.append(DerivedFeature(d["name"], op, tuple(inputs) if has_cols else (), float(scale),
                                      features=tuple(inputs) if has_feats else (), limit=limit,
                                      limit_by=limit_by, band=band))
    return derived


def _parse_format(doc: dict[str, Any], source: str) -> FileFormat:
    fmt = _object(doc.get("format") or {}, "format", _keys(FileFormat), source)
    file_format = fmt.get("type", "csv")
    if file_format not in FORMATS:
        raise _err(source, "format.type", f"must be one of {list(FORMATS)}, got {file_format!r}")
    header = fmt.get("header", True)
    if not isinstance(header, bool):
        raise _err(source, "format.header", f"must be true or false, got {header!r}")
    columns = fmt.get("columns")
    if columns is not None:
        columns = _str_list(fmt, "columns", source, where="format.columns")
    if not header and not columns:
        raise _err(source, "format.columns", "is required when the files have no header row")
    rename = fmt.get("rename") or {}
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                               for k, v in rename.items()):
        raise _err(source, "format.rename", "must map source column names to names")
    renamed = [rename.get(c, c) for c in columns] if columns else list(rename.values())
    twice = sorted({c for c in renamed if renamed.count(c) > 1})
    if twice:
        raise _err(source, "format.rename", f"gives two columns the same name {twice}: {rename!r}")
    return FileFormat(file_format, header, columns, dict(rename))


def _parse_files(doc: dict[str, Any], task: str, source: str) -> dict[str, str]:
    files = doc.get("files")
    if not isinstance(files, dict) or not files:
        raise _err(source, "files", "must map roles (train, test, test_rul or data) to relative paths")
    _object(files, "files", set(FILE_ROLES), source)
    folders = set()
    for role, rel in files.items():
        where = f"files.{role}"
        if not isinstance(rel, str) or "/" not in rel.strip("/") or rel.startswith("/") or "\\" in rel \
                or any(part in ("", ".", "..") for part in rel.split("/")):
            raise _err(source, where, f"must be a relative path inside the dataset's folder, like "
                                      f"'pumps/history.csv' (the folder is raw/<dataset>/ in S3), got {rel!r}")
        try:
            rel.format(subset="S")
        except (KeyError, IndexError, ValueError) as exc:
            raise _err(source, where, f"only {{subset}} may appear in braces, got {rel!r} ({exc})") from None
        folders.add(rel.split("/", 1)[0])
    if len(folders) > 1:
        raise _err(source, "files", f"every file must be in the same dataset folder, got {sorted(folders)}")
    if task == "rul_regression" and "train" not in files:
        raise _err(source, "files.train", "is required for rul_regression (run-to-failure trajectories)")
    if task == "failure_classification" and "data" not in files and "train" not in files:
        raise _err(source, "files.data", "is required for failure_classification")
    if "test" in files and task == "rul_regression" and "test_rul" not in files:
        raise _err(source, "files.test_rul", "is required with files.test (true RUL after each test asset)")
    if "test_rul" in files and "test" not in files:
        raise _err(source, "files.test", "is required with files.test_rul (the test assets' readings)")
    return dict(files)


def _parse_label(doc: dict[str, Any], task: str, source: str) -> LabelSpec:
    label_doc = doc.get("label")
    if label_doc is None:
        raise _err(source, "label", "a label rule is required, e.g. {\"type\": \"rul\", \"cap\": 125}")
    _object(label_doc, "label", _keys(LabelSpec), source)
    ltype = label_doc.get("type")
    if task == "rul_regression":
        if ltype != "rul":
            raise _err(source, "label.type", f"rul_regression needs label type 'rul', got {ltype!r}")
        if "column" in label_doc:
            raise _err(source, "label.column", "only binary labels read a column; RUL is computed from time")
        cap = label_doc.get("cap")
        if cap is not None and (not _number(cap) or cap <= 0):
            raise _err(source, "label.cap", f"must be a positive number or null, got {cap!r}")
        cv_caps = label_doc.get("cv_caps", [])
        if not isinstance(cv_caps, list) or not all(_number(c) and c > 0 for c in cv_caps) \
                or len(set(cv_caps)) != len(cv_caps):
            raise _err(source, "label.cv_caps", f"must be a list of distinct positive numbers, got {cv_caps!r}")
        if cv_caps and cap is None:
            raise _err(source, "label.cv_caps", "needs a default cap")
        return LabelSpec("rul", cap=float(cap) if cap is not None else None,
                         cv_caps=tuple(sorted(float(c) for c in cv_caps)))
    if "cv_caps" in label_doc:
        raise _err(source, "label.cv_caps", "only RUL labels have a cap")
    if ltype != "binary" or not isinstance(label_doc.get("column"), str) or not label_doc["column"]:
        raise _err(source, "label", "failure_classification needs {\"type\": \"binary\", \"column\": ...}")
    if "cap" in label_doc:
        raise _err(source, "label.cap", "only RUL labels have a cap")
    return LabelSpec("binary", column=label_doc["column"])


def _parse_windows(doc: dict[str, Any], source: str) -> WindowSpec | None:
    wdoc = doc.get("windows")
    if wdoc is None:
        return None
    _object(wdoc, "windows", _keys(WindowSpec), source)
    sizes = _pos_int_list(wdoc.get("sizes"), source, "windows.sizes", allow_zero=True)
    if not sizes:
        raise _err(source, "windows.sizes", "needs at least one window size")
    stats = _str_list(wdoc, "stats", source, where="windows.stats")
    bad = [s for s in stats if s not in WINDOW_STATS]
    if bad:
        raise _err(source, "windows.stats", f"unknown statistic(s) {bad}; choose from {list(WINDOW_STATS)}")
    spans = _pos_int_list(wdoc.get("ewm_spans", []), source, "windows.ewm_spans")
    hi = wdoc.get("health_index", False)
    if not isinstance(hi, bool):
        raise _err(source, "windows.health_index", f"must be true or false, got {hi!r}")
    cv_sizes = _pos_int_list(wdoc.get("cv_sizes", []), source, "windows.cv_sizes")
    if cv_sizes and (len(sizes) != 1 or sizes[0] == 0):
        raise _err(source, "windows.cv_sizes", "chooses one bounded window: 'sizes' must then be one "
                   "size > 0 (the default)")
    life = _str_list(wdoc, "life_stats", source, where="windows.life_stats")
    bad = [s for s in life if s not in WINDOW_STATS]
    if bad:
        raise _err(source, "windows.life_stats", f"unknown statistic(s) {bad}; choose from {list(WINDOW_STATS)}")
    if life and (0 in sizes or 0 in cv_sizes):
        raise _err(source, "windows.life_stats", "a whole-history window (size 0) already reads the whole life")
    models = wdoc.get("life_models", WindowSpec.life_models)
    if models not in LIFE_MODELS:
        raise _err(source, "windows.life_models", f"must be one of {list(LIFE_MODELS)}, got {models!r}")
    return WindowSpec(sizes, stats, spans, hi, cv_sizes, tuple(life), models)


def _parse_regimes(doc: dict[str, Any], source: str) -> RegimeSpec | None:
    rdoc = doc.get("regimes")
    if rdoc is None:
        return None
    _object(rdoc, "regimes", _keys(RegimeSpec), source)
    mk = rdoc.get("max_clusters", RegimeSpec.max_clusters)
    mev = rdoc.get("min_explained_variance", RegimeSpec.min_explained_variance)
    if not _whole(mk) or not 1 <= mk <= 50:
        raise _err(source, "regimes.max_clusters", f"must be a whole number in 1..50, got {mk!r}")
    if not _number(mev) or not 0 < mev < 1:
        raise _err(source, "regimes.min_explained_variance", f"must be in (0, 1), got {mev!r}")
    return RegimeSpec(mk, float(mev))


def _parse_split(doc: dict[str, Any], source: str) -> SplitSpec:
    split = _object(doc.get("split") or {}, "split", _keys(SplitSpec), source)
    vf = split.get("validation_fraction", SplitSpec.validation_fraction)
    tf = split.get("test_fraction", SplitSpec.test_fraction)
    for key, v in (("validation_fraction", vf), ("test_fraction", tf)):
        if not _number(v) or not 0 <= v < 0.9:
            raise _err(source, f"split.{key}", f"must be in [0, 0.9), got {v!r}")
    if vf <= 0:
        raise _err(source, "split.validation_fraction", "must be > 0: tuning needs validation data")
    if vf + tf >= 0.9:
        raise _err(source, "split", "validation_fraction + test_fraction leaves too little training data")
    return SplitSpec(float(vf), float(tf))


def _parse_categorical(doc: dict[str, Any], source: str) -> dict[str, tuple[str, ...]]:
    cats_raw = doc.get("categorical_columns") or {}
    if isinstance(cats_raw, list):
        if cats_raw:
            raise _err(source, "categorical_columns", "must map each column to its list of levels")
        cats_raw = {}
    if not isinstance(cats_raw, dict):
        raise _err(source, "categorical_columns", "must map each column to a non-empty list of level names")
    for col, levels in cats_raw.items():
        if not isinstance(levels, list) or not levels or not all(isinstance(x, str) and x for x in levels):
            raise _err(source, f"categorical_columns.{col}", f"must be a non-empty list of level names, got {levels!r}")
        if len(set(levels)) != len(levels):
            raise _err(source, f"categorical_columns.{col}", f"lists a level twice: {levels!r}")
    return {k: tuple(v) for k, v in cats_raw.items()}


def parse_profile(doc: dict[str, Any], subset: str | None = None, source: str = "<dict>") -> Profile:
    """Validate a profile document and pick a subset; raise ``ProfileError`` naming the key path.

    Every key at every level is checked: unknown keys are refused with the known ones listed, so a
    typo (``label.capp``) never passes silently.
    """
    if not isinstance(doc, dict):
        raise _err(source, "document", f"must be a JSON object, got {type(doc).__name__}")
    _object(doc, "", TOP_KEYS, source)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise _err(source, "name", "is required (a non-empty string)")
    if not NAME_RE.match(name):
        raise _err(source, "name", f"{name!r}: use 1-64 letters, digits, '.', '_' or '-' (it names runs and jobs)")
    task = doc.get("task")
    if task not in TASKS:
        raise _err(source, "task", f"must be one of {list(TASKS)}, got {task!r}")
    if not isinstance(doc.get("description", ""), str):
        raise _err(source, "description", "must be a string")

    fmt = _parse_format(doc, source)
    files = _parse_files(doc, task, source)

    subsets = _str_list(doc, "subsets", source)
    default_subset = _string(doc.get("default_subset"), "default_subset", source, optional=True)
    recorded = _string(doc.get("subset"), "subset", source, optional=True)
    if subsets:
        if default_subset is not None and default_subset not in subsets:
            raise _err(source, "default_subset", f"{default_subset!r} is not one of subsets {list(subsets)}")
        chosen = subset or recorded or default_subset
        if chosen not in subsets:
            raise _err(source, "subset", f"unknown subset {chosen!r}; choose one of {list(subsets)}")
        subset = chosen
    elif subset or recorded or default_subset:
        raise _err(source, "subset", f"this profile has no subsets, got {subset or recorded or default_subset!r}")
    if not subsets and any("{subset}" in rel for rel in files.values()):
        raise _err(source, "files", "paths use {subset} but the profile lists no subsets")

    id_column = _string(doc.get("id_column"), "id_column", source, optional=True)
    time_column = _string(doc.get("time_column"), "time_column", source, optional=True)
    settings = _str_list(doc, "setting_columns", source)
    sensors = _str_list(doc, "sensor_columns", source, required=True)
    if not sensors:
        raise _err(source, "sensor_columns", "needs at least one sensor column")
    cats = _parse_categorical(doc, source)
    exclude = _str_list(doc, "exclude_columns", source)

    if task == "rul_regression" and (not id_column or not time_column):
        raise _err(source, "id_column/time_column", "rul_regression needs an asset id and a time column")

    label = _parse_label(doc, task, source)
    windows = _parse_windows(doc, source)
    if windows is not None and (not time_column or not id_column):
        raise _err(source, "windows", "window features need id_column and time_column")
    regimes = _parse_regimes(doc, source)
    if regimes is not None and not settings:
        raise _err(source, "regimes", "regime detection needs setting_columns")

    derived = _parse_derived(doc.get("derived_features"), cats, source)
    split = _parse_split(doc, source)
    min_readings = doc.get("min_readings", 1)
    if not _whole(min_readings) or min_readings < 1:
        raise _err(source, "min_readings", f"must be a whole number >= 1, got {min_readings!r}")
    metrics = _str_list(doc, "metrics", source)
    unknown_metrics = [m for m in metrics if m not in METRICS[task]]
    if unknown_metrics:
        raise _err(source, "metrics", f"unknown metric(s) {unknown_metrics} for {task}; "
                                      f"choose from {list(METRICS[task])}")

    # Every referenced column must exist in the file's columns (after renaming), when they are known.
    available = None
    if fmt.columns:
        available = {fmt.rename.get(c, c) for c in fmt.columns}
    elif fmt.rename:
        available = set(fmt.rename.values())
    referenced: list[tuple[str, str]] = []
    for key, cols in (("setting_columns", settings), ("sensor_columns", sensors),
                      ("categorical_columns", tuple(cats)), ("exclude_columns", exclude)):
        referenced += [(key, c) for c in cols]
    for key, c in (("id_column", id_column), ("time_column", time_column), ("label.column", label.column)):
        if c:
            referenced.append((key, c))
    for i, d in enumerate(derived):
        referenced += [(f"derived_features[{i}].columns", c) for c in d.columns]
    if available is not None:
        for key, c in referenced:
            if c not in available:
                raise _err(source, key, f"unknown column {c!r}; the data has {sorted(available)}")
    for i, d in enumerate(derived):
        for c in d.columns:
            if c not in sensors and c not in settings:
                raise _err(source, f"derived_features[{i}].columns",
                           f"{c!r} is not a sensor or setting column")
    # one role per column: a column that is two things at once is a drafting mistake (or a leak)
    roles: dict[str, str] = {}
    for key, cols in (("id_column", (id_column,)), ("time_column", (time_column,)),
                      ("label.column", (label.column,)), ("setting_columns", settings),
                      ("sensor_columns", sensors), ("categorical_columns", tuple(cats))):
        for c in cols:
            if c and c in roles:
                raise _err(source, key, f"{c!r} is already used in {roles[c]}; give each column one role")
            if c:
                roles[c] = key
    overlap = set(exclude) & (set(sensors) | set(settings) | set(cats))
    if overlap:
        raise _err(source, "exclude_columns", f"{sorted(overlap)} are also used as features")

    return Profile(
        name=name, task=task, description=str(doc.get("description", "")),
        columns=fmt.columns, file_format=fmt.type, header=fmt.header, rename=dict(fmt.rename), files=files,
        subsets=subsets, subset=subset, id_column=id_column, time_column=time_column,
        setting_columns=settings, sensor_columns=sensors, categorical_columns=cats,
        exclude_columns=exclude, derived_features=tuple(derived), label=label, regimes=regimes,
        windows=windows, min_readings=min_readings, validation_fraction=split.validation_fraction,
        test_fraction=split.test_fraction, metrics=metrics, source=source, raw=doc,
    )


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the project."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def is_profile_path(ref: str | os.PathLike) -> bool:
    """True if ``ref`` names a profile FILE (it has a folder part or ends in ``.json``), False if it is
    a shipped profile's name (``cmapss``). The CLI sends a file's document, a name as the name."""
    text = os.fspath(ref)
    return "/" in text or os.sep in text or text.lower().endswith(".json")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ProfileError(f"key {key!r} is given twice")
        out[key] = value
    return out


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    """A profile file's JSON document (not validated); ``ProfileError`` if unreadable, not JSON or
    with a key given twice (JSON parsers keep the last silently)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path}: cannot read: {exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile {path}: not valid JSON: {exc}") from exc
    except ProfileError as exc:
        raise ProfileError(f"profile {path}: {exc}") from None


def load_profile(name_or_path: str | os.PathLike, subset: str | None = None) -> Profile:
    """Load a shipped profile by name (``cmapss``) or a user's profile by file path (``./fleet.json``,
    see ``is_profile_path``), and validate it."""
    if is_profile_path(name_or_path):
        path = Path(name_or_path)
        return parse_profile(read_document(path), subset=subset, source=str(path))
    name = os.fspath(name_or_path)
    path = PROFILE_DIR / f"{name}.json"
    if not NAME_RE.match(name) or not path.is_file():
        raise ProfileError(
            f"unknown profile {name!r}; shipped profiles: {available_profiles()} "
            "(or pass the path of your own profile JSON, e.g. ./myfleet.json)"
        )
    return parse_profile(read_document(path), subset=subset, source=path.name)
