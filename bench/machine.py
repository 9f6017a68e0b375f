"""What the machine was doing while a benchmark ran, printed beside every figure.

The CPU here may be shared: besides the load average, this machine has been seen to alternate
between a fast and a ~1.8x slower phase for minutes at a time with nothing else running (a pure
Python loop shows the same two speeds as the code under test). ``probe_ms`` times a fixed workload
so a reader can tell which phase a figure was measured in.
"""

from __future__ import annotations

import os
import statistics
import time

PROBE_N = 200_000  # sum(range(PROBE_N)) takes ~4 ms on this machine's fast phase, ~7.8 ms on its slow one


def probe_ms(reps: int = 5) -> float:
    """Median milliseconds of ``sum(range(PROBE_N))`` over ``reps`` runs: a fixed single-core workload."""
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        sum(range(PROBE_N))
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def load() -> str:
    """The 1/5/15-minute load averages and the CPU probe as text, e.g. ``load 1.02 0.83 0.41 · probe 4.0 ms``."""
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f} · probe {probe_ms():.1f} ms"
