#!/usr/bin/env bash
# Vendors Swagger UI into gateway-router/assets/docs/, where the router's /docs page
# (gateway-router/src/docs.rs) includes it at build time: builds, the Docker build included,
# need no network, and the page loads nothing from a CDN.
#
# `npm pack` only downloads the tarball: no install scripts run (the package depends on an
# install-time analytics package, which is never installed this way).
#
# Upgrading: change VERSION, run this script, look at the page (cargo test --test docs_page)
# and commit the changed files together with this script.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=5.35.0
DEST=gateway-router/assets/docs
# The files the page uses, and the licence that must travel with them.
FILES=(swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE)

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is missing; install Node.js 20+ with npm (Debian: apt-get install nodejs npm) and run again." >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar -xzf "swagger-ui-dist-$VERSION.tgz")
package="$work/package"
got=$(node -p "require('$package/package.json').version")
if [ "$got" != "$VERSION" ]; then
  echo "error: npm gave swagger-ui-dist $got, not $VERSION" >&2
  exit 1
fi

mkdir -p "$DEST"
for file in "${FILES[@]}"; do
  cp "$package/$file" "$DEST/$file"
done
# Served precompressed to clients that accept gzip; -n keeps the bytes the same on every run.
gzip -9 -n -c "$DEST/swagger-ui-bundle.js" > "$DEST/swagger-ui-bundle.js.gz"
printf %s "$VERSION" > "$DEST/VERSION"
echo "swagger-ui-dist $VERSION vendored into $DEST:"
ls -l "$DEST"
