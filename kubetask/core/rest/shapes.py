"""The public shape of a task: ONE model for what the API returns and what its OpenAPI document says.

:func:`kubetask.core.rest.present.task_public` builds every task representation as a
:class:`TaskPublic` (validated), and the routes declare :class:`TaskPublic` as their
``response_model``, so the documented schema and the real bodies cannot drift apart: a field
that is not declared here cannot be sent (``extra="forbid"``), and a declared type that the
output breaks fails validation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Public(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConditionPublic(_Public):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class ResourceUsage(_Public):
    """What the task asked for and used."""

    gpus: int = 0
    gpu_type: str | None = None
    cpu: str | int | None = None
    memory: str | int | None = None
    gpu_seconds: float | None = None
    gpu_hours: float | None = None
    duration_seconds: float | None = None
    node_name: str | None = None
    model_name: str | None = Field(default=None, description="The AI Task Orchestra API: the model a template "
                                                             "task ran.")
    inference_time_seconds: float | None = Field(default=None, description="The AI Task Orchestra API: the run time.")


class ExecutionPublic(_Public):
    """One attempt at running the task (one Job or Pod)."""

    id: str
    execution_id: str
    task_id: str | None = None
    status: str
    started_at: str | None = None
    completed_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    worker_id: str | None = Field(default=None, description="The node it ran on.")
    node_name: str | None = None
    job_name: str | None = None
    pod_name: str | None = None


class TaskPublic(_Public):
    """A task as every seed sees it: ``id`` and ``task_id``, ``name`` and ``task_name``, its status,
    timing, result and usage."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "123e4567-e89b-12d3-a456-426614174000", "task_id": "123e4567-e89b-12d3-a456-426614174000",
        "object_name": "data-processing-scr-1a2b3c4d",
        "name": "Data Processing Script", "task_name": "Data Processing Script", "status": "completed",
        "queue_state": "completed", "phase": "Succeeded", "priority": 8, "queue_name": "default", "user_id": "alice",
        "namespace": "kubetask-alice", "template": None, "parameters": None, "task_type": None,
        "model_name": None, "script_type": "python", "depends_on": [], "tags": ["data", "processing"],
        "created_at": "2025-07-03T10:00:00Z", "started_at": "2025-07-03T10:00:05Z",
        "completed_at": "2025-07-03T10:00:20Z", "worker_id": "gpu-node-1", "retry_count": 0,
        "max_retries": 0, "queue_position": None, "estimated_completion": "2025-07-03T10:00:20Z",
        "result": {"rows": 1200}, "resource_usage": {"gpus": 0, "gpu_seconds": 0, "duration_seconds": 15.0},
    }]})

    id: str = Field(description="A stable UUID: the Task's uid (task_<uid> under the taskmanager profile). "
                                "Every path accepts it, or object_name.")
    task_id: str = Field(description="The same as id.")
    object_name: str = Field(description="The Task's Kubernetes name (kubectl get task <object_name>).")
    name: str = Field(description="The display name the client gave (else the object name).")
    task_name: str
    description: str | None = None
    status: str = Field(description="pending | queued | running | completed | failed | cancelled (canonical; a "
                                    "compatibility profile may use other words or case). running means started "
                                    "on a node.")
    queue_state: str = Field(description="The fine-grained state: submitted | waiting_for_dependencies | "
                                         "scheduled | retry_backoff | pending | queued | starting | running | "
                                         "cancelling | completed | failed | cancelled")
    phase: str = Field(description="The Task's status.phase: Pending | Queued | Running | Succeeded | Failed | "
                                   "Cancelled")
    priority: int
    queue_name: str
    user_id: str | None = None
    namespace: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None
    task_type: str | None = None
    model_name: str | None = None
    script_type: str | None = None
    script_content: str | None = Field(default=None, description="The script (at most 1 MiB), for script tasks.")
    image: str | None = None
    task_args: list[Any] = Field(default_factory=list)
    task_kwargs: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the task's pod.")
    gpus: int = 0
    resources: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: int | None = None
    max_retries: int = 0
    retry_count: int = 0
    scheduled_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    cancelled_at: str | None = None
    duration_seconds: float | None = None
    worker_id: str | None = Field(default=None, description="The node the task runs or ran on.")
    node_name: str | None = None
    queue_position: int | None = None
    estimated_start_time: str | None = None
    estimated_completion: str | None = None
    waiting_reason: str | None = Field(default=None, description="Why the task is not running yet, in words.")
    result: Any = None
    result_source: str | None = None
    error: str | None = None
    resource_usage: ResourceUsage = Field(default_factory=ResourceUsage)
    execution_count: int = 0
    replay_of: str | None = None
    conditions: list[ConditionPublic] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="On create: why no node may ever run the task "
                                                                  "as asked (it is accepted and waits).")
