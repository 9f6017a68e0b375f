"""The deploy rehearsal: docs/aws.md's "First deploy, step by step", command by command, in one account.

The commands are read from the walkthrough itself (every ``npx cdk bootstrap|deploy|destroy ...`` and
``predmaint start-training ...`` code span, in order), so the test follows what a user follows.

* ``npx cdk bootstrap``: the CDK's SSM version parameter and assets bucket exist from then on.
* ``npx cdk deploy``: each stack, in dependency order, against the synthesized template, as
  CloudFormation would create it: every SSM-typed stack parameter must exist in Parameter Store, every
  ``Fn::ImportValue`` must be exported by a deployed stack, every project bucket the stack names must
  exist (or be created by it), every asset must be in the bootstrap bucket, and no fixed name
  (bucket, parameter, function, topic, log group, endpoint, alarm, ...) may be taken already;
  resources are created in dependency order and the first failure stops the deploy (rolled back, as
  CloudFormation does, except what a Retain policy keeps).
* ``predmaint start-training``: the real CLI (its argument parser and ``predmaint.aws``), the stack
  name resolved to the deployed state machine's output; the execution runs in moto's Step Functions
  interpreter with the real Lambda handlers (``flow.World``). Every boto3 call a Lambda makes and every
  SageMaker request the state machine sends is checked against the synthesized policy of the principal
  that makes it (``needs.call_needs``, ``iam.allowed``); UpdateEndpoint also needs
  ``cloudwatch:DescribeAlarms`` on its rollback alarms (AWS: deployment-guardrails-configuration.html).
* The drift schedule fires between the steps as EventBridge Scheduler would fire it: its target
  invoked with its input (a Lambda: the deployed handler runs in moto; the ``aws-sdk`` universal target
  for CreateProcessingJob: the request as sent, whose S3Prefix inputs SageMaker needs non-empty).
* ``npx cdk destroy``: in reverse dependency order; a Retain policy keeps the resource (and its name);
  a model package group holding packages, or a non-retained bucket holding objects, blocks the deletion.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from predmaint.modules import load_module
from tests.infra.conftest import CDK_CONTEXT, REPO, Synth, synth_app
from tests.infra.contracts import flow, iam
from tests.infra.contracts.iam import ACCOUNT, Resolver
from tests.infra.contracts.needs import Needs, call_needs, drift_schedule_event
from tests.infra.contracts.shapes import problems, recording_calls

pytestmark = pytest.mark.usefixtures("aws_credentials")

DOC = REPO / "docs" / "aws.md"
COMMAND_RE = re.compile(r"`((?:npx cdk (?:bootstrap|deploy|destroy)|predmaint start-training)\s[^`]*)`")
QUALIFIER = iam.ASSETS_QUALIFIER
#: the property that holds a resource's fixed name (CloudFormation refuses a second resource of that name)
NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName", "AWS::SSM::Parameter": "Name", "AWS::Lambda::Function": "FunctionName",
    "AWS::SNS::Topic": "TopicName", "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Logs::LogGroup": "LogGroupName", "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::SageMaker::Endpoint": "EndpointName", "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName", "AWS::KMS::Alias": "AliasName", "AWS::IAM::Role": "RoleName",
    "AWS::Scheduler::Schedule": "Name",
}


class DeployError(AssertionError):
    """What CloudFormation (or the CDK CLI) would answer; ``created`` lists what it created first."""

    def __init__(self, message: str, created: list[str] | None = None) -> None:
        super().__init__(message)
        self.created = created or []


def walkthrough_commands(text: str) -> list[str]:
    """The walkthrough's commands, in order, whitespace normalised."""
    section = text.split("## First deploy, step by step", 1)[1].split("\n## ", 1)[0]
    return [" ".join(c.split()) for c in COMMAND_RE.findall(section)]


def _refs(value: Any) -> set[str]:
    """Logical ids a template value refers to (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            out |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= _refs(v)
    return out


def _imports(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return ([value["Fn::ImportValue"]] if "Fn::ImportValue" in value else []) + \
            [i for v in value.values() for i in _imports(v)]
    if isinstance(value, list):
        return [i for v in value for i in _imports(v)]
    return []


def creation_order(template: dict[str, Any]) -> list[str]:
    """Resources in an order CloudFormation may create them: each after what it depends on."""
    res = template["Resources"]
    deps = {k: ({d for d in _refs(v.get("Properties", {})) if d in res} |
                set([v["DependsOn"]] if isinstance(v.get("DependsOn"), str) else v.get("DependsOn", [])))
            for k, v in res.items()}
    order: list[str] = []
    while len(order) < len(res):
        ready = sorted(k for k in res if k not in order and deps[k] <= set(order))
        assert ready, f"dependency cycle among {sorted(set(res) - set(order))}"
        order.append(ready[0])
    return order


class Account:
    """One AWS account as the stacks see it: moto (S3, SSM, SageMaker, SNS, Step Functions) plus the
    CloudFormation-level state moto does not keep (fixed names taken, stacks, exports)."""

    def __init__(self, region: str, data_dir: Path) -> None:
        self.region, self.data_dir = region, data_dir
        self.s3, self.ssm, self.sm = (flow._client(region, s) for s in ("s3", "ssm", "sagemaker"))
        self.named: dict[tuple[str, str], str | None] = {}  # (type, name) -> stack, None when retained
        self.stacks: dict[str, tuple[Synth, Resolver]] = {}
        self.exports: dict[str, str] = {}
        self.bootstrapped = False
        self.log: list[str] = []

    # ---- the CDK CLI ----
    def bootstrap(self) -> None:
        self.ssm.put_parameter(Name=f"/cdk-bootstrap/{QUALIFIER}/version", Value="30", Type="String")
        self._bucket(f"cdk-{QUALIFIER}-assets-{ACCOUNT}-{self.region}")
        self.bootstrapped = True

    def _bucket(self, name: str) -> None:
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def deploy(self, synth: Synth, names: list[str]) -> None:
        """``cdk deploy`` of ``names`` (with the stacks they depend on, as the CLI orders them)."""
        for name in self._dependency_order(synth, names):
            self._deploy_stack(synth, name)

    @staticmethod
    def _dependency_order(synth: Synth, names: list[str]) -> list[str]:
        resolver = Resolver(synth.templates, synth.built.config.region)
        needs = {n: {resolver.exports[resolver.resolve(n, i)][0] for i in _imports(synth.templates[n])}
                 for n in synth.templates}
        order: list[str] = []
        while len(order) < len(names):
            ready = [n for n in names if n not in order and not (needs[n] & (set(names) - set(order)))]
            assert ready, names
            order.append(ready[0])
        return order

    def _deploy_stack(self, synth: Synth, stack: str) -> None:
        t, c = synth.templates[stack], synth.built.config
        resolver = Resolver(synth.templates, c.region)
        if not self.bootstrapped:
            raise DeployError(f"{stack}: the environment is not bootstrapped")
        missing = [p["Default"] for p in t.get("Parameters", {}).values()
                   if p["Type"].startswith("AWS::SSM::Parameter::") and not self._parameter(p["Default"])]
        if missing:  # CloudFormation resolves SSM-typed parameters before it creates anything
            raise DeployError(f"{stack}: Parameters: {missing} do not exist (SSM-typed stack parameters)")
        for ref in _imports(t):
            export = resolver.resolve(stack, ref)
            if export not in self.exports:
                raise DeployError(f"{stack}: No export named {export} found")
        text = json.dumps(resolver.resolve(stack, t["Resources"]))
        assets = set(re.findall(r"cdk-[a-z0-9]+-assets-\d+-[a-z0-9-]+", text))
        assert assets <= {f"cdk-{QUALIFIER}-assets-{ACCOUNT}-{c.region}"}, assets
        created_here = {resolver.resolve(stack, r["Properties"]["BucketName"]) for r in t["Resources"].values()
                        if r["Type"] == "AWS::S3::Bucket"}
        for kind in ("data", "artifacts", "logs"):
            bucket = c.bucket_name(kind, ACCOUNT)
            if bucket in text and bucket not in created_here and ("AWS::S3::Bucket", bucket) not in self.named:
                raise DeployError(f"{stack} names bucket {bucket}, which does not exist")
        self._publish_assets(synth, stack)
        created: list[tuple[str, tuple[str, str] | None]] = []
        try:
            for logical in creation_order(t):
                res = t["Resources"][logical]
                prop = NAME_PROPERTY.get(res["Type"])
                if prop is None or prop not in res.get("Properties", {}):
                    created.append((logical, None))
                    continue
                key = (res["Type"], str(resolver.resolve(stack, res["Properties"][prop])))
                if key in self.named:
                    raise DeployError(f"{stack}: {logical} ({key[0]}): {key[1]} already exists",
                                      [lid for lid, _ in created])
                self._create(key, res, resolver.resolve(stack, res.get("Properties", {})))
                self.named[key] = stack
                created.append((logical, key))
        except DeployError:
            for logical, key in created:  # rollback: what a Retain policy keeps stays, orphaned
                if key is not None and t["Resources"][logical].get("DeletionPolicy") == "Retain":
                    self.named[key] = None
                elif key is not None:
                    del self.named[key]
            raise
        for out in t.get("Outputs", {}).values():
            if "Export" in out:
                self.exports[resolver.resolve(stack, out["Export"]["Name"])] = stack
        self.stacks[stack] = (synth, resolver)
        self.log.append(f"deployed {stack}")

    def _publish_assets(self, synth: Synth, stack: str) -> None:
        """What ``cdk deploy`` uploads first: the stack's file assets into the bootstrap bucket."""
        manifest = synth.outdir / f"{stack}.assets.json"
        for asset in json.loads(manifest.read_text())["files"].values():
            source = synth.outdir / asset["source"]["path"]
            body = source.read_bytes() if source.is_file() else b"zipped asset directory"
            for dest in asset["destinations"].values():
                bucket = dest["bucketName"].replace("${AWS::AccountId}", ACCOUNT)
                if bucket.endswith(".json"):
                    continue
                self.s3.put_object(Bucket=bucket, Key=dest["objectKey"], Body=body)

    def _create(self, key: tuple[str, str], res: dict[str, Any], props: dict[str, Any]) -> None:
        """The moto side of a resource the rehearsal's later steps use."""
        kind, name = key
        if kind == "AWS::S3::Bucket":
            self._bucket(name)
        elif kind == "AWS::SSM::Parameter":
            self.ssm.put_parameter(Name=name, Value=str(props.get("Value", "")), Type="String")
        elif kind == "AWS::SNS::Topic":
            flow._client(self.region, "sns").create_topic(Name=name)
        elif kind == "AWS::SageMaker::ModelPackageGroup":
            self.sm.create_model_package_group(ModelPackageGroupName=name)

    def _parameter(self, name: str) -> str | None:
        try:
            return self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def destroy(self, names: list[str]) -> None:
        """``cdk destroy`` of ``names`` (every deployed stack for ``--all``), importers first."""
        names = list(self.stacks) if names == ["--all"] else list(names)
        while names:
            imported = {self.exports[self.stacks[m][1].resolve(m, ref)] for m in self.stacks
                        for ref in _imports(self.stacks[m][0].templates[m])}
            stack = next((n for n in names if n not in imported), None)
            if stack is None:
                raise DeployError(f"cannot destroy {names}: their exports are in use")
            self._destroy_stack(stack)
            names.remove(stack)

    def _destroy_stack(self, stack: str) -> None:
        synth, resolver = self.stacks[stack]
        t = synth.templates[stack]
        for logical in reversed(creation_order(t)):
            res = t["Resources"][logical]
            prop = NAME_PROPERTY.get(res["Type"])
            if prop is None or prop not in res.get("Properties", {}):
                continue
            key = (res["Type"], str(resolver.resolve(stack, res["Properties"][prop])))
            if res.get("DeletionPolicy") == "Retain":
                self.named[key] = None
                continue
            if res["Type"] == "AWS::SageMaker::ModelPackageGroup" and self.sm.list_model_packages(
                    ModelPackageGroupName=key[1])["ModelPackageSummaryList"]:
                raise DeployError(f"{stack}: {logical}: cannot delete model package group {key[1]}: it still "
                                  "holds model packages (DELETE_FAILED)")
            if res["Type"] == "AWS::S3::Bucket" and self.s3.list_object_versions(Bucket=key[1]).get("Versions"):
                raise DeployError(f"{stack}: {logical}: bucket {key[1]} is not empty (DELETE_FAILED)")
            self.named.pop(key, None)
            if res["Type"] == "AWS::SSM::Parameter":
                self.ssm.delete_parameter(Name=key[1])
        for export in [e for e, s in self.exports.items() if s == stack]:
            del self.exports[export]
        del self.stacks[stack]
        self.log.append(f"destroyed {stack}")


# --------------------------------------------------------------------------------------------
# run time: executions, the drift schedule, and who may do what
# --------------------------------------------------------------------------------------------

class Principals:
    """Synthesized policies per principal of one deployment, and the check of one request."""

    def __init__(self, synth: Synth) -> None:
        self.synth = synth
        self.resolver = Resolver(synth.templates, synth.built.config.region)
        self.statements = self.resolver.role_statements()
        self.denied: list[str] = []

    def role_of(self, kind: str, name: str) -> str:
        """``"<stack>/<role logical id>"`` of the Lambda function or state machine named ``name``."""
        prop = {"AWS::Lambda::Function": "Role", "AWS::StepFunctions::StateMachine": "RoleArn"}[kind]
        for stack, t in self.synth.templates.items():
            for logical, res in t["Resources"].items():
                if res["Type"] == kind and self.resolver.physical_name(stack, logical) == name:
                    return f"{stack}/{res['Properties'][prop]['Fn::GetAtt'][0]}"
        raise KeyError(name)

    def role_by_arn(self, arn: str) -> str:
        (key,) = [k for k in self.statements if self.resolver.get_att(*k.split("/"), "Arn") == arn]
        return key

    def check(self, needs: Needs) -> None:
        for need in needs.items:
            if not iam.allowed(self.statements[need.principal], need.action, need.resource, need.context):
                self.denied.append(f"{need.principal}: {need}")


def sagemaker_request_needs(n: Needs, who: str, operation: str, p: dict[str, Any], hosting: str) -> None:
    """IAM of the SageMaker requests the state machine sends (and, for the model, of its execution role)."""
    sm = lambda kind, name: n.arn("sagemaker", f"{kind}/{name.lower()}")  # noqa: E731
    jobs = {"CreateProcessingJob": ("processing-job", "ProcessingJobName"),
            "CreateTrainingJob": ("training-job", "TrainingJobName"),
            "CreateHyperParameterTuningJob": ("hyper-parameter-tuning-job", "HyperParameterTuningJobName")}
    if operation in jobs:
        kind, key = jobs[operation]
        n.add(who, operation, [f"sagemaker:{operation}"], [sm(kind, p[key])])
        for role in {d["RoleArn"] for d in p.get("TrainingJobDefinitions", [])} | ({p["RoleArn"]} if "RoleArn" in p else set()):
            n.add(who, operation, ["iam:PassRole"], [role], {"iam:PassedToService": "sagemaker.amazonaws.com"})
    elif operation == "CreateModel":
        n.add(who, operation, ["sagemaker:CreateModel"], [sm("model", p["ModelName"])])
        n.add(who, operation, ["iam:PassRole"], [p["ExecutionRoleArn"]], {"iam:PassedToService": "sagemaker.amazonaws.com"})
    elif operation == "CreateEndpointConfig":
        n.add(who, operation, ["sagemaker:CreateEndpointConfig"], [sm("endpoint-config", p["EndpointConfigName"])])
    elif operation in ("UpdateEndpoint", "DescribeEndpoint"):
        n.add(who, operation, [f"sagemaker:{operation}"], [sm("endpoint", p["EndpointName"])])
        if operation == "UpdateEndpoint":
            alarms = [n.arn("cloudwatch", f"alarm:{a['AlarmName']}")
                      for a in p["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
            n.add(who, "UpdateEndpoint: auto-rollback alarms", ["cloudwatch:DescribeAlarms"], alarms)
            n.add(hosting, "UpdateEndpoint: auto-rollback alarms", ["cloudwatch:DescribeAlarms"], alarms)
    else:  # pragma: no cover
        raise AssertionError(f"no IAM model for {operation}")


class Rehearsal:
    """The account, the deployments (one per project name) and their executions."""

    def __init__(self, account: Account, stack: contextlib.ExitStack) -> None:
        self.account, self.stack = account, stack
        self.worlds: dict[str, flow.World] = {}
        self.hooks: contextlib.ExitStack | None = None
        self.attributed: list[tuple[str, list[Any]]] = []  # (function name, its boto3 calls)
        self.calls: list[Any] = []

    def world(self, synth: Synth) -> flow.World:
        project = synth.built.config.project
        if project not in self.worlds:
            if self.hooks is not None:
                self.hooks.close()
            w = flow.World(flow.Deployment.of(synth, synth.built.config.region), self.account.data_dir,
                           storage=False)
            original = w.invoke_lambda

            def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
                start = len(self.calls)
                answer = original(parameters, region, state_credentials)
                self.attributed.append((w.dep.functions[parameters["FunctionName"]].name, self.calls[start:]))
                return answer

            w.invoke_lambda = invoke  # type: ignore[method-assign]
            self.hooks = contextlib.ExitStack()
            self.hooks.enter_context(flow.interpreter_hooks(w))
            w.calls = self.calls
            self.worlds[project] = w
        return self.worlds[project]

    def start_training(self, synth: Synth, argv: list[str]) -> flow.Run:
        """``predmaint start-training ...`` through the real CLI; the stack name resolved to the deployed
        stack's StateMachineArn output, as ``predmaint.aws.resolve_state_machine`` reads it."""
        from predmaint import aws, cli

        w = self.world(synth)
        arn = w.create_state_machine()

        def resolve(name: str, cloudformation: Any) -> str:
            if name.startswith("arn:"):
                return name
            if name not in self.account.stacks:
                raise aws.StartTrainingError(f"cannot read stack {name!r}: Stack with id {name} does not exist")
            stack_synth, resolver = self.account.stacks[name]
            outputs = stack_synth.templates[name].get("Outputs", {})
            assert resolver.resolve(name, outputs[aws.STATE_MACHINE_OUTPUT]["Value"]) == arn
            return arn

        out = io.StringIO()
        with mock.patch.object(aws, "resolve_state_machine", resolve), contextlib.redirect_stdout(out):
            code = cli.main([*argv, "--region", synth.built.config.region])
        assert code == 0, out.getvalue()
        started = out.getvalue().splitlines()[0].removeprefix("started execution ")
        return w.finish(started)

    def check_run_permissions(self, synth: Synth, w: flow.World) -> list[str]:
        """Every call of the run(s) so far checked against its principal's synthesized policy."""
        principals = Principals(synth)
        models = [p["ExecutionRoleArn"] for op, p in w.sagemaker.calls if op == "CreateModel"]
        hosting = principals.role_by_arn(models[0]) if models else ""
        n = Needs(synth.built.config.region, {})
        for function, calls in self.attributed:
            who = principals.role_of("AWS::Lambda::Function", function)
            for call in calls:
                call_needs(n, who, call)
        machine = principals.role_of("AWS::StepFunctions::StateMachine", w.dep.state_machine_name)
        for operation, params in w.sagemaker.calls:
            sagemaker_request_needs(n, machine, operation, params, hosting)
        principals.check(n)
        self.attributed.clear()
        w.sagemaker.calls.clear()
        return principals.denied

    def _has_objects(self, uri: str) -> bool:
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        return self.account.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0

    def fire_drift_schedule(self, synth: Synth) -> dict[str, Any]:
        """The schedule's target invoked with its input, as EventBridge Scheduler does."""
        stack = next(n for n in synth.templates if n.endswith("-Monitoring"))
        resolver = Resolver(synth.templates, synth.built.config.region)
        (schedule,) = [r for r in synth.templates[stack]["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
        target = resolver.resolve(stack, schedule["Properties"]["Target"]["Arn"])
        event = drift_schedule_event(schedule, lambda v: resolver.resolve(stack, v))
        if ":scheduler:::aws-sdk:sagemaker:createProcessingJob" in target:
            # the job SageMaker would start: it fails on an S3Prefix input with nothing under it
            empty = [i["S3Input"]["S3Uri"] for i in event["ProcessingInputs"]
                     if i["S3Input"]["S3DataType"] == "S3Prefix" and not self._has_objects(i["S3Input"]["S3Uri"])]
            return {"status": "job failed" if empty else "started", "empty_inputs": empty, "request": event}
        (logical,) = [k for k, r in synth.templates[stack]["Resources"].items()
                      if r["Type"] == "AWS::Lambda::Function" and resolver.get_att(stack, k, "Arn") == target]
        props = synth.templates[stack]["Resources"][logical]["Properties"]
        assets = json.loads((synth.outdir / f"{stack}.assets.json").read_text())["files"]
        bundle = synth.outdir / assets[props["Code"]["S3Key"].split(".")[0]]["source"]["path"]
        handler = load_module(bundle / "handler.py", f"rehearsal_drift_{synth.built.config.project}")
        env = {k: str(v) for k, v in resolver.resolve(stack, props["Environment"]["Variables"]).items()}
        env.update(AWS_REGION=synth.built.config.region, AWS_DEFAULT_REGION=synth.built.config.region,
                   POWERTOOLS_TRACE_DISABLED="true")
        name = resolver.physical_name(stack, logical)
        with mock.patch.dict("os.environ", env), recording_calls() as calls, \
                contextlib.redirect_stdout(io.StringIO()):
            answer = handler.handler(event, flow.LambdaContext(flow.Function(name, target, bundle, "handler", env, 256)))
        principals = Principals(synth)
        n = Needs(synth.built.config.region, {})
        for call in calls:
            call_needs(n, principals.role_of("AWS::Lambda::Function", name), call)
        principals.check(n)
        assert principals.denied == [], principals.denied
        sent = [c.params for c in calls if c.operation == "CreateProcessingJob"]
        for request in sent:
            assert problems("sagemaker", "CreateProcessingJob", request) == []
        return {**answer, "requests": sent}


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)


@contextlib.contextmanager
def rehearsal(region: str, data_dir: Path) -> Iterator[Rehearsal]:
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), contextlib.ExitStack() as stack:
        r = Rehearsal(Account(region, data_dir), stack)
        r.calls = stack.enter_context(recording_calls())
        try:
            yield r
        finally:
            if r.hooks is not None:
                r.hooks.close()


def _context_for(command: list[str]) -> dict[str, Any]:
    """cdk.json's context with the command's ``-c predmaint.a.b=value`` overrides."""
    ctx = copy.deepcopy(CDK_CONTEXT)
    for i, word in enumerate(command):
        if word == "-c":
            key, _, value = command[i + 1].partition("=")
            ctx[key] = value
    return ctx


def test_the_walkthrough_deploys_runs_destroys_and_deploys_again(synth, data_dir, tmp_path_factory):
    commands = walkthrough_commands(DOC.read_text())
    kinds = [" ".join(c.split()[:3 if c.startswith("npx") else 2]) for c in commands]
    assert kinds == ["npx cdk bootstrap", "npx cdk deploy", "predmaint start-training", "npx cdk deploy",
                     "predmaint start-training", "npx cdk destroy", "npx cdk destroy", "npx cdk deploy",
                     "predmaint start-training", "npx cdk deploy"], commands
    region = synth.built.config.region
    reports = {"first": flow.evaluation_report(data_dir, 18.0, seed=1),
               "better": flow.evaluation_report(data_dir, 13.0, seed=2)}
    synths = {json.dumps(CDK_CONTEXT, sort_keys=True): synth}
    runs: list[flow.Run] = []
    drift: list[dict[str, Any]] = []
    with rehearsal(region, data_dir) as r:
        for command in commands:
            words = shlex.split(command)
            ctx = _context_for(words)
            key = json.dumps(ctx, sort_keys=True)
            if key not in synths:
                synths[key] = synth_app(tmp_path_factory.mktemp("cdk.out.rehearsal"), ctx)
            s = synths[key]
            c = s.built.config
            stacks = [w for w in words[3:] if not w.startswith("-") and "=" not in w and w != "aws://<account>/eu-west-1"]
            if words[:3] == ["npx", "cdk", "bootstrap"]:
                r.account.bootstrap()
            elif words[:3] == ["npx", "cdk", "deploy"]:
                if r.account.log and r.account.log[-1] == f"destroyed {next(n for n in synth.templates if n.endswith('-Data'))}":
                    # deploying the same project over the storage a destroy kept fails first, creating nothing
                    with pytest.raises(DeployError) as early:
                        r.account.deploy(synth, [next(n for n in synth.templates if n.endswith("-Data"))])
                    assert early.value.created == [] and f"/{synth.built.config.project}/retained-storage already exists" \
                        in str(early.value), str(early.value)
                r.account.deploy(s, stacks)
                if any(n.endswith("-Endpoint") for n in stacks):
                    w = r.world(s)
                    endpoint = next(n for n in stacks if n.endswith("-Endpoint"))
                    w.sagemaker.deploy_endpoint(w.dep.endpoint_name, w.dep.endpoint_config_name)
                    # the endpoint serves: its data capture has records for the next drift check
                    r.account.s3.put_object(Bucket=c.bucket_name("artifacts", ACCOUNT),
                                            Key=f"data-capture/{c.endpoint.name}/{c.endpoint.variant_name}/2026/12/24/"
                                                "10/00-00-000-0a1b.jsonl", Body=b"{}\n")
                    assert endpoint in r.account.stacks
            elif words[:2] == ["predmaint", "start-training"]:
                # the deployment whose training stack the command names
                target = words[words.index("--state-machine") + 1]
                s = r.account.stacks[target][0] if target in r.account.stacks else s
                w = r.world(s)
                w.sagemaker.evaluation = reports["first" if not w.packages() else "better"]
                run = r.start_training(s, words[1:])
                runs.append(run)
                assert run.status == "SUCCEEDED", (run.error, run.cause, run.states[-5:])
                assert run.states[-1] == ("EndpointNotDeployed" if w.sagemaker.endpoint is None else "Deployed")
                assert r.check_run_permissions(s, w) == [], "denied at run time"
                drift.append(r.fire_drift_schedule(s))
            elif words[:3] == ["npx", "cdk", "destroy"]:
                r.account.destroy(stacks or ["--all"])
            else:  # pragma: no cover
                raise AssertionError(command)
        # the first check had nothing to check (no traffic yet); after the second run, it checked traffic
        # against the champion of that moment, which the second run had just made
        assert drift[0]["status"] == "nothing-to-check", drift[0]
        assert drift[1]["status"] == "started", drift[1]
        (request,) = drift[1]["requests"]
        champion = r.account._parameter(synth.built.config.champion_parameter)
        model = {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}["model"]
        assert model == champion and runs[1].outputs("Promote")[0]["promotion"]["model_data_url"] == champion
    assert [run.states[-1] for run in runs] == ["EndpointNotDeployed", "Deployed", "EndpointNotDeployed"]


def test_the_rehearsal_sees_a_missing_deploy_time_parameter(synth, data_dir):
    """The checker checked: deploying the endpoint before any run has recorded a champion fails on the
    SSM-typed parameter, as the walkthrough says it must (step 6)."""
    with rehearsal(synth.built.config.region, data_dir) as r:
        r.account.bootstrap()
        names = sorted(synth.templates)
        r.account.deploy(synth, [n for n in names if n.endswith(("-Data", "-Training"))])
        with pytest.raises(DeployError, match=r"Parameters: \['/predmaint/champion/model-data-url'\] do not exist"):
            r.account.deploy(synth, [n for n in names if n.endswith("-Endpoint")])
