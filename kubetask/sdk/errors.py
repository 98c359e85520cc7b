"""SDK exceptions: each carries the API's error body (``detail``, ``code``, ``request_id``)."""

from __future__ import annotations

from typing import Any


class KubetaskError(Exception):
    """The API refused a request (or could not be reached)."""

    def __init__(self, status_code: int, body: Any = None, *, message: str | None = None) -> None:
        self.status_code = status_code
        self.body: dict[str, Any] = body if isinstance(body, dict) else ({"detail": body} if body else {})
        self.detail: str = message or str(self.body.get("detail") or f"HTTP {status_code}")
        self.code: str | None = self.body.get("code")
        self.request_id: str | None = self.body.get("request_id")
        self.field: str | None = self.body.get("field")
        super().__init__(f"{status_code} {self.code or ''}: {self.detail}".replace("  ", " "))


class AuthenticationError(KubetaskError):
    """401: missing or invalid credentials."""


class PermissionDenied(KubetaskError):
    """403: forbidden, e.g. over a hard quota."""


class NotFoundError(KubetaskError):
    """404: no such task (or not yours)."""


class ConflictError(KubetaskError):
    """409: the task's state does not allow this (e.g. cancelling a finished task)."""


class ValidationError(KubetaskError):
    """400/422: the request was refused; ``field`` names the culprit when known."""


class RateLimitError(KubetaskError):
    """429: slow down; ``retry_after`` seconds."""

    def __init__(self, status_code: int, body: Any = None, *, retry_after: float | None = None) -> None:
        super().__init__(status_code, body)
        self.retry_after = retry_after


class ServiceUnavailable(KubetaskError):
    """503 (or the API is unreachable)."""


class WaitTimeout(KubetaskError):
    """``wait()`` gave up before the task finished."""


def error_for(status_code: int, body: Any, headers: dict[str, str] | None = None) -> KubetaskError:
    if status_code == 401:
        return AuthenticationError(status_code, body)
    if status_code == 403:
        return PermissionDenied(status_code, body)
    if status_code == 404:
        return NotFoundError(status_code, body)
    if status_code == 409:
        return ConflictError(status_code, body)
    if status_code in (400, 422):
        return ValidationError(status_code, body)
    if status_code == 429:
        retry = (headers or {}).get("retry-after")
        return RateLimitError(status_code, body, retry_after=float(retry) if retry else None)
    if status_code in (502, 503, 504):
        return ServiceUnavailable(status_code, body)
    return KubetaskError(status_code, body)
