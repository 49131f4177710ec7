"""tools/release_archive.py: the same shipped files give the same bytes and id; caches are left
out; any shipped change gives a new id."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from tools.release_archive import SHIPPED, archive_bytes, main, release_id


@pytest.fixture
def source(tmp_path: Path) -> Path:
    for name in SHIPPED:
        if name not in {"app", "wsloop", "uwsgi"}:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(f"{name}\n")
        else:
            (tmp_path / name / "pkg").mkdir(parents=True)
            (tmp_path / name / "pkg/module.py").write_text("VALUE = 1\n")
            (tmp_path / name / "pkg/__pycache__").mkdir()
            (tmp_path / name / "pkg/__pycache__/module.cpython-311.pyc").write_bytes(b"\0")
            (tmp_path / name / "pkg.egg-info").mkdir()
            (tmp_path / name / "pkg.egg-info/PKG-INFO").write_text("x")
    return tmp_path


def names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return tar.getnames()


def test_the_same_files_give_the_same_bytes_whenever_they_were_touched(source):
    first = archive_bytes(source)
    time.sleep(0.01)
    (source / "app/pkg/module.py").touch()
    assert archive_bytes(source) == first
    assert gzip.decompress(first)  # a plain gzip, no timestamp in its header
    assert first[4:8] == b"\0\0\0\0"


def test_caches_are_left_out(source):
    listed = names(archive_bytes(source))
    assert "app/pkg/module.py" in listed and "pyproject.toml" in listed
    assert not [name for name in listed if "__pycache__" in name or ".egg-info" in name]


def test_a_changed_file_names_a_new_release(source):
    before = release_id(archive_bytes(source))
    (source / "wsloop/pkg/module.py").write_text("VALUE = 2\n")
    after = release_id(archive_bytes(source))
    assert before != after and len(after) == 12


def test_a_missing_part_is_an_error(source):
    (source / "pyproject.toml").unlink()
    with pytest.raises(FileNotFoundError, match=r"pyproject\.toml"):
        archive_bytes(source)


def test_the_command_writes_the_archive_and_prints_its_id(tmp_path, capsys):
    output = tmp_path / "out/release.tar.gz"
    main([str(output), "--source", str(REPO)])
    printed = capsys.readouterr().out.strip()
    assert printed == release_id(output.read_bytes())
    assert "wsloop/static/wsloop/wsloop.js" in names(output.read_bytes())


def test_include_packs_only_what_it_names_whatever_their_order(source):
    chosen = archive_bytes(source, ["wsloop", "pyproject.toml"])
    assert names(chosen) == ["pyproject.toml", "wsloop/pkg/module.py"]
    assert archive_bytes(source, ["pyproject.toml", "wsloop"]) == chosen
