"""wsloop.metrics: the Prometheus exposition of a runtime's figures, in one process and summed
over the workers of a pool (prometheus_client's multiprocess files, in processes of their own:
the mode is chosen when prometheus_client is imported)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from wsloop.metrics import FAMILIES, MULTIPROCESS_DIR_ENV, Exporter, Kind
from wsloop.runtime import Metrics

ONE_WORKER = {
    "sockets_open": 3,
    "channels": 2,
    "redis_reconnects": 1,
    **dict.fromkeys((f.name for f in dataclasses.fields(Metrics)), 0),
    "messages_out": 10,
}


def samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_figure_of_a_runtime_is_exported_once():
    runtime_figures = {f.name for f in dataclasses.fields(Metrics)}
    runtime_figures |= {"sockets_open", "channels", "redis_reconnects"}
    keys = [family.key for family in FAMILIES]
    assert sorted(keys) == sorted(runtime_figures)


def test_one_process_reads_the_figures_at_scrape_time():
    figures = dict(ONE_WORKER)
    exporter = Exporter(lambda: figures)
    first = samples(exporter.render().decode())
    assert first["wsloop_sockets_open"] == 3
    assert first["wsloop_messages_sent_total"] == 10
    figures["messages_out"] = 25
    assert samples(exporter.render().decode())["wsloop_messages_sent_total"] == 25
    kinds = {f.name: f.type for f in text_string_to_metric_families(exporter.render().decode())}
    assert kinds == {f.name: f.kind.value for f in FAMILIES}
    assert all(family.help.endswith(".") for family in FAMILIES)
    assert {f.kind for f in FAMILIES} == set(Kind)


WORKER = textwrap.dedent(
    """
    import json, sys
    from wsloop.metrics import Exporter
    steps = json.loads(sys.argv[1])
    figures = {}
    exporter = Exporter.from_environment(lambda: figures)
    for step in steps:
        figures.update(step)
        exporter._sync.sync()
    if sys.argv[2] == "render":
        sys.stdout.write(exporter.render().decode())
    elif sys.argv[2] == "wait":
        print("synced", flush=True)
        sys.stdin.read()
    """
)


def worker(directory, steps: list[dict[str, int]], then: str) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROCESS_DIR_ENV: str(directory)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(steps), then],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_pool_scrape_sums_every_worker_and_forgets_the_gauges_of_dead_ones(tmp_path):
    # Worker A synced twice (counters copy the difference), then died without a word.
    died = worker(tmp_path, [ONE_WORKER, {**ONE_WORKER, "messages_out": 30}], then="exit")
    assert died.wait(30) == 0
    # Worker B is alive and holds 4 sockets.
    alive = worker(tmp_path, [{**ONE_WORKER, "sockets_open": 4, "messages_out": 5}], then="wait")
    try:
        assert alive.stdout.readline().strip() == "synced"
        # Worker C answers the scrape, with no sockets of its own.
        answering = worker(
            tmp_path, [{**ONE_WORKER, "sockets_open": 0, "messages_out": 0}], "render"
        )
        text, _ = answering.communicate(timeout=30)
    finally:
        alive.stdin.close()
        alive.wait(30)
    totals = samples(text)
    assert totals["wsloop_messages_sent_total"] == 30 + 5  # A's counters survive its death
    assert totals["wsloop_sockets_open"] == 4  # A's 3 sockets went with it
