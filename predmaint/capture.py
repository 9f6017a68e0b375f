"""Data capture of the local server, in SageMaker's format and layout.

A SageMaker endpoint with data capture writes JSON Lines records (``training_src/drift.py``
``capture_record``) under ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``; the local
server writes the same records under ``<home>/data-capture/<endpoint>/<variant>/yyyy/mm/dd/hh/``,
one file per worker process and hour (appends of whole lines, so workers never interleave), for
the sampled share of requests that cdk.json's ``predmaint.endpoint.data_capture_percent`` sets
(the deployed endpoint's ``InitialSamplingPercentage``; read with ``predmaint.deployment.load``).
``predmaint drift`` reads them.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_src.drift import capture_record

LOCAL_ENDPOINT, VARIANT = "local", "AllTraffic"


def capture_root(home: Path, endpoint: str = LOCAL_ENDPOINT) -> Path:
    """Where the local server's capture records of ``endpoint`` go."""
    return Path(home) / "data-capture" / endpoint


class CaptureWriter:
    """Samples requests and appends their capture records; safe to share across forked workers."""

    def __init__(self, root: Path, percent: int, variant: str = VARIANT, seed: int | None = None):
        self.root = Path(root) / variant
        self.percent = percent
        self._rng = random.Random(seed)
        self._started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")

    def sampled(self) -> bool:
        return self.percent >= 100 or (self.percent > 0 and self._rng.random() * 100 < self.percent)

    def path_for(self, when: datetime) -> Path:
        """This process's file for the hour of ``when``."""
        return self.root / when.strftime("%Y/%m/%d/%H") / f"{self._started}-{os.getpid()}.jsonl"

    def record(self, body: bytes, content_type: str | None, answer: bytes, answer_type: Any) -> None:
        """Append the capture record of one request, if sampled. Never raises (a full disk must not
        fail the prediction): a failure is dropped, as a sampled-out request would be."""
        if not self.sampled():
            return
        try:
            when = datetime.now(UTC)
            ctype = answer_type.decode("latin-1") if isinstance(answer_type, bytes) else str(answer_type)
            rec = capture_record(body, content_type or "", answer, ctype, str(uuid.uuid4()), when)
            line = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
            path = self.path_for(when)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)  # one write of a whole line: O_APPEND keeps lines whole
            finally:
                os.close(fd)
        except OSError:
            pass
