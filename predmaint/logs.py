"""Structured logging for local mode: one event per line, key=value (default) or JSON.

Environment:
  PREDMAINT_LOG_LEVEL   DEBUG, INFO (default), WARNING, ERROR
  PREDMAINT_LOG_FORMAT  ``kv`` (default, easy to read and grep) or ``json`` (one JSON object a line)

Log with ``log.info("model loaded", extra={"fields": {"version": 3}})`` or use ``event(log, ...)``; the
fields come out as ``version=3`` (or JSON keys), so lines stay machine-parsable.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

# color_message: uvicorn's ANSI-colored duplicate of msg; taskName: asyncio noise (3.12+)
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "fields",
                                                                             "color_message", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    # Also pick up plain ``extra={...}`` keys so callers need not know about ``fields``.
    for k, v in record.__dict__.items():
        if k not in _RESERVED and not k.startswith("_"):
            out.setdefault(k, v)
    return out


def _kv(value: Any) -> str:
    s = str(value)
    if s == "" or any(c in s for c in ' ="\n\t'):
        return json.dumps(s)
    return s


def _record(record: logging.LogRecord) -> dict[str, Any]:
    """The keys both formatters write: ts, level, logger, pid, msg, then the record's extra fields."""
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "pid": record.process,
        "msg": record.getMessage(),
        **_fields(record),
    }


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=predmaint.server pid=12 msg="model loaded" version=3``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = _record(record)
        line = " ".join(f"{k}={_kv(v)}" for k, v in parts.items())
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same keys as ``KeyValueFormatter``."""

    def format(self, record: logging.LogRecord) -> str:
        doc = _record(record)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def level_from_env(default: str = "INFO") -> int:
    """The level named by PREDMAINT_LOG_LEVEL (unknown names fall back to ``default``)."""
    name = os.environ.get("PREDMAINT_LOG_LEVEL", default).upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.getLevelName(default)


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter PREDMAINT_LOG_FORMAT asks for (``kv`` or ``json``)."""
    fmt = (fmt or os.environ.get("PREDMAINT_LOG_FORMAT", "kv")).lower()
    return JsonFormatter() if fmt == "json" else KeyValueFormatter()


def setup(level: int | str | None = None, fmt: str | None = None, stream: Any = None) -> logging.Logger:
    """Configure the ``predmaint`` logger tree once (idempotent) and return it.

    Logs go to stderr so that stdout stays clean for command results (``run`` prints the report path
    as its last stdout line).
    """
    logger = logging.getLogger("predmaint")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger.setLevel(level if isinstance(level, int) else level_from_env())
    for h in list(logger.handlers):
        if getattr(h, "_predmaint", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    handler._predmaint = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    logger.log(level, msg, extra={"fields": fields})
