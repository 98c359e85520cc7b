"""Issue 12 part 7: the OpenAPI document tells the truth.

* Every request example it documents (request body schemas' ``examples``, media ``example``/``examples``)
  is accepted: posted to its own operation as the admin tenant, on real objects, none answers 422.
* Every documented 4xx/5xx is the real error body ``{detail, code, request_id, timestamp}``, never FastAPI's
  ``HTTPValidationError`` (``detail`` as an array); a real 422 matches what is documented for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kt_api_support import ADMIN_KEY, PAYMENTS_TEMPLATE, Stack, assert_error_body

NODE = "cpu-1"


def _spec(shared: Stack) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(shared.url + "/openapi.json").json()
    return spec


def _examples(operation: dict[str, Any], components: dict[str, Any]) -> list[Any]:
    media = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if media is None:
        return []
    found: list[Any] = []
    if "example" in media:
        found.append(media["example"])
    found += [e.get("value") for e in (media.get("examples") or {}).values()]
    schema = media.get("schema") or {}
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    found += list(schema.get("examples") or [])
    return found


def _task(root: httpx.Client) -> str:
    created = root.post("/tasks", json={"name": "example target", "image": "busybox",
                                        "scheduled_at": "2999-01-01T00:00:00Z"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _ids(root: httpx.Client, path: str) -> dict[str, str]:
    """Real objects for the operation's path parameters (fresh ones: an example may change its target)."""
    ids = {"worker_id": NODE, "user_id": "bob", "template_name": "python-script", "exec_id": "1"}
    if "{task_id}" in path:
        ids["task_id"] = _task(root)
    if "{other_id}" in path:
        ids["other_id"] = _task(root)
    if "{webhook_id}" in path:
        hook = root.post("/webhooks", json={"url": "https://hooks.example.com/kubetask", "events": ["completed"]})
        ids["webhook_id"] = hook.json().get("id", "none") if hook.status_code == 201 else "none"
    return ids


@pytest.fixture
def builtin_templates_only(shared: Stack) -> Iterator[Stack]:
    """The stack with only the built-in TaskTemplates (the harness adds ``payments``, aliased to seed 003's
    ``process_payment``): an example must work on a fresh installation, not on the test's extras."""
    path = "/apis/kubetask.io/v1alpha1/tasktemplates/payments"
    shared.cluster.admin().delete(path)
    with shared.client(ADMIN_KEY) as root:
        shared.wait_for(lambda: root.get("/templates/payments").status_code == 404)
    try:
        yield shared
    finally:
        shared.cluster.apply(PAYMENTS_TEMPLATE)
        with shared.client(ADMIN_KEY) as root:
            shared.wait_for(lambda: root.get("/templates/payments").status_code == 200)


def test_every_documented_request_example_is_accepted(builtin_templates_only: Stack) -> None:
    shared = builtin_templates_only
    spec = _spec(shared)
    components = spec["components"]["schemas"]
    tried: list[str] = []
    refused: list[str] = []
    with shared.client(ADMIN_KEY, prefix="") as root, shared.client(ADMIN_KEY) as v1:
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                for example in _examples(operation, components):
                    ids = _ids(v1, path)
                    url = re.sub(r"\{(\w+)\}", lambda m, ids=ids: ids.get(m.group(1), "x"), path)
                    response = root.request(method.upper(), url, json=example)
                    tried.append(f"{method.upper()} {path} {json.dumps(example)[:60]} -> {response.status_code}")
                    if response.status_code == 422 or response.status_code >= 500:
                        refused.append(f"{method.upper()} {path} {json.dumps(example)}: {response.text}")
    print("\n".join(tried))
    assert len(tried) >= 8, tried  # tasks (4), updates, priority, completion (2), templates, limits, webhooks…
    assert not refused, "\n".join(refused)


def test_error_responses_are_documented_as_sent(shared: Stack) -> None:
    spec = _spec(shared)
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code[0] in "45" and not (path.endswith("/health") and code == "503"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/AnyErrorResponse"}, (method, path, code)
    error = spec["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["detail"]["type"] == "string"
    assert set(error["required"]) == {"detail", "code", "request_id", "timestamp"}
    with shared.client(ADMIN_KEY) as root:  # the client checks each answer against the document
        body = assert_error_body(root.get("/tasks", params={"min_priority": "many"}), 422, "VALIDATION_ERROR")
        assert isinstance(body["detail"], str) and body["field"] == "min_priority"
        assert_error_body(root.get("/tasks/no-such-task-1a2b3c4d"), 404, "TASK_NOT_FOUND")
        body = assert_error_body(root.post("/tasks", json={"name": "x", "image": "busybox"},
                                           headers={"Idempotency-Key": "tab\tinside"}), 422, "VALIDATION_ERROR")
        assert body["field"] == "Idempotency-Key"
