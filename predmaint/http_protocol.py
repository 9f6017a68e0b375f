"""The local server's HTTP/1.1 connection handling: uvicorn's httptools protocol with the contract's
answers where uvicorn answers on its own, and a bound on how long a request may take to arrive.

- A request the HTTP parser refuses (a bad chunk size, ``Content-Length: abc``, Content-Length together
  with Transfer-Encoding, control bytes in a header, ...) never reaches the application; uvicorn answers
  it with a plain-text 400. Here it gets the contract's JSON error, ``400 {"error": "request: ..."}``,
  and the connection closes, as uvicorn's does.
- uvicorn bounds the idle time between requests on a kept-alive connection (``timeout_keep_alive``) but
  not the time a request takes to arrive: a client that sends half a body (or half its headers), or
  connects and sends nothing, holds the socket for as long as it likes. Here each request must arrive
  whole within ``PREDMAINT_REQUEST_TIMEOUT_S`` seconds (default 30, from its first byte, or from the
  connection for the first request); after that a request not yet answered gets ``408 {"error": ...}``
  and the connection closes. The application's ``receive`` then reports a disconnect, so it stops too.

``ContractWorker`` is the gunicorn worker class that uses this protocol (``server.serve``). Its workers
also die with the master: if the master is SIGKILLed (no chance to stop them), the kernel sends each
worker SIGTERM (``PR_SET_PDEATHSIG``), so none keeps the port and answers as an orphan.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from asyncio import TimerHandle
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

DEFAULT_REQUEST_TIMEOUT_S = 30.0
BAD_REQUEST = "request: not valid HTTP/1.1 (request line, header, Content-Length or chunked framing)"


def request_timeout() -> float:
    """Seconds a request may take to arrive (``PREDMAINT_REQUEST_TIMEOUT_S``, default 30, at least 0.1)."""
    try:
        value = float(os.environ.get("PREDMAINT_REQUEST_TIMEOUT_S", DEFAULT_REQUEST_TIMEOUT_S))
    except ValueError:
        value = DEFAULT_REQUEST_TIMEOUT_S
    return max(0.1, value) if value == value else DEFAULT_REQUEST_TIMEOUT_S  # NaN -> default


def _raw_json_response(status_line: bytes, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return b"".join([status_line, b"content-type: application/json\r\n",
                     b"content-length: " + str(len(body)).encode() + b"\r\n", b"connection: close\r\n\r\n", body])


class ContractHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol answering parse errors with JSON and bounding a request's arrival."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout()
        self._arrival: TimerHandle | None = None

    # the arrival deadline: armed when a connection opens and when a request begins, cleared once the
    # request has arrived whole
    def _arm(self) -> None:
        self._disarm()
        self._arrival = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._arrival is not None:
            self._arrival.cancel()
            self._arrival = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # between requests, uvicorn's keep-alive timeout applies

    def _too_slow(self) -> None:
        self._arrival = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_raw_json_response(
                b"HTTP/1.1 408 Request Timeout\r\n",
                f"request: not received whole within {self.request_timeout:g} s; the connection is closed"))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused, as the contract's JSON error."""
        self._disarm()
        self.transport.write(_raw_json_response(b"HTTP/1.1 400 Bad Request\r\n", BAD_REQUEST))
        self.transport.close()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux ``prctl``); if the
    parent ``parent`` is already gone, send it now. Returns whether the request was made (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the master died between the fork and the prctl
        os.kill(os.getpid(), sig)
    return True


class ContractWorker(UvicornWorker):
    """gunicorn's uvicorn worker with ``ContractHttpProtocol``, which dies with its master."""

    def init_process(self) -> None:
        die_with_parent(self.ppid)  # SIGTERM: uvicorn's graceful stop (it installs its handler later)
        super().init_process()

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": ContractHttpProtocol}
