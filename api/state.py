"""The API's process state: the Kubernetes client, the watch caches, auth, rate limits and metrics."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from kubetask.api.auth import Authenticator
from kubetask.api.metrics import ApiMetrics
from kubetask.api.ratelimit import RateLimiter
from kubetask.api.upstream import ApiserverMonitor
from kubetask.core.access import API_KEY_SELECTOR
from kubetask.core.admission import NOT_ADMITTED_PHASES
from kubetask.core.objects import LABEL_USER, Key, Obj
from kubetask.core.rest.query import task_row
from kubetask.core.rest.workers import pod_node
from kubetask.kube import wire
from kubetask.kube.cache import Informer, InformerSet, object_key
from kubetask.kube.client import NODES, PODS, SECRETS, TASK_TEMPLATES, TASKS, TENANTS, KubeClient
from kubetask.kube.lean import lean_pod, without_managed_fields
from kubetask.settings import ApiSettings, KubeSettings


def _task_user(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return [v for v in {spec.get("user"), labels.get(LABEL_USER)} if v]


class ResultCache:
    """A small LRU of computed results whose keys carry the version of their inputs (e.g. an informer's
    bucket stamp), so a changed input is simply a different key and stale entries age out."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            value = self._entries[key]
        except KeyError:
            self.misses += 1
            value = self._entries[key] = compute()
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return value
        self.hits += 1
        self._entries.move_to_end(key)
        return value

    def clear(self) -> None:
        self._entries.clear()


class PendingCounts:
    """Waiting tasks per ``(namespace, spec.user)`` by :func:`kubetask.core.admission.count_pending`'s rule
    (not cancelled, phase unset, Pending or Queued), kept current from the task informer's events so the
    pending-limit check of ``POST /tasks`` does not walk the namespace."""

    def __init__(self) -> None:
        self._bucket_of: dict[Key, tuple[str, str]] = {}
        self._counts: dict[tuple[str, str], int] = {}

    def on_event(self, event_type: str, obj: Obj) -> None:
        key = object_key(obj)
        old = self._bucket_of.pop(key, None)
        if old is not None:
            left = self._counts[old] - 1
            if left:
                self._counts[old] = left
            else:
                del self._counts[old]
        if event_type == "DELETED":
            return
        spec = obj.get("spec") or {}
        user = spec.get("user")
        phase = (obj.get("status") or {}).get("phase")
        if user and isinstance(user, str) and not spec.get("cancel") and phase in NOT_ADMITTED_PHASES:
            bucket = (key[0], user)
            self._bucket_of[key] = bucket
            self._counts[bucket] = self._counts.get(bucket, 0) + 1

    def count(self, namespace: str, user: str) -> int:
        return self._counts.get((namespace, user), 0)


@dataclass
class AppState:
    settings: ApiSettings
    kube_settings: KubeSettings
    client: KubeClient
    informers: InformerSet
    auth: Authenticator
    upstream: ApiserverMonitor
    """Whether the apiserver answers (writes refused, reads marked stale while it does not)."""
    limiter: RateLimiter = field(default_factory=RateLimiter)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.time)
    owns_client: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    task_queries: ResultCache = field(default_factory=ResultCache)
    pending: PendingCounts = field(default_factory=PendingCounts)
    """Sorted ``GET /tasks`` matches per (caller's tasks version, filters, sort); see ``routes.common``."""

    @property
    def tasks(self) -> Informer:
        return self.informers["tasks"]

    @property
    def templates(self) -> Informer:
        return self.informers["templates"]

    @property
    def tenants(self) -> Informer:
        return self.informers["tenants"]

    @property
    def secrets(self) -> Informer:
        return self.informers["secrets"]

    @classmethod
    def build(cls, settings: ApiSettings, kube: KubeSettings, client: KubeClient, *, owns_client: bool,
              metrics: ApiMetrics | None = None) -> AppState:
        # The same store the operator uses (kubetask.kube.cache); the transforms drop what no route reads:
        # managedFields everywhere, and all of a pod but its labels, owners, node, requests and states.
        informers = InformerSet()
        informers.add("tasks", Informer(client, TASKS, indexers={"user": _task_user}, derive=task_row,
                                        transform=without_managed_fields, shape=wire.TASK))
        informers.add("templates", Informer(client, TASK_TEMPLATES, transform=without_managed_fields))
        informers.add("tenants", Informer(client, TENANTS, transform=without_managed_fields))
        published = (settings.keys_secret_namespace, settings.keys_secret_name) \
            if settings.keys_secret_namespace else None
        if published is not None:  # one Secret, by name: what a Role with resourceNames lets the API watch
            informers.add("secrets", Informer(client, SECRETS, namespace=published[0],
                                              field_selector=f"metadata.name={published[1]}",
                                              transform=without_managed_fields))
        else:
            informers.add("secrets", Informer(client, SECRETS, label_selector=API_KEY_SELECTOR,
                                              transform=without_managed_fields))
        informers.add("nodes", Informer(client, NODES, transform=without_managed_fields))
        informers.add("pods", Informer(client, PODS, label_selector="kubetask.io/task", indexers={"node": pod_node},
                                       transform=lean_pod, shape=wire.POD))
        auth = Authenticator(client, informers["tenants"], informers["secrets"],
                             namespace_prefix=settings.tenant_namespace_prefix, published=published)
        upstream = ApiserverMonitor(client, interval=settings.apiserver_probe_interval_seconds,
                                    timeout=settings.apiserver_timeout_seconds,
                                    retry_after=settings.retry_after_seconds,
                                    activity=lambda: informers.events)
        state = cls(settings=settings, kube_settings=kube, client=client, informers=informers, auth=auth,
                    upstream=upstream, owns_client=owns_client, metrics=metrics or ApiMetrics(),
                    limiter=RateLimiter(replicas=settings.replicas))
        auth.upstream_down = lambda: upstream.down
        informers["tasks"].add_listener(state.pending.on_event)
        return state
