"""AWS side of the CLI: start a training execution of the deployed state machine.

``predmaint start-training`` calls ``start_training``; it needs AWS credentials (boto3's usual
chain) and the training stack deployed (``cdk deploy Predmaint-Training``).

The execution input is ``{"dataset", "profile", "subset"}`` where ``profile`` is a shipped profile's
name or the profile document itself (a JSON object): a user's fleet travels with the run, and the
prepare Lambda validates it exactly as local mode validates a profile file.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

#: the CloudFormation output of the training stack that holds the state machine ARN
STATE_MACHINE_OUTPUT = "StateMachineArn"
#: StartExecution's ``input``: at most 262,144 bytes of UTF-8 (botocore's stepfunctions model, tested)
MAX_INPUT_BYTES = 262_144
#: botocore's credential errors: no AWS call can work, say how to configure credentials
CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError")
CREDENTIALS_HINT = ("configure AWS credentials first: `aws configure` (or `aws sso login`), AWS_PROFILE, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


class StartTrainingError(RuntimeError):
    """The state machine could not be found or the execution could not be started."""


class ExecutionInputError(ValueError):
    """The execution input cannot be sent (too big for Step Functions); found before any AWS call."""


def is_credentials_error(exc: BaseException) -> bool:
    """True for botocore's missing/partial/unretrievable credentials errors (also when wrapped)."""
    while exc is not None:
        if type(exc).__name__ in CREDENTIAL_ERRORS and type(exc).__module__.startswith("botocore"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def execution_input(dataset: str, profile: str | dict[str, Any], subset: str | None) -> str:
    """The execution's JSON input ``{"dataset", "profile", "subset"}``; ``profile`` is a shipped name or
    the profile document, ``subset`` None (JSON null) when the profile has no subsets.

    Raises ``ExecutionInputError`` when it exceeds what StartExecution accepts (``MAX_INPUT_BYTES``).
    """
    # subset is always sent, null when the profile has none: the state machine merges the input over
    # the deployment's defaults, and a default subset must not land on a profile without subsets
    payload: dict[str, Any] = {"dataset": dataset, "profile": profile, "subset": subset or None}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)  # the limit counts UTF-8 bytes: send é as 2 bytes, not a 6-byte escape
    size = len(text.encode("utf-8"))
    if size > MAX_INPUT_BYTES:
        raise ExecutionInputError(
            f"the execution input is {size:,} bytes with the profile inline; Step Functions accepts at most "
            f"{MAX_INPUT_BYTES:,} (256 KB): shorten the profile (descriptions, notes, unused columns)")
    return text


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
        if is_credentials_error(exc):
            raise
        raise StartTrainingError(f"cannot read stack {state_machine_arn_or_stack_name!r}: {exc}") from exc
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == STATE_MACHINE_OUTPUT:
            return output["OutputValue"]
    raise StartTrainingError(f"stack {state_machine_arn_or_stack_name!r} has no {STATE_MACHINE_OUTPUT} output; "
                             "is it the training stack (e.g. Predmaint-Training)?")


#: StartExecution's ``name``: 1-80 characters (botocore's stepfunctions model, tested)
MAX_NAME_CHARS = 80
#: random hex digits that end every execution name: two starts in the same second still differ
NAME_TOKEN_HEX = 6


def execution_name(profile: str, subset: str | None, now: float | None = None, token: str | None = None) -> str:
    """``<profile>-<subset>-<UTC timestamp>-<token>``: readable and unique, at most 80 characters.

    The timestamp (to the second) and ``token`` (``NAME_TOKEN_HEX`` random hex digits unless given) are
    always kept whole; a long profile name is shortened instead, so names never collide because the
    part that makes them unique was cut off. Characters Step Functions refuses in names become ``-``.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    tail = f"{stamp}-{token if token is not None else secrets.token_hex(NAME_TOKEN_HEX // 2)}"
    head = re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(p for p in (profile, subset) if p))
    head = head[:MAX_NAME_CHARS - len(tail) - 1].rstrip("-")
    return f"{head}-{tail}" if head else tail


def start_training(state_machine_arn_or_stack_name: str, dataset: str, profile: str | dict[str, Any],
                   subset: str | None, region: str, *, session: Any = None, name: str | None = None) -> tuple[str, str]:
    """Start one execution of the training pipeline; return ``(execution_arn, console_url)``.

    ``state_machine_arn_or_stack_name`` is the state machine ARN or the training stack's name.
    ``profile`` is a shipped profile's name or a validated profile document (``Profile.to_dict()``).
    The execution input is ``execution_input(dataset, profile, subset)``: raw objects under
    ``s3://<data bucket>/raw/<dataset>/`` are validated against the profile by the prepare step.
    Raises ``ExecutionInputError`` (before any AWS call) if the input is too big,
    ``StartTrainingError`` with the reason when AWS refuses; botocore's credential errors pass
    through unchanged (``is_credentials_error``).
    """
    text = execution_input(dataset, profile, subset)
    profile_name = profile["name"] if isinstance(profile, dict) else profile
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=region)
    arn = resolve_state_machine(state_machine_arn_or_stack_name, session.client("cloudformation", region_name=region))
    sfn = session.client("stepfunctions", region_name=region)
    try:
        response = sfn.start_execution(stateMachineArn=arn, name=name or execution_name(profile_name, subset),
                                       input=text)
    except Exception as exc:
        if is_credentials_error(exc):
            raise
        raise StartTrainingError(f"cannot start {arn}: {exc}") from exc
    execution_arn = response["executionArn"]
    return execution_arn, console_url(execution_arn, region)


class FleetPageError(RuntimeError):
    """The fleet page cannot be fetched: its stack, output or object is missing (one line, says why)."""


def fetch_fleet_page(stack_name: str, region: str, dest: Any, *, session: Any = None) -> str:
    """Download the fleet page the scheduled quality check writes to ``dest`` (a path); returns its
    ``s3://`` URL, read from the Monitoring stack's ``FleetPageUrl`` output (stacks/quality_monitor.py).

    ``FleetPageError`` when the stack does not exist, has no such output (the stream or the quality
    check is off), or no page was written yet; botocore's credential errors pass through."""
    from pathlib import Path

    from stacks.config import FLEET_PAGE_OUTPUT

    if session is None:
        import boto3

        session = boto3.session.Session(region_name=region)
    cloudformation = session.client("cloudformation", region_name=region)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # botocore ClientError: no such stack, no access
        if is_credentials_error(exc):
            raise
        raise FleetPageError(f"cannot read stack {stack_name!r} in {region}: {_message(exc)}; deploy it "
                             "(cdk deploy) with predmaint.stream.enabled") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    uri = outputs.get(FLEET_PAGE_OUTPUT)
    if uri is None:
        raise FleetPageError(f"stack {stack_name!r} has no {FLEET_PAGE_OUTPUT} output: the quality check runs only "
                             "with predmaint.stream.enabled and predmaint.quality.enabled")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = session.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if is_credentials_error(exc):
            raise
        raise FleetPageError(f"no fleet page at {uri} ({_message(exc)}): the scheduled quality check writes it "
                             "on its first run after the stream has archived answers") from None
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return uri


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")
    return str(exc)
