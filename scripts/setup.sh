#!/usr/bin/env bash
# Install everything the gateway and its tests need, from nothing: a virtualenv with the
# project and its dev tools (pip), and the test chain + compiler from npm (anvil, solc).
# Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11+ is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> installing Python packages (pip install -c constraints.txt -e '.[server,dev]')"
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt pins every package to the versions the tests last passed with, so a fresh
# machine installs what CI checked, not whatever was released since.
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[server,dev]'

if command -v npm >/dev/null 2>&1; then
  echo "==> installing anvil and solc (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  echo "warning: npm not found; anvil (needed by the tests and 'python -m gateway dev') is not installed." >&2
  echo "         Install Node.js 18+ and re-run, or set ANVIL_BIN to an anvil binary." >&2
fi
echo "==> ready"
