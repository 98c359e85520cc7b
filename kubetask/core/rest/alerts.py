"""Alerts and resilience summaries (pure): the Distributed Task Queue System API's ``/alerts`` and ``/resilience``.

Alerts are computed from Tasks, Nodes, Pods and Tenants at request time, with deterministic ids
(so an acknowledgement sticks to its alert); acknowledgements and declared degradations are records
in ConfigMaps that the API reads and writes.  Plain functions with an injectable ``now``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetask.core.objects import Obj
from kubetask.core.phases import public_status, task_phase
from kubetask.core.rest.errors import invalid
from kubetask.core.rest.insights import DAY, HOUR, completed_at, created_at, pct, started_at, within
from kubetask.core.rest.present import public_id
from kubetask.core.rest.workers import (
    DEFAULT_GPU_KEYS,
    GpuKeys,
    is_gpu_node,
    is_worker,
    node_name,
    pods_by_node,
    ready_condition,
    running_task_pods,
)
from kubetask.core.tenants import gpu_seconds_in_month, month_key, tenant_limits
from kubetask.core.times import format_time, parse_time, utcnow

Task = Mapping[str, Any]

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
        task_id = public_id(task)
        out.append(_alert("STUCK_TASK", "WARNING", subject,
                          f"Task {task_id} ({name}) has been running for {minutes} minutes "
                          f"(more than {t.stuck_after_seconds // 60})",
                          started + timedelta(seconds=t.stuck_after_seconds),
                          {"task_id": task_id, "object_name": name, "namespace": meta.get("namespace"),
                           "started_at": format_time(started),
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
                and within(completed_at(x), window_start, now)]
    failed = [x for x in finished if task_phase(x) == "Failed"]
    if len(finished) >= t.failure_min_finished:
        rate = pct(len(failed), len(finished))
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
            used = gpu_seconds_in_month(tenant.get("status") or {}, month_key(now)) / HOUR
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
        "resilience_score": pct(healthy, total) if total else 0.0,
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
