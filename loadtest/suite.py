"""``python -m loadtest.suite``: every scenario, each on a stack started fresh for it, into one
report.

Unlike the single tools (which measure a stack that is already running), the suite starts and
stops its own stacks (``devstack``: Redis, Django and wsloop pools, nginx, on free loopback
ports, in a temporary directory), so every scenario starts from a fresh worker (memory figures
need one) and nothing else shares the machine's ports. Scenarios, in order:

* ``bench``: idle capacity, reconnect storm, broadcast fan-out with 1 % slow consumers mixed in;
* ``rooms``: 1,000 chat rooms of 10 sockets; ``users``: 1,000 logged-in users x 10 tabs;
* ``history``: Redis memory per message kept, replay throughput;
* ``slow consumer``: latency of 1,000 sockets while one that never reads is cut;
* with ``--peer channels``: the bench's shape against Django Channels on uvicorn (its layer in
  the fresh stack's Redis), published through ``loadtest.peers.channels_publish``.

Writes ``results/suite-<time>/``: each scenario's JSON (and the bench's own HTML), its output,
and ``index.html`` with everything on one page. A measurement: it exits 1 only when a scenario
could not run at all. ``--quick``: small shapes, about 1.5 minutes in all.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.stack import Stack, StackConfig, free_port

from . import probes
from .html_report import suite_page
from .options import RESULTS_DIR

SCENARIO_TIMEOUT_S = 900.0
PEER_START_TIMEOUT_S = 30.0
# channels_redis's default connection pool refuses connects beyond a few hundred per second
# (HTTP 500, "Too many connections"): the peer's ramps are slower so that it holds its sockets.
PEER_RAMP_PER_S = 500
PEER_REDIS_DB = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    peer: str = ""


SCENARIOS = (
    Scenario("bench", "loadtest.bench", (), ("--quick",)),
    Scenario("rooms", "loadtest.rooms", (), ("--rooms=100", "--seconds=5")),
    Scenario(
        "users",
        "loadtest.rooms",
        ("--audience=user",),
        ("--rooms=100", "--seconds=5"),
    ),
    Scenario("history", "loadtest.history", (), ("--clients=20",)),
    Scenario("slow consumer", "loadtest.slow_consumer", (), ("--sockets=200",)),
)
PEERS = {
    "channels": Scenario(
        "bench: Django Channels",
        "loadtest.bench",
        (
            "--peer=channels",
            "--url-path=/ws/{facility}",
            f"--ramp={PEER_RAMP_PER_S}",
            f"--storm-ramp={PEER_RAMP_PER_S}",
            # Fan-out to 1,000 only, with 50,000-delivery bursts: at its few thousand deliveries/s
            # the default phases would outlast their timeouts.
            "--subscribers=1000",
            "--burst-deliveries=50000",
            "--publish=command",
            f"--publish-command={sys.executable} -m loadtest.peers.channels_publish",
        ),
        ("--sockets=1000", "--latency-seconds=3", "--idle-seconds=1"),
        peer="channels",
    )
}


@contextlib.contextmanager
def channels_server(redis_url: str, log: Path) -> Iterator[str]:
    """Django Channels on uvicorn on a free port; its base URL."""
    port = free_port()
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "loadtest.peers.channels_app:application",
             f"--port={port}", "--log-level=warning"],
            env={**os.environ, "REDIS_URL": redis_url},
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + PEER_START_TIMEOUT_S
            while not probes.listening_pids(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Channels peer did not start: see {log}")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(10)


def run_scenario(scenario: Scenario, quick: bool, out_dir: Path) -> dict[str, Any] | None:
    """Start a stack, run the scenario's tool against it, stop the stack; its result."""
    slug = scenario.name.replace(" ", "-").replace(":", "")
    out = out_dir / f"{slug}.json"
    log = out_dir / f"{slug}.log"
    with tempfile.TemporaryDirectory(prefix="wsloop-suite-") as var_dir:
        config = StackConfig.ephemeral(Path(var_dir))
        with Stack.running(config) as stack, contextlib.ExitStack() as peers:
            base_url, redis_url = stack.config.base_url, stack.config.redis_url
            env = dict(os.environ)
            if scenario.peer:
                redis_url = f"{redis_url.rsplit('/', 1)[0]}/{PEER_REDIS_DB}"
                base_url = peers.enter_context(
                    channels_server(redis_url, out_dir / f"{slug}.server.log")
                )
                env["REDIS_URL"] = redis_url
            argv = [
                sys.executable,
                "-m",
                scenario.module,
                *(scenario.quick_args if quick else ()),
                *scenario.args,
                f"--base-url={base_url}",
                f"--redis-url={redis_url}",
                f"--out={out}",
            ]
            print(f"== {scenario.name}: {' '.join(argv[2:])}", file=sys.stderr, flush=True)
            with log.open("w") as output:
                completed = subprocess.run(
                    argv,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=SCENARIO_TIMEOUT_S,
                    check=False,
                )
    if not out.exists():
        print(f"   failed (exit {completed.returncode}): see {log}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    print(f"   done (exit {completed.returncode}): {out}", file=sys.stderr, flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.suite", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes, about 1.5 minutes")
    parser.add_argument(
        "--only", action="append", default=[], help="run this scenario only (repeatable)"
    )
    parser.add_argument("--peer", action="append", default=[], choices=sorted(PEERS))
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    scenarios += [PEERS[name] for name in args.peer]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out_dir or RESULTS_DIR / f"suite-{stamp}{'-quick' if args.quick else ''}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [(s.name, run_scenario(s, args.quick, out_dir)) for s in scenarios]
    index = out_dir / "index.html"
    index.write_text(suite_page(f"wsloop load test suite {stamp}", results))
    (out_dir / "suite.json").write_text(
        json.dumps({"scenarios": [name for name, _ in results], "quick": args.quick}, indent=1)
    )
    print(f"report: {index}")
    return 1 if any(result is None for _, result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
