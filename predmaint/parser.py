"""The ``predmaint`` command line's argument parser: one small function per command.

``build_parser()`` answers the parsed arguments with ``command`` (``run``, ``profile init``, ...: the
key of ``predmaint.cli.COMMANDS``, which implements them). Nothing heavy is imported here, so
``predmaint --help`` stays instant; defaults that the deployment owns (data-capture share, drift
thresholds) are ``None`` here and resolved by the command from ``predmaint.deployment.load()``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

from .errors import EXIT_USAGE

#: ``add(name, help, description)``: a subcommand's parser, with the global options
Add = Callable[[str, str, str], argparse.ArgumentParser]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line (plus where to get help), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _whole(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``low..high`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


_positive_int = _whole("a whole number", 1)
_port = _whole("a port number", 0, 65535)
_percent = _whole("a whole percentage", 0, 100)


def _horizon(text: str) -> float:
    """``--horizon``: a finite number of cycles >= 0 (an int when it is whole, as it is sent)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of cycles, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of cycles >= 0, got {text}")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _positive_seconds(text: str) -> float:
    """A finite number of seconds above 0 (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def package_version() -> str:
    """The installed distribution's version (``predmaint --version``)."""
    try:
        return version("predmaint")
    except PackageNotFoundError:  # running from a checkout that was never pip-installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options are accepted before or after the command."""
    common = _Parser(add_help=False)
    # SUPPRESS: a value given after the command overrides one given before it, and absence changes nothing.
    common.add_argument("--home", type=Path, default=argparse.SUPPRESS,
                        help="where runs, the registry and reports live (env PREDMAINT_HOME, default ./.predmaint)")
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,
                        help="folder holding cmapss/ and ai4i2020/ (env PREDMAINT_DATA_DIR, default ./data)")
    common.add_argument("--log-level", default=argparse.SUPPRESS,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (env PREDMAINT_LOG_LEVEL; default WARNING, INFO for serve)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show INFO log lines on stderr (same as --log-level INFO)")

    p = _Parser(prog="predmaint", parents=[common],
                description="Predictive maintenance on Amazon SageMaker, and fully offline in local mode.",
                epilog="Exit codes: 0 success, 2 bad usage or input, 1 failure.")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=description)

    for command in (_data, _run, _serve, _drift, _invoke, _score, _stream, _fleet, _quality, _models, _report,
                    _start_training):
        command(add)
    _profile(add, common)
    _outcome(add, common)
    return p


def _data(add: Add) -> None:
    """``predmaint data``."""
    sp = add("data", "download and verify the public datasets",
             "Download C-MAPSS and AI4I 2020 from their official sources into the data directory and verify SHA-256.")
    try:
        from . import data as _data

        _data.add_arguments(sp)
    except ImportError:  # the data module is optional for every other command
        pass


def _run(add: Add) -> None:
    """``predmaint run``."""
    sp = add("run", "run the whole pipeline locally (prepare, preprocess, tune, refit, evaluate, promote)",
             "One pipeline execution on local files: the prepare handler, preprocess.py, Optuna tuning of "
             "train.py trials, refit on train+validation, evaluate.py and the promotion rule against the local "
             "registry. Prints the evaluation report's path as the last line.")
    sp.add_argument("--profile", default="cmapss", help="dataset profile name or path to a profile JSON (default cmapss)")
    sp.add_argument("--subset", default=None, help="profile subset, e.g. FD001 (default: the profile's default)")
    sp.add_argument("--trials", type=_positive_int, default=20, help="tuning trials (>= 1, default 20)")
    sp.add_argument("--parallel", type=_positive_int, default=None,
                    help="trials run at the same time (default: up to the core count)")
    sp.add_argument("--seed", type=int, default=0, help="random seed for splits and tuning (default 0)")
    sp.add_argument("--run-id", default=None, help="run id (default: timestamp + random suffix)")
    sp.add_argument("--quiet", action="store_true", help="no progress output and no log lines; only the report path")
    sp.add_argument("--fleet-data", action="store_true",
                    help="also train on the fleet's failure histories that `predmaint quality` wrote under "
                         "<home>/fleet-data (listed with their SHA-256 in the run's lineage)")


def _serve(add: Add) -> None:
    """``predmaint serve``."""
    sp = add("serve", "serve the champion (or --model VERSION) with the SageMaker hosting contract",
             "Serve a registered model on GET /ping and POST /invocations (gunicorn + uvicorn workers) until "
             "SIGTERM or Ctrl-C. Serves the champion unless --model or --model-dir is given.")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    sp.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    sp.add_argument("--model-dir", default=None, metavar="PATH",
                    help="serve an extracted model directory or a model.tar.gz instead of a registry version")
    sp.add_argument("--workers", type=_positive_int, default=2, help="worker processes (default 2)")
    sp.add_argument("--capture-percent", type=_percent, default=None,
                    help="share of requests recorded under <home>/data-capture in SageMaker's capture format "
                         "(default 10, a laptop's share; the deployed endpoint's is cdk.json's; 0 turns capture off)")
    sp.add_argument("--capture-max-mb", type=_positive_int, default=None, metavar="MB",
                    help="bound on the capture folder: the oldest files are deleted beyond it (default 256)")


def _drift(add: Add) -> None:
    """``predmaint drift``."""
    sp = add("drift", "compare captured requests with the model's training baseline and name drifted features",
             "Read SageMaker data-capture records (the local server's under <home>/data-capture, or --capture: "
             "a folder or .jsonl file, e.g. downloaded from the endpoint's capture prefix), decode the requests "
             "with the endpoint's codec and compare their readings and features, per operating regime, with the "
             "model's drift baseline (PSI with a Bonferroni-corrected chi-square test). Prints the drifted "
             "features; exit 0 whether or not there is drift.")
    sp.add_argument("--capture", default=None, metavar="PATH",
                    help="capture folder (searched for *.jsonl) or file (default <home>/data-capture/local)")
    sp.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    sp.add_argument("--model-dir", default=None, metavar="PATH", help="an extracted model directory or model.tar.gz")
    sp.add_argument("--window-hours", type=float, default=0.0, help="only records of the last N hours (default: all)")
    sp.add_argument("--psi-threshold", type=float, default=None,
                    help="PSI a drifted feature reaches (default: the deployment's, cdk.json predmaint.drift)")
    sp.add_argument("--alpha", type=float, default=None,
                    help="family-wise significance level, Bonferroni over all tests (default: the deployment's, "
                         "cdk.json predmaint.drift)")
    sp.add_argument("--min-samples", type=_positive_int, default=None,
                    help="instances a regime needs before it is tested (default: the drift job's, "
                         "training_src/drift.py MIN_SAMPLES)")
    sp.add_argument("--output", default=None, metavar="DIR", help="also write drift_result.json into DIR")
    sp.add_argument("--json", action="store_true", help="print the result document as JSON")


def _invoke(add: Add) -> None:
    """``predmaint invoke``."""
    sp = add("invoke", "send readings to a local server or a SageMaker endpoint and print the predictions",
             "Send one or more assets' readings to POST /invocations and print the predictions. With "
             "--test-unit, the readings come from the bundled dataset's test file and the true RUL is shown.")
    target = sp.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://127.0.0.1:8080", help="local server URL (default http://127.0.0.1:8080)")
    target.add_argument("--endpoint-name", default=None, help="SageMaker endpoint name (uses AWS credentials)")
    sp.add_argument("--region", default=None, help="AWS region of the endpoint")
    sp.add_argument("--file", default=None, help="JSON (request, instance or list of readings) or CSV of readings")
    sp.add_argument("--test-unit", type=_positive_int, action="append", default=[], metavar="N",
                    help="a unit of the profile's test file (repeatable)")
    sp.add_argument("--profile", default=None,
                    help="profile name or file: of the test data (--test-unit, default cmapss) or of a --file CSV "
                         "(its id and categorical columns, rows or readings)")
    sp.add_argument("--subset", default=None, help="subset of the test data (default: the profile's, FD001)")
    sp.add_argument("--explain", action="store_true", help="ask for the top feature contributions")
    sp.add_argument("--horizon", type=_horizon, default=None, metavar="H",
                    help="also ask each asset's probability of failing within H cycles (RUL models)")
    sp.add_argument("--last", type=_positive_int, default=None, metavar="N",
                    help="send only each asset's last N readings (a streaming client's window; fewer than "
                         "the model's window gets a warning)")
    sp.add_argument("--life-file", default=None, metavar="PATH",
                    help="keep each asset's life summary in this JSON file: send the stored one (or start one "
                         "when the asset has none: the readings sent must then begin at its first) and store "
                         "the updated one the answer returns")
    sp.add_argument("--timeout", type=_positive_seconds, default=30.0, help="seconds per attempt (default 30)")
    sp.add_argument("--json", action="store_true", help="print the raw response as JSON")


def _score(add: Add) -> None:
    """``predmaint score``."""
    sp = add("score", "score every asset of a fleet file at once (or start a SageMaker Batch Transform)",
             "Batch scoring: the features of every asset's last reading and one prediction per asset, "
             "written as CSV (asset_id,rul), JSON lines (.jsonl) or Parquet (.parquet). The input is the profile's raw format "
             "(plain or .gz) or a .csv with a header. With --batch-transform, start a SageMaker Batch "
             "Transform job on s3:// request lines with the same artifact.")
    sp.add_argument("--input", required=True, help="fleet file (or s3:// prefix with --batch-transform)")
    sp.add_argument("--output", required=True,
                    help="scores file .csv, .jsonl or .parquet (or s3:// prefix with --batch-transform)")
    sp.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    sp.add_argument("--model-dir", default=None, metavar="PATH", help="an extracted model directory or model.tar.gz")
    sp.add_argument("--whole-histories", action="store_true",
                    help="every asset's readings start at its first: a model that reads life summaries gets "
                         "each asset's (more accurate); without it, each asset's window alone")
    sp.add_argument("--batch-transform", action="store_true", help="start a SageMaker Batch Transform job instead")
    sp.add_argument("--model-name", default=None, help="SageMaker Model name (with --batch-transform)")
    sp.add_argument("--job-name", default=None, help="transform job name (default predmaint-score-<time>)")
    sp.add_argument("--instance-type", default="ml.m5.large", help="transform instance type (default ml.m5.large)")
    sp.add_argument("--region", default=None, help="AWS region (with --batch-transform)")


def _stream(add: Add) -> None:
    sp = add("stream", "replay a fleet file (or JSON Lines) as a stream; keep each asset's state",
             "Replay the input as a stream, N readings per asset per record, assets interleaved, through "
             "the same scoring code as the scoring Lambda: state in SQLite and the archive under "
             "<home>/stream. Records refused are printed one line each (exit 2); other assets go on.")
    sp.add_argument("--input", default=None,
                    help="fleet file in the profile's raw layout, a .jsonl file of stream records, or - "
                         "for JSON Lines on stdin")
    sp.add_argument("--chunk", type=_positive_int, default=10, help="readings per asset per record (default 10)")
    sp.add_argument("--batch", type=_positive_int, default=500, help="records per batch (default 500)")
    sp.add_argument("--max-instances", type=_positive_int, default=None,
                    help="instances per endpoint request (default: the endpoint's limit, 1000 locally)")
    sp.add_argument("--url", default=None, help="a running endpoint (predmaint serve) instead of in-process")
    sp.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    sp.add_argument("--model-dir", default=None, metavar="PATH", help="an extracted model directory")
    sp.add_argument("--horizon", type=_horizon, default=None,
                    help="H for failure_probability and the decision rule (default: cdk.json predmaint.decisions)")
    sp.add_argument("--rebuild", action="store_true",
                    help="build every asset's life summary for the model from the archive (after a promotion)")


def _fleet(add: Add) -> None:
    sp = add("fleet", "print every streamed asset's latest state",
             "Every asset of the stream state: asset_id, readings taken in, last time, rul, rul_lower, "
             "rul_upper, failure_probability, model_version, with_summary.")
    sp.add_argument("--json", action="store_true", help="one JSON object per asset")
    sp.add_argument("--aws", action="store_true",
                    help="download the fleet page the deployed quality check writes (the Monitoring stack's "
                         "FleetPageUrl) to --save and print where it is")
    sp.add_argument("--save", type=Path, default=None, metavar="PATH",
                    help="with --aws: where the page goes (default <home>/fleet/index.html)")
    sp.add_argument("--region", default=None, help="with --aws: the deployment's region (default: cdk.json's)")
    sp.add_argument("--html", default=None, metavar="PATH",
                    help="also write the fleet page (one self-contained HTML file: assets ranked by risk, recent "
                         "answers, live quality and drift status)")
    sp.add_argument("--drift-result", default=None, metavar="FILE",
                    help="with --html: the drift status shown on the page (drift_result.json of "
                         "`predmaint drift --output DIR`; default: not checked)")


def _quality(add: Add) -> None:
    sp = add("quality", "live model quality: archived answers joined with recorded failures",
             "Per model version: RMSE of the RUL answers against the realised RUL (uncapped and capped at the "
             "profile's cap), the interval's coverage, alert recall and precision, the share of early alerts "
             "and the median lead time (docs/decisions.md). Only lives that ended in a recorded failure count.")
    sp.add_argument("--json", action="store_true", help="one JSON object per model version")


def _time(text: str) -> float:
    """``--time``: a finite number in the profile's time unit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (the profile's time unit), got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _outcome(add: Add, common: argparse.ArgumentParser) -> None:
    sp = add("outcome", "record failures and maintenance actions of streamed assets",
             "Outcomes are the stream's event records: {\"asset_id\", \"event\": \"failure\" | \"maintenance\", "
             "\"time\"}. Each ends the asset's life and is archived; a failure is the label live quality uses.")
    osub = sp.add_subparsers(dest="outcome_command", metavar="ACTION", parser_class=_Parser)
    osub.required = True
    op = osub.add_parser("add", parents=[common], help="record one outcome, or a file of them",
                         description="Check every outcome against the stream state (known asset, time not before "
                                     "its first or last reading, no duplicate failure), then take them in. One bad "
                                     "outcome: a one-line error and nothing changes.")
    op.add_argument("--asset", default=None, help="asset id")
    op.add_argument("--event", default=None, choices=["failure", "maintenance"], help="what happened")
    op.add_argument("--time", type=_time, default=None, help="when, in the profile's time unit")
    op.add_argument("--file", default=None, metavar="F", help="JSON Lines (or a JSON list) of outcomes")
    op.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    op.add_argument("--model-dir", default=None, metavar="PATH", help="an extracted model directory")


def _models(add: Add) -> None:
    """``predmaint models``."""
    sp = add("models", "list the local model registry",
             "List registered model packages, newest first: version, approval status, champion marker (*), "
             "primary metric, creation time, run and the reason for the decision.")
    sp.add_argument("--json", action="store_true", help="print the packages as JSON")


def _report(add: Add) -> None:
    """``predmaint report``."""
    sp = add("report", "print a run's summary and the path of its HTML report",
             "Print a run's summary and the path of its HTML report, rendering the report if it is missing.")
    sp.add_argument("run", help="run id (under <home>/runs) or a run directory")
    sp.add_argument("--force", action="store_true", help="render the report again")


def _start_training(add: Add) -> None:
    """``predmaint start-training``."""
    sp = add("start-training", "start the training pipeline in AWS (Step Functions)",
             "Start an execution of the deployed training state machine for a dataset in the raw bucket.")
    sp.add_argument("--state-machine", default=os.environ.get("PREDMAINT_STATE_MACHINE_ARN"),
                    help="state machine ARN or the training stack's name, e.g. Predmaint-Training "
                         "(env PREDMAINT_STATE_MACHINE_ARN)")
    sp.add_argument("--dataset", required=True, help="dataset prefix under raw/ in the data bucket")
    sp.add_argument("--profile", default="cmapss",
                    help="shipped profile name, or your profile file (validated here, sent inline; default cmapss)")
    sp.add_argument("--subset", default=None, help="profile subset, e.g. FD001")
    sp.add_argument("--region", default=None, help="AWS region")


def _profile(add: Add, common: argparse.ArgumentParser) -> None:
    """``predmaint profile``."""
    sp = add("profile", "bring your own fleet: draft a profile from a data file, check one against a file",
             "A profile describes a fleet's data (columns, task, label, windows); `run`, `invoke` and "
             "`start-training` take a shipped profile's name or the path of your own profile file.")
    psub = sp.add_subparsers(dest="profile_command", metavar="ACTION", parser_class=_Parser)
    psub.required = True
    pp = psub.add_parser("init", parents=[common], help="draft a profile from a data file",
                         description="Read DATAFILE (CSV with or without header, or whitespace-separated; plain "
                                     "or .gz) and print a draft profile: id and time columns, settings, sensors, "
                                     "categorical columns, task and label. Notes on stderr say why each column "
                                     "got its role; review the draft before training.")
    pp.add_argument("datafile", help="a data file of the fleet (e.g. its run-to-failure history)")
    pp.add_argument("--output", "-o", default=None, help="write the profile here instead of stdout")
    pp.add_argument("--force", action="store_true", help="replace --output if it exists")
    pp.add_argument("--name", default=None, help="profile name (default: from the file name)")
    pp = psub.add_parser("check", parents=[common], help="validate a profile, and a data file against it",
                         description="Validate PROFILE (every key at every level) and, with DATAFILE, every row "
                                     "of the file against it with the checks a run applies (the prepare Lambda's "
                                     "and preprocess's): errors name the file, row and column.")
    pp.add_argument("profile", help="profile name or file")
    pp.add_argument("datafile", nargs="?", default=None, help="a data file to check against the profile")
    pp.add_argument("--subset", default=None, help="profile subset")
    pp.add_argument("--role", default=None, choices=["train", "test", "test_rul", "data"],
                    help="which of the profile's files DATAFILE is (default: by file name, else train/data)")
