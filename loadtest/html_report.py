"""Self-contained HTML reports of ``loadtest.bench`` results: plots (matplotlib, PNG inlined as
data URIs, no files beside the page) and the headline figures.

python -m loadtest.html_report RESULT.json [-o RESULT.html]   (the bench writes one per run)

One run: the whole run over time (sockets, deliveries/s, RSS per socket held, CPU of each part,
Redis memory, phases marked), deliveries/s and latency p50/p99 over time in every fan-out
phase, latency percentiles per phase, memory per socket (at the end and over the ramp), the
slow consumers, connect times at the ramp and in the reconnect storm.
Two runs (``loadtest.compare --html``): both runs' figures and their ratios.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure as Plot

from .compare import Row
from .figures import key_figures

PERCENTILE_KEYS = ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms")
VERDICT_COLOURS = {"better": "#2a9d4b", "worse": "#c8323c"}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222 }
table { border-collapse: collapse } td, th { padding: .2em .8em; border-bottom: 1px solid #ddd }
td.n { text-align: right; font-variant-numeric: tabular-nums } img { max-width: 100% }
.better { color: #2a9d4b } .worse { color: #c8323c } .muted { color: #777 }
"""


def _image(plot: Plot) -> str:
    buffer = io.BytesIO()
    plot.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(plot)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n"
    )


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def _fanout_over_time(fanout: list[dict[str, Any]]) -> str:
    plot, axes = plt.subplots(len(fanout), 2, figsize=(11, 3 * len(fanout)), squeeze=False)
    for row, entry in zip(axes, sorted(fanout, key=lambda e: e["subscribers"]), strict=True):
        burst, steady = entry["burst"].get("over_time", []), entry["latency"].get("over_time", [])
        row[0].plot([p["t_s"] for p in burst], [p["deliveries_per_s"] for p in burst], marker=".")
        row[0].set_title(f"burst to {entry['subscribers']:,}: deliveries/s")
        for key in ("p50_ms", "p99_ms"):
            row[1].plot([p["t_s"] for p in steady], [p[key] for p in steady], ".-", label=key[:-3])
        row[1].set_title(f"steady to {entry['subscribers']:,}: latency (ms)")
        row[1].legend()
        for axis in row:
            axis.set_xlabel("seconds")
    plot.tight_layout()
    return _image(plot)


def _timeline(points: list[dict[str, Any]]) -> str:
    """A steady phase's ``stats.timeline``: deliveries/s and latency p50/p99 per bucket."""
    plot, (rate, latency) = plt.subplots(1, 2, figsize=(11, 3.5))
    times = [p["t_s"] for p in points]
    rate.plot(times, [p["deliveries_per_s"] for p in points], ".-")
    rate.set_title("deliveries/s")
    for key in ("p50_ms", "p99_ms"):
        latency.plot(times, [p[key] for p in points], ".-", label=key[:-3])
    latency.set_title("latency (ms)")
    latency.legend()
    for axis in (rate, latency):
        axis.set_xlabel("seconds")
    plot.tight_layout()
    return _image(plot)


def _ramp_over_time(samples: list[dict[str, float]]) -> str:
    """Memory per socket held (the server, nginx; over the first sample, taken before any
    socket opened) and Redis while the sockets open."""
    first = samples[0]
    plot, (per_socket, redis) = plt.subplots(1, 2, figsize=(11, 3.5))
    held = [s for s in samples if s["sockets"] > 0]
    for part in ("server", "nginx"):
        key = f"{part}_rss_kib"
        per_socket.plot(
            [s["sockets"] for s in held],
            [(s[key] - first[key]) / s["sockets"] for s in held],
            ".-",
            label=part,
        )
    per_socket.set_title("RSS per socket held (KiB)")
    per_socket.set_xlabel("sockets held")
    per_socket.legend()
    redis.plot([s["sockets"] for s in samples], [s["redis_used_memory_kib"] for s in samples], ".-")
    redis.set_title("Redis used memory (KiB)")
    redis.set_xlabel("sockets held")
    plot.tight_layout()
    return _image(plot)


def _phase_marks(axis: Any, phases: list[dict[str, Any]]) -> None:
    """A line and a label where the run enters each phase."""
    for mark in phases:
        axis.axvline(mark["t_s"], color="#bbb", linewidth=0.6)
        axis.text(mark["t_s"], 1.0, f" {mark['phase']}", transform=axis.get_xaxis_transform(),
                  rotation=90, va="top", fontsize=7, color="#666")  # fmt: skip


def _run_over_time(samples: list[dict[str, Any]], phases: list[dict[str, Any]], name: str) -> str:
    """The sampler's series: sockets and deliveries/s, RSS per socket held, CPU, Redis."""
    times = [s["t_s"] for s in samples]
    plot, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    traffic, memory, cpu, redis = axes
    traffic.plot(times, [s["deliveries_per_s"] for s in samples], label="deliveries/s")
    traffic.set_title("deliveries/s (0.5 s averages) and sockets open")
    sockets = traffic.twinx()
    sockets.plot(times, [s["sockets"] for s in samples], color="#e07b00", label="sockets open")
    sockets.set_ylim(bottom=0)
    traffic.legend(loc="upper left")
    sockets.legend(loc="upper right")
    first = samples[0]
    for part in ("server", "nginx"):
        key = f"{part}_rss_kib"
        memory.plot(
            times,
            [(s[key] - first[key]) / s["sockets"] if s["sockets"] else None for s in samples],
            label=name if part == "server" else part,
        )
    memory.set_title("RSS per socket held, over the start (KiB)")
    memory.legend(loc="upper right")
    for part in samples[0]["cpu_pct_of_one_core"]:
        label = name if part == "server" else part
        cpu.plot(times, [s["cpu_pct_of_one_core"].get(part, 0) for s in samples], label=label)
    cpu.set_title("CPU (% of one core)")
    cpu.legend(loc="upper right")
    redis.plot(times, [s["redis_used_memory_kib"] for s in samples], label="used memory (KiB)")
    redis.set_title("Redis: used memory (KiB) and connected clients")
    redis.legend(loc="upper left")
    if "redis_connected_clients" in samples[0]:
        clients = redis.twinx()
        clients.plot(times, [s["redis_connected_clients"] for s in samples], color="#e07b00",
                     label="connected clients")  # fmt: skip
        clients.set_ylim(bottom=0)
        clients.legend(loc="upper right")
    redis.set_xlabel("seconds since the sampler started")
    for axis in axes:
        _phase_marks(axis, phases)
    plot.tight_layout()
    return _image(plot)


def _slow_consumers_table(slow: dict[str, Any]) -> str:
    return _figures_table(
        [
            ("stalled sockets", _number(slow["sockets"])),
            ("messages published while they were stalled", _number(slow["messages_each"])),
            ("got every one after release", _number(slow["complete"])),
            ("seconds to drain", _number(slow["drain_s"])),
            ("closed by the server", html.escape(str(slow["closed_by_server"] or 0))),
            ("lost on sockets left open", _number(slow["lost"])),
            ("duplicates / reordered", f"{slow['duplicates']} / {slow['out_of_order']}"),
        ]
    )


def _grouped_bars(groups: dict[str, dict[str, float]], title: str, unit: str, log: bool) -> str:
    plot, axis = plt.subplots(figsize=(11, 3.5))
    labels = list(next(iter(groups.values())))
    width = 0.8 / len(groups)
    for index, (group, values) in enumerate(groups.items()):
        positions = [i + index * width for i in range(len(labels))]
        axis.bar(positions, [values.get(label, 0) for label in labels], width, label=group)
    axis.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(labels))], labels)
    axis.set_title(title)
    axis.set_ylabel(unit)
    if log:
        axis.set_yscale("log")
    axis.legend()
    return _image(plot)


def _percentiles(summary: dict[str, Any]) -> dict[str, float]:
    return {key[:-3]: summary[key] for key in PERCENTILE_KEYS if key in summary}


def _figures_table(figures: list[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(name)}</td><td class="n">{value}</td></tr>'
        for name, value in figures
    )
    return f"<table>{rows}</table>"


def report_page(result: dict[str, Any]) -> str:
    name = result.get("server", {}).get("name", "wsloop")
    return _page(f"{name} load test", report_sections(result))


def report_sections(result: dict[str, Any], level: int = 2) -> list[str]:
    """One result of any tool: when and where, its headline figures, and the plots it has
    data for; headings at ``level``."""

    def heading(text: str) -> str:
        return f"<h{level}>{html.escape(text)}</h{level}>"

    machine = result.get("machine", {})
    name = result.get("server", {}).get("name", "wsloop")
    body = [
        f'<p class="muted">{html.escape(str(result.get("started_at", "")))}, '
        f"{result.get('elapsed_s', '?')} s, {machine.get('nproc')} x "
        f"{html.escape(str(machine.get('cpu_model')))}, Python {machine.get('python')}</p>",
        heading("Headline figures"),
        _figures_table([(f"{f.name} ({f.unit})" if f.unit else f.name, _number(f.value))
                        for f in key_figures(result)]),
    ]  # fmt: skip
    over_time = result.get("over_time")
    if over_time and result.get("tool") == "loadtest.rooms":
        body += [heading("Over time"), _timeline(over_time)]
    elif over_time:
        phases = result.get("phases", [])
        body += [heading("The whole run"), _run_over_time(over_time, phases, name)]
    fanout = result.get("fanout") or []
    if fanout:
        body += [heading("Fan-out over time"), _fanout_over_time(fanout)]
        latency = {
            f"{e['subscribers']:,} {kind}": _percentiles(e[kind]["latency"])
            for e in sorted(fanout, key=lambda e: e["subscribers"])
            for kind in ("burst", "latency")
        }
        body += [
            heading("Latency percentiles per phase"),
            _grouped_bars(latency, "publish to receive", "ms (log)", log=True),
        ]
    connect = {}
    if result.get("idle"):
        idle = result["idle"]
        connect[f"ramp ({idle['ramp']['requested']:,})"] = _percentiles(idle["ramp"]["connect_ms"])
        memory = {"RSS per socket": {name: idle["server_kib_per_socket"],
                                     "nginx": idle["nginx_kib_per_socket"]}}  # fmt: skip
        body += [heading("Memory"), _grouped_bars(memory, "idle sockets", "KiB", log=False)]
        if idle.get("over_time"):
            body += [heading("While the sockets open"), _ramp_over_time(idle["over_time"])]
    if result.get("slow_consumers"):
        body += [heading("Slow consumers"), _slow_consumers_table(result["slow_consumers"])]
    if result.get("storm"):
        storm = result["storm"]
        connect[f"storm ({storm['sockets']:,})"] = _percentiles(storm["open"]["connect_ms"])
    if connect:
        body += [heading("Connect to 101"), _grouped_bars(connect, "handshakes", "ms", log=True)]
    for warning in result.get("warnings", []):
        body.append(f'<p class="worse">warning: {html.escape(warning)}</p>')
    return body


def comparison_page(results: list[dict[str, Any]], labels: tuple[str, str], rows: list[Row]) -> str:
    table = "".join(
        f"<tr><td>{html.escape(r.name)}{f' ({r.unit})' if r.unit else ''}</td>"
        f'<td class="n">{_number(r.before)}</td><td class="n">{_number(r.after)}</td>'
        f'<td class="n">{f"{r.ratio:.2f}x" if r.ratio is not None else ""}</td>'
        f'<td class="{r.verdict}">{r.verdict}</td></tr>'
        for r in rows
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ("figure", *labels, "ratio", ""))
    body = [f"<table><tr>{header}</tr>{table}</table>"]
    compared = [r for r in rows if r.ratio is not None]
    if compared:
        plot, axis = plt.subplots(figsize=(11, 0.3 * len(compared) + 1))
        axis.barh(
            [r.name for r in compared],
            [r.ratio or 0.0 for r in compared],
            color=[VERDICT_COLOURS.get(r.verdict, "#888") for r in compared],
        )
        axis.axvline(1.0, color="#222", linewidth=0.8)
        axis.invert_yaxis()
        axis.set_title(f"{labels[1]} / {labels[0]} (green: better, red: worse beyond noise)")
        body += ["<h2>Ratios</h2>", _image(plot)]
    body += [f"<h2>{html.escape(label)}</h2>" + _figures_table(
        [(f.name, _number(f.value)) for f in key_figures(result)])
        for label, result in zip(labels, results, strict=True)]  # fmt: skip
    return _page(f"load test: {labels[0]} vs {labels[1]}", body)


def suite_page(title: str, scenarios: list[tuple[str, dict[str, Any] | None]]) -> str:
    """Several results on one page (``loadtest.suite``); a scenario without a result (it
    failed) says so."""
    body = [
        "<ul>"
        + "".join(f'<li><a href="#s{i}">{html.escape(name)}</a></li>'
                  for i, (name, _) in enumerate(scenarios))
        + "</ul>"
    ]  # fmt: skip
    for index, (name, result) in enumerate(scenarios):
        body.append(f'<h2 id="s{index}">{html.escape(name)}</h2>')
        if result is None:
            body.append('<p class="worse">no result: the scenario failed (see the log)</p>')
        else:
            body += report_sections(result, level=3)
            if result.get("error"):
                body.append(f'<p class="worse">error: {html.escape(str(result["error"]))}</p>')
    return _page(title, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("-o", "--out", type=Path, help="default: the result's name, .html")
    args = parser.parse_args(argv)
    out = args.out or args.result.with_suffix(".html")
    out.write_text(report_page(json.loads(args.result.read_text())))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
