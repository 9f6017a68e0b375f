"""Local mode of "failures become training data" (docs/decisions.md): export and take in fleet histories.

``export_failures`` (run by ``predmaint quality``) turns every failed life in the stream archive under
the home into a run-to-failure history in the profile's raw layout (``training_src.stream.failures``,
the function the AWS quality job calls) and writes it to ``<home>/fleet-data/<key>``, where ``<key>``
is the object key the job uses under the data bucket's ``raw/`` (``cmapss/train_FD001/fleet-81-0.txt``).

``overlay`` (``predmaint run --fleet-data``) builds the data directory a run reads when it takes the
fleet's histories too: the profile's dataset folder with its train file turned into a folder of parts,
the shipped file as ``part-00000`` beside the fleet's histories (links, nothing copied). The prepare
Lambda's ``resolve_objects`` and preprocess read such a folder as one role of several objects, so the
run's manifest and lineage list every part with its SHA-256.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_src.stream import failures

from .errors import UsageError


def fleet_data_dir(home: Path) -> Path:
    return Path(home) / "fleet-data"


@dataclass(frozen=True)
class Exported:
    """One history written (or already there, unchanged) under the home."""

    path: Path
    key: str
    history: failures.FailureHistory
    changed: bool


def export_failures(home: Path, profile: Any) -> tuple[list[Exported], list[str]]:
    """Every failed life of the local stream archive -> ``<home>/fleet-data/<key>`` (written atomically, and
    only when its content changed); returns (what was exported, one line per failed life left out)."""
    from .streaming import stream_dir

    root = stream_dir(home) / "archive" / "readings"
    out: list[Exported] = []
    errors: list[str] = []
    if not root.is_dir():
        return out, errors
    base = fleet_data_dir(home)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("asset=")):
        lines: list[str] = []
        for part in sorted(folder.glob("day=*/part.jsonl")):
            lines += part.read_text().splitlines()
        histories, errs = failures.export_asset(lines, profile)
        errors += errs
        for h in histories:
            key = failures.object_key(h.asset_id, h.life, profile)
            path = base / key
            changed = not path.is_file() or path.read_text() != h.text
            if changed:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                with os.fdopen(fd, "w") as f:
                    f.write(h.text)
                os.replace(tmp, path)
            out.append(Exported(path, key, h, changed))
    return out, errors


def fleet_files(home: Path, profile: Any) -> list[Path]:
    """The exported histories for ``profile``'s train file under the home (sorted)."""
    probe = failures.object_key("x", 0, profile)
    folder = fleet_data_dir(home) / probe.rsplit("/", 1)[0]
    return sorted(p for p in folder.glob(f"{failures.PREFIX}*") if p.is_file()) if folder.is_dir() else []


def overlay(data_dir: Path, home: Path, profile: Any) -> tuple[Path, list[dict[str, Any]]]:
    """A temporary data directory: ``data_dir``'s dataset folder with the profile's train file as a folder of
    parts (the shipped file as ``part-00000``, then the fleet's histories). Returns (its path, the fleet
    files: ``path`` (under the home), ``key``, ``sha256``, ``units``, ``rows``). The caller removes it.
    UsageError when there is no history to add or the shipped train file is itself a folder of parts."""
    from training_src import dataio

    from .data import file_sha256

    files = fleet_files(home, profile)
    train = profile.file("train")
    if train is None or not files:
        raise UsageError(f"--fleet-data: no fleet histories for profile {profile.name} {profile.subset or ''} under "
                         f"{fleet_data_dir(home)} (run `predmaint quality` after failures are recorded)")
    try:
        shipped = dataio.resolve_file(data_dir, train)
    except dataio.DataError as exc:
        raise UsageError(f"--fleet-data: {exc} (the shipped train file is needed beside the fleet's)") from None
    dataset = train.split("/", 1)[0]
    tmp = Path(tempfile.mkdtemp(prefix="predmaint-fleet-data-"))
    try:
        src = Path(data_dir) / dataset
        dst = tmp / dataset
        dst.mkdir()
        for p in src.iterdir():
            if p.is_file() and p != shipped:
                os.symlink(p.absolute(), dst / p.name)
        folder = tmp / dataio.parts_folder(train)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = shipped.name[len(Path(dataio.parts_folder(train)).name):]  # ".txt" or ".txt.gz"
        os.symlink(shipped.absolute(), folder / f"part-00000{suffix}")
        added = []
        for f in files:
            os.symlink(f.absolute(), folder / f.name)
            lines = [ln for ln in f.read_text().splitlines() if ln.strip()][1 if profile.header else 0:]
            added.append({"path": str(f), "key": f"{dataio.parts_folder(train)}/{f.name}",
                          "sha256": file_sha256(f), "units": 1, "rows": len(lines)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, added
