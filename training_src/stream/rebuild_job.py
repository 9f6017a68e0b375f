"""The rebuild after a promotion on AWS: a SageMaker processing job running the project's own feature
and serving code (``python -m training_src.stream.rebuild_job``).

Inputs: the new champion's model (``--model``: a model.tar.gz or an extracted directory) and the
stream archive (``--archive``: its root, holding the ``readings/`` partitions: a folder, or an
``s3://bucket/prefix/`` read directly, one asset's partition at a time, so the job reads only the
histories of the assets in the table and an empty archive is no error). It reads every asset's
state from the DynamoDB table (``Scan``; a table that does not exist yet, as on the pipeline's first
run before the endpoint stack creates it, has no states: only the model info is written),
builds each summary the new model lacks (``rebuild.rebuild``: the same code as local mode's), lays
it onto the asset's current state with a conditional write (``rebuild.merge``; a lost race is read
again and merged again), and writes the new model's ``ModelInfo`` (``--model-info``), which the
scoring Lambda reads to know the serving model's fingerprint, window and limits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import archive, model_api, rebuild, state

#: attempts at a conditional write that keeps losing races before the asset is left to the next rebuild
ATTEMPTS = 3
#: S3 reads and DynamoDB writes under way at once: they wait on the network, so threads overlap them
#: (within botocore's default pool of 10 connections per client)
WORKERS = 10


def _model_dir(path: Path) -> Path:
    if path.is_dir():
        tars = list(path.glob("*.tar.gz"))
        if not tars:
            return path
        path = tars[0]
    out = Path(tempfile.mkdtemp(prefix="model-"))
    with tarfile.open(path) as tar:
        tar.extractall(out, filter="data")
    return out


def lines_in(root: Path) -> Any:
    """``lines_of(asset_id)`` over the archive's ``readings/asset=<id>/day=*/...`` files under ``root``."""
    def lines_of(asset_id: str) -> Iterator[str]:
        base = root / archive.asset_prefix(asset_id)
        for path in sorted(base.glob("day=*/*.jsonl")):
            yield from (line for line in path.read_text().splitlines() if line.strip())
    return lines_of


def s3_lines_in(client: Any, uri: str) -> Any:
    """``lines_of(asset_id)`` over ``s3://bucket/prefix/readings/asset=<id>/day=*/...`` objects, in key order
    (``ListObjectsV2`` of the asset's partition, ``GetObject`` of each object)."""
    bucket, _, root = uri[len("s3://"):].partition("/")
    root = root.rstrip("/") + "/" if root else ""

    def lines_of(asset_id: str) -> Iterator[str]:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=root + archive.asset_prefix(asset_id))
                for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        for key in sorted(keys):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            yield from (line for line in body.splitlines() if line.strip())
    return lines_of


def scan_states(client: Any, table: str) -> tuple[list[state.AssetState], list[str]]:
    """Every readable state of the table, and an error line for each unreadable item. A table that
    does not exist has no states (the pipeline's first champion comes before the endpoint stack)."""
    from botocore.exceptions import ClientError

    states, errors = [], []
    try:
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                try:
                    states.append(state.from_item(item))
                except state.StateError as exc:
                    errors.append(str(exc))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        print(f"rebuild: table {table} does not exist yet: no states to rebuild", file=sys.stderr)
    return states, errors


def commit(client: Any, table: str, rebuilt: dict[str, state.AssetState], fingerprint: str,
           workers: int = 1) -> int:
    """Merge each rebuilt summary into the asset's current item (conditional writes, ``workers`` assets
    at once: each is a read and a write that wait on DynamoDB); returns how many."""
    from botocore.exceptions import ClientError

    def one(asset: str, st: state.AssetState) -> int:
        for _ in range(ATTEMPTS):
            item = client.get_item(TableName=table, Key={"asset_id": {"S": asset}}, ConsistentRead=True).get("Item")
            if item is None:
                return 0
            merged = rebuild.merge(state.from_item(item), st, fingerprint)
            if merged is None:
                return 0
            try:
                client.put_item(**state.conditional_put(table, merged))
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # the stream wrote it meanwhile: read again, merge again
                raise
            return 1
        return 0

    if workers > 1 and len(rebuilt) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(pool.map(one, rebuilt, rebuilt.values()))
    return sum(one(a, st) for a, st in rebuilt.items())


def main(argv: list[str] | None = None, client: Any = None, s3: Any = None) -> int:
    """Run the rebuild (``argv``: the command line); ``client``/``s3``: the DynamoDB and S3 clients
    (default: boto3's). Prints one JSON line of counts; exit 2 with one line on bad usage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model.tar.gz or its folder")
    ap.add_argument("--archive", required=True,
                    help="the archive's root (holding readings/): a folder or s3://bucket/prefix/")
    ap.add_argument("--table", required=True, help="the DynamoDB state table")
    ap.add_argument("--model-info", type=Path, required=True, help="where to write the model's info JSON")
    ap.add_argument("--horizon", type=float, default=None, help="cycles for failure_probability")
    ap.add_argument("--region", default=None)
    ap.add_argument("--workers", type=int, default=WORKERS,
                    help=f"archive reads and state writes under way at once (default {WORKERS})")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers: {args.workers}: must be at least 1")
    remote = args.archive.startswith("s3://")
    if not remote and not Path(args.archive).is_dir():
        ap.error(f"--archive: {args.archive} is neither a folder nor an s3:// URI")
    if not args.model.exists():
        ap.error(f"--model: {args.model} does not exist")
    if client is None or (remote and s3 is None):
        import boto3  # the processing container has it

        client = client or boto3.client("dynamodb", region_name=args.region)
        s3 = s3 or boto3.client("s3", region_name=args.region)
    scorer = model_api.InProcessScorer(model_api.load_model(_model_dir(args.model)))
    states, errors = scan_states(client, args.table)
    lines_of = s3_lines_in(s3, args.archive) if remote else lines_in(Path(args.archive))
    res = rebuild.rebuild(states, lines_of, scorer, scorer.info, horizon=args.horizon, workers=args.workers)
    done = commit(client, args.table, res.states, scorer.info.fingerprint, workers=args.workers)
    args.model_info.parent.mkdir(parents=True, exist_ok=True)
    args.model_info.write_text(scorer.info.to_json())
    for line in errors + list(res.errors.values()):
        print(f"rebuild: {line}", file=sys.stderr)
    print(json.dumps({"assets": len(states), "rebuilt": done, "up_to_date": res.skipped,
                      "failed": len(errors) + len(res.errors), "model": scorer.info.fingerprint}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
