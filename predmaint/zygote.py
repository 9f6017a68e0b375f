"""A pre-forked script server for local mode: training_src scripts without a fresh interpreter each.

Starting Python and importing pandas, xgboost, scikit-learn and pyarrow costs ~2 CPU-seconds, as much
as a whole tuning trial on FD001. The runner therefore starts ONE server process per run (``Zygote``)
that imports those once; every tuning trial is then a ``fork()`` of it that runs the script exactly as
``python training_src/<script>.py ARGS`` would (the refit and the evaluation, one long process each, are
fresh interpreters holding only their own imports, as on SageMaker: ``predmaint/runner.py``): ``sys.argv`` set, the
script executed as ``__main__`` (``runpy``), its own environment (``SM_*`` variables,
``OMP_NUM_THREADS``), its own stdout/stderr pipes to the runner, its exit code reported back. So
train.py stays the SageMaker entry point and each trial is still an isolated process: the runner
reads its objective lines as they are printed, prunes it, and kills it by pid (SIGKILL) on Ctrl-C.

Protocol (one ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair, JSON messages, one request at a time):

- ``{"op": "spawn", "script": ..., "argv": [...], "env": {...}, "cwd": ...}`` with the write ends of
  the child's stdout and stderr pipes attached (``SCM_RIGHTS``) -> ``{"pid": N}``;
- ``{"op": "poll", "pid": N}`` -> ``{"returncode": None | int}`` (``waitpid(WNOHANG)``; negative =
  killed by that signal, as with ``subprocess``). The server reaps a child only when asked, so a pid
  the runner may still kill is never reused.

When the runner closes the socket (end of run, Ctrl-C, or the runner was SIGKILLed), the server
SIGKILLs its remaining children and exits. It ignores SIGINT itself: a terminal Ctrl-C reaches the
runner and the trials, and the runner shuts the server down.

Linux only (``SOCK_SEQPACKET``, ``fork``); elsewhere, or with ``PREDMAINT_ZYGOTE=0``, the runner
starts each script as a plain subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

#: imported once by the server; what a tuning trial (train.py) needs (missing ones are skipped). Every fork
#: holds the server's pages, so nothing only another stage needs (evaluate.py's matplotlib) is preloaded
PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "xgboost", "sklearn.linear_model", "sklearn.metrics",
           "sklearn.model_selection", "training_src.features", "training_src.train")
_MAX_MSG = 1 << 20


class ZygoteError(RuntimeError):
    """The server is gone or refused a request."""


def available() -> bool:
    """Whether this platform supports the server (and it is not switched off)."""
    return (sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")
            and os.environ.get("PREDMAINT_ZYGOTE", "1") != "0")


# ------------------------------------------------------------------------------------------------
# Runner side
# ------------------------------------------------------------------------------------------------
class ForkedProcess:
    """A script run by the server; the subset of ``subprocess.Popen`` the runner uses."""

    def __init__(self, zygote: Zygote, pid: int, stdout: IO[str], stderr: IO[str]):
        self.zygote, self.pid, self.stdout, self.stderr = zygote, pid, stdout, stderr
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                self.returncode = self.zygote._call({"op": "poll", "pid": self.pid})["returncode"]
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        with self._lock:  # not after the server reaped it: the pid could belong to someone else by then
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def communicate(self) -> tuple[str, str]:
        """All of stdout and stderr (read concurrently, so neither pipe can fill up), then wait."""
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.append(self.stderr.read()), daemon=True)
        reader.start()
        out = self.stdout.read()
        reader.join()
        self.wait()
        self.stdout.close()
        self.stderr.close()
        return out, "".join(err)


class Zygote:
    """The runner's handle on one server process (thread-safe; requests are serialised)."""

    def __init__(self, src: Path, tag: str, env: dict[str, str] | None = None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        try:
            # the tag (the run folder) is in the command line so the server is findable (pgrep -f)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "predmaint.zygote", "--fd", str(theirs.fileno()), "--src", str(src),
                 "--tag", tag], pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parents[1]))
        finally:
            theirs.close()
        self.sock = ours

    def _call(self, request: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        with self._lock:
            try:
                socket.send_fds(self.sock, [json.dumps(request).encode()], list(fds))
                reply = self.sock.recv(_MAX_MSG)
            except OSError as exc:
                raise ZygoteError(f"script server: {exc}") from exc
        if not reply:
            raise ZygoteError("script server exited")
        doc = json.loads(reply)
        if "error" in doc:
            raise ZygoteError(f"script server: {doc['error']}")
        return doc

    def spawn(self, script: Path, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> ForkedProcess:
        """Start ``script argv`` (as ``python script argv`` would run it) in a fork of the server."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            reply = self._call({"op": "spawn", "script": str(script), "argv": [str(a) for a in argv],
                                "env": dict(env), "cwd": str(cwd) if cwd else None}, (out_w, err_w))
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return ForkedProcess(self, reply["pid"], open(out_r, encoding="utf-8", errors="replace"),
                             open(err_r, encoding="utf-8", errors="replace"))

    def close(self, timeout: float = 10.0) -> None:
        """Shut the server down; it SIGKILLs any child still running."""
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------------------------
# Server side
# ------------------------------------------------------------------------------------------------
def _child(req: dict[str, Any], fds: list[int], sock: socket.socket) -> None:
    """In the forked child: become ``python <script> <argv>``; never returns."""
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        if req.get("cwd"):
            os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        import runpy

        sys.argv = [req["script"], *req["argv"]]
        try:
            runpy.run_path(req["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # report anything, like an interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(fd: int, src: str) -> int:
    """The server loop: preload, then fork a child per ``spawn`` until the runner hangs up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sys.path.insert(0, src)  # as for `python training_src/x.py` (whose imports name the training_src package)
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    import gc

    gc.collect()
    gc.freeze()  # the preloaded heap stays shared with the children (no copy-on-write by the GC)
    children: set[int] = set()
    try:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(sock, _MAX_MSG, 8)
            except OSError:
                break
            if not msg:
                break
            try:
                req = json.loads(msg)
                if req["op"] == "spawn":
                    pid = os.fork()
                    if pid == 0:
                        _child(req, fds, sock)
                    children.add(pid)
                    reply: dict[str, Any] = {"pid": pid}
                elif req["op"] == "poll":
                    pid = int(req["pid"])
                    if pid not in children:
                        raise ValueError(f"not a child: {pid}")
                    done, status = os.waitpid(pid, os.WNOHANG)
                    rc = None
                    if done:
                        children.discard(pid)
                        rc = os.waitstatus_to_exitcode(status)
                    reply = {"returncode": rc}
                else:
                    raise ValueError(f"unknown op {req['op']!r}")
            except Exception as exc:  # answer, do not die
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for f in fds:
                    with contextlib.suppress(OSError):
                        os.close(f)
            sock.send(json.dumps(reply).encode())
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="predmaint script server (started by the runner)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--tag", default="")
    a = ap.parse_args(argv)
    return serve(a.fd, a.src)


if __name__ == "__main__":
    sys.exit(main())
