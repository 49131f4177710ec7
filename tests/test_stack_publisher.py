"""Publishing as Django code meets it, against a running stack: ``publish_on_commit`` under
random transactions (a checker: what a socket received is compared with the rows the database
kept), and ``apublish`` from an event loop."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

import wsloop
from devstack.stack import Deployment
from helpers import assert_silent, recv, unique_facility, ws_connect

pytestmark = [pytest.mark.stack, pytest.mark.deployments(Deployment.TWO_POOLS)]

SEED = 20261204
TRANSACTIONS = 60


class RolledBack(Exception):
    pass


@dataclass
class Plan:
    """What the random transactions did: every name published, in call order, and whether
    each block around its call committed."""

    facility: str
    calls: list[tuple[str, list[int]]] = field(default_factory=list)  # (name, enclosing blocks)
    committed_blocks: set[int] = field(default_factory=set)
    blocks: int = 0

    def expected(self) -> list[str]:
        return [name for name, blocks in self.calls if set(blocks) <= self.committed_blocks]


def run_block(plan: Plan, rng: random.Random, enclosing: list[int], depth: int) -> None:
    """One atomic block (a transaction at depth 0, a savepoint below) that creates rows and
    publishes their names on commit, with nested blocks, rolled back at random."""
    block = plan.blocks
    plan.blocks += 1
    inside = [*enclosing, block]
    try:
        with transaction.atomic():
            for _ in range(rng.randint(1, 3)):
                if depth < 2 and rng.random() < 0.4:
                    run_block(plan, rng, inside, depth + 1)
                name = f"{plan.facility}-{len(plan.calls)}"
                Group.objects.create(name=name)
                wsloop.publish_on_commit(plan.facility, name, broadcast=True, expire=0)
                plan.calls.append((name, inside))
            if rng.random() < 0.3:
                raise RolledBack
        plan.committed_blocks.add(block)
    except RolledBack:
        pass


def test_publish_on_commit_sends_exactly_the_committed_rows_in_order(stack):
    """Random transactions with savepoints, each rolled back at random, and calls outside any
    transaction (autocommit, published at once): the socket receives the name of every row the
    database kept, in call order, and nothing else."""
    rng = random.Random(SEED)
    plan = Plan(unique_facility("commit"))
    with ws_connect(stack, f"{plan.facility}?subscribe-broadcast") as ws:
        try:
            for _ in range(TRANSACTIONS):
                if rng.random() < 0.2:
                    name = f"{plan.facility}-{len(plan.calls)}"
                    Group.objects.create(name=name)
                    wsloop.publish_on_commit(plan.facility, name, broadcast=True, expire=0)
                    plan.calls.append((name, []))
                else:
                    run_block(plan, rng, [], 0)
            kept = set(
                Group.objects.filter(name__startswith=plan.facility).values_list("name", flat=True)
            )
            expected = plan.expected()
            assert set(expected) == kept  # the checker's model agrees with the database
            assert 0 < len(expected) < len(plan.calls)  # some rolled back, some kept
            received = [recv(ws) for _ in expected]
            assert received == expected
            assert_silent(ws, 0.5)
        finally:
            Group.objects.filter(name__startswith=plan.facility).delete()


def test_nothing_goes_out_before_the_commit(stack):
    facility = unique_facility("commit")
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        with transaction.atomic():
            wsloop.publish_on_commit(facility, "after the commit", broadcast=True, expire=0)
            assert_silent(ws, 0.5)
        assert recv(ws) == "after the commit"


def test_apublish_from_an_event_loop_that_goes_on_meanwhile(stack):
    """An async caller (an async view, ASGI code): the publish runs in a worker thread, so the
    loop's other tasks run while it waits for Redis."""
    facility = unique_facility("async")

    async def scenario() -> tuple[list[int], int, str | None]:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        receivers = [
            await wsloop.apublish(facility, f"async {n}", broadcast=True, expire=0)
            for n in range(20)
        ]
        position = await wsloop.aposition(facility)
        stop.set()
        await ticker
        return receivers, ticks, position

    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        started = time.monotonic()
        receivers, ticks, position = asyncio.run(scenario())
        assert all(count >= 1 for count in receivers)
        assert [recv(ws) for _ in range(20)] == [f"async {n}" for n in range(20)]
    assert ticks > 20, f"the loop ran {ticks} times in {time.monotonic() - started:.2f} s"
    assert position == wsloop.position(facility) and position is not None
