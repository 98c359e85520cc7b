"""The admission rules, checked before ``POST /tasks`` creates anything.

The rules live in :mod:`kubetask.core.admission`, shared with the admission
webhook, so a refusal reads the same through REST and through kubectl.  This
module only supplies their inputs from the API's caches and maps the verdict
to the REST error (status, code, and the REST name of the field).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetask.core import admission as core
from kubetask.core.rest import RestError

Obj = dict[str, Any]

_FIELD_NAMES = {
    "spec.timeoutSeconds": "timeout_seconds",
    "spec.dependsOn": "depends_on",
    "spec.template.parameters": "parameters",
    "spec.template.name": "template",
    "spec.priority": "priority",
    "spec.displayName": "name",
    "spec.script.content": "script_content",
    "spec.script.language": "script_type",
    "spec.resources.gpus": "gpus",
    "spec": None,
}


def _code_for(status: int, message: str) -> str:
    lowered = message.lower()
    if status == 400 and "too many pending" in lowered:
        return "TOO_MANY_PENDING"
    if status == 403 and "month" in lowered:
        return "MONTHLY_LIMIT_REACHED"
    if status == 403:
        return "QUOTA_EXCEEDED"
    if "depend" in lowered:
        return "DEPENDENCY_ERROR"
    if "template" in lowered:
        return "INVALID_TEMPLATE" if status == 400 else "INVALID_PARAMETERS"
    return {400: "BAD_REQUEST", 409: "CONFLICT", 422: "VALIDATION_ERROR"}.get(status, "ADMISSION_DENIED")


def admit(
    task: Obj,
    tenant: Mapping[str, Any],
    tenant_tasks: Sequence[Mapping[str, Any]] | Callable[[], Sequence[Mapping[str, Any]]],
    templates: Sequence[Mapping[str, Any]],
    *,
    pending_count: Callable[[str], int] | None = None,
) -> None:
    """Apply the webhook's defaults to ``task`` (in place) and check it; raise :class:`RestError` if refused.

    ``tenant_tasks`` may be a callable: it is only needed (and called) when the task has dependencies, if
    ``pending_count(tenant_name)`` is given to count the tenant's waiting tasks (e.g. from precomputed rows).
    """
    tenant_name = str((tenant.get("metadata") or {}).get("name") or (task.get("spec") or {}).get("user"))
    tenant_spec = tenant.get("spec") or {}
    template_specs = {str((t.get("metadata") or {}).get("name")): (t.get("spec") or {}) for t in templates}
    spec = core.default_spec(task.get("spec") or {}, tenant_name=tenant_name, tenant_spec=tenant_spec,
                             templates=template_specs)
    loaded: list[Sequence[Mapping[str, Any]]] = []

    def siblings() -> Sequence[Mapping[str, Any]]:
        if not loaded:
            loaded.append(tenant_tasks() if callable(tenant_tasks) else tenant_tasks)
        return loaded[0]

    # The namespace's dependency graph is only read for a task that has dependencies.
    existing = {str((t.get("metadata") or {}).get("name")): list((t.get("spec") or {}).get("dependsOn") or [])
                for t in siblings()} if spec.get("dependsOn") else None
    verdict = core.validate_task(
        spec,
        name=(task.get("metadata") or {}).get("name"),
        namespace=str((task.get("metadata") or {}).get("namespace")),
        operation="CREATE",
        tenant_name=tenant_name,
        tenant_spec=tenant_spec,
        tenant_status=tenant.get("status") or {},
        pending_count=pending_count(tenant_name) if pending_count is not None
        else core.count_pending(siblings(), tenant_name),
        templates=template_specs,
        existing=existing,
    )
    if not verdict.allowed:
        field = _FIELD_NAMES.get(verdict.field or "spec", verdict.field)
        raise RestError(verdict.code, _code_for(verdict.code, verdict.message), verdict.message, field=field)
    task["spec"] = spec
