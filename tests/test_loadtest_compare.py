"""loadtest.compare and loadtest.figures: figures matched by name, ratios, and a verdict by each
figure's direction only beyond the machine's noise."""

from __future__ import annotations

import copy
import json

from loadtest_results import result

from loadtest.compare import NOISE, compare, main, render


def test_the_same_run_is_the_same_everywhere():
    rows = compare(result(), result())
    assert rows and {row.verdict for row in rows} == {"same"}


def test_verdicts_follow_each_figures_direction_beyond_noise():
    faster = result()
    faster["fanout"][0]["burst"]["deliveries_per_s"] *= 2  # higher is better
    faster["idle"]["server_kib_per_socket"] *= 1 + NOISE / 2  # within noise
    faster["storm"]["open"]["elapsed_s"] *= 3  # lower is better
    verdicts = {row.name: row.verdict for row in compare(result(), faster)}
    assert verdicts["burst to 1,000 subscribers"] == "better"
    assert verdicts["server RSS per socket"] == "within noise"
    assert verdicts["storm: all back after"] == "worse"


def test_a_loss_that_appears_is_worse_and_a_missing_phase_is_blank():
    lossy = result(storm=None)
    lossy["fanout"][0]["latency"]["lost"] = 5
    rows = {row.name: row for row in compare(result(), lossy)}
    assert rows["lost, duplicated or reordered, 1,000 subscribers"].verdict == "worse"
    storm = rows["storm: all back after"]
    assert storm.after is None and storm.verdict == "" and storm.ratio is None


def test_the_command_prints_the_table_and_writes_the_page(tmp_path, capsys):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(result()))
    slower = copy.deepcopy(result())
    slower["fanout"][0]["latency"]["latency"]["p99_ms"] = 50.0
    after.write_text(json.dumps(slower))
    page = tmp_path / "compare.html"
    assert main([str(before), str(after), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "latency p99, 1,000 subscribers (ms)" in printed and "2.00x" in printed
    assert "worse" in printed
    assert page.read_text().count("data:image/png;base64,") == 1
    assert render([], ("a", "b")).startswith("figure")


ROOMS = {"tool": "loadtest.rooms", "sockets": 10_000, "deliveries_per_s": 9958, "lost": 0,
         "duplicates": 0, "out_of_order": 0,
         "latency": {"p50_ms": 0.37, "p99_ms": 8.8, "max_ms": 49.0}}  # fmt: skip
HISTORY = {"tool": "loadtest.history",
           "memory": [{"payload_bytes": 100, "stream_bytes_per_1000": 185_144}],
           "replay_concurrent": {"clients": 100, "messages_recovered_per_s": 79_000}}  # fmt: skip
SLOW = {"tool": "loadtest.slow_consumer", "slow_consumers_closed": 1,
        "quiet": {"lost": 0, "latency": {"p99_ms": 83.5}},
        "with_slow_consumer": {"lost": 0, "latency": {"p99_ms": 138.4}}}  # fmt: skip


def test_every_tools_results_have_figures_to_compare():
    worse_rooms = copy.deepcopy(ROOMS) | {"lost": 3}
    verdicts = {row.name: row.verdict for row in compare(ROOMS, worse_rooms)}
    assert verdicts["lost, duplicated or reordered"] == "worse"
    assert verdicts["latency p99"] == "same"
    names = [row.name for row in compare(HISTORY, HISTORY)]
    assert names == [
        "Redis memory per 1,000 messages of 100 bytes",
        "replay to 100 clients at once",
    ]
    assert {row.name for row in compare(SLOW, SLOW)} == {
        "p99, quiet",
        "lost, quiet",
        "p99, with a slow consumer",
        "lost, with a slow consumer",
        "slow consumers closed",
    }
