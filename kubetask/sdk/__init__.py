"""kubetask's Python SDK: ``KubetaskClient`` (sync) and ``AsyncKubetaskClient`` over httpx."""

from kubetask.sdk.client import AsyncKubetaskClient, KubetaskClient
from kubetask.sdk.errors import (
    AuthenticationError,
    ConflictError,
    KubetaskError,
    NotFoundError,
    PermissionDenied,
    RateLimitError,
    ServiceUnavailable,
    ValidationError,
    WaitTimeout,
)
from kubetask.sdk.models import QueueStatus, Task, TaskPage, Template, UserLimits

__all__ = [
    "AsyncKubetaskClient",
    "AuthenticationError",
    "ConflictError",
    "KubetaskClient",
    "KubetaskError",
    "NotFoundError",
    "PermissionDenied",
    "QueueStatus",
    "RateLimitError",
    "ServiceUnavailable",
    "Task",
    "TaskPage",
    "Template",
    "UserLimits",
    "ValidationError",
    "WaitTimeout",
]
