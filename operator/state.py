"""The operator's in-memory views of the cluster (one instance per operator run).

Kopf's index/event handlers feed these views; the scheduler reads them and
acts.  Nothing here is a module global, so tests can start and stop several
operators in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetask.core.jobs import EXECUTION_LABEL, TASK_NAME_ANNOTATION
from kubetask.core.tenants import TENANT_LABEL, tenant_namespace
from kubetask.kube.client import KubeClient
from kubetask.operator.metrics import Metrics
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

Key = tuple[str, str]
Obj = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _rv(obj: Mapping[str, Any]) -> int | None:
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def obj_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


@dataclass
class View:
    """A resourceVersion-aware map of objects: never regresses to an older version."""

    items: dict[Key, Obj] = field(default_factory=dict)
    on_change: Callable[[Key, Obj | None, Obj | None], None] | None = None

    def upsert(self, obj: Obj) -> bool:
        key = obj_key(obj)
        old = self.items.get(key)
        if old is not None and (old.get("metadata") or {}).get("uid") == (obj.get("metadata") or {}).get("uid"):
            old_rv, new_rv = _rv(old), _rv(obj)
            if old_rv is not None and new_rv is not None and new_rv < old_rv:
                return False
        self.items[key] = obj
        if self.on_change:
            self.on_change(key, old, obj)
        return True

    def remove(self, obj: Mapping[str, Any]) -> None:
        key = obj_key(obj)
        old = self.items.get(key)
        if old is None:
            return
        uid = (obj.get("metadata") or {}).get("uid")
        if uid and (old.get("metadata") or {}).get("uid") not in (None, uid):
            return  # a newer incarnation under the same name
        del self.items[key]
        if self.on_change:
            self.on_change(key, old, None)

    def get(self, key: Key) -> Obj | None:
        return self.items.get(key)

    def __len__(self) -> int:
        return len(self.items)


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
        self.tasks = View(on_change=self._task_changed)
        self.jobs = View()
        self.pods = View(on_change=self._pod_changed)
        self.nodes = View()
        self.quotas = View()
        self.tenants = View(on_change=self._tenant_changed)
        self.templates = View()
        self.pods_by_execution: dict[tuple[str, str, int], set[Key]] = defaultdict(set)
        self.pods_by_node: dict[str, set[Key]] = defaultdict(set)
        self.tenant_by_namespace: dict[str, str] = {}
        self.synced = asyncio.Event()
        self.wake = asyncio.Event()
        self.webhook_seen: dict[Key, tuple[float, str | None, list[str], bool]] = {}
        self.started = time.monotonic()
        self.errors = 0
        self.connection_info: Any = None

    # ------------------------------------------------------------------ derived indexes

    @staticmethod
    def _exec_key(pod: Mapping[str, Any]) -> tuple[str, str, int] | None:
        meta = pod.get("metadata") or {}
        task = (meta.get("annotations") or {}).get(TASK_NAME_ANNOTATION)
        execution = (meta.get("labels") or {}).get(EXECUTION_LABEL)
        if not task or not execution:
            return None
        try:
            return (str(meta.get("namespace")), str(task), int(execution))
        except ValueError:
            return None

    def _pod_changed(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            exec_key = self._exec_key(obj)
            node = (obj.get("spec") or {}).get("nodeName")
            if add:
                if exec_key:
                    self.pods_by_execution[exec_key].add(key)
                if node:
                    self.pods_by_node[node].add(key)
            else:
                if exec_key and exec_key in self.pods_by_execution:
                    self.pods_by_execution[exec_key].discard(key)
                    if not self.pods_by_execution[exec_key]:
                        del self.pods_by_execution[exec_key]
                if node and node in self.pods_by_node:
                    self.pods_by_node[node].discard(key)

    def _task_changed(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        # Once the watch shows a Task (or its deletion), the webhook's short-term memory of it is moot.
        self.webhook_seen.pop(key, None)

    def _tenant_changed(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        self.tenant_by_namespace = {}
        for tenant in self.tenants.items.values():
            name = str((tenant.get("metadata") or {}).get("name"))
            namespace = tenant_namespace(name, tenant.get("spec"), self.settings.tenant_namespace_prefix)
            self.tenant_by_namespace[namespace] = name

    # ------------------------------------------------------------------ lookups

    def pods_of(self, namespace: str, task: str, execution: int) -> list[Obj]:
        keys = self.pods_by_execution.get((namespace, task, execution), set())
        return [self.pods.items[k] for k in keys if k in self.pods.items]

    def tenant_of_namespace(self, namespace: str) -> tuple[str | None, Obj | None]:
        name = self.tenant_by_namespace.get(namespace)
        if name is None:
            return None, None
        return name, self.tenants.get(("", name))

    def tenant_key(self, task: Mapping[str, Any]) -> str:
        """Who a task counts against: its namespace's tenant, else its user, else its namespace."""
        namespace = str((task.get("metadata") or {}).get("namespace") or "")
        name = self.tenant_by_namespace.get(namespace)
        if name:
            return name
        return str((task.get("spec") or {}).get("user") or namespace)

    def templates_by_name(self) -> dict[str, Obj]:
        return {name: dict(obj.get("spec") or {}) for (_, name), obj in self.templates.items.items()}

    def namespace_of_tenant_label(self, obj: Mapping[str, Any]) -> str | None:
        return ((obj.get("metadata") or {}).get("labels") or {}).get(TENANT_LABEL)

    def poke(self) -> None:
        self.wake.set()
