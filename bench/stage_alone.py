"""One stage of a local run alone, in chosen environments, beside a chosen neighbour load.

    .venv/bin/python bench/stage_alone.py --run <home>/runs/<run-id> [--stage refit|evaluate]
        [--setting NAME:CHANGES ...] [--neighbours none,loops2,same] [--rounds 1] [--timeout 600] [--json out.json]
    PREDMAINT_DATA_DIR=... .venv/bin/python bench/stage_alone.py --small [...]

The stage's command is the runner's own: the refit is ``runner.refit_command`` (the tuning's best trial,
planned by the Lambda's ``plan_refit``), the evaluation ``runner.evaluate_command`` (the run's model.tar.gz),
both in ``runner.script_environment()``, the environment the runner starts them with (its thread settings and
``threads.JOB_ENVIRONMENT``). Their outputs go to a scratch folder, so the run folder is only read.

A setting changes that environment: ``NAME:CHANGES``, where CHANGES is comma-separated ``VAR=VALUE`` (set) or
``-VAR`` (removed), e.g. ``default:-GOMP_SPINCOUNT``, ``spin1000:GOMP_SPINCOUNT=1000`` or
``passive:OMP_WAIT_POLICY=PASSIVE,-GOMP_SPINCOUNT``; ``as-run:`` (the default) changes nothing. Neighbour loads:
``none``; ``loopsN``, N busy Python loops running from before the stage starts until it ends; ``same``, a second
copy of the stage in the same setting, started with it (its own scratch output; the row is the first copy's).
In each round every neighbour load runs every setting in turn (A B C, A B C, ...), so a slow phase of a shared
machine falls on all of them rather than on one.

Per run it prints the wall seconds, the stage process's CPU seconds (user + system, all its threads, from
``wait4``), its peak RSS (``VmHWM`` read as it exits, as ``bench/hosts.py`` reads it) and the SHA-256 of what
it wrote (the refit: its model files; the evaluation: ``test_predictions.csv``), with the load and the CPU
probe (``machine.py``) at the start. A stage still running after ``--timeout`` seconds is stopped and its row
says so ("over N s"). ``--small`` first makes a small run to bench, FD001 with 2 trials (as ``bench/hosts.py
--small``), instead of ``--run``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from hosts import PEAK, run_refit_command, small_run  # noqa: E402
from machine import load  # noqa: E402

STAGES = ("refit", "evaluate")
BUSY_LOOP = "while True:\n    pass\n"


def parse_setting(text: str) -> tuple[str, dict[str, str | None]]:
    """``NAME:CHANGES`` -> (name, {variable: value, or None to remove it}); ValueError says what is wrong."""
    name, sep, changes = text.partition(":")
    if not sep or not name:
        raise ValueError(f"--setting {text!r}: expected NAME:CHANGES, e.g. spin1000:GOMP_SPINCOUNT=1000")
    out: dict[str, str | None] = {}
    for item in filter(None, (c.strip() for c in changes.split(","))):
        if item.startswith("-") and "=" not in item and len(item) > 1:
            out[item[1:]] = None
        elif "=" in item and not item.startswith("="):
            var, _, value = item.partition("=")
            out[var] = value
        else:
            raise ValueError(f"--setting {text!r}: {item!r} is neither VAR=VALUE nor -VAR")
    return name, out


def parse_neighbours(text: str) -> list[str]:
    """``none,loops2,same`` -> the neighbour loads in order; ValueError names the one not understood."""
    loads = [n.strip() for n in text.split(",") if n.strip()]
    for n in loads:
        if n not in ("none", "same") and not (n.startswith("loops") and n[5:].isdigit() and int(n[5:]) > 0):
            raise ValueError(f"--neighbours: {n!r} is not none, same or loopsN (N > 0)")
    if not loads:
        raise ValueError("--neighbours: give at least one of none, same, loopsN")
    return loads


def stage_command(run: Path, stage: str, out: Path, seed: int) -> tuple[list[str], dict[str, str]]:
    """The runner's command for ``stage`` of ``run`` writing under ``out``: (argv, environment)."""
    from predmaint import runner

    env = runner.script_environment()
    if stage == "refit":
        argv, channels, _ = run_refit_command(run, None, seed)
        return argv, {**env, **channels, "SM_MODEL_DIR": str(out / "model"), "SM_OUTPUT_DATA_DIR": str(out / "output")}
    return runner.evaluate_command(run, run / "model.tar.gz", out / "evaluation"), env


def outputs_sha256(stage: str, out: Path) -> str | None:
    """SHA-256 over what the stage wrote that must not depend on its environment: the refit's model files,
    the evaluation's test predictions; None when there are none (the stage failed or was stopped)."""
    files = (sorted(p for p in (out / "model").rglob("*-model*") if p.is_file()) if stage == "refit"
             else [p for p in [out / "evaluation" / "test_predictions.csv"] if p.is_file()])
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(out).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _start(argv: list[str], env: dict[str, str], out: Path) -> subprocess.Popen:
    out.mkdir(parents=True)
    log = (out / "log.txt").open("w")
    return subprocess.Popen([sys.executable, "-c", PEAK, str(out / "peak_kb"), *argv], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _reap(proc: subprocess.Popen, deadline: float) -> tuple[int | None, float]:
    """Wait for ``proc`` until ``deadline`` (perf_counter), killing its session then: (exit code or None
    when stopped, CPU seconds)."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.perf_counter() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, usage.ru_utime + usage.ru_stime
        time.sleep(0.2)


def with_setting(env: dict[str, str], setting: dict[str, str | None]) -> dict[str, str]:
    """``env`` changed by ``setting`` (``parse_setting``'s: a value sets the variable, None removes it)."""
    out = dict(env)
    for var, value in setting.items():
        if value is None:
            out.pop(var, None)
        else:
            out[var] = value
    return out


def run_once(run: Path, stage: str, setting: dict[str, str | None], neighbours: str, work: Path, seed: int,
             timeout: float) -> dict[str, Any]:
    """``stage`` of ``run`` once in ``setting`` beside ``neighbours``, under ``work`` (made here): its figures."""
    argv, env = stage_command(run, stage, work / "stage", seed)
    others: list[subprocess.Popen] = []
    if neighbours.startswith("loops"):
        others = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
                  for _ in range(int(neighbours[5:]))]
    at_start = load()
    started = time.perf_counter()
    try:
        proc = _start(argv, with_setting(env, setting), work / "stage")
        if neighbours == "same":
            argv2, env2 = stage_command(run, stage, work / "second", seed)
            others.append(_start(argv2, with_setting(env2, setting), work / "second"))
        code, cpu = _reap(proc, started + timeout)
        wall = time.perf_counter() - started
    finally:
        for other in others:
            if other.poll() is None:
                os.killpg(other.pid, signal.SIGKILL)
            other.wait()
    peak = work / "stage" / "peak_kb"
    tail = (work / "stage" / "log.txt").read_text().strip().splitlines()[-3:] if code not in (0, None) else []
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "exit_code": code,
            "stopped": code is None, "peak_rss_mb": round(int(peak.read_text()) / 1024, 1) if peak.is_file() else None,
            "sha256": outputs_sha256(stage, work / "stage"), "load_at_start": at_start, "tail": tail}


def table(results: list[dict[str, Any]], timeout: float) -> str:
    """The runs as a Markdown table, one row per run in the order they ran."""
    lines = ["| round | neighbours | setting | wall s | CPU s | peak RSS MB | output SHA-256 | load at start |",
             "|---:|---|---|---:|---:|---:|---|---|"]
    for r in results:
        wall = f"over {timeout:.0f}" if r["stopped"] else f"{r['wall_seconds']}"
        if r["exit_code"] not in (0, None):
            wall += f" (exit {r['exit_code']})"
        lines.append(f"| {r['round']} | {r['neighbours']} | {r['setting']} | {wall} | {r['cpu_seconds']} | "
                     f"{r['peak_rss_mb'] if r['peak_rss_mb'] is not None else '-'} | "
                     f"{(r['sha256'] or '-')[:12]} | {r['load_at_start']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="a local run folder (<home>/runs/<run-id>)")
    where.add_argument("--small", action="store_true", help="bench a new FD001 run with 2 trials")
    ap.add_argument("--stage", choices=STAGES, default="refit")
    ap.add_argument("--setting", action="append", default=None,
                    help="NAME:CHANGES (VAR=VALUE or -VAR, comma-separated); repeat for several; default as-run:")
    ap.add_argument("--neighbours", default="none", help="comma-separated: none, same, loopsN (default none)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run is stopped (default 600)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        settings = [parse_setting(t) for t in (args.setting or ["as-run:"])]
        loads = parse_neighbours(args.neighbours)
    except ValueError as exc:
        ap.error(str(exc))
    if len({name for name, _ in settings}) != len(settings):
        ap.error("--setting: two settings have the same name")
    if args.rounds < 1 or args.timeout <= 0:
        ap.error("--rounds must be at least 1 and --timeout above 0")
    scratch = Path(tempfile.mkdtemp(prefix="predmaint-stage-alone-"))
    try:
        if args.small:
            try:
                args.run = small_run(scratch / "home")
            except (subprocess.CalledProcessError, StopIteration):
                ap.error("--small: `predmaint run --profile cmapss --subset FD001 --trials 2` failed "
                         "(is PREDMAINT_DATA_DIR set?)")
        needed = ["plan.json", "tuning.json", "processed"] + (["model.tar.gz"] if args.stage == "evaluate" else [])
        missing = [n for n in needed if not (args.run / n).exists()]
        if missing:
            ap.error(f"--run {args.run}: not a finished local run folder (no {', '.join(missing)})")
        print(f"# {args.stage} of {args.run} alone · {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC · "
              f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} · {load()}", flush=True)
        for name, changes in settings:
            print(f"#   {name}: " + (", ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in changes.items())
                                     or "the runner's environment"), flush=True)
        results = []
        for rnd in range(1, args.rounds + 1):
            for neighbours in loads:
                for name, changes in settings:
                    work = scratch / f"r{rnd}-{neighbours}-{name}"
                    r = run_once(args.run, args.stage, changes, neighbours, work, args.seed, args.timeout)
                    results.append({"round": rnd, "neighbours": neighbours, "setting": name, **r})
                    shutil.rmtree(work, ignore_errors=True)
                    print(f"  round {rnd}, {neighbours}, {name}: {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU s, "
                          f"peak {r['peak_rss_mb']} MB" + (" (stopped)" if r["stopped"] else ""), flush=True)
        print(table(results, args.timeout))
        shas = {r["sha256"] for r in results if r["exit_code"] == 0}
        print(f"# outputs: {'the same bytes in every finished run' if len(shas) <= 1 else 'DIFFERENT bytes between runs'}"
              f" ({len([r for r in results if r['exit_code'] == 0])} of {len(results)} finished)")
        if args.json:
            args.json.write_text(json.dumps({"stage": args.stage, "run": str(args.run), "timeout": args.timeout,
                                             "settings": {n: c for n, c in settings}, "results": results}, indent=1))
        return 0 if all(r["exit_code"] in (0, None) for r in results) and len(shas) <= 1 else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
