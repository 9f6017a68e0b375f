"""Serving benchmark: in-process latency, the floor, and HTTP against a reference server.

One command, everything in one run on loopback (127.0.0.1):

    .venv/bin/python bench/serving.py --home /tmp/perf/home          # the registry's champion
    .venv/bin/python bench/serving.py --model-dir PATH               # an extracted model directory

1. In-process latency p50/p99 of ``handle`` (the whole request: codec, compiled reader or Python
   path, predictor, response) for requests of 1, 10 and 100 FD001 test assets with 30 readings each;
   and, with ``--container``, of one asset through the SageMaker XGBoost container's own
   ``Transformer.transform`` (sagemaker-containers, in the container's Python environment).
2. The floor for the same requests: the raw booster (``inplace_predict``) on precomputed features,
   the compiled tree walker (``forest.c``, what serves when it is built) and the NumPy tree walk
   (``NumpyForest``, its fallback for small requests), also on precomputed features; and the p50 of
   each stage of the Python path alone (decode, parse/validate, features, predict).
3. HTTP p50/p99 latency and throughput of one-asset requests at concurrency 1, 8 and 32, for our
   server (``python -m predmaint.server``: gunicorn + uvicorn workers, raw ASGI) and for a reference
   built like SageMaker's framework containers (gunicorn sync workers + Flask calling the artifact's
   ``input_fn -> predict_fn -> output_fn`` on the Python path, the earlier baseline), with the same
   worker count and the same thread environment; and the same reference stack calling ``handle``
   (with the compiled request reader), to compare stacks alone. With ``--container``, also the
   SageMaker XGBoost container's own serving stack (tests/container/sm_xgboost.py: gunicorn gevent
   workers, sagemaker-containers' Worker + Transformer, the artifact installed and loaded as the
   container does) calling our hooks, and the same worker calling the plain hooks (the compiled
   request reader off: the Python path).
   All servers run at once; each level's time is split into rounds (default 4) in which every
   server gets its slice in turn, so a slow phase of the machine falls on all of them alike. The
   ratios are printed pooled and as the lowest/highest single-round ratio.
4. Ratios: ours vs reference throughput, in-process vs floor latency.

The load generator is an asyncio client on raw sockets (uvloop when installed) in this process, on
the same 2 cores as the servers. Every loop is bounded by a request count AND a time limit. The
machine's load average and a CPU probe (`machine.py`) are printed with each section: the CPU may be
shared, and this machine alternates between a fast and a ~1.8x slower phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402

from predmaint.processes import terminate  # noqa: E402

HOST = "127.0.0.1"
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "PREDMAINT_PREDICT_THREADS": "1"}
for _k, _v in THREAD_ENV.items():  # before numpy/xgboost start any thread pool in this process
    os.environ.setdefault(_k, _v)


# ---------------------------------------------------------------------- reference server (Flask)
def reference_app() -> Any:
    """gunicorn factory (``serving:reference_app()``): Flask + the model's own hooks.

    Built like the SageMaker framework containers' serving stack: a WSGI app under gunicorn sync
    workers, model loaded once per worker, ``input_fn -> predict_fn -> output_fn`` per request (run
    with ``PREDMAINT_NATIVE_REQUEST=0``: the Python path, the earlier baseline). With
    ``PREDMAINT_BENCH_HANDLER=handle`` it calls ``handle`` instead (the compiled request reader
    included), so the serving stacks can be compared with the same handler. The model directory
    comes from ``PREDMAINT_BENCH_MODEL_DIR``.
    """
    from flask import Flask, Response, request

    from predmaint.server import load_inference_module

    model_dir = Path(os.environ["PREDMAINT_BENCH_MODEL_DIR"])
    module = load_inference_module(model_dir)
    model = module.model_fn(str(model_dir))
    app = Flask("reference")

    @app.route("/ping", methods=["GET"])
    def ping() -> Response:
        return Response(b'{"status": "healthy"}', status=200, mimetype="application/json")

    whole = os.environ.get("PREDMAINT_BENCH_HANDLER") == "handle"

    @app.route("/invocations", methods=["POST"])
    def invocations() -> Response:
        if whole:  # the whole request in one call, as the local server runs it
            status, out, ctype = module.handle(model, request.get_data(), request.headers.get("Content-Type"),
                                               request.headers.get("Accept"))
            return Response(out, status=status, mimetype=ctype)
        try:
            data = module.input_fn(request.get_data(), request.headers.get("Content-Type"))
            prediction = module.predict_fn(data, model)
            body, ctype = module.output_fn(prediction, request.headers.get("Accept"))
            return Response(body, status=200, mimetype=ctype)
        except Exception as exc:  # outside the container a refusal is raised with its status
            return Response(json.dumps({"error": str(exc)}), status=getattr(exc, "status_code", 500),
                            mimetype="application/json")

    return app


# ---------------------------------------------------------------------- helpers
def pct(values: list[float] | np.ndarray) -> tuple[float, float]:
    """(p50, p99) in milliseconds of durations in seconds."""
    arr = np.asarray(values) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def timed(fn: Any, max_reps: int, max_seconds: float) -> list[float]:
    """Durations of up to ``max_reps`` calls of ``fn`` within ``max_seconds`` (after 20 warm-ups)."""
    for _ in range(20):
        fn()
    out: list[float] = []
    stop = time.perf_counter() + max_seconds
    while len(out) < max_reps and time.perf_counter() < stop:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def resolve_model_dir(args: argparse.Namespace) -> Path:
    """The model directory to benchmark: --model-dir, or the champion of --home (extracted)."""
    if args.model_dir:
        return Path(args.model_dir)
    from predmaint import registry as reg

    registry = reg.Registry(Path(args.home))
    package = registry.resolve(None)
    return Path(registry.model_dir(package.version))


def test_assets(data_dir: Path, readings: int) -> list[dict[str, Any]]:
    """FD001 test units as request instances, each with its first ``readings`` readings."""
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    test = read_table(resolve_file(data_dir, profile.file("test")), profile)
    out = []
    for unit, g in test.groupby("unit"):
        rows = g.drop(columns=["unit"]).head(readings).to_dict("records")
        out.append({"asset_id": f"FD001-unit-{int(unit)}", "readings": rows})
    return out


def summary_assets(module: Any, model: Any, data_dir: Path, readings: int,
                   horizon: float | None = None) -> list[dict[str, Any]]:
    """FD001 test units as a stream application sends them: each unit's last ``readings`` readings with
    the life summary the endpoint returned for its readings before those (started with ``{}``), and
    ``horizon`` on each instance (as the stream's scorer sends it) unless None."""
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    test = read_table(resolve_file(data_dir, profile.file("test")), profile)
    out = []
    for unit, g in test.groupby("unit"):
        rows = g.drop(columns=["unit"]).to_dict("records")
        asset = f"FD001-unit-{int(unit)}"
        start = body_of([{"asset_id": asset, "readings": rows[:-readings], "life": {}}])
        status, answer, _ = module.handle(model, start, "application/json", "application/json")
        assert status == 200, answer
        life = json.loads(answer)["predictions"][0]["life"]
        inst = {"asset_id": asset, "readings": rows[-readings:], "life": life}
        if horizon is not None:
            inst["horizon"] = horizon
        out.append(inst)
    return out


def body_of(instances: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": instances}).encode()


# ---------------------------------------------------------------------- in-process
def in_process(model_dir: Path, assets: list[dict[str, Any]], sizes: list[int], seconds: float,
               data_dir: Path | None = None, readings: int = 30, horizon: float | None = None) -> dict[str, Any]:
    """Latency of handle (the whole request) and of the floor per request size; with ``data_dir`` (and a
    model that reads life summaries) also of the same requests with each asset's life summary and, on
    each instance of those, ``horizon`` (when not None and the model is calibrated: the stream's request)."""
    import dataclasses
    import importlib

    from predmaint.server import load_inference_module

    module = load_inference_module(model_dir)
    model = module.model_fn(str(model_dir))
    package = module.model_fn.__module__.rpartition(".")[0]  # the artifact's serving package
    codec = importlib.import_module(f"{package}.codec")
    predictors = importlib.import_module(f"{package}.predictors")

    python_model = dataclasses.replace(model, reader=None)  # the same model without request.c
    results: dict[str, Any] = {"load": load(), "compiled": getattr(model, "compiled", None) is not None,
                               "forest": model.forest is not None, "reader": model.reader is not None}
    if getattr(model, "intervals", None) is None:
        horizon = None  # a horizon needs an interval calibration (a 400 otherwise)
    results["horizon"] = horizon
    life_assets = (summary_assets(module, model, data_dir, readings, horizon)
                   if data_dir and model.spec.life_stats else None)
    for k in sizes:
        body = body_of(assets[:k])
        status, _, _ = module.handle(model, body, "application/json", "application/json")
        assert status == 200, status
        reps = {1: 20000, 10: 5000}.get(k, 1000)
        full = timed(lambda b=body: module.handle(model, b, "application/json", "application/json"), reps, seconds)
        X = codec.read_python(body, model).X
        import orjson

        parse = timed(lambda b=body: orjson.loads(b), reps, seconds)  # JSON decoding alone, for context
        row = {"assets": k, "body_bytes": len(body), "handle_ms": pct(full), "json_parse_ms": pct(parse), "n": len(full)}
        if model.booster is not None:
            row["booster_floor_ms"] = pct(timed(lambda x=X: model.booster.inplace_predict(x), reps, seconds))
        else:  # another candidate (hgb, linear): its own predictor on precomputed features is the floor
            row["predictor_floor_ms"] = pct(timed(lambda x=X: predictors.predict_matrix(model, x), reps, seconds))
        if model.reader is not None:
            python = timed(lambda b=body: module.handle(python_model, b, "application/json", "application/json"),
                           reps, seconds)
            row["handle_python_ms"] = pct(python)
            row["reader_ms"] = pct(timed(lambda b=body: model.reader.read(b), reps, seconds))
        if getattr(model, "compiled", None) is not None:
            row["compiled_floor_ms"] = pct(timed(lambda x=X: model.compiled.predict(x), reps, seconds))
        forest = model.forest or (predictors.NumpyForest.from_booster(model.booster) if model.booster else None)
        if forest is not None and k <= forest.MAX_ROWS:
            row["forest_floor_ms"] = pct(timed(lambda x=X, f=forest: f.predict(x), reps, seconds))
        # where the time goes: each stage of the Python path alone (p50)
        doc = codec.decode(body)
        req = codec.parse_instances(doc, model)
        row["stages_p50_ms"] = {
            "decode": pct(timed(lambda b=body: codec.decode(b), reps, seconds))[0],
            "parse": pct(timed(lambda d=doc: codec.parse_instances(d, model), reps, seconds))[0],
            "features": pct(timed(lambda r=req: codec.features_matrix(r, model), reps, seconds))[0],
            "predict": pct(timed(lambda x=X: predictors.predict_matrix(model, x), reps, seconds))[0],
        }
        if life_assets is not None:  # the same assets as a stream sends them: last readings + life summary
            life_body = body_of(life_assets[:k])
            status, answer, _ = module.handle(model, life_body, "application/json", "application/json")
            assert status == 200 and all("life" in p for p in json.loads(answer)["predictions"]), answer[:200]
            row["life_body_bytes"] = len(life_body)
            row["handle_life_ms"] = pct(timed(
                lambda b=life_body: module.handle(model, b, "application/json", "application/json"), reps, seconds))
            row["handle_life_python_ms"] = pct(timed(
                lambda b=life_body: module.handle(python_model, b, "application/json", "application/json"),
                reps, seconds))
            row["life_vs_window_p50"] = row["handle_life_ms"][0] / row["handle_ms"][0]
            if horizon is not None:  # the horizon's own cost: P(RUL <= h) of k predictions (intervals.py)
                cal, preds = model.intervals.of(True), predictors.predict_matrix(model, codec.read(life_body, model).X)
                hz = np.full(len(preds), float(horizon))
                row["failure_probability_ms"] = pct(timed(lambda c=cal, p=preds, h=hz: c.failure_probability(p, h),
                                                          reps, seconds))
            row["life_body"] = life_body.decode()  # for the container probe (dropped from the JSON below)
        row["load"] = load()
        results[str(k)] = row
    results["load_after"] = load()
    return results


# ---------------------------------------------------------------------- the SageMaker XGBoost container
def container_kit() -> Any:
    """tests/container/containerkit.py (the container environment's helpers), or exit with a hint."""
    sys.path.insert(0, str(REPO / "tests" / "container"))
    import containerkit

    if not containerkit.PYTHON.is_file():
        sys.exit(f"--container needs {containerkit.VENV}: run `make container-setup`")
    return containerkit


def container_layout(model_dir: Path, root: Path, **extra: str) -> dict[str, str]:
    """A SageMaker hosting layout under ``root`` (``root/model`` is the model directory) and the
    container process environment for it (script mode: SAGEMAKER_PROGRAM=inference.py)."""
    ck = container_kit()
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").symlink_to(model_dir.resolve())
    return ck.environment(root / "site", SAGEMAKER_BASE_DIR=str(root), SAGEMAKER_PROGRAM="inference.py",
                          SAGEMAKER_SUBMIT_DIRECTORY=str(model_dir.resolve() / "code"), SAGEMAKER_USE_NGINX="false",
                          **THREAD_ENV, **extra)


def container_in_process(model_dir: Path, body: bytes, seconds: float, root: Path) -> dict[str, Any]:
    """A request through the container's own ``Transformer.transform`` in one worker process
    (sm_xgboost.py probe: Flask request context, str body, our hooks); p50/p99 in ms."""
    ck = container_kit()
    root.mkdir(parents=True, exist_ok=True)
    (root / "body.json").write_bytes(body)  # 100 assets exceed an environment variable's 128 KiB
    env = container_layout(model_dir, root, PROBE_BODY_FILE=str(root / "body.json"))
    proc = subprocess.run([str(ck.PYTHON), str(ck.SM_XGBOOST), "probe", str(seconds)], env=env,
                          capture_output=True, text=True, timeout=600, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"container probe failed: {proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load": load()}


# ---------------------------------------------------------------------- HTTP load generator
class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection; reconnects when the server says close."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is None or w.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        length = 0
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17:j if j > 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[:end + 4 + length]
        w.set_result((int(head[9:12]), b"\r\nconnection: close" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))


async def _load(port: int, request: bytes, concurrency: int, max_requests: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = {"status": 0, "connection": 0}
    budget = [max_requests]
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn: _Conn | None = None
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            t0 = time.perf_counter()
            try:
                if conn is None or conn.closed:
                    _, conn = await loop.create_connection(_Conn, HOST, port)
                conn.waiter = loop.create_future()
                conn.transport.write(request)
                status, close = await asyncio.wait_for(conn.waiter, 30)
            except (TimeoutError, ConnectionError, OSError):
                errors["connection"] += 1
                conn = None
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors["status"] += 1
            if close:
                conn.transport.close()
                conn = None
        if conn is not None and not conn.closed:
            conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "seconds": elapsed, "errors": errors}


def run_load(port: int, request: bytes, concurrency: int, max_requests: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` clients, each sending its next request on the last answer.
    Returns the raw latencies (seconds), the elapsed seconds and the error counts."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_load(port, request, concurrency, max_requests, seconds))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll GET /ping until 200 (raises if the server exits or the time runs out)."""
    import httpx

    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://{HOST}:{port}/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (graceful), then SIGKILL after 20 s; only the process we started."""
    terminate(proc, 20)


def summarise(name: str, concurrency: int, slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One (server, level) row from its slices: throughput over the summed time, pooled p50/p99."""
    latencies = [x for sl in slices for x in sl["latencies"]]
    seconds = sum(sl["seconds"] for sl in slices)
    p50, p99 = pct(latencies) if latencies else (float("nan"), float("nan"))
    errors = {k: sum(sl["errors"][k] for sl in slices) for k in slices[0]["errors"]}
    return {"server": name, "concurrency": concurrency, "requests": len(latencies), "seconds": round(seconds, 2),
            "throughput_rps": len(latencies) / seconds if seconds else 0.0, "p50_ms": p50, "p99_ms": p99,
            "errors": errors, "rounds_rps": [len(sl["latencies"]) / sl["seconds"] for sl in slices]}


def http_bench(servers: list[tuple[str, list[str], dict[str, str], int]], request: bytes, levels: list[int],
               max_requests: int, seconds: float, rounds: int, log: Path) -> dict[str, list[dict[str, Any]]]:
    """Start every server (name, command, environment, port) at once and warm each up; then, for
    each of ``rounds`` rounds and each concurrency level, load every server for ``seconds/rounds``
    (the order rotating from round to round), so a slow phase of the machine falls on all servers
    alike. Returns each server's rows, one per level (see ``summarise``)."""
    procs: list[subprocess.Popen] = []
    try:
        with open(log, "ab") as fh:
            for _, cmd, env, _ in servers:
                procs.append(subprocess.Popen(cmd, env=env, stdout=fh, stderr=fh, cwd=str(REPO)))
        for (_, _, _, port), proc in zip(servers, procs, strict=True):
            wait_ready(port, proc)
            run_load(port, request, 4, 400, 5)  # warm-up: every worker has answered a few requests
        slices: dict[tuple[str, int], list[dict[str, Any]]] = {(n, c): [] for n, *_ in servers for c in levels}
        for r in range(rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            for c in levels:
                for name, _, _, port in order:
                    slices[name, c].append(run_load(port, request, c, max(1, max_requests // rounds), seconds / rounds))
            print(f"  round {r + 1}/{rounds} done · {load()}", flush=True)
        out: dict[str, list[dict[str, Any]]] = {}
        for name, *_ in servers:
            out[name] = [summarise(name, c, slices[name, c]) for c in levels]
            for row in out[name]:
                print(f"  {name:<10} c={row['concurrency']:<3} {row['throughput_rps']:8.0f} req/s  "
                      f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  n={row['requests']}  "
                      f"errors={row['errors']}  per round " + "/".join(f"{x:.0f}" for x in row["rounds_rps"]),
                      flush=True)
        return out
    finally:
        for proc in procs:
            stop_server(proc)


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("PREDMAINT_HOME", ".predmaint"),
                    help="predmaint home whose champion to serve (default $PREDMAINT_HOME or .predmaint)")
    ap.add_argument("--model-dir", default=None, help="an extracted model directory instead of the champion")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", "data"), type=Path)
    ap.add_argument("--workers", type=int, default=2, help="workers for BOTH servers (default 2)")
    ap.add_argument("--readings", type=int, default=30, help="readings per asset (default 30)")
    ap.add_argument("--horizon", type=float, default=30.0,
                    help="horizon (cycles) on each instance of the requests with life summaries, as the stream "
                         "sends them (default 30; negative: none)")
    ap.add_argument("--seconds", type=float, default=8.0,
                    help="time per server and HTTP level, summed over the rounds (default 8)")
    ap.add_argument("--max-requests", type=int, default=40000, help="request limit per HTTP level")
    ap.add_argument("--inproc-seconds", type=float, default=4.0, help="time limit per in-process size")
    ap.add_argument("--levels", default="1,8,32", help="HTTP concurrency levels (default 1,8,32)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="HTTP: split each level's time into this many rounds, servers interleaved (default 4)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--no-handle-reference", action="store_true",
                    help="skip the third server (the reference stack calling handle)")
    ap.add_argument("--no-http", action="store_true", help="in-process figures only")
    ap.add_argument("--container", action="store_true",
                    help="also the SageMaker XGBoost container's serving stack (needs `make container-setup`): "
                         "in-process Transformer latency, and HTTP with our hooks and with the plain hooks")
    args = ap.parse_args(argv)

    model_dir = resolve_model_dir(args)
    assets = test_assets(args.data_dir, args.readings)
    levels = [int(x) for x in args.levels.split(",")]
    print(f"serving benchmark · {time.strftime('%Y-%m-%d %H:%M:%S')} · {os.cpu_count()} CPUs · {load()}")
    print(f"model {model_dir} · {args.readings} readings per asset · {args.workers} workers per server")

    print("\nin-process (handle: the whole request) and the floor (precomputed features):")
    inproc = in_process(model_dir, assets, [1, 10, 100], args.inproc_seconds, args.data_dir, args.readings,
                        None if args.horizon < 0 else args.horizon)
    for k in ("1", "10", "100"):
        r = inproc[k]
        line = (f"  {r['assets']:>3} asset(s) ({r['body_bytes'] / 1024:6.0f} KiB): handle p50 {r['handle_ms'][0]:7.3f} ms "
                f"p99 {r['handle_ms'][1]:7.3f} ms | " + (f"floor booster p50 {r['booster_floor_ms'][0]:6.3f} ms"
                                                         if "booster_floor_ms" in r else
                                                         f"floor: the model's predictor p50 "
                                                         f"{r['predictor_floor_ms'][0]:6.3f} ms"))
        if "compiled_floor_ms" in r:
            line += f", compiled walker p50 {r['compiled_floor_ms'][0]:6.3f} ms"
        if "forest_floor_ms" in r:
            line += f", NumPy forest p50 {r['forest_floor_ms'][0]:6.3f} ms"
        print(line + f" | orjson.loads alone p50 {r['json_parse_ms'][0]:6.3f} ms")
        if "reader_ms" in r:
            print(f"        compiled reader (body -> features) p50 {r['reader_ms'][0]:.3f} ms; "
                  f"handle without it (Python path) p50 {r['handle_python_ms'][0]:.3f} ms "
                  f"p99 {r['handle_python_ms'][1]:.3f} ms")
        if "handle_life_ms" in r:
            hz = "" if inproc["horizon"] is None else f" and a horizon of {inproc['horizon']:g}"
            print(f"        with each asset's life summary{hz} ({r['life_body_bytes'] / 1024:.0f} KiB): handle p50 "
                  f"{r['handle_life_ms'][0]:.3f} ms p99 {r['handle_life_ms'][1]:.3f} ms "
                  f"({r['life_vs_window_p50']:.2f}x the window-only p50); Python path p50 "
                  f"{r['handle_life_python_ms'][0]:.3f} ms p99 {r['handle_life_python_ms'][1]:.3f} ms"
                  + (f"; P(RUL <= horizon) alone p50 {r['failure_probability_ms'][0] * 1e3:.1f} us"
                     if "failure_probability_ms" in r else ""))
        st = r["stages_p50_ms"]
        print("        Python path stages p50: " + ", ".join(f"{name} {v:.3f} ms" for name, v in st.items())
              + f" · {r['load']}")
    print(f"  {inproc['load']} -> {inproc['load_after']}")
    scratch = Path(tempfile.mkdtemp(prefix="predmaint-bench-container-"))
    container: dict[str, Any] = {}
    if args.container:
        print("\nin-process through the SageMaker XGBoost container's Transformer.transform (sagemaker-containers, "
              "str body):")
        cases = [(f"{k} asset(s)", str(k), body_of(assets[:k])) for k in (1, 100)]
        cases += [(f"{k} asset(s) with life summaries", f"{k}_life", inproc[str(k)]["life_body"].encode())
                  for k in (1, 100) if "life_body" in inproc[str(k)]]
        for label, key, body in cases:
            c = container[key] = container_in_process(model_dir, body, args.inproc_seconds, scratch / f"probe-{key}")
            print(f"  {label}: p50 {c['transform_ms']['p50']:.3f} ms p99 {c['transform_ms']['p99']:.3f} ms "
                  f"(n={c['transform_ms']['n']}; Python {c['python']}, compiled reader {'on' if c['reader'] else 'off'}); "
                  f"our three hooks alone p50 {c['hooks_ms']['p50']:.3f} ms · {c['load']}")
        container["fast"] = container["1"]
        for k in ("1", "100"):
            if f"{k}_life" in container:
                ratio = container[f"{k}_life"]["transform_ms"]["p50"] / container[k]["transform_ms"]["p50"]
                container[f"life_vs_window_{k}"] = ratio
                print(f"  {k} asset(s): with life summaries {ratio:.2f}x the window-only p50")
    if args.no_http:
        print(f"done · {load()}")
        return 0

    request_body = body_of(assets[:1])
    request = (f"POST /invocations HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
               f"Accept: application/json\r\nContent-Length: {len(request_body)}\r\n\r\n").encode() + request_body
    env = {**os.environ, **THREAD_ENV, "PYTHONPATH": str(REPO)}
    log = Path(tempfile.gettempdir()) / f"predmaint-bench-serving-{os.getpid()}.log"
    print(f"\nHTTP, one asset ({args.readings} readings) per request, closed loop on {HOST} (server logs: {log}):")
    ref_env = {**env, "PREDMAINT_BENCH_MODEL_DIR": str(model_dir)}

    def reference(port: int) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--worker-class", "sync",
                "--bind", f"{HOST}:{port}", "--chdir", str(REPO / "bench"), "--log-level", "warning",
                "serving:reference_app()"]

    servers = [("ours", [sys.executable, "-m", "predmaint.server", str(model_dir), "--host", HOST, "--port",
                         str(p := free_port()), "--workers", str(args.workers)], env, p),
               # the earlier baseline: the hooks on the Python path (before, the hooks never used the reader)
               ("reference", reference(p := free_port()), {**ref_env, "PREDMAINT_NATIVE_REQUEST": "0"}, p)]
    if not args.no_handle_reference:  # the same stack calling handle: the serving stacks alone
        servers.append(("ref+handle", reference(p := free_port()),
                        {**ref_env, "PREDMAINT_BENCH_HANDLER": "handle"}, p))
    if args.container:  # the container's own stack: our hooks, and the same worker with the plain hooks
        ck = container_kit()
        for name, extra in (("container", {}), ("cont-plain", {"PREDMAINT_NATIVE_REQUEST": "0"})):
            p = free_port()
            env_c = container_layout(model_dir, scratch / name, SAGEMAKER_BIND_TO_PORT=str(p), **extra)
            servers.append((name, [str(ck.PYTHON), str(ck.SM_XGBOOST), "serve", str(p), str(args.workers)], env_c, p))
    http = http_bench(servers, request, levels, args.max_requests, args.seconds, args.rounds, log)
    ours, ref, ref_handle = http["ours"], http["reference"], http.get("ref+handle", [])
    cont, cont_plain = http.get("container", []), http.get("cont-plain", [])

    print("\nratios (pooled over the rounds; in brackets the lowest and highest single-round ratio):")
    ratios: dict[str, Any] = {}
    for label, key, mine, other in (
            ("ours/reference", "throughput_c", ours, ref),
            ("ours/ref+handle (same handler, serving stack alone)", "throughput_vs_handle_reference_c", ours,
             ref_handle),
            ("container/cont-plain (the container's worker: our hooks vs the plain hooks)", "container_vs_plain_c",
             cont, cont_plain),
            ("ours/container (our server vs the container's stack, same hooks)", "ours_vs_container_c", ours, cont)):
        for a, b in zip(mine, other, strict=False):
            r = a["throughput_rps"] / b["throughput_rps"] if b["throughput_rps"] else float("inf")
            per_round = [x / y for x, y in zip(a["rounds_rps"], b["rounds_rps"], strict=True) if y]
            ratios[f"{key}{a['concurrency']}"] = r
            ratios[f"{key}{a['concurrency']}_rounds"] = per_round
            print(f"  throughput {label} at c={a['concurrency']}: {r:.2f}x "
                  f"[{min(per_round):.2f}-{max(per_round):.2f}] (p99 {a['p99_ms']:.2f} vs {b['p99_ms']:.2f} ms)")
    one = inproc["1"]
    floor_key = next(k for k in ("compiled_floor_ms", "forest_floor_ms", "booster_floor_ms", "predictor_floor_ms")
                     if k in one)
    ratios["inproc_vs_floor_1"] = one["handle_ms"][0] / one[floor_key][0]
    print(f"  in-process 1 asset vs floor ({floor_key.split('_')[0]}): {ratios['inproc_vs_floor_1']:.2f}x")
    if "booster_floor_ms" in one:
        ratios["inproc_vs_booster_1"] = one["handle_ms"][0] / one["booster_floor_ms"][0]
        ratios["inproc_vs_booster_100"] = inproc["100"]["handle_ms"][0] / inproc["100"]["booster_floor_ms"][0]
        print(f"  in-process 1 asset vs raw booster: {ratios['inproc_vs_booster_1']:.2f}x; "
              f"100 assets: {ratios['inproc_vs_booster_100']:.2f}x")
    print(f"done · {load()}")
    for k in ("1", "10", "100"):
        inproc[k].pop("life_body", None)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                                         "model_dir": str(model_dir), "in_process": inproc, "http_ours": ours,
                                         "http_reference": ref, "http_reference_handle": ref_handle,
                                         "container_in_process": container.get("fast"), "http_container": cont,
                                         "http_container_plain": cont_plain, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
