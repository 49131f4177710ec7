"""What the coordinator reads about the server side: health JSON, /proc, Redis CLIENT LIST.

All of it assumes the stack runs on this machine (the benchmark only talks to 127.0.0.1):

* memory: ``VmRSS`` from ``/proc/<pid>/status`` (KiB, resident set, shared pages included);
* CPU: ``utime + stime`` from ``/proc/<pid>/stat`` (seconds of CPU used so far);
* nginx workers: the processes holding the listening socket of the HTTP port (found by its
  inode in ``/proc/net/tcp`` and ``/proc/*/fd``), so other nginx instances on the machine (other
  people's test stacks) are not counted;
* Redis connections of a wsloop worker: ``CLIENT LIST`` entries named ``wsloop:<pid>`` or
  ``wsloop:<pid>:<role>`` (wsloop names its connections with ``CLIENT SETNAME``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import urllib.request
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

HTTP_TIMEOUT_S = 5.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
TCP_LISTEN_STATE = "0A"


def http_json(base_url: str, path: str) -> dict[str, Any]:
    """GET ``base_url + path`` and decode its JSON body."""
    with urllib.request.urlopen(base_url + path, timeout=HTTP_TIMEOUT_S) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def prometheus_samples(base_url: str, path: str) -> dict[str, float]:
    """GET a Prometheus text exposition; {sample name: value} (labels are not used here)."""
    with urllib.request.urlopen(base_url + path, timeout=HTTP_TIMEOUT_S) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (``VmRSS``); -1 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_S


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN_STATE and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listening_pids(port: int) -> list[int]:
    """Processes that hold a socket listening on ``port`` (every nginx worker shares it)."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            for fd in fds:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                    found.append(int(entry))
                    break
        except OSError:
            continue
    return sorted(found)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (a server's master and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return sorted(tree)


def nginx_worker_pids(port: int) -> list[int]:
    return [pid for pid in listening_pids(port) if cmdline(pid).startswith("nginx: worker")]


def wsloop_redis_connections(client: redis.Redis, pid: int) -> list[str]:
    """Names of the Redis connections a wsloop worker holds (``wsloop:<pid>``, ``...:sub``)."""
    exact = f"wsloop:{pid}"
    names = []
    for entry in client.client_list():
        name = entry.get("name") or ""
        if name == exact or name.startswith(exact + ":"):
            names.append(name)
    return sorted(names)


def redis_info(client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    clients = client.info("clients")
    return {
        "version": info.get("redis_version"),
        "pid": info.get("process_id"),
        "connected_clients": clients.get("connected_clients"),
    }


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total_kib = -1
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
    except OSError:
        pass

    def sysctl(name: str) -> str:
        try:
            return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
        except OSError:
            return ""

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total_kib // 1024,
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "open_files_soft_hard": [soft, hard],
        "somaxconn": sysctl("net.core.somaxconn"),
        "ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
    }
