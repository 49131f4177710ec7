"""/metrics/wsloop on every deployment: Prometheus's text format, the pool's sockets and
deliveries (summed over the websocket workers where there are several), local scrapers only."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wsloop
from helpers import (
    channel,
    http_request,
    recv,
    unique_facility,
    wait_subscribed,
    wait_until,
    ws_connect,
)

pytestmark = pytest.mark.stack

SOCKETS = 3
MESSAGES = 2


def scrape(stack) -> dict[str, float]:
    status, headers, body = http_request(stack, "GET", "/metrics/wsloop")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_count_open_sockets_and_deliveries(stack):
    before = scrape(stack)
    facility = unique_facility()
    with contextlib.ExitStack() as opened:
        sockets = [
            opened.enter_context(ws_connect(stack, f"{facility}?subscribe-broadcast"))
            for _ in range(SOCKETS)
        ]
        wait_subscribed(stack, channel("broadcast", facility))
        for number in range(MESSAGES):
            wsloop.publish(facility, f"m{number}", broadcast=True, expire=0)
        assert all(recv(ws) == f"m{n}" for ws in sockets for n in range(MESSAGES))
        wait_until(
            lambda: scrape(stack)["wsloop_sockets_open"] >= before["wsloop_sockets_open"] + SOCKETS,
            what="the open sockets counted",
        )
        during = scrape(stack)
        delivered = during["wsloop_messages_sent_total"] - before["wsloop_messages_sent_total"]
        assert delivered >= SOCKETS * MESSAGES
        opened_now = during["wsloop_sockets_opened_total"] - before["wsloop_sockets_opened_total"]
        assert opened_now >= SOCKETS
        assert during["wsloop_channels"] >= 1
    wait_until(
        lambda: scrape(stack)["wsloop_sockets_open"] == before["wsloop_sockets_open"],
        what="closed sockets no longer counted",
    )
