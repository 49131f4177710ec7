"""The bench's result as the table it prints at the end (the JSON has everything)."""

from __future__ import annotations

import math
from typing import Any

# wsloop's targets (the issue's): judged only on a wsloop run.
TARGET_SOCKETS = 10_000
TARGET_KIB_PER_SOCKET = 16.0
TARGET_REDIS_CONNECTIONS = 2


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _meets(ok: bool, judged: bool = True) -> str:
    if not judged:
        return "no target for a peer"
    return "meets target" if ok else "MISSES target"


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = result.get("machine", {})
    params = result.get("parameters", {})
    server = result.get("server", {})
    name = server.get("name", "wsloop")
    wsloop = name == "wsloop"
    lines.append(
        f"{name} load test {result.get('started_at', '')}"
        f"{' (quick)' if params.get('quick') else ''}, {result.get('elapsed_s', '?')} s"
    )
    lines.append(
        f"machine: {machine.get('nproc')} x {machine.get('cpu_model')}, "
        f"Python {machine.get('python')}, load {machine.get('load_avg_1_5_15')}"
    )
    if server:
        lines.append(
            f"server: {name} pids {server.get('pids')}, nginx workers "
            f"{server.get('nginx_worker_pids')}, redis {server.get('redis_version')}, "
            f"channel {server.get('channel')}, published through {server.get('publish')}"
        )
    idle = result.get("idle")
    if idle:
        lines += _render_idle(idle, params, name, wsloop)
    fanout = result.get("fanout") or []
    if fanout:
        lines += [
            "",
            f"broadcast fan-out (one facility; subs = sockets on it, "
            f"{params.get('slow_consumers', 0)} of them stalled)",
            "  subs    | burst msgs  deliveries/s  lost  dup  ooo | steady msg/s  deliveries/s"
            "  p50 ms  p99 ms  max ms  lost",
        ]
        for entry in sorted(fanout, key=lambda e: e["subscribers"]):
            b, s = entry["burst"], entry["latency"]
            lat = s["latency"]
            lines.append(
                f"  {entry['subscribers']:>7,} | {b['messages']:>10,}  "
                f"{_fmt(b['deliveries_per_s']):>12}  {b['lost']:>4}  {b['duplicates']:>3}  "
                f"{b['out_of_order']:>3} | {s['publish_rate_per_s']:>12g}  "
                f"{_fmt(s['deliveries_per_s']):>12}  {_fmt(lat.get('p50_ms')):>6}  "
                f"{_fmt(lat.get('p99_ms')):>6}  {_fmt(lat.get('max_ms')):>6}  {s['lost']:>4}"
            )
        for entry in sorted(fanout, key=lambda e: e["subscribers"]) if wsloop else ():
            probe = entry["burst"].get("health_probe_during", {})
            lines.append(
                f"  health check during the {entry['subscribers']:,} burst: p50/max "
                f"{_fmt(probe.get('p50_ms'))} / {_fmt(probe.get('max_ms'))} ms "
                f"({probe.get('count', 0)} probes, {probe.get('failures', 0)} failed)"
            )
        lines.append(
            f"  CPU per phase ({name} / nginx / redis / clients): % of one core | us per delivery"
        )
        parts = ("server", "nginx", "redis", "clients")
        for entry in sorted(fanout, key=lambda e: e["subscribers"]):
            for kind in ("burst", "latency"):
                usage = entry[kind].get("cpu", {})
                pct = usage.get("cpu_pct_of_one_core", {})
                cost = usage.get("cpu_us_per_delivery", {})
                lines.append(
                    f"    {entry['subscribers']:>7,} {kind:<8} "
                    + " / ".join(_fmt(pct.get(p)) for p in parts)
                    + " | "
                    + " / ".join(_fmt(cost.get(p)) for p in parts)
                )
    if wsloop:
        lines += _render_server_counts(fanout)
    lines += _render_slow_consumers(result.get("slow_consumers"))
    lines += _render_storm(result.get("storm"), name)
    after = result.get("after_close")
    if after and idle:
        lines += [
            "",
            f"after closing all: {name} holds {after['server_sockets']} sockets, RSS "
            f"{_fmt(after['server_rss_kib'])} KiB "
            f"(baseline {_fmt(idle['server_rss_kib']['before'])})",
        ]
    for warning in result.get("warnings", []):
        lines.append(f"warning: {warning}")
    if result.get("error"):
        lines.append(f"ERROR: {result['error']}")
    return "\n".join(lines)


def _render_idle(
    idle: dict[str, Any], params: dict[str, Any], name: str, wsloop: bool
) -> list[str]:
    ramp = idle["ramp"]
    redis_conns = idle["redis_connections"]
    per_socket = idle["server_kib_per_socket"]
    counted_by = "server count" if idle.get("server_counts_sockets", True) else "client count"
    connect = ramp["connect_ms"]
    held_note = (
        f"({_meets(idle['server_sockets'] >= TARGET_SOCKETS, wsloop)}: {TARGET_SOCKETS:,})"
        if ramp["requested"] >= TARGET_SOCKETS
        else f"(target {TARGET_SOCKETS:,} not tried in this run)"
    )
    lines = [
        "",
        f"idle sockets ({name})",
        f"  sockets requested             {_fmt(ramp['requested'])}",
        f"  sockets held ({counted_by})   {_fmt(idle['server_sockets'])}   {held_note}",
        f"  connect failures              {_fmt(ramp['failures'])}  "
        f"{ramp['failures_by_kind'] or ''}",
        f"  ramp                          {_fmt(ramp['ramp_requested_per_s'])}/s requested, "
        f"{_fmt(ramp['ramp_achieved_per_s'])}/s achieved",
        f"  connect to 101 p50/p99/max    {_fmt(connect.get('p50_ms'))} / "
        f"{_fmt(connect.get('p99_ms'))} / {_fmt(connect.get('max_ms'))} ms",
        f"  server RSS before / at N      {_fmt(idle['server_rss_kib']['before'])} / "
        f"{_fmt(idle['server_rss_kib']['at_n'])} KiB",
        f"  server RSS per socket         {_fmt(per_socket)} KiB   "
        f"({_meets(per_socket <= TARGET_KIB_PER_SOCKET, wsloop)}: <= "
        f"{TARGET_KIB_PER_SOCKET:g})",
        f"  nginx workers RSS per socket  {_fmt(idle['nginx_kib_per_socket'])} KiB",
    ]
    if params.get("users"):
        lines.append(
            f"  logged-in users online        {_fmt(idle.get('users_online'))} of "
            f"{params['users']:,} (wsloop's presence)"
        )
    if wsloop:
        lines.append(
            f"  redis connections 0 / N / max {redis_conns['at_0']} / {redis_conns['at_n']} / "
            f"{redis_conns['max_sampled']}   "
            f"({_meets(redis_conns['max_sampled'] <= TARGET_REDIS_CONNECTIONS)}: <= "
            f"{TARGET_REDIS_CONNECTIONS})"
        )
    return lines


def _render_server_counts(fanout: list[dict[str, Any]]) -> list[str]:
    if not fanout:
        return []
    lines = ["  server's own count (/metrics/wsloop): messages sent per phase, stalled included"]
    for entry in sorted(fanout, key=lambda e: e["subscribers"]):
        counted = [
            round(entry[kind].get("server_metrics", {}).get("wsloop_messages_sent_total", 0))
            for kind in ("burst", "latency")
        ]
        delivered = [entry[kind]["deliveries"] for kind in ("burst", "latency")]
        lines.append(
            f"    {entry['subscribers']:>7,} burst {_fmt(counted[0])} sent / "
            f"{_fmt(delivered[0])} received, steady {_fmt(counted[1])} / {_fmt(delivered[1])}"
        )
    return lines


def _render_slow_consumers(slow: dict[str, Any] | None) -> list[str]:
    if not slow:
        return []
    return [
        "",
        f"slow consumers: {slow['sockets']:,} sockets read nothing during the fan-out phases",
        f"  then got all {slow['messages_each']:,} messages    {_fmt(slow['complete'])} "
        f"(after {_fmt(slow['drain_s'])} s)",
        f"  closed by the server          {slow['closed_by_server'] or 0}",
        f"  lost / duplicates / reordered {slow['lost']} / {slow['duplicates']} / "
        f"{slow['out_of_order']} (on sockets left open: must be 0)",
    ]


def _render_storm(storm: dict[str, Any] | None, name: str) -> list[str]:
    if not storm:
        return []
    opened, connect = storm["open"], storm["open"]["connect_ms"]
    return [
        "",
        f"reconnect storm: {storm['sockets']:,} sockets close and come back at once",
        f"  back / failures               {_fmt(opened['opened'])} / "
        f"{_fmt(opened['failures'])} {opened['failures_by_kind'] or ''}",
        f"  all back after                {_fmt(opened['elapsed_s'])} s "
        f"({_fmt(opened['ramp_achieved_per_s'])}/s)",
        f"  connect to 101 p50/p99/max    {_fmt(connect.get('p50_ms'))} / "
        f"{_fmt(connect.get('p99_ms'))} / {_fmt(connect.get('max_ms'))} ms",
        f"  {name + ' CPU per handshake':<30}{_fmt(storm['server_cpu_us_per_handshake'])} us",
    ]
