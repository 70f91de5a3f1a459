#!/usr/bin/env bash
# Installs the browser-automation tools of the end-to-end tests (tests/browser/: playwright-core,
# pinned in its package-lock.json) with `npm ci`, only when they are missing or the lock has
# changed since the last install; otherwise returns at once. Playwright drives the machine's
# Chromium (Debian's /usr/bin/chromium), so no browser is downloaded.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is missing; the browser tests need Node.js 20+ with npm (Debian: apt-get install nodejs npm)." >&2
    exit 1
  fi
done

stamp=node_modules/.installed-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "==> npm ci in tests/browser"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
