"""Stopping the child processes local mode starts (servers, the demo's server, benchmark servers)."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM ``proc`` (the servers shut down gracefully on it), SIGKILL it if it has not exited
    after ``timeout`` seconds. Returns its exit code (negative: the signal that ended it); a process
    that had already exited is left as it is."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
