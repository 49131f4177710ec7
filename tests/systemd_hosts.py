"""Debian 12 hosts with systemd for the Ansible tests, as containers on the suite's engine.

Each host boots /sbin/init from ``tests/hosts/Dockerfile`` on a network of its own (private
addresses the hosts reach each other on), answers ssh with a key made for the run, and
publishes its port 80 on a free loopback port so the helpers can talk to its nginx. Ansible
reaches the hosts over ssh like any server; nothing of wsloop is on them before the playbook.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from docker_engine import DockerEngine, run

from conftest import REPO
from devstack.stack import free_port

IMAGE = "wsloop-testhost:local"
BOOT_TIMEOUT_S = 60.0
SSH_OPTIONS = (
    "StrictHostKeyChecking no",
    "UserKnownHostsFile /dev/null",
    "LogLevel ERROR",
    "ConnectTimeout 10",
)


@dataclass(frozen=True)
class Host:
    name: str
    container: str
    address: str  # on the hosts' private network, reachable from the controller too
    http_port: int  # the host's port 80 on 127.0.0.1


class SystemdHosts:
    """Hosts booted together on one network; ``stop`` removes them and the network."""

    def __init__(self, engine: DockerEngine, workdir: Path) -> None:
        self.engine = engine
        self.workdir = workdir
        self.network = f"wsloop-hosts-{uuid.uuid4().hex[:6]}"
        self.hosts: dict[str, Host] = {}
        self.key = workdir / "id_ed25519"
        self.ssh_config = workdir / "ssh_config"

    def start(self, names: list[str]) -> dict[str, Host]:
        self.engine.docker("build", "-q", "-t", IMAGE, str(REPO / "tests/hosts"))
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], self.engine.env)
        options = "".join(f"    {option}\n" for option in SSH_OPTIONS)
        self.ssh_config.write_text(
            f"Host *\n    User root\n    IdentityFile {self.key}\n    IdentitiesOnly yes\n{options}"
        )
        self.engine.docker("network", "create", self.network)
        for name in names:
            self.hosts[name] = self._boot(name)
        return self.hosts

    def _boot(self, name: str) -> Host:
        short_name = name.split(".", maxsplit=1)[0]
        container = f"{self.network}-{short_name}"
        http_port = free_port()
        self.engine.docker(
            "run", "-d", "--name", container, "--hostname", short_name,
            "--network", self.network,
            "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "--cap-add", "SYS_ADMIN",
            "-p", f"127.0.0.1:{http_port}:80",
            IMAGE,
        )  # fmt: skip
        self._wait_for_boot(container)
        public_key = self.key.with_suffix(".pub").read_text().strip()
        authorize = 'printf "%s\\n" "$1" > ~/.ssh/authorized_keys'  # root's home in the host
        self.exec(container, "sh", "-c", authorize, "sh", public_key)
        inspect = json.loads(self.engine.docker("inspect", container))[0]
        address = inspect["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        return Host(name, container, address, http_port)

    def _wait_for_boot(self, container: str) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            state = subprocess.run(
                ["docker", "exec", container, "systemctl", "is-system-running"],
                env=self.engine.env, capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
            if state in {"running", "degraded"}:
                return
            assert time.monotonic() < deadline, f"{container} did not boot: {state!r}"
            time.sleep(0.5)

    def exec(self, container: str, *argv: str) -> str:
        return self.engine.docker("exec", container, *argv)

    def stop(self) -> None:
        for host in self.hosts.values():
            subprocess.run(
                ["docker", "rm", "-f", host.container],
                env=self.engine.env, capture_output=True, check=False,
            )  # fmt: skip
        subprocess.run(
            ["docker", "network", "rm", self.network],
            env=self.engine.env, capture_output=True, check=False,
        )  # fmt: skip
