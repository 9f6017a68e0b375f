"""The local endpoint as a REAL `predmaint serve` process: contract, every error status, workers, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from localkit import ServerProcess, free_port, http, request_body

pytestmark = pytest.mark.xdist_group("server")
JSON = {"Content-Type": "application/json"}


def test_ping(server: ServerProcess) -> None:
    status, body = http(server.port, "GET", "/ping")
    assert status == 200 and json.loads(body)["status"] == "healthy"


def test_good_request_with_real_fd001_units(server: ServerProcess, test_units) -> None:
    instances = [{"asset_id": f"engine-{u}", "readings": test_units[u]} for u in (1, 2, 3)]
    status, body = http(server.port, "POST", "/invocations", request_body(instances), JSON)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["model_version"] == "1"  # the registry version being served
    assert [p["asset_id"] for p in doc["predictions"]] == ["engine-1", "engine-2", "engine-3"]
    for p in doc["predictions"]:
        assert 0.0 <= p["rul"] <= 150.0  # the label cap: cross-validation chooses it from 115..150


def test_readings_in_any_order_give_the_same_prediction(server: ServerProcess, test_units) -> None:
    readings = test_units[7]
    a = http(server.port, "POST", "/invocations", request_body([{"asset_id": "x", "readings": readings}]), JSON)
    b = http(server.port, "POST", "/invocations", request_body([{"asset_id": "x", "readings": readings[::-1]}]), JSON)
    assert a == b and a[0] == 200


def test_explain_header_adds_contributions(server: ServerProcess, test_units) -> None:
    body = request_body([{"asset_id": "e1", "readings": test_units[1]}])
    status, out = http(server.port, "POST", "/invocations", body,
                       {**JSON, "X-Amzn-SageMaker-Custom-Attributes": "explain=true"})
    assert status == 200
    contributions = json.loads(out)["predictions"][0]["contributions"]
    assert contributions and {"feature", "value", "contribution"} <= set(contributions[0])


def test_the_shared_corpus_gets_the_contract_answers(server: ServerProcess, test_units) -> None:
    """tests/serving_corpus.py, which the container's stack must answer alike (tests/container)."""
    from tests.serving_corpus import corpus

    wrong = []
    for name, (body, headers, expected) in corpus(test_units).items():
        status, out = http(server.port, "POST", "/invocations", body, headers)
        doc = json.loads(out)
        if status != expected or (status != 200 and (set(doc) != {"error"} or not doc["error"])):
            wrong.append((name, status, out[:200]))
    assert wrong == []


def _reading(test_units, **override):
    r = dict(test_units[1][0])
    r.update(override)
    return r


BAD_REQUESTS = {
    "malformed JSON": (b'{"instances": [', JSON, 400, "malformed JSON"),
    "truncated JSON": (b'{"instances": [{"asset_id": "a", "readings": [{"cycle": 1', JSON, 400, "malformed"),
    "not an object": (b"[1, 2, 3]", JSON, 400, "JSON object"),
    "no instances": (b'{"rows": []}', JSON, 400, "instances"),
    "empty instances": (b'{"instances": []}', JSON, 400, "instances: empty"),
    "empty readings": (b'{"instances": [{"asset_id": "a", "readings": []}]}', JSON, 400, "readings: empty"),
    "NaN literal": (b'{"instances": [{"asset_id": "a", "readings": [{"cycle": NaN}]}]}', JSON, 400, ""),
    "wrong content type": (b'{"instances": []}', {"Content-Type": "text/csv"}, 415, "Content-Type"),
    "no content type": (b'{"instances": []}', {}, 415, "Content-Type"),
    "unsupported accept": (b'{"instances": []}', {**JSON, "Accept": "text/csv"}, 406, "Accept"),
    "binary garbage": (bytes(range(256)), JSON, 400, ""),
    "negative horizon": (b'{"instances": [{"asset_id": "a", "readings": []}], "horizon": -1}', JSON, 400,
                         "horizon: must be a number of cycles >= 0"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_4xx_json_errors(server: ServerProcess, name: str) -> None:
    body, headers, expected, fragment = BAD_REQUESTS[name]
    status, out = http(server.port, "POST", "/invocations", body, headers)
    assert status == expected, out
    assert fragment in json.loads(out)["error"]


@pytest.mark.parametrize("field,value,fragment", [
    ("sensor_2", "abc", "sensor_2"),       # non-numeric
    ("sensor_3", None, "sensor_3"),        # null
    ("setting_1", [1, 2], "setting_1"),    # wrong type
    ("sensor_4", 1e999, "sensor_4: must be a finite number"),  # overflows to inf: malformed JSON, named
])
def test_bad_field_values_name_the_field(server: ServerProcess, test_units, field, value, fragment) -> None:
    readings = [dict(r) for r in test_units[1]]
    readings[-1][field] = value
    body = json.dumps({"instances": [{"asset_id": "a", "readings": readings}]}).replace("Infinity", "1e999")
    status, out = http(server.port, "POST", "/invocations", body.encode(), JSON)
    assert status == 400, out
    assert fragment in json.loads(out)["error"]


def test_missing_field_is_400(server: ServerProcess, test_units) -> None:
    readings = [dict(r) for r in test_units[1]]
    del readings[-1]["sensor_7"]
    status, out = http(server.port, "POST", "/invocations", request_body([{"asset_id": "a", "readings": readings}]),
                       JSON)
    assert status == 400 and "sensor_7" in json.loads(out)["error"]


def test_too_many_instances_is_413(server: ServerProcess, test_units) -> None:
    one = {"asset_id": "a", "readings": test_units[1][-2:]}
    status, out = http(server.port, "POST", "/invocations", request_body([one] * 1001), JSON)
    assert status == 413 and "instances" in json.loads(out)["error"]


def test_body_over_6mb_is_413_before_reading(server: ServerProcess) -> None:
    # Only the headers are sent: the server must answer from Content-Length, without waiting for the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 7000000\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_body_over_6mb_sent_whole_gets_the_413_not_a_reset(server: ServerProcess) -> None:
    """Python's http.client (like urllib3 under boto3) writes the whole body before it reads the answer:
    the server must read (and drop) it, or the client sees a connection reset instead of the 413."""
    import http.client as httpclient

    for _ in range(2):  # and the server is fine afterwards
        conn = httpclient.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("POST", "/invocations", body=b"x" * (7 * 1024 * 1024), headers=JSON)
            resp = conn.getresponse()
            assert resp.status == 413 and "exceeds" in json.loads(resp.read())["error"]
        finally:
            conn.close()
    assert http(server.port, "GET", "/ping")[0] == 200


def test_chunked_body_over_6mb_is_413(server: ServerProcess) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        sent, answer = 0, b""
        try:
            while sent <= 8 * 1024 * 1024:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close the connection as soon as it has answered
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_unknown_route_and_method(server: ServerProcess) -> None:
    for method, path, status, message in (("GET", "/nope", 404, "no route GET /nope"),
                                          ("GET", "/invocations", 405, "use POST /invocations"),
                                          ("POST", "/ping", 405, "use GET /ping")):
        got, body = http(server.port, method, path)
        assert got == status and message in json.loads(body)["error"], (path, body)


def test_keep_alive_serves_many_requests_on_one_connection(server: ServerProcess, test_units) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = request_body([{"asset_id": "a", "readings": test_units[2]}])
    try:
        for _ in range(20):
            conn.request("POST", "/invocations", body, JSON)
            resp = conn.getresponse()
            assert resp.status == 200 and not resp.will_close
            resp.read()
    finally:
        conn.close()


def test_workers_survive_bad_input(server: ServerProcess, test_units) -> None:
    workers = server.wait_workers(2)
    for _ in range(3):
        for body, headers, _, _ in BAD_REQUESTS.values():
            assert http(server.port, "POST", "/invocations", body, headers)[0] < 500
    assert server.workers() == workers, "a worker died on bad input"
    assert http(server.port, "POST", "/invocations",
                request_body([{"asset_id": "a", "readings": test_units[3]}]), JSON)[0] == 200


def test_killed_worker_is_replaced(server: ServerProcess) -> None:
    before = server.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        now = server.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    assert len(server.workers()) == 2 and victim not in server.workers()
    server.wait_ping(timeout=20)
    assert time.monotonic() - t0 < 20


def test_sigterm_shuts_down_cleanly(registry_home: Path, tmp_path: Path, test_units) -> None:
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", "2"], free_port(), tmp_path / "s.log")
    srv.wait_ping()
    workers = srv.wait_workers(2)
    assert http(srv.port, "POST", "/invocations", request_body([{"asset_id": "a", "readings": test_units[1]}]),
                JSON)[0] == 200
    t0 = time.monotonic()
    assert srv.stop() == 0, srv.output()
    assert time.monotonic() - t0 < 10
    assert "Shutting down: Master" in srv.output()
    assert "Traceback" not in srv.output()
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "workers left behind"


def test_sigterm_lets_an_in_flight_request_finish(registry_home: Path, tmp_path: Path, test_units) -> None:
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", "1"], free_port(), tmp_path / "s.log")
    srv.wait_ping()
    body = request_body([{"asset_id": "a", "readings": test_units[5]}])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
        time.sleep(0.3)  # the request is in flight (its body half sent) when SIGTERM arrives
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        s.sendall(body[100:])
        answer = b""
        while chunk := s.recv(65536):  # the server closes the connection after answering (shutdown)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"rul"' in answer
    srv.proc.wait(15)
    assert srv.stop() == 0, srv.output()
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_corrupt_model_answers_503_without_crash_loop(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    (bad / "xgboost-model").write_bytes(b"\x00\x01 not a booster")
    srv = ServerProcess(["serve", "--model-dir", str(bad), "--workers", "2"], free_port(), tmp_path / "s.log")
    try:
        srv.wait_ping(expect=503)
        workers = srv.wait_workers(2)
        time.sleep(1.0)
        status, body = http(srv.port, "GET", "/ping")
        assert status == 503 and "model not loaded" in json.loads(body)["error"]
        status, body = http(srv.port, "POST", "/invocations", b'{"instances": []}', JSON)
        assert status == 503 and "model not loaded" in json.loads(body)["error"]
        assert srv.workers() == workers, "workers restarted: crash loop"
        assert "model failed to load" in srv.output()
    finally:
        assert srv.stop() == 0


def test_port_in_use_is_a_one_line_error(registry_home: Path, server: ServerProcess) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "predmaint", "serve", "--home", str(registry_home), "--port",
                           str(server.port)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "already in use" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# Requests the HTTP parser refuses, and requests that never arrive whole
# ------------------------------------------------------------------------------------------------
HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
PROTOCOL_ERRORS = {
    "bad chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "Content-Length abc": HEAD + b"Content-Length: abc\r\n\r\n{}",
    "Content-Length and Transfer-Encoding": HEAD + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            b"2\r\n{}\r\n0\r\n\r\n",
    "control byte in a header": HEAD + b"X-Thing: a\x01b\r\nContent-Length: 2\r\n\r\n{}",
    "space before a colon": HEAD + b"Content-Length : 2\r\n\r\n{}",
    "bad request line": b"POST /invocations HTTP/9\x00\r\n\r\n",
}


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Everything the server sends until it closes the connection: status, headers, body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:]))
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("name", list(PROTOCOL_ERRORS))
def test_protocol_level_bad_requests_get_the_json_error(server: ServerProcess, name: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(PROTOCOL_ERRORS[name])
        status, headers, body = _read_response(s)  # the server closes the connection after its answer
    assert status == 400 and headers["content-type"] == "application/json", (status, headers, body)
    assert json.loads(body)["error"].startswith("request: not valid HTTP/1.1"), body


@pytest.fixture(scope="module")
def impatient_server(registry_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """`predmaint serve` whose requests must arrive within 1 s."""
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", "1"], free_port(),
                        tmp_path_factory.mktemp("impatient") / "server.log", env={"PREDMAINT_REQUEST_TIMEOUT_S": "1"})
    try:
        srv.wait_ping()
        yield srv
    finally:
        srv.stop()


def test_sockets_holding_partial_requests_are_answered_408_and_closed(impatient_server: ServerProcess,
                                                                       test_units) -> None:
    """Half a body, half the headers, or nothing at all: each connection gets its 408 (or is closed) once
    the bound passes, and the server answers others meanwhile. The test waits on the server's close."""
    body = request_body([{"asset_id": "a", "readings": test_units[1]}])
    held = []
    for i in range(60):
        s = socket.create_connection(("127.0.0.1", impatient_server.port), timeout=60)
        if i % 3 == 0:
            s.sendall(HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
        elif i % 3 == 1:
            s.sendall(HEAD)  # headers never end
        held.append((i % 3, s))
    status, _ = http(impatient_server.port, "POST", "/invocations", body, JSON)
    assert status == 200
    for kind, s in held:
        with s:
            status, headers, out = _read_response(s)  # returns when the server closes the socket
        assert status == 408 and headers["content-type"] == "application/json", (kind, status, out)
        assert "not received whole within 1 s" in json.loads(out)["error"]
    # and a slow but complete client within the bound is served as usual
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=60) as s:
        s.sendall(HEAD + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
        s.sendall(body[10:])
        assert _read_response(s)[0] == 200


def test_workers_exit_when_the_master_is_killed(registry_home: Path, tmp_path: Path, test_units) -> None:
    """SIGKILL of `predmaint serve` (the gunicorn master): its workers exit and free the port. Waits on the
    workers' exit (HANG_GUARD_S only stops a hung test), not on a time bound."""
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", "2"], free_port(), tmp_path / "s.log")
    workers: set[int] = set()
    try:
        srv.wait_ping()
        workers = srv.wait_workers(2)
        assert http(srv.port, "POST", "/invocations", request_body([{"asset_id": "a", "readings": test_units[1]}]),
                    JSON)[0] == 200
        srv.proc.kill()
        srv.proc.wait()
        deadline = time.monotonic() + 120  # hang guard
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their master"
            time.sleep(0.1)
        with pytest.raises(OSError):
            http(srv.port, "GET", "/ping", timeout=5)
    finally:
        srv.stop()
        for pid in workers:  # orphans left by a failure: never leave them holding a port
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
