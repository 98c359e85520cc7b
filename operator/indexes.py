"""Incremental indexes over the watched Tasks, kept from the store's change events (no scans).

* :class:`AdmissionIndex`: what an admission review needs to know about the Tasks that
  exist: the waiting ones per tenant (the pending limit) and each namespace's dependency
  graph (missing dependencies, cycles), plus a short memory of the Tasks the webhook
  admitted moments ago whose watch events have not arrived yet (a burst of creates).
* :class:`Dependents`: which Tasks name a Task in ``dependsOn``, so a phase change of one
  Task marks exactly its dependants for the next scheduling pass.
* :class:`Changes`: the dirty sets of the scheduler (Tasks, nodes, quotas) and its wake-up.

Each ``on_task(old, new)`` takes the previous and the new stored version (``None`` for an
add or a delete) and updates the counters in O(1) (O(dependencies) for the graphs).

The admission webhook reads :class:`AdmissionIndex` from its own thread while the operator's loop
updates it (:mod:`kubetask.operator.webhooks`): every method that reads or changes more than one
entry holds the index's lock.  The graph view only looks single entries up, which is safe as is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetask.core.admission import NOT_ADMITTED_PHASES
from kubetask.core.objects import Key, Obj

WEBHOOK_MEMORY_SECONDS = 30.0
_NO_DEPS: tuple[str, ...] = ()


def task_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _deps(obj: Mapping[str, Any] | None) -> tuple[str, ...]:
    if obj is None:
        return _NO_DEPS
    found = (obj.get("spec") or {}).get("dependsOn")
    return tuple(str(d) for d in found) if found else _NO_DEPS


def phase_of(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("status") or {}).get("phase")


def _pending_bucket(obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(namespace, spec.user)`` of a waiting Task (not cancelled, not admitted yet), else None."""
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    if spec.get("cancel") or phase_of(obj) not in NOT_ADMITTED_PHASES:
        return None
    return (task_key(obj)[0], str(spec.get("user") or ""))


@dataclass
class _Recent:
    stamp: float
    owner: str
    deps: tuple[str, ...]


class AdmissionIndex:
    """Waiting Tasks per tenant and the dependency graphs, for the admission webhook.

    Who a Task counts against follows the operator's rule (``State.tenant_key``): its
    namespace's tenant, else its ``spec.user``, else its namespace.  Counts are kept per
    ``(namespace, spec.user)``, so the rule is applied when asked and stays right when a
    Tenant (and so a namespace's owner) appears or goes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._bucket_of: dict[Key, tuple[str, str]] = {}
        self._namespace_total: dict[str, int] = defaultdict(int)
        self._by_user: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._graphs: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
        self._recent: OrderedDict[Key, _Recent] = OrderedDict()
        self._recent_by_owner: dict[str, int] = defaultdict(int)
        self._recent_graphs: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ updates

    def on_task(self, old: Obj | None, new: Obj | None) -> None:
        with self._lock:
            self._on_task(old, new)

    def _on_task(self, old: Obj | None, new: Obj | None) -> None:
        key = task_key(new if new is not None else old or {})
        before, after = self._bucket_of.get(key), _pending_bucket(new)
        if before != after:
            if before is not None:
                self._count(before, -1)
                del self._bucket_of[key]
            if after is not None:
                self._count(after, +1)
                self._bucket_of[key] = after
        graph = self._graphs[key[0]]
        if new is None:
            graph.pop(key[1], None)
            if not graph:
                del self._graphs[key[0]]
        else:
            graph[key[1]] = _deps(new)
            self._forget(key)  # the watch shows it now: the webhook's memory of it is moot

    def _count(self, bucket: tuple[str, str], delta: int) -> None:
        namespace, user = bucket
        self._namespace_total[namespace] += delta
        if not self._namespace_total[namespace]:
            del self._namespace_total[namespace]
        per_user = self._by_user[user]
        per_user[namespace] += delta
        if not per_user[namespace]:
            del per_user[namespace]
            if not per_user:
                del self._by_user[user]

    def remember_admitted(self, key: Key, owner: str, deps: Sequence[str]) -> None:
        """Count a Task the webhook just admitted until its watch event arrives (or 30 s pass)."""
        with self._lock:
            self._remember_admitted(key, owner, deps)

    def _remember_admitted(self, key: Key, owner: str, deps: Sequence[str]) -> None:
        self._expire()
        if key in self._bucket_of or key[1] in self._graphs.get(key[0], {}):
            return
        self._forget(key)
        self._recent[key] = _Recent(self.clock(), owner, tuple(str(d) for d in deps))
        self._recent_by_owner[owner] += 1
        self._recent_graphs[key[0]][key[1]] = self._recent[key].deps

    def _forget(self, key: Key) -> None:
        entry = self._recent.pop(key, None)
        if entry is None:
            return
        self._recent_by_owner[entry.owner] -= 1
        if not self._recent_by_owner[entry.owner]:
            del self._recent_by_owner[entry.owner]
        graph = self._recent_graphs[key[0]]
        graph.pop(key[1], None)
        if not graph:
            del self._recent_graphs[key[0]]

    def _expire(self) -> None:
        horizon = self.clock() - WEBHOOK_MEMORY_SECONDS
        while self._recent:
            key, entry = next(iter(self._recent.items()))
            if entry.stamp >= horizon:
                break
            self._forget(key)

    # ------------------------------------------------------------------ queries

    def pending_count(self, tenant: str, *, namespaces_of: Callable[[str], Sequence[str]],
                      tenant_of_namespace: Callable[[str], str | None], exclude: Key | None = None) -> int:
        """The waiting Tasks that count against ``tenant``, and those admitted moments ago and not yet seen."""
        with self._lock:
            return self._pending_count(tenant, namespaces_of=namespaces_of, tenant_of_namespace=tenant_of_namespace,
                                       exclude=exclude)

    def _pending_count(self, tenant: str, *, namespaces_of: Callable[[str], Sequence[str]],
                       tenant_of_namespace: Callable[[str], str | None], exclude: Key | None) -> int:
        self._expire()
        total = sum(self._namespace_total.get(ns, 0) for ns in namespaces_of(tenant))
        for namespace, count in self._by_user.get(tenant, {}).items():
            if tenant_of_namespace(namespace) is None:
                total += count  # an unowned namespace: its tasks count against their spec.user
        if tenant_of_namespace(tenant) is None:
            total += self._by_user.get("", {}).get(tenant, 0)  # no user, no tenant: the namespace itself
        total += self._recent_by_owner.get(tenant, 0)
        if exclude is not None:
            bucket = self._bucket_of.get(exclude)
            if bucket is not None and self._owner(bucket, tenant_of_namespace) == tenant:
                total -= 1
            recent = self._recent.get(exclude)
            if recent is not None and recent.owner == tenant:
                total -= 1
        return max(0, total)

    @staticmethod
    def _owner(bucket: tuple[str, str], tenant_of_namespace: Callable[[str], str | None]) -> str:
        namespace, user = bucket
        return tenant_of_namespace(namespace) or user or namespace

    def graph(self, namespace: str) -> Mapping[str, Sequence[str]]:
        """The namespace's Tasks → their ``dependsOn`` (a live, read-only view; no copy): look names up in it,
        do not iterate it from another thread."""
        return _Graph(self._graphs.get(namespace, {}), self._recent_graphs.get(namespace, {}))


class _Graph(Mapping[str, Sequence[str]]):
    """The stored Tasks' graph, then the recently admitted ones (which the watch has not shown yet)."""

    def __init__(self, stored: Mapping[str, Sequence[str]], recent: Mapping[str, Sequence[str]]) -> None:
        self._stored, self._recent = stored, recent

    def __getitem__(self, name: str) -> Sequence[str]:
        found = self._stored.get(name)
        if found is None:
            return self._recent[name]
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._stored or name in self._recent

    def __iter__(self) -> Iterator[str]:
        yield from self._stored
        yield from (name for name in self._recent if name not in self._stored)

    def __len__(self) -> int:
        return len(self._stored) + sum(1 for name in self._recent if name not in self._stored)


class Dependents:
    """``(namespace, name)`` → the Tasks whose ``dependsOn`` names it."""

    def __init__(self) -> None:
        self._of: dict[Key, set[Key]] = defaultdict(set)

    def on_task(self, old: Obj | None, new: Obj | None) -> None:
        key = task_key(new if new is not None else old or {})
        before, after = _deps(old), _deps(new)
        if before == after:
            return
        for dep in set(before) - set(after):
            waiting = self._of.get((key[0], dep))
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._of[(key[0], dep)]
        for dep in set(after) - set(before):
            self._of[(key[0], dep)].add(key)

    def of(self, key: Key) -> set[Key]:
        return self._of.get(key, set())


@dataclass
class Changes:
    """What changed since the scheduler's last pass, and the event that wakes it."""

    tasks: set[Key] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    quotas: set[Key] = field(default_factory=set)
    queue: bool = False
    """Something the queue decision depends on changed (limits, templates, a retry).  A changed node or quota
    is weighed by the scheduler, which knows whether it freed room."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def task(self, key: Key) -> None:
        self.tasks.add(key)
        self.wake.set()

    def node(self, name: str) -> None:
        self.nodes.add(name)
        self.wake.set()

    def quota(self, key: Key) -> None:
        self.quotas.add(key)
        self.wake.set()

    def decide(self) -> None:
        self.queue = True
        self.wake.set()

    def take(self) -> tuple[set[Key], set[str], set[Key], bool]:
        """Everything marked so far (the sets start empty again)."""
        taken = (self.tasks, self.nodes, self.quotas, self.queue)
        self.tasks, self.nodes, self.quotas, self.queue = set(), set(), set(), False
        return taken

    @property
    def pending(self) -> bool:
        return bool(self.tasks or self.nodes or self.quotas or self.queue)


__all__ = ["WEBHOOK_MEMORY_SECONDS", "AdmissionIndex", "Changes", "Dependents", "phase_of", "task_key"]
