#!/usr/bin/env bash
# The dashboard (/ui) loads no CDN: htmx comes from the npm package pinned in package.json / package-lock.json
# and is copied into the Python package data (api/ui/static), with its version and digest beside it.
# Usage: hack/vendor-ui.sh   (after `npm ci`); tests/browser checks the copy against node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules/htmx.org/dist/htmx.min.js
[ -f "$src" ] || { echo "run 'npm ci' first ($src missing)" >&2; exit 1; }
version=$(node -p "require('./node_modules/htmx.org/package.json').version")
cp "$src" api/ui/static/htmx.min.js
printf 'htmx.org %s %s\n' "$version" "$(sha256sum api/ui/static/htmx.min.js | cut -d' ' -f1)" > api/ui/static/VENDORED
echo "vendored htmx.org $version into api/ui/static"
