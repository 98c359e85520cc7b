"""Resource quantities and node capacity (pure).

All amounts are normalised to integer *milli-units* (``"500m"`` CPU → 500,
``"2Gi"`` → 2·2³⁰·1000, one GPU → 1000), so CPU, memory, GPUs and object counts
can be added, compared and subtracted uniformly without floating point.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from kubetask.core.objects import LABEL_TASK

MILLI = 1000

PAUSED_LABEL = "kubetask.io/paused"
DRAINING_LABEL = "kubetask.io/draining"
CAPACITY_ANNOTATION = "kubetask.io/capacity"
TASK_LABEL = LABEL_TASK

_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``"1.5"``, ``"500m"``, ``"2Gi"``, ``4``) as a Decimal in base units."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in _SUFFIXES:
        raise QuantityError(f"not a quantity: {value!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as error:
        raise QuantityError(f"not a quantity: {value!r}") from error


def to_milli(value: Any) -> int:
    """A quantity in integer milli-units, rounded up (the apiserver rounds requests up too)."""
    amount = parse_quantity(value) * MILLI
    integral = int(amount)
    return integral + 1 if amount > integral else integral


def format_cpu(milli: int) -> str:
    """Milli-CPU as people say it: ``1500`` → ``"1.5"``."""
    return _trim(Decimal(milli) / MILLI)


def format_memory(milli: int) -> str:
    """Milli-bytes as a binary quantity: ``2·2³⁰·1000`` → ``"2Gi"``."""
    amount = Decimal(milli) / MILLI
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIXES[suffix]
        if amount >= unit:
            return _trim((amount / unit).quantize(Decimal("0.01"))) + suffix
    return _trim(amount)


def format_count(milli: int) -> str:
    return _trim(Decimal(milli) / MILLI)


def _trim(value: Decimal) -> str:
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


# --------------------------------------------------------------------------- demands


@dataclass(frozen=True)
class Demand:
    """What one task's pod asks for, in milli-units."""

    cpu: int = MILLI
    memory: int = 2 * 2**30 * MILLI
    gpus: int = 0
    gpu_type: str | None = None
    job: bool = True

    @property
    def gpu_count(self) -> int:
        return self.gpus // MILLI

    def quota_vector(self, gpu_resource: str) -> dict[str, int]:
        """The amounts this pod (and its Job) add to each ResourceQuota resource name."""
        vector = {
            "requests.cpu": self.cpu, "cpu": self.cpu, "limits.cpu": self.cpu,
            "requests.memory": self.memory, "memory": self.memory, "limits.memory": self.memory,
            "pods": MILLI, "count/pods": MILLI,
        }
        if self.gpus:
            vector[f"requests.{gpu_resource}"] = self.gpus
            vector[f"limits.{gpu_resource}"] = self.gpus
            vector[gpu_resource] = self.gpus
        if self.job:
            vector["count/jobs.batch"] = MILLI
        return vector


def pod_requests_milli(pod: Mapping[str, Any], gpu_resource: str) -> dict[str, int]:
    """Effective requests of a Pod (``max(sum(containers), max(initContainers))``) in milli-units."""
    spec = pod.get("spec") or {}
    totals = {"cpu": 0, "memory": 0, "gpus": 0}
    for container in spec.get("containers") or []:
        for key, amount in _container_requests(container, gpu_resource).items():
            totals[key] += amount
    for container in spec.get("initContainers") or []:
        for key, amount in _container_requests(container, gpu_resource).items():
            totals[key] = max(totals[key], amount)
    return totals


def _container_requests(container: Mapping[str, Any], gpu_resource: str) -> dict[str, int]:
    resources = container.get("resources") or {}
    requests = dict(resources.get("limits") or {})  # limits default the requests
    requests.update(resources.get("requests") or {})
    out = {"cpu": 0, "memory": 0, "gpus": 0}
    for name, key in (("cpu", "cpu"), ("memory", "memory"), (gpu_resource, "gpus")):
        if name in requests:
            with contextlib.suppress(QuantityError):
                out[key] = to_milli(requests[name])
    return out


def pod_is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def holding_node(pod: Mapping[str, Any] | None) -> str | None:
    """The node whose capacity the pod takes: bound and not finished (else ``None``).  What a node's
    figures count, and what indexes pods by node, so a node's bucket never grows with its history."""
    if pod is None or pod_is_terminal(pod):
        return None
    node = (pod.get("spec") or {}).get("nodeName")
    return str(node) if node else None


# --------------------------------------------------------------------------- nodes


@dataclass
class NodeInfo:
    """A node as the admission policy sees it: what it has, what is in use, whether it takes work."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    allocatable: dict[str, int] = field(default_factory=dict)  # cpu / memory / gpus, milli
    used: dict[str, int] = field(default_factory=dict)
    unschedulable: bool = False
    paused: bool = False
    draining: bool = False
    max_tasks: int | None = None
    tasks: int = 0
    gpu_product: str | None = None
    is_gpu_node: bool = False

    @property
    def takes_work(self) -> bool:
        return not (self.unschedulable or self.paused or self.draining)

    def free(self, key: str) -> int:
        return self.allocatable.get(key, 0) - self.used.get(key, 0)


def node_info(node: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], *, gpu_resource: str,
              gpu_label_key: str, gpu_label_value: str, product_label_key: str) -> NodeInfo:
    """Build a :class:`NodeInfo` from a Node object and the pods bound to it."""
    meta = node.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = meta.get("annotations") or {}
    status = node.get("status") or {}
    allocatable_raw = status.get("allocatable") or status.get("capacity") or {}
    allocatable = {}
    for name, key in (("cpu", "cpu"), ("memory", "memory"), (gpu_resource, "gpus")):
        try:
            allocatable[key] = to_milli(allocatable_raw.get(name, 0))
        except QuantityError:
            allocatable[key] = 0
    used = {"cpu": 0, "memory": 0, "gpus": 0}
    tasks = 0
    for pod in pods:
        if pod_is_terminal(pod):
            continue
        for key, amount in pod_requests_milli(pod, gpu_resource).items():
            used[key] += amount
        if TASK_LABEL in ((pod.get("metadata") or {}).get("labels") or {}):
            tasks += 1
    max_tasks: int | None = None
    raw_capacity = annotations.get(CAPACITY_ANNOTATION)
    if raw_capacity not in (None, ""):
        try:
            max_tasks = max(0, int(str(raw_capacity)))
        except ValueError:
            max_tasks = None
    spec = node.get("spec") or {}
    return NodeInfo(
        name=str(meta.get("name")),
        labels=labels,
        taints=list(spec.get("taints") or []),
        allocatable=allocatable,
        used=used,
        unschedulable=bool(spec.get("unschedulable")),
        paused=labels.get(PAUSED_LABEL) == "true",
        draining=labels.get(DRAINING_LABEL) == "true",
        max_tasks=max_tasks,
        tasks=tasks,
        gpu_product=labels.get(product_label_key),
        is_gpu_node=labels.get(gpu_label_key) == gpu_label_value or allocatable["gpus"] > 0,
    )


def tolerates(taints: Iterable[Mapping[str, Any]], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the tolerations cover every NoSchedule/NoExecute taint (the scheduler's rule)."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates_one(taint, toleration) for toleration in tolerations):
            return False
    return True


def _tolerates_one(taint: Mapping[str, Any], toleration: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def selector_matches(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return all(labels.get(key) == value for key, value in (selector or {}).items())
