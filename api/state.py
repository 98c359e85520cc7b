"""The API's process state: the Kubernetes client, the watch caches, auth, rate limits and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubetask.api.auth import Authenticator
from kubetask.api.metrics import ApiMetrics
from kubetask.api.ratelimit import RateLimiter
from kubetask.core.rest import LABEL_USER
from kubetask.core.workers import pod_node
from kubetask.kube.cache import Informer, InformerSet
from kubetask.kube.client import NODES, PODS, SECRETS, TASK_TEMPLATES, TASKS, TENANTS, KubeClient, Obj
from kubetask.settings import ApiSettings, KubeSettings

API_KEY_SELECTOR = "kubetask.io/api-key=true"


def _task_user(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return [v for v in {spec.get("user"), labels.get(LABEL_USER)} if v]


@dataclass
class HealthProbe:
    checked_at: float = 0.0
    ok: bool = False
    detail: str = "not checked"


@dataclass
class AppState:
    settings: ApiSettings
    kube_settings: KubeSettings
    client: KubeClient
    informers: InformerSet
    auth: Authenticator
    limiter: RateLimiter = field(default_factory=RateLimiter)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    started_at: float = field(default_factory=time.time)
    owns_client: bool = False
    health: HealthProbe = field(default_factory=HealthProbe)
    extra: dict[str, Any] = field(default_factory=dict)

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
        informers = InformerSet()
        informers.add("tasks", Informer(client, TASKS, indexers={"user": _task_user}))
        informers.add("templates", Informer(client, TASK_TEMPLATES))
        informers.add("tenants", Informer(client, TENANTS))
        informers.add("secrets", Informer(client, SECRETS, label_selector=API_KEY_SELECTOR))
        informers.add("nodes", Informer(client, NODES))
        informers.add("pods", Informer(client, PODS, label_selector="kubetask.io/task", indexers={"node": pod_node}))
        auth = Authenticator(client, informers["tenants"], informers["secrets"],
                             namespace_prefix=settings.tenant_namespace_prefix)
        state = cls(settings=settings, kube_settings=kube, client=client, informers=informers, auth=auth,
                    owns_client=owns_client, metrics=metrics or ApiMetrics())
        state.metrics.track_tasks(lambda: informers["tasks"].list())
        return state
