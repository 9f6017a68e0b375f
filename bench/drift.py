"""Drift check benchmark: false alarms on no-drift traffic, detection of real and injected drift.

Baseline: preprocess.py's drift baseline of a training fleet (FD001, seed 0). Traffic is replayed
through the request codec exactly as ``predmaint drift`` reads capture records
(``drift.replay_bodies`` -> ``decode_traffic`` -> ``compare``), in windows of ``--engines`` assets:

* no drift: random windows of the FD001 test engines (as NASA truncated them) and of the held-out
  validation engines (cut at a random cycle, the same protocol); the share of windows that alarm
  is the false-alarm rate;
* drift: windows of FD002 test engines (six operating conditions against a one-condition
  baseline), and FD001 test windows with one sensor shifted by k of its standard deviations.

Prints Markdown docs/drift.md quotes, with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training_src import dataio, preprocess  # noqa: E402
from training_src import drift as D  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402


def windows(readings, spec, baseline, rng, n_windows: int, engines: int, cut: bool,
            shift: dict[str, float] | None = None) -> tuple[float, list[int], list[int]]:
    """Share of ``n_windows`` random windows of ``engines`` assets that alarm, the counts of drifted
    columns and of tests run per window."""
    ids = readings[spec.profile_obj.id_column].unique()
    alarms, counts, tests = 0, [], []
    for _ in range(n_windows):
        pick = list(rng.choice(ids, min(engines, len(ids)), replace=False))
        bodies = D.replay_bodies(readings, spec, rng, assets=pick, cut=cut, shift=shift)
        traffic = D.decode_traffic((D.Captured(b, "application/json", None, "bench") for b in bodies), spec)
        result = D.compare(baseline, traffic, spec)
        alarms += result["drift"]
        counts.append(result["metric"])
        tests.append(result["tests"])
    return alarms / n_windows, counts, tests


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PREDMAINT_DATA_DIR", "data")))
    ap.add_argument("--windows", type=int, default=200, help="no-drift windows per source (default 200)")
    ap.add_argument("--engines", type=int, default=40, help="assets per window (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    started = time.time()
    profile = load_profile("cmapss", "FD001")
    frames, spec, _ = preprocess.build_datasets(profile, a.data_dir, seed=a.seed)
    baseline = D.baseline_from_frames(frames, spec)
    s = D.Settings()

    def read(subset: str, role: str):
        p = load_profile("cmapss", subset)
        return preprocess.read_readings(dataio.resolve_file(a.data_dir, p.file(role)), p)

    test1, test2, train1 = read("FD001", "test"), read("FD002", "test"), read("FD001", "train")
    split, _, _, _ = preprocess.fit(profile, a.data_dir, a.seed, spec)
    val1 = train1[train1[profile.id_column].isin(split["validation"])]
    # two random cuts of each held-out engine (as two assets): a window then has enough instances to test
    val2 = pd.concat([val1, val1.assign(**{profile.id_column: val1[profile.id_column] + 100_000})])
    rng = np.random.default_rng(a.seed)
    print(f"# drift benchmark · {time.strftime('%Y-%m-%d')} · {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()} · baseline FD001 train (seed {a.seed}) · PSI >= {s.psi_threshold} "
          f"and Bonferroni p < {s.alpha} · {a.engines} engines per window\n")
    print("| traffic | windows | engines/window | tests/window | alarm rate | drifted columns (median, max) |")
    print("|---|---:|---:|---:|---:|---|")
    rows = [("FD001 test engines (no drift)", test1, a.windows, a.engines, False, None),
            (f"FD001 validation engines, two random cuts each (no drift; {len(split['validation'])} engines)", val2,
             a.windows, a.engines, True, None),
            ("FD001 test, all 100 engines at once (no drift)", test1, 1, 100, False, None),
            ("FD002 test engines (drift: 6 conditions)", test2, 50, a.engines, False, None)]
    sd = float(test1["sensor_11"].std())
    for k in (0.25, 0.5, 1.0, 2.0):
        rows.append((f"FD001 test, sensor_11 + {k:g} sd (drift)", test1, 50, a.engines, False,
                     {"sensor_11": k * sd}))
    for label, frame, n, engines, cut, shift in rows:
        rate, counts, tests = windows(frame, spec, baseline, rng, n, engines, cut, shift)
        print(f"| {label} | {n} | {min(engines, frame[profile.id_column].nunique())} | {int(np.median(tests))} | "
              f"{rate:.1%} | "
              f"{int(np.median(counts))}, {max(counts)} |")
    print(f"\n({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
