"""Transform functions for the watch caches: keep the fields a reader needs, share repeated strings.

Kubernetes' own informers take a transform for the same reason (``SetTransform``): a cache of
10,000 Tasks, Jobs and Pods holds every version of every object it is sent, and most of a
watched object is read by nobody.  ``managedFields`` alone is often half of an object; a Pod's
spec (environment, volumes, probes) and a Job's pod template are not needed to follow what
happened to them.

Each function takes a freshly decoded object and returns the object to store.  They build new
dicts whose keys are interned, so the cache holds one copy of ``"metadata"`` instead of one
per object (``json.loads`` allocates every key afresh on every call); short string values
(phases, reasons, namespaces, timestamps) are interned too.  The stored objects are shared
with every reader and must never be mutated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from kubetask.core.objects import Obj

Transform = Callable[[Obj], Obj]

_SHORT = 40
"""String values up to this length are interned (names, phases, reasons, timestamps, quantities)."""

_intern = sys.intern
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


_SHARED: dict[tuple[Any, ...], dict[str, Any]] = {}
"""Small flat dicts met before (hash-consing): thousands of pods carry the same container requests,
thousands of Tasks the same resources and pod annotations.  Only dicts of a few scalars are
shared (a unique dict kept here would cost twice); the table is emptied when it grows past
:data:`_SHARED_MAX`."""
_SHARED_MAX = 20_000
_SHARED_ITEMS = 6
_SCALARS = (str, int, float, bool, type(None))


def compact(value: Any) -> Any:
    """``value`` rebuilt with interned keys and short strings; small equal flat dicts are shared.

    The result must never be mutated (the caches' objects never are): one small dict may stand
    in many objects.
    """
    if isinstance(value, dict):
        out = {_intern(k) if type(k) is str else k: compact(v) for k, v in value.items()}
        if len(out) <= _SHARED_ITEMS and all(isinstance(v, _SCALARS) for v in out.values()):
            key = tuple(out.items())
            found = _SHARED.get(key)
            if found is not None:
                return found
            if len(_SHARED) >= _SHARED_MAX:
                _SHARED.clear()
            _SHARED[key] = out
        return out
    if isinstance(value, list):
        return [compact(v) for v in value]
    if type(value) is str and len(value) <= _SHORT:
        return _intern(value)
    return value


_KUBETASK = "kubetask.io/"
_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")
_WORKLOAD_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
_TASK_NAME = ("kubetask.io/task-name",)


def _meta(meta: Mapping[str, Any], *, labels: bool | str = True, annotations: bool | tuple[str, ...] = True,
          owners: bool = False, keys: tuple[str, ...] = _META_KEYS) -> Obj:
    """``labels``: True for all, a prefix for those that start with it; ``annotations``: True or the names to keep."""
    out: Obj = {}
    for key in keys:
        value = meta.get(key)
        if value is not None:
            out[key] = _intern(value) if type(value) is str and len(value) <= _SHORT else value
    found_labels = meta.get("labels")
    if labels and found_labels:
        if isinstance(labels, str):
            found_labels = {k: v for k, v in found_labels.items() if k.startswith(labels)}
        if found_labels:
            out["labels"] = compact(found_labels)
    found = meta.get("annotations")
    if found and annotations:
        if isinstance(annotations, tuple):
            found = {k: v for k, v in found.items() if k in annotations}
        elif _LAST_APPLIED in found:  # a second copy of the object, as kubectl apply sent it
            found = {k: v for k, v in found.items() if k != _LAST_APPLIED}
        if found:
            out["annotations"] = compact(found)
    if owners and meta.get("ownerReferences"):
        out["ownerReferences"] = [{"uid": ref.get("uid")} for ref in meta["ownerReferences"]]
    return out


def _typed(obj: Mapping[str, Any], out: Obj) -> Obj:
    if obj.get("apiVersion"):
        out["apiVersion"] = _intern(str(obj["apiVersion"]))
    if obj.get("kind"):
        out["kind"] = _intern(str(obj["kind"]))
    return out


def without_managed_fields(obj: Obj) -> Obj:
    """The whole object except ``metadata.managedFields`` (server-side apply's bookkeeping)."""
    meta = obj.get("metadata") or {}
    out = {k: v for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return compact(out)  # type: ignore[no-any-return]


def lean_task(obj: Obj) -> Obj:
    """A Task as the operator needs it: metadata without managedFields, the whole spec and status.

    The spec is what the Job is built from and the status what the next patch is computed
    against, so both stay whole.
    """
    meta = obj.get("metadata") or {}
    out = _typed(obj, {"metadata": _meta(meta, owners=False)})
    if obj.get("spec") is not None:
        out["spec"] = compact(obj["spec"])
    if obj.get("status") is not None:
        # A top-level field set to null reads as absent (``status.get``) and diffs as equal to it.
        out["status"] = {_intern(k): compact(v) for k, v in obj["status"].items() if v is not None}
    return out


_CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")


def lean_job(obj: Obj) -> Obj:
    """A Job as the operator follows it: its Task and execution, its owner, and its verdict.

    Kept: kubetask's labels, the task-name annotation, the owner's uid; the conditions that hold
    (``status: "True"``: the verdicts) without their probe times; start and completion times.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    lean_status: Obj = {}
    conditions = [{k: c[k] for k in _CONDITION_KEYS if c.get(k) is not None}
                  for c in status.get("conditions") or [] if c.get("status") == "True"]
    if conditions:
        lean_status["conditions"] = compact(conditions)
    for key in ("startTime", "completionTime"):
        if status.get(key) is not None:
            lean_status[key] = _intern(str(status[key]))
    return _typed(obj, {"metadata": _meta(meta, labels=_KUBETASK, annotations=_TASK_NAME, owners=True,
                                          keys=_WORKLOAD_META_KEYS), "status": lean_status})


def _resources(container: Mapping[str, Any]) -> Obj:
    out: Obj = {"name": _intern(str(container.get("name") or ""))}
    resources = container.get("resources")
    if resources:
        out["resources"] = compact({k: v for k, v in resources.items() if k in ("requests", "limits")})
    return out


def _container_status(status: Mapping[str, Any]) -> Obj:
    out: Obj = {"name": _intern(str(status.get("name") or ""))}
    if status.get("state"):
        out["state"] = {kind: compact({k: v for k, v in (detail or {}).items() if k != "containerID"})
                        for kind, detail in status["state"].items()}
    return out


def lean_pod(obj: Obj) -> Obj:
    """A Pod as capacity and status derivation read it.

    Kept: kubetask's labels, the task-name annotation, the owners' uids and the timestamps; the
    node and each container's requests and limits (what the pod holds on its node); the phase,
    reason, message, start time and each container's state (how it ended, its exit code and
    termination message).
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    lean_spec: Obj = {"containers": [_resources(c) for c in spec.get("containers") or []]}
    if spec.get("initContainers"):
        lean_spec["initContainers"] = [_resources(c) for c in spec["initContainers"]]
    if spec.get("nodeName"):
        lean_spec["nodeName"] = _intern(str(spec["nodeName"]))
    lean_status: Obj = {}
    for key in ("phase", "reason", "message", "startTime"):
        if status.get(key) is not None:
            value = status[key]
            lean_status[key] = _intern(value) if type(value) is str and len(value) <= _SHORT else value
    if status.get("containerStatuses"):
        lean_status["containerStatuses"] = [_container_status(s) for s in status["containerStatuses"]]
    return _typed(obj, {"metadata": _meta(meta, labels=_KUBETASK, annotations=_TASK_NAME, owners=True,
                                          keys=_WORKLOAD_META_KEYS), "spec": lean_spec, "status": lean_status})


_NODE_ANNOTATIONS = ("kubetask.io/capacity",)


def lean_node(obj: Obj) -> Obj:
    """A Node as placement reads it: labels, taints, cordon, capacity; no heartbeats or images.

    Without the conditions' heartbeat times, a node's periodic status update stores an
    unchanged object, so it wakes nobody.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    lean_spec: Obj = {}
    if spec.get("taints"):
        lean_spec["taints"] = compact(spec["taints"])
    if spec.get("unschedulable"):
        lean_spec["unschedulable"] = True
    lean_status: Obj = {}
    for key in ("allocatable", "capacity"):
        if status.get(key):
            lean_status[key] = compact(status[key])
    return _typed(obj, {"metadata": _meta(meta, annotations=_NODE_ANNOTATIONS), "spec": lean_spec,
                        "status": lean_status})


def lean_quota(obj: Obj) -> Obj:
    """A ResourceQuota: its hard limits and the usage the quota controller reports."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return _typed(obj, {"metadata": _meta(meta, annotations=False),
                        "spec": {"hard": compact(spec.get("hard") or {})},
                        "status": {k: compact(status[k]) for k in ("hard", "used") if status.get(k) is not None}})


__all__ = ["Transform", "compact", "lean_job", "lean_node", "lean_pod", "lean_quota", "lean_task",
           "without_managed_fields"]
