"""Task admission rules (pure): the webhook's mutate/validate logic, shared with the REST API.

The REST API calls the same functions before it creates a Task, so a
rejection reads the same through ``kubectl`` and through REST.  Every input is
plain data (dicts, counts, names), so both callers can supply it from their
own caches.

Each rejection carries a message a person can act on, the offending field and a
machine-readable :class:`Reason`.  :data:`HTTP_STATUS` says what each reason means
as an HTTP status (the webhook answers with it, the REST API maps it): 400 for bad
input and the pending-task limit, 403 for hard quota/limit violations, 422 for
invalid template parameters and changes to immutable fields.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kubetask import GROUP, VERSION
from kubetask.core.jobs import pod_field_errors
from kubetask.core.models import (
    ANNOTATION_SUBMITTED_AT,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_TIMEOUT_SECONDS,
    MAX_SCRIPT_BYTES,
)
from kubetask.core.templates import find_template, template_spec_problem, validate_parameters
from kubetask.core.tenants import (
    claim_order,
    gpu_seconds_in_month,
    month_key,
    next_month_start,
    system_namespace,
    tenant_namespace,
)

ADMISSION_PROBE_LABEL = "kubetask.io/admission-probe"
"""Marks the dry-run Task the operator sends itself at start-up to learn that the apiserver calls its webhooks."""
PROBE_ANSWER = "kubetask admission probe:"
"""How the validating webhook's refusal of that probe begins."""


def admission_probe(body: Mapping[str, Any], *, dry_run: bool) -> str | None:
    """The validating webhook's answer to the start-up probe, or ``None`` for any other Task.

    The apiserver learns of a new webhook configuration through its own watch, a moment after the
    configuration exists; a Task created in that moment is admitted by neither webhook.  So the
    operator, before it says it is ready, dry-runs a Task carrying :data:`ADMISSION_PROBE_LABEL`
    until the validating webhook refuses it with this answer, which says whether the mutating
    webhook stamped it first.  Only a dry run is a probe: the label changes nothing for a real Task.
    """
    meta = body.get("metadata") or {}
    if not dry_run or not (meta.get("labels") or {}).get(ADMISSION_PROBE_LABEL):
        return None
    mutated = ANNOTATION_SUBMITTED_AT in (meta.get("annotations") or {})
    return f"{PROBE_ANSWER} mutated={'yes' if mutated else 'no'}"


def admission_probe_task(namespace: str) -> dict[str, Any]:
    """The dry-run Task of the start-up probe (see :func:`admission_probe`)."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Task",
            "metadata": {"generateName": "kubetask-admission-probe-", "namespace": namespace,
                         "labels": {ADMISSION_PROBE_LABEL: "true"}},
            "spec": {"image": "busybox"}}


def probe_passed_both_webhooks(refusal: str) -> bool:
    """Whether the apiserver's refusal of the probe came from the validating webhook after the mutating one."""
    return f"{PROBE_ANSWER} mutated=yes" in refusal


#: Fields that describe what runs and where; frozen once the Task has been admitted.
IMMUTABLE_AFTER_ADMISSION = (
    "template", "image", "command", "args", "env", "script", "resources", "nodeSelector", "tolerations",
    "dependsOn", "timeoutSeconds", "runtime", "kwargs", "podAnnotations", "podLabels", "queue",
    "maxRetries", "retryBackoffSeconds", "scheduledAt",
)
#: Fields that never change after creation.
ALWAYS_IMMUTABLE = ("user",)
NOT_ADMITTED_PHASES = (None, "Pending", "Queued")


class Reason(StrEnum):
    """Why admission refused a Task: stable codes a program can branch on (the REST error ``code``)."""

    NOTHING_TO_RUN = "NOTHING_TO_RUN"
    INVALID_SPEC = "INVALID_SPEC"
    TOO_MANY_PENDING = "TOO_MANY_PENDING"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    MONTHLY_LIMIT_REACHED = "MONTHLY_LIMIT_REACHED"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    DEPENDENCY_NOT_FOUND = "DEPENDENCY_NOT_FOUND"
    DEPENDENCY_CYCLE = "DEPENDENCY_CYCLE"
    IMMUTABLE_FIELD = "IMMUTABLE_FIELD"
    NO_TENANT = "NO_TENANT"
    INVALID_FIELD = "INVALID_FIELD"
    NAMESPACE_TAKEN = "NAMESPACE_TAKEN"
    SYSTEM_NAMESPACE = "SYSTEM_NAMESPACE"
    INVALID_TEMPLATE = "INVALID_TEMPLATE"


HTTP_STATUS: Mapping[Reason, int] = {
    Reason.NOTHING_TO_RUN: 400,
    Reason.INVALID_SPEC: 400,
    Reason.TOO_MANY_PENDING: 400,  # seed 000: "Too many pending tasks (max 50)" is a 400
    Reason.QUOTA_EXCEEDED: 403,
    Reason.MONTHLY_LIMIT_REACHED: 403,
    Reason.TEMPLATE_NOT_FOUND: 400,
    Reason.INVALID_PARAMETERS: 422,
    Reason.DEPENDENCY_NOT_FOUND: 400,
    Reason.DEPENDENCY_CYCLE: 400,
    Reason.IMMUTABLE_FIELD: 422,
    Reason.NO_TENANT: 403,
    Reason.INVALID_FIELD: 422,  # what the apiserver itself answers for an invalid field
    Reason.NAMESPACE_TAKEN: 409,
    Reason.SYSTEM_NAMESPACE: 403,
    Reason.INVALID_TEMPLATE: 422,
}
"""The HTTP status each refusal stands for."""


@dataclass
class Verdict:
    """Allowed, or refused with a :class:`Reason`, a message a person can act on and the offending field."""

    allowed: bool = True
    message: str = ""
    reason: Reason | None = None
    field: str | None = None

    @property
    def code(self) -> int:
        """The HTTP status of the refusal (200 when allowed): what the webhook answers with."""
        return HTTP_STATUS[self.reason] if self.reason is not None else 200

    @classmethod
    def deny(cls, reason: Reason, message: str, field_: str | None = None) -> Verdict:
        return cls(allowed=False, message=message, reason=reason, field=field_)


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
    """A dependency cycle through ``name`` if adding its ``depends_on`` edges closes one.

    Only the Tasks reachable from ``depends_on`` are looked up (``name``'s own edges are never needed: the walk
    stops when it reaches it), so the cost is the size of that subgraph, not of the namespace."""
    stack: list[tuple[str, list[str]]] = [(dep, [name, dep]) for dep in depends_on]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == name:
            return path
        if node in seen:
            continue
        seen.add(node)
        for nxt in graph.get(node, ()):
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
    if operation == "UPDATE" and old is not None:
        who = tenant_name or spec.get("user") or namespace
        return (_validate_update(spec, old)
                or (not_started(old) and (_what_runs(spec) or _hard_limits(spec, tenant_spec, tenant_status, who, now)
                                          or _changed_template(spec, old, templates) or pod_fields(spec, name)))
                or Verdict())
    if operation != "CREATE":
        return Verdict()
    return (_what_runs(spec)
            or _pending_limit(tenant_spec, pending_count)
            or _hard_limits(spec, tenant_spec, tenant_status, tenant_name or spec.get("user") or namespace, now)
            or _template(spec, templates)
            or _dependencies(spec, name, namespace, existing)
            or pod_fields(spec, name)
            or Verdict())


def _what_runs(spec: Mapping[str, Any]) -> Verdict | None:
    template = spec.get("template") or None
    script = spec.get("script") or None
    if not template and not script and not spec.get("image"):
        return Verdict.deny(Reason.NOTHING_TO_RUN, "The task says nothing to run: set template (+ parameters), "
                                                   "image (+ command) or script (language + content)", "spec")
    if template and script:
        return Verdict.deny(Reason.INVALID_SPEC, "Set either template or script, not both", "spec.script")
    if script:
        if str(script.get("language")) not in ("python", "bash"):
            return Verdict.deny(Reason.INVALID_SPEC, f"Unknown script language '{script.get('language')}': "
                                                     f"use python or bash", "spec.script.language")
        if len(str(script.get("content") or "").encode()) > MAX_SCRIPT_BYTES:
            return Verdict.deny(Reason.INVALID_SPEC, "Script too large: content must be at most 1 MiB",
                                "spec.script.content")
    priority = spec.get("priority", 5)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 10:
        return Verdict.deny(Reason.INVALID_SPEC, f"Priority must be an integer from 0 to 10 (got {priority!r})",
                            "spec.priority")
    display = spec.get("displayName")
    if display is not None and not 1 <= len(str(display)) <= 255:
        return Verdict.deny(Reason.INVALID_SPEC, "displayName must be 1 to 255 characters", "spec.displayName")
    return None


def _pending_limit(tenant_spec: Mapping[str, Any] | None, pending_count: int) -> Verdict | None:
    """400, as seed 000 says."""
    limits = _limits(tenant_spec)
    max_pending = int(limits.get("maxPending", DEFAULT_MAX_PENDING) or DEFAULT_MAX_PENDING)
    if pending_count >= max_pending:
        return Verdict.deny(Reason.TOO_MANY_PENDING, f"Too many pending tasks (max {max_pending})", "spec")
    return None


def _hard_limits(spec: Mapping[str, Any], tenant_spec: Mapping[str, Any] | None,
                 tenant_status: Mapping[str, Any] | None, who: str, now: datetime) -> Verdict | None:
    """403: GPUs per task, the GPU quota, the longest timeout and the monthly GPU-hours."""
    limits = _limits(tenant_spec)
    gpus = int((spec.get("resources") or {}).get("gpus") or 0)
    max_gpus = limits.get("maxGpusPerTask")
    if max_gpus is not None and gpus > int(max_gpus):
        return Verdict.deny(Reason.QUOTA_EXCEEDED, f"Too many GPUs requested: {gpus} (max {max_gpus} per task "
                                                   f"for {who})", "spec.resources.gpus")
    gpu_quota = limits.get("gpuQuota")
    if gpu_quota is not None and gpus > int(gpu_quota):
        return Verdict.deny(Reason.QUOTA_EXCEEDED, f"Task needs {gpus} GPUs but {who}'s GPU quota is {gpu_quota}",
                            "spec.resources.gpus")
    max_timeout = int(limits.get("maxTimeoutSeconds", DEFAULT_MAX_TIMEOUT_SECONDS) or DEFAULT_MAX_TIMEOUT_SECONDS)
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and int(timeout) > max_timeout:
        return Verdict.deny(Reason.QUOTA_EXCEEDED, f"timeoutSeconds {timeout} exceeds the maximum of "
                                                   f"{max_timeout} s for {who}", "spec.timeoutSeconds")
    monthly_hours = limits.get("monthlyGpuHours")
    if monthly_hours is not None and gpus > 0:
        used_hours = gpu_seconds_in_month(tenant_status or {}, month_key(now)) / 3600.0
        if used_hours >= float(monthly_hours):
            resets = next_month_start(now).strftime("%Y-%m-%d")
            return Verdict.deny(Reason.MONTHLY_LIMIT_REACHED,
                                f"Monthly GPU-hours used up: {used_hours:.1f} of {float(monthly_hours):g} h "
                                f"in {month_key(now)} for {who}; the allowance resets on {resets}",
                                "spec.resources.gpus")
    return None


def _template(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None) -> Verdict | None:
    template = spec.get("template") or None
    if not template:
        return None
    template_name = str(template.get("name") or "")
    found = find_template(templates or {}, template_name)
    if found is None:
        available = ", ".join(sorted(templates or {})) or "none"
        return Verdict.deny(Reason.TEMPLATE_NOT_FOUND, f"Unknown template '{template_name}' (available: {available})",
                            "spec.template.name")
    check = validate_parameters(found[1], template.get("parameters") or {})
    if not check.ok:
        return Verdict.deny(Reason.INVALID_PARAMETERS, check.message(found[0]), "spec.template.parameters")
    return None


def _dependencies(spec: Mapping[str, Any], name: str | None, namespace: str,
                  existing: Mapping[str, Sequence[str]] | None) -> Verdict | None:
    deps = [str(d) for d in spec.get("dependsOn") or []]
    if not deps:
        return None
    if name and name in deps:
        return Verdict.deny(Reason.DEPENDENCY_CYCLE, f"Task '{name}' cannot depend on itself", "spec.dependsOn")
    graph = existing or {}
    missing = [d for d in deps if d not in graph]
    if missing:
        return Verdict.deny(Reason.DEPENDENCY_NOT_FOUND, f"Dependency '{missing[0]}' does not exist in namespace "
                                                         f"{namespace}: create it first", "spec.dependsOn")
    if name:
        cycle = find_cycle(name, deps, graph)
        if cycle:
            return Verdict.deny(Reason.DEPENDENCY_CYCLE, "Dependency cycle: " + " → ".join(cycle), "spec.dependsOn")
    return None


def pod_fields(spec: Mapping[str, Any], name: str | None = None) -> Verdict | None:
    """422 for a Task whose Job the apiserver would refuse (a bad pod label, annotation, nodeSelector,
    toleration or env name), in the apiserver's own words (:func:`kubetask.core.jobs.pod_field_errors`)."""
    errors = pod_field_errors(spec, name)
    if not errors:
        return None
    detail = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    return Verdict.deny(Reason.INVALID_FIELD, f"Kubernetes would refuse this task's pod: {detail}", errors[0].field)


def not_started(task: Mapping[str, Any]) -> bool:
    """Not admitted and never run: what runs may still change (the CRD's CEL rule says the same)."""
    status = task.get("status") or {}
    return status.get("phase") in NOT_ADMITTED_PHASES and not status.get("executions")


def _changed_template(spec: Mapping[str, Any], old: Mapping[str, Any],
                      templates: Mapping[str, Mapping[str, Any]] | None) -> Verdict | None:
    """Re-check the template only when it changed (a template removed since creation is no reason to refuse
    a change of priority)."""
    if _norm(spec.get("template")) == _norm((old.get("spec") or {}).get("template")):
        return None
    return _template(spec, templates)


def _validate_update(spec: Mapping[str, Any], old: Mapping[str, Any]) -> Verdict | None:
    old_spec = old.get("spec") or {}
    for key in ALWAYS_IMMUTABLE:
        if old_spec.get(key) and spec.get(key) != old_spec.get(key):
            return Verdict.deny(Reason.IMMUTABLE_FIELD, f"spec.{key} is immutable (it was '{old_spec.get(key)}')",
                                f"spec.{key}")
    if not_started(old):
        return None
    phase = (old.get("status") or {}).get("phase")
    for key in IMMUTABLE_AFTER_ADMISSION:
        if _norm(spec.get(key)) != _norm(old_spec.get(key)):
            return Verdict.deny(Reason.IMMUTABLE_FIELD, f"spec.{key} cannot change once the task has been admitted "
                                                        f"or has run (phase {phase}); create a new task instead",
                                f"spec.{key}")
    return None


def require_tenant(namespace: str, tenant_name: str | None) -> Verdict:
    """A Task must live in a tenant's namespace (issue 9): elsewhere it would run as nobody, under no quota.

    The webhook calls this on CREATE with the namespace's tenant (``None`` if none).  The message
    names no other namespace: which namespaces belong to which tenants is not the caller's to see."""
    if tenant_name:
        return Verdict()
    return Verdict.deny(Reason.NO_TENANT, f"namespace {namespace} belongs to no kubetask Tenant: create Tasks in "
                                          f"your tenant's namespace", "metadata.namespace")


def namespace_claim(
    tenant: Mapping[str, Any],
    others: Iterable[Mapping[str, Any]],
    *,
    prefix: str = "kubetask-",
    release_namespaces: Collection[str] = (),
    allowlist: Collection[str] = (),
    old: Mapping[str, Any] | None = None,
    creating: bool = False,
) -> Verdict:
    """May ``tenant`` have the namespace it names?  The webhook and the operator's reconcile both ask.

    Refused: a system namespace (``kube-*``, ``default``, the release's own) unless ``allowlist``
    names it; a namespace another Tenant of ``others`` claimed first (:func:`claim_order`; with
    ``creating``, the admission review of a new Tenant, every existing Tenant came first, even one
    created within the same second).  On UPDATE (``old``) only a change of the namespace is refused.
    The messages never say which Tenant owns a namespace."""
    meta = tenant.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = tenant_namespace(name, tenant.get("spec"), prefix)
    if old is not None:
        # An existing Tenant's other changes (limits, finalizers, its deletion) stay possible even if it
        # lost its claim: the operator keeps it off the namespace, and it must remain deletable.
        before = tenant_namespace(name, old.get("spec"), prefix)
        if before != namespace:
            return Verdict.deny(Reason.IMMUTABLE_FIELD, f"spec.namespace is immutable (it was '{before}'): create "
                                                        f"a new Tenant for another namespace", "spec.namespace")
        return Verdict()
    if system_namespace(namespace, release_namespaces=release_namespaces, allowlist=allowlist):
        return Verdict.deny(Reason.SYSTEM_NAMESPACE, f"spec.namespace '{namespace}' is a system namespace "
                                                     f"(kube-*, default or kubetask's own) and cannot belong to a "
                                                     f"tenant: choose another namespace", "spec.namespace")
    mine = claim_order(tenant)
    for other in others:
        other_name = str((other.get("metadata") or {}).get("name") or "")
        if other_name == name:
            continue
        if tenant_namespace(other_name, other.get("spec"), prefix) == namespace and (
                creating or claim_order(other) < mine):
            return Verdict.deny(Reason.NAMESPACE_TAKEN, f"spec.namespace '{namespace}' already belongs to another "
                                                        f"tenant: choose another namespace", "spec.namespace")
    return Verdict()


def validate_template(spec: Mapping[str, Any]) -> Verdict:
    """A TaskTemplate's own rules the CRD schema cannot state (see :func:`template_spec_problem`)."""
    problem = template_spec_problem(spec)
    if problem is None:
        return Verdict()
    field_, message = problem
    return Verdict.deny(Reason.INVALID_TEMPLATE, f"{field_}: {message}", field_)


def placement_warnings(spec: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], gpu_resource: str,
                       product_label: str) -> list[str]:
    """Why no node of the cluster could ever run the task as asked (``[]`` if one could, or nothing is known).

    Not a refusal: nodes join and leave, so the task is accepted and waits; the words say for what.  Only
    allocatable capacity counts (not what is free now): more GPUs than any node has, or a GPU type no node
    has.  ``nodes`` are Node objects; ``gpu_resource`` and ``product_label`` say where GPUs show on them."""
    if not nodes:
        return []
    resources = spec.get("resources") or {}
    gpus = int(resources.get("gpus") or 0)
    gpu_type = resources.get("gpuType")
    if gpus <= 0:
        return []
    capacity: dict[str, int] = {}
    for node in nodes:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        try:
            count = int(str(allocatable.get(gpu_resource, "0")))
        except ValueError:
            count = 0
        if count > 0:
            product = str(((node.get("metadata") or {}).get("labels") or {}).get(product_label) or "")
            capacity[product] = max(capacity.get(product, 0), count)
    warnings: list[str] = []
    known_types = sorted(t for t in capacity if t)
    if gpu_type and not any(_same_gpu_type(gpu_type, t) for t in capacity):
        warnings.append(f"no node has GPU type {gpu_type!r} (the cluster has "
                        f"{', '.join(known_types) or 'no typed GPUs'}); the task waits until one joins")
    most = max((n for t, n in capacity.items() if not gpu_type or _same_gpu_type(gpu_type, t)), default=0)
    if (not warnings or not gpu_type) and gpus > most:
        where = f" of type {gpu_type}" if gpu_type else ""
        warnings.append(f"no node has {gpus} GPUs{where} (the most on one node is {most}); the task waits until "
                        f"such a node joins")
    return warnings


def _same_gpu_type(asked: str, product: str) -> bool:
    """The operator places a ``gpuType`` only on nodes whose product label is exactly that type."""
    return product == asked


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
