"""Response and request models of ``/workers``, ``/search``, ``/dashboard``, ``/analytics``, ``/alerts``
and ``/resilience`` (the Distributed Task Queue System API), with examples.

Bodies are built by :mod:`kubetask.core.rest.workers`, :mod:`kubetask.core.rest.insights` and
:mod:`kubetask.core.rest.alerts`; like
:mod:`kubetask.api.schemas`, these models document the shapes (extra fields are allowed).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubetask.api.schemas import TaskPublic

# --------------------------------------------------------------------------- workers


class WorkerPublic(BaseModel):
    """A worker is a Kubernetes Node; ``worker_id`` is the node name."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "worker_id": "gpu-node-1", "id": "gpu-node-1", "hostname": "gpu-node-1", "status": "ACTIVE",
        "capacity": 5, "capacity_source": "annotation", "current_load": 3, "current_tasks": 3,
        "tasks": ["train-1a2b3c4d", "infer-5e6f7a8b", "report-9c0d1e2f"],
        "last_heartbeat": "2026-01-25T14:15:00Z", "is_draining": False, "is_paused": False,
        "is_cordoned": False, "is_ready": True, "ready_reason": "KubeletReady", "kubetask_worker": True,
        "gpus": 4, "gpus_allocated": 3, "gpu_type": "A100", "cpu_allocatable_millicores": 32000,
        "cpu_requested_millicores": 3000, "memory_allocatable_bytes": 274877906944,
        "memory_requested_bytes": 6442450944, "capacity_utilization": 0.6,
        "labels": {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "A100"},
        "created_at": "2026-01-24T14:15:00Z", "uptime_seconds": 86400,
    }]})

    worker_id: str = Field(description="The node name.")
    id: str
    hostname: str
    status: str = Field(description="ACTIVE | PAUSED | DRAINING | OFFLINE (node not Ready)")
    capacity: int = Field(description="Most kubetask tasks at once (annotation kubetask.io/capacity, "
                                      "else the node's allocatable pods).")
    current_load: int = Field(description="Unfinished kubetask pods on the node.")
    current_tasks: int
    tasks: list[str] = Field(default_factory=list, description="Ids of the caller's tasks running there.")
    last_heartbeat: str | None = Field(description="The Ready condition's lastHeartbeatTime.")
    is_draining: bool
    is_paused: bool = False
    gpus: int = 0
    gpus_allocated: int = 0
    gpu_type: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    capacity_utilization: float = 0.0
    uptime_seconds: int | None = None


class WorkerList(BaseModel):
    model_config = ConfigDict(extra="allow")
    total: int
    workers: list[WorkerPublic]


class WorkerPaused(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"worker_id": "gpu-node-1", "status": "paused", "worker_status": "PAUSED",
         "message": "gpu-node-1 takes no new tasks; running ones continue"},
    ]})
    worker_id: str
    status: str = Field(description="paused | resumed | draining")
    worker_status: str | None = Field(default=None, description="The worker's status afterwards.")
    message: str | None = None


class CapacityUpdate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"capacity": 10}]})
    capacity: int = Field(ge=1, le=1000, description="Most kubetask tasks at once on this node.")


class WorkerCapacity(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"worker_id": "gpu-node-1", "capacity": 10, "previous_capacity": 5},
    ]})
    worker_id: str
    capacity: int


# --------------------------------------------------------------------------- search


class SearchResult(BaseModel):
    """``{total, limit, offset, tasks}`` (+ page fields and ``data``, as ``GET /tasks``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "total": 1, "limit": 50, "offset": 0, "page": 1, "pages": 1, "has_more": False,
        "tasks": [{"task_id": "process-payment-1a2b3c4d", "task_name": "process_payment", "status": "failed"}],
    }]})
    total: int
    limit: int
    offset: int
    tasks: list[TaskPublic]


class PresetInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str
    filters: dict[str, Any] = Field(default_factory=dict)


class PresetList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"presets": [
        {"name": "failed_today", "description": "Tasks failed in last 24 hours"},
        {"name": "high_priority_pending", "description": "Priority 8+ PENDING tasks"},
        {"name": "stuck_tasks", "description": "RUNNING for more than 1 hour"},
    ]}]})
    presets: list[PresetInfo]


class PresetResult(SearchResult):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "preset": "stuck_tasks", "description": "RUNNING for more than 1 hour", "total": 0, "limit": 50,
        "offset": 0, "tasks": [],
    }]})
    preset: str
    description: str


# --------------------------------------------------------------------------- dashboard


class DashboardStats(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "queue_depth": 250, "active_workers": 5, "total_workers": 8, "cpu_usage_percent": 45.2,
        "memory_usage_percent": 62.1, "total_tasks_submitted": 10000, "tasks_completed": 9500,
        "tasks_failed": 450, "tasks_cancelled": 20, "tasks_running": 30, "tasks_pending": 150,
        "tasks_queued": 100, "status_counts": {"pending": 150, "queued": 100, "running": 30,
                                               "completed": 9500, "failed": 450, "cancelled": 20},
        "workers_by_status": {"ACTIVE": 5, "PAUSED": 1, "DRAINING": 1, "OFFLINE": 1},
        "gpus_total": 32, "gpus_allocated": 24, "gpu_utilization_percent": 75.0, "running_task_pods": 30,
        "timestamp": "2026-01-25T14:00:00Z",
    }]})
    queue_depth: int
    active_workers: int
    total_workers: int
    cpu_usage_percent: float
    memory_usage_percent: float
    total_tasks_submitted: int
    tasks_completed: int
    tasks_failed: int
    status_counts: dict[str, int] = Field(default_factory=dict)
    gpus_total: int = 0
    gpus_allocated: int = 0
    gpu_utilization_percent: float = 0.0


class WorkerGridEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    worker_id: str
    hostname: str
    status: str
    uptime_seconds: int
    task_rate: float = Field(description="Executions finished on it per hour, over the last hour.")
    error_rate: float = Field(description="% of those that failed.")
    capacity_utilization: float = Field(description="Running kubetask pods / capacity, 0..1.")


class WorkerGrid(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"workers": [{
        "worker_id": "worker-1", "hostname": "compute-1", "status": "ACTIVE", "uptime_seconds": 86400,
        "task_rate": 45.2, "error_rate": 2.1, "capacity_utilization": 0.6,
    }]}]})
    workers: list[WorkerGridEntry]


# --------------------------------------------------------------------------- analytics


class FailurePattern(BaseModel):
    error: str = Field(description="Timeout, OOMKilled, ImagePullError, Evicted, DependencyFailed, Error …")
    count: int
    percentage: float


class TrendBucket(BaseModel):
    model_config = ConfigDict(extra="allow")
    bucket: str
    start: str
    end: str
    submitted: int
    started: int
    completed: int
    failed: int
    cancelled: int


class Trends(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "completion_rate": 95.5, "average_wait_time_seconds": 12.3, "average_run_time_seconds": 240.0,
        "peak_loads": ["14:00", "15:00"],
        "failure_patterns": [{"error": "Timeout", "count": 45, "percentage": 10.0}],
        "period_hours": 24, "interval": "hourly", "window_start": "2026-01-24T14:00:00Z",
        "window_end": "2026-01-25T14:00:00Z",
        "totals": {"submitted": 1000, "started": 990, "completed": 940, "failed": 45, "cancelled": 5,
                   "finished": 985},
        "series": [{"bucket": "14:00", "start": "2026-01-25T14:00:00Z", "end": "2026-01-25T15:00:00Z",
                    "submitted": 80, "started": 78, "completed": 75, "failed": 3, "cancelled": 0}],
    }]})
    completion_rate: float = Field(description="% of finished tasks that succeeded.")
    average_wait_time_seconds: float = Field(description="Mean submission → first start.")
    peak_loads: list[str]
    failure_patterns: list[FailurePattern]
    series: list[TrendBucket] = Field(default_factory=list)


# --------------------------------------------------------------------------- alerts


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")
    alert_id: str = Field(description="Deterministic: a hash of the alert type and its subject.")
    type: str = Field(description="HIGH_QUEUE_DEPTH, STUCK_TASK, WORKER_OFFLINE, HIGH_FAILURE_RATE, "
                                  "QUOTA_EXHAUSTED, QUOTA_NEARLY_EXHAUSTED, PENDING_LIMIT_REACHED")
    severity: str = Field(description="INFO | WARNING | CRITICAL")
    description: str
    created_at: str | None
    acknowledged: bool


class AlertList(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"alerts": [{
        "alert_id": "alert-3f2c9a1b7d4e5f6a7b8c", "type": "HIGH_QUEUE_DEPTH", "severity": "WARNING",
        "description": "Queue depth 1200 exceeded 1000", "created_at": "2026-01-25T14:00:00Z",
        "acknowledged": False, "acknowledged_at": None, "acknowledged_by": None, "subject": "queue",
        "details": {"queue_depth": 1200, "threshold": 1000},
    }]}]})
    alerts: list[Alert]


class AlertAcknowledged(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "alert_id": "alert-3f2c9a1b7d4e5f6a7b8c", "acknowledged": True,
        "acknowledged_at": "2026-01-25T14:05:00Z", "acknowledged_by": "alice", "status": "acknowledged",
    }]})
    alert_id: str
    acknowledged: bool
    acknowledged_at: str | None
    acknowledged_by: str | None = None


# --------------------------------------------------------------------------- resilience


class DegradationMark(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"service_name": "database", "strategy": "return_cached", "duration_seconds": 300},
    ]})
    service_name: str = Field(min_length=1, max_length=63)
    strategy: str = Field(min_length=1, max_length=253, description="e.g. return_cached, fail_fast, queue_only")
    duration_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)


class DegradationMarked(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "service_name": "database", "strategy": "return_cached", "duration_seconds": 300, "status": "degraded",
        "marked_at": "2026-01-25T14:00:00Z", "expires_at": "2026-01-25T14:05:00Z", "marked_by": "root",
    }]})
    service_name: str
    strategy: str
    duration_seconds: int
    status: str
    marked_at: str | None
    expires_at: str | None


class ComponentHealth(BaseModel):
    healthy: bool
    status: str
    detail: str


class SystemHealth(BaseModel):
    model_config = ConfigDict(extra="allow")
    components_total: int
    healthy: int
    unhealthy: int
    components: dict[str, ComponentHealth] = Field(default_factory=dict)


class Degradation(BaseModel):
    model_config = ConfigDict(extra="allow")
    degraded_services_count: int
    services: list[str]


class ResilienceSummary(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "system_health": {"components_total": 5, "healthy": 4, "unhealthy": 1, "components": {
            "apiserver": {"healthy": True, "status": "healthy", "detail": "healthy"},
            "task_cache": {"healthy": True, "status": "healthy", "detail": "synced"},
            "operator_webhook": {"healthy": True, "status": "healthy", "detail": "kubetask.io (Fail)"},
            "gpu_nodes": {"healthy": True, "status": "healthy", "detail": "2 of 2 GPU nodes Ready, 8 GPUs"},
            "operator_lease": {"healthy": False, "status": "unhealthy",
                               "detail": "held by op-1, last renewed 95 s ago (lease 15 s)"}}},
        "degradation": {"degraded_services_count": 1, "services": ["database"], "details": [
            {"service_name": "database", "strategy": "return_cached", "expires_at": "2026-01-25T14:05:00Z",
             "remaining_seconds": 120}]},
        "resilience_score": 80.0, "timestamp": "2026-01-25T14:03:00Z",
    }]})
    system_health: SystemHealth
    degradation: Degradation
    resilience_score: float
