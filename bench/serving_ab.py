"""A/B of two versions of the serving code on one model, in one process, calls interleaved.

    .venv/bin/python bench/serving_ab.py --model-dir OTHER_ARTIFACT_DIR

``OTHER_ARTIFACT_DIR`` is an extracted model artifact whose ``code/`` holds the other version (for
example one trained by an older commit's train.py); its ``inference.handle`` (A) and this
repository's (B) answer the same requests (1 and 100 FD001 test assets, 30 readings each) on that
artifact's model, alternating call by call so that a busy or slow phase of the machine falls on
both alike. The answers must be byte-identical; p50/p99 of each are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402
from serving import body_of, test_assets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, type=Path, help="extracted artifact holding the other code/")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", "data"), type=Path)
    ap.add_argument("--calls", type=int, default=20000, help="calls of each version for one asset (default 20000)")
    args = ap.parse_args(argv)

    from predmaint.server import load_inference_module
    from training_src import inference as repo

    other = load_inference_module(args.model_dir)  # the artifact's own code, loaded as the server does
    a, b = other.model_fn(str(args.model_dir)), repo.model_fn(str(args.model_dir))
    assets = test_assets(args.data_dir, 30)
    print(f"serving A/B · {time.strftime('%Y-%m-%d %H:%M:%S')} · {load()} · A = {args.model_dir}/code, B = repository")
    for k, calls in ((1, args.calls), (100, max(1, args.calls // 50))):
        body = body_of(assets[:k])
        want = other.handle(a, body, "application/json", "application/json")
        assert want == repo.handle(b, body, "application/json", "application/json"), "the versions answer differently"
        ta: list[float] = []
        tb: list[float] = []
        pair = ((other.handle, a, ta), (repo.handle, b, tb))
        for i in range(calls):
            for fn, model, out in pair if i % 2 else pair[::-1]:
                t = time.perf_counter()
                fn(model, body, "application/json", "application/json")
                out.append(time.perf_counter() - t)
        pa, pb = (np.percentile(np.asarray(t) * 1e3, [50, 99]) for t in (ta, tb))
        print(f"  {k:>3} asset(s): A p50 {pa[0]:.3f} ms p99 {pa[1]:.3f} ms | B p50 {pb[0]:.3f} ms p99 {pb[1]:.3f} ms "
              f"(n={calls} each, interleaved, same answers)")
    print(f"done · {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
