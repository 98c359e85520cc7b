"""REST refusals: :class:`RestError` (HTTP status, stable code, message, field) and the mapping of
admission verdicts onto it.

Every refusal of the pure REST core is a :class:`RestError`; the API turns it into the error body
``{"detail", "code", "request_id", "timestamp"}`` (+ ``field``/``errors`` on 422).  An admission
:class:`~kubetask.core.admission.Verdict` carries a machine-readable reason: :func:`from_verdict` maps
it to the HTTP status and code, and the spec field to the REST name a client sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetask.core.admission import HTTP_STATUS, Verdict


class RestError(Exception):
    """A refusal with its HTTP status, a stable ``code`` and a human ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.errors = errors if errors is not None else (
            [{"field": field, "message": detail}] if field else None
        )
        self.headers = dict(headers or {})


def invalid(field_name: str, message: str, code: str = "VALIDATION_ERROR") -> RestError:
    """A 422 naming the field."""
    return RestError(422, code, f"{field_name}: {message}", field=field_name)


def not_found(task_id: str) -> RestError:
    return RestError(404, "TASK_NOT_FOUND", f"Task {task_id} not found")


def body_must_be_object() -> RestError:
    return RestError(422, "VALIDATION_ERROR", "the request body must be a JSON object", field="body")


REST_FIELD_OF_SPEC: Mapping[str, str | None] = {
    "spec.timeoutSeconds": "timeout_seconds",
    "spec.dependsOn": "depends_on",
    "spec.template.parameters": "parameters",
    "spec.template.name": "template",
    "spec.priority": "priority",
    "spec.displayName": "name",
    "spec.script.content": "script_content",
    "spec.script.language": "script_type",
    "spec.resources.gpus": "gpus",
    "spec": None,
}
"""The REST field a client sent for each spec field an admission verdict names."""


def from_verdict(verdict: Verdict) -> RestError:
    """A refusing admission verdict as the REST error: its reason is the code, :data:`HTTP_STATUS` the status."""
    if verdict.reason is None:
        raise ValueError("an allowed verdict is no error")
    field = REST_FIELD_OF_SPEC.get(verdict.field or "spec", verdict.field)
    return RestError(HTTP_STATUS[verdict.reason], verdict.reason.value, verdict.message, field=field)
