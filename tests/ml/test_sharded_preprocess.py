"""Sharded preprocessing (fit once, transform shards in parallel) equals the single process, row for row.

The raw fleet is partitioned by asset into several objects, as ``raw/<dataset>/train_FD001/part-*``
in S3. The fit stage sees every object; each transform "instance" gets the objects SageMaker's
``ShardedByS3Key`` would give it (here: a fixed split of the keys) plus the fit output, and all
instances write into one output tree the way their uploads land under one S3 prefix.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training_src import evaluate as E
from training_src import preprocess as P
from training_src import train as T
from training_src.dataio import DataError
from training_src.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
CHANNELS = {"train": "train", "validation": "validation", "test": "test"}


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    return [ln for ln in text.splitlines() if ln.strip()]


def _by_unit(lines: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for ln in lines:
        out.setdefault(int(ln.split()[0]), []).append(ln)
    return out


def write_parts(dest: Path, lines_by_unit: dict[int, list[str]], groups: list[list[int]], header: str = "") -> list[str]:
    """Write one object per group of units; return their keys relative to the raw root's parent."""
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for i, units in enumerate(groups):
        body = [ln for u in units for ln in lines_by_unit[u]]
        (dest / f"part-{i:03d}.txt").write_text(header + "\n".join(body) + "\n")
        names.append(f"part-{i:03d}.txt")
    return names


def shard(raw: Path, keys: list[str], dest: Path) -> Path:
    """What one processing instance receives: the given objects at their keys."""
    for key in keys:
        (dest / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(raw / key, dest / key)
    return dest


def read_channel(directory: Path) -> pd.DataFrame:
    return T.read_channel(directory)


def read_parts(directory: Path, name: str) -> pd.DataFrame:
    """The baseline's ``<name>`` parts as evaluate.py finds them, in its order, as one frame."""
    return pd.concat([pd.read_parquet(f) for f in E._part_files(directory, name)], ignore_index=True)


def sharded_run(profile, raw: Path, shards: list[list[str]], tmp: Path, seed: int = 0) -> Path:
    out = tmp / "processed"
    P.run_fit(profile, raw, out, seed)
    for n, keys in enumerate(shards):
        manifest = P.run_transform(profile, shard(raw, keys, tmp / f"shard{n}"), out, out / "spec", host=f"algo-{n + 1}")
        assert manifest["host"] == f"algo-{n + 1}" and sorted(manifest["objects"]) == sorted(keys)
    return out


def assert_same_rows(single: pd.DataFrame, sharded: pd.DataFrame) -> None:
    assert list(single.columns) == list(sharded.columns)
    # the part names put the rows in the single process's order; sorting must change nothing
    keys = [c for c in ("_asset", "_time") if c in single.columns]
    pd.testing.assert_frame_equal(single.reset_index(drop=True), sharded.reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(single.sort_values(keys, kind="stable").reset_index(drop=True),
                                  sharded.sort_values(keys, kind="stable").reset_index(drop=True), check_exact=True)


@pytest.fixture(scope="module")
def fd001_parts(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FD001 partitioned by engine: train in 3 objects, test in 2, the RUL file whole."""
    raw = tmp_path_factory.mktemp("raw-parts")
    train = _by_unit(_lines(data_dir / "cmapss" / "train_FD001.txt.gz"))
    test = _by_unit(_lines(data_dir / "cmapss" / "test_FD001.txt.gz"))
    write_parts(raw / "cmapss" / "train_FD001", train, [list(range(1, 34)), list(range(34, 67)), list(range(67, 101))])
    write_parts(raw / "cmapss" / "test_FD001", test, [list(range(1, 51)), list(range(51, 101))])
    shutil.copy2(data_dir / "cmapss" / "RUL_FD001.txt.gz", raw / "cmapss" / "RUL_FD001.txt.gz")
    (raw / "cmapss" / "train_FD001" / "_READY").write_text("")  # a marker, not data: skipped
    return raw


def test_fd001_fit_then_two_transform_instances_equal_the_single_process(fd001, fd001_parts, fd001_model, tmp_path):
    profile = load_profile("cmapss", "FD001")
    # ShardedByS3Key gives each instance whole objects; the RUL file may land anywhere (the fit recorded it)
    shards = [["cmapss/train_FD001/part-000.txt", "cmapss/train_FD001/part-002.txt", "cmapss/test_FD001/part-001.txt"],
              ["cmapss/train_FD001/part-001.txt", "cmapss/test_FD001/part-000.txt", "cmapss/RUL_FD001.txt.gz"]]
    out = sharded_run(profile, fd001_parts, shards, tmp_path)

    single = fd001["frames"]  # preprocess.build_datasets on the original single files
    assert (out / "spec" / "feature_spec.json").read_text() == fd001["spec"].to_json()
    assert (out / "train" / "feature_spec.json").read_text() == fd001["spec"].to_json()
    for name in CHANNELS:
        parts = sorted(p.name for p in (out / name).glob("*.parquet"))
        assert parts and all(p.startswith("part-") for p in parts)
        assert_same_rows(single[name], read_channel(out / name))
    assert_same_rows(single["baseline_train"], read_parts(out / "baseline", "train"))
    assert_same_rows(single["baseline_test"], read_parts(out / "baseline", "test"))
    assert sorted(p.name for p in out.glob("manifest-*.json")) == ["manifest-algo-1.json", "manifest-algo-2.json"]
    split = json.loads((out / "spec" / "split.json").read_text())
    assert sorted(split["validation"]) == sorted(set(single["validation"]["_asset"]))
    assert len(split["objects"]) == 6  # 3 train parts, 2 test parts, the RUL file; _READY skipped
    # the fit instance, which reads every object, writes the drift baseline the single process writes
    for rel in ("train/drift_baseline.json", "spec/drift_baseline.json"):
        assert (out / rel).read_bytes() == (fd001["out"] / rel).read_bytes(), rel

    # the single process on the partitioned objects is the same dataset too
    frames, spec, manifest = P.build_datasets(profile, fd001_parts, seed=0)
    assert spec.to_json() == fd001["spec"].to_json()
    for name in single:
        assert_same_rows(single[name], frames[name])
    assert manifest["test_fingerprint"] == fd001["manifest"]["test_fingerprint"]
    assert [p["path"] for p in manifest["files"]["train"]["parts"]] == [
        f"cmapss/train_FD001/part-00{i}.txt" for i in range(3)]

    # evaluate.py reads the parts: same report (test fingerprint, model and baseline metrics)
    reports = [E.evaluate(fd001_model, root / "test", root / "baseline", None, None, None, tmp_path / f"eval{i}", 1)
               for i, root in enumerate((fd001["out"], out))]
    for key in ("test_fingerprint", "regression_metrics", "nasa_score", "baseline", "n_test"):
        assert reports[0][key] == reports[1][key], key


def _ai4i_parts(data_dir: Path, raw: Path) -> list[str]:
    lines = _lines(data_dir / "ai4i2020" / "ai4i2020.csv.gz")
    header, rows = lines[0], lines[1:]
    folder = raw / "ai4i2020" / "ai4i2020"
    folder.mkdir(parents=True)
    keys = []
    for i, chunk in enumerate(np.array_split(np.arange(len(rows)), 3)):
        (folder / f"part-{i}.csv").write_text(header + "\n" + "\n".join(rows[j] for j in chunk) + "\n")
        keys.append(f"ai4i2020/ai4i2020/part-{i}.csv")
    return keys


def test_ai4i_rows_sharded_equal_the_single_process(data_dir, tmp_path):
    profile = load_profile("ai4i2020")
    single, spec, _ = P.build_datasets(profile, data_dir, seed=0)
    keys = _ai4i_parts(data_dir, tmp_path / "raw")
    out = sharded_run(profile, tmp_path / "raw", [[keys[1]], [keys[0], keys[2]]], tmp_path)
    assert (out / "spec" / "feature_spec.json").read_text() == spec.to_json()
    for name in CHANNELS:
        assert_same_rows(single[name], read_channel(out / name))
    # baseline: train rows then validation rows, as the single process concatenates them
    assert_same_rows(single["baseline_train"], read_parts(out / "baseline", "train"))
    assert_same_rows(single["baseline_test"], read_parts(out / "baseline", "test"))
    expected = P.drift_baseline_files(single, spec)
    assert expected and all((out / rel).read_text() == text for rel, text in expected.items())


def test_truncated_test_assets_sharded_equal_the_single_process(fd001_parts, tmp_path):
    """A fleet without a test file: held-out test assets are cut at random readings; the fit records
    the cuts, so shards cut exactly where the single process does."""
    doc = json.loads((REPO / "training_src" / "profiles" / "cmapss.json").read_text())
    doc.update(name="fleet", files={"train": "cmapss/train_{subset}.txt"},
               split={"validation_fraction": 0.2, "test_fraction": 0.2})
    (tmp_path / "fleet.json").write_text(json.dumps(doc))
    profile = load_profile(tmp_path / "fleet.json", "FD001")
    raw = tmp_path / "raw"
    shutil.copytree(fd001_parts / "cmapss" / "train_FD001", raw / "cmapss" / "train_FD001")
    single, _, _ = P.build_datasets(profile, raw, seed=3)
    assert len(single["test"]) == 16
    out = tmp_path / "processed"
    P.run_fit(profile, raw, out, seed=3)
    for n, keys in enumerate([["cmapss/train_FD001/part-001.txt"],
                              ["cmapss/train_FD001/part-000.txt", "cmapss/train_FD001/part-002.txt"]]):
        P.run_transform(profile, shard(raw, keys, tmp_path / f"s{n}"), out, out / "spec", host=f"h{n}")
    for name in CHANNELS:
        assert_same_rows(single[name], read_channel(out / name))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_fleet(data_dir: Path, tmp_path: Path) -> Path:
    """The first 12 FD001 engines in 3 objects, and 4 test engines, so a fit takes a moment."""
    raw = tmp_path / "raw"
    train = _by_unit(_lines(data_dir / "cmapss" / "train_FD001.txt.gz"))
    test = _by_unit(_lines(data_dir / "cmapss" / "test_FD001.txt.gz"))
    write_parts(raw / "cmapss" / "train_FD001", train, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    (raw / "cmapss" / "test_FD001.txt").write_text("\n".join(ln for u in (1, 2, 3, 4) for ln in test[u]) + "\n")
    (raw / "cmapss" / "RUL_FD001.txt").write_text("112\n98\n69\n82\n")
    return raw


def test_an_asset_straddling_two_objects_is_rejected_naming_both(small_fleet, tmp_path):
    # engine 5 (in part-001) gets two more readings at the top of part-002
    folder = small_fleet / "cmapss" / "train_FD001"
    last = [ln for ln in (folder / "part-001.txt").read_text().splitlines() if ln.split()[0] == "5"][-1].split()
    extra = [" ".join([last[0], str(int(last[1]) + k), *last[2:]]) for k in (1, 2)]
    (folder / "part-002.txt").write_text("\n".join(extra) + "\n" + (folder / "part-002.txt").read_text())
    profile = load_profile("cmapss", "FD001")
    for run in (lambda: P.run_fit(profile, small_fleet, tmp_path / "out"),
                lambda: P.build_datasets(profile, small_fleet)):
        with pytest.raises(DataError, match=r"asset '5' has readings in 2 objects .*part-001.txt.*part-002.txt"):
            run()
    assert not (tmp_path / "out").exists()


def test_transform_without_fit_output_exits_2(small_fleet, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss",
                           "--subset", "FD001", "--stage", "transform", "--data-dir", str(small_fleet),
                           "--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
                           "--host", "algo-2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "feature_spec.json not found: the transform stage applies the fit stage's output" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_transform_rejects_changed_unknown_and_mismatched_inputs(small_fleet, tmp_path):
    profile = load_profile("cmapss", "FD001")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss",
                           "--subset", "FD001", "--stage", "fit", "--data-dir", str(small_fleet),
                           "--input-dir", str(tmp_path / "input"), "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "preprocess fit: cmapss FD001 objects=5" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"spec", "train", "manifest.json"}
    fitted = out / "spec"

    # the CLI transform of one shard, host from the flag
    keys = ["cmapss/train_FD001/part-001.txt", "cmapss/test_FD001.txt"]
    shard_dir = shard(small_fleet, keys, tmp_path / "s0")
    proc = subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss",
                           "--subset", "FD001", "--stage", "transform", "--data-dir", str(shard_dir),
                           "--fitted", str(fitted), "--output-dir", str(out), "--host", "algo-7"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "preprocess transform on algo-7: 2 raw object(s)" in proc.stdout
    assert (out / "train" / "part-00001.parquet").exists() and (out / "test" / "part-00000.parquet").exists()
    assert (out / "train" / "feature_spec.json").exists()  # the fit's spec stays beside the parts

    # an instance with no objects (more instances than objects) writes only its manifest
    empty = P.run_transform(profile, tmp_path / "nothing", out, fitted, host="algo-9")
    assert empty["objects"] == [] and empty["parts"] == []

    changed = shard(small_fleet, ["cmapss/train_FD001/part-000.txt"], tmp_path / "s1")
    p = changed / "cmapss" / "train_FD001" / "part-000.txt"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-1]) + "\n")  # a reading removed after the fit
    with pytest.raises(DataError, match="content differs from the object the fit stage read"):
        P.run_transform(profile, changed, out, fitted, host="x")

    unknown = shard(small_fleet, ["cmapss/train_FD001/part-000.txt"], tmp_path / "s2")
    shutil.copy2(unknown / "cmapss" / "train_FD001" / "part-000.txt", unknown / "cmapss" / "train_FD001" / "part-009.txt")
    with pytest.raises(DataError, match=r"part-009\.txt: not one of the 5 raw objects the fit stage assigned"):
        P.run_transform(profile, unknown, out, fitted, host="x")

    other = tmp_path / "other"
    shutil.copytree(fitted, other)
    spec = json.loads((other / "feature_spec.json").read_text())
    spec["label_cap"] = 130.0
    (other / "feature_spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
    with pytest.raises(DataError, match="come from different fit runs"):
        P.run_transform(profile, shard_dir, out, other, host="x")

    with pytest.raises(DataError, match="fitted for profile cmapss/FD001, not ai4i2020/None"):
        P.run_transform(load_profile("ai4i2020"), shard_dir, out, fitted, host="x")
    (fitted / "split.json").unlink()
    with pytest.raises(DataError, match=r"split.json not found"):
        P.run_transform(profile, shard_dir, out, fitted, host="x")


def test_fit_on_a_sample_of_objects_still_splits_every_asset(small_fleet, tmp_path):
    profile = load_profile("cmapss", "FD001")
    split_all, spec_all, _ = P.run_fit(profile, small_fleet, tmp_path / "all")
    split_s, spec_s, manifest = P.run_fit(profile, small_fleet, tmp_path / "sample", sample_objects=2)
    assert split_s["fit"]["sample_objects"] == ["cmapss/train_FD001/part-000.txt", "cmapss/train_FD001/part-002.txt"]
    assert split_s["validation"] == split_all["validation"] and split_s["test"] == split_all["test"]
    assert spec_s.feature_names == spec_all.feature_names and spec_s.sensor_mean != spec_all.sensor_mean
    assert manifest["fit"] == split_s["fit"]
    # the drift baseline is still written, from the sample's training rows (drift compares bins of at
    # most MAX_BASELINE_ROWS rows per regime: a sample of objects serves as well)
    sampled = json.loads((tmp_path / "sample" / "train" / "drift_baseline.json").read_text())
    whole = json.loads((tmp_path / "all" / "train" / "drift_baseline.json").read_text())
    assert manifest["drift_baseline"] and sampled["format"] == whole["format"] and sampled != whole


def test_fit_stage_samples_objects_by_itself_above_its_row_limit(small_fleet, tmp_path, monkeypatch):
    profile = load_profile("cmapss", "FD001")
    assert P.auto_sample_objects(1, 10**9) == 0 and P.auto_sample_objects(5, P.FIT_MAX_ROWS // 5) == 0
    assert P.auto_sample_objects(100, P.FIT_MAX_ROWS // 10) == 10
    first = len(P.read_readings(P.raw_objects(profile, small_fleet, "train")[0].path, profile))
    monkeypatch.setattr(P, "FIT_MAX_ROWS", 2 * first)  # this small fleet's 3 objects are then "too many rows"
    split, _, manifest = P.run_fit(profile, small_fleet, tmp_path / "auto")
    assert split["fit"]["sample_objects"] == ["cmapss/train_FD001/part-000.txt", "cmapss/train_FD001/part-002.txt"]
    assert manifest["drift_baseline"] and (tmp_path / "auto" / "spec" / "drift_baseline.json").is_file()


def test_train_parts_for_multi_instance_training_keep_rows_and_whole_assets(fd001, tmp_path, capsys):
    frames, spec, manifest = fd001["frames"], fd001["spec"], fd001["manifest"]
    out = tmp_path / "out"
    P.write_outputs(out, frames, spec, manifest, train_parts=3)
    parts = sorted((out / "train").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    loaded = [pd.read_parquet(p) for p in parts]
    assert all(len(f) > 0.2 * len(frames["train"]) for f in loaded)  # about even in rows
    owners = [set(f["_asset"]) for f in loaded]
    assert not (owners[0] & owners[1] or owners[1] & owners[2] or owners[0] & owners[2])  # whole assets
    pd.testing.assert_frame_equal(T.read_channel(out / "train"), frames["train"].reset_index(drop=True))
    assert (out / "train" / "feature_spec.json").is_file()
    # more parts than assets: the extra parts are empty files (train.py then names the empty host)
    tiny = frames["train"][frames["train"]["_asset"].isin(sorted(set(frames["train"]["_asset"]))[:2])]
    blocks = P.split_by_asset(tiny, 3)
    assert [len(b) for b in blocks][2] == 0 and sum(len(b) for b in blocks) == len(tiny)
    with pytest.raises(SystemExit) as exit_:
        P.parse_args(["--stage", "transform", "--train-parts", "2"])
    assert exit_.value.code == 2
    assert "--train-parts applies to --stage all" in capsys.readouterr().err
