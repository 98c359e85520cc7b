"""The Task, TaskTemplate and Tenant models (DESIGN §2), framework-free.

These pydantic models mirror the CRD schemas in ``crds/``: field names are the
CRD's camelCase names (``populate_by_name`` also accepts the snake_case
attribute names).  The CRD stays the authority the apiserver enforces; these
models let the core reason about objects with types instead of dict lookups.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_SCRIPT_BYTES = 1024 * 1024
DEFAULT_PRIORITY = 5
DEFAULT_QUEUE = "default"
DEFAULT_MAX_PENDING = 50
DEFAULT_MAX_TIMEOUT_SECONDS = 3600
ANNOTATION_SUBMITTED_AT = "kubetask.io/submitted-at"
"""Submission time with microseconds (``creationTimestamp`` has only seconds): FIFO order within a priority."""


class CamelModel(BaseModel):
    """Base for CRD-shaped models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_k8s(self) -> dict[str, Any]:
        """The object as it is written to the apiserver (camelCase, no unset/None fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Phase(StrEnum):
    """Task lifecycle phase (``status.phase``)."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class ScriptLanguage(StrEnum):
    PYTHON = "python"
    BASH = "bash"


class Runtime(StrEnum):
    JOB = "job"
    POD = "pod"


class TemplateRef(CamelModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Script(CamelModel):
    language: ScriptLanguage
    content: str


class EnvVar(CamelModel):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


# The CRD accepts quantities as int-or-string (``cpu: 2`` or ``cpu: "500m"``), as Kubernetes does.
Quantity = Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, int | float) else value)]


class Resources(CamelModel):
    gpus: int = 0
    gpu_type: str | None = None
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Toleration(CamelModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class TaskSpec(CamelModel):
    """``Task.spec``: what runs, where, when and within which limits."""

    display_name: str | None = None
    description: str | None = None
    user: str | None = None
    priority: int = DEFAULT_PRIORITY
    queue: str = DEFAULT_QUEUE
    template: TemplateRef | None = None
    image: str | None = None
    command: list[str] | None = None
    args: list[Any] | None = None
    env: list[EnvVar] | None = None
    script: Script | None = None
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    depends_on: list[str] = Field(default_factory=list)
    timeout_seconds: int | None = None
    max_retries: int = 0
    retry_backoff_seconds: int = 10
    scheduled_at: datetime | None = None
    runtime: Runtime = Runtime.JOB
    ttl_seconds_after_finished: int | None = None
    task_kwargs: dict[str, Any] | None = Field(default=None, alias="kwargs")
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    pod_annotations: dict[str, str] | None = None
    pod_labels: dict[str, str] | None = None
    cancel: bool = False


class Condition(CamelModel):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class Execution(CamelModel):
    """One attempt at running a Task: one Job (or Pod)."""

    id: int
    job_name: str | None = None
    pod_name: str | None = None
    node_name: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    phase: str | None = None


class TaskStatus(CamelModel):
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    queue_position: int | None = None
    estimated_start_time: datetime | None = None
    executions: list[Execution] = Field(default_factory=list)
    created_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Any = None
    result_source: Literal["terminationMessage", "callback"] | None = None
    gpu_seconds: float | None = None
    accounted_gpu_seconds: float | None = None
    """How much of ``gpu_seconds`` the operator has added to the tenant's monthly usage."""
    observed_generation: int | None = None
    retry_count: int | None = None
    next_retry_at: datetime | None = None
    node_name: str | None = None
    handled_rerun: str | None = None
    message: str | None = None


class TemplateParameter(CamelModel):
    name: str
    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = False
    default: Any = None
    description: str | None = None
    enum: list[Any] | None = None


class TemplateDefaults(CamelModel):
    resources: Resources | None = None
    timeout_seconds: int | None = None
    image: str | None = None


class TaskTypeAlias(CamelModel):
    """Maps a seed-004 ``task_type`` (+ ``model_name``) onto this template."""

    name: str
    model_parameter: str | None = None
    input_parameter: str | None = None


class TaskTemplateSpec(CamelModel):
    description: str | None = None
    parameters: list[TemplateParameter] = Field(default_factory=list)
    pod_template: dict[str, Any] = Field(default_factory=dict)
    defaults: TemplateDefaults | None = None
    task_types: list[TaskTypeAlias] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    steps: list[dict[str, Any]] | None = None


class TenantLimits(CamelModel):
    max_running: int | None = None
    max_pending: int = DEFAULT_MAX_PENDING
    max_gpus_per_task: int | None = None
    gpu_quota: int | None = None
    cpu_quota: str | None = None
    memory_quota: str | None = None
    monthly_gpu_hours: float | None = None
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    requests_per_minute: int | None = None


class SecretKeyRef(CamelModel):
    name: str
    key: str = "sha256"
    namespace: str | None = None
    profile: str | None = None  # the REST compatibility profile this key pins (kubetask.core.rest.profiles)


class Subject(CamelModel):
    kind: Literal["User", "Group", "ServiceAccount"]
    name: str
    namespace: str | None = None
    api_group: str | None = None


class TenantSpec(CamelModel):
    display_name: str | None = None
    namespace: str | None = None
    role: Literal["user", "admin"] = "user"
    api_keys: list[SecretKeyRef] = Field(default_factory=list)
    subjects: list[Subject] = Field(default_factory=list)
    limits: TenantLimits = Field(default_factory=TenantLimits)


class MonthlyUsage(CamelModel):
    month: str
    gpu_seconds: float = 0.0


class TenantStatus(CamelModel):
    namespace: str | None = None
    running: int = 0
    pending: int = 0
    gpus_in_use: int = 0
    gpu_seconds_this_month: float = 0.0
    month: str | None = None
    usage: list[MonthlyUsage] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
