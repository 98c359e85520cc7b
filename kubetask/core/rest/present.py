"""Presentation: Task (and Tenant, TaskTemplate) objects -> the public JSON every seed reads.

* :func:`task_public` -> :class:`~kubetask.core.rest.shapes.TaskPublic`, with every seed's field
  names at once (``id`` and ``task_id``, ``name`` and ``task_name`` …);
* executions, the Distributed Task Queue System API's timeline and task comparison, the AI Task Orchestra API's
  grouping by status and its
  template shape, the OmoiOS task-queue API's ``UserLimits`` and ``QueueStatus``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubetask.core.models import DEFAULT_PRIORITY, DEFAULT_QUEUE
from kubetask.core.objects import (
    ANNOTATION_CANCELLED_AT,
    ANNOTATION_DEPENDS_ON_UIDS,
    ANNOTATION_MODEL_NAME,
    ANNOTATION_QUEUE_NAME,
    ANNOTATION_REPLAY_OF,
    ANNOTATION_REPLAY_OF_UID,
    ANNOTATION_TASK_TYPE,
    LABEL_USER,
    Obj,
    creation_order,
    snake,
    snake_keys,
)
from kubetask.core.phases import (
    RUNNING,
    TERMINAL_PHASES,
    WAITING_PHASES,
    WAITING_STATUSES,
    public_status,
    queue_state,
    status_word,
    task_phase,
)
from kubetask.core.rest.profiles import CANONICAL, Profile
from kubetask.core.rest.shapes import ExecutionPublic, TaskPublic
from kubetask.core.templates import template_aliases, template_task_types
from kubetask.core.tenants import gpu_seconds_in_month, month_key, next_month_start, tenant_limits
from kubetask.core.times import format_time, parse_time, plus_seconds, seconds_between, utcnow

# --------------------------------------------------------------------------- status words


def status_of(obj: Mapping[str, Any], profile: Profile = CANONICAL) -> str:
    """:func:`~kubetask.core.phases.public_status` in ``profile``'s words."""
    return profile.status(public_status(obj))


def public_id(obj: Mapping[str, Any], profile: Profile = CANONICAL) -> str:
    """The Task's REST id: its uid (``task_<uid>`` for the Task Manager API), the name before it has one."""
    meta = obj.get("metadata") or {}
    return profile.task_id(meta.get("uid"), str(meta.get("name")))


def _depends_on(obj: Mapping[str, Any], profile: Profile) -> list[str]:
    """``spec.dependsOn`` as the ids a REST client knows (their uids, recorded at creation), else names."""
    names = [str(n) for n in (obj.get("spec") or {}).get("dependsOn") or []]
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DEPENDS_ON_UIDS)
    uids: Mapping[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError:
            loaded = {}
        uids = loaded if isinstance(loaded, Mapping) else {}
    return [profile.task_id(str(uids[n]), n) if uids.get(n) else n for n in names]


# --------------------------------------------------------------------------- executions


def execution_status(execution: Mapping[str, Any], task: Mapping[str, Any], latest: bool) -> str:
    phase = execution.get("phase")
    if isinstance(phase, str) and phase:
        return status_word(phase) or phase.lower()
    cancelled = latest and task_phase(task) == "Cancelled"
    if execution.get("finishedAt"):
        if execution.get("exitCode") == 0:
            return "completed"
        return "cancelled" if cancelled else "failed"
    if cancelled:
        return "cancelled"
    return "running" if execution.get("startedAt") else "pending"


def execution_public(execution: Mapping[str, Any], task: Mapping[str, Any], *, latest: bool,
                     profile: Profile = CANONICAL) -> Obj:
    """One entry of ``status.executions`` as :class:`~kubetask.core.rest.shapes.ExecutionPublic` JSON."""
    exec_id = str(execution.get("id"))
    return ExecutionPublic(
        id=exec_id,
        execution_id=exec_id,
        task_id=public_id(task, profile),
        status=profile.status(execution_status(execution, task, latest)),
        started_at=format_time(execution.get("startedAt")),
        completed_at=format_time(execution.get("finishedAt")),
        finished_at=format_time(execution.get("finishedAt")),
        duration_seconds=seconds_between(execution.get("startedAt"), execution.get("finishedAt")),
        exit_code=execution.get("exitCode"),
        reason=execution.get("reason"),
        message=execution.get("message"),
        worker_id=execution.get("nodeName"),
        node_name=execution.get("nodeName"),
        job_name=execution.get("jobName"),
        pod_name=execution.get("podName"),
    ).model_dump(mode="json")


# --------------------------------------------------------------------------- tasks


def waiting_reason(obj: Mapping[str, Any]) -> str | None:
    """The plain-words condition message that explains why a task is not running (if any)."""
    status = obj.get("status") or {}
    if public_status(obj) not in WAITING_STATUSES:
        return None
    if task_phase(obj) == RUNNING:
        return "admitted; waiting for its pod to start on a node"
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("message") and cond.get("type") in (
            "Admitted", "Ready", "Scheduled", "Runnable", "Started"
        ):
            return str(cond["message"])
    for cond in status.get("conditions") or []:
        if cond.get("message") and cond.get("type") in ("Waiting", "Pending", "Blocked", "Queued"):
            return str(cond["message"])
    message = status.get("message")
    return str(message) if message else None


def _updated_at(obj: Mapping[str, Any]) -> str | None:
    status = obj.get("status") or {}
    stamps = [status.get(k) for k in ("createdAt", "queuedAt", "startedAt", "completedAt")]
    stamps += [c.get("lastTransitionTime") for c in status.get("conditions") or []]
    valid = [t for t in (parse_time(s) for s in stamps if s) if t is not None]
    return format_time(max(valid)) if valid else None


def task_model(obj: Mapping[str, Any], profile: Profile = CANONICAL, *,
               warnings: list[str] | None = None) -> TaskPublic:
    """A Task object -> its public representation (every compatible API's field names at once), validated."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ann = meta.get("annotations") or {}
    name = str(meta.get("name"))
    task_id = public_id(obj, profile)
    phase = task_phase(obj)
    canonical_state = public_status(obj)
    template = spec.get("template") or {}
    executions = status.get("executions") or []
    latest = executions[-1] if executions else {}
    created = format_time(status.get("createdAt") or meta.get("creationTimestamp"))
    started = format_time(status.get("startedAt") or latest.get("startedAt"))
    completed = format_time(status.get("completedAt")) if phase in TERMINAL_PHASES else None
    resources = spec.get("resources") or {}
    timeout = spec.get("timeoutSeconds")
    node = status.get("nodeName") or latest.get("nodeName")
    duration = seconds_between(started, completed) if started and completed else None
    error = None
    if phase == "Failed":
        error = status.get("message") or latest.get("message") or latest.get("reason")
    cancelled_at = ann.get(ANNOTATION_CANCELLED_AT) if canonical_state == "cancelled" else None
    if canonical_state == "cancelled" and cancelled_at is None:
        cancelled_at = completed
    task_type = ann.get(ANNOTATION_TASK_TYPE)
    model_name = ann.get(ANNOTATION_MODEL_NAME) or (template.get("parameters") or {}).get("model")

    estimated_start = format_time(status.get("estimatedStartTime"))
    estimated_completion = None
    if canonical_state == "running" and started and timeout:
        estimated_completion = plus_seconds(started, timeout)
    elif canonical_state in WAITING_STATUSES and estimated_start and timeout:
        estimated_completion = plus_seconds(estimated_start, timeout)
    elif phase in TERMINAL_PHASES:
        estimated_completion = completed

    gpu_seconds = status.get("gpuSeconds")
    resource_usage: Obj = {
        "gpus": resources.get("gpus", 0),
        "gpu_type": resources.get("gpuType"),
        "cpu": resources.get("cpu"),
        "memory": resources.get("memory"),
        "gpu_seconds": gpu_seconds,
        "gpu_hours": round(gpu_seconds / 3600, 6) if isinstance(gpu_seconds, int | float) else None,
        "duration_seconds": duration,
        "node_name": node,
        "model_name": model_name or None,
        "inference_time_seconds": duration,
    }
    display = spec.get("displayName") or name
    script = spec.get("script") or {}
    replay_uid = ann.get(ANNOTATION_REPLAY_OF_UID)
    return TaskPublic.model_validate({
        "id": task_id,
        "task_id": task_id,
        "object_name": name,
        "name": display,
        "task_name": display,
        "description": spec.get("description"),
        "status": profile.status(canonical_state),
        "queue_state": queue_state(obj),
        "phase": phase,
        "priority": spec.get("priority", DEFAULT_PRIORITY),
        "queue_name": ann.get(ANNOTATION_QUEUE_NAME) or spec.get("queue", DEFAULT_QUEUE),
        "user_id": spec.get("user") or (meta.get("labels") or {}).get(LABEL_USER),
        "namespace": meta.get("namespace"),
        "template": template.get("name"),
        "parameters": template.get("parameters") if template else None,
        "task_type": task_type,
        "model_name": model_name,
        "script_type": script.get("language"),
        "script_content": script.get("content"),
        "image": spec.get("image"),
        "task_args": spec.get("args") or [],
        "task_kwargs": spec.get("kwargs") or {},
        "depends_on": _depends_on(obj, profile),
        "tags": spec.get("tags") or [],
        "metadata": spec.get("metadata") or {},
        "annotations": spec.get("podAnnotations") or {},
        "gpus": resources.get("gpus", 0),
        "resources": snake_keys(resources),
        "timeout_seconds": timeout,
        "max_retries": spec.get("maxRetries", 0),
        "retry_count": status.get("retryCount") if status.get("retryCount") is not None
        else max(0, len(executions) - 1),
        "scheduled_at": format_time(spec.get("scheduledAt")),
        "created_at": created,
        "updated_at": _updated_at(obj) or created,
        "queued_at": format_time(status.get("queuedAt")),
        "started_at": started,
        "completed_at": completed,
        "cancelled_at": cancelled_at,
        "duration_seconds": duration,
        "worker_id": node if canonical_state != "queued" else None,
        "node_name": node,
        "queue_position": status.get("queuePosition") if phase in WAITING_PHASES else None,
        "estimated_start_time": estimated_start,
        "estimated_completion": estimated_completion,
        "waiting_reason": waiting_reason(obj),
        "result": status.get("result"),
        "result_source": status.get("resultSource"),
        "error": error,
        "resource_usage": resource_usage,
        "execution_count": len(executions),
        "replay_of": profile.task_id(replay_uid, str(ann.get(ANNOTATION_REPLAY_OF)))
        if ann.get(ANNOTATION_REPLAY_OF) else None,
        "conditions": [
            {"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "last_transition_time": format_time(c.get("lastTransitionTime"))}
            for c in status.get("conditions") or []
        ],
        "warnings": list(warnings or []),
    })


def task_public(obj: Mapping[str, Any], profile: Profile = CANONICAL, *,
                warnings: list[str] | None = None) -> Obj:
    """:func:`task_model` as JSON data: what every response that shows a task carries."""
    return task_model(obj, profile, warnings=warnings).model_dump(mode="json")


def group_by_status(objs: Iterable[Mapping[str, Any]], profile: Profile = CANONICAL) -> dict[str, list[Obj]]:
    """The AI Task Orchestra API's ``GET /tasks/status``: every status word of the profile present, newest first."""
    groups: dict[str, list[Obj]] = {s: [] for s in profile.statuses}
    for obj in sorted(objs, key=creation_order, reverse=True):
        public = task_public(obj, profile)
        groups.setdefault(public["status"], []).append(public)
    return groups


# --------------------------------------------------------------------------- compare, timeline


def compare_tasks(a: Mapping[str, Any], b: Mapping[str, Any], profile: Profile = CANONICAL) -> Obj:
    """The Distributed Task Queue System API's ``GET /tasks/{id1}/compare/{id2}``."""
    pa, pb = task_model(a, profile), task_model(b, profile)

    def what(p: TaskPublic, o: Mapping[str, Any]) -> Any:
        spec = o.get("spec") or {}
        return (p.template, p.task_type, spec.get("image"), (spec.get("script") or {}).get("content"),
                spec.get("command"))

    def arguments(p: TaskPublic) -> Any:
        return (p.task_args, p.task_kwargs, p.parameters)

    same_function = what(pa, a) == what(pb, b)
    if pa.template is None and pa.task_type is None:
        same_function = same_function and pa.task_name == pb.task_name
    keys = ("task_id", "task_name", "status", "priority", "created_at", "started_at", "completed_at", "worker_id")
    return {
        "task_id1": pa.task_id,
        "task_id2": pb.task_id,
        "same_function": same_function,
        "same_args": arguments(pa) == arguments(pb),
        "same_priority": pa.priority == pb.priority,
        "same_status": pa.status == pb.status,
        "timing": {
            "task1_duration": pa.duration_seconds,
            "task2_duration": pb.duration_seconds,
            "difference_seconds": pb.duration_seconds - pa.duration_seconds
            if pa.duration_seconds is not None and pb.duration_seconds is not None else None,
        },
        "task1": {k: getattr(pa, k) for k in keys},
        "task2": {k: getattr(pb, k) for k in keys},
    }


def timeline(obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (), profile: Profile = CANONICAL) -> Obj:
    """The Distributed Task Queue System API's ``GET /tasks/{id}/timeline``: status milestones plus Kubernetes
    Events, in time order."""
    public = task_model(obj, profile)
    status = obj.get("status") or {}
    entries: list[Obj] = []

    def add(stamp: Any, event_type: str, details: Mapping[str, Any], source: str = "status") -> None:
        when = format_time(stamp)
        if when:
            entries.append({"timestamp": when, "event_type": event_type, "details": dict(details),
                            "source": source})

    add(public.created_at, "created", {"priority": public.priority, "queue_name": public.queue_name})
    add(status.get("queuedAt"), "queued", {"queue_position": status.get("queuePosition")})
    for i, ex in enumerate(status.get("executions") or []):
        add(ex.get("startedAt"), "started" if i == 0 else "retried",
            {"execution_id": str(ex.get("id")), "worker_id": ex.get("nodeName"), "pod_name": ex.get("podName")})
        if ex.get("finishedAt"):
            add(ex.get("finishedAt"), "execution_finished",
                {"execution_id": str(ex.get("id")), "exit_code": ex.get("exitCode"),
                 "reason": ex.get("reason"), "message": ex.get("message")})
    for cond in status.get("conditions") or []:
        add(cond.get("lastTransitionTime"), "condition",
            {"type": cond.get("type"), "status": cond.get("status"), "reason": cond.get("reason"),
             "message": cond.get("message")})
    if public.completed_at:
        add(public.completed_at, public_status(obj), {"result": public.result, "error": public.error})
    for ev in events:
        stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or (
            ev.get("metadata") or {}).get("creationTimestamp")
        add(stamp, snake(str(ev.get("reason") or "event")),
            {"reason": ev.get("reason"), "message": ev.get("message"), "type": ev.get("type"),
             "count": ev.get("count")}, source="event")
    entries.sort(key=lambda e: e["timestamp"])
    return {
        "task_id": public.task_id,
        "id": public.task_id,
        "task_name": public.task_name,
        "status": public.status,
        "created_at": public.created_at,
        "started_at": public.started_at,
        "completed_at": public.completed_at,
        "duration_seconds": public.duration_seconds,
        "events": entries,
    }


# --------------------------------------------------------------------------- templates


def template_public(template: Mapping[str, Any], *, detail: bool = False) -> Obj:
    """A TaskTemplate in the AI Task Orchestra API's shape (``name``, ``description``, ``parameters[]``, ``steps``)."""
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    params = []
    for p in spec.get("parameters") or []:
        entry: Obj = {
            "name": p.get("name"),
            "type": p.get("type", "string"),
            "required": bool(p.get("required", False)),
            "description": p.get("description"),
        }
        if p.get("default") is not None:
            entry["default"] = p["default"]
        if p.get("enum"):
            entry["enum"] = p["enum"]
        params.append(entry)
    out: Obj = {
        "name": meta.get("name"),
        "description": spec.get("description"),
        "parameters": params,
        "task_types": [t.get("name") for t in template_task_types(spec)],
        "aliases": template_aliases(spec),
    }
    defaults = spec.get("defaults") or {}
    if defaults:
        out["defaults"] = snake_keys(defaults)
    if detail:
        out["steps"] = spec.get("steps") or [
            {"type": "container", **{k: v for k, v in (spec.get("podTemplate") or {}).items()
                                     if k in ("image", "command", "args")}}
        ]
        out["created_at"] = format_time(meta.get("creationTimestamp"))
    return out


# --------------------------------------------------------------------------- limits and queue status


def count_running_pending(tasks: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """``(running, waiting)`` by the public status: running means started on a node."""
    running = pending = 0
    for task in tasks:
        status = public_status(task)
        if status == "running":
            running += 1
        elif status in WAITING_STATUSES:
            pending += 1
    return running, pending


def limits_public(tenant: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]], *, now: datetime | None = None) -> Obj:
    """The OmoiOS task-queue API's ``UserLimits`` (plus kubetask's own limit names)."""
    now = now or utcnow()
    name = (tenant.get("metadata") or {}).get("name")
    spec = tenant.get("spec") or {}
    limits = tenant_limits(tenant)
    running, pending = count_running_pending(tasks)
    hours_used = round(gpu_seconds_in_month(tenant.get("status") or {}, month_key(now)) / 3600, 4)
    monthly = limits.get("monthlyGpuHours")
    return {
        "user_id": name,
        "plan": spec.get("plan") or ("admin" if spec.get("role") == "admin" else "custom"),
        "role": spec.get("role", "user"),
        "max_concurrent_agents": limits.get("maxRunning"),
        "max_concurrent": limits.get("maxRunning"),
        "max_task_duration_minutes": int(limits["maxTimeoutSeconds"]) // 60,
        "monthly_agent_hours_limit": monthly,
        "monthly_agent_hours_used": hours_used,
        "monthly_hours_limit": monthly,
        "monthly_hours_used": hours_used,
        "monthly_hours_remaining": max(0.0, round(float(monthly) - hours_used, 4)) if monthly is not None else None,
        "billing_cycle_resets_at": format_time(next_month_start(now)),
        "limits": {
            "max_running": limits.get("maxRunning"),
            "max_pending": limits.get("maxPending"),
            "max_gpus_per_task": limits.get("maxGpusPerTask"),
            "gpu_quota": limits.get("gpuQuota"),
            "cpu_quota": limits.get("cpuQuota"),
            "memory_quota": limits.get("memoryQuota"),
            "monthly_gpu_hours": monthly,
            "max_timeout_seconds": limits.get("maxTimeoutSeconds"),
            "requests_per_minute": limits.get("requestsPerMinute"),
        },
        "usage": {
            "running": running,
            "pending": pending,
            "gpus_in_use": (tenant.get("status") or {}).get("gpusInUse", 0),
            "gpu_hours_this_month": hours_used,
        },
    }


def queue_status_public(tenant: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], *,
                        now: datetime | None = None, profile: Profile = CANONICAL) -> Obj:
    """The OmoiOS task-queue API's ``QueueStatus``: counts, limits, hours, and each waiting task's position and
    start."""
    limits = limits_public(tenant, tasks, now=now)
    running, pending = limits["usage"]["running"], limits["usage"]["pending"]
    max_running = limits["max_concurrent"]
    hours_left = limits["monthly_hours_remaining"]
    max_pending = limits["limits"]["max_pending"]
    waiting = [t for t in tasks if public_status(t) in WAITING_STATUSES]
    waiting.sort(key=lambda t: (
        (t.get("status") or {}).get("queuePosition") or 1 << 30,
        -int((t.get("spec") or {}).get("priority", DEFAULT_PRIORITY)), creation_order(t),
    ))
    entries = []
    for t in waiting:
        p = task_model(t, profile)
        entries.append({
            "task_id": p.task_id, "id": p.task_id, "name": p.name, "status": p.status,
            "priority": p.priority, "queue_name": p.queue_name, "position": p.queue_position,
            "queue_position": p.queue_position, "estimated_start_time": p.estimated_start_time,
            "estimated_start": p.estimated_start_time, "waiting_reason": p.waiting_reason,
            "queue_state": p.queue_state, "created_at": p.created_at,
        })
    running_tasks = [
        {"task_id": p.task_id, "name": p.name, "started_at": p.started_at,
         "worker_id": p.worker_id, "estimated_completion": p.estimated_completion}
        for p in (task_model(t, profile) for t in tasks if public_status(t) == "running")
    ]
    can_start_more = (max_running is None or running < int(max_running)) and (hours_left is None or hours_left > 0)
    return {
        "user_id": limits["user_id"],
        "running": running,
        "pending": pending,
        "max_concurrent": max_running,
        "max_pending": max_pending,
        "can_start_more": can_start_more,
        "can_submit": pending < int(max_pending) and (hours_left is None or hours_left > 0),
        "monthly_hours_used": limits["monthly_hours_used"],
        "monthly_hours_limit": limits["monthly_hours_limit"],
        "monthly_hours_remaining": hours_left,
        "billing_cycle_resets_at": limits["billing_cycle_resets_at"],
        "limits": limits["limits"],
        "pending_tasks": entries,
        "running_tasks": running_tasks,
    }
