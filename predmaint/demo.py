"""The README's main command (``make demo``): the whole system end to end on this machine.

1. ``cdk synth`` of every stack, offline (the CDK CLI pinned in package.json);
2. ``predmaint run`` on C-MAPSS FD001: prepare, preprocess, tuning, refit, evaluate, promotion;
3. ``predmaint serve`` in the background (the SageMaker hosting contract on loopback);
4. ``predmaint invoke`` for a few real test engines, true RUL beside the prediction: their last 30
   readings alone, then their whole histories starting life summaries, then the last 30 with the summaries;
5. a clean shutdown (SIGTERM, graceful).

Each step is the command a user would type; the demo only strings them together. Environment:
``PREDMAINT_DATA_DIR`` (datasets; downloaded with ``predmaint data`` when absent),
``PREDMAINT_HOME`` (default ./.predmaint), ``PREDMAINT_DEMO_TRIALS`` (default 20).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def _cli(*args: str, home: Path) -> list[str]:
    return [str(BIN / "predmaint"), "--home", str(home), *args]


def main() -> int:
    started = time.time()
    home = Path(os.environ.get("PREDMAINT_HOME", REPO / ".predmaint")).resolve()
    data_dir = Path(os.environ.get("PREDMAINT_DATA_DIR", REPO / "data")).resolve()
    trials = os.environ.get("PREDMAINT_DEMO_TRIALS", "20")
    # the Node.js package.json pins runs the CDK CLI (npm ci puts it in node_modules/.bin)
    path = os.pathsep.join([str(REPO / "node_modules" / ".bin"), os.environ.get("PATH", "")])
    env = {**os.environ, "PREDMAINT_DATA_DIR": str(data_dir), "PATH": path, "CDK_DISABLE_CLI_TELEMETRY": "true"}

    if not (data_dir / "cmapss").is_dir():
        t = _step(f"0. datasets missing in {data_dir}: predmaint data")
        if subprocess.run(_cli("data", home=home), env=env).returncode != 0:
            return 2

    t = _step("1. cdk synth (all stacks, offline)")
    out = REPO / "cdk.out"
    proc = subprocess.run(["npx", "cdk", "synth", "--no-notices", "-q", "--output", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    templates = sorted(p.name for p in out.glob("*.template.json"))
    print(f"synthesized {len(templates)} stacks in {time.time() - t:.0f}s: {', '.join(templates)}")

    t = _step(f"2. predmaint run --profile cmapss --subset FD001 --trials {trials}")
    run = subprocess.run(_cli("run", "--profile", "cmapss", "--subset", "FD001", "--trials", trials, home=home),
                         env=env, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(run.stdout)
    if run.returncode != 0:
        return run.returncode
    evaluation = run.stdout.strip().splitlines()[-1]

    t = _step("3. predmaint serve (background)")
    port = _free_port()
    server = subprocess.Popen(_cli("serve", "--port", str(port), home=home), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                print("server did not become healthy", file=sys.stderr)
                return 1
            time.sleep(0.3)
        print(f"{url}/ping -> 200 after {time.time() - t:.1f}s")

        units = ["--test-unit", "1", "--test-unit", "20", "--test-unit", "31", "--test-unit", "42",
                 "--test-unit", "81"]
        life = Path(home) / "life.json"
        life.unlink(missing_ok=True)
        for title, extra in (
                ("4a. predmaint invoke --last 30: real FD001 test engines, each sending its last 30 readings "
                 "(true RUL from RUL_FD001)", ["--last", "30"]),
                (f"4b. the same engines' whole histories, starting each one's life summary (stored in {life})",
                 ["--life-file", str(life)]),
                ("4c. later: the last 30 readings plus the stored summary answer as the whole history does",
                 ["--last", "30", "--life-file", str(life)])):
            _step(title)
            inv = subprocess.run(_cli("invoke", "--url", url, *units, *extra, home=home), env=env)
            if inv.returncode != 0:
                return inv.returncode

        # the stateful path: the service keeps each asset's state, so callers send new readings only
        shutil.rmtree(home / "stream", ignore_errors=True)  # the demo's stream starts empty each time
        test_file = data_dir / "cmapss" / "test_FD001.txt.gz"
        _step(f"4d. predmaint stream: every FD001 test engine as a stream, 10 readings per record, through "
              f"the server; each asset's state (life summary, last readings, answer) kept under {home / 'stream'}")
        # batches of 100 records, one per engine: each engine gets an answer every 10 readings (the page's sparklines)
        inv = subprocess.run(_cli("stream", "--input", str(test_file), "--chunk", "10", "--batch", "100", "--url", url,
                                  home=home),
                             env=env)
        if inv.returncode != 0:
            return inv.returncode
        _step("4e. predmaint fleet: each asset's latest answer (first 6 assets)")
        fleet = subprocess.run(_cli("fleet", home=home), env=env, stdout=subprocess.PIPE, text=True)
        sys.stdout.write("".join(fleet.stdout.splitlines(keepends=True)[:7]))
        if fleet.returncode != 0:
            return fleet.returncode
        page = home / "fleet.html"
        _step("4f. predmaint fleet --html: the fleet page (assets ranked by risk, recent answers, live quality)")
        shown = subprocess.run(_cli("fleet", "--html", str(page), home=home), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        sys.stdout.write(shown.stderr)  # "fleet page: N assets in PATH" (or the error)
        if shown.returncode != 0:
            return shown.returncode
    finally:
        _step("5. shutdown (SIGTERM)")
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
            print(f"server exited with code {code}")
        except subprocess.TimeoutExpired:
            server.kill()
            print("server did not stop in 30 s; killed", file=sys.stderr)
    print(f"\ndemo finished in {time.time() - started:.0f}s · evaluation report: {evaluation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
