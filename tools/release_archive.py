"""Pack what a server runs (the Django project, the wsloop package, the uWSGI ini files, the pinned
requirements) into a reproducible .tar.gz, and print its release id.

python tools/release_archive.py OUT.tar.gz [--source DIR] [--include PATH ...]

``--include`` names what to pack, relative to the source (files or directories; default:
``SHIPPED``, this repository's demo): the Ansible role passes its project's list.

The same sources always give the same bytes (sorted names, fixed mtime, owner and modes, no
gzip timestamp), so the id (the first 12 hex digits of the archive's SHA-256) names the content:
Ansible deploys a new release only when something shipped has changed, and a rerun reports
nothing changed. Caches (__pycache__, *.pyc, *.egg-info, build/) are left out.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED = (
    "app",
    "wsloop",
    "uwsgi",
    "requirements/base.txt",
    "pyproject.toml",
    "README.md",
    "LICENSE",
)
SKIPPED_NAMES = {"__pycache__", "build"}
SKIPPED_SUFFIXES = (".pyc", ".egg-info")
RELEASE_ID_HEX_DIGITS = 12  # 48 bits: no collision among the few releases a host keeps


def shipped_files(source: Path, included: Sequence[str] = SHIPPED) -> Iterator[Path]:
    """Every file of ``included`` under ``source``, relative to it, in a stable order."""
    for name in sorted(included):
        top = source / name
        if not top.exists():
            raise FileNotFoundError(f"{top} is missing: is {source} the project to deploy?")
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(source)
            if SKIPPED_NAMES.isdisjoint(relative.parts) and not any(
                part.endswith(SKIPPED_SUFFIXES) for part in relative.parts
            ):
                yield relative


def archive_bytes(source: Path, included: Sequence[str] = SHIPPED) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in shipped_files(source, included):
            data = (source / relative).read_bytes()
            info = tarfile.TarInfo(relative.as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def release_id(archive: bytes) -> str:
    return hashlib.sha256(archive).hexdigest()[:RELEASE_ID_HEX_DIGITS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--source", type=Path, default=REPO, help="project to pack")
    parser.add_argument(
        "--include", action="append", help="a file or directory to pack (repeatable)"
    )
    args = parser.parse_args(argv)
    archive = archive_bytes(args.source, args.include or SHIPPED)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(archive)
    print(release_id(archive))


if __name__ == "__main__":
    main()
