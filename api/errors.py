"""One error body everywhere: ``{"detail", "code", "request_id", "timestamp"}`` (+ ``field``/``errors`` on 422),
or the Task Manager API's ``{"error": {code, message, details}, timestamp, request_id}`` under its profile.

Refusals raised by the pure core (:class:`kubetask.core.rest.errors.RestError`), FastAPI's
own validation errors, Starlette's HTTP errors and apiserver refusals
(:class:`kubetask.kube.client.ApiError`) all end up in that shape with the right
status code.  The apiserver's ``admission webhook "…" denied the request:``
prefix is stripped, so REST and kubectl users read the same message.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kubetask.api.upstream import WRITE_METHODS
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.profiles import CANONICAL, Profile
from kubetask.core.times import now_iso
from kubetask.kube.client import ApiError

log = logging.getLogger(__name__)

ApiProblem = RestError

_STATUS_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

_RETRY_SOON = {"Retry-After": "5"}

_WEBHOOK_PREFIX = re.compile(r'^admission webhook "[^"]*" denied the request:\s*')


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if not rid:
        rid = f"req_{uuid.uuid4().hex}"
        request.state.request_id = rid
    return str(rid)


def error_body(
    request: Request,
    status: int,
    detail: str,
    code: str | None = None,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The error body in the request's profile's style: ``{detail, code, request_id, timestamp}`` (+ ``field``,
    ``errors``), or the Task Manager API's ``{error: {code, message, details}, timestamp, request_id}``."""
    code = code or _STATUS_CODES.get(status, "ERROR")
    profile: Profile = getattr(request.state, "profile", None) or CANONICAL
    if profile.error_style == "error":
        details: dict[str, Any] = {}
        if field is not None:
            details["field"] = field
            details["reason"] = detail
        if errors is not None:
            details["errors"] = errors
        return {"error": {"code": code, "message": detail, "details": details},
                "timestamp": now_iso(), "request_id": request_id_of(request)}
    body: dict[str, Any] = {
        "detail": detail,
        "code": code,
        "request_id": request_id_of(request),
        "timestamp": now_iso(),
    }
    if field is not None:
        body["field"] = field
    if errors is not None:
        body["errors"] = errors
    return body


def malformed_json(request: Request) -> RestError:
    """A 400 saying where the request body stops being JSON (the parser's message, line and column)."""
    raw = b"".join(getattr(request.state, "received_body", None) or [])
    try:
        json.loads(raw.decode("utf-8", errors="replace") or "")
    except json.JSONDecodeError as error:
        return RestError(400, "MALFORMED_JSON", f"the request body is not valid JSON: {error.msg} at line "
                         f"{error.lineno}, column {error.colno}", field="body",
                         errors=[{"field": "body", "message": error.msg, "line": error.lineno,
                                  "column": error.colno}])
    return RestError(400, "MALFORMED_JSON", "the request body is not valid JSON", field="body")


def error_response(
    request: Request,
    status: int,
    detail: str,
    code: str | None = None,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(request, status, detail, code, field=field, errors=errors)
    all_headers = {"X-Request-ID": body["request_id"], **(headers or {})}
    return JSONResponse(body, status_code=status, headers=all_headers)


def strip_webhook_prefix(message: str) -> str:
    return _WEBHOOK_PREFIX.sub("", message).strip()


def problem_from_api_error(error: ApiError, *, what: str = "request") -> RestError:
    """An apiserver refusal -> the REST error with the same meaning."""
    message = strip_webhook_prefix(error.message)
    lowered = message.lower()
    if error.status >= 500 and ("failed calling webhook" in lowered or "webhook" in lowered):
        return RestError(503, "SERVICE_UNAVAILABLE",
                         f"admission is unavailable, try again shortly ({message})", headers=_RETRY_SOON)
    if error.status in (500, 502, 503, 504):
        return RestError(503, "SERVICE_UNAVAILABLE", f"the Kubernetes API is unavailable: {message}",
                         headers=_RETRY_SOON)
    if error.status == 429:
        return RestError(503, "SERVICE_UNAVAILABLE", f"the Kubernetes API is throttling: {message}",
                         headers=_RETRY_SOON)
    if error.status == 404:
        return RestError(404, "NOT_FOUND", message or f"{what} not found")
    if error.status == 409:
        return RestError(409, "CONFLICT", message)
    if error.status == 422 or error.reason == "Invalid":
        field_name = _field_of(error.body)
        return RestError(422, "VALIDATION_ERROR", message, field=field_name)
    if error.status == 403:
        code = "QUOTA_EXCEEDED" if "quota" in lowered or "limit" in lowered or "exceed" in lowered \
            else "FORBIDDEN"
        if "monthly" in lowered:
            code = "MONTHLY_LIMIT_REACHED"
        return RestError(403, code, message)
    if error.status == 400:
        code = "TOO_MANY_PENDING" if "too many pending" in lowered else "BAD_REQUEST"
        return RestError(400, code, message)
    if error.status == 401:
        return RestError(503, "SERVICE_UNAVAILABLE", "the API cannot authenticate to Kubernetes")
    return RestError(error.status if 400 <= error.status < 600 else 502, "UPSTREAM_ERROR", message)


def _field_of(body: Mapping[str, Any]) -> str | None:
    causes = ((body.get("details") or {}).get("causes") or []) if isinstance(body, Mapping) else []
    for cause in causes:
        value = cause.get("field")
        if value:
            return str(value)
    return None


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _upstream_failed(request: Request, reason: str) -> JSONResponse:
    """A call to the apiserver timed out or could not connect: 503 with ``Retry-After``, and the monitor learns
    of it at once (later writes are refused without waiting; reads are marked stale)."""
    state = getattr(request.app.state, "kubetask", None)
    monitor = getattr(state, "upstream", None)
    retry_after = 5
    if monitor is not None:
        monitor.failed(reason)
        retry_after = monitor.retry_after
    detail = reason
    if request.method in WRITE_METHODS:
        # The request may have reached the apiserver and may still be executed: only a create with an
        # Idempotency-Key (or an update, which is idempotent) is safe to retry blindly.
        detail += ("; the change may or may not have been made: retry with the same Idempotency-Key "
                   f"in {retry_after} s")
    else:
        detail += f"; retry in {retry_after} s"
    return error_response(request, 503, detail, "SERVICE_UNAVAILABLE", headers={"Retry-After": str(retry_after)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RestError)
    async def _rest_error(request: Request, exc: RestError) -> JSONResponse:
        return error_response(request, exc.status, exc.detail, exc.code, field=exc.field, errors=exc.errors,
                              headers=exc.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        problem = problem_from_api_error(exc)
        return error_response(request, problem.status, problem.detail, problem.code, field=problem.field,
                              headers=problem.headers)

    @app.exception_handler(aiohttp.ClientError)
    async def _unreachable(request: Request, exc: aiohttp.ClientError) -> JSONResponse:
        return _upstream_failed(request, f"the Kubernetes API is unreachable: {type(exc).__name__}: {exc}")

    @app.exception_handler(TimeoutError)
    async def _timed_out(request: Request, exc: TimeoutError) -> JSONResponse:
        return _upstream_failed(request, "the Kubernetes API did not answer in time")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            problem = malformed_json(request)
            return error_response(request, problem.status, problem.detail, problem.code, field=problem.field,
                                  errors=problem.errors)
        errors = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            errors.append({"field": _loc_to_field(loc), "message": str(err.get("msg")),
                           "type": err.get("type"), "location": str(loc[0]) if loc else None})
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        return error_response(request, 422, detail, "VALIDATION_ERROR", field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal error; see the server log with this request_id",
                              "INTERNAL_ERROR")
