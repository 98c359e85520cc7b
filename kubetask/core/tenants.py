"""Tenant → Namespace, ResourceQuota, LimitRange, Role, RoleBinding builders; monthly usage (pure).

Policies (documented here because the operator follows them):

* The namespace is ``<prefix><tenant>`` unless ``spec.namespace`` names one;
  it carries the label ``kubetask.io/tenant=<tenant>`` and is **not** owned by
  the Tenant, so deleting a Tenant keeps it (and its Task records) unless the
  operator is configured with ``delete_namespace_with_tenant``.  The quota,
  limit range and RBAC objects are owned by the Tenant and garbage-collected
  with it.
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

from collections.abc import Mapping
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
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {TENANT_LABEL: tenant_name, **MANAGED_BY}}}


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
