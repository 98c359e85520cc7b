"""The shared vocabulary of Kubernetes objects: the object type, kubetask's labels and annotations,
and typed accessors that read an object without ``(obj.get("metadata") or {})`` chains.

Every module of the core, the API and the operator names these keys from here, so a label is
spelled once.  The accessors never raise on a partial object (a watch event, a request body): a
missing part reads as empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubetask.core.models import ANNOTATION_SUBMITTED_AT

Obj = dict[str, Any]
"""A Kubernetes object (or any JSON object) as plain data."""
Key = tuple[str, str]
"""``(namespace, name)`` of a namespaced object."""

# --------------------------------------------------------------------------- labels

LABEL_USER = "kubetask.io/user"
"""On Tasks (and their Jobs and pods): the owning tenant."""
LABEL_TENANT = "kubetask.io/tenant"
"""On a tenant's Namespace and the objects kubetask makes for it."""
LABEL_TASK = "kubetask.io/task"
"""On a Task's Jobs and pods: the Task's name."""
LABEL_API_KEY = "kubetask.io/api-key"
"""``true`` on the Secrets that hold hashed API keys (the API watches only those)."""

# --------------------------------------------------------------------------- annotations on Tasks

ANNOTATION_TASK_TYPE = "kubetask.io/task-type"
"""Seed 004's ``task_type`` the task was created with."""
ANNOTATION_MODEL_NAME = "kubetask.io/model-name"
ANNOTATION_QUEUE_NAME = "kubetask.io/queue-name"
"""The queue name as the client wrote it, when it is no DNS label (``payments_eu``)."""
ANNOTATION_RERUN = "kubetask.io/rerun"
"""A new value asks the operator for one more execution of a finished task."""
ANNOTATION_REPLAY_OF = "kubetask.io/replay-of"
"""On a replay: the original task's name."""
ANNOTATION_REPLAY_OF_UID = "kubetask.io/replay-of-uid"
"""On a replay: the original task's uid (its REST id)."""
ANNOTATION_DEPENDS_ON_UIDS = "kubetask.io/depends-on-uids"
"""JSON ``{name: uid}`` of ``spec.dependsOn`` as the REST client named them, so responses show their ids."""
ANNOTATION_CANCELLED_AT = "kubetask.io/cancelled-at"
ANNOTATION_SUBMITTED_VIA = "kubetask.io/submitted-via"

__all__ = [
    "ANNOTATION_CANCELLED_AT", "ANNOTATION_DEPENDS_ON_UIDS", "ANNOTATION_MODEL_NAME", "ANNOTATION_QUEUE_NAME",
    "ANNOTATION_REPLAY_OF", "ANNOTATION_REPLAY_OF_UID", "ANNOTATION_RERUN", "ANNOTATION_SUBMITTED_AT",
    "ANNOTATION_SUBMITTED_VIA", "ANNOTATION_TASK_TYPE", "LABEL_API_KEY", "LABEL_TASK", "LABEL_TENANT", "LABEL_USER",
    "Obj", "annotations_of", "camel", "creation_order", "label_value", "labels_of", "metadata", "name", "namespace",
    "snake", "snake_keys", "spec", "status", "uid",
]

_EMPTY: Mapping[str, Any] = {}

# --------------------------------------------------------------------------- accessors


def _part(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _part(obj, "metadata")


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _part(obj, "spec")


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _part(obj, "status")


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _part(metadata(obj), "annotations")


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _part(metadata(obj), "labels")


def name(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("name") or "")


def namespace(obj: Mapping[str, Any]) -> str | None:
    value = metadata(obj).get("namespace")
    return str(value) if value else None


def uid(obj: Mapping[str, Any]) -> str | None:
    value = metadata(obj).get("uid")
    return str(value) if value else None


def creation_order(obj: Mapping[str, Any]) -> str:
    """A sort key in creation order: ``creationTimestamp`` (seconds), then the submission stamp
    (``kubetask.io/submitted-at``, microseconds), so tasks created within one second keep their FIFO order."""
    meta = metadata(obj)
    return f"{meta.get('creationTimestamp') or ''}|{annotations_of(obj).get(ANNOTATION_SUBMITTED_AT, '')}"


# --------------------------------------------------------------------------- spelling


_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def label_value(value: str) -> str:
    """``value`` made a valid label value (≤ 63 characters of ``[A-Za-z0-9._-]``, alphanumeric ends)."""
    return _LABEL_VALUE.sub("-", value)[:63].strip("-._") or "unknown"


def snake(key: str) -> str:
    """``gpuType`` -> ``gpu_type``."""
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def camel(key: str) -> str:
    """``gpu_type`` -> ``gpuType``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_keys(value: Any) -> Any:
    """Every object key inside ``value`` in snake_case (the REST spelling of the CRD's camelCase)."""
    if isinstance(value, Mapping):
        return {snake(str(k)): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value
