"""Pure-ASGI middleware: request ids, ``X-RateLimit-*`` headers and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses (``logs?follow=true``)
pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetask.api.metrics import ApiMetrics

_VALID_RID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        incoming = None
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and _VALID_RID.match(incoming) else f"req_{uuid.uuid4().hex}"
        state["request_id"] = rid
        path: str = scope.get("path", "")
        # Seed 004 speaks at the root (no /api/v1) and knows no "queued": answer it in its words.
        state["queued_as_pending"] = not path.startswith("/api/")
        started = time.perf_counter()
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
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status_holder["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
