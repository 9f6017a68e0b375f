"""Helpers for the bring-your-own-fleet tests: a small synthetic run-to-failure fleet that is neither
C-MAPSS nor AI4I, and the `predmaint` CLI run as a user runs it.

Pumps (ids 101..), one reading every 2 operating hours until failure, in a CSV with a header whose
names C-MAPSS never uses (some with spaces and units, as exported by a historian), a categorical
column (the pump model, constant per pump; model B lasts longer) and two operating regimes (the
load and the ambient temperature switch between two set points, as FD002's settings cluster
around six). Sensors drift with a hidden health index ``h = (t / life) ** 2`` on top of a
regime-dependent level, so a model has to normalise per regime to see the wear.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

HEADER = ["Pump ID", "Op Hours", "Load [%]", "Ambient [C]", "Pump Model",
          "Vibration [mm/s]", "Bearing Temp [C]", "Flow [l/min]", "Discharge Pressure [bar]", "Motor Current [A]"]
REGIMES = ((40.0, 15.0), (85.0, 30.0))  # (load %, ambient C) set points


def fleet_rows(pumps: int = 48, seed: int = 7) -> list[list[str]]:
    """Rows of the fleet (without the header), pumps contiguous, hours increasing."""
    rng = np.random.default_rng(seed)
    rows: list[list[str]] = []
    for k in range(pumps):
        pump = 101 + k
        model = "B" if k % 3 == 2 else "A"
        life = int(rng.integers(110, 180) if model == "B" else rng.integers(60, 120))
        for step in range(1, life + 1):
            hours = 2 * step
            load, ambient = REGIMES[int(rng.random() < 0.5)]
            load += rng.normal(0, 0.05)
            ambient += rng.normal(0, 0.02)
            h = (step / life) ** 2
            # the regime moves every sensor more than a whole life of wear does, and one reading is
            # noisy: a model needs per-regime normalisation and trailing windows to see the wear
            vib = 1.0 + 0.05 * load + 1.2 * h + rng.normal(0, 0.25)
            temp = 30 + 0.3 * load + 0.6 * ambient + 6 * h + rng.normal(0, 1.5)
            flow = 2.4 * load * (1 - 0.06 * h) + rng.normal(0, 2.0)
            pressure = 0.08 * load * (1 - 0.05 * h) + rng.normal(0, 0.08)
            current = 8 + 0.12 * load + 1.2 * h + rng.normal(0, 0.4)
            rows.append([str(pump), str(hours), f"{load:.3f}", f"{ambient:.3f}", model, f"{vib:.4f}",
                         f"{temp:.3f}", f"{flow:.3f}", f"{pressure:.4f}", f"{current:.4f}"])
    return rows


def write_fleet(path: Path, pumps: int = 48, seed: int = 7) -> Path:
    """Write the fleet CSV at ``path`` (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(fleet_rows(pumps, seed))
    return path


def fleet_cdk_json(home: Path) -> Path:
    """The pump fleet's deployment config: cdk.json with promotion gates in the fleet's units (its RUL
    is in hours, so C-MAPSS's 30-cycle RMSE gate means nothing here), as its user would set them."""
    doc = json.loads((REPO / "cdk.json").read_text())
    doc["context"]["predmaint"]["promotion"]["rul_regression"] = {
        "max_rmse": 200.0, "max_nasa_score": None, "min_improvement_over_baseline_pct": None}
    # not beside ``home``: a relative home resolves against this process's directory (the repository)
    path = Path(tempfile.mkdtemp(prefix="pumps-cdk-")) / "cdk.json"
    path.write_text(json.dumps(doc))
    return path


def predmaint(*args: str, home: Path, data_dir: Path, cwd: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m predmaint ARGS`` in a fresh process, as a user runs it (home and data from the env)."""
    env = {**os.environ, "PREDMAINT_DATA_DIR": str(data_dir), "PREDMAINT_HOME": str(home),
           "PREDMAINT_CDK_JSON": str(fleet_cdk_json(home))}
    env.pop("PREDMAINT_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", "predmaint", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)
