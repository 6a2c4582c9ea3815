#!/usr/bin/env bash
# Installs everything and runs every gate and the whole test suite: the README's test
# command and what CI runs. Needs only Python 3.11+ and pip; installs uv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5"
  export PATH="$HOME/.local/bin:$PATH"
fi

# Bytecode compiled once, here: where PYTHONDONTWRITEBYTECODE is set (it is on this
# project's machines), every process would otherwise compile each module it imports from
# source, and the suite starts many (`billfold` commands, servers): importing the app took
# 8 s so, 3 s from compiled bytecode.
uv sync --frozen --all-groups --compile-bytecode
uv run --frozen python -m compileall -q src >/dev/null
echo "== ruff check";         uv run --frozen ruff check src tests bench
echo "== ruff format";        uv run --frozen ruff format --check src tests bench
echo "== mypy --strict";      uv run --frozen mypy --strict src
echo "== import boundaries";  uv run --frozen lint-imports
# Two test processes by default (xdist, one per core; files stay whole on one process):
# BILLFOLD_TEST_WORKERS=0 runs the suite in this process.
echo "== pytest";             uv run --frozen pytest -n "${BILLFOLD_TEST_WORKERS:-2}" --dist loadfile "$@"
