"""Every response the component tests receive is checked against the OpenAPI document the API serves.

:class:`SchemaCheck` reads ``/openapi.json`` once, finds the operation of each response (method +
path template; seed 004's root aliases are the same operations as their ``/api/v1`` paths) and
validates a JSON body against the schema documented for its status code (``jsonschema``, draft
2020-12, which OpenAPI 3.1 uses).  A body that does not validate fails the test that received it;
a JSON response the document does not describe fails too.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

API_PREFIX = "/api/v1"


class SchemaViolation(AssertionError):
    pass


class SchemaCheck:
    def __init__(self, openapi: dict[str, Any]) -> None:
        self.openapi = openapi
        self.registry: Registry[Any] = Registry().with_resource(
            "urn:openapi", Resource.from_contents(openapi, default_specification=DRAFT202012))
        self.routes: list[tuple[re.Pattern[str], str]] = []
        for template in sorted(openapi["paths"], key=lambda p: (p.count("{"), -len(p))):
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self.routes.append((re.compile(f"^{pattern}$"), template))
        self.checked = 0

    @classmethod
    def fetch(cls, base_url: str) -> SchemaCheck:
        return cls(httpx.get(f"{base_url}/openapi.json", timeout=30).json())

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        if not path.startswith(API_PREFIX):
            path = API_PREFIX + path  # seed 004's root aliases
        path = path.rstrip("/") or "/"
        for pattern, template in self.routes:
            if pattern.match(path):
                found: dict[str, Any] | None = self.openapi["paths"][template].get(method.lower())
                if found is not None:
                    return found
        return None

    def check(self, response: httpx.Response) -> None:
        """Validate one response (JSON bodies only; text, CSV, streams and empty bodies are not JSON)."""
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json") or not response.content:
            return
        request = response.request
        if request.url.path in ("/openapi.json", "/docs", "/redoc"):
            return
        operation = self.operation(request.method, request.url.path)
        if operation is None:
            if response.status_code in (404, 405):
                return  # no such endpoint: the error body is checked by the error-body assertions
            raise SchemaViolation(f"{request.method} {request.url.path} is not in the OpenAPI document")
        responses = operation.get("responses") or {}
        documented = responses.get(str(response.status_code)) or responses.get("default")
        if documented is None:
            raise SchemaViolation(f"{request.method} {request.url.path} answered {response.status_code}, which "
                                  f"its OpenAPI operation does not document ({sorted(responses)})")
        schema = ((documented.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            raise SchemaViolation(f"{request.method} {request.url.path} {response.status_code}: JSON body, but the "
                                  f"document gives no JSON schema")
        validator = Draft202012Validator(_with_base(schema), registry=self.registry)
        errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            raise SchemaViolation(f"{request.method} {request.url.path} {response.status_code}: the body does not "
                                  f"match the documented schema at {'/'.join(map(str, first.absolute_path))}: "
                                  f"{first.message}")
        self.checked += 1


def _with_base(schema: Any) -> Any:
    """``schema`` with its local refs (``#/components/...``) pointed at the registered OpenAPI document."""
    if isinstance(schema, dict):
        return {k: ("urn:openapi" + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else _with_base(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_with_base(v) for v in schema]
    return schema
