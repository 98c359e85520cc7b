"""Kopf handlers: thin adapters from Kopf onto the state, the core rules and the cluster.

``build_registry(state)`` returns a fresh :class:`kopf.OperatorRegistry` whose
handlers close over one operator instance's :class:`State` — nothing is
registered globally, so an operator can be started and stopped many times in
one process.

Kopf does what it is good at here, and nothing per Task:

* Tenants: ``@kopf.on.resume/create/update`` reconcile each Tenant into its
  Namespace, ResourceQuota, LimitRange, Role and RoleBinding (Kopf watches only Tenants).
* Admission: ``@kopf.on.mutate`` and ``@kopf.on.validate`` on Tasks run
  :mod:`kubetask.core.admission`, answering from the state's incrementally kept
  indexes (the tenant's waiting Tasks, the namespace's dependency graph): no scan.
* Probes: Kopf's liveness endpoint (see the runner).

The queue itself (Tasks, Jobs, Pods) is fed by the lean list+watch streams of
:mod:`kubetask.operator.state`, not by Kopf: Kopf's per-object machinery (a
worker, a readiness toggle and a diff base per object) made start-up quadratic
in the number of watched objects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import kopf

from kubetask import GROUP, VERSION
from kubetask.core import admission
from kubetask.core.events import submitted_at
from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.tenants import build_tenant_objects, tenant_namespace, tenant_object_patch
from kubetask.kube.client import (
    LIMIT_RANGES,
    NAMESPACES,
    RESOURCE_QUOTAS,
    ROLE_BINDINGS,
    ROLES,
    ApiError,
    Resource,
)
from kubetask.operator.state import State

log = logging.getLogger("kubetask.operator")

SYNC_WAIT_SECONDS = 10.0
_KINDS = {"Namespace": NAMESPACES, "ResourceQuota": RESOURCE_QUOTAS, "LimitRange": LIMIT_RANGES,
          "Role": ROLES, "RoleBinding": ROLE_BINDINGS}


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a Kopf body (its nested values already are plain JSON)."""
    return {key: body[key] for key in body}


def build_registry(state: State) -> kopf.OperatorRegistry:
    """All of one operator instance's handlers, in a registry of their own."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        info = state.connection_info
        if not isinstance(info, kopf.ConnectionInfo):
            raise kopf.LoginError("no connection info")
        return info

    # ------------------------------------------------------------------ tenants

    @kopf.on.resume(GROUP, VERSION, "tenants", registry=registry, id="tenant-objects")
    @kopf.on.create(GROUP, VERSION, "tenants", registry=registry, id="tenant-objects")
    @kopf.on.update(GROUP, VERSION, "tenants", field="spec", registry=registry, id="tenant-objects")
    async def reconcile_tenant(body: kopf.Body, **_: Any) -> None:
        tenant = _plain(body)
        try:
            await apply_tenant(state, tenant)
        except ApiError as error:
            if error.retryable or error.status >= 500:
                raise kopf.TemporaryError(f"apiserver: {error}", delay=2) from error
            raise kopf.PermanentError(f"cannot reconcile tenant: {error}") from error
        state.poke()

    if state.settings.delete_namespace_with_tenant:
        @kopf.on.delete(GROUP, VERSION, "tenants", registry=registry, id="tenant-namespace")
        async def delete_tenant_namespace(body: kopf.Body, **_: Any) -> None:
            name = str(body["metadata"]["name"])
            namespace = tenant_namespace(name, body.get("spec"), state.settings.tenant_namespace_prefix)
            await state.client.delete(NAMESPACES, namespace)

    # ------------------------------------------------------------------ admission

    if state.settings.webhook_enabled:
        @kopf.on.mutate(GROUP, VERSION, "tasks", operations=["CREATE", "UPDATE"], id="defaults",
                        registry=registry)
        async def mutate_task(**kwargs: Any) -> None:  # async: no thread-pool hop per admission
            body: kopf.Body = kwargs["body"]
            patch: kopf.Patch = kwargs["patch"]
            operation: str | None = kwargs.get("operation")
            old: Any = kwargs.get("old")
            userinfo: Mapping[str, Any] = kwargs.get("userinfo") or {}
            await _synced(state)
            spec = dict(body.get("spec") or {})
            namespace = str(body.get("metadata", {}).get("namespace") or "default")
            if operation == "UPDATE":
                old_user = ((old or {}).get("spec") or {}).get("user")
                if old_user and spec.get("user") != old_user:
                    raise kopf.AdmissionError(f"spec.user is immutable (it was '{old_user}')", code=422)
                return
            annotations = body.get("metadata", {}).get("annotations") or {}
            if ANNOTATION_SUBMITTED_AT not in annotations:  # kubectl-created tasks get the REST API's FIFO stamp
                patch.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION_SUBMITTED_AT] = \
                    submitted_at()
            tenant_name, tenant = state.tenant_of_namespace(namespace)
            fallback = spec.get("user") or admission.requesting_user(userinfo) or namespace
            defaulted = admission.default_spec(
                spec, tenant_name=tenant_name, tenant_spec=(tenant or {}).get("spec"),
                templates=state.templates_by_name(), default_queue=state.settings.default_queue,
                fallback_user=str(fallback))
            for key, value in defaulted.items():
                if spec.get(key) != value:
                    patch.setdefault("spec", {})[key] = value

        @kopf.on.validate(GROUP, VERSION, "tasks", operations=["CREATE", "UPDATE"], id="rules",
                          registry=registry)
        async def validate_task(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            old: Any = kwargs.get("old")
            operation: str | None = kwargs.get("operation")
            await _synced(state)
            meta = body.get("metadata") or {}
            namespace = str(meta.get("namespace") or "default")
            name = meta.get("name")
            spec = dict(body.get("spec") or {})
            tenant_name, tenant = state.tenant_of_namespace(namespace)
            user = tenant_name or str(spec.get("user") or namespace)
            verdict = admission.validate_task(
                spec, name=name, namespace=namespace, operation=operation or "CREATE",
                old=dict(old) if old else None, tenant_name=tenant_name,
                tenant_spec=(tenant or {}).get("spec"), tenant_status=(tenant or {}).get("status"),
                pending_count=state.pending_count(user, exclude=(namespace, str(name or ""))),
                templates=state.templates_by_name(), existing=state.admission.graph(namespace),
                now=state.clock())
            if not verdict.allowed:
                raise kopf.AdmissionError(verdict.message, code=verdict.code)
            if operation == "CREATE" and not kwargs.get("dryrun"):
                # Counted until its watch event arrives, so a burst of creates cannot overrun the pending limit.
                state.admission.remember_admitted((namespace, str(name or f"<generated-{uuid.uuid4().hex[:8]}>")),
                                                  user, [str(d) for d in spec.get("dependsOn") or []])

    return registry


async def _synced(state: State) -> None:
    """Admission answers from the stores: wait (briefly) until they have listed once, or fail closed."""
    if not state.synced.is_set():
        try:
            await asyncio.wait_for(state.synced.wait(), timeout=SYNC_WAIT_SECONDS)
        except TimeoutError:
            raise kopf.AdmissionError("kubetask is starting: try again in a moment", code=503) from None


# ---------------------------------------------------------------------- tenant objects


async def apply_tenant(state: State, tenant: Mapping[str, Any]) -> None:
    """Create or update everything a Tenant becomes (idempotent)."""
    objects = build_tenant_objects(tenant, prefix=state.settings.tenant_namespace_prefix,
                                   gpu_resource=state.gpu.resource_name)
    for obj in objects:
        resource = _KINDS[obj["kind"]]
        await _apply_object(state, resource, obj)


async def _apply_object(state: State, resource: Resource, obj: dict[str, Any]) -> None:
    client = state.client
    meta = obj["metadata"]
    namespace = meta.get("namespace") if resource.namespaced else None
    current = await client.get_or_none(resource, meta["name"], namespace)
    if current is None:
        try:
            await client.create(resource, obj, namespace)
            return
        except ApiError as error:
            if not error.already_exists:
                raise
            current = await client.get(resource, meta["name"], namespace)
    await client.patch(resource, meta["name"], tenant_object_patch(obj, current), namespace)
