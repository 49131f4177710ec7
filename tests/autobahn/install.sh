#!/usr/bin/env bash
# Install the Autobahn|Testsuite (`wstest`, Python 2.7 only) into
# $REPO/.cache/autobahn-venv.
#
# Idempotent: does nothing when the venv's `wstest --help` works and the venv
# was built from the current requirements-py27.txt. A partial or outdated
# venv is removed and rebuilt.
#
# Environment overrides (all optional):
#   PYTHON27          path to a Python 2.7 interpreter (default: found via pyenv)
#   PYTHON3           Python 3 interpreter used for the virtualenv tool (default: python3)
#   AUTOBAHN_FORCE=1  rebuild even if the venv looks fine
#
# Prints the path of wstest as its last line on success; exits non-zero on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="$REPO/.cache"
VENV="$CACHE/autobahn-venv"
TOOL="$CACHE/virtualenv-tool"
REQS="$HERE/requirements-py27.txt"
STAMP="$VENV/.autobahn-install-stamp"
WSTEST="$VENV/bin/wstest"

log() { printf '[autobahn-install] %s\n' "$*" >&2; }
die() { printf '[autobahn-install] ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$REQS" ] || die "missing $REQS"
mkdir -p "$CACHE"

# Serialise concurrent runs (e.g. two test sessions starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/autobahn-install.lock"
    flock 9
fi

# The stamp records the requirements file hash, so editing pins triggers a rebuild.
want_stamp="$(sha256sum "$REQS" | cut -d' ' -f1)"

wstest_ok() {
    [ -x "$WSTEST" ] && "$WSTEST" --help >/dev/null 2>&1
}

if [ "${AUTOBAHN_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] \
        && [ "$(cat "$STAMP")" = "$want_stamp" ] && wstest_ok; then
    log "already installed: $WSTEST (nothing to do)"
    echo "$WSTEST"
    exit 0
fi

# --- locate Python 2.7 ------------------------------------------------------
is_py27() {
    [ -n "$1" ] && [ -x "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1
}

find_py27() {
    local c candidates=()
    if [ -n "${PYTHON27:-}" ]; then
        is_py27 "$PYTHON27" || log "WARNING: PYTHON27=$PYTHON27 is not a working Python 2.7; searching elsewhere"
        candidates+=("$PYTHON27")
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local prefix root
        prefix="$(pyenv prefix 2.7.18 2>/dev/null || true)"
        [ -n "$prefix" ] && candidates+=("$prefix/bin/python2.7")
        root="$(pyenv root 2>/dev/null || true)"
        if [ -n "$root" ]; then
            for c in "$root"/versions/2.7*/bin/python2.7; do candidates+=("$c"); done
        fi
    fi
    for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7; do candidates+=("$c"); done
    for c in python2.7 python2; do
        command -v "$c" >/dev/null 2>&1 && candidates+=("$(command -v "$c")")
    done
    for c in "${candidates[@]}"; do
        if is_py27 "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

PY27="$(find_py27)" || die "no Python 2.7 interpreter found (tried \$PYTHON27, pyenv 2.7.*, python2.7, python2). Install one, e.g. 'pyenv install 2.7.18', or set PYTHON27=/path/to/python2.7"
log "using Python 2.7: $PY27"

# --- virtualenv tool (py3 venv; virtualenv<20.22 still creates py2.7 envs) ---
PY3="${PYTHON3:-python3}"
command -v "$PY3" >/dev/null 2>&1 || die "Python 3 interpreter '$PY3' not found (set PYTHON3)"

if ! "$TOOL/bin/python" -c 'import virtualenv, sys; sys.exit(0 if tuple(int(x) for x in virtualenv.__version__.split(".")[:2]) < (20, 22) else 1)' >/dev/null 2>&1; then
    log "creating virtualenv tool environment at $TOOL"
    rm -rf "$TOOL"
    "$PY3" -m venv "$TOOL" || die "could not create $TOOL with $PY3 -m venv"
    log "installing virtualenv<20.22 into $TOOL"
    "$TOOL/bin/python" -m pip install --quiet 'virtualenv<20.22' \
        || die "pip install virtualenv<20.22 failed"
else
    log "virtualenv tool already present at $TOOL"
fi

# --- (re)create the py2.7 venv -----------------------------------------------
if [ -e "$VENV" ]; then
    log "removing stale or partial venv at $VENV"
    rm -rf "$VENV"
fi
log "creating Python 2.7 venv at $VENV"
"$TOOL/bin/python" -m virtualenv --quiet --no-periodic-update -p "$PY27" "$VENV" \
    || die "virtualenv failed to create $VENV"

log "installing pinned requirements from ${REQS#"$REPO"/}"
# file:///opt/pypi... 'location ignored' warnings from pip are harmless here.
"$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -r "$REQS" \
    || die "pip install -r $REQS failed (venv left partial; rerun to retry)"

wstest_ok || die "installed, but '$WSTEST --help' does not work"
echo "$want_stamp" > "$STAMP"
log "done: $WSTEST"
echo "$WSTEST"
