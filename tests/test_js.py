"""The browser client's own tests (tests/js, run by Node's test runner) and its classic build."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO


def test_javascript_unit_tests_pass():
    node = shutil.which("node")
    assert node, "Node.js (node) is needed for the JavaScript unit tests"
    result = subprocess.run(
        [node, "--test", str(REPO / "tests/js")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout


def test_classic_build_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/build_classic_js.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
