"""Sharded preprocessing (``predmaint.processing.instance_count`` > 1): one extra synthesis of the app.

With more than one processing instance the pipeline runs FitFeatures (one instance, every raw object:
split assignment + feature spec) -> TransformFeatures (every instance, raw objects ``ShardedByS3Key``,
the fit output replicated) instead of the single Preprocess job. Same Retry/Catch, encryption,
isolation and IAM as every other job; cdk-nag runs in ``build`` and cfn-lint on the templates.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from predmaint.modules import load_module
from tests.conftest import _data_dir
from tests.infra.conftest import CDK_CONTEXT, HASH_RE, REPO, Synth, synth_app
from tests.infra.test_nag_and_lint import _cfn_lint
from tests.infra.test_security import _state_machine_definition

INSTANCES = 4


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx["predmaint.processing.instance_count"] = str(INSTANCES)  # -c overrides, as on the command line
    ctx["predmaint.processing.fit_sample_objects"] = "50"
    return synth_app(tmp_path_factory.mktemp("cdk.out.sharded"), ctx)


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


def test_every_plan_path_the_jobs_use_exists_in_a_real_plan(states: dict[str, Any]) -> None:
    """The prepare Lambda plans the job names and arguments these states read."""
    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "prepare_for_sharded", register=False)
    plan = prep.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"}, prep.LocalStore(_data_dir()))
    for name in ("FitFeatures", "TransformFeatures"):
        paths = [v for v in json.dumps(states[name]).split('"') if v.startswith("$.plan.")]
        assert paths
        for path in paths:
            node: Any = {"plan": plan}
            for part in path[2:].split("."):
                node = node[part]
            assert node, path
    assert plan["arguments"]["transform_features"][-2:] == ["--stage", "transform"]


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
