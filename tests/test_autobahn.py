"""RFC 6455 conformance: the Autobahn|Testsuite fuzzing client (cases 1.* to 10.*) against each
deployment (the websocket pool through nginx, the standalone uWSGI, runserver). Every case must
be OK or INFORMATIONAL (none FAILED, NON-STRICT or UNIMPLEMENTED), for the data frames and for
the closing handshake.

The socket echoes through the real path: ``publish-session`` sends each message to Redis and
``echo`` returns it to the sender; each connection has a session of its own
(``chat.conformance``), so a case never sees the previous case's messages. The stack here
allows 16 MiB messages (cases 9.*) and keeps nothing in history.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from devstack.stack import Deployment, Stack, StackConfig

pytestmark = pytest.mark.autobahn

CASES = [f"{section}.*" for section in range(1, 11)]
PASSING = {"OK", "INFORMATIONAL"}
AGENT = "wsloop"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def wstest() -> str:
    result = subprocess.run(
        ["bash", str(REPO / "tests/autobahn/install.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"Autobahn install failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=list(Deployment), ids=str)
def conformance_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    config = StackConfig.ephemeral(
        Path(tempfile.mkdtemp(prefix="wsloop-autobahn-")),
        deployment=request.param,
        env={
            "WSLOOP_MAX_MESSAGE_BYTES": str(17 * MIB),
            "WSLOOP_SEND_QUEUE_BYTES": str(64 * MIB),
            "WSLOOP_EXPIRE": "0",
            "WSLOOP_HISTORY_LENGTH": "0",
            "WSLOOP_HEARTBEAT": "",
            "WSLOOP_PREFIX": "autobahn",
            "WSLOOP_PROCESS_REQUEST": "chat.conformance.own_session_per_connection",
        },
    )
    with Stack.running(config) as stack:
        yield stack


def test_autobahn_fuzzing_client(wstest, conformance_stack, tmp_path):
    url = f"{conformance_stack.config.ws_url}echo?subscribe-session&publish-session&echo"
    spec = {
        "outdir": str(tmp_path / "reports"),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": CASES,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(
        [wstest, "-m", "fuzzingclient", "-s", "spec.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    index = tmp_path / "reports" / "index.json"
    assert index.exists(), f"no report:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    results = json.loads(index.read_text()).get(AGENT, {})
    # wstest exits 0 even when it reached nothing: the case count proves the run happened.
    assert len(results) > 250, f"only {len(results)} cases ran:\n{run.stdout[-2000:]}"
    verdicts = Counter(r["behavior"] for r in results.values())
    bad = {
        case: (r["behavior"], r["behaviorClose"])
        for case, r in sorted(results.items())
        if r["behavior"] not in PASSING or r["behaviorClose"] not in PASSING
    }
    print(f"autobahn: {len(results)} cases, {dict(verdicts)}")
    assert not bad, f"failing cases: {bad}"
