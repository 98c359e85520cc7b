"""Workers are nodes: Node objects -> the Distributed Task Queue System API's worker representation, and the node
patches (pure).

kubetask keeps no worker registry of its own: a *worker* is a Kubernetes Node.

* ``status``: ``OFFLINE`` when the node's ``Ready`` condition is not ``True``;
  else ``DRAINING`` (label ``kubetask.io/draining=true``), ``PAUSED`` (label
  ``kubetask.io/paused=true``, or the node is cordoned); else ``ACTIVE``.
* ``capacity``: the annotation ``kubetask.io/capacity`` (the most kubetask tasks
  at once; the operator enforces it), else the node's allocatable ``pods``.
* ``current_load``: the unfinished kubetask pods bound to the node.
* ``last_heartbeat``: the ``Ready`` condition's ``lastHeartbeatTime``.

Pause, resume, drain and capacity are merge patches on the Node's labels and
annotations; the operator's admission policy reads the same keys
(:mod:`kubetask.core.scheduling`), so the REST call and ``kubectl label node``
mean the same thing.  No FastAPI, no Kubernetes client here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetask.core.objects import Obj
from kubetask.core.rest.errors import RestError, invalid
from kubetask.core.scheduling import (
    CAPACITY_ANNOTATION,
    DRAINING_LABEL,
    MILLI,
    PAUSED_LABEL,
    TASK_LABEL,
    NodeInfo,
    holding_node,
    node_info,
    pod_is_terminal,
)
from kubetask.core.times import format_time, parse_time, utcnow

WORKER_LABEL = "kubetask.io/worker"
REGISTERED_ANNOTATION = "kubetask.io/registered-at"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
DEFAULT_CAPACITY = 5
MAX_CAPACITY = 1000

ACTIVE, PAUSED, DRAINING, OFFLINE = "ACTIVE", "PAUSED", "DRAINING", "OFFLINE"
WORKER_STATUSES = (ACTIVE, PAUSED, DRAINING, OFFLINE)

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class GpuKeys:
    """Where GPUs show on nodes and pods (mirrors ``kubetask.settings.GpuSettings``)."""

    resource_name: str = "nvidia.com/gpu"
    node_label_key: str = "nvidia.com/gpu.present"
    node_label_value: str = "true"
    product_label_key: str = "nvidia.com/gpu.product"


DEFAULT_GPU_KEYS = GpuKeys()


def worker_not_found(worker_id: str) -> RestError:
    return RestError(404, "WORKER_NOT_FOUND", f"Worker {worker_id} not found (no node of that name)")


# --------------------------------------------------------------------------- reading nodes


def node_name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name") or "")


def node_labels(node: Mapping[str, Any]) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def pod_node(pod: Mapping[str, Any]) -> list[str]:
    """Index function: the node the pod holds capacity on (:func:`~kubetask.core.scheduling.holding_node`)."""
    node = holding_node(pod)
    return [node] if node else []


def ready_condition(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(node: Mapping[str, Any]) -> bool:
    cond = ready_condition(node)
    return cond is not None and cond.get("status") == "True"


def is_worker(node: Mapping[str, Any], gpu: GpuKeys = DEFAULT_GPU_KEYS) -> bool:
    """A node kubetask places tasks on: labelled ``kubetask.io/worker=true``, or any node that is not
    opted out (``kubetask.io/worker=false``) and is either a GPU node or not a bare control-plane node."""
    labels = node_labels(node)
    mark = labels.get(WORKER_LABEL)
    if mark is not None:
        return mark == "true"
    if is_gpu_node(node, gpu):
        return True
    return not any(key in labels for key in CONTROL_PLANE_LABELS)


def is_gpu_node(node: Mapping[str, Any], gpu: GpuKeys = DEFAULT_GPU_KEYS) -> bool:
    labels = node_labels(node)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return labels.get(gpu.node_label_key) == gpu.node_label_value or str(
        allocatable.get(gpu.resource_name, "0")) not in ("0", "")


def worker_status(node: Mapping[str, Any]) -> str:
    if not is_ready(node):
        return OFFLINE
    labels = node_labels(node)
    if labels.get(DRAINING_LABEL) == "true":
        return DRAINING
    if labels.get(PAUSED_LABEL) == "true" or (node.get("spec") or {}).get("unschedulable"):
        return PAUSED
    return ACTIVE


def last_heartbeat(node: Mapping[str, Any]) -> str | None:
    cond = ready_condition(node) or {}
    return format_time(cond.get("lastHeartbeatTime") or cond.get("lastTransitionTime"))


def hostname(node: Mapping[str, Any]) -> str:
    labels = node_labels(node)
    if labels.get(HOSTNAME_LABEL):
        return labels[HOSTNAME_LABEL]
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "Hostname" and address.get("address"):
            return str(address["address"])
    return node_name(node)


def _allocatable_int(node: Mapping[str, Any], key: str) -> int | None:
    raw = ((node.get("status") or {}).get("allocatable") or {}).get(key)
    try:
        return int(str(raw)) if raw not in (None, "") else None
    except ValueError:
        return None


def capacity_of(node: Mapping[str, Any]) -> tuple[int, str]:
    """``(capacity, source)``: the ``kubetask.io/capacity`` annotation, else allocatable pods."""
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(CAPACITY_ANNOTATION)
    if raw not in (None, ""):
        try:
            return max(0, int(str(raw))), "annotation"
        except ValueError:
            pass
    pods = _allocatable_int(node, "pods")
    if pods is not None:
        return pods, "allocatable-pods"
    return DEFAULT_CAPACITY, "default"


def _info(node: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], gpu: GpuKeys) -> NodeInfo:
    return node_info(node, pods, gpu_resource=gpu.resource_name, gpu_label_key=gpu.node_label_key,
                     gpu_label_value=gpu.node_label_value, product_label_key=gpu.product_label_key)


def running_task_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Unfinished kubetask pods (label ``kubetask.io/task``)."""
    return [p for p in pods if not pod_is_terminal(p)
            and TASK_LABEL in ((p.get("metadata") or {}).get("labels") or {})]


def _pod_task(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    task = annotations.get("kubetask.io/task-name") or (meta.get("labels") or {}).get(TASK_LABEL) or ""
    return str(meta.get("namespace") or ""), str(task)


def worker_public(
    node: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    *,
    gpu: GpuKeys = DEFAULT_GPU_KEYS,
    now: datetime | None = None,
    visible_namespaces: set[str] | None = None,
) -> Obj:
    """The Distributed Task Queue System API's worker (``worker_id``, ``hostname``, ``status``, ``capacity``,
    ``current_load``,
    ``current_tasks``, ``last_heartbeat``, ``is_draining``) plus GPUs, labels and resources.

    ``pods`` are the kubetask pods bound to this node; ``visible_namespaces`` (``None``: all) limits
    which task ids are listed in ``tasks``."""
    now = now or utcnow()
    meta = node.get("metadata") or {}
    info = _info(node, pods, gpu)
    capacity, source = capacity_of(node)
    running = running_task_pods(pods)
    load = len(running)
    status = worker_status(node)
    created = parse_time(meta.get("creationTimestamp"))
    ready = ready_condition(node) or {}
    tasks = sorted(task for ns, task in map(_pod_task, running)
                   if task and (visible_namespaces is None or ns in visible_namespaces))
    labels = node_labels(node)
    return {
        "worker_id": node_name(node),
        "id": node_name(node),
        "hostname": hostname(node),
        "status": status,
        "capacity": capacity,
        "capacity_source": source,
        "current_load": load,
        "current_tasks": load,
        "tasks": tasks,
        "last_heartbeat": last_heartbeat(node),
        "is_draining": labels.get(DRAINING_LABEL) == "true",
        "is_paused": labels.get(PAUSED_LABEL) == "true",
        "is_cordoned": bool((node.get("spec") or {}).get("unschedulable")),
        "is_ready": ready.get("status") == "True",
        "ready_reason": ready.get("reason"),
        "kubetask_worker": is_worker(node, gpu),
        "gpus": info.allocatable.get("gpus", 0) // MILLI,
        "gpus_allocated": -(-info.used.get("gpus", 0) // MILLI),
        "gpu_type": info.gpu_product,
        "cpu_allocatable_millicores": info.allocatable.get("cpu", 0),
        "cpu_requested_millicores": info.used.get("cpu", 0),
        "memory_allocatable_bytes": info.allocatable.get("memory", 0) // MILLI,
        "memory_requested_bytes": info.used.get("memory", 0) // MILLI,
        "capacity_utilization": utilization(load, capacity),
        "labels": labels,
        "created_at": format_time(created),
        "uptime_seconds": max(0, int((now - created).total_seconds())) if created else None,
    }


def utilization(load: int, capacity: int) -> float:
    """``load / capacity`` in 0..1 (a full or over-full node is 1.0; no capacity and no load is 0)."""
    if capacity <= 0:
        return 1.0 if load > 0 else 0.0
    return round(min(1.0, load / capacity), 3)


def pods_by_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        for node in pod_node(pod):
            out.setdefault(node, []).append(pod)
    return out


# --------------------------------------------------------------------------- writing nodes


def validate_hostname(value: str) -> str:
    """A worker hostname as a Node name: lowercased, a DNS-1123 subdomain (422 naming ``hostname``)."""
    name = (value or "").strip().lower()
    if not name:
        raise invalid("hostname", "is required")
    if len(name) > 253 or not _NODE_NAME.match(name):
        raise invalid("hostname", f"{value!r} is not a valid node name (lowercase letters, digits, '-' and '.', "
                                  f"starting and ending with a letter or digit, at most 253 characters)")
    return name


def validate_capacity(value: Any, field_name: str = "capacity") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field_name, "must be an integer")
    if not 1 <= value <= MAX_CAPACITY:
        raise invalid(field_name, f"must be between 1 and {MAX_CAPACITY} (got {value})")
    return value


def register_patch(capacity: int, now: datetime | None = None) -> Obj:
    """Mark an existing node as a kubetask worker with a task capacity."""
    return {"metadata": {
        "labels": {WORKER_LABEL: "true"},
        "annotations": {CAPACITY_ANNOTATION: str(capacity),
                        REGISTERED_ANNOTATION: format_time(now or utcnow())},
    }}


def new_worker_node(name: str, capacity: int, now: datetime | None = None) -> Obj:
    """A Node object for a worker that does not exist yet (registered the way kwok registers nodes).

    It carries the worker label, the capacity annotation and a ``Ready`` condition with reason
    ``KubetaskRegistered``.  No kubelet backs it: the node lifecycle controller turns ``Ready`` to
    ``Unknown`` after its grace period (about 40 s), the worker shows ``OFFLINE``, and nothing is
    scheduled there.  Join real machines
    with their kubelet, then ``POST /workers?hostname=<node>`` marks them as workers.
    """
    stamp = format_time(now or utcnow())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {WORKER_LABEL: "true", HOSTNAME_LABEL: name},
            "annotations": {CAPACITY_ANNOTATION: str(capacity), REGISTERED_ANNOTATION: stamp},
        },
        "spec": {},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubetaskRegistered",
                "message": "registered through the kubetask API; no kubelet has reported yet",
                "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
            }],
            "addresses": [{"type": "Hostname", "address": name}],
            "capacity": {"pods": str(capacity)},
            "allocatable": {"pods": str(capacity)},
        },
    }


def pause_patch() -> Obj:
    """Out of kubetask's placement: running tasks continue, no new ones start there."""
    return {"metadata": {"labels": {PAUSED_LABEL: "true"}}}


def resume_patch() -> Obj:
    """Back into placement: removes the paused and draining labels (merge-patch ``null`` deletes)."""
    return {"metadata": {"labels": {PAUSED_LABEL: None, DRAINING_LABEL: None}}}


def drain_patch() -> Obj:
    """Finish the running tasks, take no new ones."""
    return {"metadata": {"labels": {DRAINING_LABEL: "true"}}}


def capacity_patch(capacity: int) -> Obj:
    return {"metadata": {"annotations": {CAPACITY_ANNOTATION: str(capacity)}}}
