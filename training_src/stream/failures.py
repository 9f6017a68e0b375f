"""The fleet's failures as training data: a failed life's archived readings -> a run-to-failure history.

A life that ended in a recorded ``failure`` (``archive.py`` ``event`` items) is a labelled history of
the kind the shipped training data holds: every reading of the life up to the failure, in the
profile's raw layout (the columns, order, delimiter and header of its ``train`` file; for C-MAPSS a
``train_FDxxx.txt`` block: ``unit cycle setting_1 ... sensor_21``). The training code labels such a
history the way it labels the shipped one (RUL = last time - time), so the history ends at the failure:
the last reading must lie at most ``max_gap`` before the failure time (default: one sampling step of
the life, the median time between its readings); a failure recorded long after the last reading is
refused, since the history would tell the model the asset failed earlier than it did.

Each history gets a **unit id** that cannot collide with shipped data (``fleet_unit_id``: 10^12 plus
a hash of asset and life; the public fleets number their units from 1, the largest in the hundreds)
and an object name (``object_key``) in the folder that holds the train file partitioned into parts
(``cmapss/train_FD001/fleet-<asset>-<life>.txt``): the run reads it with the shipped train part
(docs/decisions.md, "Failures become training data").

Run-to-failure profiles only: a classification profile such as AI4I 2020 has no time column, so its
assets cannot be streamed (stream records are ordered by time) and no failure can be recorded against
their readings; its rows are independent observations whose failure-mode columns (TWF, HDF, ...)
a failure record cannot supply. ``export_failure`` refuses such a profile with a one-line error.

Inputs are what a job reading S3 has: an asset's archived lines (``str`` or ``bytes`` JSON Lines of
``readings/asset=<id>/``), the profile; outputs are text (``FailureHistory.text``, ``.data()`` for bytes).
Stdlib only (with the stream's ``archive``/``jsonio``), so the quality job can run it as it stands.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import median
from typing import Any
from urllib.parse import quote

from . import archive, jsonio

#: fleet unit ids start here: far above any shipped unit id, and exact in a float64 (< 2**53)
UNIT_BASE = 10**12
#: how the object names of exported histories start (the run's lineage tells them from shipped parts by it)
PREFIX = "fleet-"


class FailureError(ValueError):
    """A failed life that cannot become a history; ``str()`` names the asset, the life and what is wrong."""


@dataclass(frozen=True)
class FailureHistory:
    """One exported run-to-failure history: its unit id, rows and the text of the raw file."""

    asset_id: str
    life: int
    failure_time: float
    last_time: float
    unit_id: int
    rows: int
    missing: tuple[str, ...]  # profile columns no reading carried (written as missing values)
    text: str

    def data(self) -> bytes:
        """The file's bytes (UTF-8), for an object store."""
        return self.text.encode()


def fleet_unit_id(asset_id: str, life: int) -> int:
    """The unit id of ``asset_id``'s life ``life`` in exported histories: ``UNIT_BASE`` + 12 digits of a
    SHA-256 of both (stable across exports; two lives colliding is a 1-in-10^12 event, and the run's
    reader refuses an id seen in two objects)."""
    digest = hashlib.sha256(f"{asset_id}\x00{life}".encode()).hexdigest()
    return UNIT_BASE + int(digest, 16) % UNIT_BASE


def object_name(asset_id: str, life: int, profile: Any) -> str:
    """The file name of a history (``fleet-<asset, percent-encoded>-<life>.txt``, the train file's suffix)."""
    train = profile.file("train") or ""
    suffix = "." + train.rsplit(".", 1)[-1] if "." in train.rsplit("/", 1)[-1] else ".txt"
    return f"{PREFIX}{quote(asset_id, safe='')}-{life}{suffix}"


def check_profile(profile: Any) -> None:
    """FailureError (one line) when the profile's lives cannot be exported (not run-to-failure)."""
    _layout(profile)


def parts_folder(profile: Any) -> str:
    """The folder of the profile's train file partitioned into parts (``cmapss/train_FD001``), relative
    to the data directory."""
    train = profile.file("train") or ""
    stem = train[:-3] if train.endswith(".gz") else train
    return stem.rsplit(".", 1)[0] if "." in stem.rsplit("/", 1)[-1] else stem


def object_key(asset_id: str, life: int, profile: Any) -> str:
    """Where a history goes, relative to the data directory or to S3's ``raw/``: the folder of the
    profile's train file partitioned into parts (``cmapss/train_FD001/fleet-81-0.txt``). On AWS the
    dataset's folder takes the place of the profile's (``raw/<dataset>/train_FD001/...``, as the prepare
    Lambda resolves a role)."""
    return f"{parts_folder(profile)}/{object_name(asset_id, life, profile)}"


def _layout(profile: Any) -> tuple[list[str], str, bool]:
    """(columns in file order after renaming, delimiter, header row) of the profile's train file."""
    if profile.task != "rul_regression" or not profile.time_column or not profile.id_column:
        raise FailureError(f"profile {profile.name}: failures become training data only for a run-to-failure "
                           "profile (an id and a time column); this one has no asset lives to export")
    if profile.columns:
        columns = list(profile.columns)
    else:
        columns = list(dict.fromkeys((*profile.required_columns, *profile.exclude_columns)))
    return columns, (" " if profile.file_format == "whitespace" else ","), bool(profile.header)


def _cell(value: Any, sep: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nan"
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if type(value) in (int, float):
        return repr(value)
    text = str(value)
    if sep == " " and (not text or any(ch.isspace() for ch in text)):
        raise FailureError(f"value {text!r} cannot be written to a whitespace-separated file")
    if sep == "," and any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def export_failure(readings: Sequence[dict[str, Any]], profile: Any, *, asset_id: str, life: int,
                   failure_time: float, max_gap: float | None = None) -> FailureHistory:
    """One failed life -> its history in the profile's raw layout.

    ``readings``: the life's readings (``archive.life_history``: time-sorted dicts in the contract's
    instance shape, the time field and the numeric fields); ``failure_time``: when it failed, in the
    profile's time unit; ``max_gap``: the most the last reading may lie before the failure (None: one
    sampling step). FailureError naming the asset and life when the life cannot be a history."""
    columns, sep, header = _layout(profile)
    where = f"asset {asset_id!r} life {life}"
    t = profile.time_column
    rows = [r for r in readings if r.get(t) is not None and r[t] <= failure_time]
    need = max(int(getattr(profile, "min_readings", 1) or 1), 2)
    if len(rows) < need:
        raise FailureError(f"{where}: {len(rows)} reading(s) up to the failure at {failure_time:g}; "
                           f"a history needs at least {need}")
    times = [float(r[t]) for r in rows]
    if any(b <= a for a, b in pairwise(times)):
        raise FailureError(f"{where}: reading times must strictly increase")
    step = median(b - a for a, b in pairwise(times))
    gap = failure_time - times[-1]
    allowed = step if max_gap is None else max_gap
    if gap > allowed:
        raise FailureError(f"{where}: the failure at {failure_time:g} is {gap:g} after the last reading "
                           f"({times[-1]:g}; at most {allowed:g} allowed): the history would end early")
    unit = fleet_unit_id(asset_id, life)
    rename_back = {v: k for k, v in (profile.rename or {}).items()}
    present = set().union(*(r.keys() for r in rows))
    missing = tuple(c for c in columns if c not in present and c != profile.id_column)
    for c in missing:
        if c == t or c in profile.setting_columns or c in profile.categorical_columns:
            raise FailureError(f"{where}: no reading carries column {c!r}, which the training data needs")
    lines = []
    if header:
        lines.append(sep.join(_cell(rename_back.get(c, c), sep) for c in columns))
    for r in rows:
        lines.append(sep.join(str(unit) if c == profile.id_column else _cell(r.get(c), sep) for c in columns))
    return FailureHistory(asset_id, life, float(failure_time), times[-1], unit, len(rows), missing,
                          "\n".join(lines) + "\n")


def failed_lives(lines: Iterable[str | bytes]) -> list[tuple[str, int, float]]:
    """(asset, life, failure time) of every failure in archived lines (the first failure of a life counts)."""
    seen: dict[tuple[str, int], float] = {}
    for line in lines:
        item = jsonio.loads(line)
        if item.get("type") == "event" and item.get("event") == "failure":
            seen.setdefault((str(item["asset_id"]), int(item["life"])), float(item["time"]))
    return [(a, life, t) for (a, life), t in sorted(seen.items())]


def export_asset(lines: Iterable[str | bytes], profile: Any, *, max_gap: float | None = None
                 ) -> tuple[list[FailureHistory], list[str]]:
    """Every failed life in one asset's archived lines (its ``readings/asset=<id>/`` objects, any order)
    -> (histories, one error line per failed life that cannot be one)."""
    lines = [ln for ln in lines if ln.strip()]
    out, errors = [], []
    for asset, life, when in failed_lives(lines):
        readings = archive.life_history(lines, life, profile.time_column, until=when)
        try:
            out.append(export_failure(readings, profile, asset_id=asset, life=life, failure_time=when,
                                      max_gap=max_gap))
        except FailureError as exc:
            errors.append(str(exc))
    return out, errors
