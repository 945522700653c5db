#!/usr/bin/env bash
# Build the supervisor image (Dockerfile.supervisor) with no package index inside the build: the
# project's wheel and its dependencies are collected on the host first.
#   bash scripts/build-supervisor-image.sh [TAG] [BASE]
# TAG defaults to ouroboros-supervisor:latest; BASE to $OUROBOROS_BASE_IMAGE, else the offline base.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-ouroboros-supervisor:latest}"
base="${2:-${OUROBOROS_BASE_IMAGE:-ouroboros-base:bookworm}}"
python="${PYTHON:-.venv/bin/python}"
context="$(mktemp -d /tmp/ouroboros-supervisor-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
"$python" -m pip wheel --quiet --wheel-dir "$context/wheelhouse" .
cp Dockerfile.supervisor "$context/Dockerfile"
# --network none: the build needs no network at all (and must not fetch anything).
docker build --quiet --network none --build-arg "BASE=$base" -t "$tag" "$context"
