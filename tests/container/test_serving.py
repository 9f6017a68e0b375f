"""The model artifact served by the SageMaker XGBoost container's own serving stack (sagemaker-containers'
Transformer and Worker under gunicorn with gevent workers, in the container's Python environment),
loaded the container's way: the endpoint contract, exactly as the local server answers it.

Each test names the breakage it guards (issue 12): a module defining ``transform_fn`` with the other
hooks is refused at start; JSON bodies reach the hooks as ``str`` (the compiled reader must still
answer); and any exception a hook raises becomes a 500 HTML page, so bad input must be answered by
``output_fn`` with a status.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from containerkit import PYTHON, SM_XGBOOST, container_python, environment, free_port
from localkit import children, http, request_body

from predmaint.modules import load_module

LOCAL_SERVER_TESTS = load_module(Path(__file__).resolve().parents[1] / "local" / "test_server.py",
                                 "container_local_server_tests")
JSON = {"Content-Type": "application/json"}


def _hosting_environment() -> dict[str, str]:
    """The container environment the endpoint stack gives the model (stacks/state_machine.py)."""
    from stacks.config import AppConfig
    from stacks.state_machine import hosting_environment
    from tests.infra.conftest import CDK_CONTEXT

    return hosting_environment(AppConfig.from_context(CDK_CONTEXT))


@pytest.fixture(scope="module")
def base(model_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SageMaker hosting layout: model.tar.gz extracted into <base>/model (SageMaker's /opt/ml/model)."""
    container_python()
    root = tmp_path_factory.mktemp("sm-hosting")
    with tarfile.open(model_tar) as tar:
        tar.extractall(root / "model", filter="data")
    return root


def _env(base: Path, site: str, **extra: str) -> dict[str, str]:
    hosting = _hosting_environment()
    assert hosting["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"  # here: the same under <base>
    return environment(base / site, **{**hosting, "SAGEMAKER_BASE_DIR": str(base),
                                       "SAGEMAKER_SUBMIT_DIRECTORY": str(base / "model" / "code"), **extra})


@pytest.fixture(scope="module")
def probe(base: Path, test_units) -> dict[str, Any]:
    """What one worker sees, in-process (sm_xgboost.py probe): the module loaded as the container
    loads it, two one-asset requests through the library's Worker (as str and as bytes)."""
    body = request_body([{"asset_id": "engine-3", "readings": test_units[3]}]).decode()
    proc = subprocess.run([str(PYTHON), str(SM_XGBOOST), "probe"], env=_env(base, "site-probe", PROBE_BODY=body),
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "body": body.encode()}


def test_the_container_accepts_the_hooks_module(probe) -> None:
    """sagemaker-containers refuses a module with transform_fn AND input_fn/predict_fn/output_fn."""
    assert probe["statuses"] == [200, 200], probe
    assert probe["module_file"].endswith("/code/inference.py")  # the code directory, as in a worker
    assert probe["python"].startswith("3.12") or probe["python"].startswith("3.11")


def test_str_bodies_take_the_compiled_reader_in_the_container(probe, loaded_local) -> None:
    """The container hands JSON bodies to input_fn as str: the compiled reader must answer them too."""
    assert probe["body_types"] == ["str", "bytes"]  # application/json is decoded, "...; charset=utf-8" is not
    assert probe["reader"] and probe["compiled_forest"]
    assert probe["reader_answers"] == 2
    assert probe["answers"][0] == probe["answers"][1] == loaded_local(probe["body"])


def test_life_summaries_take_the_compiled_reader_in_the_container(base: Path, test_units, loaded_local,
                                                                  tmp_path: Path) -> None:
    """Bodies with life summaries too: the compiled reader answers them in the container's Python (no
    orjson there), with the local server's answer, updated summaries included."""
    units = (3, 7)
    start = request_body([{"asset_id": u, "readings": test_units[u][:-20], "life": {}} for u in units])
    lives = [p["life"] for p in loaded_local(start)["predictions"]]
    body = request_body([{"asset_id": u, "readings": test_units[u][-30:], "life": life}
                         for u, life in zip(units, lives, strict=True)])
    (tmp_path / "body.json").write_bytes(body)
    proc = subprocess.run([str(PYTHON), str(SM_XGBOOST), "probe"], capture_output=True, text=True, timeout=300,
                          env=_env(base, "site-probe-life", PROBE_BODY_FILE=str(tmp_path / "body.json")), cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["statuses"] == [200, 200] and out["reader_answers"] == 2
    assert out["answers"][0] == out["answers"][1] == loaded_local(body)
    assert [p["life"]["count"] for p in out["answers"][0]["predictions"]] == [len(test_units[u]) for u in units]


@pytest.fixture(scope="module")
def loaded_local(model_dir: Path):
    """The local server's answer (``handle`` of the repository's hooks module) for a request."""
    from training_src import inference

    model = inference.model_fn(str(model_dir))

    def answer(body: bytes) -> dict[str, Any]:
        status, out, _ = inference.handle(model, body, "application/json", None)
        assert status == 200
        return json.loads(out)

    return answer


# ------------------------------------------------------------------------------------------------
# Over HTTP: gunicorn + gevent workers + the library's Worker, started as the container starts it
# ------------------------------------------------------------------------------------------------
class Served:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return http(self.port, "POST", "/invocations", body, JSON if headers is None else headers, timeout=60)


@pytest.fixture(scope="module")
def served(base: Path) -> Served:
    port = free_port()
    log = base / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(PYTHON), str(SM_XGBOOST), "serve", str(port), "2"],
                                env=_env(base, "site-serve", SAGEMAKER_BIND_TO_PORT=str(port)),
                                stdout=fh, stderr=subprocess.STDOUT, cwd="/")
    srv = Served(proc, port, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if http(port, "GET", "/ping", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.25)
        yield srv
    finally:
        if proc.poll() is None:
            proc.terminate()  # gunicorn's master: graceful stop of its workers
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_predictions_equal_the_local_server(served: Served, loaded_local, test_units) -> None:
    for units in ([1], [2, 3, 4], list(range(5, 25))):
        body = request_body([{"asset_id": f"engine-{u}", "readings": test_units[u]} for u in units])
        status, out = served.post(body)
        assert status == 200, out[:300]
        assert json.loads(out) == loaded_local(body)
    # a horizon: the compiled reader reads it, the answer carries the failure probability
    body = json.dumps({"instances": [{"asset_id": f"engine-{u}", "readings": test_units[u]} for u in (31, 34)],
                       "horizon": 30}).encode()
    status, out = served.post(body)
    assert status == 200 and json.loads(out) == loaded_local(body)
    assert all(0 <= p["failure_probability"] <= 1 and p["rul_lower"] <= p["rul_upper"]
               for p in json.loads(out)["predictions"])
    # a life summary: started from the whole history, then sent back with the last 30 readings; the
    # container's stdlib JSON round-trips it exactly, so the answer is the whole history's again
    body = json.dumps({"instances": [{"asset_id": "s", "readings": test_units[31], "life": {}}]}).encode()
    status, out = served.post(body)
    first = json.loads(out)["predictions"][0]
    assert status == 200 and json.loads(out) == loaded_local(body) and first["life"]["count"] == len(test_units[31])
    body = json.dumps({"instances": [{"asset_id": "s", "readings": test_units[31][-30:], "life": first["life"]}]})
    status, out = served.post(body.encode())
    assert status == 200 and json.loads(out) == loaded_local(body.encode())
    assert json.loads(out)["predictions"][0] == first
    # explanations: the container passes no custom attributes, the body asks for them
    body = json.dumps({"instances": [{"asset_id": "e", "readings": test_units[7]}], "explain": True}).encode()
    status, out = served.post(body)
    assert status == 200 and len(json.loads(out)["predictions"][0]["contributions"]) == 5


def _bad_requests(test_units) -> dict[str, tuple[bytes, dict[str, str], int, str]]:
    """The local server's bad requests (tests/local/test_server.py) and the contract's other refusals."""
    cases = dict(LOCAL_SERVER_TESTS.BAD_REQUESTS)
    # the container substitutes application/json for a missing Content-Type before any hook runs
    body, _, _, _ = cases.pop("no content type")
    cases["no content type (the container assumes JSON)"] = (body, {}, 400, "instances: empty")
    readings = [dict(r) for r in test_units[1]]
    readings[-1]["sensor_2"] = "hot"
    cases["string in a sensor field"] = (request_body([{"asset_id": "a", "readings": readings}]), JSON, 400,
                                         "instances[0].readings[30].sensor_2: expected a number, got str")
    cases["text/plain body"] = (b"hello", {"Content-Type": "text/plain"}, 415, "Content-Type")
    cases["NaN in a field"] = (request_body([{"asset_id": "a", "readings": readings[-3:]}]).replace(b'"hot"', b"NaN"),
                               JSON, 400, "instances[0].readings[2].sensor_2: must be a finite number")
    cases["deep nesting"] = (b"[" * 5000 + b"]" * 5000, JSON, 400, "JSON")
    one = {"asset_id": "a", "readings": test_units[1][-2:]}
    limit = int(_hosting_environment()["PREDMAINT_MAX_INSTANCES"])  # the endpoint's configured limit
    cases["too many instances"] = (request_body([one] * (limit + 1)), JSON, 413, f"at most {limit} per request")
    cases["body over 6 MB"] = (b'{"instances": [], "pad": "' + b"x" * (6 * 2**20) + b'"}', JSON, 413, "exceeds")
    cases["bad Accept and a bad body"] = (b"{", {**JSON, "Accept": "text/csv"}, 406, "Accept")
    return cases


def test_bad_input_gets_the_contract_answer_never_a_5xx(served: Served, test_units) -> None:
    before = children(served.proc.pid)
    assert len(before) == 2
    failures = []
    for name, (body, headers, status, fragment) in _bad_requests(test_units).items():
        got, out = served.post(body, headers)
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        if got != status or not isinstance(doc, dict) or set(doc) != {"error"} or fragment not in doc["error"]:
            failures.append((name, got, out[:200]))
    assert failures == [], failures
    assert served.post(request_body([{"asset_id": "a", "readings": test_units[1]}]))[0] == 200
    assert children(served.proc.pid) == before, "a worker died on bad input"


def test_numbers_beyond_the_float_range_are_named_there_as_locally(served: Served, loaded_local, base: Path,
                                                                    test_units) -> None:
    """A 400-digit integer in a life summary field, and a NaN/Infinity/1e400 instance horizon: the container's
    stdlib parser and the local server's orjson give the same 400, naming the field."""
    from training_src import inference

    local = inference.model_fn(str(base / "model"))
    start = request_body([{"asset_id": "s", "readings": test_units[31], "life": {}}])
    life = loaded_local(start)["predictions"][0]["life"]
    cases = []
    for key in ("first", "last", "t", "tt", "z"):
        doc = {**life, "z": ["@big", *life["z"][1:]]} if key == "z" else {**life, key: "@big"}
        where = f"instances[0].life.{key}"
        message = (f"{where}: must be a list of {len(life['z'])} finite numbers" if key == "z"
                   else f"{where}: must be a finite number")
        body = json.dumps({"instances": [{"asset_id": "s", "readings": test_units[31][-30:], "life": doc}]})
        cases.append((body.replace('"@big"', "9" * 400).encode(), message))
    for number in ("NaN", "Infinity", "1e400"):
        body = json.dumps({"instances": [{"asset_id": "s", "readings": test_units[31][-30:], "horizon": "@h"}]})
        cases.append((body.replace('"@h"', number).encode(), "instances[0].horizon: must be a number of cycles >= 0"))
    for body, message in cases:
        status, out = served.post(body)
        assert (status, json.loads(out)) == (400, {"error": message}), body[-200:]
        status, out, _ = inference.handle(local, body, "application/json", None)
        assert (status, json.loads(out)) == (400, {"error": message})


def _answer(body: bytes) -> dict[str, Any]:
    """A JSON answer without its model_version: the deployment names the model (the local registry's
    version, the container's artifact), the rest must be equal."""
    doc = json.loads(body)
    doc.pop("model_version", None)
    return doc


def test_the_container_answers_the_shared_corpus_like_the_local_server(served: Served, server, test_units) -> None:
    """Every case of tests/serving_corpus.py gets the same status and the same JSON body from the container's
    stack as from `predmaint serve` (bodies that are not UTF-8, integers beyond 64 bits, Accept weights)."""
    from tests.serving_corpus import corpus

    differ = []
    for name, (body, headers, expected) in corpus(test_units).items():
        local = http(server.port, "POST", "/invocations", body, headers, timeout=60)
        container = served.post(body, headers)
        if local[0] != expected or container[0] != local[0] or _answer(container[1]) != _answer(local[1]):
            differ.append((name, expected, local[0], local[1][:160], container[0], container[1][:160]))
    assert differ == [], "\n".join(map(repr, differ))
