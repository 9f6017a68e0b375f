"""Independent jobs in threads, one per core: for work that releases the GIL (XGBoost's training,
large NumPy operations, pyarrow's parquet writing), so a 2-core instance runs two at once."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def workers() -> int:
    """Threads to use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel(fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
    """``[fn(*job) for job in jobs]`` (results in the jobs' order), run in ``workers()`` threads.

    Each job must be independent of the others (no shared state it writes); then the results are
    those of the sequential loop, and an exception in a job is raised here, as the loop would."""
    n = min(workers(), len(jobs))
    if n <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda job: fn(*job), jobs))
