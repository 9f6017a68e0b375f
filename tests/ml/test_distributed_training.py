"""Multi-instance training (training_src/distributed.py): two real train.py processes on localhost
form one xgboost collective, each on its own shard of FD001, as two SageMaker hosts would.

The hosts are "127.0.0.1" and "localhost" (both resolve here; sorted, "127.0.0.1" is the first
host, which runs the tracker and alone writes the model). PREDMAINT_TRACKER_PORT picks a free port
instead of the container's 9099, PREDMAINT_TRACKER_TIMEOUT keeps the failure cases short.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HOSTS = ["127.0.0.1", "localhost"]
HP = ["--algorithm", "xgboost", "--num_round", "60", "--max_depth", "4", "--eta", "0.1"]  # as fd001_model
OBJECTIVE = re.compile(r"^final \[\d+\]\tvalidation-rmse:([0-9.]+)$", re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(train: Path, validation: Path, model_dir: Path, host: str | None, port: int, timeout: int) -> dict:
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(train), "SM_CHANNEL_VALIDATION": str(validation),
           "SM_MODEL_DIR": str(model_dir), "SM_OUTPUT_DATA_DIR": str(model_dir.parent / "output"),
           "SM_NUM_CPUS": "1", "PREDMAINT_TRACKER_PORT": str(port), "PREDMAINT_TRACKER_TIMEOUT": str(timeout)}
    if host is not None:
        env.update(SM_HOSTS=json.dumps(HOSTS), SM_CURRENT_HOST=host)
    return env


def _launch(root: Path, shards: dict[str, Path], validation: Path, timeout: int = 60,
            hosts: list[str] = HOSTS, hp: list[str] = HP) -> dict[str, subprocess.CompletedProcess]:
    """Start one train.py per host at once (as SageMaker does); wait for all."""
    port = _free_port()
    procs = {}
    for host in hosts:
        env = _env(shards[host], validation, root / host / "model", host, port, timeout)
        procs[host] = subprocess.Popen([sys.executable, str(REPO / "training_src" / "train.py"), *hp], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for host, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        out[host] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def shards(fd001: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FD001's train set split by engine into two shards, as ShardedByS3Key would hand out two part files.
    The spec object lands on the first host only (sharding hands it out like any other key)."""
    train = fd001["frames"]["train"]
    assets = list(dict.fromkeys(train["_asset"]))
    half = set(assets[: len(assets) // 2])
    root = tmp_path_factory.mktemp("shards")
    spec = fd001["out"] / "train" / "feature_spec.json"
    parts = {"127.0.0.1": train[train["_asset"].isin(half)], "localhost": train[~train["_asset"].isin(half)]}
    dirs = {}
    for i, (host, frame) in enumerate(parts.items()):
        d = root / host
        d.mkdir()
        frame.to_parquet(d / f"part-{i}.parquet", index=False)
        dirs[host] = d
    shutil.copy(spec, dirs["127.0.0.1"] / "feature_spec.json")
    (root / "empty").mkdir()
    dirs["empty"] = root / "empty"
    return dirs


def test_two_hosts_train_one_model(fd001, fd001_model, shards, tmp_path):
    validation = fd001["out"] / "validation"
    # single-node reference: the shared fixture, train.py with the same hyperparameters on the same rows
    single = json.loads((fd001_model / "model_meta.json").read_text())["validation_metric"]["value"]

    runs = _launch(tmp_path, shards, validation)
    first, other = runs["127.0.0.1"], runs["localhost"]
    assert first.returncode == 0, first.stderr
    assert other.returncode == 0, other.stderr
    # one artifact, from the first host; the other host writes nothing and prints no objective
    assert (tmp_path / "127.0.0.1" / "model" / "xgboost-model").exists()
    assert not (tmp_path / "localhost" / "model").exists()
    assert not OBJECTIVE.findall(other.stdout)
    assert "feature_spec.json" in os.listdir(tmp_path / "127.0.0.1" / "model")
    meta = json.loads((tmp_path / "127.0.0.1" / "model" / "model_meta.json").read_text())
    n_train = len(fd001["frames"]["train"])  # each row once: two models (candidates/pair.py) fit the rows as read
    assert meta["n_train"] == n_train and sum(meta["distributed"]["rows"]) == n_train
    assert meta["distributed"]["mode"] == "xgboost collective"
    # the last objective line is what tuning reads; intermediate lines come from the first host only
    lines = OBJECTIVE.findall(first.stdout)
    assert len(lines) == 1 and len(re.findall(r"^\[\d+\]\tvalidation-rmse", first.stdout, re.M)) == 2
    distributed = float(lines[-1])
    # Distributed hist all-reduces gradient histograms exactly, but its bin edges come from the
    # merged per-host quantile sketches, so some cut points (and splits) differ from single-node.
    # Measured on these shards (same hyperparameters, nthread 1, deterministic): single vs
    # distributed validation RMSE 9.624 vs 9.422 at max_bin 256 (-2.1 %); 9.643/9.582 at 240,
    # 9.660/9.682 at 270, 9.612/9.671 at 512, 9.614/9.614 at 1024, 9.565/9.565 at 4096: the gap
    # vanishes as cuts become exact, and single-node alone moves 9.57-9.67 with max_bin. So the
    # gap is sketch noise of the size of a max_bin change; bound it at 3 % of the single-node RMSE.
    assert abs(distributed - single) <= 0.03 * single, (single, distributed)


def test_a_candidate_without_a_distributed_fit_trains_on_the_first_host_over_every_hosts_rows(fd001, shards,
                                                                                              tmp_path):
    # hgb has no distributed fit: the other host sends its rows to the first (Session.gather), which fits
    # alone on both shards, in rank order: here the train file's own order, so the same model as one host
    hp = ["--algorithm", "hgb", "--num_round", "15", "--max_depth", "8", "--calibration_folds", "0"]
    validation = fd001["out"] / "validation"
    single = tmp_path / "single" / "model"
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "train.py"), *hp],
                          env=_env(fd001["out"] / "train", validation, single, None, _free_port(), 60),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = _launch(tmp_path, shards, validation, hp=hp)
    for host, r in runs.items():
        assert r.returncode == 0, (host, r.stderr)
    assert "sent" in runs["localhost"].stderr and not (tmp_path / "localhost" / "model").exists()
    model = tmp_path / "127.0.0.1" / "model"
    meta = json.loads((model / "model_meta.json").read_text())
    assert meta["distributed"]["mode"] == "gathered on the first host"
    assert meta["n_train"] == len(fd001["frames"]["train"])
    for name in ("hgb-model.json", "life/hgb-model.json"):
        assert (model / name).read_bytes() == (single / name).read_bytes(), name


def test_a_two_host_refits_intervals_are_the_first_hosts_part_and_the_validation_rows_calibration(fd001, shards,
                                                                                                  tmp_path):
    # every host reads its channels column by column into float32 matrices (no frame of every column);
    # the first host calibrates on its own part and the validation rows, from those matrices: the same
    # calibration as the frames' own (``calibrate_intervals`` without ``xy`` reads the frames' features)
    from training_src import features as F
    from training_src import train as T

    hp = ["--algorithm", "xgboost", "--num_round", "30", "--max_depth", "4", "--eta", "0.2",
          "--fit_on", "train+validation"]
    validation = fd001["out"] / "validation"
    runs = _launch(tmp_path, shards, validation, hp=hp)
    for host, r in runs.items():
        assert r.returncode == 0, (host, r.stderr)
    meta = json.loads((tmp_path / "127.0.0.1" / "model" / "model_meta.json").read_text())
    assert meta["distributed"]["mode"] == "xgboost collective" and meta["intervals"]
    spec = F.FeatureSpec.from_json((fd001["out"] / "train" / "feature_spec.json").read_text())
    frames = [T.read_channel(shards["127.0.0.1"]), T.read_channel(validation)]
    want = T.calibrate_intervals("xgboost", frames, spec.feature_names, spec, meta["hyperparameters"], 1, 0)
    assert json.loads(json.dumps(want)) == meta["intervals"]


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_the_gather_sends_blocks_to_the_first_host_and_leaves_the_others_their_own_rows(monkeypatch, dtype):
    # Session.gather on three hosts, each run in turn against a recorded broadcast (the collective's
    # broadcast returns the root's object on every host): the first host gets every row once in rank
    # order, the others None; each broadcast carries at most GATHER_ROWS rows, and the first host's own
    # rows are never broadcast
    import numpy as np
    import xgboost.collective

    from training_src import distributed as D

    monkeypatch.setattr(D, "GATHER_ROWS", 4)
    rng = np.random.default_rng(0)
    parts = [(rng.random((n, 3), dtype=np.float32), rng.random(n)) for n in (5, 9, 4)]
    hosts = ("a", "b", "c")
    sent: list = []
    sizes: list[int] = []

    def record(obj, root):  # the non-first hosts run first: each records the blocks it is root of
        if obj is not None:
            sent.append(obj)
            sizes.append(len(obj[1]))
        return obj

    results = {}
    monkeypatch.setattr(xgboost.collective, "broadcast", record)
    for rank in (1, 2):
        s = D.Session(D.Cluster(hosts, hosts[rank]))
        s.rows = [len(y) for _, y in parts]
        results[rank] = s.gather(*parts[rank])
    replay = iter(sent)
    monkeypatch.setattr(xgboost.collective, "broadcast", lambda obj, root: next(replay))
    s = D.Session(D.Cluster(hosts, hosts[0]))
    s.rows = [len(y) for _, y in parts]
    X, y = s.gather(*parts[0], dtype)
    assert results == {1: None, 2: None}
    assert sizes == [4, 4, 1, 4] and next(replay, None) is None
    np.testing.assert_array_equal(X, np.vstack([x for x, _ in parts]).astype(dtype or np.float32))
    np.testing.assert_array_equal(y, np.concatenate([y for _, y in parts]))
    assert X.dtype == (dtype or np.float32)


def test_empty_shard_fails_every_host_by_name(fd001, shards, tmp_path):
    runs = _launch(tmp_path, {"127.0.0.1": shards["127.0.0.1"], "localhost": shards["empty"]},
                   fd001["out"] / "validation")
    for host, r in runs.items():
        assert r.returncode == 2, (host, r.stderr)
        assert "['localhost'] received no train data files" in r.stderr
    assert not (tmp_path / "127.0.0.1" / "model").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # xgboost warns on each refused connect
def test_unreachable_tracker_names_the_host():
    # only the second host starts (in-process, to save an interpreter start): no tracker ever comes up
    from training_src import distributed as D

    env = {"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": "localhost",
           "PREDMAINT_TRACKER_PORT": str(_free_port()), "PREDMAINT_TRACKER_TIMEOUT": "2"}
    with pytest.raises(D.DistributedError, match=r"host localhost: tracker on 127\.0\.0\.1 .* unreachable"):
        D.connect(env)  # train.py prints this message and exits 1


def test_cluster_from_env_and_gather_rules(tmp_path):
    from training_src import distributed as D

    assert D.cluster_from_env({}, tmp_path / "none.json") is None
    # one host (local mode, the default instance_count) is the unchanged single-node path
    assert D.cluster_from_env({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}) is None
    assert D.connect({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}) is None
    rc = tmp_path / "resourceconfig.json"
    rc.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]}))
    c = D.cluster_from_env({}, rc)
    assert c.hosts == ("algo-1", "algo-2") and c.rank == 1 and not c.is_first and c.port == 9099
    with pytest.raises(D.DistributedError, match="not in SM_HOSTS"):
        D.cluster_from_env({"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-3"})
    assert D.gather_reason("xgboost", "rul_regression", {}, True) == ""
    assert D.gather_reason("xgboost", "rul_regression", {}, False) == ""  # regression refit: distributed
    assert "linear" in D.gather_reason("linear", "rul_regression", {}, True)
    assert "cv_folds" in D.gather_reason("xgboost", "failure_classification", {"cv_folds": "5"}, True)
    assert "threshold" in D.gather_reason("xgboost", "failure_classification", {}, False)


# train.py's main with a record of the NumPy memory a host holds (tracemalloc; NumPy reports its arrays' data
# in its own domain): the peak of all traced memory until the collective fit starts (the channels' reading),
# and the NumPy bytes alive as each fit_model of the collective fit starts. argv[1] is the record file;
# TRACED_FINAL_FIT_ROWS, when set, stands for train.FINAL_FIT_ROWS (so FD001's rows are above it).
TRACED = r'''
import json, os, sys, tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet, sklearn.model_selection, xgboost  # noqa: F401  imported before tracing starts

from training_src import distributed as D
from training_src import train as T

NUMPY = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
T.FINAL_FIT_ROWS = int(os.environ.get("TRACED_FINAL_FIT_ROWS", T.FINAL_FIT_ROWS))
record = {"fits": []}
session_fit, fit_model = D.Session.fit, T.fit_model


def traced_session_fit(self, *args, **kwargs):
    record["read_peak"] = tracemalloc.get_traced_memory()[1]
    record["in_fit"] = True
    try:
        return session_fit(self, *args, **kwargs)
    finally:
        record["in_fit"] = False


def traced_fit_model(*args, **kwargs):
    if record.get("in_fit"):
        record["fits"].append(sum(t.size for t in tracemalloc.take_snapshot().filter_traces(NUMPY).traces))
    return fit_model(*args, **kwargs)


D.Session.fit, T.fit_model = traced_session_fit, traced_fit_model
tracemalloc.start()
rc = T.main(sys.argv[2:])
Path(sys.argv[1]).write_text(json.dumps(record))
sys.exit(rc)
'''


def _traced_launch(root: Path, shards: dict[str, Path], validation: Path, hp: list[str],
                   extra_env: dict[str, str] | None = None) -> dict[str, dict]:
    """``_launch`` of train.py under TRACED: each host's record (after asserting every host exited 0)."""
    script = root / "traced_train.py"
    script.write_text(TRACED)
    port = _free_port()
    procs = {}
    for host in HOSTS:
        env = _env(shards[host], validation, root / host / "model", host, port, 60)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env.update(extra_env or {})
        procs[host] = subprocess.Popen([sys.executable, str(script), str(root / f"{host}.json"), *hp], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = {}
    for host, p in procs.items():
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, (host, stderr)
        records[host] = json.loads((root / f"{host}.json").read_text())
    return records


def _rows(channel: Path, stride: int = 1) -> int:
    """Rows of a channel directory (every ``stride``-th reading of each asset)."""
    import pandas as pd

    from training_src import train as T

    assets = pd.concat([pd.read_parquet(f, columns=["_asset"]) for f in sorted(channel.glob("*.parquet"))])["_asset"]
    assets = assets.to_numpy()
    return int(T.stride_mask(assets, stride).sum())


def test_a_trial_on_two_hosts_reads_only_its_strided_rows(fd001, shards, tmp_path):
    # each host of a trial reads every 3rd reading of its part straight into its matrix, as one host does: at no
    # moment does it hold a matrix of every row of its part (a small validation channel, so that the part's
    # rows are what the peak is made of)
    from training_src import features as F

    names = F.FeatureSpec.from_json((fd001["out"] / "train" / "feature_spec.json").read_text()).feature_names
    row = 4 * len(names) + 8  # bytes: float32 features, float64 label
    small = tmp_path / "validation"
    small.mkdir()
    frame = fd001["frames"]["validation"]
    frame[frame["_asset"].isin(list(dict.fromkeys(frame["_asset"]))[:3])].to_parquet(small / "part-0.parquet",
                                                                                      index=False)
    records = _traced_launch(tmp_path, shards, small, [*HP, "--row_stride", "3"])
    v = _rows(small)
    for host, record in records.items():
        part, strided = _rows(shards[host]), _rows(shards[host], 3)
        # beside the rows it fits (its strided part) and the validation rows (as read, then with and without
        # their life features for the objective) it holds its part's meta columns and the stride's index:
        # under half a matrix of every row of its part (reading every row and copying the kept ones out
        # held all of it: 4.1 and 4.4 MB here, against 2.0 and 2.0)
        assert record["read_peak"] - (strided + 3 * v) * row < part * row / 2, (host, record, part, strided, v)


def test_a_refit_on_two_hosts_holds_each_row_once_and_the_other_hosts_no_validation_rows(fd001, shards, tmp_path):
    # the first host reads its part then the validation rows into one matrix (no stacked copy, no second
    # matrix of the validation rows, no doubled one: the refit scores them after the fit, as one host does);
    # the other host reads its part alone; neither copies the life columns the window fit blanks
    from training_src import features as F

    names = F.FeatureSpec.from_json((fd001["out"] / "train" / "feature_spec.json").read_text()).feature_names
    row = 4 * len(names) + 8
    validation = fd001["out"] / "validation"
    hp = ["--algorithm", "xgboost", "--num_round", "30", "--max_depth", "4", "--eta", "0.2",
          "--fit_on", "train+validation"]
    records = _traced_launch(tmp_path, shards, validation, hp)
    v = _rows(validation)
    for host, record in records.items():
        held = _rows(shards[host]) + (v if host == "127.0.0.1" else 0)
        # as each fit of the collective (the life model, the window model) starts, the host's NumPy arrays
        # are its rows once and their meta columns (_asset, _time, _label), nothing else: the stacked copy,
        # the validation rows' second and doubled matrices on every host and the copy of the life columns
        # held 7.2-10.2 MB on the first host here and 5.9-8.4 MB on the other, against 4.3 and 3.0 MB
        assert len(record["fits"]) == 2 and max(record["fits"]) <= held * (row + 3 * 8) + 4096, (host, record, held)


def test_a_refits_other_host_above_final_fit_rows_reads_only_the_rows_it_fits(fd001, shards, tmp_path):
    # above FINAL_FIT_ROWS (5,000 here) the other host's final fit reads every 2nd reading of its part, and it
    # reads nothing else (the first host calibrates on its own rows): it reads those rows as such, as a
    # trial's strided ones, rather than every row of its part and a copy of the kept ones
    from training_src import features as F

    names = F.FeatureSpec.from_json((fd001["out"] / "train" / "feature_spec.json").read_text()).feature_names
    row = 4 * len(names) + 8
    hp = ["--algorithm", "xgboost", "--num_round", "30", "--max_depth", "4", "--eta", "0.2",
          "--fit_on", "train+validation"]
    records = _traced_launch(tmp_path, shards, fd001["out"] / "validation", hp, {"TRACED_FINAL_FIT_ROWS": "5000"})
    other = shards["localhost"]
    part, kept = _rows(other), _rows(other, 2)
    meta = json.loads((tmp_path / "127.0.0.1" / "model" / "model_meta.json").read_text())
    assert meta["distributed"]["rows"][1] == kept, meta["distributed"]
    # beside the rows it fits, its part's meta columns and the stride's index: under half a matrix of every
    # row of its part (the whole part read, then the kept rows copied out: 4.6 MB here, against 2.3 MB)
    record = records["localhost"]
    assert record["read_peak"] - kept * row < part * row / 2, (record, part, kept)
