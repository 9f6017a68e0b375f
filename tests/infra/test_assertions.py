"""Fine-grained assertions on the synthesized templates."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from stacks.config import AppConfig
from stacks.hosting import deployment_config
from stacks.images import XGBOOST_CONTAINER_VERSION, xgboost_image_uri
from tests.infra.conftest import CDK_CONTEXT
from tests.infra.contracts.shapes import problems
from training_src import candidates, search_space
from training_src.candidates.base import OBJECTIVE_REGEX, from_wire
from training_src.profiles import load_profile

POLICY_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::S3::BucketPolicy",
                "AWS::SNS::TopicPolicy", "AWS::KMS::Key"}
# actions whose APIs have no resource-level permissions: the only statements allowed a "*" resource
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sagemaker:ListModelPackages",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
}


def _listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def statements(synth) -> list[tuple[str, str, dict]]:
    """(stack, resource, statement) for every policy document in the app."""
    out = []
    for stack, lid, res in synth.all_resources():
        if res["Type"] not in POLICY_TYPES:
            continue
        props = res.get("Properties", {})
        docs = [props.get(k) for k in ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument") if props.get(k)]
        docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for doc in docs:
            out += [(stack, lid, st) for st in doc["Statement"]]
    return out


def definition(synth) -> dict[str, Any]:
    """The state machine definition, with CloudFormation tokens replaced by placeholders."""
    (sm,) = synth.resources("Training", "AWS::StepFunctions::StateMachine").values()
    body = sm["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    return json.loads(body)


def test_no_iam_statement_has_a_wildcard_action(synth):
    found = statements(synth)
    assert len(found) > 40
    # every Allow names its actions; the only "*" actions are the TLS-only Deny statements of the
    # bucket policies (deny s3:* without TLS), which must cover every action to mean anything
    bad = [(s, lid, a) for s, lid, st in found for a in _listify(st.get("Action", []))
           if "*" in a and st["Effect"] == "Allow"]
    assert bad == []
    denies = {a for _, _, st in found if st["Effect"] == "Deny" for a in _listify(st["Action"])}
    assert denies <= {"s3:*", "sns:Publish"}
    assert all("NotAction" not in st for _, _, st in found)


def test_star_resources_only_where_the_api_requires_it(synth):
    for stack, lid, st in statements(synth):
        if "*" not in _listify(st.get("Resource", [])) or st.get("Principal"):
            continue  # resource policies (key policy "*" = this key) are not identity policies
        actions = set(_listify(st["Action"]))
        assert actions <= STAR_RESOURCE_ACTIONS, (stack, lid, actions - STAR_RESOURCE_ACTIONS)


def test_pass_role_only_to_sagemaker(synth):
    passes = [st for _, _, st in statements(synth) if "iam:PassRole" in _listify(st.get("Action", []))]
    assert passes
    for st in passes:
        assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_every_bucket_is_encrypted_private_versioned_and_tls_only(synth):
    buckets = synth.resources("Data", "AWS::S3::Bucket")
    assert len(buckets) == 3
    policies = {p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
                for p in synth.resources("Data", "AWS::S3::BucketPolicy").values()}
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert rule["SSEAlgorithm"] in ("aws:kms", "AES256")
        assert all(props["PublicAccessBlockConfiguration"][k] for k in
                   ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["LifecycleConfiguration"]["Rules"]
        assert bucket["DeletionPolicy"] == "Retain", "data is retained on stack deletion by default"
        denies = [st for st in policies[lid] if st["Effect"] == "Deny"]
        assert any(st["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false" for st in denies)
        assert any("s3:TlsVersion" in st["Condition"].get("NumericLessThan", {}) for st in denies)
    kms_buckets = [b for b in buckets.values() if "KMSMasterKeyID" in
                   b["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]]
    assert len(kms_buckets) == 2, "data and artifacts use the customer-managed key (access logs cannot)"
    assert all("LoggingConfiguration" in b["Properties"] for b in kms_buckets)


def test_customer_managed_key_rotates(synth):
    (key,) = synth.resources("Data", "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True


def test_autoscaling_numbers_come_from_config(synth):
    e = synth.built.config.endpoint
    (target,) = synth.resources("Endpoint", "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (e.min_capacity, e.max_capacity)
    assert target["Properties"]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (policy,) = synth.resources("Endpoint", "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    tt = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tt["TargetValue"] == e.target_invocations_per_instance
    assert tt["ScaleInCooldown"] == e.scale_in_cooldown_seconds and tt["ScaleOutCooldown"] == e.scale_out_cooldown_seconds
    assert tt["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_endpoint_data_capture_kms_canary_and_rollback_alarms(synth):
    c = synth.built.config
    (cfg,) = synth.resources("Endpoint", "AWS::SageMaker::EndpointConfig").values()
    assert cfg["Properties"]["KmsKeyId"] and cfg["Properties"]["DataCaptureConfig"]["KmsKeyId"]
    assert cfg["Properties"]["DataCaptureConfig"]["EnableCapture"] is True
    assert cfg["Properties"]["ProductionVariants"][0]["VariantName"] == c.endpoint.variant_name
    (endpoint,) = synth.resources("Endpoint", "AWS::SageMaker::Endpoint").values()
    dc = endpoint["Properties"]["DeploymentConfig"]
    expected = deployment_config(c)
    assert dc["BlueGreenUpdatePolicy"] == expected["BlueGreenUpdatePolicy"], "one policy for stack and UpdateEndpoint"
    alarms = synth.resources("Endpoint", "AWS::CloudWatch::Alarm")
    assert sorted(a["Properties"]["AlarmName"] for a in alarms.values()) == sorted(c.alarm_names)
    assert len(dc["AutoRollbackConfiguration"]["Alarms"]) == 2
    (model,) = synth.resources("Endpoint", "AWS::SageMaker::Model").values()
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"] == {"Ref": next(
        k for k, v in synth.template("Endpoint")["Parameters"].items()
        if v.get("Default") == c.champion_parameter)}, "champion resolved from the SSM parameter"


def _canary_steps_are_valid(dc: dict, min_capacity: int, max_capacity: int) -> list[str]:
    """Why a blue/green policy breaks SageMaker's rule for some instance count the variant may have
    (TrafficRoutingConfig: a canary is at most 50 % of the variant's instances, a linear step 10-50 %;
    a percentage of a small fleet is at least one whole instance)."""
    routing = dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    problems = []
    for n in range(min_capacity, max_capacity + 1):
        for key in ("CanarySize", "LinearStepSize"):
            size = routing.get(key)
            if size is None:
                continue
            k = size["Value"] if size["Type"] == "INSTANCE_COUNT" else math.ceil(size["Value"] * n / 100)
            if not 1 <= k <= n / 2:
                problems.append(f"{routing['Type']} {key} {size} is {k} of {n} instance(s)")
    return problems


@pytest.mark.parametrize(("min_capacity", "max_capacity"), [(1, 4), (2, 4), (3, 8), (10, 20)])
def test_the_deployment_policy_is_valid_for_every_capacity_autoscaling_allows(min_capacity, max_capacity):
    doc = json.loads(json.dumps(CDK_CONTEXT["predmaint"]))
    doc["endpoint"].update(min_capacity=min_capacity, max_capacity=max_capacity,
                           initial_instance_count=min_capacity)
    c = AppConfig.from_dict(doc)
    dc = deployment_config(c)
    assert _canary_steps_are_valid(dc, min_capacity, max_capacity) == []
    routing = dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    # one instance: all at once, baked with the alarms armed before the blue fleet goes
    assert routing["Type"] == ("ALL_AT_ONCE" if min_capacity == 1 else "CANARY")
    assert dc["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] >= c.endpoint.termination_wait_seconds
    request = {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": dc}
    assert problems("sagemaker", "UpdateEndpoint", request) == []
    # the checker checks: a 10 % canary of the capacity cannot be one instance out of one
    old = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
        "Type": "CANARY", "WaitIntervalInSeconds": 300, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}}}
    assert _canary_steps_are_valid(old, 1, 4) == ["CANARY CanarySize {'Type': 'CAPACITY_PERCENT', 'Value': 10} "
                                                  "is 1 of 1 instance(s)"]


def test_state_machine_state_order(synth):
    from stacks.state_machine import state_order

    assert state_order(definition(synth)) == [
        "ProfileGiven?", "ApplyDatasetDefault", "MergeInput", "Prepare", "Preprocess", "Tune", "ObjectiveReported?", "KeepBestTrial", "BestHyperparameters", "Refit",
        "Evaluate", "Promote", "Promoted?", "CreateModel", "CreateEndpointConfig", "FindEndpoint",
        "UpdateEndpoint", "WaitForDeployment", "DescribeEndpoint", "DeploymentStatus?", "RecordChampion",
        "FirstChampion?", "Deployed"]


DEPLOYMENT_STEPS = ("CreateModel", "CreateEndpointConfig", "UpdateEndpoint", "DescribeEndpoint")


def _is_sagemaker_optimized(st: dict) -> bool:
    return ":states:::sagemaker:" in json.dumps(st.get("Resource", ""))


def test_every_task_catches_into_sns_then_fail_and_retries_only_transient_errors(synth):
    states = definition(synth)["States"]
    tasks = {name: st for name, st in states.items() if st["Type"] == "Task"}
    assert len(tasks) >= 15
    for name, st in tasks.items():
        assert st.get("Catch"), name
        assert "States.ALL" in st["Catch"][-1]["ErrorEquals"], name
        retried = [e for r in st.get("Retry", []) for e in r["ErrorEquals"]]
        # a permanent error (ValidationException, AccessDenied) must never be retried
        assert not {"SageMaker.AmazonSageMakerException", "States.ALL", "ClientError"} & set(retried), name
        assert all(r["BackoffRate"] >= 2 and r["MaxAttempts"] >= 2 for r in st.get("Retry", [])), name
        if name == "NotifyFailure":
            continue
        target = st["Catch"][-1]["Next"]
        if _is_sagemaker_optimized(st):
            # the optimized integrations name every API error SageMaker.AmazonSageMakerException: the Cause
            # decides, and only throttling goes back to the task (after a Wait), within a budget
            assert not st.get("Retry"), name
            choice = states[target]
            # after the gate passed, a failed deployment step first rejects the challenger
            expected = "RejectChallenger" if name in DEPLOYMENT_STEPS else "NotifyFailure"
            assert choice["Type"] == "Choice" and choice["Default"] == expected, name
            (rule,) = choice["Choices"]
            assert "$.throttle.retries" in json.dumps(rule) and "ThrottlingException" in json.dumps(rule), name
            back = states[states[rule["Next"]]["Next"]]
            assert back["Type"] == "Wait" and back["Next"] == name, name
        else:
            assert st.get("Retry"), name
            assert target in ("NotifyFailure", "EndpointMissing?", "RejectChallenger"), name
    assert states["NotifyFailure"]["Resource"].endswith("sns:publish")
    assert states["NotifyFailure"]["Next"] == "PipelineFailed" and states["PipelineFailed"]["Type"] == "Fail"
    assert states["EndpointMissing?"]["Default"] == "RejectChallenger"
    assert states["PipelineFailed"]["Error"] == "PipelineFailed"  # never a reserved States.* name
    # the throttling budget starts with the plan, which replaces the execution input in the state
    assert states["Prepare"]["ResultSelector"] == {"plan.$": "$", "throttle": {"retries": 0}}
    assert states["Prepare"]["ResultPath"] == "$"


def test_an_execution_naming_its_own_profile_never_inherits_the_default_subset(synth):
    states = definition(synth)["States"]
    given = states["ProfileGiven?"]
    assert given["Choices"][0]["IsPresent"] is True and given["Choices"][0]["Variable"] == "$.profile"
    assert given["Choices"][0]["Next"] == "ApplyDatasetDefault" and given["Default"] == "ApplyDefaults"
    c = synth.built.config
    assert states["ApplyDatasetDefault"]["Parameters"] == {"dataset": c.dataset,
                                                           "subset.$": "States.StringToJson('null')"}
    assert states["ApplyDefaults"]["Result"] == {"dataset": c.dataset, "profile": c.profile, "subset": c.subset}
    for name in ("Preprocess",):  # every processing job that reads raw data gets the run's profile
        inputs = {i["InputName"]: i["S3Input"] for i in states[name]["Parameters"]["ProcessingInputs"]}
        assert inputs["profile"] == {"S3Uri.$": "$.plan.s3.profile", "LocalPath": "/opt/ml/processing/input/profile",
                                     "S3DataType": "S3Prefix", "S3InputMode": "File",
                                     "S3DataDistributionType": "FullyReplicated"}


def test_champion_moves_only_after_the_endpoint_serves_the_challenger(synth):
    states = definition(synth)["States"]
    for name, action in (("Promote", "promote"), ("RecordChampion", "confirm"), ("RejectChallenger", "reject")):
        assert states[name]["Parameters"]["action"] == action, name
    status = states["DeploymentStatus?"]
    served, rolled_back, failed = status["Choices"]
    assert served["Next"] == "RecordChampion" and "EndpointConfigName" in json.dumps(served)
    assert states[rolled_back["Next"]]["Next"] == "RejectChallenger"
    assert states[failed["Next"]]["Next"] == "RejectChallenger"
    assert states["RejectChallenger"]["Next"] == "NotifyFailure"
    # first run: no endpoint -> the challenger is the champion the endpoint stack will deploy
    missing = states["EndpointMissing?"]["Choices"][0]
    assert "Could not find endpoint" in missing["StringMatches"] and missing["Next"] == "RecordChampion"
    assert {c["Next"] for c in states["FirstChampion?"]["Choices"]} == {"Deployed"}
    assert states["FirstChampion?"]["Default"] == "EndpointNotDeployed"


def test_sagemaker_steps_use_sync_integrations(synth):
    states = definition(synth)["States"]
    assert states["Preprocess"]["Resource"].endswith("sagemaker:createProcessingJob.sync")
    assert states["Evaluate"]["Resource"].endswith("sagemaker:createProcessingJob.sync")
    assert states["Tune"]["Resource"].endswith("sagemaker:createHyperParameterTuningJob.sync")
    assert states["Refit"]["Resource"].endswith("sagemaker:createTrainingJob.sync")
    raw = next(i for i in states["Preprocess"]["Parameters"]["ProcessingInputs"] if i["InputName"] == "raw")
    assert raw["S3Input"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert raw["S3Input"]["S3DataType"] == "ManifestFile"
    update = states["UpdateEndpoint"]["Parameters"]
    assert update["RetainAllVariantProperties"] is True
    assert update["DeploymentConfig"] == deployment_config(AppConfig.from_context({"predmaint": CDK_CONTEXT["predmaint"]}))


def test_tuning_has_one_definition_per_candidate_with_spot_and_checkpoints(synth):
    c = synth.built.config
    tune = definition(synth)["States"]["Tune"]["Parameters"]
    assert tune["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
    assert tune["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Auto"
    defs = tune["TrainingJobDefinitions"]
    assert [d["DefinitionName"] for d in defs] == list(search_space.ALGORITHMS)
    for d in defs:
        assert d["HyperParameterRanges.$"] == f"$.plan.tuning.definitions.{d['DefinitionName']}.ranges"
        assert d["AlgorithmSpecification"]["TrainingImage"] == xgboost_image_uri(c.region)
        assert d["EnableManagedSpotTraining"] is c.training.use_spot
        assert d["StoppingCondition"]["MaxWaitTimeInSeconds"] == c.training.max_wait_minutes * 60
        assert d["CheckpointConfig"] == {"S3Uri.$": "$.plan.s3.checkpoints"}


#: the built-in XGBoost algorithm's valid values of its tunable hyperparameters (xgboost_hyperparameters.html;
#: aws/sagemaker-xgboost-container algorithm_mode/hyperparameter_validation.py): (low, high, low open)
XGBOOST_TUNABLE_RANGES = {"num_round": (1, math.inf, False), "eta": (0, 1, False), "gamma": (0, math.inf, False),
                          "max_depth": (0, math.inf, False), "min_child_weight": (0, math.inf, False),
                          "max_delta_step": (0, math.inf, False), "subsample": (0, 1, True),
                          "colsample_bytree": (0, 1, True), "colsample_bylevel": (0, 1, True),
                          "colsample_bynode": (0, 1, True), "lambda": (0, math.inf, False),
                          "alpha": (0, math.inf, False)}
#: the built-in algorithm's objective metrics the profiles use (xgboost-tuning.html; algorithm_mode/metrics.py)
XGBOOST_METRICS = {"validation:rmse": "Minimize", "validation:aucpr": "Maximize"}


def test_tuning_follows_the_built_in_xgboost_algorithm_s_contract(synth):
    """Whether the tuning service treats the XGBoost image as the built-in algorithm or not, the requests
    are ones it accepts under that reading: no MetricDefinitions (refused for built-in algorithms), the
    objective one of its documented metrics, every tuned range under one of its tunable hyperparameters
    and within that hyperparameter's valid values; train.py's lines match its metric regex."""
    from training_src.candidates.base import TUNABLE_XGBOOST_NAMES, objective_line

    assert set(XGBOOST_TUNABLE_RANGES) == TUNABLE_XGBOOST_NAMES
    states = definition(synth)["States"]
    for d in states["Tune"]["Parameters"]["TrainingJobDefinitions"]:
        assert "MetricDefinitions" not in json.dumps(d["AlgorithmSpecification"]), d["DefinitionName"]
    assert "MetricDefinitions" not in json.dumps(states["Refit"]["Parameters"]["AlgorithmSpecification"])
    for algorithm in search_space.ALGORITHMS:
        ranges = search_space.sagemaker_parameter_ranges(algorithm)
        names = [r["Name"] for kind in ranges.values() for r in kind]
        assert len(set(names)) == len(names) and set(names) <= TUNABLE_XGBOOST_NAMES, (algorithm, names)
        for r in ranges.get("IntegerParameterRanges", []) + ranges.get("ContinuousParameterRanges", []):
            low, high, low_open = XGBOOST_TUNABLE_RANGES[r["Name"]]
            lo, hi = float(r["MinValue"]), float(r["MaxValue"])
            assert (lo > low if low_open else lo >= low) and hi <= high, (algorithm, r)
        # the candidate reads its own names back (train.py: candidates.base.from_wire)
        own = {p.name: p.low for p in search_space.SEARCH_SPACE[algorithm]}
        module = candidates.get(algorithm)
        assert from_wire(module.PARAMS, search_space.to_wire(algorithm, own)) == own
    for name in ("cmapss", "ai4i2020"):
        profile = load_profile(name)
        assert XGBOOST_METRICS[profile.objective_metric] == profile.objective_direction
        regex = OBJECTIVE_REGEX.format(metric=profile.objective_metric.replace(":", "-"))
        for final in (False, True):  # as SageMaker's log reader sees the line: the tab as #011
            line = objective_line(profile.task, 12.345678, 25, final=final).replace("\t", "#011")
            assert re.match(regex, line)[1] == "12.345678"


def test_state_machine_logging_is_encrypted_and_traced(synth):
    (sm,) = synth.resources("Training", "AWS::StepFunctions::StateMachine").values()
    props = sm["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["StateMachineType"] == "STANDARD"
    for group in synth.resources("Training", "AWS::Logs::LogGroup").values():
        assert "KmsKeyId" in group["Properties"] and "RetentionInDays" in group["Properties"]


#: Python runtimes AWS Lambda supports and that have not reached their deprecation date by the end of
#: 2026 (Lambda runtimes page: python3.11 (Amazon Linux 2) is deprecated on 2026-06-30)
SUPPORTED_PYTHON_RUNTIMES = ("python3.12", "python3.13", "python3.14")


def test_lambdas_run_a_supported_python_with_pinned_powertools_inside_and_tracing(synth):
    c = synth.built.config
    fns = [fn for _, _, fn in synth.all_resources() if fn["Type"] == "AWS::Lambda::Function"]
    assert len(fns) == 3  # prepare, promote, the drift check's starter
    for fn in fns:
        p = fn["Properties"]
        assert p["Runtime"] in SUPPORTED_PYTHON_RUNTIMES and p["TracingConfig"] == {"Mode": "Active"}
        assert p["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == c.project
        # no layer whose content cannot be checked offline: Powertools is in the package (tests/test_layers.py)
        assert "Layers" not in p


def test_image_uri_is_the_pinned_container_for_the_region(synth):
    uri = synth.built.training.image_uri
    assert uri.endswith(f"/sagemaker-xgboost:{XGBOOST_CONTAINER_VERSION}")
    assert f".{synth.built.config.region}." in uri


@pytest.mark.parametrize("stack", ["Data", "Training", "Endpoint", "Monitoring"])
def test_stacks_are_pinned_to_the_configured_region(synth, stack):
    (name,) = [s for s in synth.built.stacks if s.stack_name.endswith(stack)]
    assert name.region == synth.built.config.region
