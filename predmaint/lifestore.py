"""``predmaint invoke --life-file``: each asset's life summary kept in one JSON file, safe with several
writers at once.

The file maps asset id -> the ``life`` of the asset's last answer. ``read`` takes the stored summaries
before the request; ``update`` merges the answer's summaries into the file under an exclusive lock
(``fcntl.flock`` on ``<file>.lock``), re-reading it there, so concurrent ``invoke`` processes each add
their assets and lose none (two writers of the same asset: the last answer wins, as it would in any
order). The new file is written to a unique temporary name beside it and renamed over it, so a reader
never sees half a file and a failure leaves the old one. A stored summary the model says another model
made is dropped (it would be refused forever) and reported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError

#: the endpoint's warning for a summary another model made (training_src/predmaint_serving/codec.py)
OTHER_MODEL = "made by another model"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """JSON without NaN/Infinity (Python's json reads them; the endpoint refuses them)."""
    return json.loads(text, parse_constant=_reject_constant)


def read(path: Path) -> dict[str, Any]:
    """The stored summaries: asset id -> life summary; an absent file is an empty store. ``UsageError``
    naming the file if it is not such an object."""
    if not path.exists():
        return {}
    try:
        doc = loads_strict(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not a readable JSON life-summary file ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise UsageError(f"{path}: must be a JSON object of asset id -> life summary (as `invoke --life-file` writes)")
    return doc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the lock file stays (removing it would race)


def write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` through a uniquely named temporary file beside it and ``os.replace``: a
    failure (read-only folder, full disk, a parent that is a file) leaves the old file (or none) and no
    temporary file, and is a one-line ``UsageError`` naming the path."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def update(path: Path, sent: dict[str, Any], predictions: list[Any]) -> tuple[int, list[str]]:
    """Merge an answer into the file: each prediction's returned ``life`` is stored; an asset whose stored
    summary (``sent``, asset id -> summary sent) the model refused as another model's is dropped.
    Returns (summaries stored, asset ids dropped)."""
    returned = {str(p.asset_id): p.life for p in predictions if getattr(p, "life", None) is not None}
    dropped = [str(p.asset_id) for p in predictions
               if getattr(p, "life", None) is None and sent.get(str(p.asset_id))
               and OTHER_MODEL in (getattr(p, "warning", None) or "")]
    with _locked(path):
        store = read(path)  # again, under the lock: other writers' assets since our read are kept
        for asset in dropped:
            store.pop(asset, None)
        store.update(returned)
        write_atomically(path, json.dumps(store, indent=1, sort_keys=True))
    return len(returned), dropped
