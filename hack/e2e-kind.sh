#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster (make e2e-kind):
#   1. create a kind cluster (one control plane, one worker),
#   2. docker build the image and kind-load it,
#   3. fake GPU capacity: label the worker nvidia.com/gpu.present=true and patch its
#      node status with nvidia.com/gpu capacity (no device plugin needed),
#   4. helm install the chart (dev image, never pulled),
#   5. run tests/e2e with KUBETASK_E2E_INSTALLED=1.
# Needs docker and kind; helm/kubectl from `make tools` or PATH.
# KEEP_CLUSTER=1 keeps the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-kubetask-e2e}
IMAGE=${IMAGE:-ghcr.io/kubetask/kubetask:dev}
NAMESPACE=${NAMESPACE:-kubetask-system}
FAKE_GPUS=${FAKE_GPUS:-4}
TOOLS=${KUBETASK_TOOLS_DIR:-$HOME/.cache/kubetask/bin}
HELM=${HELM:-$( [ -x "$TOOLS/helm" ] && echo "$TOOLS/helm" || echo helm )}
KUBECTL=${KUBECTL:-$( [ -x "$TOOLS/kubectl" ] && echo "$TOOLS/kubectl" || echo kubectl )}
KUBECONFIG_FILE=${KUBECONFIG_FILE:-$(mktemp -t kubetask-e2e-kubeconfig.XXXXXX)}
export KUBECONFIG=$KUBECONFIG_FILE

for tool in docker kind; do
  command -v "$tool" > /dev/null || { echo "$tool is required for make e2e-kind" >&2; exit 1; }
done

cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    kind delete cluster --name "$CLUSTER" || true
  else
    echo "cluster kept: KUBECONFIG=$KUBECONFIG_FILE"
  fi
}
trap cleanup EXIT

if ! kind get clusters | grep -qx "$CLUSTER"; then
  cat <<KIND | kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 120s --config -
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
KIND
else
  kind get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"
fi

docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

# Fake GPUs on the worker: label + extended-resource capacity in the node status.
worker=$("$KUBECTL" get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')
"$KUBECTL" label node "$worker" nvidia.com/gpu.present=true nvidia.com/gpu.product=FAKE-GPU --overwrite
"$KUBECTL" patch node "$worker" --subresource=status --type=json -p "[
  {\"op\": \"add\", \"path\": \"/status/capacity/nvidia.com~1gpu\", \"value\": \"$FAKE_GPUS\"},
  {\"op\": \"add\", \"path\": \"/status/allocatable/nvidia.com~1gpu\", \"value\": \"$FAKE_GPUS\"}
]"

"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted --overwrite
"$HELM" upgrade --install kubetask charts/kubetask \
  --namespace "$NAMESPACE" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set operator.replicas=1 --set api.replicas=1 \
  --wait --timeout 5m
# Helm does not upgrade CRDs: apply the current ones in case the cluster is reused.
"$KUBECTL" apply --server-side --force-conflicts -f crds/

KUBETASK_E2E_INSTALLED=1 KUBETASK_E2E_NAMESPACE="$NAMESPACE" python -m pytest -q tests/e2e "$@"
