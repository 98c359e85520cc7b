"""kwok's side of the local control plane: its configuration, its Stages and the fake nodes.

The Stages (``kubetask/resources/kwok/stages.yaml``) play the kubelet for pods on the fake
nodes, steered by the ``kubetask.dev/sim-*`` pod annotations; the Job controller, the
scheduler, quota and admission stay the real ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

MANAGED_ANNOTATION = "kwok.x-k8s.io/node"
"""Nodes carrying ``kwok.x-k8s.io/node: fake`` are kwok's; any other node is left alone."""

GPU_RESOURCE = "nvidia.com/gpu"

# Which way a pod goes once bound: it cannot start (image pull and the like), its
# activeDeadlineSeconds runs out first, or it exits (succeed / fail). One jq expression so
# the stages' selectors are mutually exclusive: kwok picks among matching stages at random.
OUTCOME = (
    '.metadata.annotations as $a | ($a["kubetask.dev/sim-reason"] // "") as $r'
    ' | if ($r == "ErrImagePull" or $r == "ImagePullBackOff" or $r == "InvalidImageName"'
    ' or $r == "CreateContainerConfigError" or $r == "CreateContainerError"'
    ' or ([.spec.containers[].image | contains("does-not-exist")] | any)) then "cannot-start"'
    ' elif (.spec.activeDeadlineSeconds // 1e12)'
    ' < (($a["kubetask.dev/sim-duration-seconds"] // "1") | tonumber) then "deadline"'
    ' elif (($a["kubetask.dev/sim-exit-code"] // "0") == "0") and ($r == "" or $r == "Completed") then "succeed"'
    ' else "fail" end'
)


def stages(kubelet_port: int) -> list[dict[str, Any]]:
    """The Stage objects, with the fake kubelet's port filled in."""
    text = (resources.files("kubetask") / "resources" / "kwok" / "stages.yaml").read_text()
    text = text.replace("'@OUTCOME@'", json.dumps(OUTCOME)).replace("@KUBELET_PORT@", str(kubelet_port))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def configuration(kubelet_port: int) -> str:
    """kwok's ``--config`` file: the KwokConfiguration, then every Stage."""
    config: dict[str, Any] = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
        "options": {"cidr": "10.244.0.0/16", "nodeIP": "127.0.0.1",
                    "manageNodesWithAnnotationSelector": f"{MANAGED_ANNOTATION}=fake",
                    "nodeLeaseDurationSeconds": 40,
                    # A burst of a thousand pods must not queue behind a handful of workers.
                    "podPlayStageParallelism": 32, "nodePlayStageParallelism": 8,
                    # kwok's own defaults, which it does not fill in once a config file is given.
                    "nodeLeaseParallelism": 4, "podsOnNodeSyncParallelism": 4,
                    "enablePodsOnNodeSyncListPager": True, "enablePodsOnNodeSyncStreamWatch": False,
                    "enableDebuggingHandlers": False, "enableProfilingHandler": False},
    }
    return yaml.safe_dump_all([config, *stages(kubelet_port)], sort_keys=False)


@dataclass(frozen=True)
class NodeShape:
    """A group of identical fake nodes."""

    prefix: str
    """Node names are ``<prefix>-1`` ... ``<prefix>-<count>``."""

    count: int = 1
    gpus: int = 0
    """``nvidia.com/gpu`` capacity; GPU nodes also get the NVIDIA labels and the NoSchedule taint."""

    gpu_product: str | None = None
    """The ``nvidia.com/gpu.product`` label (e.g. ``A100``)."""

    cpu: str = "64"
    memory: str = "512Gi"
    pods: str = "250"
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        kind = f"{self.gpus}-GPU {self.gpu_product or ''}".strip() if self.gpus else "CPU"
        return f"{self.count} x {kind}"

    def names(self) -> list[str]:
        return [f"{self.prefix}-{index}" for index in range(1, self.count + 1)]

    def objects(self) -> list[dict[str, Any]]:
        return [self.node(name) for name in self.names()]

    def node(self, name: str) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "type": "kwok", **self.labels}
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, "ephemeral-storage": "1Ti"}
        spec: dict[str, Any] = {}
        if self.gpus:
            labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(self.gpus)})
            if self.gpu_product:
                labels["nvidia.com/gpu.product"] = self.gpu_product
            capacity[GPU_RESOURCE] = str(self.gpus)
            spec["taints"] = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": {MANAGED_ANNOTATION: "fake"}},
            "spec": spec,
            "status": {"capacity": capacity, "allocatable": dict(capacity)},
        }


DEV_NODES = (NodeShape("gpu-a100", gpus=8, gpu_product="A100"), NodeShape("gpu-h100", gpus=8, gpu_product="H100"),
             NodeShape("cpu", cpu="32", memory="128Gi"))
"""``kubetask dev``'s default: one 8-GPU A100 node, one 8-GPU H100 node, one CPU node."""


def parse_node_shapes(spec: str) -> list[NodeShape]:
    """Parse ``--nodes`` (``PREFIX=COUNTxGPUS[:PRODUCT],...``, e.g. ``gpu=25x24:H100,cpu=2x0``)."""
    shapes: list[NodeShape] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        prefix, sep, rest = item.partition("=")
        if not sep or not prefix:
            raise ValueError(f"node shape {item!r}: expected PREFIX=COUNTxGPUS[:PRODUCT]")
        shape, _, product = rest.partition(":")
        count, sep, gpus = shape.partition("x")
        try:
            shapes.append(NodeShape(prefix, count=int(count), gpus=int(gpus) if sep else 0,
                                    gpu_product=product or None))
        except ValueError as error:
            raise ValueError(f"node shape {item!r}: COUNT and GPUS must be integers") from error
    if not shapes:
        raise ValueError("no node shapes given")
    return shapes
