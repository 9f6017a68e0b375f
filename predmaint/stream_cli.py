"""The ``stream`` and ``fleet`` commands' arguments (the work is in ``streaming.py``, imported only
when one of them runs, so the rest of the CLI stays light)."""

from __future__ import annotations

from typing import Any


def _stream(args: Any) -> int:
    from . import streaming

    return streaming.cmd_stream(args)


def _fleet(args: Any) -> int:
    from . import streaming

    return streaming.cmd_fleet(args)


def add_commands(add: Any, positive_int: Any, horizon: Any) -> None:
    """Add ``stream`` and ``fleet`` to the CLI (``add(name, help, description)`` makes a subparser)."""
    sp = add("stream", "replay a fleet file (or JSON Lines) as a stream; keep each asset's state",
             "Replay the input as a stream, N readings per asset per record, assets interleaved, through "
             "the same scoring code as the scoring Lambda: state in SQLite and the archive under "
             "<home>/stream. Records refused are printed one line each (exit 2); other assets go on.")
    sp.add_argument("--input", default=None,
                    help="fleet file in the profile's raw layout, a .jsonl file of stream records, or - "
                         "for JSON Lines on stdin")
    sp.add_argument("--chunk", type=positive_int, default=10, help="readings per asset per record (default 10)")
    sp.add_argument("--batch", type=positive_int, default=500, help="records per batch (default 500)")
    sp.add_argument("--max-instances", type=positive_int, default=None,
                    help="instances per endpoint request (default: the endpoint's limit, 1000 locally)")
    sp.add_argument("--url", default=None, help="a running endpoint (predmaint serve) instead of in-process")
    sp.add_argument("--model", default=None, metavar="VERSION", help="registry model version (default: champion)")
    sp.add_argument("--model-dir", default=None, metavar="PATH", help="an extracted model directory")
    sp.add_argument("--horizon", type=horizon, default=None,
                    help="cycles for failure_probability (default 30 for calibrated models)")
    sp.add_argument("--rebuild", action="store_true",
                    help="build every asset's life summary for the model from the archive (after a promotion)")
    sp.set_defaults(func=_stream)
    sp = add("fleet", "print every streamed asset's latest state",
             "Every asset of the stream state: asset_id, readings taken in, last time, rul, rul_lower, "
             "rul_upper, failure_probability, model_version, with_summary.")
    sp.add_argument("--json", action="store_true", help="one JSON object per asset")
    sp.set_defaults(func=_fleet)
