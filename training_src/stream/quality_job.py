"""The scheduled live-quality check on AWS: a SageMaker processing job running ``quality.py`` on the
stream's archive (``python -m training_src.stream.quality_job``; stacks/quality_monitor.py starts it).

Inputs (folders the job's S3 inputs fill; a missing folder is an empty one, since the starter Lambda
leaves out inputs whose prefix holds nothing yet, which SageMaker would refuse):

- ``--answers``: the archive's ``answers/day=<day>/asset=<id>/*.jsonl`` (the endpoint's answers);
- ``--outcomes``: ``outcomes/day=<day>/*.jsonl`` (the recorded failures and maintenance actions);
- ``--risk``: ``risk/day=<day>/*.jsonl`` (the risk events the score Lambda delivered);
- ``--readings`` (with ``--fleet-data-output``): ``readings/asset=<id>/day=<day>/*.jsonl``, the readings
  and events of every asset, read only for the assets with a recorded failure.

It computes the figures per model version (``quality.quality``: RMSE both protocols, the interval's
coverage, alert recall and precision, median lead), writes them as ``quality_report.json`` and the
files ``outputs`` adds (``--output``, uploaded to ``monitoring/quality/<execution>/``;
``--fleet-output``, uploaded to ``fleet/``), and publishes them to CloudWatch (``--metric-namespace``):
each figure once per model version (dimensions ``EndpointName``, ``ModelVersion``) and once for the
latest version (``EndpointName`` only: the version that gave most answers on the last archived day),
which the alarms watch, so a promotion needs no new alarm.

With ``--fleet-data-output DIR --profile NAME`` it also writes every failed life's run-to-failure history
(``failures.export_asset`` on the asset's archived readings, the function local mode runs) as
``DIR/<failures.object_name>``, uploaded to the data bucket's ``raw/<dataset>/<train folder>/``; a failed
life that cannot be a history is left out with one stderr line (docs/decisions.md, "Failures become
training data").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import failures, fleet_page, quality

REPORT_FILE = "quality_report.json"
#: the fleet page under ``--fleet-output`` (uploaded as ``s3://<artifacts>/fleet/index.html``)
FLEET_PAGE = "index.html"
#: figure -> (CloudWatch metric name, unit)
METRICS = {"rmse": ("RMSE", "None"), "rmse_capped": ("RMSECapped", "None"), "coverage": ("Coverage80", "None"),
           "recall": ("AlertRecall", "None"), "precision": ("AlertPrecision", "None"),
           "median_lead": ("MedianLead", "None"), "failures": ("Failures", "Count")}
#: PutMetricData takes at most 1,000 metrics per request
METRICS_PER_REQUEST = 1000


@dataclass
class QualityInputs:
    """What the job read: answers (each with the ``day`` of its partition), outcomes, risk events
    (each once), and (asset, life) -> time of its last answered reading."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    risk: list[dict[str, Any]] = field(default_factory=list)
    last_seen: dict[tuple[str, int], float] = field(default_factory=dict)


def _lines(root: Path | None) -> list[tuple[Path, dict[str, Any]]]:
    if root is None or not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*.jsonl")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append((path, json.loads(line)))
                except ValueError as exc:
                    raise ValueError(f"{path} line {i}: not JSON ({exc})") from None
    return out


def read_inputs(answers: Path | None, outcomes: Path | None, risk: Path | None) -> QualityInputs:
    """The job's inputs from its folders (see the module doc)."""
    got = QualityInputs()
    for path, item in _lines(answers):
        day = next((p.removeprefix("day=") for p in path.parts if p.startswith("day=")), "")
        got.answers.append({**item, "day": day})
        key = (str(item["asset_id"]), int(item["life"]))
        got.last_seen[key] = max(got.last_seen.get(key, float(item["time"])), float(item["time"]))
    got.outcomes = [item for _, item in _lines(outcomes) if item.get("type") == "event"]
    seen: set[tuple[Any, ...]] = set()
    for _, item in _lines(risk):  # a retried batch may have archived an event twice
        ident = (item.get("type"), str(item.get("asset_id")), item.get("life"), item.get("time"))
        if ident not in seen:
            seen.add(ident)
            got.risk.append(item)
    return got


def latest_version(answers: list[dict[str, Any]]) -> str | None:
    """The model version that gave most answers on the last day with answers (None: no answers)."""
    if not answers:
        return None
    last = max(a["day"] for a in answers)
    counts = Counter(str(a["answer"].get("model_version", "")) for a in answers if a["day"] == last)
    return counts.most_common(1)[0][0]


def build_report(inputs: QualityInputs, *, horizon: float | None, lead: float, cap: float | None) -> dict[str, Any]:
    """The report: the settings, the latest version and the figures per model version."""
    figures = quality.quality(inputs.answers, inputs.outcomes, inputs.risk, horizon=horizon, lead=lead, cap=cap,
                              last_seen=inputs.last_seen)
    return {"horizon": horizon, "lead": lead, "cap": cap, "latest_version": latest_version(inputs.answers),
            "answers": len(inputs.answers), "outcomes": len(inputs.outcomes), "risk_events": len(inputs.risk),
            "versions": figures}


def metric_data(report: dict[str, Any], endpoint: str) -> list[dict[str, Any]]:
    """PutMetricData entries of the report (figures without data are left out)."""
    out = []

    def add(figures: dict[str, Any], dims: list[dict[str, str]]) -> None:
        for key, (name, unit) in METRICS.items():
            v = figures.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out.append({"MetricName": name, "Dimensions": dims, "Value": float(v), "Unit": unit})

    base = [{"Name": "EndpointName", "Value": endpoint}]
    for version, figures in report["versions"].items():
        add(figures, [*base, {"Name": "ModelVersion", "Value": version or "unknown"}])
    latest = report["latest_version"]
    if latest is not None and latest in report["versions"]:
        add(report["versions"][latest], base)
    return out


def publish(client: Any, namespace: str, data: list[dict[str, Any]]) -> int:
    """``PutMetricData`` of ``data`` in requests of at most 1,000 metrics; returns how many requests."""
    calls = 0
    for i in range(0, len(data), METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=namespace, MetricData=data[i:i + METRICS_PER_REQUEST])
        calls += 1
    return calls


def outputs(report: dict[str, Any], inputs: QualityInputs, report_dir: Path, fleet_dir: Path | None) -> list[Path]:
    """Write the job's files: ``quality_report.json`` under ``report_dir``; ``fleet_dir`` (uploaded to
    the artifacts bucket's ``fleet/``) is where the fleet page goes. Returns the files written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / REPORT_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    written = [path]
    if fleet_dir is not None:
        fleet_dir.mkdir(parents=True, exist_ok=True)
        rows, history = fleet_page.from_archive(inputs.answers, inputs.outcomes, inputs.risk)
        page = fleet_page.render_fleet_page(rows, history, report.get("versions"), None,
                                            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        (fleet_dir / FLEET_PAGE).write_text(page)
        written.append(fleet_dir / FLEET_PAGE)
    return written


def export_fleet_data(readings: Path | None, outcomes: list[dict[str, Any]], profile: Any, out_dir: Path
                      ) -> tuple[list[Path], list[str]]:
    """Every failed life among ``outcomes`` -> its history under ``out_dir`` (``failures.object_name``),
    from the asset's archived lines under ``readings`` (``asset=<id>/day=<day>/*.jsonl``). Returns (files
    written, one line per failed life left out)."""
    assets = sorted({str(o["asset_id"]) for o in outcomes if o.get("event") == "failure"})
    written: list[Path] = []
    errors: list[str] = []
    if not assets:
        return written, errors
    out_dir.mkdir(parents=True, exist_ok=True)
    for asset in assets:
        folder = readings / f"asset={quote(asset, safe='')}" if readings is not None else None
        lines: list[str] = []
        for path in sorted(folder.rglob("*.jsonl")) if folder is not None and folder.is_dir() else []:
            lines += path.read_text().splitlines()
        histories, errs = failures.export_asset(lines, profile)
        if not lines:
            errs = [f"asset {asset!r}: a failure is recorded but no reading of it is archived"]
        errors += errs
        for h in histories:
            path = out_dir / failures.object_name(h.asset_id, h.life, profile)
            path.write_bytes(h.data())
            written.append(path)
    return written, errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's command line (exit 2 with one line on bad usage)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=Path, default=Path("/opt/ml/processing/input/answers"))
    ap.add_argument("--outcomes", type=Path, default=Path("/opt/ml/processing/input/outcomes"))
    ap.add_argument("--risk", type=Path, default=Path("/opt/ml/processing/input/risk"))
    ap.add_argument("--output", type=Path, default=Path("/opt/ml/processing/output/report"))
    ap.add_argument("--fleet-output", type=Path, default=None)
    ap.add_argument("--horizon", type=float, default=None, help="H of the decision rule (absent: a classifier)")
    ap.add_argument("--lead", type=float, default=0.0, help="L: recall counts alerts at least L before the failure")
    ap.add_argument("--cap", type=float, default=None, help="the profile's RUL cap (rmse_capped)")
    ap.add_argument("--metric-namespace", default=None, help="publish the figures to this CloudWatch namespace")
    ap.add_argument("--endpoint-name", default="", help="the EndpointName dimension of the metrics")
    ap.add_argument("--region", default=None)
    ap.add_argument("--readings", type=Path, default=Path("/opt/ml/processing/input/readings"))
    ap.add_argument("--fleet-data-output", type=Path, default=None,
                    help="write every failed life's history here (needs --profile)")
    ap.add_argument("--profile", default=None, help="shipped profile name (the raw layout of the histories)")
    ap.add_argument("--subset", default=None)
    args = ap.parse_args(argv)
    if args.fleet_data_output is not None and not args.profile:
        ap.error("--fleet-data-output needs --profile (the raw layout of the histories)")
    if args.horizon is not None and not args.horizon > 0:
        ap.error(f"--horizon: must be > 0, got {args.horizon:g}")
    if args.lead < 0 or (args.cap is not None and not args.cap > 0):
        ap.error("--lead must be >= 0 and --cap > 0")
    if args.metric_namespace and not args.endpoint_name:
        ap.error("--metric-namespace needs --endpoint-name (the metrics' dimension)")
    return args


def main(argv: list[str] | None = None, cloudwatch: Any = None) -> int:
    """Run the check (``argv``: the command line; ``cloudwatch``: the client, default boto3's). Prints
    one JSON line of counts; exit 2 with one line on bad usage."""
    args = parse_args(argv)
    profile = None
    try:
        if args.fleet_data_output is not None:
            from training_src.profiles import load_profile

            profile = load_profile(args.profile, args.subset)
            failures.check_profile(profile)
        inputs = read_inputs(args.answers, args.outcomes, args.risk)
    except (ValueError, KeyError, TypeError) as exc:  # ProfileError and FailureError are ValueErrors
        print(f"quality: {exc}", file=sys.stderr)
        return 1
    report = build_report(inputs, horizon=args.horizon, lead=args.lead, cap=args.cap)
    histories: list[Path] = []
    if profile is not None:
        histories, left_out = export_fleet_data(args.readings, inputs.outcomes, profile, args.fleet_data_output)
        for line in left_out:
            print(f"quality: fleet data: {line}", file=sys.stderr)
    outputs(report, inputs, args.output, args.fleet_output)
    requests = 0
    if args.metric_namespace:
        if cloudwatch is None:
            import boto3  # the processing container has it

            cloudwatch = boto3.client("cloudwatch", region_name=args.region)
        requests = publish(cloudwatch, args.metric_namespace, metric_data(report, args.endpoint_name))
    print(json.dumps({"answers": report["answers"], "outcomes": report["outcomes"], "risk_events": report["risk_events"],
                      "versions": len(report["versions"]), "latest_version": report["latest_version"],
                      "metric_requests": requests, "fleet_histories": len(histories)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
