"""Bounded load test of the local endpoint on loopback: throughput knee, 80% of it held, memory over 100k requests.

    python bench/load.py [--home DIR | --model-dir DIR] [--workers 2] [--hold-seconds 60] [--rss-requests 100000]

1. Starts ``predmaint serve`` on 127.0.0.1 (the champion of ``--home``, or ``--model-dir``; with neither, a
   small model is trained first on the first 25 FD001 units, as the tests do).
2. **Knee**: closed-loop steps at concurrency 1, 2, 4, ... (each ``--step-seconds``); the knee is the step
   with the highest throughput before more concurrency stops adding >5% throughput.
3. **Hold**: open-loop arrivals at 80% of the knee throughput for ``--hold-seconds``; every request is
   counted: non-200 answers, connection errors and timeouts are errors (each one is reported).
4. **Memory**: the RSS of the server (master + workers) after a warm-up, then after ``--rss-requests``
   more requests; the bound checked is growth <= ``--rss-bound-mib`` (default 50 MiB) in total.

Every loop is bounded in count AND time (a hard deadline per phase). The client is a minimal asyncio
HTTP/1.1 keep-alive client (one connection per concurrent slot): lighter than a general-purpose client,
which matters because client and server share the same cores. Output: a Markdown table on stdout
(docs/reliability.md quotes it) and the exit code 0 only if the hold had zero errors and memory stayed
within the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from predmaint.processes import terminate  # noqa: E402

COLUMNS = ["unit", "cycle", "setting_1", "setting_2", "setting_3", *[f"sensor_{i}" for i in range(1, 22)]]


# ------------------------------------------------------------------------------------------------ client
@dataclass
class Stats:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000


class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port: int, request: bytes, timeout: float):
        self.port, self.request, self.timeout = port, request, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, stats: Stats) -> None:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.writer.write(self.request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        length = int(v)
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                await self.reader.readexactly(length)
            if status == 200:
                stats.ok += 1
                stats.latencies.append(time.perf_counter() - t0)
            else:
                stats.error(f"http_{status}")
            if close:
                self.close()
        except TimeoutError:
            stats.error("timeout")
            self.close()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            stats.error("connection")
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(port: int, request: bytes, concurrency: int, seconds: float, max_requests: int,
                      timeout: float = 10.0) -> tuple[Stats, float]:
    """``concurrency`` clients back to back until ``seconds`` or ``max_requests``; (stats, elapsed)."""
    stats = Stats()
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    async def client() -> None:
        conn = Conn(port, request, timeout)
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            await conn.call(stats)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return stats, time.perf_counter() - t0


async def open_loop(port: int, request: bytes, rate: float, seconds: float, max_in_flight: int,
                    timeout: float = 10.0) -> tuple[Stats, float, int]:
    """Arrivals at ``rate``/s for ``seconds`` on up to ``max_in_flight`` connections.

    Returns (stats, elapsed, late): ``late`` counts arrivals that found every connection busy (they wait
    for one, so the offered rate is still delivered unless the server falls behind)."""
    stats = Stats()
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(max_in_flight):
        pool.put_nowait(Conn(port, request, timeout))
    total = int(rate * seconds)
    late = 0
    tasks = []

    async def one() -> None:
        conn = await pool.get()
        try:
            await conn.call(stats)
        finally:
            pool.put_nowait(conn)

    t0 = time.perf_counter()
    hard_deadline = t0 + seconds + 30  # bound: never run much past the planned window
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() > hard_deadline:
            break
        if pool.empty():
            late += 1
        tasks.append(asyncio.create_task(one()))
        if len(tasks) > 4096:  # keep the task list bounded
            done = [t for t in tasks if t.done()]
            tasks = [t for t in tasks if not t.done()]
            del done
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(1.0, hard_deadline - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().close()
    return stats, elapsed, late


# ------------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """RSS of ``pid`` and all its descendants, MiB."""
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total / 2**20


def build_small_model(data_dir: Path, out: Path) -> Path:
    """preprocess.py + train.py on the first 25 FD001 training units (what tests/local uses)."""
    small = out / "data" / "cmapss"
    small.mkdir(parents=True)
    with gzip.open(data_dir / "cmapss" / "train_FD001.txt.gz", "rt") as src, open(small / "train_FD001.txt", "w") as dst:
        dst.writelines(line for line in src if line.split() and int(line.split()[0]) <= 25)
    for name in ("test_FD001.txt.gz", "RUL_FD001.txt.gz"):
        shutil.copy(data_dir / "cmapss" / name, small / name)
    pp, model = out / "pp", out / "model"
    subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss", "--subset",
                    "FD001", "--data-dir", str(out / "data"), "--output-dir", str(pp)], check=True, capture_output=True)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(pp / "train"), "SM_CHANNEL_VALIDATION": str(pp / "validation"),
           "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(out / "train-out")}
    subprocess.run([sys.executable, str(REPO / "training_src" / "train.py"), "--algorithm", "xgboost", "--num_round",
                    "30", "--max_depth", "4", "--nthread", "1"], check=True, capture_output=True, env=env)
    return model


def request_bytes(data_dir: Path, unit: int) -> bytes:
    readings = []
    with gzip.open(data_dir / "cmapss" / "test_FD001.txt.gz", "rt") as f:
        for line in f:
            parts = line.split()
            if parts and int(parts[0]) == unit:
                readings.append({c: float(v) for c, v in zip(COLUMNS[1:], parts[1:], strict=True)})
    body = json.dumps({"instances": [{"asset_id": f"FD001-unit-{unit}", "readings": readings}]}).encode()
    return (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def wait_ping(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


# ------------------------------------------------------------------------------------------------ main
def _folder_bytes(folder: Path) -> int:
    """Bytes in the files under ``folder`` (0 if absent)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--home", help="serve the champion of this predmaint home")
    src.add_argument("--model-dir", help="serve this extracted model directory")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--unit", type=int, default=20, help="FD001 test unit sent in every request (default 20)")
    ap.add_argument("--step-seconds", type=float, default=5.0)
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--hold-seconds", type=float, default=60.0)
    ap.add_argument("--hold-fraction", type=float, default=0.8)
    ap.add_argument("--rss-requests", type=int, default=100_000)
    ap.add_argument("--rss-bound-mib", type=float, default=50.0)
    ap.add_argument("--rss-max-seconds", type=float, default=600.0, help="time bound of the memory phase")
    ap.add_argument("--capture-percent", type=int, default=None,
                    help="passed to `predmaint serve` (default: serve's own, 10); 0 turns capture off")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="predmaint-load-"))
    if args.home:
        serve_args = ["--home", args.home]
        capture_dir = Path(args.home) / "data-capture"
    else:
        model_dir = Path(args.model_dir) if args.model_dir else build_small_model(data_dir, tmp)
        serve_args = ["--model-dir", str(model_dir), "--home", str(tmp / "home")]  # capture goes under tmp
        capture_dir = tmp / "home" / "data-capture"
    if args.capture_percent is not None:
        serve_args += ["--capture-percent", str(args.capture_percent)]
    captured_before = _folder_bytes(capture_dir)
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed at the end
    server = subprocess.Popen([sys.executable, "-m", "predmaint", "serve", *serve_args, "--workers", str(args.workers),
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_ping(port, server)
        request = request_bytes(data_dir, args.unit)
        rows = [f"# Local endpoint load test (loopback, {args.workers} workers, {os.cpu_count()} cores)", "",
                f"Request: one instance, FD001 test unit {args.unit}, {len(request)} bytes. "
                f"Command: `python bench/load.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
                "## Knee (closed loop)", "", "| concurrency | req/s | p50 ms | p99 ms | errors |", "|---:|---:|---:|---:|---:|"]
        asyncio.run(closed_loop(port, request, 4, 2.0, 5000))  # warm-up (first predictions, allocator)
        steps: list[tuple[int, float, Stats]] = []
        c = 1
        while c <= args.max_concurrency:
            stats, elapsed = asyncio.run(closed_loop(port, request, c, args.step_seconds, 200_000))
            rps = stats.ok / elapsed
            steps.append((c, rps, stats))
            rows.append(f"| {c} | {rps:.0f} | {stats.pct(0.5):.1f} | {stats.pct(0.99):.1f} | {stats.n_errors} |")
            print(rows[-1], file=sys.stderr, flush=True)
            if len(steps) >= 2 and rps < steps[-2][1] * 1.05:
                break
            c *= 2
        best = max(steps, key=lambda s: s[1])
        knee_c, knee_rps = best[0], best[1]
        offered = args.hold_fraction * knee_rps
        rows += ["", f"Knee: **{knee_rps:.0f} req/s** at concurrency {knee_c} (more concurrency adds < 5%).", ""]

        hold, elapsed, late = asyncio.run(open_loop(port, request, offered, args.hold_seconds, max(2 * knee_c, 8)))
        achieved = (hold.ok + hold.n_errors) / elapsed
        rows += [f"## Hold: {args.hold_fraction:.0%} of the knee for {args.hold_seconds:.0f} s (open loop)", "",
                 "| offered req/s | delivered req/s | requests | ok | errors | p50 ms | p99 ms | max ms |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|",
                 f"| {offered:.0f} | {achieved:.0f} | {hold.ok + hold.n_errors} | {hold.ok} | "
                 f"{hold.n_errors} {hold.errors or ''} | {hold.pct(0.5):.1f} | {hold.pct(0.99):.1f} | "
                 f"{max(hold.latencies) * 1000 if hold.latencies else float('nan'):.1f} |", "",
                 f"{late} of the arrivals found all {max(2 * knee_c, 8)} connections busy and queued client-side.", ""]
        print(rows[-4], file=sys.stderr, flush=True)

        rss_before = rss_mib(server.pid)
        mem, mem_elapsed = asyncio.run(closed_loop(port, request, knee_c, args.rss_max_seconds, args.rss_requests))
        rss_after = rss_mib(server.pid)
        growth = rss_after - rss_before
        sent = mem.ok + mem.n_errors
        rows += [f"## Memory over {sent:,} requests", "",
                 "| RSS before (MiB) | RSS after (MiB) | growth (MiB) | bound (MiB) | requests | errors | seconds |",
                 "|---:|---:|---:|---:|---:|---:|---:|",
                 f"| {rss_before:.1f} | {rss_after:.1f} | {growth:+.1f} | {args.rss_bound_mib:.0f} | {sent:,} | "
                 f"{mem.n_errors} | {mem_elapsed:.0f} |", "",
                 "RSS is the sum over the gunicorn master and its workers (psutil), measured after the knee and hold "
                 "phases had warmed every worker up."]
        captured = _folder_bytes(capture_dir) - captured_before
        rows += ["", f"Capture: `--capture-percent {args.capture_percent if args.capture_percent is not None else 'default'}`"
                     f", {captured / 2**20:.1f} MiB written under {capture_dir} during the test."]
        ok = hold.n_errors == 0 and growth <= args.rss_bound_mib and sent >= args.rss_requests
        rows += ["", f"Result: {'PASS' if ok else 'FAIL'} (hold errors {hold.n_errors}, RSS growth {growth:+.1f} MiB "
                     f"<= {args.rss_bound_mib:.0f} MiB, {sent:,}/{args.rss_requests:,} requests)"]
        print("\n".join(rows))
        return 0 if ok else 1
    finally:
        terminate(server, 30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
