"""``python -m devstack run``: the whole stack in the foreground, Ctrl-C stops it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from .stack import Deployment, Stack, StackConfig


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["run"])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="HTTP port of nginx (default 8000, or $PORT)",
    )
    parser.add_argument(
        "--deployment",
        type=Deployment,
        choices=list(Deployment),
        default=Deployment(os.environ.get("DEPLOYMENT", Deployment.TWO_POOLS)),
        help="two-pools (nginx + both uWSGI pools, the default), standalone (one uWSGI) "
        "or runserver (manage.py runserver); or $DEPLOYMENT",
    )
    args = parser.parse_args()
    stack = Stack(StackConfig(deployment=args.deployment, http_port=args.port))
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
        print(
            f"\nwsloop stack ({args.deployment}) is up: {stack.config.base_url}/  "
            "(log in as alice, bob or carol, "
            "password wsloop-demo; Ctrl-C stops)\n",
            flush=True,
        )
        while not stopping:
            for service in stack.services.values():
                if not service.running:
                    print(f"{service.name} exited, stopping the stack", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"stack failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
