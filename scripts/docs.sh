#!/usr/bin/env bash
# Regenerate every generated doc (docs/cli.md, docs/json.md, the command sections of docs/gate.md
# and docs/agent.md) from the code: scripts/docs.py names them and how each is made.
#   bash scripts/docs.sh            write them in place
#   bash scripts/docs.sh --check    change nothing; exit 1 and show the diff if any is stale (CI)
# PYTHON picks the interpreter (default .venv/bin/python; the `agent` extra must be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
case "${1:-}" in
  "" | --check) ;;
  *) echo "usage: bash scripts/docs.sh [--check]" >&2; exit 2 ;;
esac
out="$(mktemp -d /tmp/ouroboros-docs.XXXXXX)"
trap 'rm -rf "$out"' EXIT
"$python" scripts/docs.py "$out"
stale=0
while IFS= read -r name; do
  if ! cmp -s "$name" "$out/$name"; then
    if [ "${1:-}" = --check ]; then
      diff -u --label "$name (committed)" --label "$name (generated)" "$name" "$out/$name" || true
      stale=1
    else
      cp "$out/$name" "$name"
      echo "docs.sh: wrote $name" >&2
    fi
  fi
done < <(cd "$out" && find . -type f -printf '%P\n' | sort)
if [ "$stale" = 1 ]; then
  echo "docs.sh: generated docs are stale; run: bash scripts/docs.sh" >&2
  exit 1
fi
