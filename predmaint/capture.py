"""Data capture of the local server, in SageMaker's format and layout.

A SageMaker endpoint with data capture writes JSON Lines records (``training_src/drift.py``
``capture_record``) under ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``; the local
server writes the same records under ``<home>/data-capture/<endpoint>/<variant>/yyyy/mm/dd/hh/``,
one file per worker process and hour (appends of whole lines, so workers never interleave).
``predmaint drift`` reads them.

Locally, capture must suit a laptop, unlike the deployed endpoint (cdk.json's
``predmaint.endpoint.data_capture_percent``, 100 %, into S3): capturing every request under load wrote
5.6 GB in three minutes and halved throughput. So ``predmaint serve`` samples ``LOCAL_PERCENT`` (10 %)
unless told (``--capture-percent``), keeps the capture folder under ``max_bytes`` (``LOCAL_MAX_MB``,
256 MB; ``--capture-max-mb``) by rotating to a new file every ``max_bytes / 16`` and deleting the
oldest files beyond the bound, and writes off the request path: ``record`` only queues the request
(at most ``QUEUE_BYTES`` of bodies; beyond, it is dropped, as a sampled-out request would be), and a thread of the worker builds
and appends the records.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_src.drift import capture_record

LOCAL_ENDPOINT, VARIANT = "local", "AllTraffic"
#: the local server's defaults: a share of the requests and a bound on the folder that suit a laptop
LOCAL_PERCENT, LOCAL_MAX_MB = 10, 256
#: bodies waiting for the writer thread, per worker: a bound in bytes, so a burst of large requests
#: cannot grow the worker's memory (measured: a count bound of 1024 let it grow by 85 MiB)
QUEUE_BYTES = 8 * 2**20


def capture_root(home: Path, endpoint: str = LOCAL_ENDPOINT) -> Path:
    """Where the local server's capture records of ``endpoint`` go."""
    return Path(home) / "data-capture" / endpoint


class CaptureWriter:
    """Samples requests and appends their capture records off the request path; the folder stays under
    ``max_bytes``. Safe to share across forked workers (each starts its own writer thread)."""

    def __init__(self, root: Path, percent: int, variant: str = VARIANT, seed: int | None = None,
                 max_bytes: int = LOCAL_MAX_MB * 2**20):
        self.root = Path(root) / variant
        self.percent = percent
        self.max_bytes = max_bytes
        self.file_bytes = max(1, max_bytes // 16)  # rotate to a new file at this size
        self._rng = random.Random(seed)
        self._started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
        self._pid: int | None = None
        self._queue: queue.Queue[tuple[bytes, str, bytes, str, datetime] | None] = queue.Queue()
        self._queued = 0  # bytes of bodies and answers in the queue
        self._lock = threading.Lock()
        self._part, self._written = 0, 0

    def sampled(self) -> bool:
        return self.percent >= 100 or (self.percent > 0 and self._rng.random() * 100 < self.percent)

    def path_for(self, when: datetime) -> Path:
        """This process's current file for the hour of ``when``."""
        part = f"-{self._part}" if self._part else ""
        return self.root / when.strftime("%Y/%m/%d/%H") / f"{self._started}-{os.getpid()}{part}.jsonl"

    def record(self, body: bytes, content_type: str | None, answer: bytes, answer_type: Any) -> None:
        """Queue the capture record of one request, if sampled. Never raises and never waits: a full
        queue drops the record, as a sampled-out request would be."""
        if not self.sampled():
            return
        if self._pid != os.getpid():  # first record in this (forked) worker: start its writer
            self._pid = os.getpid()
            self._queue, self._queued, self._lock = queue.Queue(), 0, threading.Lock()
            threading.Thread(target=self._write_loop, args=(self._queue,), name="capture", daemon=True).start()
        size = len(body) + len(answer)
        with self._lock:
            if self._queued + size > QUEUE_BYTES:
                return  # the writer is behind: drop this one rather than hold more memory
            self._queued += size
        ctype = answer_type.decode("latin-1") if isinstance(answer_type, bytes) else str(answer_type)
        self._queue.put_nowait((body, content_type or "", answer, ctype, datetime.now(UTC)))

    def flush(self) -> None:
        """Wait until every queued record is written (tests, shutdown)."""
        if self._pid == os.getpid():
            self._queue.join()

    def _write_loop(self, q: queue.Queue) -> None:
        while True:
            item = q.get()
            try:
                if item is not None:
                    self._write(*item)
            finally:
                if item is not None:
                    with self._lock:
                        self._queued -= len(item[0]) + len(item[2])
                q.task_done()

    def _write(self, body: bytes, content_type: str, answer: bytes, answer_type: str, when: datetime) -> None:
        """Append one record; a failure (full disk) is dropped: capture must not fail the server."""
        try:
            rec = capture_record(body, content_type, answer, answer_type, str(uuid.uuid4()), when)
            line = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
            if self._written and self._written + len(line) > self.file_bytes:
                self._part += 1
                self._written = 0
                self._prune()
            path = self.path_for(when)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)  # one write of a whole line: O_APPEND keeps lines whole
            finally:
                os.close(fd)
            self._written += len(line)
        except (OSError, ValueError):
            pass

    def _prune(self) -> None:
        """Delete the oldest capture files (all workers') until the folder is under ``max_bytes`` less one
        file's room; empty hour folders go too."""
        files = []
        for p in self.root.rglob("*.jsonl"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total + self.file_bytes <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                continue
            parent = p.parent
            while parent != self.root:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
