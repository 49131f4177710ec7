"""What the single-purpose benchmarks (history, slow_consumer) share: the stack options and
writing a result as JSON under ``results/`` with its table on stdout."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .options import RESULTS_DIR


def stack_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the options every benchmark needs to find a running stack."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6380/0")
    parser.add_argument("--prefix", default="", help="the stack's WSLOOP_PREFIX plus ':'")
    parser.add_argument("--out", type=Path, default=None)
    return parser


def publish(result: dict[str, Any], name: str, out: Path | None, table: str) -> Path:
    """Write the JSON (default ``results/<name>-<time>.json``), print the table and the path."""
    path = out or RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    print(table)
    print(f"results: {path}")
    return path
