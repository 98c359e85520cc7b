#!/usr/bin/env bash
# crds/ is the ONE source of kubetask's CRDs. Everything else is generated from it:
#   charts/kubetask/crds/*.yaml      byte-identical copies (Helm installs them)
#   kubetask/resources/crds/*.yaml   byte-identical copies (packaged with the Python code)
#   manifests/base/kubetask.yaml     the chart rendered with --include-crds (hack/render-manifests.sh)
# Usage: hack/sync-crds.sh   (`make sync-crds` and `make manifests` run it; needs helm for the base)
# tests/unit/test_crds.py and tests/unit/test_manifests.py fail when a copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
sources=(crds/*.yaml)
[ ${#sources[@]} -gt 0 ] || { echo "no CRDs in crds/" >&2; exit 1; }
for dir in charts/kubetask/crds kubetask/resources/crds; do
  mkdir -p "$dir"
  for copy in "$dir"/*.yaml; do  # a CRD removed from crds/ goes from the copies too
    [ -e "crds/$(basename "$copy")" ] || rm -f "$copy"
  done
  cp "${sources[@]}" "$dir"/
done
echo "crds synced into charts/kubetask/crds and kubetask/resources/crds"
bash hack/render-manifests.sh --write
