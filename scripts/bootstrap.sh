#!/usr/bin/env bash
# Install everything Ouroboros needs on a fresh Debian machine, idempotently:
# a virtualenv with the project, a running Docker engine, and the (offline-built) agent image.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv || {
    say "python3 -m venv failed: install python3-venv (apt-get install -y python3-venv) and re-run"
    exit 1
  }
fi
if ! .venv/bin/python -c "import supervisor.cli, agent" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.ouroboros-installed ]; then
  say "installing the project and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch .venv/.ouroboros-installed
fi

bash scripts/ensure-docker.sh

if ! command -v debootstrap >/dev/null 2>&1 && [ -z "${OUROBOROS_BASE_IMAGE:-}" ] \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing debootstrap (builds the offline base image)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

.venv/bin/supervisor image build
