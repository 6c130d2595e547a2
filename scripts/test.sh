#!/usr/bin/env bash
# The full check: install, lint (ruff), types (mypy strict on gateway/), import layers
# (import-linter), then the test suite against a real Redis and real anvil chains.
# Extra arguments go to pytest (e.g. scripts/test.sh -k payments, or --run-slow).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "==> ruff"
.venv/bin/ruff check gateway tests bench
.venv/bin/ruff format --check gateway tests bench
echo "==> mypy (strict, gateway/ and devstack/)"
.venv/bin/mypy
echo "==> import-linter"
.venv/bin/lint-imports
echo "==> pytest"
.venv/bin/python -m pytest "$@"
