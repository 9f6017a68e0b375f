"""The ``predmaint`` command line: the whole local lifecycle plus the AWS entry point.

    predmaint data                      download and verify the public datasets
    predmaint run --profile cmapss --subset FD001 [--trials N] [--seed S]
    predmaint serve [--port 8080] [--model VERSION]
    predmaint invoke --test-unit 1 --test-unit 2 [--url URL | --endpoint-name NAME]
    predmaint score --input FLEET --output SCORES.csv [--model VERSION]
    predmaint models
    predmaint report RUN
    predmaint stream --input FLEET|RECORDS.jsonl|- [--chunk N]; predmaint fleet [--json]
    predmaint outcome add --asset A --event failure|maintenance --time T   (or --file F)
    predmaint quality [--json]
    predmaint profile init DATAFILE [--output PROFILE.json]
    predmaint profile check PROFILE DATAFILE
    predmaint start-training --state-machine ARN --dataset NAME --profile cmapss|PROFILE.json

``--profile`` is a shipped profile's name (``cmapss``) or the path of your own profile file (a path
has a folder part or ends in ``.json``); a file is used as written, whatever its ``name``.

Exit codes: 0 success, 2 bad usage or input, 1 failure, 130 interrupted. Errors are one line on stderr,
never a traceback (set PREDMAINT_LOG_LEVEL=DEBUG to see one). Log lines (stderr) are shown with
``--verbose`` (``serve`` logs by default); ``--log-level`` or PREDMAINT_LOG_LEVEL choose a level. Heavy
modules (pandas, xgboost, matplotlib, boto3) are imported only by the commands that need them, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import lifestore
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    PipelineError,
    UsageError,
)
from .parser import build_parser

log = logging.getLogger("predmaint.cli")


def default_home() -> Path:
    return Path(os.environ.get("PREDMAINT_HOME") or ".predmaint")


def default_data_dir() -> Path:
    return Path(os.environ.get("PREDMAINT_DATA_DIR") or "data")


# ---------------------------------------------------------------------- commands
def cmd_data(args: argparse.Namespace) -> int:
    try:
        from . import data
    except ImportError as exc:
        raise PipelineError(f"predmaint.data is not available: {exc}") from None
    return int(data.main(args) or 0)


def cmd_run(args: argparse.Namespace) -> int:
    from . import runner

    result = runner.run_pipeline(profile=args.profile, subset=args.subset, data_dir=args.data_dir, home=args.home,
                                 trials=args.trials, parallel=args.parallel, seed=args.seed, run_id=args.run_id,
                                 progress=not args.quiet, fleet_data=args.fleet_data)
    sys.stdout.flush()
    # The contract: the evaluation report's path is the LAST line of output (scripts read it).
    print(result.evaluation_path, flush=True)
    return EXIT_OK


def _resolve_model_dir(args: argparse.Namespace) -> tuple[Path, str | None]:
    """Which model ``serve`` should serve: --model-dir, --model VERSION or the champion."""
    from . import registry as reg

    if args.model_dir is not None:
        path = Path(args.model_dir)
        if path.is_file():  # a model.tar.gz: extract it next to the registry cache
            import hashlib
            import shutil
            import tempfile

            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            target = Path(args.home) / "registry" / "cache" / f"file-{digest}"
            if not target.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(dir=target.parent))
                try:
                    reg.extract_model_archive(path, tmp)
                    os.replace(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            return target, None
        reg.check_model_dir(path)
        return path, None
    registry = reg.Registry(args.home)
    package = registry.resolve(args.model)
    return registry.model_dir(package.version), str(package.version)


def cmd_serve(args: argparse.Namespace) -> int:
    from . import server

    model_dir, version = _resolve_model_dir(args)
    sock = server.bind_socket(args.host, args.port)  # fail fast (exit 2) if the port is taken
    port = sock.getsockname()[1]
    what = f"model v{version}" if version else f"model {model_dir}"
    writer = _capture_writer(args)
    print(f"serving {what} on http://{args.host}:{port} with {args.workers} worker(s); Ctrl-C or SIGTERM to stop",
          file=sys.stderr, flush=True)
    code = server.serve(model_dir, args.host, port, args.workers, model_version=version, sock=sock,
                        capture=writer)
    code = EXIT_OK if code in (0, None) else EXIT_FAILURE
    # The workers are gone and the socket is closed: skip interpreter teardown, which takes ~2 s in a
    # process that imported xgboost/pandas (a slow SIGTERM makes orchestrators escalate to SIGKILL).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _capture_writer(args: argparse.Namespace) -> Any:
    """The serve command's capture writer: ``capture.LOCAL_PERCENT`` of the requests unless --capture-percent,
    the folder bounded by --capture-max-mb (``capture.LOCAL_MAX_MB``)."""
    from . import capture

    percent = args.capture_percent if args.capture_percent is not None else capture.LOCAL_PERCENT
    if percent == 0:
        return None
    root = capture.capture_root(args.home)
    max_mb = getattr(args, "capture_max_mb", None) or capture.LOCAL_MAX_MB
    print(f"capturing {percent}% of requests under {root} (SageMaker's data-capture format, at most {max_mb} MB)",
          file=sys.stderr)
    return capture.CaptureWriter(root, percent, max_bytes=max_mb * 2**20)


def cmd_drift(args: argparse.Namespace) -> int:
    from training_src import drift

    from . import capture, deployment

    deployed = deployment.load().drift  # the scheduled drift job's thresholds, unless given here
    psi_threshold = deployed.psi_threshold if args.psi_threshold is None else args.psi_threshold
    alpha = deployed.alpha if args.alpha is None else args.alpha
    min_samples = drift.MIN_SAMPLES if args.min_samples is None else args.min_samples
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must lie strictly between 0 and 1, got {alpha:g}")
    if not psi_threshold >= 0:
        raise UsageError(f"--psi-threshold must be a number >= 0, got {psi_threshold:g}")
    model_dir, version = _resolve_model_dir(args)
    source = Path(args.capture) if args.capture else capture.capture_root(args.home)
    try:
        spec, baseline = drift.load_model_files(model_dir)
        settings = drift.Settings(psi_threshold, alpha, min_samples)
        since = None
        if args.window_hours:
            from datetime import UTC, datetime, timedelta

            since = datetime.now(UTC) - timedelta(hours=args.window_hours)
        result = drift.check(source, spec, baseline, settings, since)
    except drift.DriftError as exc:
        raise UsageError(str(exc)) from None
    result["model_version"] = version
    if args.output:
        try:
            drift.write_result(Path(args.output), result)
        except drift.DriftError as exc:  # read-only, full disk, a parent that is a file: nothing left behind
            raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        print(f"model {'v' + version if version else model_dir}, capture {source}")
        for line in drift.summary_lines(result):
            print(line)
    return EXIT_OK


def _test_unit_instances(args: argparse.Namespace) -> tuple[list[Any], dict[str, float]]:
    """Readings of the requested test units of the bundled dataset, and each unit's true RUL."""
    from training_src import dataio
    from training_src.profiles import ProfileError, load_profile

    from .client import Instance

    try:
        profile = load_profile(args.profile or "cmapss", args.subset)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    if not profile.is_regression or not profile.file("test") or not profile.file("test_rul"):
        raise UsageError(f"--test-unit needs a run-to-failure profile with a test file and true RUL; "
                         f"{profile.name} has none (use --file)")
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"data directory {data_dir} does not exist; run `predmaint data` or set "
                         "PREDMAINT_DATA_DIR (or --data-dir)")
    try:
        test = dataio.read_table(dataio.resolve_file(data_dir, profile.file("test")), profile, allow_label=False)
        true_rul = dataio.read_rul_file(dataio.resolve_file(data_dir, profile.file("test_rul")))
    except dataio.DataError as exc:
        raise UsageError(str(exc)) from None
    ids = test[profile.id_column].to_numpy()
    known = sorted({int(u) for u in ids})
    columns = [c for c in profile.input_columns if c in test.columns]
    instances, truth = [], {}
    for unit in args.test_unit:
        rows = test[ids == unit]
        if rows.empty:
            raise UsageError(f"test unit {unit} is not in {profile.file('test')} (units {known[0]}-{known[-1]})")
        asset = f"{profile.subset or profile.name}-unit-{unit}"
        readings = [{c: float(v) for c, v in zip(columns, row, strict=True)}
                    for row in rows[columns].itertuples(index=False, name=None)]
        instances.append(Instance(asset, readings=readings))
        if 1 <= unit <= len(true_rul):
            truth[asset] = float(true_rul[unit - 1])
    return instances, truth


def _file_instances(path: Path, profile: Any = None) -> list[Any]:
    """Instances from a JSON request/instance/readings file or a CSV of readings.

    A CSV is grouped into assets by the profile's id column (``--profile``; without one: ``asset_id``,
    ``unit`` or ``id``), or, for a labelled-rows profile, sent row by row; with a profile, header names
    are renamed as its ``format.rename`` says (a raw export works as is). Values must be numbers,
    except the profile's categorical columns; a bad cell is reported with the file, row and column.
    """
    import csv

    from .client import Instance, instances_from_rows

    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise UsageError(f"{path}: no data rows (a header line and at least one reading are needed)")
        if profile is not None and profile.rename:  # the fleet's own header names, as in its raw files
            rows = [{profile.rename.get(k, k) if k is not None else k: v for k, v in r.items()} for r in rows]
        header = list(rows[0])
        if profile is not None and profile.id_column in header:
            id_col = profile.id_column
        else:
            id_col = next((c for c in ("asset_id", "unit", "id") if c in header), None)
        categorical = tuple(profile.categorical_columns) if profile is not None else ()
        try:
            return instances_from_rows(rows, id_col, default_id=path.stem, categorical=categorical,
                                       per_row=profile is not None and not profile.is_regression,
                                       columns=profile.input_columns if profile is not None else None)
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}") from None
    try:
        doc = lifestore.loads_strict(text)  # NaN/Infinity would reach the endpoint and be refused there
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and "instances" in doc and isinstance(doc["instances"], list):
        items = doc["instances"]
        if "horizon" in doc:  # the request's horizon applies to every instance without its own
            items = [{"horizon": doc["horizon"], **it} if isinstance(it, dict) else it for it in items]
    elif isinstance(doc, dict):
        items = [doc]
    elif isinstance(doc, list) and doc and all(isinstance(r, dict) and "readings" not in r for r in doc):
        items = [{"asset_id": path.stem, "readings": doc}]  # a bare list of readings: one asset
    elif isinstance(doc, list):
        items = doc
    else:
        raise UsageError(f"{path}: expected a request object, an instance, or a list of readings")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UsageError(f"{path}: instance {i} is not an object")
        asset = item.get("asset_id", f"{path.stem}-{i}")
        if "readings" in item:
            out.append(Instance(asset, readings=item["readings"], horizon=item.get("horizon")))
        else:
            out.append(Instance(asset, row={k: v for k, v in item.items() if k != "asset_id"}))
    return out


def _profile_option(args: argparse.Namespace) -> Any:
    """The validated ``--profile`` of a command (None if not given); ``UsageError`` naming the key."""
    from training_src.profiles import ProfileError, load_profile

    if not getattr(args, "profile", None):
        return None
    try:
        return load_profile(args.profile, getattr(args, "subset", None))
    except ProfileError as exc:
        raise UsageError(str(exc)) from None


def last_readings(instances: list[Any], n: int) -> list[Any]:
    """Each asset's ``n`` most recent readings (by the order they were given, which is time order for
    the bundled test files and CSVs); row instances (classification) are passed unchanged."""
    from dataclasses import replace

    return [replace(i, readings=i.readings[-n:]) if i.readings is not None else i for i in instances]


def _warn_mid_life(instances: list[Any], store: dict[str, Any], last: int | None) -> None:
    """``--last N`` for an asset with no stored summary starts one from a window, mid-life: say so."""
    if not last:
        return
    fresh = [str(i.asset_id) for i in instances if i.readings is not None and str(i.asset_id) not in store]
    if fresh:
        print(f"warning: no stored life summary for {', '.join(fresh[:5])}{' ...' if len(fresh) > 5 else ''}: "
              f"the one started now begins mid-life (the last {last} readings), so it misses the earlier ones; "
              "send the whole history once without --last to start it at the first reading", file=sys.stderr)


def cmd_invoke(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .client import EndpointError, InvocationRequest, LocalClient, SageMakerClient

    if not args.file and not args.test_unit:
        raise UsageError("give the input: --file PATH (JSON or CSV of readings) or --test-unit N (repeatable)")
    instances, truth = [], {}
    if args.test_unit:
        instances, truth = _test_unit_instances(args)
    if args.file:
        instances += _file_instances(Path(args.file), _profile_option(args))
    if args.last:
        instances = last_readings(instances, args.last)
    store = None
    if args.life_file:  # each asset's stored summary, or {} to start one with the readings sent
        store = lifestore.read(Path(args.life_file))
        _warn_mid_life(instances, store, args.last)
        instances = [replace(i, life=store.get(str(i.asset_id), {})) if i.readings is not None else i
                     for i in instances]
    request = InvocationRequest(instances, explain=args.explain, horizon=args.horizon)
    if args.endpoint_name:
        client: Any = SageMakerClient(args.endpoint_name, region=args.region, timeout=args.timeout)
        target = f"endpoint {args.endpoint_name}"
    else:
        try:
            client = LocalClient(args.url, timeout=args.timeout)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        target = args.url
    try:
        response = client.invoke(request)
    except EndpointError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            raise UsageError(f"{target} refused the request: {exc}") from None
        hint = "; is `predmaint serve` running?" if exc.status is None and not args.endpoint_name else ""
        raise PipelineError(f"{target}: {exc}{hint}") from None
    if store is not None:
        stored, dropped = lifestore.update(Path(args.life_file), store, response.predictions)
        for asset in dropped:
            print(f"warning: the stored life summary of {asset} was made by another model; it is dropped from "
                  f"{args.life_file} (send the asset's whole history to start one for this model)", file=sys.stderr)
        print(f"life summaries of {stored} asset(s) stored in {args.life_file}", file=sys.stderr)
    if args.json:
        print(json.dumps({"predictions": [p.__dict__ | {"contributions": [c.__dict__ for c in p.contributions]}
                                          for p in response.predictions],
                          "model_version": response.model_version}, indent=1, default=str))
        return EXIT_OK
    print(f"model {response.model_version} · {len(response.predictions)} prediction(s) · "
          f"{response.latency_ms:.1f} ms")
    width = max([len(str(p.asset_id)) for p in response.predictions] + [5])
    for p in response.predictions:
        if p.rul is not None:
            line = f"  {p.asset_id!s:<{width}}  predicted RUL {p.rul:7.1f} cycles"
            if p.rul_lower is not None and p.rul_upper is not None:
                level = f"{100 * p.interval_level:.0f} %" if p.interval_level is not None else "interval"
                line += f"   {level} [{p.rul_lower:6.1f}, {p.rul_upper:6.1f}]"
            if str(p.asset_id) in truth:
                t = truth[str(p.asset_id)]
                line += f"   true RUL {t:5.0f}   error {p.rul - t:+6.1f}"
            if p.horizon is not None and p.failure_probability is not None:
                line += f"   P(failure within {p.horizon:g}) {p.failure_probability:.3f}"
        else:
            line = (f"  {p.asset_id!s:<{width}}  failure probability {p.failure_probability:.3f}  "
                    f"-> {'FAILURE' if p.failure else 'ok'}")
        print(line)
        if p.warning:
            print(f"      warning: {p.warning}")
        for c in p.contributions:
            print(f"      {c.feature:<24} value {c.value:>10.4g}  contribution {c.contribution:+.3f}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from .registry import Registry

    registry = Registry(args.home)
    packages = registry.list_packages()
    if args.json:
        champ = registry.champion()
        docs = [p.to_dict() | {"champion": bool(champ and champ.version == p.version)} for p in packages]
        print(json.dumps(docs, indent=1, default=str))
        return EXIT_OK
    if not packages:
        print(f"no models registered yet in {registry.root} (run `predmaint run`)")
        return EXIT_OK
    champion = registry.champion()
    rows = [("VERSION", "STATUS", "CHAMPION", "METRIC", "CREATED", "RUN", "REASON")]
    for p in packages:
        name = p.primary_metric or ("rmse" if "rmse" in p.metrics else "pr_auc")
        value = p.metrics.get(name)
        rows.append((str(p.version), p.status, "*" if champion and champion.version == p.version else "",
                     f"{name}={value:.4g}" if value is not None else "-", p.created_at, p.run_id, p.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1])
    return EXIT_OK


def _run_dir(home: Path, run: str) -> Path:
    candidate = Path(run)
    if candidate.is_dir() and ((candidate / "evaluation.json").exists() or (candidate / "decision.json").exists()):
        return candidate
    run_dir = Path(home) / "runs" / run
    if not run_dir.is_dir():
        runs = sorted(p.name for p in (Path(home) / "runs").glob("*") if p.is_dir()) \
            if (Path(home) / "runs").is_dir() else []
        hint = f"; known runs: {', '.join(runs[-5:])}" if runs else "; no runs yet (run `predmaint run`)"
        raise UsageError(f"run {run!r} not found under {Path(home) / 'runs'}{hint}")
    return run_dir


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    run_dir = _run_dir(args.home, args.run)
    path = run_dir / "report.html"
    if args.force or not path.exists():
        path = report.render(run_dir)
    for line in report.summary_lines(run_dir):
        print(line)
    print(path)
    return EXIT_OK


def _aws_error(exc: Exception) -> Exception:
    """A botocore exception as the CLI's error: missing credentials are the user's to fix (exit 2,
    with how); anything else AWS said is a failure (exit 1)."""
    from . import aws

    if aws.is_credentials_error(exc):
        return UsageError(f"AWS: {exc}; {aws.CREDENTIALS_HINT}")
    return PipelineError(f"AWS: {exc}")


@contextmanager
def _aws_errors(*failures: type[Exception]) -> Iterator[None]:
    """The CLI's one mapping of an AWS call's errors: ``failures`` (the project's own AWS errors, which
    say what is wrong) exit 1 with their message; botocore's exceptions (no credentials, expired token,
    validation, endpoint unreachable) go through ``_aws_error``; anything else propagates."""
    try:
        yield
    except failures as exc:
        raise PipelineError(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):
            raise _aws_error(exc) from None
        raise


def cmd_start_training(args: argparse.Namespace) -> int:
    """Validate the profile and subset here, then start the state machine (the only AWS call)."""
    from training_src.profiles import is_profile_path

    from . import aws

    profile = _profile_option(args)  # before any AWS call: a typo costs nothing
    # a shipped profile travels by name; a user's file as its validated document (whatever its name)
    ref = profile.to_dict() if is_profile_path(args.profile) else profile.name
    try:
        aws.execution_input(args.dataset, ref, profile.subset)
    except aws.ExecutionInputError as exc:
        raise UsageError(f"--profile {args.profile}: {exc}") from None
    if not args.state_machine:
        raise UsageError("--state-machine (an ARN or the training stack's name, e.g. Predmaint-Training) is "
                         "required, or set PREDMAINT_STATE_MACHINE_ARN")
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        import boto3

        region = boto3.session.Session().region_name
    if not region:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    with _aws_errors(aws.StartTrainingError):
        execution_arn, url = aws.start_training(args.state_machine, args.dataset, ref, profile.subset, region)
    print(f"started execution {execution_arn}")
    print(url)
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    """Fleet scoring: every asset of --input at once (local), or a SageMaker Batch Transform job."""
    from . import scoring

    if args.batch_transform:
        if not args.model_name:
            raise UsageError("--batch-transform needs --model-name (the SageMaker Model holding the artifact)")
        import boto3

        client = boto3.client("sagemaker", region_name=args.region) if args.region else boto3.client("sagemaker")
        with _aws_errors():
            arn = scoring.start_batch_transform(client, model_name=args.model_name, input_s3=args.input,
                                                output_s3=args.output, job_name=args.job_name,
                                                instance_type=args.instance_type)
        print(f"started transform job {arn}")
        return EXIT_OK
    scoring.output_format(Path(args.output))  # an unknown suffix is refused before the model loads
    model_dir, version = _resolve_model_dir(args)
    result = scoring.score_file(model_dir, Path(args.input), Path(args.output), args.whole_histories)
    what = f"model v{version}" if version else f"model {model_dir}"
    print(f"scored {result.assets} assets ({result.readings} readings) with {what}: "
          f"{result.assets_per_second:,.0f} assets/s scoring (read {result.read_seconds:.2f} s, "
          f"score {result.score_seconds:.2f} s, write {result.write_seconds:.2f} s)", file=sys.stderr)
    print(result.output)
    return EXIT_OK


def cmd_profile_init(args: argparse.Namespace) -> int:
    """Draft a profile from a data file: JSON on stdout (or --output), notes on stderr."""
    from . import fleet

    out = Path(args.output) if args.output is not None else None
    if out is not None and out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: folder {out.parent} does not exist")
    doc, notes = fleet.draft_profile(Path(args.datafile), Path(args.data_dir), args.name)
    text = json.dumps(doc, indent=2) + "\n"
    for note in notes:
        print(f"  {note}", file=sys.stderr)
    if out is None:
        sys.stdout.write(text)
        return EXIT_OK
    lifestore.write_atomically(out, text)
    print(f"wrote {out}; review it, then `predmaint profile check {out} {args.datafile}`", file=sys.stderr)
    return EXIT_OK


def cmd_profile_check(args: argparse.Namespace) -> int:
    """Validate a profile, and with a data file, the whole file against it (as a run would)."""
    from . import fleet

    profile = _profile_option(args)
    if args.datafile is None:
        print(f"ok: profile {args.profile} is valid ({profile.name}, {profile.task}, "
              f"{len(profile.input_columns)} input columns)")
        return EXIT_OK
    result = fleet.check_file(profile, Path(args.datafile), args.role)
    assets = (f", {result.assets} assets ({result.readings_per_asset[0]}-{result.readings_per_asset[1]} readings "
              "each)") if result.assets is not None else ""
    ignored = f"; columns not in the profile (ignored): {result.ignored_columns}" if result.ignored_columns else ""
    print(f"ok: {result.path} matches profile {profile.name} as its {result.role} file: {result.rows} rows"
          f"{assets}{ignored}")
    return EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
    """``predmaint stream``: the work is in ``streaming.py``, imported only when it runs."""
    from . import streaming

    return streaming.cmd_stream(args)


def cmd_fleet(args: argparse.Namespace) -> int:
    """``predmaint fleet``: every streamed asset's latest state (``streaming.py``); with ``--aws`` the
    page the deployed quality check wrote, downloaded (``aws.fetch_fleet_page``)."""
    if getattr(args, "aws", False):
        return _fleet_from_aws(args)
    if getattr(args, "save", None) is not None or getattr(args, "region", None) is not None:
        raise UsageError("--save and --region go with --aws")
    from . import streaming

    if args.html is None and args.drift_result is not None:
        raise UsageError("--drift-result goes with --html")
    code = streaming.cmd_fleet(args)
    if args.html is not None:
        from . import outcomes

        code = outcomes.cmd_fleet_page(args)
    return code


def _fleet_from_aws(args: argparse.Namespace) -> int:
    from . import aws, deployment

    if args.json or args.html is not None or args.drift_result is not None:
        raise UsageError("--aws downloads the deployed page; --json, --html and --drift-result work on the local "
                         "state: give one of them")
    config = deployment.load()
    region = args.region or config.region
    dest = args.save if args.save is not None else Path(args.home) / "fleet" / "index.html"
    with _aws_errors(aws.FleetPageError):
        uri = aws.fetch_fleet_page(config.stack_name("Monitoring"), region, dest)
    print(f"saved {uri} to {dest}")
    return EXIT_OK


def cmd_outcome_add(args: argparse.Namespace) -> int:
    """``predmaint outcome add``: record failures and maintenance actions (``outcomes.py``)."""
    from . import outcomes

    return outcomes.cmd_outcome_add(args)


def cmd_quality(args: argparse.Namespace) -> int:
    """``predmaint quality``: live model quality per model version (``outcomes.py``)."""
    from . import outcomes

    return outcomes.cmd_quality(args)


#: what each command of ``predmaint.parser`` runs, by its name (``args.command`` and, for ``profile`` and ``outcome``, its action)
COMMANDS = {"data": cmd_data, "run": cmd_run, "serve": cmd_serve, "drift": cmd_drift, "invoke": cmd_invoke,
            "score": cmd_score, "models": cmd_models, "report": cmd_report, "start-training": cmd_start_training,
            "profile init": cmd_profile_init, "profile check": cmd_profile_check,
            "stream": cmd_stream, "fleet": cmd_fleet, "outcome add": cmd_outcome_add, "quality": cmd_quality}


def _error_exit_code(exc: BaseException) -> int | None:
    """Exit code for exceptions that are the user's input, not our failure (None: not one of those)."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED
    if isinstance(exc, PipelineError):
        return EXIT_FAILURE
    # Input errors raised by the shared training code (ProfileError, DataError, FeatureError are ValueErrors
    # named so); imported lazily to keep the CLI light.
    if type(exc).__name__ in ("ProfileError", "DataError", "FeatureError", "InputError"):
        return EXIT_USAGE
    return None


def log_level(args: argparse.Namespace) -> str:
    """The log level: --log-level, else --verbose (INFO), else --quiet (WARNING), else PREDMAINT_LOG_LEVEL,
    else WARNING (INFO for ``serve``, whose log is its output): a command prints its result, and log
    lines only when asked."""
    if getattr(args, "log_level", None):
        return args.log_level
    if getattr(args, "verbose", False):
        return "INFO"
    if getattr(args, "quiet", False):
        return "WARNING"
    env = os.environ.get("PREDMAINT_LOG_LEVEL", "").upper()
    if env in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return env
    return "INFO" if args.command == "serve" else "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``predmaint`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.home = Path(getattr(args, "home", None) or default_home())
    args.data_dir = Path(getattr(args, "data_dir", None) or default_data_dir())
    from . import logs

    logs.setup(log_level(args))
    command = " ".join(c for c in (args.command, getattr(args, "profile_command", None),
                                   getattr(args, "outcome_command", None)) if c)
    try:
        return int(COMMANDS[command](args) or 0)
    except KeyboardInterrupt:
        print("predmaint: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `predmaint models | head`
        return EXIT_OK
    except Exception as exc:
        code = _error_exit_code(exc)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if code is None:
            log.debug("unexpected error", exc_info=True)
            print(f"predmaint {command}: internal error: {type(exc).__name__}: {message} "
                  "(set PREDMAINT_LOG_LEVEL=DEBUG for details)", file=sys.stderr)
            return EXIT_FAILURE
        log.debug("error", exc_info=True)
        print(f"predmaint {command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
