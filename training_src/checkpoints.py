"""XGBoost checkpoints for train.py: write every N rounds, resume from the newest after a restart.

Managed spot training (the state machine's ``CheckpointConfig``) syncs ``/opt/ml/checkpoints`` to
S3 while the job runs and copies it back to every host when an interrupted job restarts. train.py
writes a checkpoint there every ``every`` boosting rounds and, on start, continues from the newest
one that belongs to the same fit, so a restarted job finishes the remaining rounds instead of
starting over.

- **Same fit only.** Every file name carries a fingerprint of the XGBoost parameters, the number of
  rounds and the training data (every host's rows and labels), so a checkpoint prefix shared by
  several jobs (the tuning job's trials, the refit) never resumes one fit from another's file.
- **Atomic.** A checkpoint is written to a temporary name and renamed, so a kill mid-write leaves
  the previous checkpoint intact; only the newest ``KEEP`` files per fit are kept.
- **Several hosts.** Only the first host writes (all hosts grow the same trees); on a restart every
  host looks for the newest checkpoint, and they resume only if all of them found the same file
  (SageMaker copies the prefix to every host), else all start over.
- **Exactness.** Continuing from round k gives the same booster, byte for byte, as an uninterrupted
  run when no rows or columns are sampled (``subsample`` = ``colsample_bytree`` = 1, the defaults);
  with sampling XGBoost restarts its sampler on every ``train`` call, so the resumed model is a valid
  model of the same size but not the identical one (tests/ml/test_checkpoints.py checks both).

XGBoost's own ``TrainingCheckPoint`` callback writes in place (a kill mid-write leaves a corrupt
file), names files by round only and keeps every file; hence this small module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DIR = "/opt/ml/checkpoints"
DEFAULT_EVERY = 50
KEEP = 2
_NAME = re.compile(r"^xgb-([0-9a-f]{16})-(\d{6})\.ubj$")


def fingerprint(params: dict[str, Any], rounds: int, X: np.ndarray, y: np.ndarray) -> str:
    """16 hex digits identifying one fit: parameters (without thread count), rounds, rows, labels."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in params.items() if k != "nthread"}, sort_keys=True, default=str).encode())
    h.update(str(rounds).encode())
    for a in (np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class Checkpoints:
    """Checkpointing of one XGBoost fit in ``directory`` every ``every`` rounds.

    ``exchange`` is the distributed session's all-gather (``distributed.Session.exchange``) when
    several hosts train together, None on one host.
    """

    def __init__(self, directory: str | os.PathLike, every: int = DEFAULT_EVERY,
                 exchange: Callable[[Any], list[Any]] | None = None):
        if every < 1:
            raise ValueError(f"checkpoint interval must be at least 1 round, got {every}")
        self.directory, self.every, self.exchange = Path(directory), every, exchange
        self.key = ""

    def _files(self) -> list[tuple[int, Path]]:
        """(rounds done, path) of this fit's checkpoints, newest first."""
        out = []
        if self.directory.is_dir():
            for p in self.directory.iterdir():
                m = _NAME.match(p.name)
                if m and m.group(1) == self.key:
                    out.append((int(m.group(2)), p))
        return sorted(out, reverse=True)

    def resume(self, params: dict[str, Any], rounds: int, X: np.ndarray, y: np.ndarray) -> Any:
        """The booster to continue from (None: start from scratch); fixes this fit's key."""
        import xgboost as xgb

        key = fingerprint(params, rounds, X, y)
        if self.exchange is not None:  # one key for the whole group: every host's data counts
            key = hashlib.sha256("".join(self.exchange(key)).encode()).hexdigest()[:16]
        self.key = key
        found: tuple[int, str] | None = None
        for done, path in self._files():
            try:
                booster = xgb.Booster(model_file=str(path))
            except xgb.core.XGBoostError:
                continue  # unreadable (e.g. truncated by a crash of an older writer): try the next
            if booster.num_boosted_rounds() == done and 0 < done <= rounds:
                found = (done, hashlib.sha256(path.read_bytes()).hexdigest())
                break
        if self.exchange is not None and len(set(self.exchange(json.dumps(found)))) != 1:
            found = None  # the hosts do not see the same checkpoint: all start over (never broadcast None)
        if found is None:
            return None
        print(f"checkpoint: resuming at round {found[0]} of {rounds} from {self.directory}", flush=True)
        return xgb.Booster(model_file=str(self.directory / f"xgb-{key}-{found[0]:06d}.ubj"))

    def callback(self) -> Any:
        """The XGBoost callback that writes this fit's checkpoints (first host only)."""
        import xgboost as xgb
        from xgboost import collective

        outer = self

        class Write(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                if (epoch + 1) % outer.every == 0 and collective.get_rank() == 0:
                    outer.write(model, epoch + 1)
                return False

        return Write()

    def write(self, booster: Any, done: int) -> Path:
        """Write the checkpoint after ``done`` rounds atomically; drop all but the newest ``KEEP``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"xgb-{self.key}-{done:06d}.ubj"
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # .ubj: XGBoost picks the format by suffix
        booster.save_model(str(tmp))
        os.replace(tmp, path)
        for _, old in self._files()[KEEP:]:
            old.unlink(missing_ok=True)
        return path
