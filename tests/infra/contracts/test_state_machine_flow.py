"""The training state machine's data flow, executed offline against the synthesized definition.

What is real here:

* the definition: the state machine of the synthesized training stack, every CloudFormation token
  resolved to what CloudFormation would put there in account 123456789012 (role, key, topic and
  function ARNs, bucket names, the CDK assets bucket) -- ``flow.Resolver``;
* the interpreter: moto 5.2.5's Step Functions parser (LocalStack's ASL interpreter), reached through
  the Step Functions API (``CreateStateMachine`` parses the definition; executions are started the
  way ``predmaint start-training`` starts them). JSONPath, intrinsic functions (``States.JsonMerge``,
  ``States.Format``, ``States.MathAdd``), Choice rules, ResultSelector/ResultPath, Retry/Catch,
  Fail's ErrorPath/CausePath and the SNS integration (publishing to moto's SNS) are its own;
* the Lambda code: the two handlers from the staged Lambda bundles (``cdk.out/asset.*``), run with
  the environment the template gives them, against moto S3 (the raw FD001 files uploaded to the data
  bucket), the moto SageMaker model registry and moto SSM; their every boto3 call is checked against
  botocore's service model (``shapes.assert_calls_valid``);
* the contracts: every SageMaker request (CreateProcessingJob, CreateHyperParameterTuningJob,
  CreateTrainingJob, CreateModel, CreateEndpointConfig, UpdateEndpoint, DescribeEndpoint), every
  Lambda Invoke and every SNS Publish is checked against botocore's input shape, strictly
  (``shapes.problems``: required/unknown members, types, lengths, enums, patterns); every stood-in
  SageMaker answer against the output shape.

What is stood in (``flow.SageMakerStandIn``): the SageMaker service. A job "runs" instantly: it fails
if an S3 input it would download is missing (as SageMaker's data download does), else writes its
outputs (placeholder train/validation/test parts, a model.tar.gz at ``<S3OutputPath>/<job>/output/``,
the evaluation report the test chose) and the .sync task returns its Describe* answer. The endpoint
follows a script per test (Updating -> InService on the new config, or a rollback, or Failed).
Where Step Functions' integration differs from the bare API, the stand-in follows Step Functions:
a ``.sync`` task's result is the Describe* answer, not the Create* one; timestamps reach the state as
epoch milliseconds; SageMaker API errors surface as ``SageMaker.AmazonSageMakerException`` with the
Java SDK's "(Service: AmazonSageMaker; Status Code: 400; Error Code: X; ...)" Cause; a job that
ends Failed fails the task with ``States.TaskFailed`` and the Describe* answer as Cause. The Lambda
integration hands the function JSON (the wire blob is checked as ``Payload``) and, with
``payload_response_only``, passes the function's JSON answer on; the SNS integration's ``Message`` is
the rendered string. Wait states and Retrier sleeps are instant (their seconds are recorded).
Tests that start from "a champion exists" get it from the deployed promote function's own
``promote`` + ``confirm`` actions (``World.seed_champion``); the first-run test reaches the same
state through the state machine.

What stays unverified without an account: the real SageMaker behaviour behind the requests (image,
IAM at run time, quotas, how long jobs and deployments take, the exact error texts -- e.g. the
FindEndpoint guard matches "Could not find endpoint", SageMaker's ValidationException text for a
missing endpoint, which AWS does not document as a contract), the error *names* of
the aws-sdk integration (moto calls a DescribeEndpoint error ``sagemaker.sagemakerException``; AWS
documents ``SageMaker.<ErrorCode>Exception``, which the ``SageMaker.ThrottlingException`` Retriers
assume), whether AWS lets a Fail state re-raise a reserved ``States.*`` name through ErrorPath (moto
refuses and ends such an execution with ``States.Runtime``; see the failed-job test), and anything
else moto's interpreter does differently from AWS's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.infra.contracts import flow
from tests.infra.contracts.flow import (
    Deployment,
    World,
    client_error,
    evaluation_report,
    open_world,
    throttling,
)
from tests.infra.contracts.shapes import assert_calls_valid

pytestmark = pytest.mark.usefixtures("aws_credentials")

HAPPY_FIRST = ["ProfileGiven?", "ApplyDatasetDefault", "MergeInput", "Prepare", "Preprocess", "Tune",
               "ObjectiveReported?", "KeepBestTrial", "BestHyperparameters", "Refit",
               "Evaluate", "Promote", "Promoted?", "CreateModel", "CreateEndpointConfig", "FindEndpoint",
               "EndpointMissing?", "RecordChampion", "FirstChampion?", "EndpointNotDeployed"]
TO_DEPLOY = [*HAPPY_FIRST[:HAPPY_FIRST.index("FindEndpoint") + 1], "UpdateEndpoint", "WaitForDeployment",
             "DescribeEndpoint", "DeploymentStatus?"]
CHAMPION, CHAMPION_PACKAGE = "/predmaint/champion/model-data-url", "/predmaint/champion/model-package-arn"


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def deployment(synth: Any) -> Deployment:
    return Deployment.of(synth, synth.built.config.region)


@pytest.fixture
def world(deployment: Deployment, data_dir: Any) -> Any:
    with open_world(deployment, data_dir) as w:
        yield w


@pytest.fixture(scope="module")
def reports(data_dir: Any) -> dict[str, dict[str, Any]]:
    """Evaluation reports on FD001's real test RUL: the first champion, a better and a worse challenger."""
    return {"first": evaluation_report(data_dir, 18.0, seed=1), "better": evaluation_report(data_dir, 13.0, seed=2),
            "worse": evaluation_report(data_dir, 24.0, seed=3)}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def valid(world: World) -> None:
    """Every request of the run(s) was one AWS would accept (and every stood-in answer API-shaped)."""
    assert world.sagemaker.problems == []
    assert world.problems == []
    assert_calls_valid(world.calls)
    for message in world.sns_messages():  # SNS's documented Subject rule (not in the API model)
        subject = message["Subject"]
        assert subject.isascii() and subject.isprintable() and len(subject) < 100, subject


def plan_of(run: flow.Run) -> dict[str, Any]:
    (state,) = run.outputs("Prepare")
    return state["plan"]


def models_url(world: World, run_id: str) -> str:
    return f"s3://{world.dep.artifacts_bucket}/models/{run_id}/model.tar.gz"


def requests(world: World, operation: str) -> list[dict[str, Any]]:
    return [params for op, params in world.sagemaker.calls if op == operation]


def first_run(world: World, report: dict[str, Any]) -> tuple[flow.Run, str]:
    world.sagemaker.evaluation = report
    run = world.run()
    return run, plan_of(run)["run_id"] if run.outputs("Prepare") else ""


def check_first_run(world: World, run: flow.Run, run_id: str) -> None:
    """A first run with no endpoint: approved, recorded as champion, not deployed."""
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == HAPPY_FIRST
    valid(world)
    plan = plan_of(run)
    sm = world.sagemaker
    assert sm.operations() == ["CreateProcessingJob", "CreateHyperParameterTuningJob", "CreateTrainingJob",
                               "CreateProcessingJob", "CreateModel", "CreateEndpointConfig", "DescribeEndpoint"]
    # the jobs are the plan's, wired output to input
    (pre, ev), (tune,), (refit,) = (requests(world, "CreateProcessingJob"),
                                    requests(world, "CreateHyperParameterTuningJob"),
                                    requests(world, "CreateTrainingJob"))
    assert (pre["ProcessingJobName"], tune["HyperParameterTuningJobName"], refit["TrainingJobName"],
            ev["ProcessingJobName"]) == tuple(plan["jobs"][k] for k in ("preprocess", "tuning", "refit", "evaluate"))
    best = sm.describes[("HyperParameterTuningJob", plan["jobs"]["tuning"])]["BestTrainingJob"]
    assert best["TrainingJobDefinitionName"] == "xgboost"
    static = plan["tuning"]["definitions"]["xgboost"]["static"]
    assert refit["HyperParameters"] == {**static, **best["TunedHyperParameters"], "fit_on": '"train+validation"'}
    artifact = sm.describes[("TrainingJob", plan["jobs"]["refit"])]["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"{plan['s3']['model_output']}{plan['jobs']['refit']}/output/model.tar.gz"
    model_input = {i["InputName"]: i["S3Input"]["S3Uri"] for i in ev["ProcessingInputs"]}["model"]
    assert model_input == artifact
    # the gate passed, the challenger was kept under models/, served by the model, then approved
    (promotion,) = [s["promotion"] for s in run.outputs("Promote")]
    assert promotion["approved"] is True and promotion["status"] == "PendingManualApproval"
    assert promotion["model_data_url"] == models_url(world, run_id)
    (model,) = requests(world, "CreateModel")
    assert model["ModelName"] == plan["jobs"]["model"]
    assert model["PrimaryContainer"]["ModelDataUrl"] == models_url(world, run_id)
    (config,) = requests(world, "CreateEndpointConfig")
    assert config["ProductionVariants"][0]["ModelName"] == plan["jobs"]["model"]
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ModelPackageDescription"].startswith(f"run {run_id}: ")
    assert world.parameter(CHAMPION) == models_url(world, run_id)
    assert world.parameter(CHAMPION_PACKAGE) == package["ModelPackageArn"]
    assert world.sns_messages() == [] and world.waits == [] and world.retry_sleeps == []


def champion_then(world: World, reports: dict[str, dict[str, Any]], challenger: str,
                  rollout: list[tuple[str, str]] | None = None) -> tuple[flow.Run, str, str]:
    """A champion exists (an earlier run's outcome, recorded by the deployed promote function: what
    the first-run test reaches through the state machine) and the endpoint stack is deployed, serving
    its own config; then a run brings ``challenger``. Returns the run and both run ids."""
    first = world.seed_champion(reports["first"])
    assert world.parameter(CHAMPION) == models_url(world, first["run_id"])
    world.sagemaker.deploy_endpoint(world.dep.endpoint_name, world.dep.endpoint_config_name)
    if rollout is not None:
        world.sagemaker.rollout = rollout
    world.sagemaker.evaluation = reports[challenger]
    run = world.run()
    return run, first["run_id"], plan_of(run)["run_id"]


def statuses(world: World) -> list[str]:
    return [p["ModelApprovalStatus"] for p in world.packages()]


# --------------------------------------------------------------------------------------------
# the paths
# --------------------------------------------------------------------------------------------

def test_the_definition_is_the_template_s_with_every_token_resolved(deployment):
    text = json.dumps(deployment.definition)
    assert not any(marker in text for marker in ('"Fn::', '"Ref"', "${", "TOKEN"))
    resources = {st.get("Resource") for st in deployment.definition["States"].values()} - {None}
    lambdas = {r for r in resources if r.startswith("arn:aws:lambda:")}
    assert lambdas == set(deployment.functions) == {
        f"arn:aws:lambda:{deployment.region}:{flow.ACCOUNT}:function:{name}"
        for name in ("predmaint-prepare", "predmaint-promote")}
    assert all(f.handler_file.is_file() for f in deployment.functions.values())  # the staged bundles
    assert resources - lambdas == {f"arn:aws:states:::{r}" for r in (
        "sagemaker:createProcessingJob.sync", "sagemaker:createHyperParameterTuningJob.sync",
        "sagemaker:createTrainingJob.sync", "sagemaker:createModel", "sagemaker:createEndpointConfig",
        "sagemaker:updateEndpoint", "aws-sdk:sagemaker:describeEndpoint", "sns:publish")}
    assert deployment.topic_arn == f"arn:aws:sns:{deployment.region}:{flow.ACCOUNT}:predmaint-notifications"
    assert deployment.role_arn.startswith(f"arn:aws:iam::{flow.ACCOUNT}:role/Predmaint-Training-PipelineRole")


def test_first_run_without_an_endpoint_records_the_champion_and_stops(world, reports):
    run, run_id = first_run(world, reports["first"])
    check_first_run(world, run, run_id)
    (confirm,) = world.invocations_of("promote", "confirm")
    assert confirm["event"] == {"action": "confirm", "run_id": run_id,
                                "model_package_arn": world.packages()[0]["ModelPackageArn"]}
    # FindEndpoint's error is what the guard matched, kept in the state for the record
    (found,) = run.outputs("EndpointMissing?")
    assert "Could not find endpoint" in found["error"]["Cause"]

    # the checker checked: the stand-in refuses what the API refuses, and a job whose input is
    # not where the request says fails as SageMaker's download would
    plan, sm = plan_of(run), world.sagemaker
    (tune,) = requests(world, "CreateHyperParameterTuningJob")
    bad = copy.deepcopy(tune)
    bad["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"] = 0
    bad["HyperParameterTuningJobName"] = "pm-hpo-refused"
    with pytest.raises(ClientError, match="below the minimum 1"):
        sm.call("CreateHyperParameterTuningJob", bad)
    world.s3.delete_objects(Bucket=world.dep.data_bucket, Delete={"Objects": [
        {"Key": o["Key"]} for o in world.s3.list_objects_v2(
            Bucket=world.dep.data_bucket, Prefix=plan["s3"]["train"].split("/", 3)[3])["Contents"]]})
    sm.call("CreateHyperParameterTuningJob", {**tune, "HyperParameterTuningJobName": "pm-hpo-no-data"})
    failed = sm.describe_job("CreateHyperParameterTuningJob", {"HyperParameterTuningJobName": "pm-hpo-no-data"})
    assert failed["HyperParameterTuningJobStatus"] == "Failed"
    assert failed["FailureReason"].startswith(f"ClientError: No S3 objects found under S3 URL '{plan['s3']['train']}")
    sm.problems.clear()  # the refused request above was recorded as one


def test_better_model_is_deployed_blue_green_and_becomes_the_champion(world, reports):
    run, _, run_id = champion_then(world, reports, "better")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [*TO_DEPLOY, "WaitForDeployment", "DescribeEndpoint", "DeploymentStatus?",
                          "RecordChampion", "FirstChampion?", "Deployed"]
    valid(world)
    plan = plan_of(run)
    assert world.sagemaker.operations() == [
        "CreateProcessingJob", "CreateHyperParameterTuningJob", "CreateTrainingJob", "CreateProcessingJob",
        "CreateModel", "CreateEndpointConfig", "DescribeEndpoint", "UpdateEndpoint", "DescribeEndpoint",
        "DescribeEndpoint"]
    (update,) = requests(world, "UpdateEndpoint")
    assert update["EndpointName"] == world.dep.endpoint_name
    assert update["EndpointConfigName"] == plan["jobs"]["endpoint_config"]
    assert update["RetainAllVariantProperties"] is True
    # one instance (min_capacity 1): all at once with a baking period (stacks/hosting.py deployment_config)
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert [s["results"]["endpoint"] for s in run.outputs("DescribeEndpoint")] == [
        {"EndpointStatus": "Updating", "EndpointConfigName": world.dep.endpoint_config_name},
        {"EndpointStatus": "InService", "EndpointConfigName": plan["jobs"]["endpoint_config"]}]
    assert world.waits == [("WaitForDeployment", 60), ("WaitForDeployment", 60)]
    assert world.sagemaker.endpoint["EndpointConfigName"] == plan["jobs"]["endpoint_config"]
    assert statuses(world) == ["Approved", "Approved"]
    assert world.parameter(CHAMPION) == models_url(world, run_id)
    assert world.parameter(CHAMPION_PACKAGE) == world.packages()[1]["ModelPackageArn"]
    (promotion,) = [s["promotion"] for s in run.outputs("Promote")]
    assert promotion["champion_model_package_arn"] == world.packages()[0]["ModelPackageArn"]
    assert world.sns_messages() == []


def test_a_champion_older_than_the_runs_lifecycle_still_gates_and_serves(world, reports, synth):
    """runs/ expires after predmaint.data.artifact_expiry_days; everything the champion is read by later
    (its model for hosting, its evaluation report for the next gate) must outlive that."""
    first = world.seed_champion(reports["first"])
    world.sagemaker.deploy_endpoint(world.dep.endpoint_name, world.dep.endpoint_config_name)
    # the lifecycle rule of the synthesized artifacts bucket, applied: everything under its prefix is gone
    (bucket,) = [r for r in synth.resources("-Data", "AWS::S3::Bucket").values()
                 if "artifacts" in json.dumps(r["Properties"].get("BucketName"))]
    expiring = [r["Prefix"] for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
                if r.get("ExpirationInDays") and r.get("Prefix")]
    assert "runs/" in expiring
    for prefix in expiring:
        for item in world.s3.list_object_versions(Bucket=world.dep.artifacts_bucket, Prefix=prefix).get("Versions", []):
            world.s3.delete_object(Bucket=world.dep.artifacts_bucket, Key=item["Key"], VersionId=item["VersionId"])
    package = world.sm.describe_model_package(ModelPackageName=world.packages()[0]["ModelPackageArn"])
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == \
        f"s3://{world.dep.artifacts_bucket}/models/{first['run_id']}/evaluation.json"
    world.sagemaker.evaluation = reports["better"]
    run = world.run()
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-1] == "Deployed"
    valid(world)
    (promotion,) = [st["promotion"] for st in run.outputs("Promote")]
    assert promotion["decision"]["champion_value"] == reports["first"]["regression_metrics"]["rmse"]["value"]
    assert statuses(world) == ["Approved", "Approved"]


def failure_of(run: flow.Run) -> tuple[str, str]:
    """The error that failed the run: PipelineFailed raises its own name (a Fail state must not raise a
    reserved States.* one) with ``"<caught error>: <caught cause>"`` as its cause."""
    assert run.status == "FAILED" and run.error == "PipelineFailed", (run.error, run.cause)
    error, _, cause = run.cause.partition(": ")
    return error, cause


def _failed_deployment(world: World, run: flow.Run, first_id: str, error: str) -> dict[str, Any]:
    # the Pass state that describes the failure is named after the error it sets
    assert run.states[-5:] == ["DeploymentStatus?", error, "RejectChallenger", "NotifyFailure", "PipelineFailed"]
    assert failure_of(run)[0] == error
    cause = failure_of(run)[1]
    valid(world)
    # the challenger is rejected with the reason; the champion stays where it was
    assert statuses(world) == ["Approved", "Rejected"]
    assert world.parameter(CHAMPION) == models_url(world, first_id)
    assert world.parameter(CHAMPION_PACKAGE) == world.packages()[0]["ModelPackageArn"]
    (reject,) = world.invocations_of("promote", "reject")
    assert reject["event"]["reason"] == cause
    (message,) = world.sns_messages()
    assert message["TopicArn"] == world.dep.topic_arn
    assert message["Subject"] == "predmaint: training pipeline failed"
    assert message["Message"] == (f"Execution {run.arn.rsplit(':', 1)[1]} failed in state machine "
                                  f"{world.dep.state_machine_name}. Error: {error}. Cause: {cause}")
    return message


def test_rolled_back_deployment_rejects_the_challenger_and_keeps_the_champion(world, reports):
    rollout = [("Updating", "old"), ("RollingBack", "old"), ("InService", "old")]
    run, first_id, _ = champion_then(world, reports, "better", rollout)
    _failed_deployment(world, run, first_id, "DeploymentRolledBack")
    new_config = plan_of(run)["jobs"]["endpoint_config"]
    assert failure_of(run)[1] == (f"Endpoint {world.dep.endpoint_name} is InService on {world.dep.endpoint_config_name}, "
                         f"not the new config {new_config}: the canary tripped an alarm and SageMaker rolled back")
    assert world.waits == [("WaitForDeployment", 60)] * 3
    assert world.sagemaker.endpoint["EndpointConfigName"] == world.dep.endpoint_config_name


@pytest.mark.parametrize("status", ["Failed", "UpdateRollbackFailed"])
def test_failed_endpoint_is_handled_like_a_rollback(world, reports, status):
    run, first_id, _ = champion_then(world, reports, "better", [("Updating", "old"), (status, "old")])
    _failed_deployment(world, run, first_id, "EndpointFailed")
    assert failure_of(run)[1] == f"Endpoint status {status}"


def test_worse_model_is_rejected_and_nothing_is_deployed(world, reports):
    run, first_id, run_id = champion_then(world, reports, "worse")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [*HAPPY_FIRST[:HAPPY_FIRST.index("Promoted?") + 1], "NotifyRejected", "NotPromoted"]
    valid(world)
    assert world.sagemaker.operations() == ["CreateProcessingJob", "CreateHyperParameterTuningJob",
                                                    "CreateTrainingJob", "CreateProcessingJob"]
    assert statuses(world) == ["Approved", "Rejected"]
    assert world.parameter(CHAMPION) == models_url(world, first_id)
    (promotion,) = [s["promotion"] for s in run.outputs("Promote")]
    assert promotion["approved"] is False and promotion["status"] == "Rejected"
    worse = reports["worse"]["regression_metrics"]["rmse"]["value"]
    first = reports["first"]["regression_metrics"]["rmse"]["value"]
    (message,) = world.sns_messages()
    assert message["Subject"] == "predmaint: challenger not promoted"
    assert message["Message"] == (f"Run {run_id} was not promoted: rmse {worse:.4g} does not beat "
                                  f"champion's {first:.4g}")
    # a rejected challenger is not kept under models/ (runs/ expires)
    listed = world.s3.list_objects_v2(Bucket=world.dep.artifacts_bucket, Prefix=f"models/{run_id}/")
    assert listed["KeyCount"] == 0


def test_a_failed_training_job_fails_the_pipeline_without_retrying(world, reports):
    world.sagemaker.fail_job["CreateTrainingJob"] = "AlgorithmError: ExecuteUserScriptError: exit code 1"
    run, _ = first_run(world, reports["first"])
    assert run.status == "FAILED"
    assert run.states == [*HAPPY_FIRST[:HAPPY_FIRST.index("Refit") + 1], "RefitTransient?", "NotifyFailure",
                          "PipelineFailed"]
    valid(world)
    (caught,) = run.outputs("RefitTransient?")
    assert caught["error"]["Error"] == "States.TaskFailed"
    described = json.loads(caught["error"]["Cause"])  # Step Functions' Cause: the failed job's Describe answer
    assert described["TrainingJobStatus"] == "Failed"
    assert described["TrainingJobName"] == plan_of(run)["jobs"]["refit"]
    assert described["FailureReason"].startswith("AlgorithmError")
    assert len(requests(world, "CreateTrainingJob")) == 1 and world.waits == []
    assert world.packages() == [] and world.parameter(CHAMPION) is None
    (message,) = world.sns_messages()
    assert f"Error: States.TaskFailed. Cause: {caught['error']['Cause']}" in message["Message"]
    # PipelineFailed names itself and leads its cause with the caught error (a Fail state raising the
    # reserved States.TaskFailed is refused by moto's interpreter, and AWS does not document it)
    assert failure_of(run) == ("States.TaskFailed", caught["error"]["Cause"])


def test_a_tuning_job_without_a_reported_objective_notifies_and_promotes_nothing(world, reports):
    """DescribeHyperParameterTuningJob leaves BestTrainingJob out when no trial reported the objective;
    the run must say so (SNS) and end NotPromoted, not die of a missing path (States.Runtime)."""
    world.sagemaker.objective = None
    run, run_id = first_run(world, reports["first"])
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [*HAPPY_FIRST[:HAPPY_FIRST.index("ObjectiveReported?") + 1], "NoObjectiveReported",
                          "NotifyRejected", "NotPromoted"]
    valid(world)
    plan = plan_of(run)
    assert world.sagemaker.operations() == ["CreateProcessingJob", "CreateHyperParameterTuningJob"]
    (message,) = world.sns_messages()
    assert message["Subject"] == "predmaint: challenger not promoted"
    assert message["Message"] == (f"Run {run_id} was not promoted: tuning job {plan['jobs']['tuning']} completed "
                                  "without a best training job: no trial reported the objective metric "
                                  f"{plan['tuning']['objective']['metric']}")
    assert world.packages() == [] and world.parameter(CHAMPION) is None


def test_a_throttled_create_model_is_retried_after_the_backoff(world, reports):
    world.sagemaker.faults["CreateModel"] = [throttling("CreateModel")]
    run, _ = first_run(world, reports["first"])
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    i = HAPPY_FIRST.index("CreateModel")
    assert run.states == [*HAPPY_FIRST[:i + 1], "CreateModelTransient?", "CreateModelThrottled",
                          "CreateModelBackoff", *HAPPY_FIRST[i:]]
    valid(world)
    assert len(requests(world, "CreateModel")) == 2
    assert world.waits == [("CreateModelBackoff", 60)]
    (caught,) = run.outputs("CreateModelTransient?")
    assert caught["error"]["Error"] == "SageMaker.AmazonSageMakerException"
    assert "Error Code: ThrottlingException" in caught["error"]["Cause"]
    assert run.outputs("CreateModelThrottled")[0]["throttle"] == {"retries": 1}
    assert world.packages()[0]["ModelApprovalStatus"] == "Approved"


def test_a_validation_error_fails_at_once(world, reports):
    world.sagemaker.faults["CreateModel"] = [client_error(
        "CreateModel", "ValidationException", "Could not access model data at s3://x/model.tar.gz.")]
    run, _ = first_run(world, reports["first"])
    assert run.status == "FAILED"
    i = HAPPY_FIRST.index("CreateModel")
    assert run.states == [*HAPPY_FIRST[:i + 1], "CreateModelTransient?", "RejectChallenger", "NotifyFailure",
                          "PipelineFailed"]
    valid(world)
    error, cause = failure_of(run)
    assert error == "SageMaker.AmazonSageMakerException" and "Error Code: ValidationException" in cause
    assert len(requests(world, "CreateModel")) == 1 and world.waits == []
    # the package passed the gate but never served: rejected with the reason, the champion unset
    assert statuses(world) == ["Rejected"] and world.parameter(CHAMPION) is None
    package = world.sm.describe_model_package(ModelPackageName=world.packages()[0]["ModelPackageArn"])
    assert "Could not access model data" in package["ApprovalDescription"]


def test_throttling_past_the_budget_fails(world, reports):
    budget = 8  # stacks/state_machine.py THROTTLE_BUDGET
    world.sagemaker.faults["CreateModel"] = [throttling("CreateModel") for _ in range(budget + 5)]
    run, _ = first_run(world, reports["first"])
    assert run.status == "FAILED"
    assert run.states[-4:] == ["CreateModelTransient?", "RejectChallenger", "NotifyFailure", "PipelineFailed"]
    valid(world)
    assert len(requests(world, "CreateModel")) == budget + 1
    assert world.waits == [("CreateModelBackoff", 60)] * budget
    assert run.outputs("CreateModelTransient?")[-1]["throttle"] == {"retries": budget}
    assert "Error Code: ThrottlingException" in failure_of(run)[1]


def test_an_endpoint_busy_with_autoscaling_is_updated_once_it_is_free(world, reports):
    busy = client_error("UpdateEndpoint", "ValidationException",
                        f"Cannot update in-progress endpoint \"{world.sagemaker.arn('endpoint', 'predmaint-rul')}\".")
    world.sagemaker.faults["UpdateEndpoint"] = [busy]
    run, _, run_id = champion_then(world, reports, "better")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-1] == "Deployed"
    assert "UpdateEndpointBackoff" in run.states
    valid(world)
    assert len(requests(world, "UpdateEndpoint")) == 2
    assert world.waits[0] == ("UpdateEndpointBackoff", 60)
    assert world.parameter(CHAMPION) == models_url(world, run_id)


# --------------------------------------------------------------------------------------------
# the checker checked: a broken definition breaks these tests
# --------------------------------------------------------------------------------------------

def _rename_selector(d: dict[str, Any]) -> None:  # KeepBestTrial's field renamed
    selector = d["States"]["KeepBestTrial"]["Parameters"]
    selector["BestJob.$"] = selector.pop("BestTrainingJob.$")


def _wrong_choice(d: dict[str, Any]) -> None:  # the first-run guard matching the wrong error
    d["States"]["EndpointMissing?"]["Choices"][0]["StringMatches"] = "*Could not find model*"


@pytest.mark.parametrize(("mutate", "broken_at", "symptoms"), [
    # BestHyperparameters' payload reads $.results.tuning.BestTrainingJob, which is no longer there
    (_rename_selector, "BestHyperparameters",
     ("$.results.tuning.BestTrainingJob", "could not be found in the input")),
    # FindEndpoint's "not found" goes to RejectChallenger instead of RecordChampion
    (_wrong_choice, "RejectChallenger", ("Could not find endpoint",)),
])
def test_a_broken_definition_fails_the_first_run_checks(deployment, data_dir, reports, aws_credentials,
                                                       mutate: Callable[[dict[str, Any]], None], broken_at: str,
                                                       symptoms: tuple[str, ...]):
    definition = copy.deepcopy(deployment.definition)
    mutate(definition)
    with open_world(dataclasses.replace(deployment, definition=definition), data_dir) as world:
        run, run_id = first_run(world, reports["first"])
        with pytest.raises(AssertionError) as broken:
            check_first_run(world, run, run_id)
    assert run.status == "FAILED" and run.states[-3:] == [broken_at, "NotifyFailure", "PipelineFailed"]
    assert all(symptom in str(broken.value) for symptom in symptoms), broken.value


@pytest.mark.parametrize(("execution_input", "expected", "planned_subset"), [
    # no profile: cdk.json's defaults (profile cmapss, subset FD001)
    ({}, {"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"}, "FD001"),
    # a profile named without a subset never inherits cdk.json's subset: null reaches Prepare, which
    # takes the profile's own default_subset (a profile without subsets would take none)
    ({"dataset": "cmapss", "profile": "cmapss"}, {"dataset": "cmapss", "profile": "cmapss", "subset": None},
     "FD001"),
])
def test_execution_defaults(world, reports, execution_input, expected, planned_subset):
    world.sagemaker.evaluation = reports["first"]
    run = world.run(execution_input=execution_input)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (prepare,) = world.invocations_of("prepare", "plan")
    assert {k: prepare["event"][k] for k in expected} == expected
    assert plan_of(run)["subset"] == planned_subset


def test_the_automatic_retraining_input_is_accepted(world, reports, synth):
    """What the drift alarm's rule (and the schedule and raw-upload triggers) send runs the pipeline."""
    world.sagemaker.evaluation = reports["first"]
    run = world.run(execution_input=synth.built.config.retrain_input)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (prepare,) = world.invocations_of("prepare", "plan")
    assert {k: prepare["event"][k] for k in ("dataset", "profile", "subset")} == synth.built.config.retrain_input
