"""Pure-ASGI middleware: request ids, ``X-RateLimit-*`` headers and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses (``logs?follow=true``)
pass through untouched.  A read answered while the apiserver does not answer carries
``Warning: 110 - "Response is Stale"`` and ``X-Kubetask-Stale: true`` (see :mod:`kubetask.api.upstream`).
It also smooths two client habits before routing:

- a trailing slash (``/api/v1/tasks/``) is served as the path without it, instead of
  a 307 redirect that clients which do not follow redirects (httpx) take as an error;
- a request body sent without a Content-Type, or as ``text/plain`` or
  ``application/x-www-form-urlencoded`` (``curl -d`` without ``-H 'Content-Type: application/json'``),
  is read as JSON: no endpoint takes forms.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetask.api.metrics import ApiMetrics
from kubetask.api.upstream import STALE_HEADERS
from kubetask.core.rest.profiles import CANONICAL, ROOT_PATH_PROFILE, profile_named

_VALID_RID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_READ_AS_JSON = (b"text/plain", b"application/x-www-form-urlencoded")


def normalize_scope(scope: Scope) -> None:
    """Drop a trailing slash from the path; treat plain-text and form bodies as JSON."""
    path: str = scope.get("path", "")
    if len(path) > 1 and path.endswith("/"):
        stripped = path.rstrip("/") or "/"
        scope["path"] = stripped
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.endswith(b"/"):
            scope["raw_path"] = raw.rstrip(b"/") or b"/"
    if scope.get("method") in _BODY_METHODS:
        headers = list(scope.get("headers") or [])
        for i, (name, value) in enumerate(headers):
            if name == b"content-type":
                if value.split(b";")[0].strip().lower() in _READ_AS_JSON:
                    headers[i] = (name, b"application/json")
                    scope["headers"] = headers
                break
        else:
            scope["headers"] = [*headers, (b"content-type", b"application/json")]


def _apiserver_down(scope: Scope) -> bool:
    """Whether the app's apiserver monitor says the apiserver does not answer (reads then come from caches that
    may be behind: they are marked stale)."""
    app = scope.get("app")
    monitor = getattr(getattr(getattr(app, "state", None), "kubetask", None), "upstream", None)
    return bool(getattr(monitor, "down", False))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        normalize_scope(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        incoming = None
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and _VALID_RID.match(incoming) else f"req_{uuid.uuid4().hex}"
        state["request_id"] = rid
        path: str = scope.get("path", "")
        # Until the request's profile is known (X-Compat-Profile, the API key), errors answer in the path's:
        # the Task Manager API speaks at the root (no /api/v1).
        state["profile"] = CANONICAL if path.startswith("/api/") else ROOT_PATH_PROFILE
        for name, value in scope.get("headers") or []:
            if name == b"x-compat-profile":
                state["profile"] = profile_named(value.decode("latin-1")) or state["profile"]
                break
        started = time.perf_counter()
        reads = scope.get("method") in _READ_METHODS
        status_holder = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["code"] = message["status"]
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                if b"x-request-id" not in present:
                    headers.append((b"x-request-id", rid.encode()))
                for key, value in (state.get("ratelimit_headers") or {}).items():
                    if key.lower().encode() not in present:
                        headers.append((key.lower().encode(), str(value).encode()))
                if reads and _apiserver_down(scope):
                    headers.extend(STALE_HEADERS)
                message["headers"] = headers
            await send(message)

        received: list[bytes] = []
        state["received_body"] = received  # what the app read: the error handler locates malformed JSON in it

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                received.append(message["body"])
            return message

        try:
            await self.app(scope, receive_wrapper if scope.get("method") in _BODY_METHODS else receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status_holder["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
