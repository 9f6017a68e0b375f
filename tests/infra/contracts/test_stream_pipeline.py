"""The training state machine with the stream enabled (``predmaint.stream.enabled``): after every
recorded champion, the rebuild processing job (training_src/stream/rebuild_job.py) runs; its request
passes the same checks as the pipeline's other jobs (botocore's shapes, through the SageMaker
stand-in of flow.py), runs as its own role and is wired to the champion's model and the stream's
table, archive and model info."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.contracts import flow
from tests.infra.contracts.flow import Deployment, open_world
from tests.infra.contracts.iam import Resolver, construct_key
from tests.infra.contracts.test_state_machine_flow import (
    HAPPY_FIRST,
    aws_credentials,  # noqa: F401 - the fixture
    champion_then,
    first_run,
    models_url,
    plan_of,
    requests,
    valid,
)

REBUILD = "RebuildStreamState"


@pytest.fixture(scope="module")
def deployment(stream_synth: Any) -> Deployment:
    return Deployment.of(stream_synth, stream_synth.built.config.region)


@pytest.fixture
def world(deployment: Deployment, data_dir: Any, aws_credentials: None) -> Any:  # noqa: F811
    with open_world(deployment, data_dir) as w:
        yield w


@pytest.fixture(scope="module")
def reports(data_dir: Any) -> dict[str, dict[str, Any]]:
    return {"first": flow.evaluation_report(data_dir, 18.0, seed=1),
            "better": flow.evaluation_report(data_dir, 13.0, seed=2)}


def _rebuild_request(world: flow.World, plan: dict[str, Any]) -> dict[str, Any]:
    (req,) = [p for p in requests(world, "CreateProcessingJob")
              if p["ProcessingJobName"] == plan["jobs"]["stream_rebuild"]]
    return req


def _check_request(world: flow.World, stream_synth: Any, req: dict[str, Any], run_id: str) -> None:
    c = stream_synth.built.config
    resolver = Resolver(stream_synth.templates, c.region)
    roles = stream_synth.built.training.roles
    arn = lambda r: resolver.get_att(*construct_key(r).split("/"), "Arn")  # noqa: E731
    assert req["RoleArn"] == arn(roles.stream_rebuild) != arn(roles.jobs)  # its own role, not the jobs'
    spec = req["AppSpecification"]
    assert spec["ContainerEntrypoint"][-1] == "stream/rebuild_job.py"
    assert all(len(item) <= 256 for item in spec["ContainerEntrypoint"])
    args = spec["ContainerArguments"]
    opts = dict(zip(args[::2], args[1::2], strict=True))
    artifacts = world.dep.artifacts_bucket
    assert opts == {"--model": "/opt/ml/processing/input/model", "--archive": f"s3://{artifacts}/stream/archive/",
                    "--table": c.stream_table_name, "--model-info": "/opt/ml/processing/output/model-info/model-info.json",
                    "--horizon": "30", "--region": c.region}
    inputs = {i["InputName"]: i["S3Input"] for i in req["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == models_url(world, run_id)
    (out,) = req["ProcessingOutputConfig"]["Outputs"]
    assert out["S3Output"]["S3Uri"] == f"s3://{artifacts}/stream/model-info/"
    assert out["S3Output"]["LocalPath"] + "/model-info.json" == opts["--model-info"]
    # the job calls DynamoDB's API (network), the other jobs stay isolated
    assert req["NetworkConfig"]["EnableNetworkIsolation"] is False
    others = [p for p in requests(world, "CreateProcessingJob") if p is not req]
    assert others and all(p["NetworkConfig"]["EnableNetworkIsolation"] is True for p in others)


def test_the_first_champion_runs_the_rebuild_which_writes_the_model_info(world, reports, stream_synth):
    run, run_id = first_run(world, reports["first"])
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    at = HAPPY_FIRST.index("RecordChampion") + 1
    assert run.states == [*HAPPY_FIRST[:at], REBUILD, *HAPPY_FIRST[at:]]
    valid(world)
    _check_request(world, stream_synth, _rebuild_request(world, plan_of(run)), run_id)


def test_a_deployed_champion_is_followed_by_the_rebuild(world, reports, stream_synth):
    run, _, run_id = champion_then(world, reports, "better")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-4:] == ["RecordChampion", REBUILD, "FirstChampion?", "Deployed"]
    valid(world)
    _check_request(world, stream_synth, _rebuild_request(world, plan_of(run)), run_id)


def test_the_runner_runs_the_rebuild_module(tmp_path):
    from training_src import processing

    (tmp_path / "training_src" / "stream").mkdir(parents=True)
    (tmp_path / "training_src" / "stream" / "rebuild_job.py").write_text("")
    cmd = processing.command(["stream/rebuild_job.py", "--table", "t"], tmp_path)
    assert cmd[1:] == ["-m", "training_src.stream.rebuild_job", "--table", "t"]
