"""Task admission rules (pure): the webhook's mutate/validate logic, shared with the REST API.

The REST API calls the same functions before it creates a Task, so a
rejection reads the same through ``kubectl`` and through REST.  Every input is
plain data (dicts, counts, names), so both callers can supply it from their
own caches.

Each rejection carries a message a person can act on and the HTTP code it
maps to: 400 for bad input and the pending-task limit, 403 for hard
quota/limit violations, 422 for invalid template parameters and changes to
immutable fields.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubetask.core.models import DEFAULT_MAX_PENDING, DEFAULT_MAX_TIMEOUT_SECONDS, MAX_SCRIPT_BYTES
from kubetask.core.templates import find_template, validate_parameters
from kubetask.core.tenants import gpu_seconds_in_month, month_key, next_month_start

#: Fields that describe what runs and where; frozen once the Task has been admitted.
IMMUTABLE_AFTER_ADMISSION = (
    "template", "image", "command", "args", "env", "script", "resources", "nodeSelector", "tolerations",
    "dependsOn", "timeoutSeconds", "runtime", "kwargs", "podAnnotations", "podLabels", "queue",
    "maxRetries", "retryBackoffSeconds", "scheduledAt",
)
#: Fields that never change after creation.
ALWAYS_IMMUTABLE = ("user",)
NOT_ADMITTED_PHASES = (None, "Pending", "Queued")


@dataclass
class Verdict:
    """Allowed, or rejected with a message and the HTTP code."""

    allowed: bool = True
    message: str = ""
    code: int = 200
    field: str | None = None

    @classmethod
    def deny(cls, code: int, message: str, field_: str | None = None) -> Verdict:
        return cls(allowed=False, message=message, code=code, field=field_)


def _limits(tenant_spec: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (tenant_spec or {}).get("limits") or {}


def default_spec(
    spec: Mapping[str, Any],
    *,
    tenant_name: str | None = None,
    tenant_spec: Mapping[str, Any] | None = None,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    default_queue: str = "default",
    fallback_user: str | None = None,
) -> dict[str, Any]:
    """The spec with kubetask's defaults filled in and ``user`` set from the namespace's tenant."""
    out = copy.deepcopy(dict(spec))
    if tenant_name:
        out["user"] = tenant_name
    elif not out.get("user") and fallback_user:
        out["user"] = fallback_user
    out.setdefault("priority", 5)
    if not out.get("queue"):
        out["queue"] = default_queue
    out.setdefault("runtime", "job")
    out.setdefault("maxRetries", 0)
    out.setdefault("retryBackoffSeconds", 10)
    out.setdefault("cancel", False)
    resources = dict(out.get("resources") or {})
    template_defaults: Mapping[str, Any] = {}
    template = out.get("template") or {}
    if template.get("name") and templates is not None:
        found = find_template(templates, str(template["name"]))
        if found is not None:
            template_defaults = found[1].get("defaults") or {}
    for key, value in (template_defaults.get("resources") or {}).items():
        if value is not None and resources.get(key) in (None, ""):
            resources[key] = value
    resources.setdefault("gpus", 0)
    out["resources"] = resources
    if out.get("timeoutSeconds") is None:
        ceiling = int(_limits(tenant_spec).get("maxTimeoutSeconds") or DEFAULT_MAX_TIMEOUT_SECONDS)
        timeout = template_defaults.get("timeoutSeconds")
        # A template's default never exceeds what the tenant may ask for explicitly.
        out["timeoutSeconds"] = min(int(timeout), ceiling) if timeout is not None else ceiling
    return out


def find_cycle(name: str, depends_on: Sequence[str], graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle through ``name`` if adding its ``depends_on`` edges closes one."""
    edges = dict(graph)
    edges[name] = list(depends_on)
    stack: list[tuple[str, list[str]]] = [(dep, [name, dep]) for dep in depends_on]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == name:
            return path
        if node in seen:
            continue
        seen.add(node)
        for nxt in edges.get(node, ()):
            stack.append((nxt, [*path, nxt]))
    return None


def validate_task(
    spec: Mapping[str, Any],
    *,
    name: str | None,
    namespace: str,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    tenant_name: str | None = None,
    tenant_spec: Mapping[str, Any] | None = None,
    tenant_status: Mapping[str, Any] | None = None,
    pending_count: int = 0,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    existing: Mapping[str, Sequence[str]] | None = None,
    now: datetime | None = None,
) -> Verdict:
    """Check a Task (its defaulted ``spec``) against kubetask's admission rules.

    ``old`` is the whole previous object on UPDATE; ``pending_count`` the
    tenant's Pending+Queued tasks (not counting this one); ``existing`` maps the
    names of the namespace's Tasks to their ``dependsOn`` (for missing
    dependencies and cycles); ``templates`` maps TaskTemplate names to specs.
    """
    now = now or datetime.now(UTC)
    limits = _limits(tenant_spec)
    who = tenant_name or spec.get("user") or namespace

    if operation == "UPDATE" and old is not None:
        return _validate_update(spec, old)
    if operation != "CREATE":
        return Verdict()

    # What runs.
    template = spec.get("template") or None
    script = spec.get("script") or None
    if not template and not script and not spec.get("image"):
        return Verdict.deny(400, "The task says nothing to run: set template (+ parameters), image (+ command) "
                                 "or script (language + content)", "spec")
    if template and script:
        return Verdict.deny(400, "Set either template or script, not both", "spec.script")
    if script:
        if str(script.get("language")) not in ("python", "bash"):
            return Verdict.deny(400, f"Unknown script language '{script.get('language')}': use python or bash",
                                "spec.script.language")
        if len(str(script.get("content") or "").encode()) > MAX_SCRIPT_BYTES:
            return Verdict.deny(400, "Script too large: content must be at most 1 MiB", "spec.script.content")
    priority = spec.get("priority", 5)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 10:
        return Verdict.deny(400, f"Priority must be an integer from 0 to 10 (got {priority!r})", "spec.priority")
    display = spec.get("displayName")
    if display is not None and not 1 <= len(str(display)) <= 255:
        return Verdict.deny(400, "displayName must be 1 to 255 characters", "spec.displayName")

    # Pending limit: 400, as seed 000 says.
    max_pending = int(limits.get("maxPending", DEFAULT_MAX_PENDING) or DEFAULT_MAX_PENDING)
    if pending_count >= max_pending:
        return Verdict.deny(400, f"Too many pending tasks (max {max_pending})", "spec")

    # Hard limits: 403.
    resources = spec.get("resources") or {}
    gpus = int(resources.get("gpus") or 0)
    max_gpus = limits.get("maxGpusPerTask")
    if max_gpus is not None and gpus > int(max_gpus):
        return Verdict.deny(403, f"Too many GPUs requested: {gpus} (max {max_gpus} per task for {who})",
                            "spec.resources.gpus")
    gpu_quota = limits.get("gpuQuota")
    if gpu_quota is not None and gpus > int(gpu_quota):
        return Verdict.deny(403, f"Task needs {gpus} GPUs but {who}'s GPU quota is {gpu_quota}",
                            "spec.resources.gpus")
    max_timeout = int(limits.get("maxTimeoutSeconds", DEFAULT_MAX_TIMEOUT_SECONDS) or DEFAULT_MAX_TIMEOUT_SECONDS)
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and int(timeout) > max_timeout:
        return Verdict.deny(403, f"timeoutSeconds {timeout} exceeds the maximum of {max_timeout} s for {who}",
                            "spec.timeoutSeconds")
    monthly_hours = limits.get("monthlyGpuHours")
    if monthly_hours is not None and gpus > 0:
        used_hours = gpu_seconds_in_month(tenant_status or {}, month_key(now)) / 3600.0
        if used_hours >= float(monthly_hours):
            resets = next_month_start(now).strftime("%Y-%m-%d")
            return Verdict.deny(403, f"Monthly GPU-hours used up: {used_hours:.1f} of {float(monthly_hours):g} h "
                                     f"in {month_key(now)} for {who}; the allowance resets on {resets}",
                                "spec.resources.gpus")

    # Template and parameters.
    if template:
        template_name = str(template.get("name") or "")
        found = find_template(templates or {}, template_name)
        if found is None:
            available = ", ".join(sorted(templates or {})) or "none"
            return Verdict.deny(400, f"Unknown template '{template_name}' (available: {available})",
                                "spec.template.name")
        check = validate_parameters(found[1], template.get("parameters") or {})
        if not check.ok:
            return Verdict.deny(422, check.message(found[0]), "spec.template.parameters")

    # Dependencies.
    deps = [str(d) for d in spec.get("dependsOn") or []]
    if deps:
        if name and name in deps:
            return Verdict.deny(400, f"Task '{name}' cannot depend on itself", "spec.dependsOn")
        graph = existing or {}
        missing = [d for d in deps if d not in graph]
        if missing:
            return Verdict.deny(400, f"Dependency '{missing[0]}' does not exist in namespace {namespace}: create "
                                     f"it first", "spec.dependsOn")
        if name:
            cycle = find_cycle(name, deps, graph)
            if cycle:
                return Verdict.deny(400, "Dependency cycle: " + " → ".join(cycle), "spec.dependsOn")
    return Verdict()


def _validate_update(spec: Mapping[str, Any], old: Mapping[str, Any]) -> Verdict:
    old_spec = old.get("spec") or {}
    for key in ALWAYS_IMMUTABLE:
        if old_spec.get(key) and spec.get(key) != old_spec.get(key):
            return Verdict.deny(422, f"spec.{key} is immutable (it was '{old_spec.get(key)}')", f"spec.{key}")
    phase = (old.get("status") or {}).get("phase")
    if phase in NOT_ADMITTED_PHASES:
        return Verdict()
    for key in IMMUTABLE_AFTER_ADMISSION:
        if _norm(spec.get(key)) != _norm(old_spec.get(key)):
            return Verdict.deny(422, f"spec.{key} cannot change once the task has been admitted (phase {phase}); "
                                     f"create a new task instead", f"spec.{key}")
    return Verdict()


def _norm(value: Any) -> Any:
    return None if value in ({}, [], None) else value


def count_pending(tasks: Sequence[Mapping[str, Any]], user: str) -> int:
    """How many of ``tasks`` belong to ``user`` and are waiting (no phase yet, Pending or Queued)."""
    count = 0
    for task in tasks:
        if (task.get("spec") or {}).get("user") != user:
            continue
        if (task.get("spec") or {}).get("cancel"):
            continue
        if (task.get("status") or {}).get("phase") in NOT_ADMITTED_PHASES:
            count += 1
    return count


def requesting_user(userinfo: Mapping[str, Any] | None) -> str:
    """The person behind an admission request, as a Task's fallback ``spec.user``.

    A ServiceAccount counts as its own name; cluster-internal and admin identities
    (``system:*``, ``admin``, ``kubernetes-admin``) name nobody, so the namespace's tenant wins.
    """
    username = str((userinfo or {}).get("username") or "")
    if username.startswith("system:serviceaccount:"):
        return username.rsplit(":", 1)[-1]
    if username.startswith("system:") or username in ("admin", "kubernetes-admin"):
        return ""
    return username
