"""Seed 002 (AI Task Orchestra API): the one home of its documented examples, as its clients use them.

Base URL http://host/api/v1, X-API-Key auth; template tasks; list (bare array via ?format=array per
DESIGN §4), GET /tasks/status grouping, GET /tasks/{id} with result and resource_usage,
PATCH /tasks/{id}/priority?priority=8, DELETE (200 per DESIGN §4), templates list/get/validate,
{"detail": ...} errors with 400/401/404/422.
"""

from __future__ import annotations

import httpx
import pytest
from compat_support import (
    FAR_FUTURE,
    PUBLIC_STATUSES,
    DevServer,
    add_tenant,
    assert_error,
    is_iso,
    is_uuid,
    sim,
    wait_status,
)

EXAMPLE = {
    "template": "ollama-inference",
    "parameters": {"model": "llama3.1:8b", "prompt": "Explain quantum computing in simple terms"},
    "priority": 5,
}


def _ollama(**extra: object) -> dict[str, object]:
    return {**EXAMPLE, **extra}


def test_create_template_task(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json=_ollama(scheduled_at=FAR_FUTURE))
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["id"], str) and body["id"]
    assert body["status"] in ("pending", "queued")
    assert body["priority"] == 5
    assert is_iso(body["created_at"])
    assert body["template"] == "ollama-inference"
    assert body["parameters"] == EXAMPLE["parameters"]
    assert body["depends_on"] == []
    alice.delete(f"/tasks/{body['id']}")


def test_default_priority_is_5(alice: httpx.Client) -> None:
    body = alice.post("/tasks", json={k: v for k, v in _ollama(scheduled_at=FAR_FUTURE).items()
                                      if k != "priority"}).json()
    assert body["priority"] == 5
    alice.delete(f"/tasks/{body['id']}")


def test_depends_on_waits_for_dependencies(alice: httpx.Client) -> None:
    first = alice.post("/tasks", json=_ollama(annotations=sim(2, result={"output": "one"}))).json()
    second = alice.post("/tasks", json=_ollama(annotations=sim(0.1))).json()
    dependant = alice.post("/tasks", json=_ollama(depends_on=[first["id"], second["id"]],
                                                  annotations=sim(0.1))).json()
    assert sorted(dependant["depends_on"]) == sorted([first["id"], second["id"]])
    assert dependant["status"] == "pending"
    wait_status(alice, first["id"], {"running", "completed"})
    assert alice.get(f"/tasks/{dependant['id']}").json()["status"] in ("pending",)
    done = wait_status(alice, dependant["id"], {"completed", "failed"})
    assert done["status"] == "completed"
    assert done["started_at"] >= alice.get(f"/tasks/{first['id']}").json()["completed_at"]


def test_unknown_dependency_is_rejected(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json=_ollama(depends_on=["task-id-1", "task-id-2"]))
    assert response.status_code in (400, 404, 422), response.text
    assert_error(response, response.status_code)


def test_failed_dependency_fails_dependant(alice: httpx.Client) -> None:
    bad = alice.post("/tasks", json=_ollama(annotations=sim(0.1, exit_code=3))).json()
    dependant = alice.post("/tasks", json=_ollama(depends_on=[bad["id"]])).json()
    assert wait_status(alice, bad["id"], {"completed", "failed"})["status"] == "failed"
    assert wait_status(alice, dependant["id"], {"completed", "failed", "cancelled"})["status"] == "failed"


def test_missing_parameters_is_422(alice: httpx.Client) -> None:
    assert_error(alice.post("/tasks", json={"template": "ollama-inference", "parameters": {"model": "x"}}), 422)
    unknown = alice.post("/tasks", json={"template": "no-such-template", "parameters": {}})
    assert "no-such-template" in assert_error(unknown, 422)["detail"]
    assert_error(alice.post("/tasks", json=_ollama(priority=11)), 422)
    assert_error(alice.post("/tasks", json=_ollama(priority="5x")), 422)


def test_get_task_completed_with_result_and_usage(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_ollama(
        annotations=sim(0.2, result={"output": "Example output from the model"}))).json()
    body = wait_status(alice, task["id"], {"completed", "failed"})
    assert body["status"] == "completed"
    for key in ("id", "status", "priority", "created_at", "started_at", "completed_at", "template",
                "parameters", "result", "resource_usage"):
        assert key in body, key
    assert body["result"] == {"output": "Example output from the model"}
    assert body["parameters"] == EXAMPLE["parameters"]
    assert body["resource_usage"]["model_name"] == "llama3.1:8b"
    assert isinstance(body["resource_usage"]["inference_time_seconds"], int | float)


def test_list_tasks_filters(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_ollama(annotations=sim(0.1))).json()
    wait_status(alice, task["id"], {"completed"})
    as_array = alice.get("/tasks", params={"status": "completed", "template": "ollama-inference",
                                           "format": "array", "limit": 1000})
    assert as_array.status_code == 200
    items = as_array.json()
    assert isinstance(items, list) and task["id"] in {t["id"] for t in items}
    assert all(t["status"] == "completed" and t["template"] == "ollama-inference" for t in items)
    envelope = alice.get("/tasks", params={"template": "git-script-execution", "limit": 1000}).json()
    assert task["id"] not in {t["id"] for t in envelope["tasks"]}
    default = alice.get("/tasks").json()
    assert default["offset"] == 0 and isinstance(default["limit"], int)
    assert_error(alice.get("/tasks", params={"offset": -1}), 422)
    assert_error(alice.get("/tasks", params={"limit": -5}), 422)
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        assert alice.get("/tasks", params={"status": status}).status_code == 200


def test_tasks_grouped_by_status(alice: httpx.Client) -> None:
    waiting = alice.post("/tasks", json=_ollama(scheduled_at=FAR_FUTURE)).json()
    response = alice.get("/tasks/status")
    assert response.status_code == 200
    groups = response.json()
    for key in ("queued", "running", "completed", "failed", "cancelled"):
        assert isinstance(groups[key], list), key
    assert set(groups) <= PUBLIC_STATUSES
    for key, items in groups.items():
        assert all(t["status"] == key for t in items)
    assert waiting["id"] in {t["id"] for t in groups["pending"] + groups["queued"]}
    alice.delete(f"/tasks/{waiting['id']}")
    assert waiting["id"] in {t["id"] for t in alice.get("/tasks/status").json()["cancelled"]}


def test_update_priority_by_query(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_ollama(scheduled_at=FAR_FUTURE)).json()
    response = alice.patch(f"/tasks/{task['id']}/priority?priority=8")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {**body, "id": task["id"], "priority": 8}
    assert body["status"] in ("pending", "queued")
    assert alice.get(f"/tasks/{task['id']}").json()["priority"] == 8
    assert_error(alice.patch(f"/tasks/{task['id']}/priority?priority=11"), 422)
    assert_error(alice.patch(f"/tasks/{task['id']}/priority?priority=abc"), 422)
    assert_error(alice.patch(f"/tasks/{task['id']}/priority"), 422)
    assert_error(alice.patch("/tasks/no-such-task-0000/priority?priority=3"), 404)
    alice.delete(f"/tasks/{task['id']}")
    assert_error(alice.patch(f"/tasks/{task['id']}/priority?priority=3"), 409)


def test_cancel_task(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_ollama(scheduled_at=FAR_FUTURE)).json()
    response = alice.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200  # DESIGN §4: 200 with a body (seed 002 said 204)
    assert response.json()["status"] == "cancelled"
    assert_error(alice.delete("/tasks/no-such-task-0000"), 404)


def test_list_templates(alice: httpx.Client) -> None:
    response = alice.get("/templates")
    assert response.status_code == 200
    templates = {t["name"]: t for t in response.json()}
    for name in ("git-script-execution", "ollama-inference"):
        assert name in templates
    git = {p["name"]: p for p in templates["git-script-execution"]["parameters"]}
    for required in ("repo_url", "script_path", "output_path"):
        assert git[required]["required"] is True and git[required]["type"] == "string"
    ollama = {p["name"]: p for p in templates["ollama-inference"]["parameters"]}
    assert ollama["model"]["required"] is True and ollama["prompt"]["required"] is True
    assert ollama["system_prompt"]["required"] is False
    for param in ollama.values():
        assert set(param) >= {"name", "type", "required", "description"}
    assert isinstance(templates["ollama-inference"]["description"], str)


def test_get_template(alice: httpx.Client) -> None:
    response = alice.get("/templates/ollama-inference")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "ollama-inference" and isinstance(body["description"], str)
    assert [p["name"] for p in body["parameters"]][:3] == ["model", "prompt", "system_prompt"]
    assert isinstance(body["steps"], list) and body["steps"]
    assert_error(alice.get("/templates/no-such-template"), 404)


def test_validate_template_parameters(alice: httpx.Client) -> None:
    ok = alice.post("/templates/validate", params={"template_name": "ollama-inference"},
                    json={"model": "llama3.1:8b", "prompt": "Explain quantum computing in simple terms"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {**ok.json(), "valid": True, "missing_parameters": [], "invalid_parameters": []}
    missing = alice.post("/templates/validate?template_name=ollama-inference", json={"model": "llama3.1:8b"})
    assert missing.status_code == 200
    assert missing.json()["valid"] is False and missing.json()["missing_parameters"] == ["prompt"]
    unknown = alice.post("/templates/validate?template_name=ollama-inference",
                         json={"model": "llama3.1:8b", "prompt": "p", "temperature_x": 1}).json()
    assert unknown["valid"] is False and unknown["invalid_parameters"] == ["temperature_x"]
    wrong_type = alice.post("/templates/validate?template_name=git-script-execution",
                            json={"repo_url": {"not": "a string"}, "script_path": "a", "output_path": "b"}).json()
    assert wrong_type["valid"] is False and wrong_type["invalid_parameters"] == ["repo_url"]
    assert_error(alice.post("/templates/validate?template_name=nope", json={}), 404)
    assert_error(alice.post("/templates/validate", json={}), 422)


@pytest.mark.parametrize("path", ["/tasks", "/templates", "/tasks/status"])
def test_401_without_or_with_bad_key(dev: DevServer, path: str) -> None:
    with dev.client(None) as anonymous:
        assert_error(anonymous.get(path), 401)
    with dev.client("your-api-key-here") as wrong:
        assert_error(wrong.get(path), 401)


def test_404_on_unknown_task(alice: httpx.Client) -> None:
    body = assert_error(alice.get("/tasks/task-uuid"), 404)
    assert "task-uuid" in body["detail"]


# --------------------------------------------------------------------------- merged from the in-process suite


def test_unknown_template_and_bad_parameters_name_the_field(alice: httpx.Client) -> None:
    unknown = assert_error(alice.post("/tasks", json={**EXAMPLE, "template": "nope"}), 422, "TEMPLATE_NOT_FOUND")
    assert unknown["field"] == "template" and "ollama-inference" in unknown["detail"]
    bad = assert_error(alice.post("/tasks", json={"template": "ollama-inference", "parameters": {"model": "x"}}),
                       422, "INVALID_PARAMETERS")
    assert "prompt" in bad["detail"] and bad["field"] == "parameters.prompt"
    missing = assert_error(alice.post("/tasks", json=_ollama(depends_on=["task-id-1"])), 400, "DEPENDENCY_NOT_FOUND")
    assert "task-id-1" in missing["detail"]


# --------------------------------------------------------------------------- the documented examples, as written


ORCHESTRA_KEY = "dev-olivia-orchestra-key"


@pytest.fixture
def orchestra_key(dev: DevServer) -> str:
    """A tenant whose API key is pinned to the orchestra profile: a seed-002 client changes nothing."""
    add_tenant(dev, "olivia", ORCHESTRA_KEY, profile="orchestra")
    return ORCHESTRA_KEY


def test_orchestra_profile_replays_the_documented_examples(dev: DevServer, orchestra_key: str) -> None:
    """Every request/response example of the AI Task Orchestra API reference, with a key pinned to its profile."""
    with dev.client(orchestra_key) as client:
        # Create a Task: {"id": "task-uuid", "status": "queued", "priority": 5, "created_at", "template",
        # "parameters", "depends_on": []}
        first = client.post("/tasks", json={**EXAMPLE, "annotations": sim(1, result={"output": "Example output"})})
        assert first.status_code == 201, first.text
        created = first.json()
        assert is_uuid(created["id"]) and created["status"] == "queued" and created["priority"] == 5
        assert created["template"] == "ollama-inference" and created["parameters"] == EXAMPLE["parameters"]
        assert created["depends_on"] == [] and is_iso(created["created_at"])
        # ... with "depends_on": ["task-id-1", "task-id-2"]: the ids this API handed out.
        second = client.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
        dependant = client.post("/tasks", json={**EXAMPLE, "depends_on": [created["id"], second["id"]]})
        assert dependant.status_code == 201, dependant.text
        assert dependant.json()["depends_on"] == [created["id"], second["id"]]
        assert dependant.json()["status"] == "queued"  # waiting, in this API's word
        # List Tasks: a bare array; ?status=queued (this API's waiting word) finds the task just created.
        listed = client.get("/tasks", params={"status": "queued", "template": "ollama-inference", "limit": 100,
                                              "offset": 0})
        assert listed.status_code == 200 and isinstance(listed.json(), list)
        assert {second["id"], dependant.json()["id"]} <= {t["id"] for t in listed.json()}
        assert all(t["status"] == "queued" for t in listed.json())
        # Get Tasks by Execution Status: {"queued": [...], "running", "completed", "failed", "cancelled"}.
        groups = client.get("/tasks/status").json()
        assert set(groups) == {"queued", "running", "completed", "failed", "cancelled"}
        assert second["id"] in {t["id"] for t in groups["queued"]}
        # Update Task Priority: PATCH ?priority=8 -> {"id", "priority": 8, "status": "queued"}.
        priority = client.patch(f"/tasks/{second['id']}/priority?priority=8")
        assert priority.status_code == 200
        assert {k: priority.json()[k] for k in ("id", "priority", "status")} == {
            "id": second["id"], "priority": 8, "status": "queued"}
        # Get Task: completed, with started_at, completed_at, result and resource_usage.model_name.
        done = wait_status(client, created["id"], {"completed", "failed"})
        assert done["status"] == "completed" and done["result"] == {"output": "Example output"}
        assert is_iso(done["started_at"]) and is_iso(done["completed_at"])
        assert done["resource_usage"]["model_name"] == "llama3.1:8b"
        assert isinstance(done["resource_usage"]["inference_time_seconds"], int | float)
        # Cancel Task: DELETE -> "No content (204)".
        cancelled = client.delete(f"/tasks/{second['id']}")
        assert cancelled.status_code == 204 and cancelled.content == b""
        assert client.get(f"/tasks/{second['id']}").json()["status"] == "cancelled"
        # Templates: a bare array; get; validate {"valid": true, "missing_parameters": [], "invalid_parameters": []}.
        templates = client.get("/templates").json()
        assert isinstance(templates, list)
        assert {"git-script-execution", "ollama-inference"} <= {t["name"] for t in templates}
        assert client.get("/templates/ollama-inference").json()["steps"]
        valid = client.post("/templates/validate?template_name=ollama-inference", json=EXAMPLE["parameters"]).json()
        assert (valid["valid"], valid["missing_parameters"], valid["invalid_parameters"]) == (True, [], [])
        # Errors: {"detail": "Error message"} with 404 / 422.
        assert "detail" in assert_error(client.get("/tasks/task-uuid"), 404)
        assert "detail" in assert_error(client.post("/tasks", json={"template": "ollama-inference"}), 422)
        for task_id in (dependant.json()["id"],):
            client.delete(f"/tasks/{task_id}")
    with dev.client("your-api-key-here") as wrong:  # 401 Unauthorized: missing or invalid API key
        assert "detail" in assert_error(wrong.get("/tasks"), 401)


def test_the_same_key_gets_another_profile_by_header(dev: DevServer, orchestra_key: str) -> None:
    with dev.client(orchestra_key, **{"X-Compat-Profile": "canonical"}) as client:
        assert isinstance(client.get("/tasks").json(), dict)  # the envelope
    with dev.client(orchestra_key) as client:
        assert isinstance(client.get("/tasks", params={"format": "envelope"}).json(), dict)
        assert_error(client.get("/tasks", headers={"X-Compat-Profile": "nope"}), 422, "UNKNOWN_PROFILE")
