"""Seed 002 (AI Task Orchestra API Reference): templates + parameters, depends_on, grouped status,
priority via query, DELETE (200 with a body per DESIGN §4, not 204), templates and validation."""

from __future__ import annotations

import httpx
from kt_api_support import Stack, assert_error_body

OLLAMA = {
    "template": "ollama-inference",
    "parameters": {"model": "llama3.1:8b", "prompt": "Explain quantum computing in simple terms"},
    "priority": 5,
}


def test_create_with_template_and_dependencies(a: httpx.Client) -> None:
    first = a.post("/tasks", json=OLLAMA).json()
    second = a.post("/tasks", json=OLLAMA).json()
    response = a.post("/tasks", json={**OLLAMA, "depends_on": [first["id"], second["id"]]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] and body["status"] in ("pending", "queued")
    assert body["priority"] == 5 and body["template"] == "ollama-inference"
    assert body["parameters"] == OLLAMA["parameters"]
    assert body["depends_on"] == [first["id"], second["id"]]
    assert body["created_at"]


def test_unknown_dependency_and_template_are_refused(a: httpx.Client) -> None:
    missing = assert_error_body(a.post("/tasks", json={**OLLAMA, "depends_on": ["task-id-1"]}), 400)
    assert "task-id-1" in missing["detail"]
    unknown = assert_error_body(a.post("/tasks", json={**OLLAMA, "template": "nope"}), 422, "TEMPLATE_NOT_FOUND")
    assert unknown["field"] == "template" and "ollama-inference" in unknown["detail"]
    bad = assert_error_body(a.post("/tasks", json={"template": "ollama-inference", "parameters": {"model": "x"}}),
                            422, "INVALID_PARAMETERS")
    assert "prompt" in bad["detail"]


def test_list_as_array_and_filters(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=OLLAMA).json()
    shared.set_status(task, {"phase": "Queued", "queuePosition": 1}, client=a)
    array = a.get("/tasks", params={"format": "array", "status": "queued", "template": "ollama-inference",
                                    "limit": 100, "offset": 0})
    assert array.status_code == 200
    items = array.json()
    assert isinstance(items, list) and task["id"] in {t["id"] for t in items}
    assert all(t["status"] == "queued" and t["template"] == "ollama-inference" for t in items)
    assert {"id", "status", "priority", "created_at", "template"} <= set(items[0])


def test_tasks_grouped_by_status(a: httpx.Client, shared: Stack) -> None:
    running = a.post("/tasks", json=OLLAMA).json()
    shared.set_status(running, {"phase": "Running", "startedAt": "2030-01-01T00:00:00Z"}, client=a)
    groups = a.get("/tasks/status").json()
    assert set(groups) >= {"queued", "running", "completed", "failed", "cancelled"}
    assert running["id"] in {t["id"] for t in groups["running"]}
    assert groups["running"][0]["started_at"]


def test_get_with_result_and_resource_usage(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=OLLAMA).json()
    shared.set_status(task, {
        "phase": "Succeeded", "startedAt": "2030-01-01T10:32:00Z", "completedAt": "2030-01-01T10:45:00Z",
        "result": {"output": "Example output from the model"}, "gpuSeconds": 780.0,
    }, client=a)
    body = a.get(f"/tasks/{task['id']}").json()
    assert body["status"] == "completed"
    assert body["result"] == {"output": "Example output from the model"}
    assert body["resource_usage"]["model_name"] == "llama3.1:8b"
    assert body["resource_usage"]["inference_time_seconds"] == 780
    assert body["started_at"] == "2030-01-01T10:32:00Z" and body["completed_at"] == "2030-01-01T10:45:00Z"


def test_update_priority_via_query(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=OLLAMA).json()
    response = a.patch(f"/tasks/{task['id']}/priority?priority=8")
    assert response.status_code == 200
    assert response.json() == {"id": task["id"], "task_id": task["id"], "priority": 8, "status": "pending"}
    assert a.patch(f"/tasks/{task['id']}/priority", json={"priority": 2}).json()["priority"] == 2
    assert_error_body(a.patch(f"/tasks/{task['id']}/priority?priority=11"), 422)
    shared.set_status(task, {"phase": "Failed", "completedAt": "2030-01-01T00:00:00Z"}, client=a)
    assert_error_body(a.patch(f"/tasks/{task['id']}/priority?priority=9"), 409)


def test_cancel_is_200_with_a_body(a: httpx.Client) -> None:
    task = a.post("/tasks", json=OLLAMA).json()
    response = a.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.json()["task_id"] == task["id"] and response.json()["status"] == "cancelled"


def test_templates_list_get_and_validate(a: httpx.Client) -> None:
    templates = a.get("/templates").json()
    assert isinstance(templates, list)
    names = {t["name"] for t in templates}
    assert {"ollama-inference", "git-script-execution"} <= names
    ollama = next(t for t in templates if t["name"] == "ollama-inference")
    assert ollama["description"]
    params = {p["name"]: p for p in ollama["parameters"]}
    assert params["model"]["required"] is True and params["model"]["type"] == "string"
    assert "description" in params["prompt"]
    detail = a.get("/templates/ollama-inference").json()
    assert detail["name"] == "ollama-inference" and isinstance(detail["steps"], list)
    assert_error_body(a.get("/templates/nope"), 404, "TEMPLATE_NOT_FOUND")
    ok = a.post("/templates/validate?template_name=ollama-inference", json=OLLAMA["parameters"]).json()
    assert ok == {"valid": True, "missing_parameters": [], "invalid_parameters": [], "template": "ollama-inference"}
    bad = a.post("/templates/validate", params={"template_name": "ollama-inference"},
                 json={"model": "x", "temperature": 2}).json()
    assert bad["valid"] is False and bad["missing_parameters"] == ["prompt"]
    assert bad["invalid_parameters"] == ["temperature"]


def test_error_format_has_detail(shared: Stack) -> None:
    with shared.client("wrong-key") as wrong:
        body = assert_error_body(wrong.get("/tasks"), 401)
        assert isinstance(body["detail"], str)
