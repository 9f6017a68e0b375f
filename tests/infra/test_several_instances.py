"""Several instances (``predmaint.processing.instance_count`` and ``predmaint.training.instance_count`` > 1):
one extra synthesis of the app.

With more than one processing instance the pipeline runs FitFeatures (one instance, every raw object:
split assignment + feature spec) -> TransformFeatures (every instance, raw objects ``ShardedByS3Key``,
the fit output replicated) instead of the single Preprocess job. Same Retry/Catch, encryption,
isolation and IAM as every other job; cdk-nag runs in ``build`` and cfn-lint on the templates.
With more than one training instance the tuning job tries only the candidates with a collective fit
(``search_space.tuned_algorithms``), and the prepare Lambda, given the same count, plans exactly those.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import subprocess
from typing import Any

import pytest

from predmaint.modules import load_module
from tests.conftest import _data_dir
from tests.infra.conftest import CDK_CONTEXT, HASH_RE, REPO, Synth, synth_app
from tests.infra.test_nag_and_lint import _cfn_lint
from tests.infra.test_security import _state_machine_definition
from training_src import search_space

INSTANCES = 4
TRAINING_INSTANCES = 2


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx["predmaint.processing.instance_count"] = str(INSTANCES)  # -c overrides, as on the command line
    ctx["predmaint.processing.fit_sample_objects"] = "50"
    ctx["predmaint.training.instance_count"] = str(TRAINING_INSTANCES)
    return synth_app(tmp_path_factory.mktemp("cdk.out.sharded"), ctx)


@pytest.fixture(scope="module")
def plan(sharded: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The prepare Lambda's plan under the synthesized function's own instance counts, for FD001's
    training fleet partitioned by asset into one object per training host (which sharded preprocessing
    needs: one train part per raw object)."""
    (env,) = [f["Properties"]["Environment"]["Variables"]
              for f in sharded.resources("Training", "AWS::Lambda::Function").values()
              if "TRAINING_INSTANCES" in f["Properties"].get("Environment", {}).get("Variables", {})]
    assert (env["TRAINING_INSTANCES"], env["PROCESSING_INSTANCES"]) == (str(TRAINING_INSTANCES), str(INSTANCES))
    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "prepare_for_sharded", register=False)
    raw = tmp_path_factory.mktemp("raw-parts") / "cmapss"
    (raw / "train_FD001").mkdir(parents=True)
    with gzip.open(_data_dir() / "cmapss" / "train_FD001.txt.gz", "rt") as src:
        lines = [line for line in src if line.split()]
    for part in range(TRAINING_INSTANCES):  # assets spread over the parts by unit number
        rows = [line for line in lines if int(line.split()[0]) % TRAINING_INSTANCES == part]
        (raw / "train_FD001" / f"part-{part}.txt").write_text("".join(rows))
    for name in ("test_FD001.txt.gz", "RUL_FD001.txt.gz"):
        shutil.copy(_data_dir() / "cmapss" / name, raw / name)
    settings = prep.Settings(training_instances=int(env["TRAINING_INSTANCES"]),
                             processing_instances=int(env["PROCESSING_INSTANCES"]))
    return prep.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"},
                         prep.LocalStore(raw.parent), settings)


def _resolves(plan: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Every ``$.plan.`` path a state reads, each checked to exist (and be non-empty) in ``plan``."""
    paths = [v for v in json.dumps(state).split('"') if v.startswith("$.plan.")]
    for path in paths:
        node: Any = {"plan": plan}
        for part in path[2:].split("."):
            node = node[part]
        assert node, path
    return paths


@pytest.fixture(scope="module")
def states(sharded: Synth) -> dict[str, Any]:
    return _state_machine_definition(sharded)["States"]


def _inputs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["InputName"]: i["S3Input"] for i in state["Parameters"]["ProcessingInputs"]}


def _outputs(state: dict[str, Any]) -> list[str]:
    return [o["OutputName"] for o in state["Parameters"]["ProcessingOutputConfig"]["Outputs"]]


def test_default_config_keeps_the_single_preprocess_job(synth) -> None:
    from stacks.state_machine import state_order

    definition = _state_machine_definition(synth)
    assert "Preprocess" in state_order(definition)
    assert not {"FitFeatures", "TransformFeatures"} & set(definition["States"])


def test_fit_then_transform_replace_preprocess(sharded: Synth, states: dict[str, Any]) -> None:
    from stacks.state_machine import state_order

    order = state_order(_state_machine_definition(sharded))
    assert order[:6] == ["ProfileGiven?", "ApplyDatasetDefault", "MergeInput", "Prepare", "FitFeatures", "TransformFeatures"]
    assert "Preprocess" not in states
    for name in ("FitFeatures", "TransformFeatures"):
        assert states[name]["Resource"].endswith("sagemaker:createProcessingJob.sync")


def test_fit_features_is_one_instance_over_every_raw_object(states: dict[str, Any]) -> None:
    fit = states["FitFeatures"]["Parameters"]
    assert fit["ProcessingJobName.$"] == "$.plan.jobs.fit_features"
    assert fit["AppSpecification"]["ContainerArguments.$"] == "$.plan.arguments.fit_features"
    assert fit["AppSpecification"]["ContainerEntrypoint"][-1] == "preprocess.py"
    assert fit["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    raw = _inputs(states["FitFeatures"])["raw"]
    assert (raw["S3Uri.$"], raw["S3DataType"], raw["S3DataDistributionType"]) == (
        "$.plan.s3.raw_manifest", "ManifestFile", "FullyReplicated")
    assert _outputs(states["FitFeatures"]) == ["train", "spec"]
    assert fit["Environment"] == {"PREDMAINT_FIT_SAMPLE_OBJECTS": "50"}


def test_transform_features_shards_raw_and_replicates_the_fit(states: dict[str, Any]) -> None:
    tf = states["TransformFeatures"]["Parameters"]
    assert tf["ProcessingJobName.$"] == "$.plan.jobs.transform_features"
    assert tf["AppSpecification"]["ContainerArguments.$"] == "$.plan.arguments.transform_features"
    assert tf["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == INSTANCES
    inputs = _inputs(states["TransformFeatures"])
    assert inputs["raw"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["raw"]["S3Uri.$"] == "$.plan.s3.raw_manifest"
    assert (inputs["spec"]["S3Uri.$"], inputs["spec"]["S3DataDistributionType"], inputs["spec"]["LocalPath"]) == (
        "$.plan.s3.spec", "FullyReplicated", "/opt/ml/processing/input/spec")  # preprocess.py's --fitted default
    assert inputs["code"]["S3DataDistributionType"] == "FullyReplicated"
    assert _outputs(states["TransformFeatures"]) == ["train", "validation", "test", "baseline"]
    assert "Environment" not in tf
    assert states["TransformFeatures"]["ResultPath"] == "$.results.preprocess"


def test_both_jobs_are_guarded_encrypted_and_isolated(sharded: Synth, states: dict[str, Any]) -> None:
    for name in ("FitFeatures", "TransformFeatures"):
        st = states[name]
        # throttling is retried through the Cause check (see test_assertions), permanent errors are not
        assert "Retry" not in st, name
        (catch,) = st["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and states[catch["Next"]]["Default"] == "NotifyFailure"
        p = st["Parameters"]
        assert p["NetworkConfig"] == {"EnableInterContainerTrafficEncryption": True, "EnableNetworkIsolation": True}
        assert p["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]
        assert p["ProcessingOutputConfig"]["KmsKeyId"]
        assert all(o["S3Output"]["S3UploadMode"] == "EndOfJob" for o in p["ProcessingOutputConfig"]["Outputs"])
        assert name in sharded.built.training.pipeline.task_states


def test_every_plan_path_the_jobs_use_exists_in_a_real_plan(states: dict[str, Any], plan: dict[str, Any]) -> None:
    """The prepare Lambda plans the job names and arguments these states read."""
    for name in ("FitFeatures", "TransformFeatures"):
        assert _resolves(plan, states[name])
    assert plan["arguments"]["transform_features"][-2:] == ["--stage", "transform"]


def test_several_training_instances_tune_only_what_the_plan_defines(states: dict[str, Any],
                                                                     plan: dict[str, Any]) -> None:
    """One tuning job definition per candidate with a collective fit, each reading the plan's definition
    of that candidate; the prepare Lambda under the same count plans exactly those (a definition the
    plan lacks would be a States.Runtime error at the Tune state, which no Catch sees)."""
    tune = states["Tune"]["Parameters"]
    names = [d["DefinitionName"] for d in tune["TrainingJobDefinitions"]]
    assert names == list(search_space.tuned_algorithms(TRAINING_INSTANCES)) == ["xgboost"]
    assert list(plan["tuning"]["definitions"]) == names
    assert _resolves(plan, states["Tune"])
    for d in tune["TrainingJobDefinitions"]:
        assert d["ResourceConfig"]["InstanceCount"] == TRAINING_INSTANCES
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in d["InputDataConfig"]}
        assert channels["train"]["S3DataDistributionType"] == "ShardedByS3Key"  # each host its own part
        assert channels["validation"]["S3DataDistributionType"] == "FullyReplicated"
    refit = states["Refit"]["Parameters"]
    assert refit["ResourceConfig"]["InstanceCount"] == TRAINING_INSTANCES


def test_state_machine_iam_is_the_same_as_with_one_instance(synth: Synth, sharded: Synth) -> None:
    def statements(s: Synth) -> list[str]:  # asset hashes normalised: training_src may differ between syntheses
        return sorted(HASH_RE.sub("<asset-hash>", json.dumps(st, sort_keys=True))
                      for res in s.resources("Training", "AWS::IAM::Policy").values()
                      for st in res["Properties"]["PolicyDocument"]["Statement"])
    assert statements(sharded) == statements(synth)


def test_cfn_lint_is_clean_on_the_sharded_templates(sharded: Synth) -> None:
    templates = sorted(str(p) for p in sharded.outdir.glob("*Training*.template.json"))
    assert templates
    proc = subprocess.run([*_cfn_lint(), "--ignore-checks", "W3005", "--", *templates],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
