"""The training pipeline as a Standard Step Functions state machine.

Order: ApplyDefaults -> MergeInput -> Prepare -> Preprocess (processing .sync; with
``predmaint.processing.instance_count`` > 1: FitFeatures on one instance -> TransformFeatures on
every instance, raw objects sharded) -> Tune (tuning
.sync, one training job definition per candidate algorithm) -> BestHyperparameters -> Refit
(training .sync) -> Evaluate (processing .sync) -> Promote -> Promoted? -> CreateModel ->
CreateEndpointConfig -> FindEndpoint (first-run guard) -> UpdateEndpoint (blue/green canary,
auto-rollback) -> WaitForDeployment <-> DescribeEndpoint -> DeploymentStatus? -> RecordChampion
[-> RebuildStreamState, with ``predmaint.stream.enabled``] -> FirstChampion? -> Deployed.

Every Task retries transient/throttling errors with exponential backoff and catches everything
else into NotifyFailure (SNS) -> PipelineFailed. The SageMaker steps are ``CustomState``s with
the full API request, because the CDK tasks either lack processing/tuning or add an
unconditioned iam:PassRole; their IAM is written by hand in ``TrainingStateMachine``.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import STREAM_ARCHIVE_PREFIX, STREAM_HORIZON_CYCLES, STREAM_MODEL_INFO_PREFIX, AppConfig
from stacks.functions import PipelineFunction
from stacks.hosting import data_capture, deployment_config, hosting_environment
from stacks.retention import retention
from stacks.roles import SageMakerRoles, alarm_arns, arn
from training_src import search_space

CODE_DIR = "/opt/ml/processing/input/code"
# Processing jobs run a training_src script from the same sourcedir.tar.gz script mode uses (like the
# SageMaker SDK's FrameworkProcessor): unpack it, then training_src.processing runs the script.
# CreateProcessingJob allows at most 256 characters per ContainerEntrypoint item, so the shell part
# only unpacks; everything else is Python in the tarball.
PROCESSING_RUNNER = (
    "mkdir -p /opt/ml/processing/code && "
    f"for f in {CODE_DIR}/*; do tar -xzf \"$f\" -C /opt/ml/processing/code || exit 1; done && "
    "cd /opt/ml/processing/code && exec python3 -m training_src.processing \"$@\""
)

# Step Functions' optimized SageMaker integrations report EVERY API error -- a throttled call and a
# ValidationException or AccessDeniedException alike -- as ``SageMaker.AmazonSageMakerException``, and
# a Retrier matches error names only. So SageMaker tasks have no Retrier: their errors go to a Choice
# that looks at the Cause, backs off and tries again only for these (the AWS Java SDK's "Error Code:
# X" in the Cause), within THROTTLE_BUDGET tries per execution; anything else is reported at once.
THROTTLE_CAUSES = ("*Error Code: ThrottlingException*", "*Rate exceeded*", "*Error Code: InternalFailure*",
                   "*Error Code: ServiceUnavailable*")
THROTTLE_BUDGET = 8
THROTTLE_WAIT_S = 60
#: DescribeEndpoint statuses a blue/green update never leaves by itself
ENDPOINT_DEAD_ENDS = ("Failed", "UpdateRollbackFailed", "OutOfService", "Deleting")
# AWS SDK integrations (arn:aws:states:::aws-sdk:sagemaker:*) name errors after the exception instead
SDK_THROTTLING = ["SageMaker.ThrottlingException", "SageMaker.InternalFailureException"]
LAMBDA_TRANSIENT = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException"]
SNS_TRANSIENT = ["SNS.SnsException", "SNS.ThrottledException", "SNS.InternalErrorException", "States.TaskFailed"]


def _retry(state: Any, errors: list[str], attempts: int = 4, interval_s: int = 10) -> None:
    state.add_retry(errors=errors, interval=cdk.Duration.seconds(interval_s), max_attempts=attempts,
                    backoff_rate=2.0, max_delay=cdk.Duration.minutes(5), jitter_strategy=sfn.JitterType.FULL)


class TrainingStateMachine(Construct):
    """The pipeline definition plus its role, encrypted execution log group and X-Ray tracing."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key: kms.IKey,
                 data: s3.IBucket, artifacts: s3.IBucket, roles: SageMakerRoles, image_uri: str,
                 source_uri: str, prepare: PipelineFunction, promote: PipelineFunction,
                 topic: sns.ITopic, vpc_config: dict[str, Any] | None = None) -> None:
        super().__init__(scope, construct_id)
        self.config, self.key, self.roles, self.image_uri = config, key, roles, image_uri
        self.source_uri, self.artifacts = source_uri, artifacts
        # VPC mode: every job and model runs in the project's isolated subnets (absent key = default network)
        self.vpc = {"VpcConfig": vpc_config} if vpc_config else {}
        c = config
        enc = key.key_arn
        self.task_states: list[str] = []

        # ---------------- failure path ----------------
        # a fixed error name: the caught one may be a reserved States.* name (States.TaskFailed), which a
        # Fail state must not raise; it leads the cause instead
        failed = sfn.Fail(self, "PipelineFailed", error="PipelineFailed",
                          cause_path="States.Format('{}: {}', $.error.Error, $.error.Cause)")
        notify_failure = tasks.SnsPublish(
            self, "NotifyFailure", topic=topic, subject=f"{c.project}: training pipeline failed",
            message=sfn.TaskInput.from_json_path_at("States.Format('Execution {} failed in state machine "
                                                    "{}. Error: {}. Cause: {}', $$.Execution.Name, "
                                                    "$$.StateMachine.Name, $.error.Error, $.error.Cause)"),
            result_path=sfn.JsonPath.DISCARD)
        _retry(notify_failure, SNS_TRANSIENT, attempts=3)
        # the notifier's own failure must still end the execution as failed
        notify_failure.add_catch(failed, errors=["States.ALL"], result_path="$.notify_error")
        notify_failure.next(failed)
        self.task_states.append("NotifyFailure")

        def guarded(state: Any, errors: list[str], attempts: int = 4, failure: Any = None) -> Any:
            _retry(state, errors, attempts)
            state.add_catch(failure or notify_failure, errors=["States.ALL"], result_path="$.error")
            self.task_states.append(state.state_id)
            return state

        def sagemaker_task(state: Any, *transient_causes: str, failure: Any = None) -> Any:
            """A SageMaker task whose throttling (and ``transient_causes``) are retried, nothing else;
            other errors go to ``failure`` (default: the SNS notification)."""
            sid = state.state_id
            wait = sfn.Wait(self, f"{sid}Backoff", time=sfn.WaitTime.duration(cdk.Duration.seconds(THROTTLE_WAIT_S)),
                            comment=f"{sid} was throttled: wait, then call it again")
            count = sfn.Pass(self, f"{sid}Throttled", result_path="$.throttle", parameters={
                "retries.$": "States.MathAdd($.throttle.retries, 1)"})
            transient = sfn.Condition.or_(*[sfn.Condition.string_matches("$.error.Cause", p)
                                            for p in (*THROTTLE_CAUSES, *transient_causes)])
            state.add_catch(sfn.Choice(self, f"{sid}Transient?")
                            .when(sfn.Condition.and_(transient, sfn.Condition.number_less_than(
                                "$.throttle.retries", THROTTLE_BUDGET)), count.next(wait).next(state))
                            .otherwise(failure or notify_failure), errors=["States.ALL"], result_path="$.error")
            self.task_states.append(sid)
            return state

        # ---------------- input and plan ----------------
        # cdk.json's profile and subset are defaults for an execution that names no profile; one that
        # names its own profile (a shipped name or the document itself) never inherits the default
        # subset. A missing subset becomes null (the profile has none, or Prepare says which to give).
        all_defaults = sfn.Pass(self, "ApplyDefaults", result_path="$.defaults", result=sfn.Result.from_object(
            {"dataset": c.dataset, "profile": c.profile, "subset": c.subset}))
        # (a null has to come from an intrinsic: CDK drops None from a Pass's Result)
        dataset_default = sfn.Pass(self, "ApplyDatasetDefault", result_path="$.defaults", parameters={
            "dataset": c.dataset, "subset.$": "States.StringToJson('null')"})
        defaults = (sfn.Choice(self, "ProfileGiven?")
                    .when(sfn.Condition.is_present("$.profile"), dataset_default)
                    .otherwise(all_defaults))
        merge = sfn.Pass(self, "MergeInput", parameters={
            "args.$": "States.JsonMerge($.defaults, $$.Execution.Input, false)"})
        dataset_default.next(merge)
        prepare_task = guarded(tasks.LambdaInvoke(
            self, "Prepare", lambda_function=prepare.function, payload_response_only=True,
            retry_on_service_exceptions=False,
            # the plan replaces the whole state: the input (perhaps a whole profile document) has done its
            # work (the profile is in S3 now) and must not weigh on the 256 KB state limit from here on
            result_selector={"plan.$": "$", "throttle": {"retries": 0}}, result_path="$",
            comment="validate raw data against the profile, pin versions, plan run id/jobs/ranges",
            payload=sfn.TaskInput.from_object({
                "action": "plan", "dataset.$": "$.args.dataset", "profile.$": "$.args.profile",
                "subset.$": "$.args.subset",
                "execution": {"name.$": "$$.Execution.Name", "start_time.$": "$$.Execution.StartTime"}})),
            LAMBDA_TRANSIENT)

        # ---------------- SageMaker jobs ----------------
        cluster = {"InstanceType": c.processing.instance_type, "InstanceCount": c.processing.instance_count,
                   "VolumeSizeInGB": c.processing.volume_size_gb, "VolumeKmsKeyId": enc}
        network_config = {"EnableInterContainerTrafficEncryption": True, "EnableNetworkIsolation": True, **self.vpc}

        def raw_input(distribution: str) -> dict[str, Any]:
            # only the validated objects (manifest written by Prepare)
            return {"InputName": "raw", "S3Input": {
                "S3Uri.$": "$.plan.s3.raw_manifest", "S3DataType": "ManifestFile",
                "LocalPath": "/opt/ml/processing/input/raw", "S3InputMode": "File",
                "S3DataDistributionType": distribution}}

        def outputs(*names: str) -> dict[str, Any]:
            return {"KmsKeyId": enc, "Outputs": [
                {"OutputName": name, "S3Output": {"S3Uri.$": f"$.plan.s3.{name}", "S3UploadMode": "EndOfJob",
                                                  "LocalPath": f"/opt/ml/processing/output/{name}"}}
                for name in names]}

        stopping = {"MaxRuntimeInSeconds": c.processing.max_runtime_minutes * 60}
        processing_result = {"ProcessingJobArn.$": "$.ProcessingJobArn",
                             "ProcessingJobStatus.$": "$.ProcessingJobStatus"}
        if c.processing.instance_count == 1:
            features = [sagemaker_task(self._custom("Preprocess", "createProcessingJob.sync", {
                "ProcessingJobName.$": "$.plan.jobs.preprocess",
                "RoleArn": roles.jobs.role_arn,
                "AppSpecification": self._runner("preprocess.py", "$.plan.arguments.preprocess"),
                "ProcessingResources": {"ClusterConfig": cluster},
                # split across instances by object: the fleet is partitioned by asset, so no asset
                # straddles two instances (with one instance: every object)
                "ProcessingInputs": [self._code_input(), raw_input("ShardedByS3Key"), self._profile_input()],
                "ProcessingOutputConfig": outputs("train", "validation", "test", "spec", "baseline"),
                "StoppingCondition": stopping,
                # code and data arrive as ProcessingInputs: the container itself needs no network
                "NetworkConfig": network_config,
            }, result_selector=processing_result, result_path="$.results.preprocess"))]
        else:
            # a fleet too big for one instance: fit the split assignment and the feature spec once on
            # every object, then transform shards of the objects in parallel, each instance writing
            # one uniquely named part per raw object (training_src/preprocess.py --stage fit|transform)
            sample = c.processing.fit_sample_objects
            features = [sagemaker_task(self._custom("FitFeatures", "createProcessingJob.sync", {
                "ProcessingJobName.$": "$.plan.jobs.fit_features",
                "RoleArn": roles.jobs.role_arn,
                "AppSpecification": self._runner("preprocess.py", "$.plan.arguments.fit_features"),
                "ProcessingResources": {"ClusterConfig": {**cluster, "InstanceCount": 1}},
                "ProcessingInputs": [self._code_input(), raw_input("FullyReplicated"), self._profile_input()],
                "ProcessingOutputConfig": outputs("train", "spec"),  # train/ gets feature_spec.json
                "StoppingCondition": stopping,
                "NetworkConfig": network_config,
                **({"Environment": {"PREDMAINT_FIT_SAMPLE_OBJECTS": str(sample)}} if sample else {}),
            }, result_selector=processing_result, result_path="$.results.fit_features")),
                sagemaker_task(self._custom("TransformFeatures", "createProcessingJob.sync", {
                    "ProcessingJobName.$": "$.plan.jobs.transform_features",
                    "RoleArn": roles.jobs.role_arn,
                    "AppSpecification": self._runner("preprocess.py", "$.plan.arguments.transform_features"),
                    "ProcessingResources": {"ClusterConfig": cluster},
                    "ProcessingInputs": [self._code_input(), raw_input("ShardedByS3Key"), self._profile_input(),
                                         self._s3_input("spec", "$.plan.s3.spec")],  # split.json + spec, every instance
                    "ProcessingOutputConfig": outputs("train", "validation", "test", "baseline"),
                    "StoppingCondition": stopping,
                    "NetworkConfig": network_config,
                }, result_selector=processing_result, result_path="$.results.preprocess"))]

        tune = sagemaker_task(self._custom("Tune", "createHyperParameterTuningJob.sync", {
            "HyperParameterTuningJobName.$": "$.plan.jobs.tuning",
            "HyperParameterTuningJobConfig": {
                "Strategy": c.tuning.strategy,
                "ResourceLimits": {"MaxNumberOfTrainingJobs": c.tuning.max_jobs,
                                   "MaxParallelTrainingJobs": c.tuning.max_parallel_jobs},
                "TrainingJobEarlyStoppingType": c.tuning.early_stopping,
            },
            # on several training instances only the candidates with a collective fit (search_space.py)
            "TrainingJobDefinitions": [self._definition(a)
                                       for a in search_space.tuned_algorithms(c.training.instance_count)],
        }, result_path="$.results.tuning"))
        # DescribeHyperParameterTuningJob has no BestTrainingJob when no trial reported the objective,
        # and a ResultSelector or Parameters path that is missing is States.Runtime, which no Catch
        # sees: so the whole answer is kept, looked at, then trimmed to what the next states read
        keep_best = sfn.Pass(self, "KeepBestTrial", result_path="$.results.tuning", parameters={
            "BestTrainingJob.$": "$.results.tuning.BestTrainingJob",
            "HyperParameterTuningJobArn.$": "$.results.tuning.HyperParameterTuningJobArn"})
        no_objective = sfn.Pass(self, "NoObjectiveReported", result_path="$.promotion", parameters={
            "approved": False, "status": "NotTrained",
            "reason.$": "States.Format('tuning job {} completed without a best training job: no trial reported "
                        "the objective metric {}', $.plan.jobs.tuning, $.plan.tuning.objective.metric)"})
        tuned = (sfn.Choice(self, "ObjectiveReported?")
                 .when(sfn.Condition.is_present("$.results.tuning.BestTrainingJob"), keep_best)
                 .otherwise(no_objective))

        best = guarded(tasks.LambdaInvoke(
            self, "BestHyperparameters", lambda_function=prepare.function, payload_response_only=True,
            retry_on_service_exceptions=False, result_path="$.refit_plan",
            comment="best trial's tuned values over its candidate's static hyperparameters, fit on train+validation",
            payload=sfn.TaskInput.from_object({"action": "refit", "plan.$": "$.plan",
                                               "best_training_job.$": "$.results.tuning.BestTrainingJob"})),
            LAMBDA_TRANSIENT)

        refit = sagemaker_task(self._custom("Refit", "createTrainingJob.sync", {
            "TrainingJobName.$": "$.plan.jobs.refit",
            # no MetricDefinitions: the built-in algorithm's own metric (docs/aws.md, "Tuning contract")
            "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
            "HyperParameters.$": "$.refit_plan.hyperparameters",
            "RoleArn": roles.jobs.role_arn,
            "InputDataConfig": [
                self._channel("train", "$.plan.s3.train", "S3Prefix"),
                self._channel("validation", "$.plan.s3.validation", "S3Prefix", shard=False),
            ],
            **self._training_common("$.plan.s3.model_output"),
        }, result_selector={"ModelArtifacts.$": "$.ModelArtifacts", "TrainingJobArn.$": "$.TrainingJobArn"},
            result_path="$.results.refit"))

        evaluate = sagemaker_task(self._custom("Evaluate", "createProcessingJob.sync", {
            "ProcessingJobName.$": "$.plan.jobs.evaluate",
            "RoleArn": roles.jobs.role_arn,
            "AppSpecification": self._runner("evaluate.py", "$.plan.arguments.evaluate"),
            "ProcessingResources": {"ClusterConfig": {**cluster, "InstanceCount": 1}},
            "ProcessingInputs": [
                self._code_input(),
                self._s3_input("model", "$.results.refit.ModelArtifacts.S3ModelArtifacts"),
                self._s3_input("test", "$.plan.s3.test"),
                self._s3_input("baseline", "$.plan.s3.baseline"),
                self._s3_input("train", "$.plan.s3.train"),
                self._s3_input("validation", "$.plan.s3.validation"),
            ],
            "ProcessingOutputConfig": outputs("evaluation"),
            "StoppingCondition": stopping,
            "NetworkConfig": network_config,
        }, result_selector={"ProcessingJobArn.$": "$.ProcessingJobArn"},
            result_path="$.results.evaluate"))

        promote_task = guarded(tasks.LambdaInvoke(
            self, "Promote", lambda_function=promote.function, payload_response_only=True,
            retry_on_service_exceptions=False, result_path="$.promotion",
            comment="threshold AND beats the champion: register PendingManualApproval (kept under models/) "
                    "or Rejected; idempotent per run",
            payload=sfn.TaskInput.from_object({
                "action": "promote",
                "run_id.$": "$.plan.run_id", "task.$": "$.plan.task", "profile.$": "$.plan.profile",
                "subset.$": "$.plan.subset", "evaluation_report_uri.$": "$.plan.s3.evaluation_report",
                "model_data_url.$": "$.results.refit.ModelArtifacts.S3ModelArtifacts"})),
            # registry throttling is retried inside the function by boto3; its own errors are not transient
            LAMBDA_TRANSIENT)

        # ---------------- deployment ----------------
        not_promoted = sfn.Succeed(self, "NotPromoted", comment="challenger registered as Rejected")
        notify_rejected = guarded(tasks.SnsPublish(
            self, "NotifyRejected", topic=topic, subject=f"{c.project}: challenger not promoted",
            message=sfn.TaskInput.from_json_path_at(
                "States.Format('Run {} was not promoted: {}', $.plan.run_id, $.promotion.reason)"),
            result_path=sfn.JsonPath.DISCARD), SNS_TRANSIENT, attempts=3)
        notify_rejected.next(not_promoted)
        no_objective.next(notify_rejected)

        # After the gate passed, any failure to deploy rejects the challenger (it never served), then notifies
        decision = {"run_id.$": "$.plan.run_id", "model_package_arn.$": "$.promotion.model_package_arn"}
        reject_challenger = tasks.LambdaInvoke(
            self, "RejectChallenger", lambda_function=promote.function, payload_response_only=True,
            retry_on_service_exceptions=False, result_path=sfn.JsonPath.DISCARD,
            comment="not deployed: package Rejected with the reason; the champion stays",
            payload=sfn.TaskInput.from_object({"action": "reject", "reason.$": "$.error.Cause", **decision}))
        _retry(reject_challenger, LAMBDA_TRANSIENT)
        # keep the deployment error (not the rejection's) for the notification
        reject_challenger.add_catch(notify_failure, errors=["States.ALL"], result_path="$.reject_error")
        reject_challenger.next(notify_failure)
        self.task_states.append("RejectChallenger")

        variant = {"VariantName": c.endpoint.variant_name, "ModelName.$": "$.plan.jobs.model",
                   "InstanceType": c.endpoint.instance_type,
                   "InitialInstanceCount": c.endpoint.initial_instance_count}
        create_model = sagemaker_task(self._custom("CreateModel", "createModel", {
            "ModelName.$": "$.plan.jobs.model",
            "ExecutionRoleArn": roles.hosting.role_arn,
            "EnableNetworkIsolation": True,  # code/ is inside model.tar.gz: no network needed
            "PrimaryContainer": {"Image": image_uri, "Mode": "SingleModel",
                                 "ModelDataUrl.$": "$.promotion.model_data_url",
                                 "Environment": hosting_environment(c)},
            **self.vpc,
        }, result_path=sfn.JsonPath.DISCARD), failure=reject_challenger)
        create_config = sagemaker_task(self._custom("CreateEndpointConfig", "createEndpointConfig", {
            "EndpointConfigName.$": "$.plan.jobs.endpoint_config",
            "ProductionVariants": [variant],
            "KmsKeyId": enc,
            "DataCaptureConfig": data_capture(c, artifacts, enc),
        }, result_path=sfn.JsonPath.DISCARD), failure=reject_challenger)

        # The champion moves only once the endpoint serves the challenger (or there is no endpoint yet):
        # RecordChampion approves the package and writes SSM; a rollback or a failed endpoint rejects it.
        record_champion = guarded(tasks.LambdaInvoke(
            self, "RecordChampion", lambda_function=promote.function, payload_response_only=True,
            retry_on_service_exceptions=False, result_path="$.champion",
            comment="the endpoint serves it (or none exists yet): package Approved, champion recorded in SSM",
            payload=sfn.TaskInput.from_object({"action": "confirm", **decision})), LAMBDA_TRANSIENT)

        endpoint_not_deployed = sfn.Succeed(
            self, "EndpointNotDeployed",
            comment="first run: champion approved and recorded in SSM; deploy the endpoint stack next")
        deployed = sfn.Succeed(self, "Deployed", comment="the endpoint serves the new champion")
        first_champion = (sfn.Choice(self, "FirstChampion?")
                          .when(sfn.Condition.is_present("$.results.endpoint.EndpointConfigName"), deployed)
                          .otherwise(endpoint_not_deployed))
        if c.stream.enabled and roles.stream_rebuild is not None:
            record_champion.next(self._stream_rebuild(cluster, stopping, sagemaker_task)).next(first_champion)
        else:
            record_champion.next(first_champion)

        find_endpoint = tasks.CallAwsService(
            self, "FindEndpoint", service="sagemaker", action="describeEndpoint",
            iam_resources=[arn(self, "sagemaker", f"endpoint/{c.endpoint.name}")],
            parameters={"EndpointName": c.endpoint.name},
            result_selector={"EndpointStatus.$": "$.EndpointStatus"}, result_path="$.results.endpoint")
        _retry(find_endpoint, SDK_THROTTLING, attempts=3)
        find_endpoint.add_catch(
            sfn.Choice(self, "EndpointMissing?")
            .when(sfn.Condition.string_matches("$.error.Cause", "*Could not find endpoint*"), record_champion)
            .otherwise(reject_challenger),
            errors=["States.ALL"], result_path="$.error")
        self.task_states.append("FindEndpoint")

        update = sagemaker_task(self._custom("UpdateEndpoint", "updateEndpoint", {
            "EndpointName": c.endpoint.name,
            "EndpointConfigName.$": "$.plan.jobs.endpoint_config",
            "RetainAllVariantProperties": True,  # keeps the autoscaled instance count
            "DeploymentConfig": deployment_config(c),
        }, result_path=sfn.JsonPath.DISCARD), "*Cannot update in-progress endpoint*",  # e.g. autoscaling under way
            failure=reject_challenger)

        wait = sfn.Wait(self, "WaitForDeployment", time=sfn.WaitTime.duration(cdk.Duration.seconds(60)))
        describe = tasks.CallAwsService(
            self, "DescribeEndpoint", service="sagemaker", action="describeEndpoint",
            iam_resources=[arn(self, "sagemaker", f"endpoint/{c.endpoint.name}")],
            parameters={"EndpointName": c.endpoint.name},
            result_selector={"EndpointStatus.$": "$.EndpointStatus", "EndpointConfigName.$": "$.EndpointConfigName"},
            result_path="$.results.endpoint")
        guarded(describe, SDK_THROTTLING, attempts=6, failure=reject_challenger)
        rolled_back = sfn.Pass(self, "DeploymentRolledBack", result_path="$.error", parameters={
            "Error": "DeploymentRolledBack",
            "Cause.$": f"States.Format('Endpoint {c.endpoint.name} is InService on {{}}, not the new config {{}}: "
                       "the canary tripped an alarm and SageMaker rolled back', "
                       "$.results.endpoint.EndpointConfigName, $.plan.jobs.endpoint_config)"})
        endpoint_failed = sfn.Pass(self, "EndpointFailed", result_path="$.error", parameters={
            "Error": "EndpointFailed", "Cause.$": "States.Format('Endpoint status {}', $.results.endpoint.EndpointStatus)"})
        status = (sfn.Choice(self, "DeploymentStatus?")
                  .when(sfn.Condition.and_(
                      sfn.Condition.string_equals("$.results.endpoint.EndpointStatus", "InService"),
                      sfn.Condition.string_equals_json_path("$.results.endpoint.EndpointConfigName",
                                                            "$.plan.jobs.endpoint_config")), record_champion)
                  .when(sfn.Condition.string_equals("$.results.endpoint.EndpointStatus", "InService"),
                        rolled_back.next(reject_challenger))
                  # UpdateRollbackFailed: the update and its rollback both failed (a mix of configs
                  # serves); like Failed it never becomes InService by itself. OutOfService and Deleting
                  # mean someone else took the endpoint down: this deployment will not complete either
                  .when(sfn.Condition.or_(*[sfn.Condition.string_equals("$.results.endpoint.EndpointStatus", s)
                                            for s in ENDPOINT_DEAD_ENDS]),
                        endpoint_failed.next(reject_challenger))
                  .otherwise(wait))

        all_defaults.next(merge)
        chain = merge.next(prepare_task)
        for state in features:
            chain = chain.next(state)
        chain.next(tune).next(tuned)
        (
            keep_best.next(best).next(refit)
            .next(evaluate).next(promote_task)
            .next(sfn.Choice(self, "Promoted?")
                  .when(sfn.Condition.boolean_equals("$.promotion.approved", True),
                        create_model.next(create_config).next(find_endpoint).next(update).next(wait)
                        .next(describe).next(status))
                  .otherwise(notify_rejected))
        )

        self.log_group = logs.LogGroup(
            self, "ExecutionLogs", log_group_name=f"/aws/vendedlogs/states/{c.state_machine_name}",
            encryption_key=key, retention=retention(c.pipeline.log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                             description=f"{c.project} training state machine")
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=c.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD, role=self.role,
            definition_body=sfn.DefinitionBody.from_chainable(defaults),  # starts at ProfileGiven?
            timeout=cdk.Duration.hours(c.pipeline.timeout_hours), tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="raw data -> validated plan -> features -> tuned, refit, evaluated, gated model -> endpoint")
        self._grant_sagemaker()
        self.role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                                    resources=[key.key_arn]))  # encrypted SNS topic
        # CreateEndpointConfig/UpdateEndpoint with KmsKeyId: SageMaker checks the key and creates grants for
        # the endpoint instances' volumes on the caller's behalf (AWS resources only)
        self.role.add_to_policy(iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[key.key_arn]))
        self.role.add_to_policy(iam.PolicyStatement(actions=["kms:CreateGrant"], resources=[key.key_arn],
                                                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))

    def _stream_rebuild(self, cluster: dict[str, Any], stopping: dict[str, Any], sagemaker_task: Any) -> Any:
        """The stream's rebuild after every recorded champion (docs/streaming.md, "Rebuild on AWS"):
        ``python -m training_src.stream.rebuild_job``, the code local mode runs, builds every asset's
        summary for the new champion from the archive and writes the model info the score Lambda reads.

        It runs on the first champion too (the table does not exist yet: only the model info is
        written), so the score Lambda has its model info before the endpoint stack creates the stream.
        Not network-isolated: the job reads and writes the state table through DynamoDB's API, item
        by item with conditional writes, because the stream writes the same items meanwhile and a
        summary must be merged into the item as it is at that moment, not into a copy taken before
        the job (VPC mode: a DynamoDB gateway endpoint; its role allows only that table). Failures are
        reported as the pipeline's; the champion stays recorded and the Lambda answers from windows."""
        c, role = self.config, self.roles.stream_rebuild
        assert role is not None
        local_out = "/opt/ml/processing/output/model-info"
        return sagemaker_task(self._custom("RebuildStreamState", "createProcessingJob.sync", {
            "ProcessingJobName.$": "$.plan.jobs.stream_rebuild",
            "RoleArn": role.role_arn,
            "AppSpecification": {
                "ImageUri": self.image_uri,
                "ContainerEntrypoint": ["/bin/sh", "-c", PROCESSING_RUNNER, "predmaint-runner",
                                        "stream/rebuild_job.py"],
                "ContainerArguments": [
                    "--model", "/opt/ml/processing/input/model",
                    "--archive", f"s3://{self.artifacts.bucket_name}/{STREAM_ARCHIVE_PREFIX}",
                    "--table", c.stream_table_name, "--model-info", f"{local_out}/model-info.json",
                    "--horizon", str(STREAM_HORIZON_CYCLES), "--region", c.region]},
            "ProcessingResources": {"ClusterConfig": {**cluster, "InstanceCount": 1}},
            "ProcessingInputs": [self._code_input(), self._s3_input("model", "$.promotion.model_data_url")],
            "ProcessingOutputConfig": {"KmsKeyId": self.key.key_arn, "Outputs": [{
                "OutputName": "model-info", "S3Output": {
                    "S3Uri": f"s3://{self.artifacts.bucket_name}/{STREAM_MODEL_INFO_PREFIX}", "S3UploadMode": "EndOfJob",
                    "LocalPath": local_out}}]},
            "StoppingCondition": stopping,
            "NetworkConfig": {"EnableInterContainerTrafficEncryption": True, "EnableNetworkIsolation": False,
                              **self.vpc},
        }, result_selector={"ProcessingJobArn.$": "$.ProcessingJobArn"}, result_path="$.results.stream_rebuild"))

    # ---------------- request builders ----------------
    def _custom(self, state_id: str, api: str, parameters: dict[str, Any], *, result_path: str | None = None,
                result_selector: dict[str, str] | None = None) -> sfn.CustomState:
        state: dict[str, Any] = {"Type": "Task", "Resource": f"arn:{cdk.Aws.PARTITION}:states:::sagemaker:{api}",
                                 "Parameters": parameters}
        if result_selector:
            state["ResultSelector"] = result_selector
        if result_path is not None:
            state["ResultPath"] = result_path
        return sfn.CustomState(self, state_id, state_json=state)

    def _runner(self, script: str, arguments_path: str) -> dict[str, Any]:
        return {"ImageUri": self.image_uri,
                "ContainerEntrypoint": ["/bin/sh", "-c", PROCESSING_RUNNER, "predmaint-runner", script],
                "ContainerArguments.$": arguments_path}

    def _code_input(self) -> dict[str, Any]:
        return {"InputName": "code", "S3Input": {
            "S3Uri": self.source_uri, "LocalPath": CODE_DIR, "S3DataType": "S3Prefix", "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated"}}

    @classmethod
    def _profile_input(cls) -> dict[str, Any]:
        """The run's validated profile (Prepare wrote ``profile.json`` there), on every instance."""
        return cls._s3_input("profile", "$.plan.s3.profile")

    @staticmethod
    def _s3_input(name: str, path: str) -> dict[str, Any]:
        return {"InputName": name, "S3Input": {
            "S3Uri.$": path, "LocalPath": f"/opt/ml/processing/input/{name}", "S3DataType": "S3Prefix",
            "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}

    def _channel(self, name: str, path: str, data_type: str, shard: bool = True) -> dict[str, Any]:
        # multi-instance training splits the training data by object; validation goes to every host
        distribution = "ShardedByS3Key" if shard and self.config.training.instance_count > 1 else "FullyReplicated"
        return {"ChannelName": name, "DataSource": {"S3DataSource": {
            "S3DataType": data_type, "S3Uri.$": path, "S3DataDistributionType": distribution}}}

    def _training_common(self, output_path: str) -> dict[str, Any]:
        t = self.config.training
        stopping: dict[str, int] = {"MaxRuntimeInSeconds": t.max_runtime_minutes * 60}
        if t.use_spot:
            stopping["MaxWaitTimeInSeconds"] = t.max_wait_minutes * 60
        return {
            "OutputDataConfig": {"S3OutputPath.$": output_path, "KmsKeyId": self.key.key_arn},
            "ResourceConfig": {"InstanceType": t.instance_type, "InstanceCount": t.instance_count,
                               "VolumeSizeInGB": t.volume_size_gb, "VolumeKmsKeyId": self.key.key_arn},
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": t.use_spot,
            # spot interruptions resume from /opt/ml/checkpoints
            "CheckpointConfig": {"S3Uri.$": "$.plan.s3.checkpoints"},
            "EnableInterContainerTrafficEncryption": True,
            **self.vpc,  # the refit and every tuning TrainingJobDefinition
        }

    def _definition(self, algorithm: str) -> dict[str, Any]:
        """One tuning TrainingJobDefinition; ranges and static values come from the run's plan,
        which Prepare builds from training_src/search_space.py."""
        return {
            "DefinitionName": algorithm,
            "TuningObjective": {"Type.$": "$.plan.tuning.objective.type",
                                "MetricName.$": "$.plan.tuning.objective.metric"},
            "HyperParameterRanges.$": f"$.plan.tuning.definitions.{algorithm}.ranges",
            "StaticHyperParameters.$": f"$.plan.tuning.definitions.{algorithm}.static",
            # no MetricDefinitions: the service refuses them for the XGBoost image (the built-in
            # algorithm's); the objective is its documented metric (docs/aws.md, "Tuning contract")
            "AlgorithmSpecification": {"TrainingImage": self.image_uri, "TrainingInputMode": "File"},
            "RoleArn": self.roles.jobs.role_arn,
            "InputDataConfig": [self._channel("train", "$.plan.s3.train", "S3Prefix"),
                                self._channel("validation", "$.plan.s3.validation", "S3Prefix", shard=False)],
            **self._training_common("$.plan.s3.tuning_output"),
        }

    def _grant_sagemaker(self) -> None:
        c, p = self.config, self.config.job_prefix
        sm = lambda resource: arn(self, "sagemaker", resource)  # noqa: E731
        jobs = [sm(f"processing-job/{p}-*"), sm(f"hyper-parameter-tuning-job/{p}-*"), sm(f"training-job/{p}-*")]
        statements = [
            (["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
             [sm(f"processing-job/{p}-*")]),
            (["sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
              "sagemaker:StopHyperParameterTuningJob", "sagemaker:ListTrainingJobsForHyperParameterTuningJob"],
             [sm(f"hyper-parameter-tuning-job/{p}-*")]),
            (["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"],
             [sm(f"training-job/{p}-*")]),
            # .sync integrations tag the jobs they start (stepfunctions:* tags) and read tags back; the
            # tuning job's trials are training-job/<tuning job name>-NNN-xxxxxxxx
            (["sagemaker:AddTags"], jobs),
            (["sagemaker:ListTags"], [*jobs, sm(f"model/{p}-*"), sm(f"endpoint-config/{p}-*")]),
            (["sagemaker:CreateModel"], [sm(f"model/{p}-*")]),
            (["sagemaker:CreateEndpointConfig"], [sm(f"endpoint-config/{p}-*")]),
            (["sagemaker:UpdateEndpoint"], [sm(f"endpoint/{c.endpoint.name}"), sm(f"endpoint-config/{p}-*")]),
            # UpdateEndpoint names the rollback alarms: SageMaker reads them as the caller
            # (deployment-guardrails-configuration.html: DescribeAlarms on the auto-rollback alarms)
            (["cloudwatch:DescribeAlarms"], alarm_arns(self, c)),
            # .sync integrations create/read these managed EventBridge rules
            (["events:DescribeRule", "events:PutRule", "events:PutTargets"],
             [arn(self, "events", f"rule/StepFunctionsGetEventsForSageMaker{kind}JobsRule")
              for kind in ("Processing", "Training", "Tuning")]),
        ]
        for actions, resources in statements:
            self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        self.role.add_to_policy(self.roles.pass_roles())


def state_order(definition: dict[str, Any]) -> list[str]:
    """The states reachable from StartAt along Next/Choice-default edges (the happy path), for tests."""
    order, current = [], definition["StartAt"]
    states = definition["States"]
    while current and current not in order:
        order.append(current)
        st = states[current]
        if st["Type"] == "Choice":
            current = st["Choices"][0]["Next"]
        else:
            current = st.get("Next")
    return order

