#!/usr/bin/env bash
# Make a Docker engine available, idempotently.
#   - An engine that already answers is used as is (a second run is a no-op).
#   - Otherwise, as root on Debian: install Debian's docker.io if needed and start dockerd in the
#     background, then wait until it answers.
#   - Anywhere else it stops with a message saying what to do.
set -euo pipefail

say() { printf 'ensure-docker: %s\n' "$*" >&2; }
answers() { command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; }

if answers; then
  say "a Docker engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)); nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  say "no Docker engine answers and this is not root: install and start Docker, or add yourself to the docker group, then re-run"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1 || [ ! -f /etc/debian_version ]; then
  say "no Docker engine answers and this is not Debian: install Docker for your system, start it, then re-run"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  say "installing Debian's docker.io (and debootstrap, for the offline base image) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if pgrep -x dockerd >/dev/null 2>&1; then
  say "dockerd is running but does not answer yet; waiting"
else
  log=/var/log/ouroboros-dockerd.log
  say "starting dockerd in the background (log: $log)"
  nohup dockerd >"$log" 2>&1 &
fi

for _ in $(seq 1 60); do
  if answers; then
    say "Docker engine $(docker version --format '{{.Server.Version}}') answers"
    exit 0
  fi
  sleep 1
done
say "dockerd did not answer within 60 s; see /var/log/ouroboros-dockerd.log"
exit 1
