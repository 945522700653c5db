#!/usr/bin/env bash
# The whole test suite: installs what it needs (venv, Docker engine, agent image, chromium,
# PostgreSQL), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/sandbox -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-browser.sh  # Debian's chromium for tests/console (Playwright drives it)
bash scripts/ensure-postgres.sh  # PostgreSQL 15 for the fleet's tests (they start their own cluster)
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
