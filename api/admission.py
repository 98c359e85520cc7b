"""The admission rules, checked before ``POST /tasks`` creates anything.

The rules live in :mod:`kubetask.core.admission`, shared with the admission
webhook, so a refusal reads the same through REST and through kubectl.  This
module only supplies their inputs from the API's caches; a refusal becomes the REST
error through its machine-readable reason (:func:`kubetask.core.rest.errors.from_verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetask.core import admission as core
from kubetask.core.objects import Obj
from kubetask.core.rest.errors import from_verdict
from kubetask.core.templates import templates_by_name


def admit(
    task: Obj,
    tenant: Mapping[str, Any],
    tenant_tasks: Sequence[Mapping[str, Any]] | Callable[[], Sequence[Mapping[str, Any]]],
    templates: Sequence[Mapping[str, Any]],
    *,
    pending_count: Callable[[str], int] | None = None,
) -> None:
    """Apply the webhook's defaults to ``task`` (in place) and check it; raise ``RestError`` if refused.

    ``tenant_tasks`` may be a callable: it is only needed (and called) when the task has dependencies, if
    ``pending_count(tenant_name)`` is given to count the tenant's waiting tasks (e.g. from precomputed rows).
    """
    tenant_name = str((tenant.get("metadata") or {}).get("name") or (task.get("spec") or {}).get("user"))
    tenant_spec = tenant.get("spec") or {}
    template_specs = templates_by_name(templates)
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
        raise from_verdict(verdict)
    task["spec"] = spec


def admit_update(
    task: Mapping[str, Any],
    patch: Mapping[str, Any],
    tenant: Mapping[str, Any],
    templates: Sequence[Mapping[str, Any]],
) -> None:
    """Check the Task ``task`` would become under the merge ``patch`` with the webhook's UPDATE rules (what
    runs re-validated while it has not started); raise the REST error if refused."""
    tenant_name = str((tenant.get("metadata") or {}).get("name") or (task.get("spec") or {}).get("user"))
    new_spec = merge_patch(task.get("spec") or {}, patch.get("spec") or {})
    verdict = core.validate_task(
        new_spec,
        name=(task.get("metadata") or {}).get("name"),
        namespace=str((task.get("metadata") or {}).get("namespace")),
        operation="UPDATE",
        old=task,
        tenant_name=tenant_name,
        tenant_spec=tenant.get("spec") or {},
        tenant_status=tenant.get("status") or {},
        templates=templates_by_name(templates),
    )
    if not verdict.allowed:
        raise from_verdict(verdict)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``target`` with the JSON merge ``patch`` applied (``None`` removes a key)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
