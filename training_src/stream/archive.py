"""What the stream archives and where: every reading taken in, every event and every answer.

Items (``core.BatchResult.archive``) are JSON objects with a ``type`` (``reading``, ``event``,
``answer``), the ``asset_id``, the ``life`` they belong to (``AssetState.life_no``) and the ``day``
(UTC, YYYY-MM-DD) they were taken in. They are stored as JSON Lines under two partitionings, so one
asset's history and one day's answers can each be read back without a scan of everything:

- ``readings/asset=<id>/day=<day>/...``: readings and events of one asset (the rebuild's input);
- ``answers/day=<day>/asset=<id>/...``: answers.

On AWS two more partitions feed the scheduled quality job (``quality_job.py``) without a scan of every
reading: ``outcomes/day=<day>/...`` (the ``event`` items: failures, maintenance) and
``risk/day=<day>/...`` (the risk events delivered to the bus), both made by ``side_partitions``.

Asset ids are percent-encoded in keys. An item may be archived twice (a batch retried after its
archive was written); readers keep the first reading of each (life, time).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from . import jsonio


def prefix(item: dict[str, Any]) -> str:
    """The partition an item belongs to (no leading or trailing slash)."""
    asset = quote(str(item["asset_id"]), safe="")
    if item["type"] == "answer":
        return f"answers/day={item['day']}/asset={asset}"
    return f"readings/asset={asset}/day={item['day']}"


def asset_prefix(asset_id: str) -> str:
    """Where one asset's readings and events are (every day)."""
    return f"readings/asset={quote(asset_id, safe='')}/"


def group(items: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Items by partition, each as a JSON line (the ``day`` is in the key, not repeated in the line)."""
    out: dict[str, list[str]] = {}
    keys: dict[tuple[bool, Any, Any], list[str]] = {}  # (answer?, asset, day) -> its list: prefix() once each
    dumps = jsonio.dumps
    for item in items:
        key = (item["type"] == "answer", item["asset_id"], item["day"])
        lines = keys.get(key)
        if lines is None:
            lines = keys[key] = out.setdefault(prefix(item), [])
        line = item.copy()  # a C-level copy (keys in the same order) rather than a comprehension
        del line["day"]
        lines.append(dumps(line).decode())
    return out


def life_history(lines: Iterable[str], life: int, time_column: str, until: float | None = None
                 ) -> list[dict[str, Any]]:
    """The readings of one asset's life ``life`` (up to ``until``), time-sorted, each time once."""
    seen: dict[float, dict[str, Any]] = {}
    for line in lines:
        item = jsonio.loads(line)
        if item.get("type") != "reading" or item.get("life") != life:
            continue
        t = item["time"]
        if (until is None or t <= until) and t not in seen:
            seen[t] = item["reading"]
    return [seen[t] for t in sorted(seen)]


def side_partitions(items: Iterable[dict[str, Any]], risk_events: Iterable[dict[str, Any]], day: str
                    ) -> dict[str, list[str]]:
    """The quality job's partitions of one batch: ``outcomes/day=<day>`` (the ``event`` items) and
    ``risk/day=<day>`` (the risk events), as JSON lines; empty ones are left out."""
    outcomes = [jsonio.dumps({k: v for k, v in i.items() if k != "day"}).decode() for i in items
                if i["type"] == "event"]
    risk = [jsonio.dumps(e).decode() for e in risk_events]
    return {k: v for k, v in ((f"outcomes/day={day}", outcomes), (f"risk/day={day}", risk)) if v}
