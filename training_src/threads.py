"""Independent jobs in threads, one per core: for work that releases the GIL (XGBoost's training,
large NumPy operations, pyarrow's parquet writing), so a 2-core instance runs two at once."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Mapping
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


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (what ``MALLOC_ARENA_MAX`` sets at start-up); True if set.

    glibc gives a thread that finds the arenas busy a new one, up to 8 per core, and keeps the memory each
    has held: a process that runs NumPy and pandas work in several threads at once keeps hundreds of MB more
    than it uses (FD002 x4 preprocessing: 885-997 MB peak against 791 MB with two arenas, docs/scale.md).
    Elsewhere than glibc (macOS, musl) nothing is done."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
#: allocations from this size up (NumPy arrays of a few hundred thousand values and more) get a mapping of
#: their own, unmapped when freed
MMAP_THRESHOLD = 4 << 20
#: free memory at the top of the heap kept for the next allocations rather than given back at once: fixing
#: the mmap threshold also fixes this one at glibc's 128 KB, and the heap's smaller allocations would then
#: be given back and faulted in again over and over (FD002 x1: 0.8 of 2.5 system CPU s)
TRIM_THRESHOLD = 64 << 20


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD, trim: int = TRIM_THRESHOLD) -> bool:
    """Give every allocation of ``threshold`` bytes or more its own mapping, returned to the system when it
    is freed (what ``MALLOC_MMAP_THRESHOLD_`` sets at start-up); True if set.

    glibc starts at 128 KB but raises the threshold to the size of each mapped block that is freed (up to
    32 MB): after the first large array is freed, arrays of up to 32 MB come from the heap, and the heap
    keeps what they leave behind, in pieces that later arrays do not fit. FD002 x4 preprocessing: 905 MB
    peak (the heap held 130-330 MB of it free), against 709 MB with the threshold fixed at 4 MB and
    nothing else changed (docs/scale.md). The values computed are the same; the cost is the page faults of fresh mappings.
    ``trim``: the heap's top is given back above this many free bytes (``TRIM_THRESHOLD``).
    Elsewhere than glibc nothing is done."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim)))


def trim_malloc() -> bool:
    """Give the free pages of glibc's heaps back to the system (``malloc_trim(0)``); True if any were.

    For the moments between stages of a process: what one stage freed in pieces smaller than the mmap
    threshold (``fix_mmap_threshold``) stays resident until then. The values computed are the same.
    Elsewhere than glibc nothing is done (False)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(malloc_trim(0))


#: the variables a job's script starts with where its environment does not set them, because the libraries
#: they configure read them once, when they load, before a script's first line could set them:
#: libarrow's default memory pool, which the parquet reader's buffers come from. Its default, mimalloc,
#: keeps the pages the reads freed resident (FD002 x4 refit: 30-38 MB through the fit after the reads);
#: the system allocator returns them. Memory only: nothing read or computed changes.
#: Set where each job's process is started: ``processing.environment`` (SageMaker processing jobs),
#: SageMaker training's entry module (``arrow_system_pool_at_load``), the local runner's scripts, script
#: server and trials (``predmaint/runner.py``, ``predmaint/tuning.py``).
JOB_ENVIRONMENT = (("ARROW_DEFAULT_MEMORY_POOL", "system"),)


def job_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (a process environment) with ``JOB_ENVIRONMENT``'s variables where it does not set them: the
    environment a job's script is started with. ``base`` is not changed."""
    env = dict(base)
    for name, value in JOB_ENVIRONMENT:
        env.setdefault(name, value)
    return env


def arrow_system_pool_at_load() -> None:
    """Put ``JOB_ENVIRONMENT`` into this process's environment (where it does not set them), for an entry
    point whose interpreter someone else started (SageMaker training's ``python -m train``, the entry module
    at the top of ``sourcedir.tar.gz``): call it before anything imports pandas, which loads pyarrow."""
    os.environ.update(job_environment(os.environ))


def arrow_system_pool() -> bool:
    """Make pyarrow allocate from the system allocator (glibc's malloc, with the limits set above) rather
    than its default pool (mimalloc or jemalloc), which keeps the pages of the buffers it freed; True if set.

    Preprocessing writes its parquet files two at a time beside the drift baseline: with the default pool the
    encoded columns' pages stay resident after each file (FD002 x1, under load: the writing's peak 402-409 MB,
    364 MB with the system allocator). The bytes written are the same. Elsewhere than glibc the system
    allocator is the platform's malloc. This sets the pool of pyarrow's Python layer; libarrow's own default
    (the parquet reader's buffers) is chosen once, when pyarrow loads: ``JOB_ENVIRONMENT``."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name == "system"
