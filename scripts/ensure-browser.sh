#!/usr/bin/env bash
# The browser tests/console drives: Debian's chromium, through Playwright's `executable_path`.
# Playwright's own browser downloads are never used. Installed when root and missing; otherwise
# say how (the browser test skips without it, and fails under CI=true).
set -euo pipefail

say() { printf 'ensure-browser: %s\n' "$*" >&2; }

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's chromium (for the console's browser test)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
else
  say "/usr/bin/chromium is missing: run 'apt-get install chromium' as root (the browser test needs it)"
fi
