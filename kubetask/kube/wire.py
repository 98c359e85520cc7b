"""Decode watch events and list pages into only what the caches keep.

A watched object is decoded whole and then cut down by its transform (:mod:`kubetask.kube.lean`):
of a 6 KB Pod, ~100 KB of Python objects are built and dropped again for the ~3 KB the cache
keeps (``managedFields``, the pod spec's environment, volumes and probes, the conditions).  Every
watch event pays for that, and a relist holds a whole page of such objects at once.

A :class:`Shape` decodes with a msgspec schema instead: fields the schema does not name are
skipped while parsing, so they are never built.  Each schema names a superset of what its
transform reads, so ``transform(shape decode) == transform(whole decode)``
(tests/unit/kube/test_wire.py checks this on objects from a real apiserver).  An event or a page
the schema does not fit (a type the apiserver never sends, text that is not UTF-8) is decoded
whole, as before.
"""

from __future__ import annotations

from typing import Any, Generic, TypedDict, TypeVar

import msgspec

from kubetask.core import jsonwire
from kubetask.core.objects import Obj

T = TypeVar("T")


class WatchEvent(TypedDict, Generic[T], total=False):
    type: str
    object: T


class ListPage(TypedDict, Generic[T], total=False):
    apiVersion: Any
    kind: Any
    metadata: Any
    items: list[T] | None


class ObjectMetaWire(TypedDict, total=False):
    """Every field of ObjectMeta but ``managedFields`` (server-side apply's bookkeeping, often half an object)."""

    name: Any
    generateName: Any
    namespace: Any
    selfLink: Any
    uid: Any
    resourceVersion: Any
    generation: Any
    creationTimestamp: Any
    deletionTimestamp: Any
    deletionGracePeriodSeconds: Any
    labels: Any
    annotations: Any
    ownerReferences: Any
    finalizers: Any


class _Typed(TypedDict, total=False):
    """What every object carries, and what a ``Status`` adds (the object of an ``ERROR`` watch event)."""

    apiVersion: Any
    kind: Any
    metadata: ObjectMetaWire
    code: Any
    reason: Any
    message: Any
    details: Any


class TaskWire(_Typed, total=False):
    """A Task without its managedFields: :func:`~kubetask.kube.lean.lean_task` and
    :func:`~kubetask.kube.lean.without_managed_fields` keep its spec and status whole."""

    spec: Any
    status: Any


class JobConditionsWire(TypedDict, total=False):
    conditions: Any
    startTime: Any
    completionTime: Any


class JobWire(_Typed, total=False):
    """A Job as :func:`~kubetask.kube.lean.lean_job` reads it: metadata and the status' verdicts (no pod template)."""

    status: JobConditionsWire | str


class ContainerWire(TypedDict, total=False):
    name: Any
    resources: Any


class PodSpecWire(TypedDict, total=False):
    containers: list[ContainerWire]
    initContainers: list[ContainerWire]
    nodeName: Any


class ContainerStatusWire(TypedDict, total=False):
    name: Any
    state: Any


class PodStatusWire(TypedDict, total=False):
    phase: Any
    reason: Any
    message: Any
    startTime: Any
    containerStatuses: list[ContainerStatusWire]


class PodWire(_Typed, total=False):
    """A Pod as :func:`~kubetask.kube.lean.lean_pod` reads it: each container's name and resources, the node,
    the phase and each container's state (no environment, volumes, probes, conditions or image ids)."""

    spec: PodSpecWire
    status: PodStatusWire | str


class Shape:
    """Decoders for one kind's watch events and list pages that build only what its schema names."""

    def __init__(self, schema: Any) -> None:
        # Decoded as plain dicts: every reader of an informer's objects reads dicts.
        self._event: msgspec.json.Decoder[Any] = msgspec.json.Decoder(WatchEvent[schema])
        self._page: msgspec.json.Decoder[Any] = msgspec.json.Decoder(ListPage[schema])

    def event(self, data: bytes) -> Obj:
        """One watch event (``{"type", "object"}``)."""
        return _decoded(self._event, data)

    def page(self, data: bytes) -> Obj:
        """One page of a LIST (``{"metadata", "items"}``)."""
        return _decoded(self._page, data)


def _decoded(decoder: msgspec.json.Decoder[Any], data: bytes) -> Obj:
    try:
        decoded: Obj = decoder.decode(data)
    except msgspec.DecodeError:  # the schema does not fit (or it is not JSON: jsonwire says so as before)
        decoded = jsonwire.loads(data)
    return decoded


TASK = Shape(TaskWire)
JOB = Shape(JobWire)
POD = Shape(PodWire)

__all__ = ["JOB", "POD", "TASK", "JobWire", "ObjectMetaWire", "PodWire", "Shape", "TaskWire"]
