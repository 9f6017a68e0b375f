"""``predmaint fleet --aws``: the page the deployed quality check wrote, found through the Monitoring stack's
FleetPageUrl output, downloaded; a missing stack, output or page is one line (exit 1), and every AWS request
passes botocore's model."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from predmaint.cli import main
from tests.infra.contracts.shapes import assert_calls_valid, recording_calls

REGION, STACK, BUCKET = "eu-west-1", "Predmaint-Monitoring", "predmaint-artifacts-123456789012-eu-west-1"


class Stacks:
    """DescribeStacks answered as CloudFormation does (moto's CloudFormation needs extras this venv lacks):
    the stack's outputs, or its ValidationError when it does not exist."""

    def __init__(self) -> None:
        self.outputs: dict[str, str] | None = None

    def __call__(self, params, **_):
        if self.outputs is None:
            return (SimpleNamespace(status_code=400, headers={}),
                    {"Error": {"Code": "ValidationError", "Message": f"Stack with id {STACK} does not exist"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}})
        return (SimpleNamespace(status_code=200, headers={}),
                {"Stacks": [{"StackName": STACK, "CreationTime": datetime.datetime(2026, 12, 6),
                             "StackStatus": "CREATE_COMPLETE",
                             "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}],
                 "ResponseMetadata": {"HTTPStatusCode": 200}})


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    stacks = Stacks()
    real = boto3.session.Session

    def session(*args, **kwargs):
        s = real(*args, **kwargs)
        s.events.register("before-call.cloudformation.DescribeStacks", stacks)
        return s

    monkeypatch.setattr(boto3.session, "Session", session)
    with mock_aws():
        yield stacks, boto3.client("s3", region_name=REGION)


def _stack(stacks, outputs: dict[str, str]) -> None:
    stacks.outputs = outputs


def test_the_page_is_downloaded_where_it_says(aws, tmp_path, capsys):
    cfn, s3 = aws
    _stack(cfn, {"FleetPageUrl": f"s3://{BUCKET}/fleet/index.html"})
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key="fleet/index.html", Body=b"<html>fleet</html>")
    with recording_calls() as calls:
        assert main(["fleet", "--aws", "--home", str(tmp_path)]) == 0
    page = tmp_path / "fleet" / "index.html"
    assert page.read_bytes() == b"<html>fleet</html>"
    assert capsys.readouterr().out == f"saved s3://{BUCKET}/fleet/index.html to {page}\n"
    assert [c.operation for c in calls] == ["DescribeStacks", "GetObject"]
    assert_calls_valid(calls)
    assert main(["fleet", "--aws", "--home", str(tmp_path), "--save", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").is_file()


@pytest.mark.parametrize(("setup", "message"), [
    ("none", f"cannot read stack '{STACK}' in {REGION}: ValidationError: Stack with id {STACK} does not exist"),
    ("no-output", f"stack '{STACK}' has no FleetPageUrl output: the quality check runs only with"),
    ("no-page", f"no fleet page at s3://{BUCKET}/fleet/index.html (NoSuchKey: "),
])
def test_a_missing_stack_output_or_page_is_one_line(aws, tmp_path, capsys, setup, message):
    cfn, s3 = aws
    if setup != "none":
        _stack(cfn, {} if setup == "no-output" else {"FleetPageUrl": f"s3://{BUCKET}/fleet/index.html"})
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert main(["fleet", "--aws", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "fleet").exists()


def test_aws_options_go_together(tmp_path, capsys):
    assert main(["fleet", "--save", str(tmp_path / "x.html"), "--home", str(tmp_path)]) == 2
    assert "--save and --region go with --aws" in capsys.readouterr().err
    assert main(["fleet", "--aws", "--json", "--home", str(tmp_path)]) == 2
    assert "give one of them" in capsys.readouterr().err
