#!/usr/bin/env bash
# Lint, types and layers, as CI runs them: ruff, import-linter (the trust boundary), mypy, and no
# import cycle at all (scripts/check_cycles.py counts the imports import-linter cannot see).
# Needs the venv from scripts/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet -e '.[lint]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/mypy
.venv/bin/python scripts/check_cycles.py
bash scripts/docs.sh --check  # every generated doc matches the code
