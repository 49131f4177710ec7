"""loadtest.html_report: one self-contained page per run (plots inlined, text escaped)."""

from __future__ import annotations

import json
import re

from loadtest_results import OVER_TIME, result

from loadtest.html_report import main, report_page, suite_page


def test_a_full_run_has_every_plot_inlined_and_nothing_external():
    page = report_page(result())
    # the whole run, fan-out over time, latency, memory, memory over the ramp, connect
    assert page.count("data:image/png;base64,") == 6
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "test &lt;cpu&gt;" in page and "<cpu>" not in page
    assert "storm: all back after (s)" in page
    assert "<h2>Slow consumers</h2>" in page and "lost on sockets left open" in page
    assert "<title>wsloop load test</title>" in page


def test_a_peer_run_is_named_after_the_peer():
    page = report_page(result(server={"name": "channels", "pids": [1]}))
    assert "<title>channels load test</title>" in page


def test_a_run_without_phases_still_renders(tmp_path, capsys):
    aborted = result(
        idle=None,
        fanout=None,
        storm=None,
        over_time=None,
        slow_consumers=None,
        warnings=["run aborted: <boom>"],
    )
    path = tmp_path / "aborted.json"
    path.write_text(json.dumps(aborted))
    assert main([str(path)]) == 0
    page = path.with_suffix(".html").read_text()
    assert "data:image" not in page and "run aborted: &lt;boom&gt;" in page
    assert "report:" in capsys.readouterr().out


def test_the_suite_puts_every_scenario_on_one_page():
    rooms = {"tool": "loadtest.rooms", "sockets": 10, "deliveries_per_s": 10, "lost": 0,
             "duplicates": 0, "out_of_order": 0, "latency": {"p50_ms": 1.0, "p99_ms": 2.0},
             "over_time": OVER_TIME}  # fmt: skip
    page = suite_page("suite", [("bench", result()), ("rooms", rooms), ("history", None)])
    assert page.count('<h2 id="s') == 3 and '<a href="#s2">history</a>' in page
    assert "<h3>Headline figures</h3>" in page
    # the bench's six plots and the rooms' time series
    assert page.count("data:image/png;base64,") == 7
    assert "no result: the scenario failed" in page
