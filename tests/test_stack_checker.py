"""The recovery checker (loadtest.checker), CI-sized, on every deployment: 20 clients dropping
their connections at random (clean closes, FINs and RSTs without close frames) about 500 times
in all while 2,000 numbered messages are published steadily and in bursts, with Redis restarted
and the websocket worker killed in the middle of it. Nothing may be found: no duplicate, gap,
reorder or unexplained resync."""

from __future__ import annotations

import pytest

from loadtest import checker
from loadtest.faults import Fault

pytestmark = pytest.mark.stack


def test_the_checker_finds_nothing_under_churn_and_faults(stack):
    result = checker.run(stack, checker.QUICK)
    print(checker.render(result))
    analysis = result["analysis"]
    assert analysis["clean"], analysis["examples"]
    assert not result["errors"]
    assert {f["fault"] for f in result["faults"]} >= {Fault.REDIS_RESTART, Fault.WORKER_KILL}
    assert result["reconnects"] >= 500
    assert sum(result["drops"].values()) >= checker.QUICK.reconnects * 0.6
    assert all(result["drops"][how] for how in ("clean", "cut-fin", "cut-rst"))
    assert result["history_entries"] >= checker.QUICK.messages * 0.95
    assert analysis["owed"] > 0 and analysis["delivered"] == analysis["owed"]
