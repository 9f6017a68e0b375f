"""Multi-instance training for train.py: one XGBoost model across the hosts of a SageMaker job.

SageMaker script mode gives every host ``SM_HOSTS`` (JSON list) and ``SM_CURRENT_HOST`` (also in
``/opt/ml/input/config/resourceconfig.json``). With more than one host the state machine shards the
train channel (``ShardedByS3Key``: whole objects per host) and replicates the validation channel.
The first host (sorted names, ``algo-1``) runs xgboost's ``RabitTracker``; every host joins the
collective (``xgboost.collective``, rank = index in the sorted host list) and calls the same
``xgb.train`` on its own shard with ``tree_method=hist``: gradient histograms and the quantile
sketch are all-reduced, so every host grows the same trees. A trial's validation metrics are
all-reduced too; on a replicated validation set they equal the single-node value (numerator and
denominator both count each row once per host), so the intermediate objective lines agree on every
host. The refit fits the validation rows (on the first host only, once) and scores them after its
fit, on the first host: the other hosts do not read the validation channel.

Only the first host prints objective lines, writes the model directory and ``metrics.json``;
the others exit 0 with nothing in ``SM_MODEL_DIR``.

Not distributable here, so trained on the first host over **all** shards gathered through the
collective (the same model as single-node training on those rows, bounded by one instance's
memory), with a logged warning: every candidate whose module says ``DISTRIBUTED = False`` (all but
``xgboost``) and the out-of-fold paths (``cv_folds`` > 1 scoring; the classification threshold of a refit, which is
chosen on out-of-fold predictions).

Two environment overrides, both optional: ``PREDMAINT_TRACKER_PORT`` (default 9099, the port the
SageMaker XGBoost container uses; SageMaker instances are single-tenant) and
``PREDMAINT_TRACKER_TIMEOUT`` (seconds to resolve hosts and form the group, and the longest one host
waits for the others at any collective step, default 900).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESOURCE_CONFIG = Path("/opt/ml/input/config/resourceconfig.json")
DEFAULT_PORT = 9099
DEFAULT_TIMEOUT = 900.0
#: rows per broadcast when a candidate without a distributed fit gathers every host's rows on the first host
#: (``Session.gather``): 65,536 rows of 120 float32 features are about 31 MB in flight
GATHER_ROWS = 65_536


class DistributedError(RuntimeError):
    """The hosts could not form (or keep) the training group (train.py exits 1)."""


class ShardError(ValueError):
    """Bad or missing data on some host; raised on every host alike (train.py exits 2)."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]  # sorted: the first is the tracker and the only writer
    current: str
    port: int = DEFAULT_PORT
    timeout: float = DEFAULT_TIMEOUT

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current)

    @property
    def first(self) -> str:
        return self.hosts[0]

    @property
    def is_first(self) -> bool:
        return self.current == self.first


def cluster_from_env(env: dict[str, str] | None = None, resource_config: Path = RESOURCE_CONFIG) -> Cluster | None:
    """The job's hosts from ``SM_HOSTS``/``SM_CURRENT_HOST`` (else resourceconfig.json); None for one host."""
    env = dict(os.environ if env is None else env)
    hosts, current = env.get("SM_HOSTS"), env.get("SM_CURRENT_HOST")
    if hosts is None and resource_config.exists():
        doc = json.loads(resource_config.read_text())
        hosts, current = json.dumps(doc.get("hosts", [])), doc.get("current_host")
    if hosts is None:
        return None
    try:
        names = json.loads(hosts)
    except json.JSONDecodeError as exc:
        raise DistributedError(f"SM_HOSTS is not a JSON list: {hosts!r}") from exc
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise DistributedError(f"SM_HOSTS must be a non-empty list of distinct host names, got {hosts!r}")
    if len(names) == 1:
        return None
    if current not in names:
        raise DistributedError(f"SM_CURRENT_HOST={current!r} is not in SM_HOSTS {names}")
    return Cluster(tuple(sorted(names)), current,
                   int(env.get("PREDMAINT_TRACKER_PORT", DEFAULT_PORT)),
                   float(env.get("PREDMAINT_TRACKER_TIMEOUT", DEFAULT_TIMEOUT)))


def log(cluster: Cluster, msg: str) -> None:
    print(f"distributed [{cluster.current} {cluster.rank + 1}/{len(cluster.hosts)}]: {msg}",
          file=sys.stderr, flush=True)


def _resolve(cluster: Cluster, host: str, deadline: float) -> str:
    """Host name -> address, retried: SageMaker's DNS names appear while the cluster boots."""
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise DistributedError(f"host {cluster.current}: cannot resolve host {host!r} within "
                                       f"{cluster.timeout:.0f}s: {exc}") from exc
            time.sleep(1.0)


class Session:
    """The collective on one host: tracker (first host only), membership, exchange, shutdown."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.tracker: Any = None
        self.open = False
        self.agreed = False
        self.rows: list[int] = []
        self.mode = ""

    @property
    def is_first(self) -> bool:
        return self.cluster.is_first

    def start(self) -> Session:
        from xgboost import collective
        from xgboost.core import XGBoostError
        from xgboost.tracker import RabitTracker

        c = self.cluster
        deadline = time.monotonic() + c.timeout
        for h in c.hosts:
            _resolve(c, h, deadline)
        address = _resolve(c, c.first, deadline)
        if c.is_first:
            try:
                self.tracker = RabitTracker(n_workers=len(c.hosts), host_ip=address, port=c.port,
                                            sortby="task", timeout=int(c.timeout))
                self.tracker.start()
            except XGBoostError as exc:
                raise DistributedError(f"host {c.current}: cannot start the tracker on {address}:{c.port}: "
                                       f"{_first_line(exc)}") from exc
        log(c, f"joining {len(c.hosts)} hosts {list(c.hosts)}, tracker {c.first} ({address}:{c.port})")
        last = ""
        while True:
            try:
                # zero-padded task ids sort like the host list, so rank == index in sorted hosts
                collective.init(dmlc_communicator="rabit", dmlc_tracker_uri=address, dmlc_tracker_port=c.port,
                                dmlc_task_id=f"{c.rank:05d}", dmlc_retry=1, dmlc_timeout=int(c.timeout))
                break
            except XGBoostError as exc:
                last = _first_line(exc)
                if time.monotonic() > deadline:
                    self._free_tracker(wait=5)
                    raise DistributedError(
                        f"host {c.current}: tracker on {c.first} ({address}:{c.port}) unreachable or the group of "
                        f"{len(c.hosts)} hosts incomplete after {c.timeout:.0f}s: {last}") from exc
                time.sleep(1.0)
        self.open = True
        if collective.get_rank() != c.rank or collective.get_world_size() != len(c.hosts):
            self.close()
            raise DistributedError(f"host {c.current}: got rank {collective.get_rank()} of "
                                   f"{collective.get_world_size()}, expected {c.rank} of {len(c.hosts)}")
        return self

    def exchange(self, obj: Any) -> list[Any]:
        """All-gather: every host's ``obj`` (pickled) in rank order, on every host."""
        from xgboost import collective
        return [collective.broadcast(obj if r == self.cluster.rank else None, r)
                for r in range(len(self.cluster.hosts))]

    def gather(self, X: np.ndarray, y: np.ndarray, dtype: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Every host's rows (``X``, ``y``; the counts agreed in ``rows``) on the first host, in rank order,
        ``X`` in ``dtype`` (default: ``X``'s; float32 values widened to float64 exactly); None on the others. Each other host broadcasts its rows in blocks of ``GATHER_ROWS`` (the
        collective has broadcast, not a send to one host); the first host copies each block into one
        matrix of every host's rows as it arrives, and the hosts it is not meant for drop it. So the
        first host holds every row once plus a block (and its own part, which the caller still holds),
        the others their own rows plus a block; an all-gather of the parts (``exchange``) held every
        part on every host, pickled and unpickled."""
        from xgboost import collective

        first = self.is_first
        total = sum(self.rows)
        out = (np.empty((total, X.shape[1]), dtype=dtype or X.dtype), np.empty(total, dtype=y.dtype)) if first \
            else None
        if out is not None:  # the first host's own rows: no broadcast
            out[0][: len(y)], out[1][: len(y)] = X, y
        at = self.rows[0]
        for rank in range(1, len(self.rows)):  # every host runs the same sequence of broadcasts
            for start in range(0, self.rows[rank], GATHER_ROWS):
                mine = rank == self.cluster.rank
                block = collective.broadcast((X[start:start + GATHER_ROWS], y[start:start + GATHER_ROWS])
                                             if mine else None, rank)
                if out is not None:
                    bx, by = block
                    out[0][at:at + len(by)], out[1][at:at + len(by)] = bx, by
                    at += len(by)
                del block
        return out

    def close(self) -> None:
        if self.open:
            from xgboost import collective
            self.open = False
            collective.finalize()
        self._free_tracker(wait=int(self.cluster.timeout))

    def _free_tracker(self, wait: int) -> None:
        if self.tracker is not None:
            tracker, self.tracker = self.tracker, None
            with contextlib.suppress(Exception):
                tracker.wait_for(wait)  # returns once every worker has finalized
            with contextlib.suppress(Exception):
                tracker.free()

    # -- the steps train.py calls, in this order, on every host ------------------------------------

    def share_spec(self, spec_path: Path) -> Path:
        """Every host needs the feature spec, but sharding by S3 key hands the ``feature_spec.json``
        object of the train prefix to one host only: take it from a host that has it. Fail every host,
        naming the empty ones, when some host received no data files."""
        channel = spec_path.parent
        n_files = len([*channel.glob("*.parquet"), *channel.glob("*.csv")]) if channel.is_dir() else 0
        mine = spec_path.read_text() if spec_path.exists() else None
        reports = self.exchange({"host": self.cluster.current, "spec": mine, "files": n_files})
        empty = [r["host"] for r in reports if not r["files"]]
        if empty:
            self.agreed = True  # every host fails here; nothing else to agree on
            raise ShardError(
                f"host(s) {empty} received no train data files: ShardedByS3Key gives whole S3 objects to "
                f"hosts, so the train prefix needs at least {len(self.cluster.hosts)} data files "
                f"(files per host: {[r['files'] for r in reports]})")
        if mine is not None:
            return spec_path
        texts = [r["spec"] for r in reports if r["spec"] is not None]
        if not texts:
            return spec_path  # train.py reports the missing spec (on every host)
        local = Path(tempfile.mkdtemp(prefix="predmaint-spec-")) / spec_path.name
        local.write_text(texts[0])
        return local

    def _agree(self, status: dict[str, Any]) -> list[dict[str, Any]]:
        """The one membership round before training: every host reports its rows or its error."""
        self.agreed = True
        reports = self.exchange({"host": self.cluster.current, **status})
        failed = [f"host {r['host']}: {r['error']}" for r in reports if r.get("error")]
        if failed:
            raise ShardError("; ".join(failed))
        empty = [r["host"] for r in reports if not r["rows"]]
        if empty:
            raise ShardError(f"host(s) {empty} have an empty train shard (0 rows); every host needs rows")
        if len({r["validation"] for r in reports}) > 1 or len({r["features"] for r in reports}) > 1:
            raise ShardError(f"hosts disagree on validation rows / feature count: {reports}")
        self.rows = [int(r["rows"]) for r in reports]
        return reports

    def fail(self, message: str) -> None:
        """An error on this host before training: tell the others (so they stop too), then leave."""
        with contextlib.suppress(ShardError, DistributedError):
            if self.open and not self.agreed:
                self._agree({"error": message})
        self.close()

    def fit(self, fit_model: Callable[..., tuple[Any, Any]], algorithm: str, X: np.ndarray, y: np.ndarray,
            task: str, hp: dict[str, str], nthread: int, seed: int, Xv: np.ndarray | None,
            yv: np.ndarray | None, names: list[str], held_out: bool,
            checkpoints: Any = None) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """Train across hosts. Returns ``(model, validation predictions, X, y)`` on the first host
        (X, y = every host's rows when they were gathered) and ``(None, None, X, y)`` elsewhere.
        ``checkpoints`` (a ``checkpoints.Checkpoints``) is agreed across the hosts in collective mode."""
        self._agree({"rows": len(y), "validation": None if Xv is None else len(Xv), "features": X.shape[1]})
        total = sum(self.rows)
        reason = gather_reason(algorithm, task, hp, held_out)
        if reason:
            self.mode = "gathered on the first host"
            from training_src import candidates

            # in the dtype the candidate fits from (hgb: float64, which scikit-learn bins without a copy)
            gathered = self.gather(X, y, candidates.get(algorithm).ROW_DTYPE)
            self.close()
            if gathered is None:
                log(self.cluster, f"sent {len(y)} rows to {self.cluster.first} ({reason}); exiting")
                return None, None, X, y
            X, y = gathered
            log(self.cluster, f"WARNING: {reason}: training on this host alone over all {total} rows "
                              f"gathered from {len(self.rows)} hosts (same model as single-node training)")
            model, pv = fit_model(algorithm, X, y, task, hp, nthread, seed, Xv, yv, names, checkpoints=checkpoints)
            return model, pv, X, y
        self.mode = "xgboost collective"
        log(self.cluster, f"training one model on {len(y)} of {total} rows (rows per host {self.rows})")
        quiet = contextlib.nullcontext() if self.is_first else contextlib.redirect_stdout(io.StringIO())
        if checkpoints is not None:
            checkpoints.exchange = self.exchange  # one fingerprint and one resume point for the group
        from xgboost.core import XGBoostError
        try:
            with quiet:  # only the first host prints objective lines (the tuning regex reads them)
                model, pv = fit_model(algorithm, X, y, task, hp, nthread, seed, Xv, yv, names, checkpoints=checkpoints)
        except XGBoostError as exc:  # a peer died or hung mid-training
            raise DistributedError(f"host {self.cluster.current}: collective training failed: "
                                   f"{_first_line(exc)}") from exc
        self.close()
        if not self.is_first:
            log(self.cluster, f"done; {self.cluster.first} writes the model")
            return None, None, X, y
        return model, pv, X, y

    def meta(self) -> dict[str, Any]:
        """Extra ``model_meta.json`` fields: the rows over all hosts and how they were trained."""
        return {"n_train": sum(self.rows), "distributed": {"hosts": list(self.cluster.hosts), "rows": self.rows,
                                                          "mode": self.mode}}


def gather_reason(algorithm: str, task: str, hp: dict[str, str], held_out: bool) -> str:
    """Why this fit cannot run as one collective XGBoost fit ("" when it can)."""
    from training_src import candidates
    if not candidates.get(algorithm).DISTRIBUTED:
        return f"the {algorithm} candidate has no distributed fit"
    try:
        folds = int(float(hp.get("cv_folds", "1")))
    except ValueError:
        folds = 1  # train.py rejects the value on the first host
    if held_out and folds > 1:
        return f"cv_folds={folds} out-of-fold scoring needs every row on one host"
    if task == "failure_classification" and not held_out:
        return "the refit's decision threshold comes from out-of-fold predictions over every row"
    return ""


def connect(env: dict[str, str] | None = None) -> Session | None:
    """A started session when SageMaker gave this job several hosts; None for one host (local mode)."""
    cluster = cluster_from_env(env)
    return None if cluster is None else Session(cluster).start()


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("- [")]
    return lines[-1] if lines else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
