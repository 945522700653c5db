#!/usr/bin/env bash
# PostgreSQL 15 for the fleet's tests: they start a throw-away cluster themselves with initdb and
# pg_ctl (tests/pg_cluster.py); nothing here starts a server. Installed from Debian when root and
# missing, without the package's own "main" cluster; otherwise say how (the fleet's tests skip
# without it, and fail under CI=true).
set -euo pipefail

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }

if command -v pg_ctl >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's postgresql-15 (for the fleet's tests)"
  mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] \
    || printf 'create_main_cluster = false\n' > /etc/postgresql-common/createcluster.conf
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null; }
else
  say "PostgreSQL 15 is missing: run 'apt-get install postgresql-15' as root (the fleet's tests need it)"
fi
