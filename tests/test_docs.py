"""The README and docs/ as a reader follows them: every relative link leads to a file that
exists, and every page of docs/ is reachable from the README."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_resolves():
    broken = [
        (page.relative_to(REPO).as_posix(), target)
        for page in PAGES
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / target).resolve() for target in relative_links(REPO / "README.md")}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []
