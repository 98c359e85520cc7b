"""Dashboard, analytics, alerts, search presets, CSV export and resilience summaries (pure).

Every function here is a plain function over Task / Node / Pod / Tenant dicts
with an injectable ``now``: no FastAPI, no Kubernetes client.  The REST routes
(``/dashboard``, ``/analytics``, ``/alerts``, ``/search``, ``/resilience``) feed
them from the watch caches and a couple of ConfigMaps.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetask.core.models import DEFAULT_PRIORITY
from kubetask.core.rest import (
    PUBLIC_STATUSES,
    TERMINAL_PHASES,
    execution_status,
    format_time,
    invalid,
    parse_time,
    public_status,
    task_phase,
    tenant_gpu_seconds_this_month,
    tenant_limits,
    utcnow,
)
from kubetask.core.workers import (
    ACTIVE,
    DEFAULT_GPU_KEYS,
    OFFLINE,
    WORKER_STATUSES,
    GpuKeys,
    is_gpu_node,
    is_worker,
    node_name,
    pods_by_node,
    ready_condition,
    running_task_pods,
    worker_public,
)

Obj = dict[str, Any]
Task = Mapping[str, Any]

HOUR = 3600
DAY = 24 * HOUR

# --------------------------------------------------------------------------- task timing


def created_at(task: Task) -> datetime | None:
    status = task.get("status") or {}
    return parse_time(status.get("createdAt") or (task.get("metadata") or {}).get("creationTimestamp"))


def started_at(task: Task) -> datetime | None:
    """When the task first started (its first execution), else ``status.startedAt``."""
    status = task.get("status") or {}
    for execution in status.get("executions") or []:
        when = parse_time(execution.get("startedAt"))
        if when is not None:
            return when
    return parse_time(status.get("startedAt"))


def completed_at(task: Task) -> datetime | None:
    if task_phase(task) not in TERMINAL_PHASES:
        return None
    return parse_time((task.get("status") or {}).get("completedAt"))


def _within(when: datetime | None, since: datetime, until: datetime) -> bool:
    return when is not None and since <= when <= until


def _round(value: float, digits: int = 1) -> float:
    return round(float(value), digits)


def _pct(part: float, whole: float, digits: int = 1) -> float:
    return _round(100.0 * part / whole, digits) if whole else 0.0


# --------------------------------------------------------------------------- failures

_TIMEOUT_REASONS = {"DeadlineExceeded", "Timeout", "TimedOut", "ActiveDeadlineExceeded", "TimeoutExceeded"}
_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_GENERIC_REASONS = {"", "Error", "Failed", "BackoffLimitExceeded", "ContainerCannotRun", "Unknown"}


def failure_category(reason: str | None, exit_code: int | None = None) -> str:
    """A failure reason as one of: Timeout, OOMKilled, ImagePullError, Evicted, DependencyFailed,
    Error, or the Kubernetes reason itself when it is specific (e.g. CreateContainerConfigError)."""
    text = (reason or "").strip()
    if text in _TIMEOUT_REASONS:
        return "Timeout"
    if text == "OOMKilled":
        return "OOMKilled"
    if text in _PULL_REASONS:
        return "ImagePullError"
    if text == "Evicted":
        return "Evicted"
    if text in ("DependencyFailed", "Dependencies", "DependencyCancelled"):
        return "DependencyFailed"
    if text in _GENERIC_REASONS:
        return "Error"
    return text


@dataclass(frozen=True)
class Failure:
    task: str
    namespace: str
    category: str
    at: datetime
    node: str | None


def failures(tasks: Iterable[Task], since: datetime, until: datetime) -> list[Failure]:
    """Failed executions that finished in ``[since, until]``; a Failed task that never ran (e.g. a
    failed dependency) counts once, at its completion, with its Finished condition's reason."""
    out: list[Failure] = []
    for task in tasks:
        meta = task.get("metadata") or {}
        status = task.get("status") or {}
        executions = status.get("executions") or []
        found = False
        for i, execution in enumerate(executions):
            if execution_status(execution, task, i == len(executions) - 1) != "failed":
                continue
            found = True
            when = parse_time(execution.get("finishedAt"))
            if _within(when, since, until):
                assert when is not None
                out.append(Failure(str(meta.get("name")), str(meta.get("namespace")),
                                   failure_category(execution.get("reason"), execution.get("exitCode")),
                                   when, execution.get("nodeName")))
        if not found and task_phase(task) == "Failed":
            when = completed_at(task)
            if _within(when, since, until):
                assert when is not None
                reason = status.get("reason")
                for cond in status.get("conditions") or []:
                    if cond.get("type") == "Finished" and cond.get("reason"):
                        reason = cond["reason"]
                out.append(Failure(str(meta.get("name")), str(meta.get("namespace")),
                                   failure_category(reason), when, status.get("nodeName")))
    return out


def failure_patterns(found: Sequence[Failure]) -> list[Obj]:
    """``[{error, count, percentage}]``, most frequent first (percentages of all failures)."""
    counts = Counter(f.category for f in found)
    total = sum(counts.values())
    return [{"error": error, "count": count, "percentage": _pct(count, total)}
            for error, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


# --------------------------------------------------------------------------- trends

INTERVALS = ("hourly", "daily")
MAX_TREND_HOURS = 24 * 90


def parse_interval(value: str | None) -> str:
    text = (value or "hourly").strip().lower()
    aliases = {"hour": "hourly", "h": "hourly", "1h": "hourly", "day": "daily", "d": "daily", "1d": "daily"}
    text = aliases.get(text, text)
    if text not in INTERVALS:
        raise invalid("interval", f"must be 'hourly' or 'daily' (got {value!r})")
    return text


def _floor(when: datetime, interval: str) -> datetime:
    when = when.astimezone(UTC)
    if interval == "daily":
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    return when.replace(minute=0, second=0, microsecond=0)


def _label(start: datetime, interval: str) -> str:
    return start.strftime("%Y-%m-%d") if interval == "daily" else start.strftime("%H:%M")


def trends(tasks: Sequence[Task], *, hours: int = 24, interval: str = "hourly",
           now: datetime | None = None) -> Obj:
    """Seed 003's ``GET /analytics/trends`` over the last ``hours``.

    * ``completion_rate``: succeeded / (succeeded + failed) among tasks that finished in the window, in %;
    * ``average_wait_time_seconds``: mean time from submission to first start, over tasks that started;
    * ``peak_loads``: the (up to three) busiest buckets by submissions, busiest first;
    * ``failure_patterns``: failed executions by reason (Timeout, OOMKilled, Error …);
    * ``series``: one entry per bucket (``hourly`` or ``daily``).
    """
    if not 1 <= hours <= MAX_TREND_HOURS:
        raise invalid("hours", f"must be between 1 and {MAX_TREND_HOURS}")
    interval = parse_interval(interval)
    now = now or utcnow()
    since = now - timedelta(hours=hours)
    step = timedelta(seconds=DAY if interval == "daily" else HOUR)
    buckets: list[Obj] = []
    cursor = _floor(since, interval)
    while cursor <= now:
        buckets.append({"bucket": _label(cursor, interval), "start": format_time(cursor),
                        "end": format_time(cursor + step), "submitted": 0, "started": 0, "completed": 0,
                        "failed": 0, "cancelled": 0, "_start": cursor})
        cursor += step

    def bucket_of(when: datetime) -> Obj | None:
        index = int((_floor(when, interval) - buckets[0]["_start"]) / step)
        return buckets[index] if 0 <= index < len(buckets) else None

    waits: list[float] = []
    runs: list[float] = []
    succeeded = failed = cancelled = 0
    for task in tasks:
        created, started, done = created_at(task), started_at(task), completed_at(task)
        if _within(created, since, now):
            assert created is not None
            slot = bucket_of(created)
            if slot is not None:
                slot["submitted"] += 1
        if _within(started, since, now):
            assert started is not None
            slot = bucket_of(started)
            if slot is not None:
                slot["started"] += 1
            if created is not None:
                waits.append(max(0.0, (started - created).total_seconds()))
        if _within(done, since, now):
            assert done is not None
            phase = task_phase(task)
            slot = bucket_of(done)
            key = {"Succeeded": "completed", "Failed": "failed", "Cancelled": "cancelled"}[phase]
            if slot is not None:
                slot[key] += 1
            if phase == "Succeeded":
                succeeded += 1
            elif phase == "Failed":
                failed += 1
            else:
                cancelled += 1
            if started is not None and phase != "Cancelled":
                runs.append(max(0.0, (done - started).total_seconds()))
    busiest = sorted((b for b in buckets if b["submitted"] > 0), key=lambda b: (-b["submitted"], b["_start"]))[:3]
    found = failures(tasks, since, now)
    for b in buckets:
        del b["_start"]
    finished = succeeded + failed
    return {
        "completion_rate": _pct(succeeded, finished),
        "average_wait_time_seconds": _round(sum(waits) / len(waits), 3) if waits else 0.0,
        "average_run_time_seconds": _round(sum(runs) / len(runs), 3) if runs else 0.0,
        "peak_loads": [b["bucket"] for b in busiest],
        "failure_patterns": failure_patterns(found),
        "period_hours": hours,
        "interval": interval,
        "window_start": format_time(since),
        "window_end": format_time(now),
        "totals": {"submitted": sum(b["submitted"] for b in buckets), "started": len(waits),
                   "completed": succeeded, "failed": failed, "cancelled": cancelled, "finished": finished},
        "series": buckets,
    }


# --------------------------------------------------------------------------- dashboard


def status_counts(tasks: Iterable[Task]) -> dict[str, int]:
    counts = dict.fromkeys(PUBLIC_STATUSES, 0)
    for task in tasks:
        status = public_status(task)
        counts[status] = counts.get(status, 0) + 1
    return counts


def dashboard_stats(tasks: Sequence[Task], nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]],
                    *, gpu: GpuKeys = DEFAULT_GPU_KEYS, now: datetime | None = None) -> Obj:
    """Seed 003's ``GET /dashboard/stats``; CPU, memory and GPU figures are kubetask pods' requests over
    the allocatable of the Ready worker nodes."""
    now = now or utcnow()
    counts = status_counts(tasks)
    by_node = pods_by_node(pods)
    workers = [worker_public(n, by_node.get(node_name(n), []), gpu=gpu, now=now)
               for n in nodes if is_worker(n, gpu)]
    ready = [w for w in workers if w["status"] != OFFLINE]
    by_status = dict.fromkeys(WORKER_STATUSES, 0)
    for w in workers:
        by_status[w["status"]] += 1
    cpu_alloc = sum(w["cpu_allocatable_millicores"] for w in ready)
    cpu_used = sum(w["cpu_requested_millicores"] for w in ready)
    mem_alloc = sum(w["memory_allocatable_bytes"] for w in ready)
    mem_used = sum(w["memory_requested_bytes"] for w in ready)
    gpus_total = sum(w["gpus"] for w in ready)
    gpus_allocated = sum(w["gpus_allocated"] for w in ready)
    return {
        "queue_depth": counts["pending"] + counts["queued"],
        "active_workers": by_status[ACTIVE],
        "total_workers": len(workers),
        "cpu_usage_percent": _pct(cpu_used, cpu_alloc),
        "memory_usage_percent": _pct(mem_used, mem_alloc),
        "total_tasks_submitted": len(tasks),
        "tasks_completed": counts["completed"],
        "tasks_failed": counts["failed"],
        "tasks_cancelled": counts["cancelled"],
        "tasks_running": counts["running"],
        "tasks_pending": counts["pending"],
        "tasks_queued": counts["queued"],
        "status_counts": counts,
        "workers_by_status": by_status,
        "gpus_total": gpus_total,
        "gpus_allocated": gpus_allocated,
        "gpu_utilization_percent": _pct(gpus_allocated, gpus_total),
        "running_task_pods": sum(w["current_load"] for w in workers),
        "timestamp": format_time(now),
    }


def worker_grid(nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], tasks: Iterable[Task],
                *, gpu: GpuKeys = DEFAULT_GPU_KEYS, now: datetime | None = None,
                window_seconds: int = HOUR) -> Obj:
    """Seed 003's ``GET /dashboard/workers``: per worker node its uptime (since the Node was created),
    ``task_rate`` (executions finished there per hour over the window), ``error_rate`` (% of those
    that failed) and ``capacity_utilization`` (running kubetask pods / capacity, 0..1)."""
    now = now or utcnow()
    since = now - timedelta(seconds=window_seconds)
    finished: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for task in tasks:
        executions = (task.get("status") or {}).get("executions") or []
        for i, execution in enumerate(executions):
            node = execution.get("nodeName")
            when = parse_time(execution.get("finishedAt"))
            if not node or not _within(when, since, now):
                continue
            finished[node] += 1
            if execution_status(execution, task, i == len(executions) - 1) == "failed":
                failed[node] += 1
    by_node = pods_by_node(pods)
    rows = []
    for node in sorted((n for n in nodes if is_worker(n, gpu)), key=node_name):
        name = node_name(node)
        w = worker_public(node, by_node.get(name, []), gpu=gpu, now=now)
        rows.append({
            "worker_id": name,
            "hostname": w["hostname"],
            "status": w["status"],
            "uptime_seconds": w["uptime_seconds"] or 0,
            "task_rate": _round(finished[name] * HOUR / window_seconds, 2),
            "error_rate": _pct(failed[name], finished[name]),
            "capacity_utilization": w["capacity_utilization"],
            "capacity": w["capacity"],
            "current_load": w["current_load"],
            "tasks_finished": finished[name],
            "tasks_failed": failed[name],
            "gpus": w["gpus"],
            "gpus_allocated": w["gpus_allocated"],
            "gpu_type": w["gpu_type"],
            "last_heartbeat": w["last_heartbeat"],
        })
    return {"workers": rows, "window_seconds": window_seconds, "timestamp": format_time(now)}


# --------------------------------------------------------------------------- alerts

SEVERITIES = ("INFO", "WARNING", "CRITICAL")
_SEVERITY_RANK = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}


@dataclass(frozen=True)
class Thresholds:
    """When alerts fire."""

    queue_depth_warning: int = 100
    queue_depth_critical: int = 1000
    stuck_after_seconds: int = HOUR
    failure_window_seconds: int = HOUR
    failure_min_finished: int = 5
    failure_rate_warning: float = 20.0
    failure_rate_critical: float = 50.0
    quota_warning_fraction: float = 0.9


DEFAULT_THRESHOLDS = Thresholds()


def alert_id(alert_type: str, subject: str) -> str:
    """Deterministic: the same condition on the same subject keeps its id across requests and restarts."""
    return "alert-" + hashlib.sha256(f"{alert_type}\x00{subject}".encode()).hexdigest()[:20]


def _alert(alert_type: str, severity: str, subject: str, description: str, when: datetime | None,
           details: Mapping[str, Any]) -> Obj:
    return {"alert_id": alert_id(alert_type, subject), "type": alert_type, "severity": severity,
            "description": description, "created_at": format_time(when), "acknowledged": False,
            "acknowledged_at": None, "acknowledged_by": None, "subject": subject, "details": dict(details)}


def compute_alerts(
    tasks: Sequence[Task],
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    tenants: Sequence[Mapping[str, Any]],
    *,
    acks: Mapping[str, Mapping[str, Any]] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    gpu: GpuKeys = DEFAULT_GPU_KEYS,
    now: datetime | None = None,
) -> list[Obj]:
    """The alerts that hold now, most severe first.

    HIGH_QUEUE_DEPTH, STUCK_TASK (running longer than ``stuck_after_seconds``), WORKER_OFFLINE (a worker
    node not Ready; CRITICAL while it still has kubetask pods), HIGH_FAILURE_RATE (over the last hour,
    with a minimum sample), QUOTA_EXHAUSTED / QUOTA_NEARLY_EXHAUSTED (monthly GPU-hours) and
    PENDING_LIMIT_REACHED.  ``acks`` maps alert ids to their acknowledgement."""
    now = now or utcnow()
    t = thresholds
    out: list[Obj] = []

    waiting = [x for x in tasks if public_status(x) in ("pending", "queued")]
    if len(waiting) > t.queue_depth_warning:
        severity = "CRITICAL" if len(waiting) > t.queue_depth_critical else "WARNING"
        limit = t.queue_depth_critical if severity == "CRITICAL" else t.queue_depth_warning
        oldest = min((c for c in map(created_at, waiting) if c is not None), default=now)
        out.append(_alert("HIGH_QUEUE_DEPTH", severity, "queue",
                          f"Queue depth {len(waiting)} exceeded {limit}", oldest,
                          {"queue_depth": len(waiting), "threshold": limit}))

    for task in tasks:
        if task_phase(task) != "Running" or public_status(task) != "running":
            continue
        started = started_at(task)
        if started is None or (now - started).total_seconds() <= t.stuck_after_seconds:
            continue
        meta = task.get("metadata") or {}
        executions = (task.get("status") or {}).get("executions") or []
        current = executions[-1] if executions else {}
        name = str(meta.get("name"))
        subject = f"{meta.get('namespace')}/{name}#{current.get('id', 0)}"
        minutes = int((now - started).total_seconds() // 60)
        out.append(_alert("STUCK_TASK", "WARNING", subject,
                          f"Task {name} has been running for {minutes} minutes "
                          f"(more than {t.stuck_after_seconds // 60})",
                          started + timedelta(seconds=t.stuck_after_seconds),
                          {"task_id": name, "namespace": meta.get("namespace"), "started_at": format_time(started),
                           "worker_id": current.get("nodeName") or (task.get("status") or {}).get("nodeName")}))

    by_node = pods_by_node(pods)
    for node in nodes:
        if not is_worker(node, gpu):
            continue
        cond = ready_condition(node)
        if cond is not None and cond.get("status") == "True":
            continue
        name = node_name(node)
        load = len(running_task_pods(by_node.get(name, [])))
        since = parse_time((cond or {}).get("lastTransitionTime")) or parse_time(
            (node.get("metadata") or {}).get("creationTimestamp"))
        reason = (cond or {}).get("reason") or "no Ready condition"
        out.append(_alert("WORKER_OFFLINE", "CRITICAL" if load else "WARNING",
                          f"{name}@{format_time(since)}",
                          f"Worker {name} is offline ({reason})" + (f"; {load} task pods on it" if load else ""),
                          since, {"worker_id": name, "reason": reason, "current_load": load,
                                  "gpus": is_gpu_node(node, gpu)}))

    window_start = now - timedelta(seconds=t.failure_window_seconds)
    finished = [x for x in tasks if task_phase(x) in ("Succeeded", "Failed")
                and _within(completed_at(x), window_start, now)]
    failed = [x for x in finished if task_phase(x) == "Failed"]
    if len(finished) >= t.failure_min_finished:
        rate = _pct(len(failed), len(finished))
        if rate >= t.failure_rate_warning:
            severity = "CRITICAL" if rate >= t.failure_rate_critical else "WARNING"
            first = min((c for c in map(completed_at, failed) if c is not None), default=now)
            out.append(_alert("HIGH_FAILURE_RATE", severity, "failure-rate",
                              f"{rate}% of the tasks that finished in the last "
                              f"{t.failure_window_seconds // 60} minutes failed ({len(failed)} of {len(finished)})",
                              first, {"failure_rate": rate, "failed": len(failed), "finished": len(finished),
                                      "threshold": t.failure_rate_warning}))

    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for tenant in tenants:
        name = str((tenant.get("metadata") or {}).get("name"))
        limits = tenant_limits(tenant)
        monthly = limits.get("monthlyGpuHours")
        if monthly is not None and float(monthly) >= 0:
            used = tenant_gpu_seconds_this_month(tenant, now) / HOUR
            month = month_start.strftime("%Y-%m")
            if used >= float(monthly):
                out.append(_alert("QUOTA_EXHAUSTED", "CRITICAL", f"{name}/gpu-hours/{month}",
                                  f"Tenant {name} has used {used:.2f} of {float(monthly):g} monthly GPU-hours; "
                                  f"new tasks are refused until next month", month_start,
                                  {"tenant": name, "used_gpu_hours": round(used, 4), "limit": monthly}))
            elif float(monthly) > 0 and used >= t.quota_warning_fraction * float(monthly):
                out.append(_alert("QUOTA_NEARLY_EXHAUSTED", "WARNING", f"{name}/gpu-hours-90/{month}",
                                  f"Tenant {name} has used {used:.2f} of {float(monthly):g} monthly GPU-hours",
                                  month_start, {"tenant": name, "used_gpu_hours": round(used, 4),
                                                "limit": monthly}))
        max_pending = limits.get("maxPending")
        mine = [x for x in waiting if (x.get("spec") or {}).get("user") == name]
        if max_pending is not None and mine and len(mine) >= int(max_pending):
            newest = max((c for c in map(created_at, mine) if c is not None), default=now)
            out.append(_alert("PENDING_LIMIT_REACHED", "WARNING", f"{name}/pending",
                              f"Tenant {name} has {len(mine)} of {int(max_pending)} pending tasks; "
                              f"new submissions are refused", newest,
                              {"tenant": name, "pending": len(mine), "limit": int(max_pending)}))

    for alert in out:
        ack = (acks or {}).get(alert["alert_id"])
        if ack is not None:
            alert["acknowledged"] = True
            alert["acknowledged_at"] = ack.get("acknowledged_at")
            alert["acknowledged_by"] = ack.get("acknowledged_by")
    out.sort(key=lambda a: (_SEVERITY_RANK.get(a["severity"], 9), a["created_at"] or "", a["alert_id"]))
    return out


def ack_record(alert: Mapping[str, Any], by: str, now: datetime | None = None) -> str:
    """The ConfigMap value that records an acknowledgement (JSON)."""
    return json.dumps({"acknowledged_at": format_time(now or utcnow()), "acknowledged_by": by,
                       "type": alert.get("type"), "subject": alert.get("subject")}, sort_keys=True)


def parse_records(data: Mapping[str, Any] | None) -> dict[str, Obj]:
    """ConfigMap ``data`` whose values are JSON objects -> ``{key: object}`` (unreadable entries skipped)."""
    out: dict[str, Obj] = {}
    for key, raw in (data or {}).items():
        try:
            value = json.loads(str(raw))
        except ValueError:
            continue
        if isinstance(value, dict):
            out[str(key)] = value
    return out


# --------------------------------------------------------------------------- search presets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    matches: Callable[[Task, datetime], bool]
    sort_by: str = "created_at"
    filters: Mapping[str, Any] = field(default_factory=dict)


def _failed_today(task: Task, now: datetime) -> bool:
    when = completed_at(task) or created_at(task)
    return task_phase(task) == "Failed" and when is not None and now - when <= timedelta(hours=24)


def _high_priority_pending(task: Task, now: datetime) -> bool:
    priority = int((task.get("spec") or {}).get("priority", DEFAULT_PRIORITY))
    return priority >= 8 and public_status(task) in ("pending", "queued")


def _stuck(task: Task, now: datetime) -> bool:
    started = started_at(task)
    return public_status(task) == "running" and started is not None and now - started > timedelta(hours=1)


def _recently_completed(task: Task, now: datetime) -> bool:
    done = completed_at(task)
    return task_phase(task) == "Succeeded" and done is not None and now - done <= timedelta(hours=1)


def _long_waiting(task: Task, now: datetime) -> bool:
    created = created_at(task)
    return public_status(task) in ("pending", "queued") and created is not None and now - created > timedelta(hours=1)


def _running_now(task: Task, now: datetime) -> bool:
    return public_status(task) == "running"


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("failed_today", "Tasks failed in last 24 hours", _failed_today, "completed_at",
           {"status": "failed", "completed_within_hours": 24}),
    Preset("high_priority_pending", "Priority 8+ PENDING tasks", _high_priority_pending, "priority",
           {"status": ["pending", "queued"], "min_priority": 8}),
    Preset("stuck_tasks", "RUNNING for more than 1 hour", _stuck, "started_at",
           {"status": "running", "running_longer_than_seconds": HOUR}),
    Preset("recently_completed", "Tasks completed in the last hour", _recently_completed, "completed_at",
           {"status": "completed", "completed_within_hours": 1}),
    Preset("long_waiting", "PENDING or QUEUED for more than 1 hour", _long_waiting, "created_at",
           {"status": ["pending", "queued"], "waiting_longer_than_seconds": HOUR}),
    Preset("running_now", "Tasks running right now", _running_now, "started_at", {"status": "running"}),
)}


def presets_public() -> Obj:
    return {"presets": [{"name": p.name, "description": p.description, "filters": dict(p.filters)}
                        for p in PRESETS.values()]}


def apply_preset(preset: Preset, tasks: Iterable[Task], now: datetime | None = None) -> list[Task]:
    now = now or utcnow()
    return [t for t in tasks if preset.matches(t, now)]


# --------------------------------------------------------------------------- search predicates


def task_name_matches(task: Task, pattern: str) -> bool:
    """Seed 003's ``task_name`` filter: the task's name (display name or id), its template or task type,
    case-insensitive; ``*`` and ``?`` are wildcards."""
    meta = task.get("metadata") or {}
    spec = task.get("spec") or {}
    ann = meta.get("annotations") or {}
    candidates = [spec.get("displayName"), meta.get("name"), (spec.get("template") or {}).get("name"),
                  ann.get("kubetask.io/task-type")]
    wanted = pattern.strip().casefold()
    wildcard = any(c in wanted for c in "*?[")
    for candidate in candidates:
        if not candidate:
            continue
        text = str(candidate).casefold()
        if (wildcard and fnmatch.fnmatchcase(text, wanted)) or text == wanted:
            return True
    return False


def ran_on(task: Task, worker_id: str) -> bool:
    """Whether the task runs or ran (any execution) on the node ``worker_id``."""
    status = task.get("status") or {}
    if status.get("nodeName") == worker_id:
        return True
    return any(e.get("nodeName") == worker_id for e in status.get("executions") or [])


# --------------------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "task_id", "task_name", "status", "priority", "queue_name", "user_id", "worker_id", "template",
    "task_type", "created_at", "started_at", "completed_at", "duration_seconds", "retry_count", "max_retries",
    "tags", "error",
)
_FORMULA = re.compile(r"^[=+\-@\t\r]")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = ";".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    # Spreadsheet formula injection: a leading = + - @ would be evaluated on open.
    return "'" + text if _FORMULA.match(text) else text


def tasks_csv(public_tasks: Iterable[Mapping[str, Any]]) -> str:
    """Public task dicts -> CSV text with a header row (``CSV_COLUMNS``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for task in public_tasks:
        writer.writerow([_cell(task.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


# --------------------------------------------------------------------------- resilience

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9]([-._A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
MAX_DEGRADATION_SECONDS = 7 * DAY


def validate_service_name(value: str) -> str:
    if not _SERVICE_NAME.match(value or ""):
        raise invalid("service_name", "must be 1-63 letters, digits, '-', '_' or '.', starting and ending "
                                      "with a letter or digit")
    return value


def degradation_record(strategy: str, duration_seconds: int, *, by: str, now: datetime | None = None) -> str:
    now = now or utcnow()
    return json.dumps({"strategy": strategy, "duration_seconds": duration_seconds, "marked_by": by,
                       "marked_at": format_time(now),
                       "expires_at": format_time(now + timedelta(seconds=duration_seconds))}, sort_keys=True)


def active_degradations(data: Mapping[str, Any] | None, now: datetime | None = None) -> list[Obj]:
    """Unexpired degradations from the ConfigMap's ``data``, by service name."""
    now = now or utcnow()
    out = []
    for service, record in sorted(parse_records(data).items()):
        expires = parse_time(record.get("expires_at"))
        if expires is None or expires <= now:
            continue
        out.append({"service_name": service, "strategy": record.get("strategy"),
                    "marked_at": record.get("marked_at"), "marked_by": record.get("marked_by"),
                    "expires_at": format_time(expires),
                    "remaining_seconds": int((expires - now).total_seconds())})
    return out


def prune_expired(data: Mapping[str, Any] | None, now: datetime | None = None) -> dict[str, str]:
    """The ConfigMap ``data`` without expired (or unreadable) entries."""
    keep = {d["service_name"] for d in active_degradations(data, now)}
    return {str(k): str(v) for k, v in (data or {}).items() if k in keep}


@dataclass(frozen=True)
class Check:
    """One component check of the resilience summary."""

    healthy: bool
    detail: str


def resilience_summary(components: Mapping[str, Check], degradations: Sequence[Mapping[str, Any]],
                       now: datetime | None = None) -> Obj:
    """``{system_health, degradation, resilience_score}``; the score is the % of healthy components."""
    healthy = sum(1 for c in components.values() if c.healthy)
    total = len(components)
    return {
        "system_health": {
            "components_total": total,
            "healthy": healthy,
            "unhealthy": total - healthy,
            "components": {name: {"healthy": c.healthy, "status": "healthy" if c.healthy else "unhealthy",
                                  "detail": c.detail} for name, c in components.items()},
        },
        "degradation": {
            "degraded_services_count": len(degradations),
            "services": [d["service_name"] for d in degradations],
            "details": list(degradations),
        },
        "resilience_score": _pct(healthy, total) if total else 0.0,
        "timestamp": format_time(now or utcnow()),
    }


def lease_check(lease: Mapping[str, Any], now: datetime | None = None, grace_seconds: float = 5.0) -> Check:
    """A leader-election Lease is fresh when renewed within its duration (plus a little grace)."""
    now = now or utcnow()
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if not holder:
        return Check(False, "no holder (the operator released its lease or is not running)")
    if renewed is None:
        return Check(False, f"held by {holder} but never renewed")
    age = (now - renewed).total_seconds()
    if age > duration + grace_seconds:
        return Check(False, f"held by {holder}, last renewed {int(age)} s ago (lease {int(duration)} s)")
    return Check(True, f"held by {holder}, renewed {max(0, int(age))} s ago")


def _gpu_count(node: Mapping[str, Any], gpu: GpuKeys) -> int:
    raw = str(((node.get("status") or {}).get("allocatable") or {}).get(gpu.resource_name, "0"))
    return int(raw) if raw.isdigit() else 0


def gpu_nodes_check(nodes: Sequence[Mapping[str, Any]], gpu: GpuKeys = DEFAULT_GPU_KEYS) -> Check:
    gpu_nodes = [n for n in nodes if is_gpu_node(n, gpu) and is_worker(n, gpu)]
    ready = [n for n in gpu_nodes if (ready_condition(n) or {}).get("status") == "True"]
    gpus = sum(_gpu_count(n, gpu) for n in ready)
    if not ready:
        return Check(False, f"no Ready GPU node ({len(gpu_nodes)} GPU nodes known)")
    return Check(True, f"{len(ready)} of {len(gpu_nodes)} GPU nodes Ready, {gpus} GPUs")


def webhook_check(configurations: Iterable[Mapping[str, Any]], group: str = "kubetask.io") -> Check:
    """Whether a ValidatingWebhookConfiguration covers kubetask's Tasks."""
    for config in configurations:
        for hook in config.get("webhooks") or []:
            for rule in hook.get("rules") or []:
                if group in (rule.get("apiGroups") or []) or "*" in (rule.get("apiGroups") or []):
                    name = (config.get("metadata") or {}).get("name")
                    return Check(True, f"{name} ({hook.get('name')}, failurePolicy "
                                       f"{hook.get('failurePolicy', 'Fail')})")
    return Check(False, f"no ValidatingWebhookConfiguration covers {group}: Tasks are not validated")
