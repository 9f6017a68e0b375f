"""AWS side of the CLI: start a training execution of the deployed state machine.

``predmaint start-training`` calls ``start_training``; it needs AWS credentials (boto3's usual
chain) and the training stack deployed (``cdk deploy Predmaint-Training``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

#: the CloudFormation output of the training stack that holds the state machine ARN
STATE_MACHINE_OUTPUT = "StateMachineArn"


class StartTrainingError(RuntimeError):
    """The state machine could not be found or the execution could not be started."""


def console_url(execution_arn: str, region: str) -> str:
    """AWS console link to an execution's graph and event history."""
    return (f"https://{region}.console.aws.amazon.com/states/home?region={region}"
            f"#/v2/executions/details/{execution_arn}")


def resolve_state_machine(state_machine_arn_or_stack_name: str, cloudformation: Any) -> str:
    """An ARN as given, or the ``StateMachineArn`` output of the named CloudFormation stack."""
    if state_machine_arn_or_stack_name.startswith("arn:"):
        return state_machine_arn_or_stack_name
    try:
        stacks = cloudformation.describe_stacks(StackName=state_machine_arn_or_stack_name)["Stacks"]
    except Exception as exc:  # botocore ClientError: stack does not exist, no access, ...
        raise StartTrainingError(f"cannot read stack {state_machine_arn_or_stack_name!r}: {exc}") from exc
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == STATE_MACHINE_OUTPUT:
            return output["OutputValue"]
    raise StartTrainingError(f"stack {state_machine_arn_or_stack_name!r} has no {STATE_MACHINE_OUTPUT} output; "
                             "is it the training stack (e.g. Predmaint-Training)?")


def execution_name(profile: str, subset: str | None, now: float | None = None) -> str:
    """``<profile>-<subset>-<UTC timestamp>``: readable, unique per second, at most 80 characters."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    name = "-".join(p for p in (profile, subset, stamp) if p)
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:80]


def start_training(state_machine_arn_or_stack_name: str, dataset: str, profile: str, subset: str | None,
                   region: str, *, session: Any = None, name: str | None = None) -> tuple[str, str]:
    """Start one execution of the training pipeline; return ``(execution_arn, console_url)``.

    ``state_machine_arn_or_stack_name`` is the state machine ARN or the training stack's name.
    The execution input is ``{"dataset", "profile", "subset"}``: raw objects under
    ``s3://<data bucket>/raw/<dataset>/`` are validated against the profile by the prepare step.
    Raises ``StartTrainingError`` with the reason when AWS refuses.
    """
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=region)
    arn = resolve_state_machine(state_machine_arn_or_stack_name, session.client("cloudformation", region_name=region))
    payload: dict[str, Any] = {"dataset": dataset, "profile": profile}
    if subset:
        payload["subset"] = subset
    sfn = session.client("stepfunctions", region_name=region)
    try:
        response = sfn.start_execution(stateMachineArn=arn, name=name or execution_name(profile, subset),
                                       input=json.dumps(payload))
    except Exception as exc:
        raise StartTrainingError(f"cannot start {arn}: {exc}") from exc
    execution_arn = response["executionArn"]
    return execution_arn, console_url(execution_arn, region)
