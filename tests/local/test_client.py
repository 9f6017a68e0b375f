"""The typed client: against the real local server, and against SageMaker via a stubbed boto3 client."""

from __future__ import annotations

import io
import json

import pytest
from localkit import ServerProcess, free_port

from predmaint.client import (
    EndpointError,
    Instance,
    InvocationRequest,
    LocalClient,
    SageMakerClient,
    instances_from_rows,
    with_retries,
)


@pytest.mark.xdist_group("server")
def test_local_client_round_trip(server: ServerProcess, test_units) -> None:
    with LocalClient(f"http://127.0.0.1:{server.port}") as client:
        assert client.ping()
        req = InvocationRequest([Instance(f"engine-{u}", readings=test_units[u]) for u in (1, 2)], explain=True)
        resp = client.invoke(req)
        assert resp.model_version == "1" and [p.asset_id for p in resp.predictions] == ["engine-1", "engine-2"]
        assert all(0 <= p.rul <= 150 and p.contributions for p in resp.predictions)
        assert resp.latency_ms > 0


@pytest.mark.xdist_group("server")
def test_local_client_interval_and_horizon(server: ServerProcess, test_units) -> None:
    req = InvocationRequest([Instance("a", readings=test_units[34]), Instance("b", readings=test_units[34], horizon=0)],
                            horizon=25)
    assert json.loads(req.body())["horizon"] == 25 and json.loads(req.body())["instances"][1]["horizon"] == 0
    with LocalClient(f"http://127.0.0.1:{server.port}") as client:
        a, b = client.invoke(req).predictions
        assert a.rul_lower is not None and a.rul_lower <= a.rul <= a.rul_upper and a.interval_level == 0.8
        assert (a.horizon, b.horizon) == (25, 0) and 0 <= b.failure_probability <= a.failure_probability <= 1
        plain = client.invoke(InvocationRequest([Instance("a", readings=test_units[34])])).predictions[0]
        assert plain.horizon is None and plain.failure_probability is None and plain.rul_upper == a.rul_upper


@pytest.mark.xdist_group("server")
def test_local_client_raises_endpoint_error_with_message(server: ServerProcess) -> None:
    client = LocalClient(f"http://127.0.0.1:{server.port}", retries=0)
    with pytest.raises(EndpointError) as info:
        client.invoke(InvocationRequest([Instance("a", readings=[])]))
    assert info.value.status == 400 and "readings: empty" in info.value.message and not info.value.retryable


def test_local_client_unreachable_server_retries_then_fails() -> None:
    client = LocalClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.001, timeout=2)
    assert not client.ping()
    with pytest.raises(EndpointError) as info:
        client.invoke(InvocationRequest([Instance("a", readings=[{"cycle": 1}])]))
    assert info.value.status is None and info.value.retryable


def test_with_retries_backs_off_on_retryable_errors_only() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise EndpointError(503, "busy", retryable=True)
        return "ok"

    assert with_retries(flaky, retries=5, backoff=0.1, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)

    def bad() -> str:
        raise EndpointError(400, "bad")

    with pytest.raises(EndpointError, match="HTTP 400: bad"):
        with_retries(bad, retries=5, backoff=0.1, sleep=sleeps.append)
    assert len(sleeps) == 2  # no retry of a 400


def _stubbed_runtime():
    import boto3
    from botocore.stub import Stubber

    runtime = boto3.client("sagemaker-runtime", region_name="eu-west-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
    return runtime, Stubber(runtime)


def test_sagemaker_client_success_and_custom_attributes() -> None:
    from botocore.response import StreamingBody

    runtime, stub = _stubbed_runtime()
    payload = json.dumps({"predictions": [{"asset_id": "a", "rul": 42.0}], "model_version": "7"}).encode()
    req = InvocationRequest([Instance("a", readings=[{"cycle": 1.0}])], explain=True)
    stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(payload), len(payload)),
                                          "ContentType": "application/json"},
                      {"EndpointName": "ep", "Body": req.body(), "ContentType": "application/json",
                       "Accept": "application/json", "CustomAttributes": "explain=true"})
    with stub:
        resp = SageMakerClient("ep", runtime=runtime).invoke(req)
    assert resp.predictions[0].rul == 42.0 and resp.model_version == "7"


def test_sagemaker_client_retries_throttling_and_maps_model_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.response import StreamingBody

    monkeypatch.setattr("predmaint.client.time.sleep", lambda s: None)
    runtime, stub = _stubbed_runtime()
    payload = b'{"predictions": [], "model_version": "1"}'
    stub.add_client_error("invoke_endpoint", "ThrottlingException", "slow down", 400)
    stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(payload), len(payload))})
    stub.add_client_error("invoke_endpoint", "ModelError", "Received client error (400)", 424,
                          modeled_fields={"OriginalStatusCode": 400,
                                          "OriginalMessage": '{"error": "instances: empty"}'})
    client = SageMakerClient("ep", runtime=runtime, backoff=0.0)
    body = InvocationRequest([Instance("a", readings=[{"cycle": 1.0}])])
    with stub:
        assert client.invoke(body).model_version == "1"  # after one throttled attempt
        with pytest.raises(EndpointError) as info:
            client.invoke(body)
    assert not info.value.retryable and info.value.status == 400
    assert "ModelError" in str(info.value) and "instances: empty" in info.value.message


def test_instances_from_rows_groups_by_id() -> None:
    rows = [{"unit": "1", "cycle": "1", "sensor_2": "641.8"}, {"unit": "1", "cycle": "2", "sensor_2": "642"},
            {"unit": "2", "cycle": "1", "sensor_2": "640"}]
    inst = instances_from_rows(rows, "unit")
    assert [(i.asset_id, len(i.readings)) for i in inst] == [("1", 2), ("2", 1)]
    assert inst[0].readings[1] == {"cycle": 2.0, "sensor_2": 642.0}
    with pytest.raises(ValueError, match=r"^row 2, column 'cycle': not a number: 'x'$"):
        instances_from_rows([{"cycle": "x"}], None)
    with pytest.raises(ValueError, match=r"^row 7, column 'cycle': 'inf' is not a finite number$"):
        instances_from_rows([{"cycle": "inf"}], None, first_row=7)
