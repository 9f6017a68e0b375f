"""Stands in for AWS while ``notebooks/sagemaker.ipynb``'s AWS branch runs in a kernel of ``.venv-sdk``.

tests/test_notebook_sagemaker.py executes the notebook with one extra cell before it (``start``) and
one after it (``dump``). Between them every boto3 call the notebook and the SageMaker SDK make goes
to moto and is recorded with the project's recorder (tests/infra/contracts/shapes.py); ``dump``
writes the recorded calls to JSON, where the test (in the project's venv) checks them against
botocore's models and against what the pipeline sends.

moto answers calls, it does not run jobs. Where its answers differ from the service's in a way the
SDK trips over or the notebook depends on, it is corrected here, each patch saying why:

* a tuning job's ``BestTrainingJob`` is moto's fixed placeholder (``{"string": ...}`` hyperparameters):
  here it is a trial inside the job's own ranges, and ``BEST_OBJECTIVE`` orders the candidates;
* moto renders an unset optional structure as ``{}`` (``VpcConfig`` of DescribeModel,
  ``DataCaptureConfig`` of DescribeEndpointConfig, ...), which breaks the API's output shape (their
  required members are missing) and sagemaker-core's parsing; the service leaves them out, and so
  does ``_drop_empty_structures`` for every SageMaker answer;
* ``InvokeEndpoint`` answers a fixed ``"body"``: here it refuses an endpoint that does not exist
  (as SageMaker does) and otherwise answers the endpoint contract with ``rul`` 0.0 per asset (no
  model runs here; the test checks the request, not these numbers).

The SDK's client-side IAM check (``iam:SimulatePrincipalPolicy``, which moto lacks) is switched off
with the SDK's own ``SAGEMAKER_VALIDATE_ROLE=false`` by the test; the role itself is the user's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from predmaint.modules import load_module
from training_src.candidates import CANDIDATES

REPO = Path(__file__).resolve().parents[1]
#: final objective of each candidate's best trial (validation RMSE: lower wins): the first candidate
#: (the one tuning starts from) wins, each later one is a point worse
BEST_OBJECTIVE = {name: 11.5 + i for i, name in enumerate(CANDIDATES)}

_state: dict[str, Any] = {}


def _best_trial(definition: dict[str, Any], objective: dict[str, Any]) -> dict[str, Any]:
    """A trial at the middle of each range (geometric middle on a log scale), as BestTrainingJob."""
    ranges = definition.get("HyperParameterRanges") or {}
    tuned = {}
    for kind, items in ranges.items():
        for r in items:
            if kind == "CategoricalParameterRanges":
                tuned[r["Name"]] = r["Values"][0]
                continue
            low, high = float(r["MinValue"]), float(r["MaxValue"])
            mid = math.sqrt(low * high) if r.get("ScalingType") == "Logarithmic" else (low + high) / 2
            tuned[r["Name"]] = str(round(mid)) if kind == "IntegerParameterRanges" else repr(mid)
    algorithm = json.loads(definition["StaticHyperParameters"]["algorithm"])
    return {"TunedHyperParameters": tuned, "FinalHyperParameterTuningJobObjectiveMetric": {
        "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": BEST_OBJECTIVE[algorithm]}}


def _drop_empty_structures(shape: Any, value: Any) -> None:
    """Remove, in place, every ``{}`` standing for a structure that has required members."""
    from botocore.model import ListShape, StructureShape

    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name in list(value):
            member = shape.members.get(name)
            if isinstance(member, StructureShape) and value[name] == {} and member.required_members:
                del value[name]
            elif member is not None:
                _drop_empty_structures(member, value[name])
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _drop_empty_structures(shape.member, item)


def _patch_moto() -> None:
    from moto.sagemaker import models as sm
    from moto.sagemakerruntime import responses as rt

    init = sm.HyperParameterTuningJob.__init__

    def tuning_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        definition = self.training_job_definition
        objective = self.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"]
        if definition:
            # single-definition jobs keep their ranges in the job config (the API's layout)
            definition = {**definition, "HyperParameterRanges":
                          self.hyper_parameter_tuning_job_config.get("ParameterRanges", {})}
            trial = _best_trial(definition, objective)
            name = f"{self.hyper_parameter_tuning_job_name}-001-{len(_state['best']):08x}"
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:training-job/{name}"
            self.best_training_job = {**self.best_training_job, **trial, "TrainingJobName": name,
                                      "TrainingJobArn": arn, "TuningJobName": self.hyper_parameter_tuning_job_name}
            del self.best_training_job["TrainingJobDefinitionName"]  # only multi-definition jobs name one
            self.best_training_job.pop("FailureReason", None)
            _state["best"][self.hyper_parameter_tuning_job_name] = self.best_training_job

    sm.HyperParameterTuningJob.__init__ = tuning_init

    from botocore.client import BaseClient

    make_api_call = BaseClient._make_api_call

    def api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        response = make_api_call(self, operation_name, api_params)
        if self.meta.service_model.service_name == "sagemaker":
            _drop_empty_structures(self.meta.service_model.operation_model(operation_name).output_shape, response)
        return response

    BaseClient._make_api_call = api_call

    def invoke_endpoint(self: Any) -> Any:
        from urllib.parse import unquote

        from moto.core.exceptions import JsonRESTError

        name = unquote(self.path.split("/")[2])  # POST /endpoints/{EndpointName}/invocations
        if name not in sm.sagemaker_backends[self.current_account][self.region].endpoints:
            raise JsonRESTError("ValidationError", f"Endpoint {name} of account {self.current_account} not found.")
        request = json.loads(self.body)
        body = {"predictions": [{"asset_id": i["asset_id"], "rul": 0.0} for i in request["instances"]],
                "model_version": "moto (no model runs in this test)"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    rt.SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint


def start() -> None:
    """Start moto and the recorder for the rest of the kernel's life."""
    from moto import mock_aws

    shapes = load_module(REPO / "tests" / "infra" / "contracts" / "shapes.py", "predmaint_contract_shapes")
    mock = mock_aws()
    mock.start()
    recorder = shapes.recording_calls()
    _state.update(mock=mock, recorder=recorder, calls=recorder.__enter__(), best={})
    _patch_moto()


def _jsonable(value: Any) -> Any:
    """Request parameters as JSON: bytes as text (InvokeEndpoint's body), streams as a marker."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if hasattr(value, "read"):
        return "<stream>"
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def dump(path: str, **notebook: Any) -> None:
    """Write ``{"calls": [[service, operation, params], ...], "best": {tuning job: BestTrainingJob},
    "objects": {s3 uri: text of the JSON/shell objects uploaded, or the member names of a tarball},
    "notebook": {name: value}}`` to ``path``; ``notebook`` passes variables of the notebook (its plan)."""
    import boto3

    s3 = boto3.client("s3")
    objects = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for item in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            key = item["Key"]
            if key.endswith((".json", ".sh")) or key.endswith("sourcedir.tar.gz"):
                body = s3.get_object(Bucket=bucket["Name"], Key=key)["Body"].read()
                if key.endswith(".tar.gz"):
                    import io
                    import tarfile

                    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                        objects[f"s3://{bucket['Name']}/{key}"] = sorted(tar.getnames())
                else:
                    objects[f"s3://{bucket['Name']}/{key}"] = body.decode()
    calls = [[c.service, c.operation, _jsonable(c.params)] for c in _state["calls"]]
    Path(path).write_text(json.dumps({"calls": calls, "best": _jsonable(_state["best"]), "objects": objects,
                                      "notebook": _jsonable(notebook)}, indent=1, default=str))
