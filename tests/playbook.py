"""Run ansible/site.yml against test hosts, the way an operator runs it.

The example inventory of a layout is copied as it is, but for its host_vars: the test writes
them (an operator writes their own), saying how to reach the test hosts (address, root over ssh
with the run's key), giving each its private address, and letting the site answer on 127.0.0.1
with the demo users. The secrets are random, in a vault.yml encrypted with ansible-vault, as
docs/deploy.md tells operators to do.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from systemd_hosts import Host, SystemdHosts

from conftest import REPO
from helpers import DEMO_PASSWORD

ANSIBLE_DIR = REPO / "ansible"
CONVERGE_TIMEOUT_S = 900
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)


def ansible_env() -> dict[str, str]:
    """The environment for Ansible's commands: this virtualenv's, ansible/ansible.cfg."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@dataclass
class Run:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP as {host: {"ok": n, "changed": n, "failed": n, ...}}."""
        recap_part = self.output.rpartition("PLAY RECAP")[2]
        return {
            host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in RECAP_LINE.findall(recap_part)
        }

    def assert_succeeded(self) -> None:
        recap = self.recap()
        failed = {h: c for h, c in recap.items() if c.get("failed") or c.get("unreachable")}
        assert self.returncode == 0 and recap and not failed, self.output[-6000:]


class Playbook:
    def __init__(self, layout: str, hosts: SystemdHosts, workdir: Path) -> None:
        self.hosts = hosts
        self.inventory = workdir / "inventory"
        shutil.copytree(ANSIBLE_DIR / "inventories/example" / layout, self.inventory)
        self.vault_password_file = workdir / "vault-password"
        self.vault_password_file.write_text(secrets.token_hex(16))
        self.redis_password = secrets.token_hex(24)
        self._write_vault()

    def _write_vault(self) -> None:
        vault = self.inventory / "group_vars/all/vault.yml"
        vault.write_text(
            yaml.safe_dump(
                {
                    "vault_wsloop_secret_key": secrets.token_hex(32),
                    "vault_redis_password": self.redis_password,
                    "vault_postgresql_password": secrets.token_hex(24),
                    "vault_wsloop_demo_password": DEMO_PASSWORD,
                }
            )
        )
        encrypted = self._ansible(
            "ansible-vault", "encrypt", "--vault-password-file", str(self.vault_password_file),
            str(vault),
        )  # fmt: skip
        assert encrypted.returncode == 0, encrypted.output
        assert vault.read_text().startswith("$ANSIBLE_VAULT;")

    def reach(self, started: dict[str, Host], *, private: bool, demo: bool = True) -> None:
        """Point the inventory's host names at the started hosts (with the demo's users when
        the project is the demo)."""
        host_vars = self.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        for name, host in started.items():
            settings: dict[str, Any] = {
                "ansible_host": host.address,
                "ansible_user": "root",
                "ansible_ssh_common_args": f"-F {self.hosts.ssh_config}",
                "wsloop_release_allowed_hosts": ["127.0.0.1", "localhost"],
                "wsloop_release_demo_users": demo,
            }
            if private:
                settings["private_address"] = host.address
            (host_vars / f"{name}.yml").write_text(yaml.safe_dump(settings))

    def add_group_vars(self, name: str, text: str) -> None:
        """A file of the operator's own in group_vars/all/ (the project to deploy, say)."""
        (self.inventory / "group_vars/all" / name).write_text(text)

    def converge(self, *extra: str) -> Run:
        return self._ansible(
            "ansible-playbook", "-i", str(self.inventory),
            "--vault-password-file", str(self.vault_password_file), "site.yml", *extra,
        )  # fmt: skip

    def _ansible(self, program: str, *args: str) -> Run:
        result = subprocess.run(
            [program, *args],
            cwd=ANSIBLE_DIR, env=ansible_env(), capture_output=True, text=True,
            timeout=CONVERGE_TIMEOUT_S, check=False,
        )  # fmt: skip
        return Run(result.returncode, result.stdout + result.stderr)
