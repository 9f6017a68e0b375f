"""Bring your own fleet, end to end, with nothing but the CLI and a data file.

The fleet is neither C-MAPSS nor AI4I: 48 pumps run to failure, a CSV export whose header has spaces
and units, a categorical column (the pump model) and two operating regimes (tests/fleet/fleetgen.py).
`profile init` drafts its profile, `profile check` validates the file, `run` trains it from the
profile FILE, `score` writes every format, `serve` + `invoke` answer for one pump (equal to the batch
score). On the AWS side, the execution input `start-training` builds goes through the prepare
Lambda's handler on S3 (moto), which writes the profile next to the run, and preprocess.py runs on
the plan's arguments with that file, as a processing job would.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fleetkit import predmaint
from localkit import ServerProcess, free_port

from predmaint.modules import load_module
from training_src.profiles import load_profile

pytestmark = pytest.mark.xdist_group("fleet")  # one worker: the run is shared by the module
REPO = Path(__file__).resolve().parents[2]
PROFILE_IN_CONTAINER = "/opt/ml/processing/input/profile/profile.json"


@pytest.fixture(scope="module")
def fleet(pump_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The user's steps: draft the profile into a file, then run the pipeline from that file."""
    work = tmp_path_factory.mktemp("fleet")
    home, profile = work / "home", work / "pumps.json"
    draft = predmaint("profile", "init", str(pump_data / "pumps" / "pumps.csv"), "--output", str(profile),
                      home=home, data_dir=pump_data)
    assert draft.returncode == 0, draft.stderr
    run = predmaint("run", "--profile", str(profile), "--trials", "3", "--run-id", "pumps-1", "--quiet",
                    home=home, data_dir=pump_data)
    assert run.returncode == 0, run.stderr[-3000:]
    return {"home": home, "data": pump_data, "csv": pump_data / "pumps" / "pumps.csv", "profile": profile,
            "draft": draft, "run": run, "run_dir": home / "runs" / "pumps-1", "work": work}


def test_profile_init_drafts_the_pump_fleet(fleet: dict) -> None:
    doc = json.loads(fleet["profile"].read_text())
    assert (doc["name"], doc["task"]) == ("pumps", "rul_regression")
    assert (doc["id_column"], doc["time_column"]) == ("pump_id", "op_hours")
    assert doc["setting_columns"] == ["load", "ambient"]
    assert doc["sensor_columns"] == ["vibration", "bearing_temp", "flow", "discharge_pressure", "motor_current"]
    assert doc["categorical_columns"] == {"pump_model": ["A", "B"]}
    assert doc["format"] == {"type": "csv", "header": True, "rename": {
        "Pump ID": "pump_id", "Op Hours": "op_hours", "Load [%]": "load", "Ambient [C]": "ambient",
        "Pump Model": "pump_model", "Vibration [mm/s]": "vibration", "Bearing Temp [C]": "bearing_temp",
        "Flow [l/min]": "flow", "Discharge Pressure [bar]": "discharge_pressure", "Motor Current [A]": "motor_current"}}
    assert doc["files"] == {"train": "pumps/pumps.csv"} and doc["label"]["type"] == "rul" and doc["regimes"]
    assert "pump_id (48 assets" in fleet["draft"].stderr and "wrote" in fleet["draft"].stderr
    check = predmaint("profile", "check", str(fleet["profile"]), str(fleet["csv"]), home=fleet["home"],
                      data_dir=fleet["data"])
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"ok: {fleet['csv']} matches profile pumps as its train file: ")
    assert "48 assets" in check.stdout


def test_the_run_uses_the_profile_file_as_written(fleet: dict) -> None:
    run_dir, run = fleet["run_dir"], fleet["run"]
    assert Path(run.stdout.strip().splitlines()[-1]) == run_dir / "evaluation.json"
    assert run.stderr == "", "--quiet: no progress and no log lines"
    written = json.loads((run_dir / "profile" / "profile.json").read_text())
    assert written == {**json.loads(fleet["profile"].read_text()), "subset": None}
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["profile"] == "pumps" and "profile" not in plan["inputs"]
    assert plan["arguments"]["preprocess"] == ["--profile", PROFILE_IN_CONTAINER]
    spec = json.loads((run_dir / "model" / "feature_spec.json").read_text())
    assert len(spec["centroids"]) == 2, "two operating regimes, from load and ambient"
    assert spec["categorical"] == {"pump_model": ["A", "B"]}
    assert {"pump_model_A", "pump_model_B"} <= set(spec["feature_names"])
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert report["profile"] == "pumps" and report["regression_metrics"]["r2"]["value"] > 0.3
    assert json.loads((run_dir / "decision.json").read_text())["status"] == "Approved"
    models = json.loads(predmaint("models", "--json", home=fleet["home"], data_dir=fleet["data"]).stdout)
    digest = hashlib.sha256((run_dir / "profile" / "profile.json").read_bytes()).hexdigest()
    assert models[0]["lineage"]["profile"] == "pumps" and models[0]["lineage"]["profile_sha256"] == digest


def test_score_the_fleet_in_every_format(fleet: dict, tmp_path: Path) -> None:
    import pandas as pd

    outputs = {fmt: tmp_path / f"scores.{fmt}" for fmt in ("csv", "jsonl", "parquet")}
    for out in outputs.values():
        done = predmaint("score", "--input", str(fleet["csv"]), "--output", str(out), home=fleet["home"],
                         data_dir=fleet["data"])
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(out) and "scored 48 assets" in done.stderr
    by_csv = pd.read_csv(outputs["csv"])
    by_parquet = pd.read_parquet(outputs["parquet"])
    by_jsonl = pd.read_json(outputs["jsonl"], lines=True)
    assert list(by_parquet.columns) == ["asset_id", "rul"] and by_parquet["asset_id"].dtype == np.int64
    assert by_parquet["asset_id"].tolist() == by_csv["asset_id"].tolist() == list(range(101, 149))
    assert np.allclose(by_parquet["rul"], by_csv["rul"], atol=5e-4)
    assert np.allclose(by_jsonl["rul"], by_csv["rul"], atol=5e-4)
    bad = predmaint("score", "--input", str(fleet["csv"]), "--output", str(tmp_path / "scores.txt"),
                    home=fleet["home"], data_dir=fleet["data"])
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "unknown format '.txt'; name it .csv, .jsonl or .parquet" in bad.stderr
    assert not (tmp_path / "scores.txt").exists()


def _one_pump(fleet: dict, pump: str, path: Path) -> Path:
    """The raw export's rows of one pump (the historian's own header), as a user would cut them."""
    with open(fleet["csv"], newline="") as src, open(path, "w", newline="") as dst:
        reader = csv.reader(src)
        w = csv.writer(dst)
        w.writerow(next(reader))
        w.writerows(r for r in reader if r[0] == pump)
    return path


def _serve_and_invoke(fleet: dict, tmp_path: Path, profile: Path, model: str) -> tuple[object, str]:
    """`serve --model` and `invoke --file` with pump 105's rows: (the invoke process, the server's log)."""
    port = free_port()
    server = ServerProcess(["--home", str(fleet["home"]), "serve", "--model", model, "--workers", "1"], port,
                           tmp_path / "serve.log")
    try:
        server.wait_ping(200)
        got = predmaint("invoke", "--file", str(_one_pump(fleet, "105", tmp_path / "pump-105.csv")), "--profile",
                        str(profile), "--json", "--url", f"http://127.0.0.1:{port}", home=fleet["home"],
                        data_dir=fleet["data"])
    finally:
        server.stop()
    return got, server.output()


def _assert_equals_batch_score(fleet: dict, tmp_path: Path, got, model: str) -> None:
    """The endpoint's answer for pump 105 equals `score --model` of the whole fleet for it."""
    (pred,) = json.loads(got.stdout)["predictions"]
    scores = tmp_path / "scores.csv"
    done = predmaint("score", "--model", model, "--input", str(fleet["csv"]), "--output", str(scores),
                     home=fleet["home"], data_dir=fleet["data"])
    assert done.returncode == 0, done.stderr
    with open(scores, newline="") as fh:
        batch = {row["asset_id"]: float(row["rul"]) for row in csv.DictReader(fh)}
    assert pred["asset_id"] == "105" and abs(pred["rul"] - batch["105"]) < 1e-3


def test_serve_and_invoke_a_fleet_with_a_categorical_column(fleet: dict, tmp_path: Path) -> None:
    """The endpoint reads each reading's categorical value (the pump model) like the batch code does."""
    got, log = _serve_and_invoke(fleet, tmp_path, fleet["profile"], "1")
    assert got.returncode == 0, got.stderr + log[-2000:]
    _assert_equals_batch_score(fleet, tmp_path, got, "1")


def test_serve_and_invoke_the_fleet_without_its_categorical_column(fleet: dict, tmp_path: Path) -> None:
    """The user reviews the draft and leaves the pump model out: a second run from the edited file, served."""
    doc = json.loads(fleet["profile"].read_text())
    doc["exclude_columns"] = [*doc["exclude_columns"], *doc.pop("categorical_columns")]
    edited = fleet["work"] / "pumps-numeric.json"
    edited.write_text(json.dumps(doc, indent=2))
    # relative home and data folders, from another working directory (the script server runs elsewhere)
    work = fleet["work"]
    run = predmaint("run", "--profile", edited.name, "--trials", "1", "--run-id", "pumps-2", "--quiet",
                    home=fleet["home"].relative_to(work), data_dir=Path(os.path.relpath(fleet["data"], work)), cwd=work)
    assert run.returncode == 0, run.stderr[-3000:]
    assert Path(run.stdout.strip()) == fleet["home"] / "runs" / "pumps-2" / "evaluation.json"
    version = json.loads((fleet["home"] / "runs" / "pumps-2" / "decision.json").read_text())["model_version"]
    got, log = _serve_and_invoke(fleet, tmp_path, edited, version)
    assert got.returncode == 0, got.stderr + log[-2000:]
    _assert_equals_batch_score(fleet, tmp_path, got, version)


# ------------------------------------------------------------------------------- the AWS side
class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "prepare", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:prepare"


def test_the_prepare_lambda_plans_the_fleet_from_s3(fleet: dict, tmp_path: Path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    from predmaint import aws
    from training_src import preprocess

    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "fleet_prepare_under_test")
    profile = load_profile(fleet["profile"])
    # what `predmaint start-training --dataset pumps --profile pumps.json` sends (a file: its document)
    execution_input = json.loads(aws.execution_input("pumps", profile.to_dict(), profile.subset))
    assert execution_input == {"dataset": "pumps", "subset": None,
                               "profile": {**json.loads(fleet["profile"].read_text()), "subset": None}}
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
                 "AWS_REGION": "eu-west-1", "DATA_BUCKET": "pm-data", "ARTIFACTS_BUCKET": "pm-artifacts",
                 "SOURCE_URI": "s3://assets/src.tar.gz", "POWERTOOLS_TRACE_DISABLED": "true",
                 "POWERTOOLS_METRICS_NAMESPACE": "test"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        for bucket in ("pm-data", "pm-artifacts"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket="pm-data", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="pm-data", Key="raw/pumps/pumps.csv", Body=fleet["csv"].read_bytes())
        # the Prepare task's payload: the merged execution input plus the execution's context
        plan = prep.handler({"action": "plan", "dataset": execution_input["dataset"],
                             "profile": execution_input["profile"], "subset": execution_input["subset"],
                             "execution": {"name": "pumps-1", "start_time": "2026-11-30T12:00:00Z"}}, _Context())
        root = f"runs/{plan['run_id']}/"
        stored = s3.get_object(Bucket="pm-artifacts", Key=f"{root}profile/profile.json")["Body"].read()
        manifest = json.loads(s3.get_object(Bucket="pm-artifacts", Key=f"{root}manifests/raw.json")["Body"].read())
    assert (plan["profile"], plan["task"], plan["subset"]) == ("pumps", "rul_regression", None)
    assert plan["s3"]["profile"] == f"s3://pm-artifacts/{root}profile/"
    assert plan["arguments"]["preprocess"] == ["--profile", PROFILE_IN_CONTAINER]
    assert plan["inputs"]["object_count"] == 1 and "profile" not in plan["inputs"]
    assert len(json.dumps(plan)) < 16_000, "the execution state carries the plan, not the profile"
    assert json.loads(stored) == execution_input["profile"]
    assert manifest == [{"prefix": "s3://pm-data/raw/"}, "pumps/pumps.csv"]
    static = plan["tuning"]["definitions"]["xgboost"]["static"]
    assert json.loads(static["row_stride"]) == "3", "a run-to-failure fleet's trials, whatever its name"

    # the processing job: `raw` from the manifest, `profile` from s3.profile, the plan's arguments
    inputs = tmp_path / "input"
    (inputs / "raw" / "pumps").mkdir(parents=True)
    (inputs / "raw" / manifest[1]).write_bytes(fleet["csv"].read_bytes())
    (inputs / "profile").mkdir()
    (inputs / "profile" / "profile.json").write_bytes(stored)
    argv = [str(inputs / "profile" / "profile.json") if a == PROFILE_IN_CONTAINER else a
            for a in plan["arguments"]["preprocess"]]
    out = tmp_path / "output"
    assert preprocess.main([*argv, "--input-dir", str(inputs), "--output-dir", str(out)]) == 0
    written = json.loads((out / "manifest.json").read_text())
    assert written["profile"] == "pumps" and (out / "train" / "train.parquet").is_file()
    assert json.loads((out / "train" / "feature_spec.json").read_text())["categorical"] == {"pump_model": ["A", "B"]}
