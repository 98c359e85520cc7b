"""kubetask.core.rest.workers: Nodes as seed 003's workers, and the node patches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetask.core.rest.errors import RestError
from kubetask.core.rest.workers import (
    ACTIVE,
    DRAINING,
    OFFLINE,
    PAUSED,
    GpuKeys,
    capacity_of,
    capacity_patch,
    drain_patch,
    hostname,
    is_worker,
    last_heartbeat,
    new_worker_node,
    pause_patch,
    pod_node,
    pods_by_node,
    register_patch,
    resume_patch,
    utilization,
    validate_capacity,
    validate_hostname,
    worker_public,
    worker_status,
)

NOW = datetime(2026, 1, 25, 14, 0, 0, tzinfo=UTC)


def node(name: str = "gpu-1", *, ready: str | None = "True", labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None, gpus: int = 4, unschedulable: bool = False,
         heartbeat: str | None = "2026-01-25T13:59:30Z") -> dict[str, Any]:
    allocatable = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    all_labels = {"kubernetes.io/hostname": f"{name}.example"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
        all_labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "A100"})
    all_labels.update(labels or {})
    conditions = []
    if ready is not None:
        cond = {"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
                "lastTransitionTime": "2026-01-24T14:00:00Z"}
        if heartbeat:
            cond["lastHeartbeatTime"] = heartbeat
        conditions.append(cond)
    spec: dict[str, Any] = {"unschedulable": True} if unschedulable else {}
    return {"metadata": {"name": name, "labels": all_labels, "annotations": annotations or {},
                         "creationTimestamp": "2026-01-24T14:00:00Z"},
            "spec": spec,
            "status": {"allocatable": allocatable, "capacity": allocatable, "conditions": conditions}}


def pod(name: str, node_name: str | None, *, phase: str = "Running", gpus: int = 1, cpu: str = "2",
        namespace: str = "kubetask-alice", task: str | None = "train-1") -> dict[str, Any]:
    labels = {"kubetask.io/task": task} if task else {}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "annotations": {"kubetask.io/task-name": task} if task else {}},
            "spec": {"nodeName": node_name, "containers": [{"name": "main", "resources": {
                "requests": {"cpu": cpu, "memory": "4Gi", "nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, ACTIVE),
    ({"labels": {"kubetask.io/paused": "true"}}, PAUSED),
    ({"unschedulable": True}, PAUSED),
    ({"labels": {"kubetask.io/draining": "true"}}, DRAINING),
    ({"labels": {"kubetask.io/draining": "true", "kubetask.io/paused": "true"}}, DRAINING),
    ({"ready": "False"}, OFFLINE),
    ({"ready": "Unknown", "labels": {"kubetask.io/paused": "true"}}, OFFLINE),
    ({"ready": None}, OFFLINE),
])
def test_worker_status(kwargs: dict[str, Any], expected: str) -> None:
    assert worker_status(node(**kwargs)) == expected


def test_capacity_annotation_then_allocatable_pods() -> None:
    assert capacity_of(node(annotations={"kubetask.io/capacity": "6"})) == (6, "annotation")
    assert capacity_of(node()) == (110, "allocatable-pods")
    assert capacity_of(node(annotations={"kubetask.io/capacity": "lots"})) == (110, "allocatable-pods")
    bare = {"metadata": {"name": "x"}, "status": {}}
    assert capacity_of(bare) == (5, "default")


def test_heartbeat_and_hostname() -> None:
    assert last_heartbeat(node()) == "2026-01-25T13:59:30Z"
    assert last_heartbeat(node(heartbeat=None)) == "2026-01-24T14:00:00Z"
    assert last_heartbeat(node(ready=None)) is None
    assert hostname(node("n1")) == "n1.example"
    assert hostname({"metadata": {"name": "n2"}, "status": {"addresses": [{"type": "Hostname",
                                                                           "address": "h2"}]}}) == "h2"


def test_is_worker() -> None:
    assert is_worker(node())
    assert is_worker(node(gpus=0))
    assert not is_worker(node(gpus=0, labels={"node-role.kubernetes.io/control-plane": ""}))
    assert is_worker(node(gpus=2, labels={"node-role.kubernetes.io/control-plane": ""}))  # kind + fake GPUs
    assert not is_worker(node(labels={"kubetask.io/worker": "false"}))
    assert is_worker(node(gpus=0, labels={"node-role.kubernetes.io/control-plane": "",
                                          "kubetask.io/worker": "true"}))
    custom = GpuKeys(node_label_key="gpu", resource_name="amd.com/gpu")
    assert not is_worker(node(gpus=0, labels={"node-role.kubernetes.io/master": ""}), custom)


def test_worker_public_counts_unfinished_task_pods() -> None:
    pods = [pod("a", "gpu-1", gpus=2, cpu="4"), pod("b", "gpu-1", phase="Pending", namespace="kubetask-bob",
                                                     task="other"),
            pod("c", "gpu-1", phase="Succeeded"), pod("d", "gpu-1", task=None)]
    w = worker_public(node(annotations={"kubetask.io/capacity": "4"}), pods, now=NOW,
                      visible_namespaces={"kubetask-alice"})
    assert w["worker_id"] == "gpu-1" and w["id"] == "gpu-1" and w["hostname"] == "gpu-1.example"
    assert w["status"] == ACTIVE and w["capacity"] == 4
    assert w["current_load"] == 2 and w["current_tasks"] == 2
    assert w["tasks"] == ["train-1"]  # bob's task id is not shown
    assert w["gpus"] == 4 and w["gpu_type"] == "A100"
    assert w["gpus_allocated"] == 4  # a (2) + b (1) + d (1, unlabelled but on the node)
    assert w["cpu_allocatable_millicores"] == 32000
    assert w["cpu_requested_millicores"] == 8000
    assert w["capacity_utilization"] == 0.5
    assert w["last_heartbeat"] == "2026-01-25T13:59:30Z" and w["is_draining"] is False
    assert w["uptime_seconds"] == 86400 and w["created_at"] == "2026-01-24T14:00:00Z"
    everyone = worker_public(node(), pods, now=NOW)
    assert everyone["tasks"] == ["other", "train-1"]


def test_utilization_bounds() -> None:
    assert utilization(0, 5) == 0.0
    assert utilization(3, 5) == 0.6
    assert utilization(9, 5) == 1.0
    assert utilization(0, 0) == 0.0
    assert utilization(1, 0) == 1.0


def test_pod_index() -> None:
    assert pod_node(pod("a", "n1")) == ["n1"]
    assert pod_node(pod("a", None)) == []
    assert pod_node(pod("a", "n1", phase="Succeeded")) == []  # finished: holds nothing there any more
    grouped = pods_by_node([pod("a", "n1"), pod("b", "n2"), pod("c", "n1"), pod("d", None)])
    assert {k: [p["metadata"]["name"] for p in v] for k, v in grouped.items()} == {"n1": ["a", "c"], "n2": ["b"]}


def test_patches() -> None:
    assert pause_patch() == {"metadata": {"labels": {"kubetask.io/paused": "true"}}}
    assert drain_patch() == {"metadata": {"labels": {"kubetask.io/draining": "true"}}}
    assert resume_patch() == {"metadata": {"labels": {"kubetask.io/paused": None, "kubetask.io/draining": None}}}
    assert capacity_patch(10) == {"metadata": {"annotations": {"kubetask.io/capacity": "10"}}}
    reg = register_patch(5, NOW)
    assert reg["metadata"]["labels"] == {"kubetask.io/worker": "true"}
    assert reg["metadata"]["annotations"] == {"kubetask.io/capacity": "5",
                                              "kubetask.io/registered-at": "2026-01-25T14:00:00Z"}


def test_new_worker_node_is_ready_with_capacity() -> None:
    obj = new_worker_node("compute-1", 5, NOW)
    assert obj["kind"] == "Node" and obj["metadata"]["name"] == "compute-1"
    assert obj["metadata"]["labels"]["kubetask.io/worker"] == "true"
    assert obj["metadata"]["annotations"]["kubetask.io/capacity"] == "5"
    assert worker_status(obj) == ACTIVE
    assert last_heartbeat(obj) == "2026-01-25T14:00:00Z"
    w = worker_public(obj, [], now=NOW)
    assert (w["capacity"], w["current_load"], w["hostname"], w["gpus"]) == (5, 0, "compute-1", 0)


@pytest.mark.parametrize("value", ["", "  ", "Bad_Host", "-x", "x-", "a" * 254, "a..b", "space here"])
def test_invalid_hostnames_name_the_field(value: str) -> None:
    with pytest.raises(RestError) as info:
        validate_hostname(value)
    assert info.value.status == 422 and info.value.field == "hostname"


def test_hostname_is_lowercased() -> None:
    assert validate_hostname(" Compute-1.Example ") == "compute-1.example"


@pytest.mark.parametrize("value", [0, -1, 1001, True, "5", 2.5])
def test_invalid_capacity(value: Any) -> None:
    with pytest.raises(RestError) as info:
        validate_capacity(value)
    assert info.value.status == 422 and info.value.field == "capacity"


def test_valid_capacity() -> None:
    assert validate_capacity(1) == 1 and validate_capacity(1000) == 1000
