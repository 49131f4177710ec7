"""Two ``loadtest.bench`` results side by side.

python -m loadtest.compare BEFORE.json AFTER.json [--html compare.html]

Every headline figure (``loadtest.figures``) of both runs, the ratio after/before, and a verdict
when the change is beyond this machine's run-to-run spread (``NOISE``): "better" or "worse" by
the figure's own direction. A figure only one run has is listed with a blank on the other side.
Runs are only comparable when made the same way (same options, a fresh stack each).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .figures import Better, Figure, key_figures

NOISE = 0.20  # shared 2-core machine: the same run moves by up to ~20 % (loadtest/README.md)


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    before: float | None
    after: float | None
    verdict: str

    @property
    def ratio(self) -> float | None:
        if self.before in (None, 0) or self.after is None:
            return None
        return self.after / self.before


def verdict(before: Figure | None, after: Figure | None) -> str:
    if before is None or after is None:
        return ""
    if before.value == after.value:
        return "same"
    if before.value == 0:
        return "worse" if after.better is Better.LOWER else "better"
    change = (after.value - before.value) / abs(before.value)
    if abs(change) <= NOISE:
        return "within noise"
    improved = change > 0 if after.better is Better.HIGHER else change < 0
    return "better" if improved else "worse"


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Row]:
    old = {f.name: f for f in key_figures(before)}
    new = {f.name: f for f in key_figures(after)}
    names = list(old) + [name for name in new if name not in old]
    rows = []
    for name in names:
        a, b = old.get(name), new.get(name)
        known = a or b  # every name comes from one of the two runs
        assert known is not None
        rows.append(
            Row(name, known.unit, a.value if a else None, b.value if b else None, verdict(a, b))
        )
    return rows


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def render(rows: list[Row], labels: tuple[str, str]) -> str:
    width = max(len(f"{r.name} ({r.unit})" if r.unit else r.name) for r in rows) if rows else 10
    lines = [f"{'figure':<{width}}  {labels[0]:>14}  {labels[1]:>14}  {'ratio':>7}  verdict"]
    for row in rows:
        name = f"{row.name} ({row.unit})" if row.unit else row.name
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        lines.append(
            f"{name:<{width}}  {_cell(row.before):>14}  {_cell(row.after):>14}  {ratio:>7}  "
            f"{row.verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--html", type=Path, help="also write an HTML page with the plots")
    args = parser.parse_args(argv)
    results = [json.loads(path.read_text()) for path in (args.before, args.after)]
    labels = (args.before.stem, args.after.stem)
    rows = compare(*results)
    print(render(rows, labels))
    if args.html:
        from .html_report import comparison_page  # noqa: PLC0415 (matplotlib only when asked)

        args.html.write_text(comparison_page(results, labels, rows))
        print(f"\nreport: {args.html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
