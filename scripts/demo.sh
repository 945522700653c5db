#!/usr/bin/env bash
# The main job on a built-in default: the whole system once, with the scripted model (no API key,
# no network). Installs what it needs first (venv, Docker engine, agent image).
# Extra arguments go to `supervisor demo`, e.g. `bash scripts/demo.sh --home /tmp/my-demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/supervisor demo "$@"
