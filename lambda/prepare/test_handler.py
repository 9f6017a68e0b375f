"""prepare Lambda: pure planning on local files and the handler against moto S3."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from predmaint.modules import load_module
from training_src import search_space
from training_src.profiles import load_profile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA_BUCKET, ARTIFACTS_BUCKET = "pm-data", "pm-artifacts"


prep = load_module(HERE / "handler.py", "lambda_prepare_handler_under_test")  # as local mode loads it


def _data_dir() -> Path:
    for candidate in (os.environ.get("PREDMAINT_DATA_DIR"), REPO / "data"):
        if candidate and (Path(candidate) / "cmapss").is_dir():
            return Path(candidate)
    raise RuntimeError("no data: set PREDMAINT_DATA_DIR to a folder holding cmapss/ and ai4i2020/ "
                       "(run `predmaint data` to download them)")


def _cmapss_rows(units: int = 3, cycles: int = 5) -> str:
    lines = []
    for u in range(1, units + 1):
        for c in range(1, cycles + 1):
            values = [u, c, 0.001, -0.0002, 100.0] + [500.0 + i + c * 0.1 for i in range(21)]
            lines.append(" ".join(str(v) for v in values) + "  ")
    return "\n".join(lines) + "\n"


def _write_cmapss(root: Path, train: str | bytes | None = None, gz: bool = True) -> None:
    folder = root / "cmapss"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train_FD001.txt": train if train is not None else _cmapss_rows(),
             "test_FD001.txt": _cmapss_rows(), "RUL_FD001.txt": "112\n98\n69\n"}
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)


EVENT = {"dataset": "cmapss", "profile": "cmapss", "subset": "FD001",
         "execution": {"name": "exec-1", "start_time": "2026-11-26T12:00:00.123Z"}}


def test_plans_the_real_cmapss_and_ai4i_data():
    data = _data_dir()
    plan = prep.plan_run(EVENT, prep.LocalStore(data))
    assert plan["run_id"] == prep.make_run_id(EVENT["execution"])
    assert plan["run_id"].startswith("20261126-120000-")
    assert len(plan["jobs"]["tuning"]) <= 32, "SageMaker tuning job names are limited to 32 characters"
    assert sorted(o["role"] for o in plan["inputs"]["objects"]) == ["test", "test_rul", "train"]
    assert {c["key"]: c["rows_checked"] for c in plan["inputs"]["checks"]}["cmapss/train_FD001.txt.gz"] == 20631
    assert plan["inputs"]["manifest"][0] == {"prefix": "s3://local-data/raw/"}
    assert plan["tuning"]["objective"] == {"metric": "validation:rmse", "type": "Minimize"}
    # every processing job reads the one profile the handler writes next to the run
    assert plan["arguments"]["preprocess"] == ["--profile", "/opt/ml/processing/input/profile/profile.json",
                                               "--subset", "FD001"]
    assert plan["s3"]["profile"] == f"s3://local-artifacts/runs/{plan['run_id']}/profile/"
    assert plan["inputs"]["profile"] == load_profile("cmapss", "FD001").to_dict() and plan["profile"] == "cmapss"
    assert list(plan["tuning"]["definitions"]) == list(search_space.ALGORITHMS)
    ai4i = prep.plan_run({"dataset": "ai4i2020", "profile": "ai4i2020"}, prep.LocalStore(data))
    assert ai4i["task"] == "failure_classification"
    # the built-in XGBoost algorithm's own definition (aws/sagemaker-xgboost-container algorithm_mode/metrics.py)
    assert ai4i["tuning"]["metric_definitions"] == [
        {"Name": "validation:aucpr", "Regex": ".*\\[[0-9]+\\].*#011validation-aucpr:(\\S+)"}]


def test_ranges_come_from_the_single_search_space(tmp_path):
    _write_cmapss(tmp_path)
    plan = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    for algorithm in search_space.ALGORITHMS:
        assert plan["tuning"]["definitions"][algorithm]["ranges"] == search_space.sagemaker_parameter_ranges(algorithm)
        static = plan["tuning"]["definitions"][algorithm]["static"]
        assert json.loads(static["algorithm"]) == algorithm and json.loads(static["sagemaker_program"]) == "train.py"


def test_same_execution_plans_the_same_run(tmp_path):
    _write_cmapss(tmp_path)
    first = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    again = prep.plan_run(dict(EVENT), prep.LocalStore(tmp_path))
    assert first == again


def test_plain_and_partitioned_objects(tmp_path):
    _write_cmapss(tmp_path, gz=False)
    assert prep.plan_run(EVENT, prep.LocalStore(tmp_path))["inputs"]["checks"][0]["fully_checked"]
    # the fleet partitioned by asset into several objects under train_FD001/
    (tmp_path / "cmapss" / "train_FD001.txt").unlink()
    parts = tmp_path / "cmapss" / "train_FD001"
    parts.mkdir()
    for i in range(3):
        (parts / f"part-{i:05d}.txt.gz").write_bytes(gzip.compress(_cmapss_rows(units=1).encode()))
    (parts / "_SUCCESS").write_bytes(b"")
    plan = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    train = [o["key"] for o in plan["inputs"]["objects"] if o["role"] == "train"]
    assert train == [f"cmapss/train_FD001/part-{i:05d}.txt.gz" for i in range(3)]


@pytest.mark.parametrize(("train", "message"), [
    ("", "cmapss/train_FD001.txt.gz: no data rows"),  # a gzip of nothing
    ("1 1 0.1 0.2\n", "row 1: expected 26 values, found 4"),
    (_cmapss_rows().replace(" 100.0 ", " abc ", 1), "row 1 column 'setting_3': non-numeric value 'abc'"),
    (_cmapss_rows(units=1) + "1 6 0.1 0.2 100 " + "inf " * 21 + "\n", "row 6 column 'sensor_1': non-numeric value 'inf'"),
    (b"\xff\xfe garbage", "not a valid gzip file"),
])
def test_rejects_bad_raw_data_naming_file_row_and_column(tmp_path, train, message):
    _write_cmapss(tmp_path, train=train)
    if isinstance(train, bytes):  # write raw bytes as a broken .gz
        (tmp_path / "cmapss" / "train_FD001.txt.gz").write_bytes(train)
    with pytest.raises(prep.InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prep.plan_run(EVENT, prep.LocalStore(tmp_path))


def test_missing_columns_in_a_csv_with_header(tmp_path):
    folder = tmp_path / "ai4i2020"
    folder.mkdir()
    header = "UDI,Product ID,Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],Torque [Nm]"
    (folder / "ai4i2020.csv").write_text(header + "\n1,M1,M,298.1,308.6,1551,42.8\n")
    with pytest.raises(prep.InputError, match=r"ai4i2020/ai4i2020.csv: missing column\(s\) \['tool_wear', "
                                              r"'machine_failure'\]"):
        prep.plan_run({"dataset": "ai4i2020", "profile": "ai4i2020"}, prep.LocalStore(tmp_path))


def test_unknown_categorical_level(tmp_path):
    folder = tmp_path / "ai4i2020"
    folder.mkdir()
    rows = ["UDI,Product ID,Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],Torque [Nm],"
            "Tool wear [min],Machine failure,TWF,HDF,PWF,OSF,RNF", "1,M1,X,298.1,308.6,1551,42.8,0,0,0,0,0,0,0"]
    (folder / "ai4i2020.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(prep.InputError, match=r"row 2 column 'type': unknown level 'X'"):
        prep.plan_run({"dataset": "ai4i2020", "profile": "ai4i2020"}, prep.LocalStore(tmp_path))


@pytest.mark.parametrize(("event", "message"), [
    ([], "event must be a JSON object"),
    ({"profile": "cmapss"}, "event.dataset is required"),
    ({"dataset": "cmapss"}, "event.profile is required"),
    ({"dataset": "cmapss", "profile": "cmapss", "colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"dataset": "../etc", "profile": "cmapss"}, "must be a folder name under raw/"),
    ({"dataset": "cmapss", "profile": "cmapss", "run_id": "Not Valid!"}, "event.run_id"),
    ({"dataset": "cmapss", "profile": "nope"}, "unknown profile 'nope'"),
    ({"dataset": "cmapss", "profile": "cmapss", "subset": "FD009"}, "unknown subset 'FD009'"),
    ({"dataset": "elsewhere", "profile": "cmapss"}, "no raw object for 'test'"),
])
def test_rejects_malformed_events_and_unknown_profiles(tmp_path, event, message):
    _write_cmapss(tmp_path)
    with pytest.raises(prep.InputError, match=message):
        prep.plan_run(event, prep.LocalStore(tmp_path))


def test_refit_merges_best_trial_over_static_values(tmp_path):
    _write_cmapss(tmp_path)
    plan = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    best = {"TrainingJobDefinitionName": "linear", "TunedHyperParameters": {"alpha": "0.5"},
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:rmse", "Value": 17.2}}
    refit = prep.plan_refit(plan, best)
    assert refit["algorithm"] == "linear"
    assert refit["hyperparameters"]["alpha"] == "0.5"
    assert json.loads(refit["hyperparameters"]["fit_on"]) == "train+validation"
    assert json.loads(refit["hyperparameters"]["algorithm"]) == "linear"
    with pytest.raises(prep.InputError, match="not a planned candidate"):
        prep.plan_refit(plan, {"TrainingJobDefinitionName": "svm", "TunedHyperParameters": {"a": 1}})
    with pytest.raises(prep.InputError, match="found no best trial"):
        prep.plan_refit(plan, {"TrainingJobDefinitionName": "xgboost"})


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
                 "AWS_REGION": "eu-west-1", "DATA_BUCKET": DATA_BUCKET, "ARTIFACTS_BUCKET": ARTIFACTS_BUCKET,
                 "SOURCE_URI": "s3://assets/src.tar.gz", "POWERTOOLS_TRACE_DISABLED": "true",
                 "POWERTOOLS_METRICS_NAMESPACE": "test"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield s3


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "prepare", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:prepare"


def _upload(s3, tmp_path) -> None:
    _write_cmapss(tmp_path)
    for path in sorted((tmp_path / "cmapss").iterdir()):
        s3.put_object(Bucket=DATA_BUCKET, Key=f"raw/cmapss/{path.name}", Body=path.read_bytes())


def test_handler_plans_from_s3_pins_versions_and_writes_manifest(aws, tmp_path):
    _upload(aws, tmp_path)
    plan = prep.handler({"action": "plan", **EVENT}, Context())
    assert plan["inputs"]["object_count"] == 3 and "manifest" not in plan["inputs"]
    manifest = json.loads(aws.get_object(Bucket=ARTIFACTS_BUCKET,
                                         Key=f"runs/{plan['run_id']}/manifests/raw.json")["Body"].read())
    assert manifest[0] == {"prefix": f"s3://{DATA_BUCKET}/raw/"}
    assert sorted(manifest[1:]) == ["cmapss/RUL_FD001.txt.gz", "cmapss/test_FD001.txt.gz", "cmapss/train_FD001.txt.gz"]
    lineage = json.loads(aws.get_object(Bucket=ARTIFACTS_BUCKET, Key=f"runs/{plan['run_id']}/lineage.json")["Body"].read())
    assert all(o["version_id"] for o in lineage["objects"]), "object versions are pinned for lineage"
    assert plan["s3"]["train"] == f"s3://{DATA_BUCKET}/processed/{plan['run_id']}/train/"
    assert json.loads(plan["tuning"]["definitions"]["xgboost"]["static"]["sagemaker_submit_directory"]) == \
        "s3://assets/src.tar.gz"


def test_handler_reads_only_a_sample_of_large_objects(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLE_BYTES", "2048")
    _write_cmapss(tmp_path, train=_cmapss_rows(units=50, cycles=50), gz=False)
    for path in sorted((tmp_path / "cmapss").iterdir()):
        aws.put_object(Bucket=DATA_BUCKET, Key=f"raw/cmapss/{path.name}", Body=path.read_bytes())
    plan = prep.handler(EVENT, Context())
    assert plan["inputs"]["object_count"] == 3
    lineage = json.loads(aws.get_object(Bucket=ARTIFACTS_BUCKET, Key=f"runs/{plan['run_id']}/lineage.json")["Body"].read())
    checks = {c["key"]: c for c in lineage["checks"]}
    train = checks["cmapss/train_FD001.txt"]
    assert train["fully_checked"] is False, "a 2 KB sample of a bigger object is not the whole object"
    assert 0 < train["rows_checked"] < 50 * 50
    assert checks["cmapss/RUL_FD001.txt"]["fully_checked"] is True  # small objects are read whole


def test_handler_rejects_an_empty_object(aws, tmp_path):
    _upload(aws, tmp_path)
    aws.put_object(Bucket=DATA_BUCKET, Key="raw/cmapss/train_FD001.txt.gz", Body=b"")
    with pytest.raises(prep.InputError, match="empty object"):
        prep.handler(EVENT, Context())


def test_handler_refit_action(aws, tmp_path):
    _upload(aws, tmp_path)
    plan = prep.handler(EVENT, Context())
    out = prep.handler({"action": "refit", "plan": plan,
                        "best_training_job": {"TrainingJobDefinitionName": "xgboost",
                                              "TunedHyperParameters": {"eta": "0.05", "max_depth": "6"}}}, Context())
    assert out["algorithm"] == "xgboost" and out["hyperparameters"]["eta"] == "0.05"
    with pytest.raises(prep.InputError, match="action must be"):
        prep.handler({"action": "explode"}, Context())


def test_loads_without_sys_modules_registration():
    # local mode may exec the file without registering it; the dataclasses must still work
    module = load_module(HERE / "handler.py", "unregistered_prepare", register=False)
    assert module.Settings().job_prefix == "pm"
    assert io  # keep import used for readers of this file


def test_planned_arguments_are_accepted_by_the_training_scripts(tmp_path):
    from training_src import preprocess, train

    _write_cmapss(tmp_path)
    plan = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    args = preprocess.parse_args(plan["arguments"]["preprocess"])
    profile_file = f"{prep.PROFILE_INPUT_DIR}/{prep.PROFILE_FILE}"  # the `profile` ProcessingInput
    assert (args.profile, args.subset, args.stage) == (profile_file, "FD001", "all")
    fit = preprocess.parse_args(plan["arguments"]["fit_features"])
    transform = preprocess.parse_args(plan["arguments"]["transform_features"])
    assert (fit.stage, transform.stage, transform.profile, transform.subset) == ("fit", "transform", profile_file,
                                                                                 "FD001")
    # that path is read as a profile FILE (never looked up as a shipped name), with the handler's document
    staged = tmp_path / "input" / "profile" / "profile.json"
    staged.parent.mkdir(parents=True)
    staged.write_text(json.dumps(plan["inputs"]["profile"]))
    assert dataclasses.replace(load_profile(staged, args.subset), source="") == \
        dataclasses.replace(load_profile("cmapss", "FD001"), source="")
    assert all(len(plan["jobs"][k]) <= 63 for k in ("preprocess", "fit_features", "transform_features"))
    refit = prep.plan_refit(plan, {"TrainingJobDefinitionName": "xgboost", "TunedHyperParameters": {"eta": "0.1"}})
    # SageMaker hands script-mode hyperparameters over as --name value (sagemaker_* stay in the env)
    cli = [x for k, v in refit["hyperparameters"].items() if not k.startswith("sagemaker_")
           for x in (f"--{k}", str(json.loads(v)))]
    assert "--fit_on" in cli and "train+validation" in cli
    assert hasattr(train, "main")


def test_multi_instance_training_gets_one_train_part_per_host(tmp_path):
    from training_src import preprocess

    _write_cmapss(tmp_path)
    plan = prep.plan_run(EVENT, prep.LocalStore(tmp_path), prep.Settings(training_instances=3))
    assert plan["arguments"]["preprocess"][-2:] == ["--train-parts", "3"]
    assert preprocess.parse_args(plan["arguments"]["preprocess"]).train_parts == 3
    assert "--train-parts" not in plan["arguments"]["transform_features"]  # one part per raw object there
    single = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    assert "--train-parts" not in single["arguments"]["preprocess"]
    # sharded preprocessing of one train object cannot feed 3 training hosts: refused before any job
    with pytest.raises(prep.InputError, match=r"3 instances.*1 object.*at least 3 objects"):
        prep.plan_run(EVENT, prep.LocalStore(tmp_path), prep.Settings(processing_instances=2, training_instances=3))
    assert prep.Settings.from_env({"DATA_BUCKET": "d", "ARTIFACTS_BUCKET": "a", "TRAINING_INSTANCES": "4",
                                   "PROCESSING_INSTANCES": "2"}).training_instances == 4


def test_several_training_instances_plan_only_the_candidates_with_a_collective_fit(tmp_path):
    """The state machine synthesizes one tuning job definition per ``search_space.tuned_algorithms`` of
    the same instance count (tests/infra/test_several_instances.py): the plan holds exactly those, and a
    refit of any other candidate is refused."""
    _write_cmapss(tmp_path)
    one = prep.plan_run(EVENT, prep.LocalStore(tmp_path))
    several = prep.plan_run(EVENT, prep.LocalStore(tmp_path), prep.Settings(training_instances=2))
    assert list(one["tuning"]["definitions"]) == list(search_space.ALGORITHMS) != ["xgboost"]
    assert list(several["tuning"]["definitions"]) == list(search_space.tuned_algorithms(2)) == ["xgboost"]
    assert several["tuning"]["definitions"]["xgboost"] == one["tuning"]["definitions"]["xgboost"]
    best = {"TrainingJobDefinitionName": "hgb", "TunedHyperParameters": {"num_round": "60"}}
    assert prep.plan_refit(one, best)["algorithm"] == "hgb"
    with pytest.raises(prep.InputError, match=r"'hgb' is not a planned candidate \(\['xgboost'\]\)"):
        prep.plan_refit(several, best)


# --------------------------------------------------------------------------------------------
# the profile travels with the run: a shipped name or the document itself
# --------------------------------------------------------------------------------------------

def _user_profile() -> dict:
    """A user's profile document (not a shipped one): C-MAPSS under another name, another cap."""
    doc = copy.deepcopy(load_profile("cmapss").raw)
    doc.update(name="turbofans", description="our own fleet (marker-7f3a)", label={"type": "rul", "cap": 100})
    return doc


def test_a_profile_document_plans_like_a_shipped_profile(tmp_path):
    _write_cmapss(tmp_path)
    plan = prep.plan_run({**EVENT, "profile": _user_profile()}, prep.LocalStore(tmp_path))
    assert plan["profile"] == "turbofans" and plan["subset"] == "FD001" and plan["task"] == "rul_regression"
    assert plan["inputs"]["profile"] == {**_user_profile(), "subset": "FD001"}
    assert plan["arguments"]["preprocess"][:2] == ["--profile", "/opt/ml/processing/input/profile/profile.json"]
    # the static hyperparameters follow the document's task, not a lookup of its name among shipped ones
    static = plan["tuning"]["definitions"]["xgboost"]["static"]
    assert json.loads(static["profile"]) == "turbofans" and json.loads(static["row_stride"]) == "3"
    assert "cv_folds" not in static


def _with(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, leaf = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[leaf] = value
    return doc


@pytest.mark.parametrize(("profile", "message"), [
    (_with(_user_profile(), "label.capp", 100), r"profile event.profile: label.capp: unknown key; known keys of "
                                                r"label are \['cap', 'column', 'cv_caps', 'type'\]"),
    (_with(_user_profile(), "windows.size", [5]), r"event.profile: windows.size: unknown key"),
    (_with(_user_profile(), "format.header", "no"), r"format.header: must be true or false, got 'no'"),
    (_with(_user_profile(), "files.tets", "cmapss/x.txt"), r"files.tets: unknown key; known keys of files are"),
    (_with(_user_profile(), "split.test_fration", 0.1), r"split.test_fration: unknown key"),
    (_with(_user_profile(), "regimes.max_cluster", 3), r"regimes.max_cluster: unknown key"),
    (_with(_user_profile(), "name", "has spaces"), r"name: 'has spaces': use 1-64 letters"),
    ("fleets/pumps.json", r"looks like a file path; files are not readable in AWS"),
    ("pumps", r"unknown profile 'pumps'"),
    (42, r"event.profile must be a shipped profile's name or the profile document \(an object\), got int"),
    ([], r"event.profile must be .* got list"),
    ("", r"event.profile is required"),
])
def test_bad_profiles_in_the_event_are_refused_naming_the_key(tmp_path, profile, message):
    _write_cmapss(tmp_path)
    with pytest.raises(prep.InputError, match=message):
        prep.plan_run({**EVENT, "profile": profile}, prep.LocalStore(tmp_path))


@pytest.mark.parametrize("profile", ["cmapss", _user_profile()], ids=["shipped-name", "document"])
def test_handler_writes_the_validated_profile_next_to_the_run(aws, tmp_path, profile):
    _upload(aws, tmp_path)
    plan = prep.handler({"action": "plan", **EVENT, "profile": profile}, Context())
    run_root = f"runs/{plan['run_id']}/"
    assert plan["s3"]["profile"] == f"s3://{ARTIFACTS_BUCKET}/{run_root}profile/"
    body = aws.get_object(Bucket=ARTIFACTS_BUCKET, Key=f"{run_root}profile/profile.json")["Body"].read()
    expected = profile if isinstance(profile, dict) else load_profile(profile).raw
    assert json.loads(body) == {**expected, "subset": "FD001"}
    lineage = json.loads(aws.get_object(Bucket=ARTIFACTS_BUCKET, Key=f"{run_root}lineage.json")["Body"].read())
    assert lineage["profile"] == {"uri": f"s3://{ARTIFACTS_BUCKET}/{run_root}profile/profile.json",
                                  "sha256": hashlib.sha256(body).hexdigest()}
    # the execution state stays small: the document is in S3, not in the plan Step Functions carries
    assert "profile" not in plan["inputs"] and "marker-7f3a" not in json.dumps(plan)
    assert plan["profile"] == json.loads(body)["name"]
    assert len(json.dumps(plan)) < 16_000
