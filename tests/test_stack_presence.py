"""Presence across the stack: who is connected, join and leave events, dead workers expiring."""

from __future__ import annotations

import json
import os
import signal

import pytest

import wsloop
from devstack.stack import Deployment
from helpers import http_request, login, recv, unique_facility, wait_until, ws_connect

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def sessions(stack):
    return {name: login(stack, name) for name in ("alice", "bob", "carol")}


def test_presence_lists_users_with_their_socket_counts(stack, sessions):
    facility = unique_facility()
    flags = f"{facility}?subscribe-broadcast"
    with (
        ws_connect(stack, flags, session=sessions["alice"]),
        ws_connect(stack, flags, session=sessions["alice"]),
        ws_connect(stack, flags, session=sessions["bob"]),
        ws_connect(stack, flags),
    ):
        wait_until(
            lambda: wsloop.presence(facility) == {"alice": 2, "bob": 1},
            what="alice twice and bob, the anonymous socket not counted",
        )
    wait_until(lambda: wsloop.presence(facility) == {}, what="everyone gone")


def test_presence_flag_receives_join_and_leave_events(stack, sessions):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?presence&envelope", session=sessions["carol"]) as watcher:
        assert json.loads(recv(watcher))["type"] == "position"
        own_join = json.loads(recv(watcher))
        assert (own_join["type"], own_join["user"]) == ("join", "carol")
        with ws_connect(stack, f"{facility}?subscribe-broadcast", session=sessions["bob"]):
            join = json.loads(recv(watcher))
            assert (join["type"], join["user"]) == ("join", "bob")
        leave = json.loads(recv(watcher))
        assert leave == {**join, "type": "leave"}


@pytest.mark.deployments(Deployment.TWO_POOLS, Deployment.STANDALONE)
def test_a_killed_workers_entries_expire_by_themselves(stack, sessions):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast", session=sessions["alice"]):
        wait_until(lambda: wsloop.presence(facility) == {"alice": 1}, what="alice present")
        _, _, body = http_request(stack, "GET", "/healthz/wsloop")
        os.kill(json.loads(body)["pid"], signal.SIGKILL)
        wait_until(
            lambda: wsloop.presence(facility) == {},
            timeout=15,
            what="the dead worker's entry expired",
        )
    wait_until(lambda: stack.healthy("/healthz/wsloop"), what="uWSGI respawned the worker")
