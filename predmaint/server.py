"""The local endpoint: the SageMaker hosting contract served by gunicorn + uvicorn workers.

``GET /ping`` answers 200 once the model is loaded (503 with the reason if it could not be), ``POST
/invocations`` runs ``inference.handle`` — the same serving code (``training_src/predmaint_serving``) the
SageMaker container runs — and ``GET /execution-parameters`` answers Batch Transform's probe.

Design choices, and why:
- A raw ASGI callable, not a web framework: the hot path is "read body, call handle, send bytes", and
  every layer in between costs latency (see issue 6's serving benchmark).
- gunicorn as the process manager: several workers, each replaced by the arbiter if it dies, graceful
  shutdown on SIGTERM (in-flight requests finish within ``graceful_timeout``).
- The model is loaded once per worker (ASGI lifespan startup, after the fork) by importing
  ``code/inference.py`` from the model directory by file path with ``code/`` on ``sys.path``, exactly
  as the SageMaker container does. A load failure never exits the worker (gunicorn would halt on a
  boot error or, for a crash, restart it in a loop); the worker stays up and ``/ping`` answers 503.
- One OpenMP/BLAS thread per worker: workers, not threads, use the cores, so two workers on two cores
  never oversubscribe.
- The body limit is enforced before reading: a Content-Length over the limit gets its 413 at once; a
  chunked body is counted as it streams and refused at the limit. The 413 goes out first, then the
  rest of the body is read and dropped (at most ``DRAIN_BYTES`` or ``DRAIN_SECONDS``) before the
  connection closes: clients that write the whole body before reading the answer (Python's
  http.client, urllib3 under boto3) would otherwise get a connection reset instead of the 413.
- Connections are uvicorn's httptools protocol with two changes (``http_protocol.py``): a request the
  HTTP parser refuses gets the contract's JSON 400, and a request must arrive whole within
  ``PREDMAINT_REQUEST_TIMEOUT_S`` (30 s) or gets a 408 and its connection is closed.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .errors import UsageError
from .modules import load_module

log = logging.getLogger("predmaint.server")

MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints refuse payloads over 6 MB
#: how much of a refused (too large) body is read and dropped after the 413, so the client reads it
DRAIN_BYTES, DRAIN_SECONDS = 64 * 1024 * 1024, 10.0
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_WORKERS = "127.0.0.1", 8080, 2
#: Environment that pins native thread pools to one thread per worker (set before the fork).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "PREDMAINT_PREDICT_THREADS": "1"}
JSON = b"application/json"
#: Heavy third-party modules imported once in the gunicorn master, before the fork: each worker (and
#: every replacement worker) then starts in milliseconds instead of re-importing them (~3 s on 2
#: cores). Safe because no OpenMP pool exists until the first prediction, which happens in a worker.
PRELOAD_MODULES = ("numpy", "pandas", "xgboost")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _json_error(message: str) -> bytes:
    import json

    return json.dumps({"error": message}).encode()


def load_inference_module(model_dir: Path) -> Any:
    """Import ``<model_dir>/code/inference.py`` by path, with ``code/`` first on ``sys.path``.

    That is how the SageMaker framework containers load the user's entry point: it imports the hooks
    from the ``training_src`` package shipped beside it in ``code/`` (the artifact's copy, unless this
    process has already imported ``training_src``, as local mode may: then that same code serves).
    Returns the module; raises on a missing or broken file.
    """
    code_dir = Path(model_dir) / "code"
    entry = code_dir / "inference.py"
    if not entry.is_file():
        raise FileNotFoundError(f"{entry} is missing")
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    module = load_module(entry, "inference")
    for name in ("model_fn", "handle"):
        if not callable(getattr(module, name, None)):
            raise ImportError(f"{entry} does not define {name}()")
    return module


class InferenceApp:
    """ASGI application serving one model directory.

    ``model_dir`` is an extracted model artifact; ``model_version`` (optional) is what responses
    report as ``model_version`` (exported as PREDMAINT_MODEL_VERSION for inference.py).
    """

    def __init__(self, model_dir: Path | str, model_version: str | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, capture: Any = None):
        self.capture = capture  # a capture.CaptureWriter: SageMaker-format capture records, sampled
        self.model_dir = Path(model_dir)
        self.model_version = model_version
        self.max_body_bytes = max_body_bytes
        self.model: Any = None
        self.module: Any = None
        self.load_error: str | None = None
        self._loaded_pid: int | None = None

    # ------------------------------------------------------------------ model
    def load(self) -> None:
        """Load the model in this process (once per worker). Never raises: failures go to /ping."""
        if self._loaded_pid == os.getpid():
            return
        self._loaded_pid = os.getpid()
        started = time.perf_counter()
        if self.model_version:
            os.environ["PREDMAINT_MODEL_VERSION"] = str(self.model_version)
        try:
            if not self.model_dir.is_dir():
                raise FileNotFoundError(f"model directory {self.model_dir} does not exist")
            self.module = load_inference_module(self.model_dir)
            self.model = self.module.model_fn(str(self.model_dir))
            self.load_error = None
            log.info("model loaded", extra={"fields": {
                "model_dir": str(self.model_dir), "model_version": getattr(self.model, "version", None),
                "load_ms": round((time.perf_counter() - started) * 1000, 1)}})
        except BaseException as exc:  # a broken artifact must not kill (and crash-loop) the worker
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self.model = None
            self.load_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            log.error("model failed to load; /ping answers 503 until the server is restarted with a good model",
                      extra={"fields": {"model_dir": str(self.model_dir), "error": self.load_error}})

    @property
    def ready(self) -> bool:
        return self.model is not None

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not part of the contract: returning without accepting closes them (403)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.load()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log.info("worker shutting down")
                if self.capture is not None:  # the records still queued for the capture thread
                    self.capture.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _respond(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                       close: bool = False) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _refuse_too_large(receive: Receive, send: Send, message: str, more_body: bool = True) -> None:
        """413: the whole answer goes out now, then up to ``DRAIN_BYTES`` of the body (or
        ``DRAIN_SECONDS``) are read and dropped before the response ends and the connection closes.

        The response stays open (``more_body``) while draining: uvicorn hands the app body chunks
        only until the response is complete, and closing with unread bytes in the socket makes the
        peer's kernel answer its writes with a reset, which a client still sending never gets past.
        """
        import asyncio

        body = _json_error(message)
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", JSON), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        drained, deadline = 0, time.monotonic() + DRAIN_SECONDS
        while more_body and drained < DRAIN_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                break
            if chunk["type"] == "http.disconnect":
                return
            drained += len(chunk.get("body", b""))
            more_body = chunk.get("more_body", False)
        await send({"type": "http.response.body", "body": b""})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if self._loaded_pid != os.getpid():  # no lifespan (e.g. an in-process test transport)
            self.load()
        if path == "/invocations":
            if method != "POST":
                await self._respond(send, 405, _json_error("use POST /invocations"))
                return
            await self._invocations(scope, receive, send)
        elif path == "/ping":
            if method not in ("GET", "HEAD"):
                await self._respond(send, 405, _json_error("use GET /ping"))
            elif self.ready:
                await self._respond(send, 200, b'{"status": "healthy"}')
            else:
                await self._respond(send, 503, _json_error(f"model not loaded: {self.load_error}"))
        elif path == "/execution-parameters" and method == "GET":
            await self._respond(send, 200, b'{"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", '
                                           b'"MaxPayloadInMB": 6}')
        else:
            await self._respond(send, 404, _json_error(f"no route {method} {path}; "
                                                       "use GET /ping or POST /invocations"))

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = accept = custom = None
        length: int | None = None
        for k, v in scope["headers"]:
            if k == b"content-type":
                content_type = v.decode("latin-1")
            elif k == b"accept":
                accept = v.decode("latin-1")
            elif k == b"x-amzn-sagemaker-custom-attributes":
                custom = v.decode("latin-1")
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    await self._respond(send, 400, _json_error("invalid Content-Length header"), close=True)
                    return
        limit = self.max_body_bytes
        if length is not None and length > limit:  # refuse before reading a byte
            await self._refuse_too_large(receive, send, f"body of {length} bytes exceeds the {limit}-byte limit")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # client went away; nothing to answer
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    more = message.get("more_body", False)
                    await self._refuse_too_large(receive, send, f"body exceeds the {limit}-byte limit", more)
                    return
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if not self.ready:
            await self._respond(send, 503, _json_error(f"model not loaded: {self.load_error}"))
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            # inline, not in a thread: the work is CPU-bound and short; a thread hop only adds latency
            status, out, ctype = self.module.handle(self.model, body, content_type, accept, custom)
        except Exception as exc:  # a bug, not bad input: say so, keep the worker alive
            log.exception("inference failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}})
            await self._respond(send, 500, _json_error("internal error while predicting; see server log"))
            return
        await self._respond(send, status, out, ctype.encode("latin-1") if isinstance(ctype, str) else ctype)
        if self.capture is not None:  # after the answer went out: capture adds no latency to it
            self.capture.record(body, content_type, out, ctype)


# ---------------------------------------------------------------------- process management
def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` now, so "port in use" is a clean ``UsageError``.

    gunicorn would otherwise retry for five seconds and then exit with its own message.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family = infos[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(infos[0][4])
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; stop the other server or pass "
                             "--port") from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"not allowed to listen on {host}:{port}; use a port above 1023") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _gunicorn_application(app: InferenceApp, options: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from . import logs

    class StructuredLogger(Logger):
        """gunicorn's logger with the project's one-line structured format."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            fmt = logs.make_formatter()
            for h in self.error_log.handlers:
                h.setFormatter(fmt)

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            self.cfg.set("logger_class", StructuredLogger)

        def load(self) -> Any:
            return app

    return Application()


def serve(model_dir: Path | str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          workers: int = DEFAULT_WORKERS, *, model_version: str | None = None, keepalive: int = 75,
          graceful_timeout: int = 15, timeout: int = 60, max_body_bytes: int = MAX_BODY_BYTES,
          sock: socket.socket | None = None, preload: tuple[str, ...] = PRELOAD_MODULES,
          capture: Any = None) -> int:
    """Serve ``model_dir`` until SIGTERM/SIGINT; returns the process exit code (0 on a clean stop).

    ``workers`` processes each load the model once; a worker that dies is replaced. ``keepalive`` is
    the idle keep-alive timeout in seconds (longer than a typical client pool's, so the server is not
    the side that drops connections), ``graceful_timeout`` how long in-flight requests may take to
    finish after SIGTERM, ``timeout`` how long a worker may be silent before it is killed and
    replaced. ``preload`` names modules imported in the master before forking (faster worker boot and
    replacement). ``capture`` (a ``capture.CaptureWriter``) records the sampled requests in
    SageMaker's data-capture format. Raises ``UsageError`` if the port is taken or ``workers`` < 1.
    """
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    # Before anything imports numpy/xgboost in this process: forked workers inherit the environment.
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)
    if sock is None:
        sock = bind_socket(host, port)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the worker will report the real problem when it loads the model
            log.warning("preload failed", extra={"fields": {"module": name, "error": str(exc)[:200]}})
    fd = sock.detach()  # gunicorn takes ownership of the descriptor
    os.set_inheritable(fd, True)
    app = InferenceApp(model_dir, model_version=model_version, max_body_bytes=max_body_bytes, capture=capture)
    options = {
        "bind": [f"fd://{fd}"],
        "workers": workers,
        # uvicorn's worker with the contract's JSON answer to unparsable requests and a bound on how long
        # a request may take to arrive (predmaint/http_protocol.py)
        "worker_class": "predmaint.http_protocol.ContractWorker",
        "keepalive": keepalive,
        "graceful_timeout": graceful_timeout,
        "timeout": timeout,
        "proc_name": "predmaint-serve",
        "loglevel": logging.getLevelName(logging.getLogger("predmaint").getEffectiveLevel()).lower(),
        "errorlog": "-",
        "accesslog": None,
        "preload_app": False,
        "control_socket_disable": True,  # gunicorn 27 would open ~/.gunicorn/gunicorn.ctl, shared by all servers
    }
    log.info("serving", extra={"fields": {"url": f"http://{host}:{port}", "model_dir": str(model_dir),
                                          "model_version": model_version, "workers": workers}})
    try:
        _gunicorn_application(app, options).run()
    except SystemExit as exc:  # gunicorn's arbiter exits via sys.exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m predmaint.server MODEL_DIR [--host H] [--port P] [--workers N]`` (no registry)."""
    import argparse

    from . import logs

    ap = argparse.ArgumentParser(prog="python -m predmaint.server",
                                 description="Serve an extracted model directory with the SageMaker hosting contract.")
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--model-version", default=None)
    args = ap.parse_args(argv)
    logs.setup()
    try:
        return serve(args.model_dir, args.host, args.port, args.workers, model_version=args.model_version)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
