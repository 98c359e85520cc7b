"""Kopf handlers: thin adapters from Kopf onto the state, the core rules and the cluster.

``build_registry(state)`` returns a fresh :class:`kopf.OperatorRegistry` whose
handlers close over one operator instance's :class:`State` — nothing is
registered globally, so an operator can be started and stopped many times in
one process.

Kopf does what it is good at here, and nothing per Task:

* Tenants: ``@kopf.on.resume/create/update`` reconcile each Tenant into its
  Namespace, ResourceQuota, LimitRange, Role and RoleBinding (Kopf watches only Tenants),
  after the same namespace-claim check the webhook makes (a Tenant that slipped in while
  the webhook was down still takes no namespace over).
* Admission: ``@kopf.on.mutate`` and ``@kopf.on.validate`` on Tasks run
  :mod:`kubetask.core.admission`, answering from the state's incrementally kept
  indexes (the tenant's waiting Tasks, the namespace's dependency graph): no scan.
  ``@kopf.on.validate`` on Tenants (namespace claims) and TaskTemplates (parameter rules).
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
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetask import GROUP, VERSION
from kubetask.core import admission
from kubetask.core.access import build_api_role_binding
from kubetask.core.events import submitted_at
from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.status import set_condition
from kubetask.core.tenants import (
    build_tenant_objects,
    claim_order,
    created_for,
    deletes_namespace_with_tenant,
    existing_namespace_patch,
    tenant_namespace,
    tenant_object_patch,
)
from kubetask.kube.client import (
    LIMIT_RANGES,
    NAMESPACES,
    RESOURCE_QUOTAS,
    ROLE_BINDINGS,
    ROLES,
    TENANTS,
    ApiError,
    KubeClient,
    Resource,
)
from kubetask.operator.access import register_key_publisher
from kubetask.operator.state import State, release_namespaces

log = logging.getLogger("kubetask.operator")

SYNC_WAIT_SECONDS = 60.0
"""How long a Tenant handler waits for the stores' first listing before it retries: a restarted operator with
10,000 Tasks (and their Jobs and pods) lists for ~17 s on two cores, and a retry is logged as an error."""
ADMISSION_SYNC_WAIT_SECONDS = 10.0
"""How long an admission review waits for that listing before it fails closed (503): the apiserver's own
webhook deadline is shorter than a Tenant handler's patience."""
TASK_DEFAULTS, TASK_RULES, TEMPLATE_RULES, TENANT_RULES = "defaults", "rules", "template-rules", "tenant-rules"
"""The admission handlers' ids: the last part of each review's URL path."""
ADMISSION_REVIEWS = frozenset({TASK_DEFAULTS, TASK_RULES, TEMPLATE_RULES, TENANT_RULES})
OFF_LOOP_REVIEWS = frozenset({TASK_DEFAULTS, TASK_RULES, TEMPLATE_RULES})
"""Reviews answered on the admission server's own loop (:mod:`kubetask.operator.webhooks`): they read the state
only through lookups that are safe from another thread (the admission index takes its lock; the tenant, template
and namespace maps are replaced whole, never changed in place).  A Tenant's review walks every Tenant and Kopf's
memories, so it runs on the operator's loop."""
SYNC_POLL_SECONDS = 0.05
"""How often a review that came before the first listing looks again."""
_KINDS = {"Namespace": NAMESPACES, "ResourceQuota": RESOURCE_QUOTAS, "LimitRange": LIMIT_RANGES,
          "Role": ROLES, "RoleBinding": ROLE_BINDINGS}


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of a Kopf body (its nested values already are plain JSON)."""
    return {key: body[key] for key in body}


async def connection_info(client: KubeClient) -> kopf.ConnectionInfo:
    """Kopf's credentials: the very endpoint and credentials the shared client uses.

    A renewable credential (a rotated token file, an exec plugin's token) carries its expiry, so Kopf logs in
    again through this function before it runs out, and after a 401.
    """
    access = client.access
    authorization = await client.credentials.authorization()
    scheme, token = (authorization.split(" ", 1) if authorization and authorization.startswith("Bearer ")
                     else (None, None))
    return kopf.ConnectionInfo(
        server=access.server,
        ca_path=access.ca_file,
        ca_data=access.ca_data,
        insecure=access.insecure,
        certificate_path=access.cert_file,
        certificate_data=access.cert_data,
        private_key_path=access.key_file,
        private_key_data=access.key_data,
        username=access.username,
        password=access.password,
        scheme=scheme,
        token=token,
        proxy_url=access.proxy_url,
        expiration=await client.credentials.expiration(),
    )


def build_registry(state: State) -> kopf.OperatorRegistry:
    """All of one operator instance's handlers, in a registry of their own."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(state.client)

    # ------------------------------------------------------------------ tenants

    @kopf.on.resume(GROUP, VERSION, "tenants", registry=registry, id="tenant-objects")
    @kopf.on.create(GROUP, VERSION, "tenants", registry=registry, id="tenant-objects")
    @kopf.on.update(GROUP, VERSION, "tenants", field="spec", registry=registry, id="tenant-objects")
    async def reconcile_tenant(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        tenant = _plain(body)
        if not await state.wait_synced(within=SYNC_WAIT_SECONDS):
            raise kopf.TemporaryError("the Tenant store has not listed yet", delay=2)
        verdict = claim_verdict(state, tenant)
        status = tenant.get("status") or {}
        if not verdict.allowed:
            # Nothing is written into the namespace: it is another tenant's, or a system one.
            patch.setdefault("status", {})["conditions"] = _ready(status, "False", str(verdict.reason), verdict.message)
            raise kopf.PermanentError(f"tenant {tenant['metadata']['name']} not reconciled: {verdict.message}")
        try:
            await apply_tenant(state, tenant)
        except ApiError as error:
            if error.retryable or error.status >= 500:
                raise kopf.TemporaryError(f"apiserver: {error}", delay=2) from error
            raise kopf.PermanentError(f"cannot reconcile tenant: {error}") from error
        patch.setdefault("status", {})["conditions"] = _ready(status, "True", "Reconciled",
                                                              "namespace, quota, limits and RBAC are in place")
        state.poke()

    @kopf.on.event(GROUP, VERSION, "tenants", registry=registry, id="tenant-successor")
    async def hand_namespace_on(event: Mapping[str, Any], **_: Any) -> None:
        """When a namespace's owner goes, the next claimant the operator refused becomes its owner now, not
        at its next spec change.  (An operator that was down meanwhile gets there through ``on.resume``.)"""
        if event.get("type") != "DELETED":
            return
        gone = event.get("object") or {}
        gone_name = str((gone.get("metadata") or {}).get("name"))
        prefix = state.settings.tenant_namespace_prefix
        namespace = tenant_namespace(gone_name, gone.get("spec"), prefix)
        rivals = sorted((t for _, t in state.tenants.items()
                         if str(t["metadata"]["name"]) != gone_name
                         and tenant_namespace(str(t["metadata"]["name"]), t.get("spec"), prefix) == namespace),
                        key=claim_order)
        for successor in rivals[:1]:
            if not claim_verdict(state, successor, exclude=gone_name).allowed:
                return
            name = str(successor["metadata"]["name"])
            # The garbage collector is removing the old owner's quota, limits and RBAC at the same time: an
            # object deleted under our patch (404) is simply created on the next try.
            for attempt in range(5):
                try:
                    await apply_tenant(state, successor)
                    break
                except ApiError as error:
                    if not error.not_found or attempt == 4:
                        raise
                    await asyncio.sleep(1.0)
            status = successor.get("status") or {}
            await state.client.patch_status(TENANTS, name, {"status": {"conditions": _ready(
                status, "True", "Reconciled", "namespace, quota, limits and RBAC are in place")}})
            log.info("tenant %s deleted: namespace %s passes to tenant %s", gone_name, namespace, name)
            state.poke()

    if state.settings.delete_namespace_with_tenant:
        @kopf.on.delete(GROUP, VERSION, "tenants", registry=registry, id="tenant-namespace")
        async def delete_tenant_namespace(body: kopf.Body, **_: Any) -> None:
            name = str(body["metadata"]["name"])
            namespace = tenant_namespace(name, body.get("spec"), state.settings.tenant_namespace_prefix)
            current = await state.client.get_or_none(NAMESPACES, namespace)
            if not deletes_namespace_with_tenant(current, name):
                # Only a namespace kubetask created for this very Tenant goes with it.
                if current is not None:
                    log.info("tenant %s deleted; namespace %s kept (created for %s, not by kubetask for it)",
                             name, namespace, created_for(current) or "no tenant")
                return
            await state.client.delete(NAMESPACES, namespace)

    # ------------------------------------------------------------------ admission

    if state.settings.webhook_enabled:
        @kopf.on.validate(GROUP, VERSION, "tenants", operations=["CREATE", "UPDATE"], id=TENANT_RULES,
                          registry=registry)
        async def validate_tenant(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            old: Any = kwargs.get("old")
            await _synced(state)
            update = kwargs.get("operation") == "UPDATE" and old
            verdict = claim_verdict(state, _plain(body), old=dict(old) if update else None, creating=not update)
            if not verdict.allowed:
                raise kopf.AdmissionError(verdict.message, code=verdict.code)

        @kopf.on.validate(GROUP, VERSION, "tasktemplates", operations=["CREATE", "UPDATE"], id=TEMPLATE_RULES,
                          registry=registry)
        async def validate_tasktemplate(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            verdict = admission.validate_template(dict(body.get("spec") or {}))
            if not verdict.allowed:
                raise kopf.AdmissionError(verdict.message, code=verdict.code)

        @kopf.on.mutate(GROUP, VERSION, "tasks", operations=["CREATE", "UPDATE"], id=TASK_DEFAULTS,
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

        @kopf.on.validate(GROUP, VERSION, "tasks", operations=["CREATE", "UPDATE"], id=TASK_RULES,
                          registry=registry)
        async def validate_task(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            old: Any = kwargs.get("old")
            operation: str | None = kwargs.get("operation")
            probed = admission.admission_probe(body, dry_run=bool(kwargs.get("dryrun")))
            if probed is not None:
                raise kopf.AdmissionError(probed, code=400)
            await _synced(state)
            meta = body.get("metadata") or {}
            namespace = str(meta.get("namespace") or "default")
            name = meta.get("name")
            spec = dict(body.get("spec") or {})
            tenant_name, tenant = state.tenant_of_namespace(namespace)
            if operation == "CREATE":
                placed = admission.require_tenant(namespace, tenant_name)
                if not placed.allowed:
                    raise kopf.AdmissionError(placed.message, code=placed.code)
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

    register_key_publisher(registry, state)  # API-key digests for the API (kubetask.operator.access)
    return registry


async def _synced(state: State) -> None:
    """Admission answers from the stores: wait (briefly) until they have listed once, or fail closed.

    Polled, not awaited: ``state.synced`` belongs to the operator's loop, and a review may run on another."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ADMISSION_SYNC_WAIT_SECONDS
    while not state.synced.is_set():
        if loop.time() >= deadline:
            raise kopf.AdmissionError("kubetask is starting: try again in a moment", code=503)
        await asyncio.sleep(SYNC_POLL_SECONDS)


# ---------------------------------------------------------------------- tenant objects


def claim_verdict(state: State, tenant: Mapping[str, Any], *, old: Mapping[str, Any] | None = None,
                  creating: bool = False, exclude: str | None = None) -> admission.Verdict:
    """:func:`kubetask.core.admission.namespace_claim` against every Tenant the state knows (but ``exclude``,
    one just deleted that the state may still hold)."""
    others = [other for _, other in state.tenants.items() if str(other["metadata"]["name"]) != exclude]
    return admission.namespace_claim(
        tenant, others, prefix=state.settings.tenant_namespace_prefix,
        release_namespaces=release_namespaces(state.settings),
        allowlist=state.settings.tenant_namespace_allowlist, old=old, creating=creating)


def _ready(status: Mapping[str, Any], value: str, reason: str, message: str) -> list[dict[str, Any]]:
    """The Tenant's conditions with ``Ready`` set (its transition time kept while the value holds)."""
    return set_condition(list(status.get("conditions") or []), "Ready", value, reason, message, datetime.now(UTC))


async def apply_tenant(state: State, tenant: Mapping[str, Any]) -> None:
    """Create or update everything a Tenant becomes (idempotent)."""
    objects = build_tenant_objects(tenant, prefix=state.settings.tenant_namespace_prefix,
                                   gpu_resource=state.gpu.resource_name)
    for obj in objects:
        if obj["kind"] == "Namespace":
            await _apply_namespace(state, obj, str(tenant["metadata"]["name"]))
            continue
        resource = _KINDS[obj["kind"]]
        await _apply_object(state, resource, obj)
    await _apply_api_binding(state, tenant)


async def _apply_namespace(state: State, obj: dict[str, Any], tenant_name: str) -> None:
    """Create the namespace marked as kubetask's (for this tenant), or label one that existed before.

    A namespace that existed before keeps its other labels and never gets the created-for
    annotation, so deleting the Tenant never deletes it."""
    client = state.client
    name = obj["metadata"]["name"]
    current = await client.get_or_none(NAMESPACES, name)
    if current is None:
        try:
            await client.create(NAMESPACES, obj)
            return
        except ApiError as error:
            if not error.already_exists:
                raise
            current = await client.get(NAMESPACES, name)
    if created_for(current) == tenant_name:
        await client.patch(NAMESPACES, name, tenant_object_patch(obj, current))
    else:
        await client.patch(NAMESPACES, name, existing_namespace_patch(tenant_name))


async def _apply_api_binding(state: State, tenant: Mapping[str, Any]) -> None:
    """Bind the API's ServiceAccount, in this tenant's namespace only, to its tenant ClusterRole (docs/rbac.md)."""
    settings = state.settings
    if not (settings.api_tenant_cluster_role and settings.api_service_account_name
            and settings.api_service_account_namespace):
        return
    name = str((tenant.get("metadata") or {}).get("name"))
    binding = build_api_role_binding(
        tenant, tenant_namespace(name, tenant.get("spec"), settings.tenant_namespace_prefix),
        cluster_role=settings.api_tenant_cluster_role, service_account=settings.api_service_account_name,
        service_account_namespace=settings.api_service_account_namespace)
    meta = binding["metadata"]
    current = await state.client.get_or_none(ROLE_BINDINGS, meta["name"], meta["namespace"])
    if current is not None and current.get("roleRef") != binding["roleRef"]:  # roleRef is immutable
        await state.client.delete(ROLE_BINDINGS, meta["name"], meta["namespace"])
    await _apply_object(state, ROLE_BINDINGS, binding)


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
