"""What one operator instance knows: the watched objects, the indexes kept from their changes, the dirty sets.

The views are :class:`kubetask.kube.cache.Informer` stores, the same store the API reads
from: lean list+watch streams (the transforms of :mod:`kubetask.kube.lean` keep only the
fields the operator reads) for Tasks, Jobs, Pods, Nodes, ResourceQuotas, Tenants and
TaskTemplates.  Kopf watches only Tenants (their handlers) and serves the webhooks.

Every change event updates, in O(1):

* the admission indexes (waiting Tasks per tenant, the dependency graphs) the webhook
  answers from (:class:`~kubetask.operator.indexes.AdmissionIndex`);
* the scheduler's dirty sets (:class:`~kubetask.operator.indexes.Changes`): the Task a
  Job or Pod belongs to, the dependants of a Task whose phase moved, the node a pod's
  resources moved on, the quota that changed;
* counters (Tasks per phase, Jobs per namespace) for metrics and the ``count/jobs.batch`` quota.

Nothing here is a module global, so tests can start and stop several operators in one process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubetask.core.jobs import EXECUTION_LABEL, TASK_LABEL, TASK_NAME_ANNOTATION
from kubetask.core.objects import Key, Obj
from kubetask.core.scheduling import holding_node
from kubetask.core.tenants import namespace_owners
from kubetask.kube import wire
from kubetask.kube.cache import Informer, InformerSet
from kubetask.kube.client import (
    JOBS,
    NODES,
    PODS,
    RESOURCE_QUOTAS,
    TASK_TEMPLATES,
    TASKS,
    TENANTS,
    KubeClient,
)
from kubetask.kube.lean import lean_job, lean_node, lean_pod, lean_quota, lean_task, without_managed_fields
from kubetask.kube.wire import Shape
from kubetask.operator.indexes import AdmissionIndex, Changes, Dependents, phase_of, task_key
from kubetask.operator.metrics import Metrics
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings


def utcnow() -> datetime:
    return datetime.now(UTC)


def owner_task(obj: Mapping[str, Any]) -> Key | None:
    """The Task a Job or Pod was made for (its ``kubetask.io/task-name`` annotation, else its task label)."""
    meta = obj.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(TASK_NAME_ANNOTATION) or (meta.get("labels") or {}).get(TASK_LABEL)
    if not name:
        return None
    return (str(meta.get("namespace") or ""), str(name))


def execution_of(obj: Mapping[str, Any]) -> int | None:
    raw = ((obj.get("metadata") or {}).get("labels") or {}).get(EXECUTION_LABEL)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _task_index(obj: Obj) -> Iterable[str]:
    owner = owner_task(obj)
    # Interned: a Task's Job and pods, and each of their versions, hold one copy of the key.
    return (sys.intern(f"{owner[0]}/{owner[1]}"),) if owner else ()


def _node_index(obj: Obj) -> Iterable[str]:
    """Finished pods are left out: a node's refresh reads only what runs there, not its history."""
    node = holding_node(obj)
    return (node,) if node else ()


def _namespace_index(obj: Obj) -> Iterable[str]:
    return (str((obj.get("metadata") or {}).get("namespace") or ""),)


def _version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except (TypeError, ValueError):
        return None


def release_namespaces(settings: OperatorSettings) -> frozenset[str]:
    """The namespace(s) of kubetask's own install: never a tenant's (see ``OperatorSettings.release_namespace``)."""
    return frozenset(ns for ns in (settings.release_namespace or settings.webhook_service_namespace,) if ns)


class State:
    """Everything one operator instance knows and shares between its handlers and its scheduler."""

    def __init__(self, settings: OperatorSettings, gpu: GpuSettings, kube: KubeSettings, client: KubeClient,
                 *, clock: Callable[[], datetime] | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.gpu = gpu
        self.kube = kube
        self.client = client
        self.clock: Callable[[], datetime] = clock or utcnow
        self.metrics = metrics or Metrics()
        namespaces = list(settings.namespaces) or None
        self.informers = InformerSet()

        def store(name: str, resource: Any, transform: Any, namespaced: bool = True, shape: Shape | None = None,
                  **indexers: Callable[[Obj], Iterable[str]]) -> Informer:
            return self.informers.add(name, Informer(
                client, resource, namespaces=namespaces if namespaced else None, transform=transform,
                shape=shape, default_indexers=False, indexers=indexers, stamps=False))

        # The three kinds with thousands of objects and ~20 watch events per task decode only what their
        # transform keeps (kubetask.kube.wire): less decode CPU per event, and a relist page stays small.
        self.tasks = store("tasks", TASKS, lean_task, shape=wire.TASK, namespace=_namespace_index)
        self.jobs = store("jobs", JOBS, lean_job, shape=wire.JOB, task=_task_index)
        self.pods = store("pods", PODS, lean_pod, shape=wire.POD, task=_task_index, node=_node_index)
        self.nodes = store("nodes", NODES, lean_node, namespaced=False)
        self.quotas = store("resourcequotas", RESOURCE_QUOTAS, lean_quota)
        self.tenants = store("tenants", TENANTS, without_managed_fields, namespaced=False)
        self.templates = store("tasktemplates", TASK_TEMPLATES, without_managed_fields, namespaced=False)

        self.changes = Changes()
        self.admission = AdmissionIndex()
        self.dependents = Dependents()
        self.tenant_by_namespace: dict[str, str] = {}
        self.namespaces_of_tenant: dict[str, list[str]] = {}
        self.template_specs: dict[str, Obj] = {}
        self.phase_counts: dict[str, int] = defaultdict(int)
        self.job_counts: dict[str, int] = defaultdict(int)
        self.pod_versions: dict[tuple[str, str, int], int] = {}
        """Per execution: the resourceVersion its pod was first seen with (see ``kubetask.core.cycle.in_quota``)."""
        self.synced = asyncio.Event()
        self.started = time.monotonic()

        self.tasks.subscribe(self._task_changed)
        self.jobs.subscribe(self._job_changed)
        self.pods.subscribe(self._pod_changed)
        self.nodes.subscribe(lambda _, old, new: self.changes.node(str(((new or old or {}).get("metadata")
                                                                        or {}).get("name"))))
        self.quotas.subscribe(lambda _, old, new: self.changes.quota(task_key(new or old or {})))
        self.tenants.subscribe(self._tenant_changed)
        self.templates.subscribe(self._template_changed)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.informers.start()

    async def wait_synced(self, within: float | None = None) -> bool:
        """Wait until every store has listed once (then ``synced`` is set)."""
        if await self.informers.wait_synced(within):
            self.synced.set()
        return self.synced.is_set()

    async def stop(self) -> None:
        await self.informers.stop()

    # ------------------------------------------------------------------ change events

    def _task_changed(self, _: str, old: Obj | None, new: Obj | None) -> None:
        key = task_key(new if new is not None else old or {})
        self.admission.on_task(old, new)
        self.dependents.on_task(old, new)
        before, after = phase_of(old), phase_of(new)
        if old is not None:
            self.phase_counts[before or "Pending"] -= 1
        if new is not None:
            self.phase_counts[after or "Pending"] += 1
        self.changes.task(key)
        if old is None or new is None or before != after:
            for dependant in self.dependents.of(key):  # their dependency appeared, went or moved
                self.changes.task(dependant)

    def _job_changed(self, _: str, old: Obj | None, new: Obj | None) -> None:
        namespace = task_key(new if new is not None else old or {})[0]
        if old is None:
            self.job_counts[namespace] += 1
        elif new is None:
            self.job_counts[namespace] -= 1
            if self.job_counts[namespace] <= 0:
                del self.job_counts[namespace]
            self.changes.decide()  # a Job count quota may have room again
        owner = owner_task(new if new is not None else old or {})
        if owner is not None:
            self.changes.task(owner)

    def _pod_changed(self, _: str, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old or {}
        owner = owner_task(pod)
        if owner is not None:
            self.changes.task(owner)
            execution = execution_of(pod)
            if execution is not None:
                key = (owner[0], owner[1], execution)
                if new is None:
                    self.pod_versions.pop(key, None)
                elif old is None:
                    version = _version(new)
                    if version is not None:
                        self.pod_versions[key] = min(version, self.pod_versions.get(key, version))
        before, after = holding_node(old), holding_node(new)
        if before != after:  # the pod took, or gave back, a node's capacity
            for node in (before, after):
                if node is not None:
                    self.changes.node(node)

    def _tenant_changed(self, _: str, old: Obj | None, new: Obj | None) -> None:
        previous = dict(self.tenant_by_namespace)
        # One owner per namespace (the first claimant), and none for system namespaces: a Tenant that
        # slipped past the webhook neither takes another tenant's Tasks nor makes kube-system a tenant's.
        self.tenant_by_namespace = namespace_owners(
            (tenant for _, tenant in self.tenants.items()), self.settings.tenant_namespace_prefix,
            release_namespaces=release_namespaces(self.settings),
            allowlist=self.settings.tenant_namespace_allowlist)
        namespaces_of_tenant: defaultdict[str, list[str]] = defaultdict(list)
        for namespace, name in self.tenant_by_namespace.items():
            namespaces_of_tenant[name].append(namespace)
        self.namespaces_of_tenant = namespaces_of_tenant  # replaced whole: the admission thread reads it
        for namespace in set(previous) | set(self.tenant_by_namespace):
            if previous.get(namespace) != self.tenant_by_namespace.get(namespace):
                for key in self.tasks.keys_by_index("namespace", namespace):  # they count against someone else now
                    self.changes.task(key)
        self.changes.decide()  # limits may have moved

    def _template_changed(self, _: str, old: Obj | None, new: Obj | None) -> None:
        specs = dict(self.template_specs)  # replaced whole, never changed in place: the admission thread reads it
        if old is not None:
            specs.pop(str(old["metadata"]["name"]), None)
        if new is not None:
            specs[str(new["metadata"]["name"])] = new.get("spec") or {}
        self.template_specs = specs
        self.changes.decide()

    # ------------------------------------------------------------------ lookups

    def pods_of(self, namespace: str, task: str, execution: int) -> list[Obj]:
        return [pod for pod in self.pods.by_index("task", f"{namespace}/{task}") if execution_of(pod) == execution]

    def workloads_of(self, task: Mapping[str, Any]) -> dict[str, Obj]:
        """The Task's Jobs (``runtime: pod``: its Pods) by name."""
        namespace, name = task_key(task)
        store = self.pods if ((task.get("spec") or {}).get("runtime") or "job") == "pod" else self.jobs
        return {str(obj["metadata"]["name"]): obj for obj in store.by_index("task", f"{namespace}/{name}")}

    def pods_by_execution(self, namespace: str, task: str) -> dict[int, list[Obj]]:
        out: dict[int, list[Obj]] = defaultdict(list)
        for pod in self.pods.by_index("task", f"{namespace}/{task}"):
            execution = execution_of(pod)
            if execution is not None:
                out[execution].append(pod)
        return out

    def tenant_of_namespace(self, namespace: str) -> tuple[str | None, Obj | None]:
        name = self.tenant_by_namespace.get(namespace)
        if name is None:
            return None, None
        return name, self.tenants.get(name)

    def tenant_key(self, task: Mapping[str, Any]) -> str:
        """Who a task counts against: its namespace's tenant, else its user, else its namespace."""
        namespace = str((task.get("metadata") or {}).get("namespace") or "")
        name = self.tenant_by_namespace.get(namespace)
        if name:
            return name
        return str((task.get("spec") or {}).get("user") or namespace)

    def templates_by_name(self) -> dict[str, Obj]:
        """TaskTemplate specs by name (the live map: do not change it)."""
        return self.template_specs

    def pending_count(self, tenant: str, *, exclude: Key | None = None) -> int:
        """The tenant's waiting Tasks, and those admitted moments ago and not yet seen (the pending limit)."""
        return self.admission.pending_count(
            tenant, namespaces_of=lambda name: self.namespaces_of_tenant.get(name, ()),
            tenant_of_namespace=self.tenant_by_namespace.get, exclude=exclude)

    def poke(self) -> None:
        """Wake the scheduler for a pass (e.g. after a failed action, to retry it)."""
        self.changes.decide()
