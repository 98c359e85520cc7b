"""Request and response models: what ``/docs`` and ``/redoc`` show, with examples.

Request models accept every compatible API's field names (and keep unknown fields, so the
pure core can name what it refuses).  Responses are built by :mod:`kubetask.core.rest`;
the public task (:class:`~kubetask.core.rest.shapes.TaskPublic`) is ONE model, built by
the core and declared here, so what ``/docs`` shows is what the API sends.  The other
response models document the bodies the core builds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictFloat, StrictInt, StrictStr

from kubetask.core.rest.shapes import ExecutionPublic, ResourceUsage, TaskPublic

__all__ = ["ExecutionPublic", "ResourceUsage", "TaskPublic"]  # re-exported: the API's response models

# --------------------------------------------------------------------------- errors


class FieldError(BaseModel):
    field: str | None = None
    message: str
    type: str | None = None


class ErrorResponse(BaseModel):
    """The error body of every endpoint."""

    detail: str = Field(description="What went wrong, in words a person can act on.")
    code: str = Field(description="Stable machine code, e.g. TASK_NOT_FOUND, TOO_MANY_PENDING, RATE_LIMITED.")
    request_id: str = Field(description="Also sent as the X-Request-ID header.")
    timestamp: str
    field: str | None = Field(default=None, description="The offending field (422).")
    errors: list[FieldError] | None = Field(default=None, description="Every offending field (422).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "Task build-report-1a2b3c4d not found", "code": "TASK_NOT_FOUND",
        "request_id": "req_5f0c3b1e9a7d4c2b8e6f1a0d3c5b7e9f", "timestamp": "2026-01-25T14:00:00Z",
    }]})


class TaskManagerErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict, description="field, reason, errors when known")


class TaskManagerError(BaseModel):
    """The error body under the ``taskmanager`` profile (the Task Manager API's own format)."""

    error: TaskManagerErrorDetail
    timestamp: str
    request_id: str


class AnyErrorResponse(RootModel[ErrorResponse | TaskManagerError]):
    """:class:`ErrorResponse`, or :class:`TaskManagerError` under the ``taskmanager`` profile."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request (e.g. too many pending tasks)", 401: "Missing or invalid credentials",
        403: "Forbidden (e.g. over a hard quota; the limit is named)", 404: "Not found (or not yours)",
        409: "Conflict with the task's state", 422: "Validation error naming the field",
        429: "Rate limited (see X-RateLimit-* and Retry-After)", 503: "Kubernetes or admission unavailable",
    }
    # The explicit JSON content documents the error body on text routes too (logs, CSV, metrics).
    return {c: {"model": AnyErrorResponse, "description": descriptions.get(c, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AnyErrorResponse"}}}}
            for c in codes}


# --------------------------------------------------------------------------- tasks: requests

# A priority as clients send it: 8, 8.0, "8" or "high". Strict, so ``true`` is not taken for 1;
# the core (``parse_priority``) checks the range and refuses 5.5 and unknown words with a 422.
PriorityIn = StrictInt | StrictFloat | StrictStr | None


class TemplateRefIn(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class ResourcesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    gpus: int | None = Field(default=None, ge=0, le=64)
    gpu_type: str | None = None
    cpu: str | int | None = None
    memory: str | int | None = None


class TaskCreate(BaseModel):
    """A task in any compatible API's dialect. Say what runs with ONE of: ``template`` (+ ``parameters``),
    ``task_type`` (+ ``model_name`` + ``input_data``), ``script_content`` (+ ``script_type``), ``image``
    (+ ``command``/``args``), or a ``task_name`` that names a TaskTemplate (or one of its aliases)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"template": "ollama-inference",
         "parameters": {"model": "llama3.1:8b", "prompt": "Explain quantum computing in simple terms"},
         "priority": 5},
        {"name": "Data Processing Script", "description": "Process CSV data and generate report",
         "script_content": "import pandas as pd\nprint('Processing...')", "script_type": "python",
         "timeout_seconds": 30, "metadata": {"tags": ["data", "processing"], "priority": "high"}},
        # The Distributed Task Queue System API's shape: ``task_name`` names a TaskTemplate (or an alias),
        # here a built-in one so the example runs on any installation; kwargs it declares fill its parameters.
        {"task_name": "python-script", "task_args": [1234],
         "task_kwargs": {"script": "print('payment 1234 processed')", "currency": "USD", "amount": 99.99},
         "priority": 8, "queue_name": "payments", "max_retries": 3, "timeout_seconds": 300,
         "scheduled_at": "2030-01-25T14:30:00Z"},
        {"task_type": "text_generation", "model_name": "microsoft/DialoGPT-medium",
         "input_data": {"prompt": "Hello, how are you today?"},
         "parameters": {"max_length": 100, "temperature": 0.8, "do_sample": True}},
    ]})

    name: str | None = Field(default=None, min_length=1, max_length=255, description="Display name (1-255).")
    task_name: str | None = Field(default=None, min_length=1, max_length=255,
                                  description="The Distributed Task Queue System API: names the task; a "
                                              "TaskTemplate of that name/alias runs.")
    description: str | None = None
    template: str | TemplateRefIn | None = Field(default=None, description="TaskTemplate name.")
    parameters: dict[str, Any] | None = Field(default=None, description="Template (or model) parameters.")
    task_type: str | None = Field(default=None, description="The Task Manager API task type, e.g. text_generation.")
    model_name: str | None = None
    input_data: Any = None
    script_content: str | None = Field(default=None, description="Script source, at most 1 MiB.")
    script_type: str | None = Field(default=None, description="python or bash (default python).")
    image: str | None = Field(default=None, description="Container image to run.")
    command: list[str] | str | None = None
    args: list[Any] | None = None
    env: dict[str, Any] | list[dict[str, Any]] | None = None
    task_args: list[Any] | None = None
    task_kwargs: dict[str, Any] | None = None
    priority: PriorityIn = Field(default=None, description="0-10 (default 5), or low/normal/high/critical.")
    queue_name: str | None = Field(default=None, description="Queue (default 'default').")
    depends_on: list[str] | None = Field(default=None, description="Task ids that must succeed first.")
    scheduled_at: datetime | None = Field(default=None, description="Start not before this time.")
    timeout_seconds: int | None = Field(default=None, ge=1, description="1 .. the tenant's max (default 3600).")
    max_retries: int | None = Field(default=None, ge=0, le=20)
    retry_backoff_seconds: int | None = Field(default=None, ge=0)
    gpus: int | None = Field(default=None, ge=0, le=64)
    gpu_type: str | None = None
    resources: ResourcesIn | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form; tags and priority are read.")
    tags: list[str] | None = None
    annotations: dict[str, str | int | float | bool] | None = Field(
        default=None, description="Annotations on the task's pod.")
    node_selector: dict[str, str] | None = None
    runtime: str | None = Field(default=None, description="job (default) or pod.")
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)


class TaskUpdate(BaseModel):
    """Fields that may change before a task starts (``PUT``/``PATCH /tasks/{id}``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"name": "Nightly report", "priority": 8, "timeout_seconds": 600,
         "metadata": {"tags": ["nightly"]}},
    ]})

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    priority: PriorityIn = None
    queue_name: str | None = None
    timeout_seconds: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0, le=20)
    scheduled_at: datetime | None = None
    parameters: dict[str, Any] | None = None
    task_args: list[Any] | None = None
    task_kwargs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    annotations: dict[str, str] | None = None


class PriorityUpdate(BaseModel):
    priority: PriorityIn = Field(default=None, description="0-10 or a word (low/normal/high/critical).")


class CompletionReport(BaseModel):
    """The completion callback body (the OmoiOS task-queue API's TaskResult, or any ``result``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"status": "completed", "summary": "Report generated", "files_changed": ["report.csv"]},
        {"result": {"generated_text": "Hello!", "tokens_generated": 18}},
    ]})

    status: str | None = Field(default=None, description="completed or failed")
    result: Any = None
    summary: str | None = None
    files_changed: list[str] | None = None
    error: str | None = None


# --------------------------------------------------------------------------- tasks: responses


class TaskList(BaseModel):
    """The list envelope (``?format=array`` returns just the array)."""

    model_config = ConfigDict(extra="allow")
    total: int
    limit: int
    offset: int
    page: int
    pages: int
    has_more: bool
    tasks: list[TaskPublic]
    data: list[TaskPublic] = Field(description="Same items as ``tasks`` (the Distributed Task Queue System "
                                               "API's generic envelope).")


class TaskCancelled(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_id": "hello-1a2b3c4d", "id": "hello-1a2b3c4d", "status": "cancelled",
        "cancelled_at": "2025-05-30T12:00:45Z", "cancelled": True, "message": "Task cancelled successfully",
    }]})
    task_id: str
    id: str
    status: str
    cancelled_at: str | None
    cancelled: bool = True
    message: str


class TaskPriorityChanged(BaseModel):
    id: str
    task_id: str
    priority: int
    status: str


class TaskReplayed(BaseModel):
    task_id: str
    id: str
    status: str
    original_task_id: str


class TaskExecuteAccepted(BaseModel):
    task_id: str
    id: str
    status: str
    execution_requested: bool
    message: str


class ExecutionList(BaseModel):
    task_id: str
    total: int
    executions: list[ExecutionPublic]


class TimelineEvent(BaseModel):
    timestamp: str
    event_type: str
    details: dict[str, Any]
    source: str


class TaskTimeline(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str
    task_name: str
    status: str
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    duration_seconds: float | None
    events: list[TimelineEvent]


class TaskComparison(BaseModel):
    model_config = ConfigDict(extra="allow")
    same_function: bool
    same_args: bool
    same_priority: bool
    timing: dict[str, float | None]


class CompletionAccepted(BaseModel):
    ok: bool = True
    task_id: str
    status: str


class StatusGroups(RootModel[dict[str, list[TaskPublic]]]):
    """Tasks grouped by status: one key per status word of the profile, each a list (newest first).

    canonical: ``pending, queued, running, completed, failed, cancelled``; the AI Task Orchestra API
    (``orchestra``): ``queued, running, completed, failed, cancelled``; ``dtq``: upper case."""


# --------------------------------------------------------------------------- queue and limits


class WaitingTask(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str
    name: str
    status: str
    priority: int
    position: int | None
    estimated_start_time: str | None
    waiting_reason: str | None


class LimitValues(BaseModel):
    max_running: int | None = None
    max_pending: int | None = None
    max_gpus_per_task: int | None = None
    gpu_quota: int | None = None
    cpu_quota: str | None = None
    memory_quota: str | None = None
    monthly_gpu_hours: float | None = None
    max_timeout_seconds: int | None = None
    requests_per_minute: int | None = None


class QueueStatus(BaseModel):
    """The OmoiOS task-queue API's QueueStatus, plus each waiting task's position and estimated start."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "user_id": "alice", "running": 2, "pending": 3, "max_concurrent": 4, "max_pending": 50,
        "can_start_more": True, "can_submit": True, "monthly_hours_used": 12.5, "monthly_hours_limit": 100,
        "monthly_hours_remaining": 87.5, "pending_tasks": [
            {"task_id": "train-1a2b3c4d", "name": "train", "status": "queued", "priority": 5, "position": 1,
             "estimated_start_time": "2026-01-25T14:30:00Z", "waiting_reason": "alice has 4 of 4 running tasks"}],
    }]})
    user_id: str
    running: int
    pending: int
    max_concurrent: int | None
    max_pending: int | None
    can_start_more: bool
    can_submit: bool
    monthly_hours_used: float
    monthly_hours_limit: float | None
    monthly_hours_remaining: float | None
    limits: LimitValues
    pending_tasks: list[WaitingTask]


class UserLimits(BaseModel):
    """The OmoiOS task-queue API's UserLimits, plus kubetask's limit names and usage."""

    model_config = ConfigDict(extra="allow")
    user_id: str
    plan: str
    max_concurrent_agents: int | None
    max_task_duration_minutes: int
    monthly_agent_hours_limit: float | None
    monthly_agent_hours_used: float
    billing_cycle_resets_at: str | None
    limits: LimitValues
    usage: dict[str, Any]


class LimitsPatch(BaseModel):
    """Limits to change (snake_case or the Tenant's camelCase); ``null`` removes a limit."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"max_running": 8, "max_pending": 100, "monthly_gpu_hours": 500, "requests_per_minute": 1200},
    ]})
    max_running: int | None = None
    max_pending: int | None = None
    max_gpus_per_task: int | None = None
    gpu_quota: int | None = None
    monthly_gpu_hours: float | None = None
    max_timeout_seconds: int | None = None
    requests_per_minute: int | None = None


# --------------------------------------------------------------------------- templates


class TemplateParameterPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    type: str
    required: bool
    description: str | None = None


class TemplatePublic(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "name": "ollama-inference", "description": "Run inference with specified model and prompt",
        "parameters": [{"name": "model", "type": "string", "required": True, "description": "Ollama model name"},
                       {"name": "prompt", "type": "string", "required": True, "description": "Prompt"}],
        "task_types": ["text_generation"], "aliases": [],
    }]})
    name: str
    description: str | None = None
    parameters: list[TemplateParameterPublic]
    task_types: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    steps: list[dict[str, Any]] | None = None


class TemplateValidation(BaseModel):
    valid: bool
    missing_parameters: list[str]
    invalid_parameters: list[str]


# --------------------------------------------------------------------------- system


class Health(BaseModel):
    """The verdict and the version for anyone; reasons, uptime and task counts only for a caller with
    credentials, and then of its own tasks (an admin's: everyone's)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "status": "healthy", "timestamp": "2025-05-30T12:00:00Z", "version": "0.1.0",
        "checks": {"apiserver": "healthy", "cache": "healthy"},
    }, {
        "status": "healthy", "timestamp": "2025-05-30T12:00:00Z", "version": "0.1.0", "uptime": 3600,
        "checks": {"apiserver": "healthy", "cache": "healthy"}, "scope": "alice", "active_tasks": 5,
        "pending_tasks": 12, "completed_tasks": 157, "failed_tasks": 3, "cancelled_tasks": 1,
    }]})
    status: str = Field(description="healthy or unhealthy")
    timestamp: str
    version: str
    checks: dict[str, str] = Field(description="apiserver and cache: healthy, unreachable, syncing (with the "
                                               "reason for a caller with credentials)")
    uptime: float | None = None
    scope: str | None = Field(default=None, description="Whose tasks the counts cover: the tenant, or all")
    active_tasks: int | None = None
    pending_tasks: int | None = None
    completed_tasks: int | None = None
    failed_tasks: int | None = None
    cancelled_tasks: int | None = None
