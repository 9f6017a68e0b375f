"""Run the synthesized training state machine offline: moto's Step Functions interpreter, the real
Lambda handlers, and stand-ins for the SageMaker service behind the task states.

Pieces (``test_state_machine_flow.py`` says what is real and what is stood in):

* ``Resolver`` evaluates a template's intrinsic functions to what CloudFormation would produce in
  account 123456789012; ``Deployment.of(synth)`` collects the resolved definition, the two functions
  (their staged code bundle, their environment from the template), topic, buckets and endpoint.
* ``SageMakerStandIn`` answers every SageMaker request the definition makes: each request is
  checked against botocore's input shape (an invalid one is refused with a ValidationException, as
  AWS would) and each answer is built the way the real API fills it and checked against the output
  shape. Jobs read their S3 inputs from moto (a missing input fails the job like SageMaker's data
  download does) and write their outputs there (train/validation/test parts, model.tar.gz,
  evaluation.json).
* ``interpreter_hooks(world)`` plugs those into moto's ASL interpreter at its integration boundaries:
  the service-task classes for ``arn:aws:states:::sagemaker:*`` and ``aws-sdk:sagemaker:*``
  (``_eval_service_task`` / ``_build_sync_resolver`` / ``_from_error``), the Lambda invocation
  (``lambda_eval_utils._invoke_lambda_function``), the Wait state's clock and the Retrier's sleep,
  and memoises the ANTLR parse of a definition text (seconds of pure Python, repeated by moto for
  CreateStateMachine and every execution; the evaluation components are still built per execution).
  Everything else -- parsing, JSONPath, intrinsic functions, Choice rules, Retry/Catch, ResultSelector
  and ResultPath, the SNS integration (to moto's SNS) -- is the interpreter's own.
* ``World`` is one account: moto S3/SageMaker registry/SSM/SNS/Step Functions with the deployment's
  resources, FD001 uploaded to the data bucket, the state machine created from the definition.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import io
import json
import os
import tarfile
import time
import traceback
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
    lambda_eval_utils,
    state_task_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse import asl_parser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from predmaint.modules import load_module
from tests.infra.contracts.iam import ACCOUNT, PARTITION, Resolver, name_suffix
from tests.infra.contracts.shapes import problems

#: execution names are ``predmaint start-training``'s, stamped EPOCH + one hour per run (unique, stable)
EPOCH = 1_798_000_000  # 2026-12-23


@dataclasses.dataclass(frozen=True)
class Function:
    """A deployed Lambda function: its ARN, the handler in its staged code bundle, its environment."""

    name: str
    arn: str
    handler_file: Path
    handler_name: str
    environment: dict[str, str]
    memory_mb: int


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What the tests need from the synthesized app, every token resolved."""

    region: str
    definition: dict[str, Any]
    state_machine_name: str
    role_arn: str
    functions: dict[str, Function]  # by ARN
    topic_arn: str
    model_package_group: str
    data_bucket: str
    artifacts_bucket: str
    endpoint_name: str
    #: the endpoint stack's own (CloudFormation-named) endpoint config: what the endpoint serves
    #: before the state machine first updates it
    endpoint_config_name: str

    @classmethod
    def of(cls, synth: Any, region: str) -> Deployment:
        templates = synth.templates
        resolver = Resolver(templates, region)
        training = next(n for n in templates if n.endswith("Training"))
        endpoint_stack = next(n for n in templates if n.endswith("Endpoint"))
        res = templates[training]["Resources"]

        def one(t: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
            (found,) = [(k, v) for k, v in t["Resources"].items() if v["Type"] == kind]
            return found

        sm_id, sm = one(templates[training], "AWS::StepFunctions::StateMachine")
        definition = json.loads(resolver.resolve(training, sm["Properties"]["DefinitionString"]))
        assets = json.loads((synth.outdir / f"{training}.assets.json").read_text())["files"]
        functions = {}
        for logical, fn in res.items():
            if fn["Type"] != "AWS::Lambda::Function":
                continue
            props = fn["Properties"]
            asset_hash = props["Code"]["S3Key"].split(".")[0]
            module, _, handler_name = props["Handler"].rpartition(".")
            env = {k: str(v) for k, v in resolver.resolve(training, props["Environment"]["Variables"]).items()}
            f = Function(name=resolver.physical_name(training, logical),
                         arn=resolver.get_att(training, logical, "Arn"),
                         handler_file=synth.outdir / assets[asset_hash]["source"]["path"] / f"{module}.py",
                         handler_name=handler_name, environment=env, memory_mb=int(props.get("MemorySize", 128)))
            functions[f.arn] = f
        topic_id, _ = one(templates[training], "AWS::SNS::Topic")
        _, endpoint = one(templates[endpoint_stack], "AWS::SageMaker::Endpoint")
        prepare = next(f for f in functions.values() if "DATA_BUCKET" in f.environment)
        return cls(
            region=region, definition=definition,
            state_machine_name=resolver.physical_name(training, sm_id),
            role_arn=resolver.resolve(training, sm["Properties"]["RoleArn"]),
            functions=functions, topic_arn=resolver.ref(training, topic_id),
            model_package_group=next(f.environment["MODEL_PACKAGE_GROUP"] for f in functions.values()
                                     if "MODEL_PACKAGE_GROUP" in f.environment),
            data_bucket=prepare.environment["DATA_BUCKET"], artifacts_bucket=prepare.environment["ARTIFACTS_BUCKET"],
            endpoint_name=resolver.resolve(endpoint_stack, endpoint["Properties"]["EndpointName"]),
            endpoint_config_name=resolver.resolve(endpoint_stack, endpoint["Properties"]["EndpointConfigName"]),
        )


# --------------------------------------------------------------------------------------------
# SageMaker, stood in
# --------------------------------------------------------------------------------------------

def client_error(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    """The botocore error the SageMaker API answers with."""
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4())}}, operation)


def throttling(operation: str) -> ClientError:
    return client_error(operation, "ThrottlingException", "Rate exceeded")


def _ms(offset_s: float = 0.0) -> int:
    """A timestamp as Step Functions hands SageMaker's to the state: epoch milliseconds."""
    return int((time.time() + offset_s) * 1000)


#: endpoint statuses that change by themselves (everything else needs someone to act)
TRANSITIONAL = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


class SageMakerStandIn:
    """The SageMaker API behind the state machine's tasks (see the module docstring).

    Knobs a test sets before a run: ``evaluation`` (the report the Evaluate job writes),
    ``best_algorithm``, ``fail_job[<Create* operation>]`` (the .sync Describe then reports the job
    Failed with that reason), ``faults[<operation>]`` (errors to raise on the next calls; ``None``
    entries succeed), ``rollout`` (what DescribeEndpoint reports after an UpdateEndpoint, one entry
    per call: ``("Updating", "old")``, ``("InService", "new")``, ``("InService", "old")``,
    ``("Failed", "old")``).
    """

    def __init__(self, s3: Any, region: str) -> None:
        self.s3, self.region = s3, region
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every request, refused or not, in order
        self.problems: list[str] = []  # requests (or stand-in answers) that break the API model
        self.describes: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, job name) -> Describe* output
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoint: dict[str, Any] | None = None
        self.evaluation: dict[str, Any] | None = None
        self.best_algorithm = "xgboost"
        self.objective: float | None = 14.5  # None: no trial reported the objective (no BestTrainingJob)
        self.fail_job: dict[str, str] = {}
        self.faults: dict[str, list[Exception | None]] = {}
        self.rollout: list[tuple[str, str]] = [("Updating", "old"), ("InService", "new")]
        self._pending_rollout: list[tuple[str, str]] = []
        self._terminal_polls = 0

    # ---- plumbing ----
    def arn(self, kind: str, name: str) -> str:
        return f"arn:{PARTITION}:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    def operations(self) -> list[str]:
        return [op for op, _ in self.calls]

    def _answer(self, operation: str, output: dict[str, Any]) -> dict[str, Any]:
        self.problems += [f"stand-in answer {p}" for p in problems("sagemaker", operation, output, output=True)]
        return json.loads(json.dumps(output))  # what reaches the state: JSON

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One SageMaker API request (API spelling, e.g. ``CreateModel``); returns the API's answer."""
        self.calls.append((operation, copy.deepcopy(params)))
        found = problems("sagemaker", operation, params)
        if found:
            self.problems += found
            raise client_error(operation, "ValidationException", "; ".join(found))
        queued = self.faults.get(operation)
        if queued:
            fault = queued.pop(0)
            if fault is not None:
                raise fault
        return self._answer(operation, getattr(self, f"_{operation}")(params))

    def describe_job(self, create_operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """What the .sync integration polls: the Describe* answer of the job the request created."""
        kind = create_operation[len("Create"):]
        name = params[f"{kind}Name"]
        return self._answer(f"Describe{kind}", self.describes[(kind, name)])

    # ---- S3 as the jobs see it ----
    def _exists(self, uri: str, prefix: bool) -> bool:
        bucket, key = _split_s3(uri)
        if not prefix:
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError:
                return False
        return self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0) > 0

    def _ours(self, uri: str) -> bool:
        """Buckets of this account (the CDK assets bucket, holding the code, is not modelled)."""
        bucket = _split_s3(uri)[0]
        return bucket in {b["Name"] for b in self.s3.list_buckets()["Buckets"]}

    def _missing_inputs(self, inputs: list[tuple[str, str]]) -> list[str]:
        """``(uri, S3DataType)`` inputs the job could not download (what SageMaker's download fails on)."""
        missing = []
        for uri, data_type in inputs:
            if not self._ours(uri):
                continue
            if data_type == "ManifestFile":
                if not self._exists(uri, prefix=False):
                    missing.append(uri)
                    continue
                bucket, key = _split_s3(uri)
                manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                root = manifest[0]["prefix"]
                missing += [root + k for k in manifest[1:] if not self._exists(root + k, prefix=False)]
            elif not self._exists(uri, prefix=True):
                missing.append(uri)
        return missing

    def _put(self, uri: str, body: bytes) -> None:
        bucket, key = _split_s3(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)

    def _finish(self, operation: str, out: dict[str, Any], status_key: str, missing: list[str]) -> bool:
        """Set the job's terminal status; True if it completed."""
        reason = self.fail_job.get(operation)
        if missing and not reason:
            reason = f"ClientError: No S3 objects found under S3 URL {missing[0]!r}"
        out[status_key] = "Failed" if reason else "Completed"
        if reason:
            out["FailureReason"] = reason
        return not reason

    # ---- jobs ----
    def _CreateProcessingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name, arn = p["ProcessingJobName"], self.arn("processing-job", p["ProcessingJobName"])
        out = {k: p[k] for k in ("ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources",
                                 "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig",
                                 "RoleArn") if k in p}
        out.update(ProcessingJobName=name, ProcessingJobArn=arn, CreationTime=_ms(), ProcessingStartTime=_ms(60),
                   ProcessingEndTime=_ms(600), LastModifiedTime=_ms(600))
        missing = self._missing_inputs([(i["S3Input"]["S3Uri"], i["S3Input"]["S3DataType"])
                                        for i in p.get("ProcessingInputs", []) if "S3Input" in i])
        if self._finish("CreateProcessingJob", out, "ProcessingJobStatus", missing):
            out["ExitMessage"] = ""
            for o in p["ProcessingOutputConfig"]["Outputs"]:
                uri = o["S3Output"]["S3Uri"].rstrip("/")
                if o["OutputName"] == "evaluation":  # evaluate.py writes evaluation.json into its output
                    assert self.evaluation is not None, "set world.sagemaker.evaluation before the run"
                    self._put(f"{uri}/evaluation.json", json.dumps(self.evaluation).encode())
                else:
                    self._put(f"{uri}/part-00000.parquet", b"PAR1 stand-in part PAR1")
        self.describes[("ProcessingJob", name)] = out
        return {"ProcessingJobArn": arn}

    def _tuned_values(self, definition: dict[str, Any]) -> dict[str, str]:
        """One value per tuned range of the winning definition (the middle of each range)."""
        out = {}
        ranges = definition["HyperParameterRanges"]
        for r in ranges.get("IntegerParameterRanges", []):
            out[r["Name"]] = str((int(r["MinValue"]) + int(r["MaxValue"])) // 2)
        for r in ranges.get("ContinuousParameterRanges", []):
            lo, hi = float(r["MinValue"]), float(r["MaxValue"])
            out[r["Name"]] = repr((lo * hi) ** 0.5 if r.get("ScalingType") == "Logarithmic" else (lo + hi) / 2)
        for r in ranges.get("CategoricalParameterRanges", []):
            out[r["Name"]] = r["Values"][0]
        return out

    def _CreateHyperParameterTuningJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["HyperParameterTuningJobName"]
        arn = self.arn("hyper-parameter-tuning-job", name)
        definitions = p.get("TrainingJobDefinitions") or [p["TrainingJobDefinition"]]
        out = {k: p[k] for k in ("HyperParameterTuningJobConfig", "TrainingJobDefinitions", "TrainingJobDefinition")
               if k in p}
        limit = p["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"]
        out.update(HyperParameterTuningJobName=name, HyperParameterTuningJobArn=arn, CreationTime=_ms(),
                   HyperParameterTuningEndTime=_ms(3600), LastModifiedTime=_ms(3600),
                   TrainingJobStatusCounters={"Completed": limit, "InProgress": 0, "RetryableError": 0,
                                              "NonRetryableError": 0, "Stopped": 0},
                   ObjectiveStatusCounters={"Succeeded": limit, "Pending": 0, "Failed": 0})
        missing = self._missing_inputs([(c["DataSource"]["S3DataSource"]["S3Uri"],
                                         c["DataSource"]["S3DataSource"]["S3DataType"])
                                        for d in definitions for c in d.get("InputDataConfig", [])])
        if self.objective is None:  # every trial ran, none printed the objective: the job still Completes
            out["ObjectiveStatusCounters"] = {"Succeeded": 0, "Pending": 0, "Failed": limit}
        if self._finish("CreateHyperParameterTuningJob", out, "HyperParameterTuningJobStatus", missing) \
                and self.objective is not None:
            (best,) = [d for d in definitions if d.get("DefinitionName") == self.best_algorithm]
            objective = best.get("TuningObjective") or \
                p["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
            trial = f"{name}-{limit:03d}-{name_suffix(name, n=8).lower()}"
            out["BestTrainingJob"] = {
                "TrainingJobDefinitionName": best["DefinitionName"], "TrainingJobName": trial,
                "TrainingJobArn": self.arn("training-job", trial), "CreationTime": _ms(1800),
                "TrainingStartTime": _ms(1860), "TrainingEndTime": _ms(2400), "TrainingJobStatus": "Completed",
                "TunedHyperParameters": self._tuned_values(best),
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": self.objective},
                "ObjectiveStatus": "Succeeded",
            }
        self.describes[("HyperParameterTuningJob", name)] = out
        return {"HyperParameterTuningJobArn": arn}

    def _CreateTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name, arn = p["TrainingJobName"], self.arn("training-job", p["TrainingJobName"])
        out = {k: p[k] for k in ("HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
                                 "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition",
                                 "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
                                 "EnableManagedSpotTraining", "CheckpointConfig", "Environment") if k in p}
        artifact = f"{p['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        out.update(TrainingJobName=name, TrainingJobArn=arn, ModelArtifacts={"S3ModelArtifacts": artifact},
                   CreationTime=_ms(), TrainingStartTime=_ms(60), TrainingEndTime=_ms(900), LastModifiedTime=_ms(900),
                   TrainingTimeInSeconds=840, BillableTimeInSeconds=300)
        missing = self._missing_inputs([(c["DataSource"]["S3DataSource"]["S3Uri"],
                                         c["DataSource"]["S3DataSource"]["S3DataType"])
                                        for c in p.get("InputDataConfig", [])])
        if self._finish("CreateTrainingJob", out, "TrainingJobStatus", missing):
            out["SecondaryStatus"] = "Completed"
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                body = f"stand-in booster of {name}".encode()
                info = tarfile.TarInfo("model.ubj")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            self._put(artifact, buf.getvalue())
        else:
            out["SecondaryStatus"] = "Failed"  # and no model.tar.gz is written
        self.describes[("TrainingJob", name)] = out
        return {"TrainingJobArn": arn}

    # ---- hosting ----
    def _CreateModel(self, p: dict[str, Any]) -> dict[str, Any]:
        url = p["PrimaryContainer"]["ModelDataUrl"]
        if not self._exists(url, prefix=False):
            raise client_error("CreateModel", "ValidationException", f"Could not find model data at {url}.")
        if p["ModelName"] in self.models:
            raise client_error("CreateModel", "ValidationException",
                               f"Cannot create already existing model \"{self.arn('model', p['ModelName'])}\".")
        self.models[p["ModelName"]] = p
        return {"ModelArn": self.arn("model", p["ModelName"])}

    def _CreateEndpointConfig(self, p: dict[str, Any]) -> dict[str, Any]:
        for v in p["ProductionVariants"]:
            if v["ModelName"] not in self.models:
                raise client_error("CreateEndpointConfig", "ValidationException",
                                   f"Could not find model \"{self.arn('model', v['ModelName'])}\".")
        self.endpoint_configs[p["EndpointConfigName"]] = p
        return {"EndpointConfigArn": self.arn("endpoint-config", p["EndpointConfigName"])}

    def deploy_endpoint(self, name: str, config: str) -> None:
        """What ``cdk deploy`` of the endpoint stack leaves: the endpoint InService on ``config``."""
        self.endpoint = {"EndpointName": name, "EndpointArn": self.arn("endpoint", name), "EndpointConfigName": config,
                         "EndpointStatus": "InService", "CreationTime": _ms(), "LastModifiedTime": _ms()}

    def _missing_endpoint(self, operation: str, name: str) -> ClientError:
        return client_error(operation, "ValidationException",
                            f"Could not find endpoint \"{self.arn('endpoint', name)}\".")

    def _UpdateEndpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.endpoint is None or self.endpoint["EndpointName"] != p["EndpointName"]:
            raise self._missing_endpoint("UpdateEndpoint", p["EndpointName"])
        if p["EndpointConfigName"] not in self.endpoint_configs:
            raise client_error("UpdateEndpoint", "ValidationException", "Could not find endpoint configuration "
                               f"\"{self.arn('endpoint-config', p['EndpointConfigName'])}\".")
        if self.endpoint["EndpointStatus"] != "InService":
            raise client_error("UpdateEndpoint", "ValidationException",
                               f"Cannot update in-progress endpoint \"{self.endpoint['EndpointArn']}\".")
        self.endpoint["pending"] = p["EndpointConfigName"]
        self._pending_rollout = list(self.rollout)
        return {"EndpointArn": self.endpoint["EndpointArn"]}

    def _DescribeEndpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        e = self.endpoint
        if e is None or e["EndpointName"] != p["EndpointName"]:
            raise self._missing_endpoint("DescribeEndpoint", p["EndpointName"])
        if not self._pending_rollout and "pending" in e and e["EndpointStatus"] not in TRANSITIONAL:
            # a status that never changes by itself, still being polled: the state machine would
            # wait for it until its own timeout. Stop the run here, visibly.
            self._terminal_polls += 1
            if self._terminal_polls > 3:
                self.problems.append(f"DescribeEndpoint polled {self._terminal_polls} times on the terminal "
                                     f"status {e['EndpointStatus']}")
                raise client_error("DescribeEndpoint", "StandInStop", "stand-in: endless polling")
        if self._pending_rollout:
            status, which = self._pending_rollout.pop(0)
            e["EndpointStatus"], e["LastModifiedTime"] = status, _ms()
            if which == "new" and status == "InService":
                e["EndpointConfigName"] = e.pop("pending")
            elif status == "InService":
                e.pop("pending")  # rolled back: the update is over
            if status == "Failed":
                e["FailureReason"] = ("Request to service failed. If failure persists after retry, contact "
                                      "customer support.")
        return {k: v for k, v in e.items() if k != "pending"}


# --------------------------------------------------------------------------------------------
# the interpreter's integration boundaries
# --------------------------------------------------------------------------------------------

def _api_operation(action: str) -> str:
    return action[0].upper() + action[1:]


class SageMakerTask(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]``, Step Functions' optimized SageMaker integration,
    in place of moto's ``StateTaskServiceUnsupported`` (which refuses ``.sync``).

    As AWS documents it: the task sends the request (its resolved Parameters) to the API; a ``.sync``
    task then waits for the job and its result is the Describe* answer; a job that ends Failed fails
    the task with ``States.TaskFailed`` and that answer as the Cause; an API error fails it with
    ``SageMaker.AmazonSageMakerException`` and the AWS Java SDK's message as the Cause
    ("<message> (Service: AmazonSageMaker; Status Code: 400; Error Code: <code>; Request ID: <id>; Proxy: null)").
    """

    stand_in: ClassVar[SageMakerStandIn | None] = None

    def __init__(self) -> None:
        # moto's callback plumbing needs the task-token endpoint even for .sync (as its ECS/Batch tasks have)
        super().__init__(supported_integration_patterns={ResourceCondition.WaitForTaskToken, ResourceCondition.Sync})

    def _validate_service_integration_is_supported(self) -> None:
        pass  # every SageMaker API is reachable; the stand-in refuses what the API model refuses

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            error = "SageMaker.AmazonSageMakerException"
            meta = ex.response["ResponseMetadata"]
            cause = (f"{ex.response['Error']['Message']} (Service: AmazonSageMaker; Status Code: "
                     f"{meta['HTTPStatusCode']}; Error Code: {ex.response['Error']['Code']}; Request ID: "
                     f"{meta['RequestId']}; Proxy: null)")
            return FailureEvent(env=env, error_name=CustomErrorName(error), event_type=HistoryEventType.TaskFailed,
                                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                                    error=error, cause=cause, resource=self._get_sfn_resource(),
                                    resourceType=self._get_sfn_resource_type())))
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                           state_credentials: Any) -> None:
        assert self.stand_in is not None
        env.stack.append(self.stand_in.call(_api_operation(self.resource.api_action), normalised_parameters))

    def _build_sync_resolver(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                             state_credentials: Any) -> Callable[[], Any]:
        env.stack.pop()  # the Create* answer: the .sync result replaces it
        stand_in, operation = self.stand_in, _api_operation(self.resource.api_action)
        assert stand_in is not None

        def resolve() -> Any:
            described = stand_in.describe_job(operation, normalised_parameters)
            status = next(v for k, v in described.items() if k.endswith("JobStatus"))
            if status in ("Failed", "Stopped"):
                raise FailureEventException(FailureEvent(
                    env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                        error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=to_json_str(described),
                        resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type()))))
            return described
        return resolve


class AwsSdkTask(StateTaskServiceAwsSdk):
    """``arn:aws:states:::aws-sdk:*``: moto's own integration (its error naming, its Cause format),
    with ``sagemaker`` calls answered by the stand-in instead of moto's SageMaker backend."""

    stand_in: ClassVar[SageMakerStandIn | None] = None

    def _eval_service_task(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                           state_credentials: Any) -> None:
        if self.resource.api_name != "sagemaker":
            return super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
        assert self.stand_in is not None
        env.stack.append(self.stand_in.call(_api_operation(self.resource.api_action), normalised_parameters))
        return None


_TREES: dict[str, Any] = {}


def _parse(definition: str) -> tuple[Any, Any]:
    """moto's ``AmazonStateLanguageParser.parse`` with the ANTLR stage memoised per definition text.

    The pure-Python ANTLR parse of this definition takes seconds and moto repeats it for
    CreateStateMachine and for every execution; the parse tree is a function of the text alone.
    The evaluation components are still built afresh from the tree for every call, as moto does."""
    if definition not in _TREES:
        _TREES[definition] = _ORIGINAL_PARSE(definition)[1]  # raises ASLParserException like moto
    return Preprocessor().visit(_TREES[definition]), _TREES[definition]


_ORIGINAL_PARSE = asl_parser.AmazonStateLanguageParser.parse


@contextlib.contextmanager
def interpreter_hooks(world: World) -> Iterator[None]:
    """Plug the stand-ins into moto's interpreter (see the module docstring)."""
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return SageMakerTask()
        if service_name == "aws-sdk":
            return AwsSdkTask()
        return original(service_name)

    def wait(self: WaitFunction, env: Any, wait_seconds: int) -> None:
        world.waits.append((env.states.context_object.context_object_data["State"]["Name"], wait_seconds))

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(_parse)))
        stack.enter_context(mock.patch.object(state_task_factory, "state_task_service_for", service_for))
        stack.enter_context(mock.patch.object(SageMakerTask, "stand_in", world.sagemaker))
        stack.enter_context(mock.patch.object(AwsSdkTask, "stand_in", world.sagemaker))
        stack.enter_context(mock.patch.object(lambda_eval_utils, "_invoke_lambda_function", world.invoke_lambda))
        stack.enter_context(mock.patch.object(WaitFunction, "_wait_interval", wait))
        stack.enter_context(mock.patch.object(retrier_decl, "time", types.SimpleNamespace(
            sleep=lambda seconds: world.retry_sleeps.append(seconds))))
        yield


# --------------------------------------------------------------------------------------------
# the account
# --------------------------------------------------------------------------------------------

@functools.cache
def _session(region: str) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


@functools.cache
def _client(region: str, service: str) -> Any:
    """Clients are stateless towards moto's backends; creating one costs a tenth of a second."""
    return _session(region).client(service)


class LambdaContext:
    """What the Lambda runtime hands a Python handler (the fields Powertools reads)."""

    def __init__(self, fn: Function) -> None:
        self.function_name, self.invoked_function_arn = fn.name, fn.arn
        self.memory_limit_in_mb, self.aws_request_id = fn.memory_mb, str(uuid.uuid4())
        self.function_version, self.log_group_name = "$LATEST", f"/aws/lambda/{fn.name}"


@dataclasses.dataclass
class Run:
    """One finished execution: status, end output or error, and the event history."""

    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[dict[str, Any]]

    @property
    def states(self) -> list[str]:
        """Names of the states entered, in order."""
        return [e["stateEnteredEventDetails"]["name"] for e in self.events if "stateEnteredEventDetails" in e]

    def outputs(self, state: str) -> list[Any]:
        """The state's output each time it was left."""
        return [json.loads(e["stateExitedEventDetails"]["output"]) for e in self.events
                if e.get("stateExitedEventDetails", {}).get("name") == state]


class World:
    """One offline account with the deployment in it (use inside ``mock_aws``)."""

    def __init__(self, dep: Deployment, data_dir: Path, storage: bool = True) -> None:
        """``storage``: create the buckets (False: the account already has them, as in the deploy rehearsal)."""
        self.dep, self.region = dep, dep.region
        self.session = _session(self.region)
        self.s3, self.sm, self.ssm = _client(self.region, "s3"), _client(self.region, "sagemaker"), \
            _client(self.region, "ssm")
        self.sfn = _client(self.region, "stepfunctions")
        self.sagemaker = SageMakerStandIn(self.s3, self.region)
        self.waits: list[tuple[str, int]] = []
        self.retry_sleeps: list[float] = []
        self.invocations: list[dict[str, Any]] = []  # {"function", "event", "result" | "error"}
        self.problems: list[str] = []  # Lambda invoke requests/answers that break the API model
        self._handlers: dict[str, Any] = {}
        for bucket in (dep.data_bucket, dep.artifacts_bucket) if storage else ():
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})
            self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for path in sorted((data_dir / "cmapss").glob("*FD001.txt*")):  # the raw fleet, as a user uploads it
            self.s3.put_object(Bucket=dep.data_bucket, Key=f"raw/cmapss/{path.name}", Body=path.read_bytes())
        # no model package group: the promote function creates it on first use (not a stack resource)
        sns = _client(self.region, "sns")
        assert sns.create_topic(Name=dep.topic_arn.rsplit(":", 1)[1])["TopicArn"] == dep.topic_arn
        self.state_machine_arn: str | None = None  # created by the first run, inside interpreter_hooks
        self.calls: list[Any] = []  # boto3 calls recorded while runs ran (see open_world)
        self._runs = 0

    # ---- Lambda ----
    def _handler(self, fn: Function) -> Callable[[Any, Any], Any]:
        if fn.arn not in self._handlers:
            module = load_module(fn.handler_file, f"deployed_{fn.name.replace('-', '_')}")
            self._handlers[fn.arn] = getattr(module, fn.handler_name)
        return self._handlers[fn.arn]

    def invoke_lambda(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        """The Lambda service behind the interpreter's invoke: the function's deployed handler, run
        in its own environment (from the template), answering like the Python runtime."""
        self.problems += [f"lambda Invoke request {p}" for p in problems("lambda", "Invoke", parameters)]
        fn = self.dep.functions[parameters["FunctionName"]]
        event = json.loads(parameters["Payload"])
        env = {**fn.environment, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
               "AWS_LAMBDA_FUNCTION_NAME": fn.name, "POWERTOOLS_TRACE_DISABLED": "true"}
        record: dict[str, Any] = {"function": fn.name, "event": event}
        self.invocations.append(record)
        answer: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(io.StringIO()):
            try:
                result = json.loads(json.dumps(self._handler(fn)(event, LambdaContext(fn))))
                record["result"] = answer["Payload"] = result
            except Exception as exc:  # the runtime's error answer
                record["error"] = exc
                answer["FunctionError"] = "Unhandled"
                answer["Payload"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                     "requestId": str(uuid.uuid4()),
                                     "stackTrace": traceback.format_tb(exc.__traceback__)}
        wire = {**answer, "Payload": json.dumps(answer["Payload"]).encode()}  # a blob on the wire
        self.problems += [f"lambda Invoke answer {p}" for p in problems("lambda", "Invoke", wire, output=True)]
        return answer

    def seed_champion(self, report: dict[str, Any], run_id: str = "20261201-000000-c0de") -> dict[str, Any]:
        """An earlier run's outcome, for tests that start from "a champion exists": its model and
        report in S3 as a run leaves them, then the deployed promote function's ``promote`` and
        ``confirm`` actions, invoked as the state machine invokes them. Returns the confirm result."""
        promote = next(f for f in self.dep.functions.values() if "MODEL_PACKAGE_GROUP" in f.environment)
        root = f"s3://{self.dep.artifacts_bucket}/runs/{run_id}"
        model = f"{root}/model/pm-fit-{run_id}/output/model.tar.gz"
        self.sagemaker._put(model, b"champion model")
        self.sagemaker._put(f"{root}/evaluation/evaluation.json", json.dumps(report).encode())

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            answer = self.invoke_lambda({"FunctionName": promote.arn, "Payload": json.dumps(event).encode()},
                                        self.region, None)
            assert "FunctionError" not in answer, answer["Payload"]
            return answer["Payload"]

        outcome = invoke({"action": "promote", "run_id": run_id, "task": "rul_regression", "profile": "cmapss",
                          "subset": "FD001", "evaluation_report_uri": f"{root}/evaluation/evaluation.json",
                          "model_data_url": model})
        assert outcome["approved"], outcome
        return invoke({"action": "confirm", "run_id": run_id, "model_package_arn": outcome["model_package_arn"]})

    # ---- executions ----
    def run(self, *, timeout_s: float = 120.0, execution_input: dict[str, Any] | None = None) -> Run:
        """Start one execution the way ``predmaint start-training`` does (or, with ``execution_input``,
        the way a console user or a trigger would) and wait for its end."""
        from predmaint.aws import execution_name, start_training

        self.create_state_machine()
        self._runs += 1
        name = execution_name("cmapss", "FD001", now=EPOCH + 3600 * self._runs)
        if execution_input is None:
            arn, _ = start_training(self.state_machine_arn, "cmapss", "cmapss", "FD001", self.region,
                                    session=self.session, name=name)
        else:
            arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                           input=json.dumps(execution_input))["executionArn"]
        return self.finish(arn, timeout_s)

    def create_state_machine(self) -> str:
        """CreateStateMachine of the deployment's definition (which parses, and so validates, it), once."""
        if self.state_machine_arn is None:
            self.state_machine_arn = self.sfn.create_state_machine(
                name=self.dep.state_machine_name, definition=json.dumps(self.dep.definition),
                roleArn=self.dep.role_arn, type="STANDARD")["stateMachineArn"]
        return self.state_machine_arn

    def finish(self, arn: str, timeout_s: float = 120.0) -> Run:
        """Wait for the execution ``arn`` to end; its status, output or error, and history."""
        name = arn.rsplit(":", 1)[1]
        # wait on moto's own record of the execution (polling through the API would only add
        # DescribeExecution noise to the recorded calls and compete with the interpreter's thread)
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        execution = stepfunctions_parser_backends[ACCOUNT][self.region].describe_execution(arn)
        deadline = time.monotonic() + timeout_s
        while execution.status == "RUNNING":
            assert time.monotonic() < deadline, f"{name} still running after {timeout_s} s"
            time.sleep(0.01)
        desc = self.sfn.describe_execution(executionArn=arn)
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return Run(arn=arn, status=desc["status"], output=json.loads(desc["output"]) if desc.get("output") else None,
                   error=desc.get("error"), cause=desc.get("cause"), events=events)

    # ---- what the account holds ----
    def packages(self) -> list[dict[str, Any]]:
        """The registry's packages of the group, oldest first (none before the group exists)."""
        try:
            self.sm.describe_model_package_group(ModelPackageGroupName=self.dep.model_package_group)
        except ClientError:
            return []
        return self.sm.list_model_packages(ModelPackageGroupName=self.dep.model_package_group, SortBy="CreationTime",
                                           SortOrder="Ascending")["ModelPackageSummaryList"]

    def parameter(self, name: str) -> str | None:
        try:
            return self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError:
            return None

    def sns_messages(self) -> list[dict[str, Any]]:
        """The Publish requests the state machine sent (through moto's SNS integration)."""
        return [c.params for c in self.calls if (c.service, c.operation) == ("sns", "Publish")]

    def invocations_of(self, function_suffix: str, action: str) -> list[dict[str, Any]]:
        return [i for i in self.invocations
                if i["function"].endswith(function_suffix) and i["event"].get("action") == action]


@contextlib.contextmanager
def open_world(dep: Deployment, data_dir: Path) -> Iterator[World]:
    """An offline account holding ``dep``: moto (Step Functions executing), the interpreter hooked
    to the stand-ins, and every boto3 call made during the runs recorded in ``world.calls``."""
    from moto import mock_aws

    from tests.infra.contracts.shapes import recording_calls

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        world = World(dep, data_dir)
        with interpreter_hooks(world), recording_calls() as calls:
            world.calls = calls
            yield world


def evaluation_report(data_dir: Path, noise: float, *, baseline_noise: float = 45.0,
                      seed: int = 0) -> dict[str, Any]:
    """An evaluation report in evaluate.py's form for predictions ``noise`` cycles (RMS) off FD001's
    true test RUL, with metrics computed by evaluate.py's own ``regression_metrics``."""
    import gzip

    import numpy as np

    from training_src.evaluate import regression_metrics

    rul_file = data_dir / "cmapss" / "RUL_FD001.txt.gz"
    y = np.loadtxt(io.StringIO(gzip.decompress(rul_file.read_bytes()).decode()))
    rng = np.random.default_rng(seed)
    unit = rng.standard_normal(len(y))
    p = np.clip(y + noise * unit / np.sqrt(np.mean(unit ** 2)), 0, None)
    b = np.clip(y + baseline_noise * rng.standard_normal(len(y)), 0, None)
    m, mb = regression_metrics(y, p), regression_metrics(y, b)
    return {
        "task": "rul_regression", "profile": "cmapss", "subset": "FD001",
        "regression_metrics": {k: {"value": m[k], "standard_deviation": None} for k in ("rmse", "mae", "r2")},
        "nasa_score": m["nasa_score"], "protocol": "last reading of each test asset vs true (uncapped) RUL",
        "baseline": {k: mb[k] for k in ("rmse", "mae", "nasa_score")},
        "improvement_pct": 100.0 * (mb["rmse"] - m["rmse"]) / mb["rmse"],
        # the same test set for every run: the fingerprint of FD001's test files
        "test_fingerprint": hashlib.sha256(b"".join((data_dir / "cmapss" / f).read_bytes() for f in (
            "test_FD001.txt.gz", "RUL_FD001.txt.gz"))).hexdigest()[:16],
        "n_test": len(y), "algorithm": "xgboost",
    }
