"""Tenant → Namespace, ResourceQuota, LimitRange, Role, RoleBinding builders; monthly usage (pure).

Policies (documented here because the operator follows them):

* The namespace is ``<prefix><tenant>`` unless ``spec.namespace`` names one;
  it carries the label ``kubetask.io/tenant=<tenant>`` and is **not** owned by
  the Tenant, so deleting a Tenant keeps it (and its Task records) unless the
  operator is configured with ``delete_namespace_with_tenant``.  The quota,
  limit range and RBAC objects are owned by the Tenant and garbage-collected
  with it.
* One namespace, one Tenant: the first claimant (oldest ``creationTimestamp``,
  then name) owns it; a later Tenant naming it gets nothing there.  System
  namespaces (``kube-*``, ``default``, the release's own) are never claimed
  unless an allowlist names them.  Only a namespace kubetask created (annotated
  ``kubetask.io/created-for-tenant=<tenant>``) is ever deleted with its Tenant:
  a namespace that existed before is only labelled with its tenant.
* ``count/jobs.batch`` counts finished Jobs too.  kubetask keeps each
  execution's Job for history (logs, timeline), so the hard limit is generous
  (``max(JOB_COUNT_FLOOR, 20 * maxPending)``); the operator's own admission
  checks it too, and deleting finished Tasks (or ``ttlSecondsAfterFinished``)
  frees it.
* Usage is accounted when an execution ends, into ``status.usage[]`` per month
  (``YYYY-MM``), keeping the last 12 months; ``gpuSecondsThisMonth`` is the
  current month's entry, so the allowance resets when the month turns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubetask import API_VERSION, GROUP
from kubetask.core.models import DEFAULT_MAX_PENDING, DEFAULT_MAX_TIMEOUT_SECONDS
from kubetask.core.objects import LABEL_TENANT

TENANT_LABEL = LABEL_TENANT
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubetask"}
JOB_COUNT_FLOOR = 1000
DEFAULT_PODS = 500
USAGE_MONTHS_KEPT = 12
DEFAULT_CONTAINER_CPU = "1"
DEFAULT_CONTAINER_MEMORY = "2Gi"
ANNOTATION_CREATED_FOR = "kubetask.io/created-for-tenant"
"""On a Namespace kubetask created: the Tenant it was created for (the only one that may delete it)."""
SYSTEM_NAMESPACES = frozenset({"default"})
SYSTEM_NAMESPACE_PREFIX = "kube-"


def tenant_namespace(tenant_name: str, spec: Mapping[str, Any] | None, prefix: str = "kubetask-", *,
                     status: Mapping[str, Any] | None = None) -> str:
    """The namespace that holds a tenant's Tasks: the one the operator reports it made
    (``status.namespace``, when given), else ``spec.namespace``, else ``<prefix><tenant>``."""
    made = (status or {}).get("namespace")
    if made:
        return str(made)
    explicit = (spec or {}).get("namespace")
    return str(explicit) if explicit else f"{prefix}{tenant_name}"


def namespace_of(tenant: Mapping[str, Any], prefix: str = "kubetask-") -> str:
    """:func:`tenant_namespace` of a whole Tenant object."""
    return tenant_namespace(str((tenant.get("metadata") or {}).get("name")), tenant.get("spec"), prefix,
                            status=tenant.get("status"))


def tenant_limits(tenant: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.limits`` with kubetask's defaults (``maxPending`` 50, ``maxTimeoutSeconds`` 3600)."""
    limits: dict[str, Any] = {"maxPending": DEFAULT_MAX_PENDING, "maxTimeoutSeconds": DEFAULT_MAX_TIMEOUT_SECONDS}
    limits.update((tenant.get("spec") or {}).get("limits") or {})
    return limits


def _owner(tenant: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = tenant.get("metadata") or {}
    if not meta.get("uid"):
        return []
    return [{"apiVersion": API_VERSION, "kind": "Tenant", "name": meta.get("name"), "uid": meta.get("uid"),
             "controller": True, "blockOwnerDeletion": False}]


def _meta(tenant: Mapping[str, Any], name: str, namespace: str) -> dict[str, Any]:
    tenant_name = str((tenant.get("metadata") or {}).get("name"))
    return {"name": name, "namespace": namespace, "labels": {TENANT_LABEL: tenant_name, **MANAGED_BY},
            "ownerReferences": _owner(tenant)}


def build_namespace(tenant_name: str, namespace: str) -> dict[str, Any]:
    """The Namespace kubetask creates for a tenant: marked as made by kubetask, for this tenant."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {TENANT_LABEL: tenant_name, **MANAGED_BY},
                         "annotations": {ANNOTATION_CREATED_FOR: tenant_name}}}


def existing_namespace_patch(tenant_name: str) -> dict[str, Any]:
    """What kubetask changes on a Namespace that existed before its Tenant: the tenant label only.

    Neither the managed-by label nor the created-for annotation: nothing may later take it for
    a namespace kubetask made (and delete it with the Tenant)."""
    return {"metadata": {"labels": {TENANT_LABEL: tenant_name}}}


def created_for(namespace: Mapping[str, Any] | None) -> str | None:
    """The Tenant a Namespace object was created for by kubetask (``None``: kubetask did not create it)."""
    annotations = ((namespace or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_CREATED_FOR)
    return str(value) if value else None


def deletes_namespace_with_tenant(namespace: Mapping[str, Any] | None, tenant_name: str) -> bool:
    """Whether deleting ``tenant_name`` may delete this Namespace: only one kubetask created for that tenant."""
    return namespace is not None and created_for(namespace) == tenant_name


def system_namespace(namespace: str, *, release_namespaces: Collection[str] = (),
                     allowlist: Collection[str] = ()) -> bool:
    """``kube-*``, ``default`` and the release's own namespace(s): never a tenant's, unless allowlisted."""
    if namespace in allowlist:
        return False
    return (namespace.startswith(SYSTEM_NAMESPACE_PREFIX) or namespace in SYSTEM_NAMESPACES
            or namespace in release_namespaces)


def claim_order(tenant: Mapping[str, Any]) -> tuple[str, str]:
    """Who claimed first: the older ``creationTimestamp``, then the name (RFC 3339 UTC sorts as time).

    A Tenant without a timestamp (one being created, as an admission review shows it) comes last."""
    meta = tenant.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or "~"), str(meta.get("name") or ""))


def namespace_owners(tenants: Iterable[Mapping[str, Any]], prefix: str = "kubetask-", *,
                     release_namespaces: Collection[str] = (), allowlist: Collection[str] = ()) -> dict[str, str]:
    """Namespace -> the Tenant that owns it: for a namespace several Tenants name, the first claimant
    (:func:`claim_order`); a system namespace (:func:`system_namespace`) has no owner."""
    owners: dict[str, str] = {}
    for tenant in sorted(tenants, key=claim_order):
        name = str((tenant.get("metadata") or {}).get("name"))
        namespace = tenant_namespace(name, tenant.get("spec"), prefix)
        if not system_namespace(namespace, release_namespaces=release_namespaces, allowlist=allowlist):
            owners.setdefault(namespace, name)
    return owners


def quota_hard(limits: Mapping[str, Any], gpu_resource: str = "nvidia.com/gpu") -> dict[str, str]:
    """The ResourceQuota ``hard`` map for a tenant's limits."""
    hard: dict[str, str] = {}
    if limits.get("gpuQuota") is not None:
        hard[f"requests.{gpu_resource}"] = str(int(limits["gpuQuota"]))
    if limits.get("cpuQuota"):
        hard["requests.cpu"] = str(limits["cpuQuota"])
    if limits.get("memoryQuota"):
        hard["requests.memory"] = str(limits["memoryQuota"])
    max_running = limits.get("maxRunning")
    hard["pods"] = str(int(max_running)) if max_running is not None else str(DEFAULT_PODS)
    max_pending = int(limits.get("maxPending") or 50)
    hard["count/jobs.batch"] = str(max(JOB_COUNT_FLOOR, 20 * max_pending))
    return hard


def build_resource_quota(tenant: Mapping[str, Any], namespace: str, gpu_resource: str = "nvidia.com/gpu"
                         ) -> dict[str, Any]:
    limits = (tenant.get("spec") or {}).get("limits") or {}
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta(tenant, "kubetask-quota", namespace),
            "spec": {"hard": quota_hard(limits, gpu_resource)}}


def build_limit_range(tenant: Mapping[str, Any], namespace: str, gpu_resource: str = "nvidia.com/gpu"
                      ) -> dict[str, Any]:
    """Defaults for containers that say nothing (so quota never rejects a pod for a missing request)."""
    # No ``max`` for the GPU resource: a LimitRange ``max`` without ``default`` becomes the default limit,
    # which would hand every CPU-only pod a GPU.  maxGpusPerTask is enforced by the admission webhook.
    item: dict[str, Any] = {
        "type": "Container",
        "defaultRequest": {"cpu": DEFAULT_CONTAINER_CPU, "memory": DEFAULT_CONTAINER_MEMORY},
        "default": {"cpu": DEFAULT_CONTAINER_CPU, "memory": DEFAULT_CONTAINER_MEMORY},
    }
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta(tenant, "kubetask-limits", namespace),
            "spec": {"limits": [item]}}


def build_role(tenant: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """What a tenant's subjects may do in its namespace: manage Tasks, read what they run."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": _meta(tenant, "kubetask-tenant", namespace),
        "rules": [
            {"apiGroups": [GROUP], "resources": ["tasks"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [GROUP], "resources": ["tasks/status"], "verbs": ["get"]},
            # completion-webhook subscriptions are the tenant's to manage by kubectl as well as by REST
            {"apiGroups": [GROUP], "resources": ["taskwebhooks"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods", "events", "configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},  # the only verb pods/log has
        ],
    }


def build_role_binding(tenant: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    subjects = []
    for subject in (tenant.get("spec") or {}).get("subjects") or []:
        entry = {"kind": subject.get("kind"), "name": subject.get("name")}
        if subject.get("kind") == "ServiceAccount":
            entry["namespace"] = subject.get("namespace") or namespace
        else:
            entry["apiGroup"] = subject.get("apiGroup") or "rbac.authorization.k8s.io"
        subjects.append(entry)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": _meta(tenant, "kubetask-tenant", namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubetask-tenant"},
        "subjects": subjects,
    }


def build_tenant_objects(tenant: Mapping[str, Any], *, prefix: str = "kubetask-",
                         gpu_resource: str = "nvidia.com/gpu") -> list[dict[str, Any]]:
    """Everything a Tenant becomes, Namespace first."""
    name = str((tenant.get("metadata") or {}).get("name"))
    namespace = tenant_namespace(name, tenant.get("spec"), prefix)
    return [
        build_namespace(name, namespace),
        build_resource_quota(tenant, namespace, gpu_resource),
        build_limit_range(tenant, namespace, gpu_resource),
        build_role(tenant, namespace),
        build_role_binding(tenant, namespace),
    ]


# --------------------------------------------------------------------------- usage


def month_key(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


def next_month_start(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    if when.month == 12:
        return datetime(when.year + 1, 1, 1, tzinfo=UTC)
    return datetime(when.year, when.month + 1, 1, tzinfo=UTC)


def gpu_seconds_in_month(tenant_status: Mapping[str, Any], month: str) -> float:
    """GPU-seconds used in ``month`` (``YYYY-MM``): the ``usage[]`` ledger's entry, else the live
    ``gpuSecondsThisMonth`` when it is for that month (or says for none)."""
    for entry in tenant_status.get("usage") or []:
        if entry.get("month") == month:
            return float(entry.get("gpuSeconds") or 0.0)
    if tenant_status.get("month") in (None, month) and tenant_status.get("gpuSecondsThisMonth") is not None:
        return float(tenant_status.get("gpuSecondsThisMonth") or 0.0)
    return 0.0


def add_usage(usage: list[Mapping[str, Any]] | None, month: str, gpu_seconds: float) -> list[dict[str, Any]]:
    """``usage`` with ``gpu_seconds`` added to ``month`` (newest first, last 12 months kept)."""
    entries = {str(e.get("month")): float(e.get("gpuSeconds") or 0.0) for e in usage or [] if e.get("month")}
    entries[month] = round(entries.get(month, 0.0) + gpu_seconds, 3)
    ordered = sorted(entries.items(), reverse=True)[:USAGE_MONTHS_KEPT]
    return [{"month": m, "gpuSeconds": s} for m, s in ordered]


def usage_status(tenant_status: Mapping[str, Any], *, now: datetime, running: int, pending: int,
                 gpus_in_use: int, namespace: str) -> dict[str, Any]:
    """The Tenant's live usage fields (the monthly ledger ``usage[]`` is kept as it is)."""
    month = month_key(now)
    return {
        "namespace": namespace,
        "running": running,
        "pending": pending,
        "gpusInUse": gpus_in_use,
        "month": month,
        "gpuSecondsThisMonth": gpu_seconds_in_month(tenant_status, month),
    }


def tenant_object_patch(desired: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that brings an existing tenant object to ``desired``.

    Quota keys the Tenant no longer sets are removed (``None``), so lowering a Tenant's
    limits to "unset" really lifts them; other kinds replace the fields kubetask owns.
    """
    patch: dict[str, Any] = {"metadata": {"labels": (desired.get("metadata") or {}).get("labels") or {}}}
    kind = desired.get("kind")
    if kind == "ResourceQuota":
        hard: dict[str, Any] = dict(desired["spec"]["hard"])
        for key in (current.get("spec") or {}).get("hard") or {}:
            hard.setdefault(key, None)
        patch["spec"] = {"hard": hard}
    elif kind == "LimitRange":
        patch["spec"] = desired["spec"]
    elif kind == "Role":
        patch["rules"] = desired["rules"]
    elif kind == "RoleBinding":
        patch["subjects"] = desired["subjects"]
    return patch
