"""The stream record format (docs/streaming.md) and its validation.

A record is one JSON object:

- readings: ``{"asset_id": "engine-7", "readings": [{"cycle": 31, "setting_1": ..., ...}, ...]}``:
  one asset's new readings in the endpoint contract's instance shape (any order; the time field
  and the model's numeric fields in each);
- an event: ``{"asset_id": "engine-7", "event": "maintenance", "time": 212}``: the asset's life
  ended (a repaired asset starts a new life with its next reading). ``"failure"`` is taken the
  same way and archived as a failure (a label for later training).

Each record carries its position in the stream (``seq``: the Kinesis sequence number, the line
of a local replay), which is how a replayed record is recognised. Errors name the record
(``record 12 (asset engine-7): readings[3].sensor_2: must be a finite number``).
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from itertools import chain
from typing import Any

#: events a record may carry; each ends the asset's current life
EVENTS = ("maintenance", "failure")


class RecordError(ValueError):
    """A record that is not the stream's format; ``str()`` names the record and the field."""

    def __init__(self, where: str, message: str, asset_id: str | None = None):
        super().__init__(f"{where}: {message}")
        self.where = where
        self.asset_id = asset_id


@dataclass(frozen=True)
class Record:
    """A validated record: ``readings`` (time-sorted, no duplicate times) or an ``event`` at ``time``."""

    asset_id: str
    seq: int | None
    where: str  # how errors name it ("record 12", "kinesis record 4959...")
    readings: tuple[dict[str, Any], ...] = ()
    event: str | None = None
    time: float | None = None


def _number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def asset_key(value: Any) -> str:
    """An asset id as the state's key: a non-empty string (an integer is taken as its decimal form)."""
    if type(value) is int:
        return str(value)
    if isinstance(value, str) and value and len(value) <= 512:
        return value
    raise ValueError("asset_id: must be a non-empty string (at most 512 characters) or an integer")


def parse_record(doc: Any, where: str, time_column: str, required: tuple[str, ...] = (),
                 seq: int | None = None, max_readings: int | None = None) -> Record:
    """A record from its decoded JSON (``doc``) or raw bytes/str; RecordError naming ``where`` and the field.

    ``required`` are the numeric fields every reading must carry (the served model's; the time column
    is always required); readings are returned sorted by time; a time sent twice is an error.
    """
    if isinstance(doc, bytes | str):
        try:
            doc = json.loads(doc)
        except (ValueError, RecursionError) as exc:
            raise RecordError(where, f"not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(doc, dict):
        raise RecordError(where, "must be a JSON object with asset_id and readings (or event and time)")
    try:
        asset = asset_key(doc.get("asset_id"))
    except ValueError as exc:
        raise RecordError(where, str(exc)) from None
    if "event" in doc:
        extra = sorted(set(doc) - {"asset_id", "event", "time"})
        if extra:
            raise RecordError(where, f"{extra[0]}: unknown key in an event record", asset)
        if doc["event"] not in EVENTS:
            raise RecordError(where, f"event: unknown event {doc['event']!r}; known: {', '.join(EVENTS)}", asset)
        if not _number(doc.get("time")):
            raise RecordError(where, "time: must be a finite number", asset)
        return Record(asset, seq, where, event=doc["event"], time=float(doc["time"]))
    readings = doc.get("readings")
    if not isinstance(readings, list) or not readings:
        raise RecordError(where, "readings: must be a non-empty list of readings (or the record an event)", asset)
    if max_readings is not None and len(readings) > max_readings:
        raise RecordError(where, f"readings: {len(readings)} readings in one record; at most {max_readings}", asset)
    fields = (time_column, *[c for c in required if c != time_column])
    get = _getter(fields)
    try:  # the hot path of every record: C-level passes over the whole record (the readings are
        # objects, their fields, the fields' types, then one finite sum of every value)
        ok = _DICT.issuperset(map(type, readings))
        if ok:
            values = list(chain.from_iterable(map(get, readings)))
            ok = _TYPES.issuperset(map(type, values)) and math.isfinite(sum(values))
    except (KeyError, OverflowError):
        ok = False
    if not ok:  # something is wrong (or a sum overflowed): find and name it
        _check_readings(readings, fields, where, asset)
    times = [r[time_column] for r in readings]
    if len(set(times)) != len(times):
        seen: set[float] = set()
        for i, t in enumerate(times):
            if t in seen:
                raise RecordError(where, f"readings[{i}].{time_column}: time {t} sent twice in one record", asset)
            seen.add(t)
    ordered = tuple(readings) if times == sorted(times) else tuple(sorted(readings, key=lambda r: r[time_column]))
    return Record(asset, seq, where, readings=ordered)


_TYPES = frozenset((int, float))
_DICT = frozenset((dict,))
_GETTERS: dict[tuple[str, ...], Any] = {}


def _getter(fields: tuple[str, ...]) -> Any:
    """``reading -> tuple of its fields`` (KeyError when one is missing), made once per field list."""
    get = _GETTERS.get(fields)
    if get is None:
        one = operator.itemgetter(*fields)
        get = _GETTERS[fields] = one if len(fields) > 1 else (lambda r: (one(r),))
    return get


def _check_readings(readings: list[Any], fields: tuple[str, ...], where: str, asset: str) -> None:
    """The first reading that is not an object or lacks a finite number in one of ``fields``, named."""
    for i, r in enumerate(readings):
        if not isinstance(r, dict):
            raise RecordError(where, f"readings[{i}]: must be an object", asset)
        for c in fields:
            if not _number(r.get(c)):
                raise RecordError(where, f"readings[{i}].{c}: must be a finite number", asset)
