"""Kubernetes ``Status`` errors as the real apiserver renders them."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "AlreadyExists",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the API answers with a ``Status`` object (kind Status, status Failure)."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason if reason is not None else _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        """The ``Status`` body for this error."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(name: str | None, group: str, kind: str) -> Obj:
    d: Obj = {"kind": kind}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def qualified(plural: str, group: str) -> str:
    """``tasks.kubetask.io`` / ``pods`` — the resource name used in messages."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, f'{qualified(plural, group)} "{name}" not found', "NotFound",
                    _details(name, group, plural))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, f'{qualified(plural, group)} "{name}" already exists', "AlreadyExists",
                    _details(name, group, plural))


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
                    "Conflict", _details(name, group, plural))


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    q = qualified(plural, group)
    head = f'{q} "{name}" is forbidden' if name else f"{q} is forbidden"
    return ApiError(403, f"{head}: {why}", "Forbidden", _details(name, group, plural))


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def internal(message: str) -> ApiError:
    return ApiError(500, f"Internal error occurred: {message}", "InternalError",
                    {"causes": [{"message": message}]})


class FieldError:
    """One ``field.Error``: rendered ``<field>: <type>: <detail>`` like apimachinery."""

    def __init__(self, field: str, type_: str, detail: str, value: Any = None, has_value: bool = False):
        self.field = field
        self.type = type_  # e.g. "Invalid value", "Required value", "Unsupported value"
        self.detail = detail
        self.value = value
        self.has_value = has_value

    @property
    def reason(self) -> str:
        return {
            "Invalid value": "FieldValueInvalid",
            "Required value": "FieldValueRequired",
            "Unsupported value": "FieldValueNotSupported",
            "Forbidden": "FieldValueForbidden",
            "Too long": "FieldValueTooLong",
            "Too many": "FieldValueTooMany",
            "Duplicate value": "FieldValueDuplicate",
            "Not found": "FieldValueNotFound",
        }.get(self.type, "FieldValueInvalid")

    def render(self) -> str:
        if self.has_value:
            return f"{self.type}: {render_value(self.value)}: {self.detail}" if self.detail else \
                f"{self.type}: {render_value(self.value)}"
        return f"{self.type}: {self.detail}" if self.detail else self.type

    def __str__(self) -> str:
        return f"{self.field}: {self.render()}" if self.field else self.render()


def render_value(v: Any) -> str:
    """Format a value the way ``field.Error`` does (Go ``%#v``-like for scalars)."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, int | float):
        return json.dumps(v)
    if v is None:
        return "null"
    if isinstance(v, dict):
        return '"object"'
    if isinstance(v, list):
        return '"array"'
    return json.dumps(str(v))


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 ``<Kind>.<group> "<name>" is invalid: ...`` with ``details.causes``."""
    qk = f"{kind}.{group}" if group else kind
    parts = [str(e) for e in errors]
    if len(parts) == 1:
        msg = f'{qk} "{name}" is invalid: {parts[0]}'
    else:
        msg = f'{qk} "{name}" is invalid: [{", ".join(parts)}]'
    causes = [{"reason": e.reason, "message": e.render(), "field": e.field} for e in errors]
    details: Obj = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return ApiError(422, msg, "Invalid", details)
