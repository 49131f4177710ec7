"""Build wsloop.classic.js (a plain <script>: window.WSLoop, window.WS4Redis) from the ES module.

python tools/build_classic_js.py          # write it
python tools/build_classic_js.py --check  # exit 1 if the committed file is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "wsloop/static/wsloop"
SOURCE, TARGET = STATIC / "wsloop.js", STATIC / "wsloop.classic.js"
EXPORT = re.compile(r"^export (?=(?:class|function|const) )", re.MULTILINE)
GLOBALS = ("WSLoop", "WS4Redis", "backoffDelay", "LivenessMonitor")


def build(source: str) -> str:
    body = EXPORT.sub("", source)
    if "export " in re.sub(r"//.*", "", body):
        raise ValueError("wsloop.js has an export form this build does not handle")
    indented = "".join(f"  {line}" if line.strip() else line for line in body.splitlines(True))
    assignments = "".join(f"  global.{name} = {name};\n" for name in GLOBALS)
    return (
        "// Generated from wsloop.js by tools/build_classic_js.py: edit wsloop.js instead.\n"
        "(function (global) {\n"
        f"{indented}\n{assignments}"
        '})(typeof window !== "undefined" ? window : globalThis);\n'
    )


def main() -> int:
    expected = build(SOURCE.read_text())
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != expected:
            print(f"{TARGET.name} is stale: run python tools/build_classic_js.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
