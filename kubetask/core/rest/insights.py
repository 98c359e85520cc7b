"""Dashboard, analytics, search presets and CSV export (pure); alerts and resilience are in
:mod:`kubetask.core.rest.alerts`.

Every function here is a plain function over Task / Node / Pod / Tenant dicts
with an injectable ``now``: no FastAPI, no Kubernetes client.  The REST routes
(``/dashboard``, ``/analytics``, ``/alerts``, ``/search``, ``/resilience``) feed
them from the watch caches and a couple of ConfigMaps.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetask.core.models import DEFAULT_PRIORITY
from kubetask.core.objects import Obj
from kubetask.core.phases import PUBLIC_STATUSES, TERMINAL_PHASES, public_status, task_phase
from kubetask.core.rest.errors import invalid
from kubetask.core.rest.present import execution_status
from kubetask.core.rest.workers import (
    ACTIVE,
    DEFAULT_GPU_KEYS,
    OFFLINE,
    WORKER_STATUSES,
    GpuKeys,
    is_worker,
    node_name,
    pods_by_node,
    worker_public,
)
from kubetask.core.times import format_time, parse_time, utcnow

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


def within(when: datetime | None, since: datetime, until: datetime) -> bool:
    return when is not None and since <= when <= until


def _round(value: float, digits: int = 1) -> float:
    return round(float(value), digits)


def pct(part: float, whole: float, digits: int = 1) -> float:
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
            if within(when, since, until):
                assert when is not None
                out.append(Failure(str(meta.get("name")), str(meta.get("namespace")),
                                   failure_category(execution.get("reason"), execution.get("exitCode")),
                                   when, execution.get("nodeName")))
        if not found and task_phase(task) == "Failed":
            when = completed_at(task)
            if within(when, since, until):
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
    return [{"error": error, "count": count, "percentage": pct(count, total)}
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
    """The Distributed Task Queue System API's ``GET /analytics/trends`` over the last ``hours``.

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
        if within(created, since, now):
            assert created is not None
            slot = bucket_of(created)
            if slot is not None:
                slot["submitted"] += 1
        if within(started, since, now):
            assert started is not None
            slot = bucket_of(started)
            if slot is not None:
                slot["started"] += 1
            if created is not None:
                waits.append(max(0.0, (started - created).total_seconds()))
        if within(done, since, now):
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
        "completion_rate": pct(succeeded, finished),
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
    """The Distributed Task Queue System API's ``GET /dashboard/stats``; CPU, memory and GPU figures are kubetask
    pods' requests over
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
        "cpu_usage_percent": pct(cpu_used, cpu_alloc),
        "memory_usage_percent": pct(mem_used, mem_alloc),
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
        "gpu_utilization_percent": pct(gpus_allocated, gpus_total),
        "running_task_pods": sum(w["current_load"] for w in workers),
        "timestamp": format_time(now),
    }


def worker_grid(nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], tasks: Iterable[Task],
                *, gpu: GpuKeys = DEFAULT_GPU_KEYS, now: datetime | None = None,
                window_seconds: int = HOUR) -> Obj:
    """The Distributed Task Queue System API's ``GET /dashboard/workers``: per worker node its uptime (since the Node
    was created),
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
            if not node or not within(when, since, now):
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
            "error_rate": pct(failed[name], finished[name]),
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
    """The Distributed Task Queue System API's ``task_name`` filter: the task's name (display name or id), its
    template or task type,
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


