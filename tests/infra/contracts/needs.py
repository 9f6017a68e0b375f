"""What each principal of the deployed system asks AWS for at run time, as IAM requests.

The needs are derived from the synthesized templates and from real run-time names, never typed in
by hand: the state machine's Task states (resolved with a real plan from the prepare Lambda's
planner), the SageMaker jobs and models those states create, and the boto3 calls the Lambda
handlers actually make (recorded while they run against moto). Each kind of request is mapped to
IAM actions from AWS's documentation:

* Step Functions' SageMaker integrations (the policies Step Functions documents for each,
  https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html; the ``.sync`` pattern
  tags the jobs it starts, hence AddTags, as CDK's own SageMaker task constructs grant);
* Step Functions' CloudWatch Logs delivery and X-Ray tracing (cw-logs-sf.html, concepts-xray-tracing.html);
* SageMaker execution roles (sagemaker-roles.html: S3 inputs with ListBucket on S3Prefix inputs,
  outputs, ECR pull, CloudWatch logs and metrics, KMS for encrypted volumes and objects);
* the Service Authorization Reference for every other API (one action per API unless noted).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from tests.infra.contracts.iam import ACCOUNT, PARTITION, Need

SFN_SAGEMAKER_DOC = "Step Functions: IAM policies for Amazon SageMaker (sagemaker-iam.html)"
SAGEMAKER_ROLE_DOC = "SageMaker: execution roles (sagemaker-roles.html)"
SAR = "Service Authorization Reference"
ROLLBACK_DOC = "SageMaker: auto-rollback (deployment-guardrails-configuration.html: cloudwatch:DescribeAlarms)"
KMS_ENCRYPT_DOC = "SageMaker API: OutputDataConfig/DataCaptureConfig KmsKeyId (execution role needs kms:Encrypt)"
DYNAMODB_KMS_DOC = ("DynamoDB: a customer managed key is used on the caller's behalf through DynamoDB "
                    "(encryption.usagenotes.html, 'Authorizing use of your AWS KMS key')")
#: the KMS actions DynamoDB uses with a table's customer managed key on the caller's behalf
DYNAMODB_KMS = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]

#: .sync integration -> (job resource type, actions on the job, EventBridge rule kind)
SYNC_JOBS = {
    "createProcessingJob": ("processing-job", "ProcessingJobName",
                            ["CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob"], "Processing"),
    "createTrainingJob": ("training-job", "TrainingJobName",
                          ["CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob"], "Training"),
    "createHyperParameterTuningJob": ("hyper-parameter-tuning-job", "HyperParameterTuningJobName",
                                      ["CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob",
                                       "StopHyperParameterTuningJob",
                                       "ListTrainingJobsForHyperParameterTuningJob"], "Tuning"),
}


def jsonpath(doc: Any, path: str) -> Any:
    """``$.a.b.c`` (plain member paths only, as the definition uses for names and URIs)."""
    assert path.startswith("$."), path
    value = doc
    for part in path[2:].split("."):
        value = value[part]
    return value


def parameters(params: Any, state_input: dict[str, Any]) -> Any:
    """A Task's Parameters with ``"key.$": "$.path"`` members resolved (intrinsics are left out)."""
    if isinstance(params, list):
        return [parameters(p, state_input) for p in params]
    if not isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key.endswith(".$"):
            if isinstance(value, str) and value.startswith("$."):
                out[key[:-2]] = jsonpath(state_input, value)
        else:
            out[key] = parameters(value, state_input)
    return out


def s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class Needs:
    """Collects ``Need``s; ``arn(service, resource)`` builds ARNs in the deployment's region/account."""

    def __init__(self, region: str, bucket_keys: dict[str, str], table_keys: dict[str, str] | None = None) -> None:
        self.region, self.bucket_keys = region, bucket_keys  # bucket name -> its SSE-KMS key ARN
        self.table_keys = table_keys or {}  # DynamoDB table name -> its customer managed key ARN
        self.items: list[Need] = []

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{PARTITION}:{service}:{self.region if region else ''}:{ACCOUNT if region else ''}:{resource}"

    def add(self, principal: str, call: str, actions: list[str], resources: list[str],
            context: dict[str, Any] | None = None, source: str = SAR) -> None:
        for action in actions:
            for resource in resources:
                self.items.append(Need(principal, call, action, resource, dict(context or {}), source))

    # ---- S3, with the bucket key for SSE-KMS objects
    def s3_read(self, who: str, call: str, uri: str, source: str = SAR, version: bool = False) -> None:
        bucket, key = s3_parts(uri)
        self.add(who, call, ["s3:GetObject", *(["s3:GetObjectVersion"] if version else [])],
                 [f"arn:{PARTITION}:s3:::{bucket}/{key}"], source=source)
        if bucket in self.bucket_keys:
            self.add(who, call, ["kms:Decrypt"], [self.bucket_keys[bucket]], source="S3: SSE-KMS (UsingKMSEncryption)")

    def s3_list(self, who: str, call: str, uri: str, source: str = SAR) -> None:
        bucket, prefix = s3_parts(uri)
        self.add(who, call, ["s3:ListBucket"], [f"arn:{PARTITION}:s3:::{bucket}"], {"s3:prefix": prefix}, source)

    def s3_write(self, who: str, call: str, uri: str, source: str = SAR, multipart: bool = False) -> None:
        bucket, key = s3_parts(uri)
        self.add(who, call, ["s3:PutObject", *(["s3:AbortMultipartUpload"] if multipart else [])],
                 [f"arn:{PARTITION}:s3:::{bucket}/{key}"], source=source)
        if bucket in self.bucket_keys:
            self.add(who, call, ["kms:GenerateDataKey"], [self.bucket_keys[bucket]],
                     source="S3: SSE-KMS (UsingKMSEncryption)")

    def s3_input(self, who: str, call: str, uri: str, data_type: str, read: Callable[[str], Any] | None) -> None:
        """A SageMaker S3 input: a prefix is listed then read; a manifest is read, then its entries."""
        if data_type == "ManifestFile":
            self.s3_read(who, call, uri, SAGEMAKER_ROLE_DOC)
            manifest = read(uri) if read else []
            prefix = manifest[0]["prefix"] if manifest else ""
            for key in manifest[1:]:
                self.s3_read(who, call, prefix + key, SAGEMAKER_ROLE_DOC)
            return
        self.s3_list(who, call, uri, SAGEMAKER_ROLE_DOC)
        example = uri + "part-00000.parquet" if uri.endswith("/") else uri
        self.s3_read(who, call, example, SAGEMAKER_ROLE_DOC)


def container_needs(n: Needs, who: str, call: str, image: str, log_group: str, stream: str, namespace: str,
                    ecr_repository: str) -> None:
    """What any SageMaker container role does: pull its image, write logs and metrics."""
    n.add(who, call, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
          [ecr_repository], source=SAGEMAKER_ROLE_DOC)
    n.add(who, call, ["ecr:GetAuthorizationToken"], ["*"], source=SAGEMAKER_ROLE_DOC)
    group = n.arn("logs", f"log-group:{log_group}")
    # CloudWatch Logs authorizes CreateLogGroup/DescribeLogStreams on "<group>:log-stream:"
    n.add(who, call, ["logs:CreateLogGroup", "logs:DescribeLogStreams"], [f"{group}:log-stream:"],
          source=SAGEMAKER_ROLE_DOC)
    n.add(who, call, ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{group}:log-stream:{stream}"],
          source=SAGEMAKER_ROLE_DOC)
    n.add(who, call, ["cloudwatch:PutMetricData"], ["*"], {"cloudwatch:namespace": namespace}, SAGEMAKER_ROLE_DOC)


def state_machine_needs(n: Needs, definition: dict[str, Any], state_input: dict[str, Any], roles: dict[str, str],
                        read: Callable[[str], Any], ecr_repository: str) -> None:
    """Needs of the state machine role and of the roles its SageMaker jobs and models run as.

    ``roles`` maps role ARNs to principal keys (``"pipeline"`` is the state machine's own);
    ``read(uri)`` returns a JSON object the plan wrote (the raw-data manifest)."""
    sm = roles["pipeline"]
    principal = {arn: key for arn, key in roles.items() if arn != "pipeline"}
    for name, st in definition["States"].items():
        if st["Type"] != "Task":
            continue
        resource = st["Resource"]
        p = parameters(st.get("Parameters", {}), state_input)
        call = name
        if ":lambda:" in resource and ":function:" in resource:
            n.add(sm, f"{call}: Lambda Invoke", ["lambda:InvokeFunction"], [resource], source=SAR)
            continue
        if resource.endswith(":states:::sns:publish"):
            n.add(sm, f"{call}: sns:Publish", ["sns:Publish"], [p["TopicArn"]], source=SAR)
            key = state_input["_topic_key"]
            n.add(sm, f"{call}: sns:Publish", ["kms:GenerateDataKey", "kms:Decrypt"], [key],
                  source="SNS: SSE with a customer managed key (sns-key-management.html)")
            continue
        if ":states:::aws-sdk:sagemaker:" in resource:
            api = resource.rsplit(":", 1)[1]
            assert api == "describeEndpoint", api
            n.add(sm, f"{call}: DescribeEndpoint", ["sagemaker:DescribeEndpoint"],
                  [n.arn("sagemaker", f"endpoint/{p['EndpointName']}")], source=SAR)
            continue
        assert ":states:::sagemaker:" in resource, (name, resource)
        api, _, sync = resource.rsplit(":", 1)[1].partition(".")
        label = f"{call}: {api[0].upper() + api[1:]}{'.sync' if sync else ''}"
        if api in SYNC_JOBS:
            kind, name_key, actions, rule = SYNC_JOBS[api]
            job = n.arn("sagemaker", f"{kind}/{p[name_key]}")
            n.add(sm, label, [f"sagemaker:{a}" for a in actions], [job], source=SFN_SAGEMAKER_DOC)
            n.add(sm, label, ["sagemaker:AddTags", "sagemaker:ListTags"], [job], source=SFN_SAGEMAKER_DOC)
            n.add(sm, label, ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                  [n.arn("events", f"rule/StepFunctionsGetEventsForSageMaker{rule}JobsRule")],
                  source=SFN_SAGEMAKER_DOC)
            job_roles = [d["RoleArn"] for d in p.get("TrainingJobDefinitions", [])] or [p["RoleArn"]]
            for role in sorted(set(job_roles)):
                n.add(sm, label, ["iam:PassRole"], [role], {"iam:PassedToService": "sagemaker.amazonaws.com"},
                      SFN_SAGEMAKER_DOC)
            if api == "createProcessingJob":
                _processing_job_needs(n, principal[p["RoleArn"]], label, p, read, ecr_repository)
            elif api == "createTrainingJob":
                _training_job_needs(n, principal[p["RoleArn"]], label, p, p["TrainingJobName"], ecr_repository)
            else:
                for d in p["TrainingJobDefinitions"]:  # the trials SageMaker starts run as the jobs role
                    trial = f"{p['HyperParameterTuningJobName']}-001-0a1b2c3d"
                    _training_job_needs(n, principal[d["RoleArn"]], f"{label} trial ({d['DefinitionName']})",
                                        {**d, "HyperParameters": d["StaticHyperParameters"]}, trial, ecr_repository)
        elif api == "createModel":
            model = n.arn("sagemaker", f"model/{p['ModelName']}")
            n.add(sm, label, ["sagemaker:CreateModel", "sagemaker:ListTags"], [model], source=SFN_SAGEMAKER_DOC)
            n.add(sm, label, ["iam:PassRole"], [p["ExecutionRoleArn"]],
                  {"iam:PassedToService": "sagemaker.amazonaws.com"}, SFN_SAGEMAKER_DOC)
            host = principal[p["ExecutionRoleArn"]]
            n.s3_read(host, f"{label}: model data", p["PrimaryContainer"]["ModelDataUrl"], SAGEMAKER_ROLE_DOC)
            state_input["_hosting"] = (host, p["PrimaryContainer"]["Image"])
        elif api == "createEndpointConfig":
            config = n.arn("sagemaker", f"endpoint-config/{p['EndpointConfigName']}")
            n.add(sm, label, ["sagemaker:CreateEndpointConfig", "sagemaker:ListTags"], [config],
                  source=SFN_SAGEMAKER_DOC)
            n.add(sm, label, ["kms:DescribeKey"], [p["KmsKeyId"]], source="SageMaker API: CreateEndpointConfig KmsKeyId")
            host, image = state_input["_hosting"]
            endpoint = state_input["_endpoint_name"]
            variant = p["ProductionVariants"][0]["VariantName"]
            container_needs(n, host, f"{label}: endpoint instances", image, f"/aws/sagemaker/Endpoints/{endpoint}",
                            f"{variant}/i-0abc", "/aws/sagemaker/Endpoints", ecr_repository)
            n.add(host, f"{label}: volume", ["kms:CreateGrant"], [p["KmsKeyId"]],
                  source="SageMaker API: CreateEndpointConfig KmsKeyId")
            dc = p["DataCaptureConfig"]
            n.s3_write(host, f"{label}: data capture",
                       f"{dc['DestinationS3Uri']}/{endpoint}/{variant}/2026/11/30/12/00-00-000-0a1b.jsonl",
                       SAGEMAKER_ROLE_DOC)
            n.add(host, f"{label}: data capture", ["kms:Encrypt"], [dc["KmsKeyId"]], source=KMS_ENCRYPT_DOC)
        elif api == "updateEndpoint":
            n.add(sm, label, ["sagemaker:UpdateEndpoint"],
                  [n.arn("sagemaker", f"endpoint/{p['EndpointName']}"),
                   n.arn("sagemaker", f"endpoint-config/{p['EndpointConfigName']}")], source=SFN_SAGEMAKER_DOC)
            key = state_input["_project_key"]
            n.add(sm, label, ["kms:DescribeKey"], [key], source="SageMaker API: CreateEndpointConfig KmsKeyId")
            n.add(sm, label, ["kms:CreateGrant"], [key], {"kms:GrantIsForAWSResource": "true"},
                  "SageMaker API: CreateEndpointConfig KmsKeyId")
            alarms = [n.arn("cloudwatch", f"alarm:{a['AlarmName']}")
                      for a in p["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
            # the caller, and the model's execution role ("your IAM execution role"): the document
            # does not say which one SageMaker uses
            n.add(sm, label, ["cloudwatch:DescribeAlarms"], alarms, source=ROLLBACK_DOC)
            host, _ = state_input["_hosting"]
            n.add(host, f"{label}: auto-rollback alarms", ["cloudwatch:DescribeAlarms"], alarms, source=ROLLBACK_DOC)
        else:  # pragma: no cover - a new integration needs its documented IAM here
            raise AssertionError(f"{name}: no IAM model for {resource}")


def _processing_job_needs(n: Needs, who: str, label: str, p: dict[str, Any], read: Callable[[str], Any],
                          ecr_repository: str) -> None:
    for item in p["ProcessingInputs"]:
        s3 = item["S3Input"]
        n.s3_input(who, f"{label}: input {item['InputName']}", s3["S3Uri"], s3["S3DataType"], read)
    for item in p["ProcessingOutputConfig"]["Outputs"]:
        uri = item["S3Output"]["S3Uri"]  # SageMaker uploads each file of the local path under it, as a folder
        n.s3_write(who, f"{label}: output {item['OutputName']}", uri.rstrip("/") + "/out.parquet",
                   SAGEMAKER_ROLE_DOC, multipart=True)
    n.add(who, f"{label}: output", ["kms:Encrypt"], [p["ProcessingOutputConfig"]["KmsKeyId"]],
          source=KMS_ENCRYPT_DOC)
    n.add(who, f"{label}: volume", ["kms:CreateGrant"], [p["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]],
          source=SAGEMAKER_ROLE_DOC)
    container_needs(n, who, label, p["AppSpecification"]["ImageUri"], "/aws/sagemaker/ProcessingJobs",
                    f"{p['ProcessingJobName']}/algo-1-1732960000", "/aws/sagemaker/ProcessingJobs", ecr_repository)


def _training_job_needs(n: Needs, who: str, label: str, p: dict[str, Any], job: str, ecr_repository: str) -> None:
    for ch in p["InputDataConfig"]:
        src = ch["DataSource"]["S3DataSource"]
        n.s3_input(who, f"{label}: channel {ch['ChannelName']}", src["S3Uri"], src["S3DataType"], None)
    out = p["OutputDataConfig"]
    n.s3_write(who, f"{label}: model artifact", f"{out['S3OutputPath']}{job}/output/model.tar.gz",
               SAGEMAKER_ROLE_DOC, multipart=True)
    n.add(who, f"{label}: model artifact", ["kms:Encrypt"], [out["KmsKeyId"]], source=KMS_ENCRYPT_DOC)
    n.add(who, f"{label}: volume", ["kms:CreateGrant"], [p["ResourceConfig"]["VolumeKmsKeyId"]],
          source=SAGEMAKER_ROLE_DOC)
    if "CheckpointConfig" in p:  # spot: /opt/ml/checkpoints synced both ways
        cp = p["CheckpointConfig"]["S3Uri"]
        n.s3_list(who, f"{label}: checkpoints", cp, SAGEMAKER_ROLE_DOC)
        n.s3_read(who, f"{label}: checkpoints", cp + "xgboost-checkpoint.100", SAGEMAKER_ROLE_DOC)
        n.s3_write(who, f"{label}: checkpoints", cp + "xgboost-checkpoint.100", SAGEMAKER_ROLE_DOC, multipart=True)
    source = p["HyperParameters"]["sagemaker_submit_directory"].strip('"')
    n.s3_read(who, f"{label}: script-mode source", source, "SageMaker: script mode (sagemaker_submit_directory)")
    container_needs(n, who, label, p["AlgorithmSpecification"]["TrainingImage"], "/aws/sagemaker/TrainingJobs",
                    f"{job}/algo-1-1732960000", "/aws/sagemaker/TrainingJobs", ecr_repository)


# --------------------------------------------------------------------------------------------
# boto3 calls (recorded from the Lambda handlers) -> IAM
# --------------------------------------------------------------------------------------------

def call_needs(n: Needs, who: str, call: Any) -> None:
    """The IAM requests one recorded boto3 call makes (``call``: shapes.RecordedCall)."""
    s, op, p = call.service, call.operation, call.params
    label = f"{s}.{op}"
    if s == "s3":
        if op == "ListObjectsV2":
            n.s3_list(who, label, f"s3://{p['Bucket']}/{p.get('Prefix', '')}")
        elif op == "HeadObject":
            n.add(who, label, ["s3:GetObject", *(["s3:GetObjectVersion"] if p.get("VersionId") else [])],
                  [f"arn:{PARTITION}:s3:::{p['Bucket']}/{p['Key']}"])
        elif op == "GetObject":
            n.s3_read(who, label, f"s3://{p['Bucket']}/{p['Key']}", version=bool(p.get("VersionId")))
        elif op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
            n.s3_write(who, label, f"s3://{p['Bucket']}/{p['Key']}")
        elif op in ("CopyObject", "UploadPartCopy"):
            # boto3 has turned {"Bucket", "Key"} into the API's "bucket/url-encoded-key[?versionId=..]"
            src = urllib.parse.unquote(p["CopySource"].split("?", 1)[0])
            n.s3_read(who, label, f"s3://{src}")
            n.s3_write(who, label, f"s3://{p['Bucket']}/{p['Key']}")
        else:  # pragma: no cover
            raise AssertionError(f"no IAM model for {label}")
    elif s == "sagemaker":
        if op == "ListModelPackages":
            n.add(who, label, ["sagemaker:ListModelPackages"], ["*"])
        elif op in ("DescribeModelPackage", "UpdateModelPackage"):
            arn = p.get("ModelPackageName") or p["ModelPackageArn"]
            n.add(who, label, [f"sagemaker:{op}"], [arn])
        elif op in ("DescribeModelPackageGroup", "CreateModelPackageGroup"):
            n.add(who, label, [f"sagemaker:{op}"], [n.arn("sagemaker", f"model-package-group/{p['ModelPackageGroupName']}")])
        elif op == "CreateProcessingJob":  # the drift check's starter
            n.add(who, label, ["sagemaker:CreateProcessingJob"],
                  [n.arn("sagemaker", f"processing-job/{p['ProcessingJobName'].lower()}")])
            n.add(who, label, ["iam:PassRole"], [p["RoleArn"]], {"iam:PassedToService": "sagemaker.amazonaws.com"},
                  "SageMaker: passing the execution role (sagemaker-roles.html)")
        elif op == "CreateModelPackage":
            group = p["ModelPackageGroupName"]
            n.add(who, label, ["sagemaker:CreateModelPackage"],
                  [n.arn("sagemaker", f"model-package-group/{group}"), n.arn("sagemaker", f"model-package/{group}/1")])
        else:  # pragma: no cover
            raise AssertionError(f"no IAM model for {label}")
    elif s == "dynamodb" and op in ("BatchGetItem", "GetItem", "PutItem", "Scan"):
        tables = sorted(p["RequestItems"]) if op == "BatchGetItem" else [p["TableName"]]
        n.add(who, label, [f"dynamodb:{op}"], [n.arn("dynamodb", f"table/{t}") for t in tables])
        for t in tables:
            if t in n.table_keys:
                n.add(who, label, DYNAMODB_KMS, [n.table_keys[t]],
                      {"kms:ViaService": f"dynamodb.{n.region}.amazonaws.com"}, DYNAMODB_KMS_DOC)
    elif s == "sagemaker-runtime" and op == "InvokeEndpoint":
        n.add(who, label, ["sagemaker:InvokeEndpoint"], [n.arn("sagemaker", f"endpoint/{p['EndpointName'].lower()}")])
    elif s == "events" and op == "PutEvents":
        buses = sorted({e.get("EventBusName", "default") for e in p["Entries"]})
        n.add(who, label, ["events:PutEvents"],
              [b if b.startswith("arn:") else n.arn("events", f"event-bus/{b}") for b in buses])
    elif s == "cloudwatch" and op == "PutMetricData":
        n.add(who, label, ["cloudwatch:PutMetricData"], ["*"], {"cloudwatch:namespace": p["Namespace"]})
    elif s == "ssm" and op in ("PutParameter", "GetParameter"):
        n.add(who, label, [f"ssm:{op}"], [n.arn("ssm", "parameter/" + p["Name"].lstrip("/"))])
    else:  # pragma: no cover
        raise AssertionError(f"no IAM model for {label}")


#: an id EventBridge Scheduler puts in place of <aws.scheduler.execution-id> (scheduler context attributes)
SCHEDULER_EXECUTION_ID = "d32c5kddcf5bb8c3"
SCHEDULER_DOC = "EventBridge Scheduler: templated targets (managing-targets-templated.html)"


def drift_schedule_event(schedule: dict[str, Any], resolve: Callable[[Any], Any]) -> dict[str, Any]:
    """The event the drift schedule hands its target (the starter Lambda), as the scheduler sends it: the
    template's target input resolved, the execution id put in."""
    text = resolve(schedule["Properties"]["Target"]["Input"])
    return json.loads(text.replace("<aws.scheduler.execution-id>", SCHEDULER_EXECUTION_ID))


def drift_check_needs(n: Needs, scheduler: str, job: str, schedule: dict[str, Any], request: dict[str, Any],
                      resolve: Callable[[Any], Any], ecr_repository: str) -> None:
    """The scheduler role invoking the starter, and the job's role running the check the starter
    started (``request``: its CreateProcessingJob request): inputs, output, container, the metric."""
    n.add(scheduler, "DriftSchedule: Lambda Invoke", ["lambda:InvokeFunction"],
          [resolve(schedule["Properties"]["Target"]["Arn"])], source=SCHEDULER_DOC)
    _processing_job_needs(n, job, "DriftCheck", request, lambda uri: [], ecr_repository)
    args = request["AppSpecification"]["ContainerArguments"]
    namespace = args[args.index("--metric-namespace") + 1]
    n.add(job, "DriftCheck: drift.py put_metric", ["cloudwatch:PutMetricData"], ["*"],
          {"cloudwatch:namespace": namespace}, SAR)
