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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("rul_regression", "failure_classification")
WINDOW_STATS = ("mean", "std", "slope", "min", "max")
DERIVED_OPS = ("product", "difference", "ratio", "sum", "value", "max", "min")
DERIVED_OPS_INPUTS = {"difference": 2, "ratio": 2, "value": 1}  # exact input counts; others >= 2
FORMATS = ("whitespace", "csv")
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
    type: str  # "rul" or "binary"
    cap: float | None = None  # RUL cap (piecewise-linear target)
    column: str | None = None  # label column for binary labels


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
        """The metric the tuning job optimises: the name printed by train.py."""
        return "validation-rmse" if self.is_regression else "validation-aucpr"

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


def _str_list(doc: dict, key: str, source: str, *, required: bool = False) -> tuple[str, ...]:
    value = doc.get(key, [] if not required else None)
    if value is None:
        if required:
            raise _err(source, key, "is required")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(source, key, f"must be a list of column names, got {value!r}")
    if len(set(value)) != len(value):
        raise _err(source, key, f"lists a column twice: {value!r}")
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


DERIVED_KEYS = {"name", "op", "columns", "features", "scale", "limit", "limit_by", "band", "why"}


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
        unknown = sorted(set(d) - DERIVED_KEYS)
        if unknown:
            raise _err(source, where, f"unknown field(s) {unknown}; known fields are {sorted(DERIVED_KEYS)}")
        if d["name"] in {e.name for e in derived}:
            raise _err(source, f"{where}.name", f"{d['name']!r} is declared twice")
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


def parse_profile(doc: dict[str, Any], subset: str | None = None, source: str = "<dict>") -> Profile:
    """Validate a profile document and pick a subset; raise ``ProfileError`` naming the field."""
    if not isinstance(doc, dict):
        raise _err(source, "document", "must be a JSON object")
    known = {"name", "task", "description", "subsets", "default_subset", "format", "files", "id_column",
             "time_column", "setting_columns", "sensor_columns", "categorical_columns", "exclude_columns",
             "derived_features", "label", "regimes", "windows", "min_readings", "split", "metrics",
             "subset"}  # "subset" is recorded when a profile is embedded in a feature spec
    unknown = sorted(set(doc) - known)
    if unknown:
        raise _err(source, ", ".join(unknown), f"unknown field(s); known fields are {sorted(known)}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise _err(source, "name", "is required (a non-empty string)")
    task = doc.get("task")
    if task not in TASKS:
        raise _err(source, "task", f"must be one of {list(TASKS)}, got {task!r}")

    fmt = doc.get("format") or {}
    if not isinstance(fmt, dict):
        raise _err(source, "format", "must be an object")
    file_format = fmt.get("type", "csv")
    if file_format not in FORMATS:
        raise _err(source, "format.type", f"must be one of {list(FORMATS)}, got {file_format!r}")
    header = bool(fmt.get("header", True))
    columns = fmt.get("columns")
    if columns is not None:
        columns = _str_list(fmt, "columns", source)
    if not header and not columns:
        raise _err(source, "format.columns", "is required when the files have no header row")
    rename = fmt.get("rename") or {}
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rename.items()):
        raise _err(source, "format.rename", "must map source column names to names")

    files = doc.get("files")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise _err(source, "files", "must map roles (train, test, test_rul or data) to relative paths")
    if task == "rul_regression" and "train" not in files:
        raise _err(source, "files.train", "is required for rul_regression (run-to-failure trajectories)")
    if task == "failure_classification" and "data" not in files and "train" not in files:
        raise _err(source, "files.data", "is required for failure_classification")
    if "test" in files and task == "rul_regression" and "test_rul" not in files:
        raise _err(source, "files.test_rul", "is required with files.test (true RUL after each test asset)")

    subsets = _str_list(doc, "subsets", source)
    if subsets:
        chosen = subset or doc.get("subset") or doc.get("default_subset")
        if chosen not in subsets:
            raise _err(source, "subset", f"unknown subset {chosen!r}; choose one of {list(subsets)}")
        subset = chosen
    elif subset or doc.get("subset"):
        raise _err(source, "subset", f"this profile has no subsets, got {subset or doc.get('subset')!r}")

    id_column = doc.get("id_column")
    time_column = doc.get("time_column")
    settings = _str_list(doc, "setting_columns", source)
    sensors = _str_list(doc, "sensor_columns", source, required=True)
    if not sensors:
        raise _err(source, "sensor_columns", "needs at least one sensor column")
    cats_raw = doc.get("categorical_columns") or {}
    if isinstance(cats_raw, list):
        if cats_raw:
            raise _err(source, "categorical_columns", "must map each column to its list of levels")
        cats_raw = {}
    if not isinstance(cats_raw, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in cats_raw.values()
    ):
        raise _err(source, "categorical_columns", "must map each column to a non-empty list of level names")
    cats = {k: tuple(v) for k, v in cats_raw.items()}
    exclude = _str_list(doc, "exclude_columns", source)

    if task == "rul_regression" and (not id_column or not time_column):
        raise _err(source, "id_column/time_column", "rul_regression needs an asset id and a time column")

    label_doc = doc.get("label")
    if not isinstance(label_doc, dict):
        raise _err(source, "label", "a label rule is required, e.g. {\"type\": \"rul\", \"cap\": 125}")
    ltype = label_doc.get("type")
    if task == "rul_regression":
        if ltype != "rul":
            raise _err(source, "label.type", f"rul_regression needs label type 'rul', got {ltype!r}")
        cap = label_doc.get("cap")
        if cap is not None and (not isinstance(cap, int | float) or isinstance(cap, bool) or cap <= 0):
            raise _err(source, "label.cap", f"must be a positive number or null, got {cap!r}")
        label = LabelSpec("rul", cap=float(cap) if cap is not None else None)
    else:
        if ltype != "binary" or not isinstance(label_doc.get("column"), str):
            raise _err(source, "label", "failure_classification needs {\"type\": \"binary\", \"column\": ...}")
        label = LabelSpec("binary", column=label_doc["column"])

    windows = None
    wdoc = doc.get("windows")
    if wdoc is not None:
        if not isinstance(wdoc, dict):
            raise _err(source, "windows", "must be an object with sizes and stats")
        sizes = _pos_int_list(wdoc.get("sizes"), source, "windows.sizes", allow_zero=True)
        if not sizes:
            raise _err(source, "windows.sizes", "needs at least one window size")
        stats = _str_list(wdoc, "stats", source)
        bad = [s for s in stats if s not in WINDOW_STATS]
        if bad:
            raise _err(source, "windows.stats", f"unknown statistic(s) {bad}; choose from {list(WINDOW_STATS)}")
        spans = _pos_int_list(wdoc.get("ewm_spans", []), source, "windows.ewm_spans")
        windows = WindowSpec(sizes, stats, spans)
        if not time_column or not id_column:
            raise _err(source, "windows", "window features need id_column and time_column")

    regimes = None
    rdoc = doc.get("regimes")
    if rdoc is not None:
        if not isinstance(rdoc, dict):
            raise _err(source, "regimes", "must be an object or null")
        mk = rdoc.get("max_clusters", 8)
        mev = rdoc.get("min_explained_variance", 0.999)
        if not isinstance(mk, int) or not 1 <= mk <= 50:
            raise _err(source, "regimes.max_clusters", f"must be a whole number in 1..50, got {mk!r}")
        if not isinstance(mev, int | float) or not 0 < mev < 1:
            raise _err(source, "regimes.min_explained_variance", f"must be in (0, 1), got {mev!r}")
        if not settings:
            raise _err(source, "regimes", "regime detection needs setting_columns")
        regimes = RegimeSpec(mk, float(mev))

    derived = _parse_derived(doc.get("derived_features"), cats, source)

    split = doc.get("split") or {}
    vf = split.get("validation_fraction", 0.2)
    tf = split.get("test_fraction", 0.0)
    for key, v in (("validation_fraction", vf), ("test_fraction", tf)):
        if not isinstance(v, int | float) or not 0 <= v < 0.9:
            raise _err(source, f"split.{key}", f"must be in [0, 0.9), got {v!r}")
    if vf <= 0:
        raise _err(source, "split.validation_fraction", "must be > 0: tuning needs validation data")
    if vf + tf >= 0.9:
        raise _err(source, "split", "validation_fraction + test_fraction leaves too little training data")
    min_readings = doc.get("min_readings", 1)
    if not isinstance(min_readings, int) or min_readings < 1:
        raise _err(source, "min_readings", f"must be a whole number >= 1, got {min_readings!r}")

    # Every referenced column must exist in the file's columns (after renaming), when they are known.
    available = None
    if columns:
        available = {rename.get(c, c) for c in columns}
    elif rename:
        available = set(rename.values())
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
    overlap = set(exclude) & (set(sensors) | set(settings))
    if overlap:
        raise _err(source, "exclude_columns", f"{sorted(overlap)} are also used as features")

    return Profile(
        name=name, task=task, description=str(doc.get("description", "")),
        columns=columns, file_format=file_format, header=header, rename=dict(rename), files=dict(files),
        subsets=subsets, subset=subset, id_column=id_column, time_column=time_column,
        setting_columns=settings, sensor_columns=sensors, categorical_columns=cats,
        exclude_columns=exclude, derived_features=tuple(derived), label=label, regimes=regimes,
        windows=windows, min_readings=min_readings, validation_fraction=float(vf),
        test_fraction=float(tf), metrics=tuple(doc.get("metrics") or ()), source=source, raw=doc,
    )


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the project."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_path: str | os.PathLike, subset: str | None = None) -> Profile:
    """Load a shipped profile by name (``cmapss``) or a user's profile by file path, and validate it."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ProfileError(
                f"unknown profile {str(name_or_path)!r}; shipped profiles: {available_profiles()} "
                "(or pass the path of your own profile JSON)"
            )
    if not path.exists():
        raise ProfileError(f"profile file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile {path}: not valid JSON: {exc}") from exc
    return parse_profile(doc, subset=subset, source=str(path.name if path.parent == PROFILE_DIR else path))
