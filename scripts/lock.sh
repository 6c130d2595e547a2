#!/usr/bin/env bash
# Pin what .venv holds now into constraints.txt, which scripts/setup.sh (and so CI) installs
# from. Move versions in .venv first (pip install -U ...), pass scripts/test.sh, then run this.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  sed -n 1,3p constraints.txt
  .venv/bin/python -m pip freeze --exclude-editable
} > constraints.txt.new
mv constraints.txt.new constraints.txt
