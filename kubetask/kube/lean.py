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


_SHARED: dict[tuple[Any, ...], Any] = {}
"""Small dicts and lists met before (hash-consing): thousands of pods carry the same containers and
requests, thousands of Tasks the same resources and pod annotations, and the Jobs and Pods that
end in one second the same ``Complete`` condition and container state.  A dict that is certain to
be one object's alone is not offered (``share=False``: a Job's or Pod's labels name its Task and
execution): kept here it would cost twice, and outlive its object until the table is emptied,
which it is when it grows past :data:`_SHARED_MAX`."""
_SHARED_MAX = 30_000
_SHARED_LEAVES = 24
"""The most scalars one shared dict or list holds, all the way down: a larger one is rarely met twice."""

_UNSHARED: Any = object()
"""The key of a value that is not shared (``share=False``, or more than :data:`_SHARED_LEAVES` scalars)."""
_TRUE, _FALSE = object(), object()
"""The keys of ``true`` and ``false``: as ``1`` and ``0`` they would be equal keys, and a ``1`` must not
stand in for a ``true`` (nor ``1.0`` for ``1``: floats are keyed with a tag)."""


def _consed(value: Any, share: bool) -> tuple[Any, Any, int]:
    """``value`` compacted, its key in :data:`_SHARED` (or :data:`_UNSHARED`), and how many scalars it holds.

    A dict's key is ``("{", k1, key1, k2, key2, ...)`` and a list's ``("[", key1, ...)``: one flat tuple
    per container, whose items are the keys of its children.
    """
    kind = type(value)
    if kind is str:
        text = _intern(value) if len(value) <= _SHORT else value
        return text, text, 1
    if kind is dict or kind is list:
        leaves = 0
        if kind is dict:
            out: Any = {}
            parts: list[Any] = ["{"]
            for name, item in value.items():
                if type(name) is str:
                    name = _intern(name)
                out[name], item_key, size = _consed(item, share)
                parts += (name, item_key)
                leaves += size
        else:
            out = []
            parts = ["["]
            for item in value:
                kept, item_key, size = _consed(item, share)
                out.append(kept)
                parts.append(item_key)
                leaves += size
        if not share or leaves > _SHARED_LEAVES or _UNSHARED in parts:
            return out, _UNSHARED, leaves
        key = tuple(parts)
        found = _SHARED.get(key)
        if found is not None:
            return found, key, leaves
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[key] = out
        return out, key, leaves
    if kind is bool:
        return value, _TRUE if value else _FALSE, 1
    if kind is float:
        return value, ("f", value), 1
    if kind is int or value is None:
        return value, value, 1
    return value, _UNSHARED, 1  # not a JSON type: kept as it is, and not shared


def compact(value: Any, *, share: bool = True) -> Any:
    """``value`` rebuilt with interned keys and short strings; with ``share``, small equal dicts and lists
    are one object (see :data:`_SHARED`).

    The result must never be mutated (the caches' objects never are): one small dict may stand
    in many objects.
    """
    return _consed(value, share)[0]


_KUBETASK = "kubetask.io/"
_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")
_WORKLOAD_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
_TASK_NAME = ("kubetask.io/task-name",)


def _meta(meta: Mapping[str, Any], *, labels: bool | str = True, annotations: bool | tuple[str, ...] = True,
          owners: bool | str = False, keys: tuple[str, ...] = _META_KEYS, share_labels: bool = True) -> Obj:
    """``labels``: True for all, a prefix for those that start with it; ``annotations``: True or the names to keep;
    ``owners``: True to keep the owners' uids, a kind to keep only those of owners of that kind;
    ``share_labels``: False where the labels are the object's alone (a Job's name its Task and execution)."""
    out: Obj = {}
    for key in keys:
        value = meta.get(key)
        if value is not None:
            # A resourceVersion belongs to one object version alone: interning it would only cost an
            # entry in the interpreter's table of interned strings.
            out[key] = value if key == "resourceVersion" else compact(value)
    found_labels = meta.get("labels")
    if labels and found_labels:
        if isinstance(labels, str):
            found_labels = {k: v for k, v in found_labels.items() if k.startswith(labels)}
        if found_labels:
            out["labels"] = compact(found_labels, share=share_labels)
    found = meta.get("annotations")
    if found and annotations:
        if isinstance(annotations, tuple):
            found = {k: v for k, v in found.items() if k in annotations}
        elif _LAST_APPLIED in found:  # a second copy of the object, as kubectl apply sent it
            found = {k: v for k, v in found.items() if k != _LAST_APPLIED}
        if found:
            out["annotations"] = compact(found)
    if owners and meta.get("ownerReferences"):
        refs = [{"uid": ref.get("uid")} for ref in meta["ownerReferences"]
                if owners is True or ref.get("kind") == owners]
        if refs:
            out["ownerReferences"] = refs
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
    out: Obj = {_intern(k): compact(v) for k, v in obj.items() if k != "metadata"}
    # The metadata dict itself (a name, a uid, a resourceVersion: this object's alone) is not offered for sharing.
    out["metadata"] = {_intern(k): compact(v) for k, v in meta.items() if k != "managedFields"}
    return out


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
        lean_status["conditions"] = conditions
    for key in ("startTime", "completionTime"):
        if status.get(key) is not None:
            lean_status[key] = str(status[key])
    # The whole status is one shared value: the Jobs that end in one second end alike.
    return _typed(obj, {"metadata": _meta(meta, labels=_KUBETASK, annotations=_TASK_NAME, owners=True,
                                          keys=_WORKLOAD_META_KEYS, share_labels=False),
                        "status": compact(lean_status)})


def _resources(container: Mapping[str, Any]) -> Obj:
    out: Obj = {"name": str(container.get("name") or "")}
    resources = container.get("resources")
    if resources:
        out["resources"] = {k: v for k, v in resources.items() if k in ("requests", "limits")}
    return out


def _container_status(status: Mapping[str, Any]) -> Obj:
    out: Obj = {"name": str(status.get("name") or "")}
    if status.get("state"):
        out["state"] = {kind: {k: v for k, v in (detail or {}).items() if k != "containerID"}
                        for kind, detail in status["state"].items()}
    return out


def lean_pod(obj: Obj) -> Obj:
    """A Pod as capacity and status derivation read it.

    Kept: kubetask's labels, the task-name annotation, the uid of a Task that owns it (``runtime: pod``; a
    Job's pod is never asked whose it is) and the timestamps; the
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
        lean_spec["nodeName"] = str(spec["nodeName"])
    lean_status: Obj = {}
    for key in ("phase", "reason", "message", "startTime"):
        if status.get(key) is not None:
            lean_status[key] = status[key]
    if status.get("containerStatuses"):
        lean_status["containerStatuses"] = [_container_status(s) for s in status["containerStatuses"]]
    # Spec and status are shared values: the pods of one shape on one node, and those that end in one second
    # alike, hold one copy each.
    return _typed(obj, {"metadata": _meta(meta, labels=_KUBETASK, annotations=_TASK_NAME, owners="Task",
                                          keys=_WORKLOAD_META_KEYS, share_labels=False),
                        "spec": compact(lean_spec), "status": compact(lean_status)})


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
