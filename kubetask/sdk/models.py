"""Typed results of the SDK (unknown fields are kept, so newer servers never break older clients)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Task(_Model):
    id: str
    task_id: str | None = None
    name: str | None = None
    status: str
    priority: int | None = None
    queue_name: str | None = None
    user_id: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None
    task_type: str | None = None
    model_name: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    worker_id: str | None = None
    retry_count: int | None = None
    max_retries: int | None = None
    queue_position: int | None = None
    estimated_start_time: str | None = None
    estimated_completion: str | None = None
    waiting_reason: str | None = None
    result: Any = None
    error: str | None = None
    resource_usage: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"


class TaskPage(_Model):
    total: int
    limit: int
    offset: int
    tasks: list[Task]


class Cancellation(_Model):
    task_id: str
    status: str
    cancelled_at: str | None = None


class Template(_Model):
    name: str
    description: str | None = None
    parameters: list[dict[str, Any]] = Field(default_factory=list)
    task_types: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)


class Validation(_Model):
    valid: bool
    missing_parameters: list[str] = Field(default_factory=list)
    invalid_parameters: list[str] = Field(default_factory=list)


class QueueStatus(_Model):
    running: int
    pending: int
    max_concurrent: int | None = None
    can_start_more: bool | None = None
    monthly_hours_used: float | None = None
    monthly_hours_limit: float | None = None
    pending_tasks: list[dict[str, Any]] = Field(default_factory=list)


class UserLimits(_Model):
    user_id: str | None = None
    plan: str | None = None
    max_concurrent_agents: int | None = None
    max_task_duration_minutes: int | None = None
    monthly_agent_hours_limit: float | None = None
    monthly_agent_hours_used: float | None = None
    limits: dict[str, Any] = Field(default_factory=dict)
