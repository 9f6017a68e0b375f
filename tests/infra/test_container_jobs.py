"""The pipeline's SageMaker jobs run as the SageMaker XGBoost container runs them, in its Python environment.

One small run, each job in a private mount namespace where a temporary folder is the container's
``/opt`` (tests/container/containerkit.py): the plan comes from the prepare Lambda's planner on a
25-engine FD001 fleet (two training hosts planned); S3 is a folder (``FakeS3``); the code is the
``sourcedir.tar.gz`` that stacks/assets.py builds for the stacks.

- Processing (preprocess.py, evaluate.py): the ``ContainerEntrypoint`` and ``ContainerArguments`` of
  the synthesized template's Preprocess and Evaluate states, run as given, with their
  ProcessingInputs downloaded to (and ProcessingOutputs uploaded from) their LocalPaths.
- Training (train.py): the container's script-mode runner (sagemaker-containers' training
  environment and ``run_module``, tests/container/sm_xgboost.py) reading hyperparameters.json,
  inputdataconfig.json and resourceconfig.json written as SageMaker writes them: a tuning trial
  (its objective line matched by the plan's metric regex), then the refit with the best trial's
  values (``plan_refit``: fit on train+validation) on two hosts, algo-1 and algo-2, each with its
  shard of the train channel (ShardedByS3Key), joined into one XGBoost collective.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from predmaint.modules import load_module
from stacks import assets
from tests.infra.test_assertions import definition

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "container"))

import containerkit as ck  # noqa: E402

HOSTS = ["algo-1", "algo-2"]
TRAIN_UNITS = 25


class FakeS3:
    """S3 as a folder: ``s3://bucket/key`` is ``root/bucket/key``."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, uri: str) -> Path:
        assert uri.startswith("s3://"), uri
        return self.root / uri[len("s3://"):]

    def download(self, uri: str, local: Path) -> None:
        src = self.path(uri)
        local.mkdir(parents=True, exist_ok=True)
        if src.is_file():
            shutil.copy2(src, local / src.name)
        else:
            shutil.copytree(src, local, dirs_exist_ok=True)

    def download_manifest(self, uri: str, local: Path) -> None:
        """A ManifestFile input: the listed keys, relative to the manifest's prefix."""
        prefix, *keys = json.loads(self.path(uri).read_text())
        for key in keys:
            target = local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.path(prefix["prefix"] + key), target)

    def upload(self, local: Path, uri: str) -> None:
        shutil.copytree(local, self.path(uri), dirs_exist_ok=True)


def _resolve(path: str, state: dict[str, Any]) -> Any:
    """A state's JSONPath (``$.plan.arguments.preprocess``) against the execution state."""
    value: Any = state
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


@pytest.fixture(scope="module")
def run(synth, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The execution state of a small run: plan, fake S3 holding the raw fleet and the code."""
    ck.container_python()
    root = tmp_path_factory.mktemp("container-jobs")
    s3 = FakeS3(root / "s3")
    raw = root / "raw"  # 25 training engines (the whole test set): a real fleet, small
    (raw / "cmapss").mkdir(parents=True)
    with gzip.open(data_dir / "cmapss" / "train_FD001.txt.gz", "rt") as src, \
            open(raw / "cmapss" / "train_FD001.txt", "w") as dst:
        dst.writelines(line for line in src if line.split() and int(line.split()[0]) <= TRAIN_UNITS)
    for name in ("test_FD001.txt.gz", "RUL_FD001.txt.gz"):
        shutil.copy(data_dir / "cmapss" / name, raw / "cmapss" / name)
    source = root / "code" / "sourcedir.tar.gz"
    source.parent.mkdir()
    source.write_bytes(assets.source_tarball_bytes(assets.training_source_files()))

    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "container_jobs_prepare")
    settings = prep.Settings(source_uri=str(source), training_instances=len(HOSTS))
    plan = prep.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001", "run_id": "container-jobs"},
                         prep.LocalStore(raw), settings)
    s3.upload(raw, plan["s3"]["raw_root"])
    s3.path(plan["s3"]["raw_manifest"]).parent.mkdir(parents=True, exist_ok=True)
    s3.path(plan["s3"]["raw_manifest"]).write_text(json.dumps(plan["inputs"]["manifest"]))  # Prepare writes it
    profile = s3.path(plan["s3"]["profile"] + prep.PROFILE_FILE)  # and the run's validated profile
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(json.dumps(plan["inputs"]["profile"], indent=1))
    hosts = ck.hosts_file(root / "hosts", HOSTS)
    return {"root": root, "s3": s3, "source": source, "hosts": hosts, "plan": plan, "results": {},
            "states": definition(synth)["States"]}


def _processing_job(run: dict[str, Any], state_name: str, name: str) -> subprocess.CompletedProcess:
    """Run one processing state's container as SageMaker would; upload its outputs."""
    params = run["states"][state_name]["Parameters"]
    app = params["AppSpecification"]
    command = [*app["ContainerEntrypoint"], *_resolve(app["ContainerArguments.$"], run)]
    opt = run["root"] / name / "opt"
    for spec in params["ProcessingInputs"]:
        s3in, local = spec["S3Input"], opt.parent / spec["S3Input"]["LocalPath"].lstrip("/")
        if spec["InputName"] == "code":  # the sourcedir.tar.gz asset of the stack
            local.mkdir(parents=True)
            shutil.copy2(run["source"], local)
        elif s3in["S3DataType"] == "ManifestFile":
            run["s3"].download_manifest(_resolve(s3in["S3Uri.$"], run), local)
        else:
            run["s3"].download(_resolve(s3in["S3Uri.$"], run), local)
    outputs = params["ProcessingOutputConfig"]["Outputs"]
    for out in outputs:
        (opt.parent / out["S3Output"]["LocalPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    ck.write_json(opt / "ml" / "config" / "resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    proc = ck.run(ck.in_namespace(opt, run["hosts"], command), ck.environment(run["root"] / name / "site"))
    if proc.returncode == 0:
        for out in outputs:
            run["s3"].upload(opt.parent / out["S3Output"]["LocalPath"].lstrip("/"),
                             _resolve(out["S3Output"]["S3Uri.$"], run))
    return proc


def _training_host(run: dict[str, Any], name: str, host: str, hosts: list[str], hyperparameters: dict[str, str],
                   channels: dict[str, list[Path]], distribution: dict[str, str], port: int) -> subprocess.Popen:
    """One training host's container: /opt/ml/input as SageMaker lays it out, then the script-mode runner."""
    opt = run["root"] / name / host / "opt"
    ml = opt / "ml"
    ck.write_json(ml / "input" / "config" / "hyperparameters.json", hyperparameters)
    ck.write_json(ml / "input" / "config" / "inputdataconfig.json", {
        ch: {"TrainingInputMode": "File", "S3DistributionType": distribution[ch], "RecordWrapperType": "None"}
        for ch in channels})
    ck.write_json(ml / "input" / "config" / "resourceconfig.json", {
        "current_host": host, "current_instance_type": "ml.m5.xlarge", "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        "network_interface_name": "eth0"})
    for ch, files in channels.items():
        (ml / "input" / "data" / ch).mkdir(parents=True)
        for f in files:
            shutil.copy2(f, ml / "input" / "data" / ch / f.name)
    for d in ("model", "output/data", "checkpoints"):  # CheckpointConfig is declared: SageMaker creates it
        (ml / d).mkdir(parents=True, exist_ok=True)
    env = ck.environment(run["root"] / name / host / "site", PREDMAINT_TRACKER_PORT=str(port),
                         PREDMAINT_TRACKER_TIMEOUT="120")
    return subprocess.Popen(ck.in_namespace(opt, run["hosts"], [str(ck.PYTHON), str(ck.SM_XGBOOST), "train"]),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")


def _training_job(run: dict[str, Any], name: str, hyperparameters: dict[str, str], hosts: list[str]) -> dict:
    """A training job on ``hosts``: train sharded by S3 key when there are several, validation replicated."""
    prefix = run["s3"].path(run["plan"]["s3"]["train"])
    train = sorted(p for p in prefix.iterdir() if p.is_file())
    validation = sorted(p for p in run["s3"].path(run["plan"]["s3"]["validation"]).iterdir() if p.is_file())
    distribution = {"train": "ShardedByS3Key" if len(hosts) > 1 else "FullyReplicated",
                    "validation": "FullyReplicated"}
    port = ck.free_port()
    procs = {h: _training_host(run, name, h, hosts, hyperparameters,
                               {"train": train[i::len(hosts)], "validation": validation}, distribution, port)
             for i, h in enumerate(hosts)}
    out = {}
    for h, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        out[h] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    model = run["root"] / name / hosts[0] / "opt" / "ml" / "model"
    uri = f"{run['plan']['s3']['model_output']}{name}/output/model.tar.gz"
    if all(p.returncode == 0 for p in out.values()):  # SageMaker tars the first host's model directory
        run["s3"].path(uri).parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(run["s3"].path(uri), "w:gz") as tar:
            for f in sorted(model.iterdir()):
                tar.add(f, arcname=f.name)
    return {"procs": out, "model_dir": model, "model_uri": uri}


def _trial_hyperparameters(plan: dict[str, Any]) -> dict[str, str]:
    """A tuning trial's hyperparameters.json: the definition's static values (JSON-encoded, as the plan
    holds them) and one value from each tuned range, as SageMaker passes them (plain strings)."""
    definition_ = plan["tuning"]["definitions"]["xgboost"]
    tuned = {r["Name"]: r["MinValue"] for kind in ("IntegerParameterRanges", "ContinuousParameterRanges")
             for r in definition_["ranges"].get(kind, [])}
    tuned.update(eta="0.1", subsample="1.0", colsample_bytree="1.0")
    return {**definition_["static"], **tuned, "_tuning_objective_metric": plan["tuning"]["objective"]["metric"]}


def test_preprocess_trial_refit_on_two_hosts_and_evaluate(run) -> None:
    plan = run["plan"]
    assert "--train-parts" in plan["arguments"]["preprocess"]  # two training hosts planned

    pre = _processing_job(run, "Preprocess", "preprocess")
    assert pre.returncode == 0, pre.stderr[-3000:]
    train_objects = sorted(p.name for p in run["s3"].path(plan["s3"]["train"]).iterdir())
    assert len([n for n in train_objects if n.endswith(".parquet")]) == 2 and "feature_spec.json" in train_objects

    hp = _trial_hyperparameters(plan)
    assert json.loads(hp["sagemaker_program"]) == "train.py" and json.loads(hp["sagemaker_submit_directory"])
    trial = _training_job(run, "trial-1", {**hp, "nthread": "1"}, ["algo-1"])["procs"]["algo-1"]
    assert trial.returncode == 0, trial.stderr[-3000:]
    # the built-in algorithm's regex, on the log as SageMaker reads it (the tab rendered #011)
    regex = plan["tuning"]["metric_definitions"][0]["Regex"]
    objective = re.findall(regex, trial.stdout.replace("\t", "#011"))
    assert objective and 5.0 < float(objective[-1]) < 60.0, trial.stdout[-2000:]

    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "container_jobs_prepare_refit")
    tuned = {k: v for k, v in hp.items() if k not in plan["tuning"]["definitions"]["xgboost"]["static"]
             and not k.startswith("_")}
    refit_plan = prep.plan_refit(plan, {"TrainingJobDefinitionName": "xgboost", "TunedHyperParameters": tuned,
                                        "FinalHyperParameterTuningJobObjectiveMetric": {"Value": objective[-1]}})
    # both hosts share this machine's two cores: one thread each (SageMaker hosts have their own cores)
    refit = _training_job(run, "refit", {**refit_plan["hyperparameters"], "nthread": "1"}, HOSTS)
    for host, proc in refit["procs"].items():
        assert proc.returncode == 0, (host, proc.stderr[-3000:])
    meta = json.loads((refit["model_dir"] / "model_meta.json").read_text())
    assert meta["fit_on"] == "train+validation" and meta["distributed"]["hosts"] == HOSTS
    assert meta["distributed"]["mode"] == "xgboost collective"
    # the interval calibration runs in the container's Python too (first host: its shard + validation)
    assert meta["intervals"]["format"] == "predmaint-intervals/1" and meta["intervals"]["bins"]
    assert not any((run["root"] / "refit" / "algo-2" / "opt" / "ml" / "model").iterdir())  # the first host writes
    assert (refit["model_dir"] / "code" / "training_src" / "predmaint_serving" / "codec.py").is_file()
    run["results"]["refit"] = {"ModelArtifacts": {"S3ModelArtifacts": refit["model_uri"]}}

    ev = _processing_job(run, "Evaluate", "evaluate")
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads((run["s3"].path(plan["s3"]["evaluation"]) / "evaluation.json").read_text())
    assert 5.0 < report["regression_metrics"]["rmse"]["value"] < 60.0


def test_an_hgb_trial_trains_and_serves_in_the_container(run, data_dir: Path) -> None:
    """The scikit-learn candidate (``hgb``) as a tuning trial through the container's script-mode runner (its
    scikit-learn, Python 3.12), then its artifact served by the container's own serving stack: same answer
    as the local hooks (Python 3.11, another scikit-learn), which read the same JSON trees."""
    plan = run["plan"]
    if not run["s3"].path(plan["s3"]["train"]).is_dir():  # this test alone: the Preprocess job first
        pre = _processing_job(run, "Preprocess", "preprocess")
        assert pre.returncode == 0, pre.stderr[-3000:]
    # the run's plan is for two training hosts, where only candidates with a collective fit are tuned
    # (search_space.tuned_algorithms): hgb's definition is a one-host plan's
    assert "hgb" not in plan["tuning"]["definitions"]
    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "container_jobs_prepare_one_host", register=False)
    one_host = prep.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001", "run_id": "container-jobs"},
                             prep.LocalStore(run["root"] / "raw"), prep.Settings(source_uri=str(run["source"])))
    definition_ = one_host["tuning"]["definitions"]["hgb"]
    tuned = {r["Name"]: r["MinValue"] for kind in ("IntegerParameterRanges", "ContinuousParameterRanges")
             for r in definition_["ranges"].get(kind, [])}
    tuned.update(num_round="60", eta="0.1")  # hgb's max_iter and learning_rate, under their wire names
    hp = {**definition_["static"], **tuned, "_tuning_objective_metric": plan["tuning"]["objective"]["metric"],
          "nthread": "1"}
    job = _training_job(run, "hgb-trial", hp, ["algo-1"])
    trial = job["procs"]["algo-1"]
    assert trial.returncode == 0, trial.stderr[-3000:]
    objective = re.findall(plan["tuning"]["metric_definitions"][0]["Regex"], trial.stdout.replace("\t", "#011"))
    assert objective and 5.0 < float(objective[-1]) < 60.0, trial.stdout[-2000:]
    doc = json.loads((job["model_dir"] / "hgb-model.json").read_text())
    assert doc["format"] == "predmaint-hgb-trees/1" and doc["sklearn_version"].startswith("1.8.")  # the container's

    from stacks.config import AppConfig
    from stacks.state_machine import hosting_environment
    from tests.infra.conftest import CDK_CONTEXT
    from training_src import inference
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    base = run["root"] / "hgb-hosting"
    shutil.copytree(job["model_dir"], base / "model")
    profile = load_profile("cmapss", "FD001")
    test = read_table(resolve_file(data_dir, profile.file("test")), profile)
    readings = test[test["unit"] == 3].drop(columns=["unit"]).to_dict("records")
    body = json.dumps({"instances": [{"asset_id": "engine-3", "readings": readings}]})
    env = ck.environment(base / "site", **{**hosting_environment(AppConfig.from_context(CDK_CONTEXT)),
                                           "SAGEMAKER_BASE_DIR": str(base),
                                           "SAGEMAKER_SUBMIT_DIRECTORY": str(base / "model" / "code"),
                                           "PROBE_BODY": body})
    proc = subprocess.run([str(ck.PYTHON), str(ck.SM_XGBOOST), "probe"], env=env, capture_output=True, text=True,
                          timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["statuses"] == [200, 200] and probe["compiled_forest"], probe  # forest.c walks hgb trees too
    model = inference.model_fn(str(job["model_dir"]))
    status, out, _ = inference.handle(model, body.encode(), "application/json", None)
    assert status == 200 and probe["answers"][0] == probe["answers"][1] == json.loads(out)
