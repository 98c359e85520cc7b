"""Seed 004 (BitingLip Task Manager API) as a client written from it would use it.

Root paths (no /api/v1): POST/GET/DELETE /tasks, GET /health, GET /metrics; task_type + model_name +
input_data; statuses pending|running|completed|failed|cancelled (no "queued" at the root); list
envelope {tasks, total, limit, offset} with status/task_type/model_name filters and sort_by/sort_order;
DELETE -> 200 {task_id, status, cancelled_at} or 409 once finished; 404 TASK_NOT_FOUND.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from compat_support import (
    FAR_FUTURE,
    DevServer,
    add_tenant,
    assert_task_manager_error,
    is_iso,
    is_uuid,
    parse_iso,
    sim,
    wait_status,
)

EXAMPLE = {
    "task_type": "text_generation",
    "model_name": "microsoft/DialoGPT-medium",
    "input_data": {"prompt": "Hello, how are you today?"},
    "parameters": {"max_length": 100, "temperature": 0.8, "do_sample": True},
}
STATUSES_004 = {"pending", "running", "completed", "failed", "cancelled"}


def _wait(client: httpx.Client, task_id: str, wanted: set[str]) -> dict[str, object]:
    return wait_status(client, task_id, wanted, path="/tasks/")


def test_create_task(root_alice: httpx.Client) -> None:
    response = root_alice.post("/tasks", json=EXAMPLE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["task_id"], str) and body["task_id"]
    assert body["status"] == "pending"
    assert body["task_type"] == "text_generation"
    assert body["model_name"] == "microsoft/DialoGPT-medium"
    assert is_iso(body["created_at"])
    assert "estimated_completion" in body
    if body["estimated_completion"] is not None:
        assert parse_iso(body["estimated_completion"]) >= parse_iso(body["created_at"])


@pytest.mark.parametrize("task_type", ["text_generation", "image_generation", "text_to_speech", "image_to_text"])
def test_every_task_type_is_accepted(root_alice: httpx.Client, task_type: str) -> None:
    response = root_alice.post("/tasks", json={**EXAMPLE, "task_type": task_type, "scheduled_at": FAR_FUTURE})
    assert response.status_code == 201, response.text
    assert response.json()["task_type"] == task_type
    root_alice.delete(f"/tasks/{response.json()['task_id']}")


def test_validation_errors(root_alice: httpx.Client) -> None:
    unknown = assert_task_manager_error(root_alice.post("/tasks", json={**EXAMPLE, "task_type": "mind_reading"}),
                                        422, "VALIDATION_ERROR")
    assert unknown["error"]["details"]["field"] == "task_type" and "text_generation" in unknown["error"]["message"]
    without_model = {k: v for k, v in EXAMPLE.items() if k != "model_name"}
    assert assert_task_manager_error(root_alice.post("/tasks", json=without_model), 422)["error"]["details"][
        "field"] == "model_name"
    without_input = {k: v for k, v in EXAMPLE.items() if k != "input_data"}
    assert_task_manager_error(root_alice.post("/tasks", json=without_input), 422)
    assert_task_manager_error(root_alice.post("/tasks", json={**EXAMPLE, "input_data": "not an object"}), 422)


def test_python_sdk_flow_poll_until_done(root_alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={
        "task_type": "text_generation", "model_name": "microsoft/DialoGPT-medium",
        "input_data": {"prompt": "Hello world!"},
        "annotations": sim(0.3, result={"generated_text": "Hi!", "tokens_generated": 2, "inference_time": 0.3}),
    }).json()
    seen: set[str] = set()
    body = _wait(root_alice, created["task_id"], {"completed", "failed", "cancelled"})
    seen.add(str(body["status"]))
    assert body["status"] == "completed"
    assert body["result"] == {"generated_text": "Hi!", "tokens_generated": 2, "inference_time": 0.3}
    for key in ("task_id", "status", "task_type", "model_name", "created_at", "started_at", "completed_at",
                "worker_id", "result"):
        assert key in body, key
    assert isinstance(body["worker_id"], str) and body["worker_id"]


def test_no_queued_status_at_the_root(root_alice: httpx.Client, alice: httpx.Client) -> None:
    waiting = root_alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    listed = root_alice.get("/tasks", params={"limit": 1000}).json()
    assert {t["status"] for t in listed["tasks"]} <= STATUSES_004
    assert root_alice.get(f"/tasks/{waiting['task_id']}").json()["status"] == "pending"
    pending = root_alice.get("/tasks", params={"status": "pending", "limit": 1000}).json()
    assert waiting["task_id"] in {t["task_id"] for t in pending["tasks"]}
    root_alice.delete(f"/tasks/{waiting['task_id']}")


def test_failed_task(root_alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(0.1, exit_code=1)}).json()
    body = _wait(root_alice, created["task_id"], {"completed", "failed"})
    assert body["status"] == "failed"
    assert body.get("error")


def test_get_unknown_task_is_404(root_alice: httpx.Client) -> None:
    body = assert_task_manager_error(root_alice.get("/tasks/task_123e4567-e89b-12d3-a456-426614174000"), 404,
                                     "TASK_NOT_FOUND")
    assert "task_123e4567" in body["error"]["message"]


def test_list_tasks(root_alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(0.1)}).json()
    _wait(root_alice, created["task_id"], {"completed"})
    response = root_alice.get("/tasks?status=completed&limit=10")
    assert response.status_code == 200
    body = response.json()
    assert {"tasks", "total", "limit", "offset"} <= set(body)
    assert body["limit"] == 10 and body["offset"] == 0 and body["total"] >= 1
    assert all(t["status"] == "completed" for t in body["tasks"])
    default = root_alice.get("/tasks").json()
    assert default["limit"] == 50 and default["offset"] == 0
    by_type = root_alice.get("/tasks", params={"task_type": "text_generation", "limit": 1000}).json()
    assert created["task_id"] in {t["task_id"] for t in by_type["tasks"]}
    assert all(t["task_type"] == "text_generation" for t in by_type["tasks"])
    other_type = root_alice.get("/tasks", params={"task_type": "text_to_speech", "limit": 1000}).json()
    assert created["task_id"] not in {t["task_id"] for t in other_type["tasks"]}
    by_model = root_alice.get("/tasks", params={"model_name": "microsoft/DialoGPT-medium", "limit": 1000}).json()
    assert created["task_id"] in {t["task_id"] for t in by_model["tasks"]}
    for item in body["tasks"]:
        assert {"task_id", "status", "task_type", "model_name", "created_at", "completed_at"} <= set(item)


@pytest.mark.parametrize("sort_by", ["created_at", "status", "task_type"])
def test_sort_fields(root_alice: httpx.Client, sort_by: str) -> None:
    for order in ("asc", "desc"):
        response = root_alice.get("/tasks", params={"sort_by": sort_by, "sort_order": order, "limit": 1000})
        assert response.status_code == 200, response.text
        values = [t[sort_by] or "" for t in response.json()["tasks"]]
        assert values == sorted(values, reverse=order == "desc"), (sort_by, order)


def test_cancel_task(root_alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(30)}).json()
    _wait(root_alice, created["task_id"], {"running"})
    response = root_alice.delete(f"/tasks/{created['task_id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == created["task_id"] and body["status"] == "cancelled" and is_iso(body["cancelled_at"])
    assert _wait(root_alice, created["task_id"], {"cancelled", "failed", "completed"})["status"] == "cancelled"
    assert_task_manager_error(root_alice.delete("/tasks/task_does_not_exist"), 404, "TASK_NOT_FOUND")
    done = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(0.1)}).json()
    _wait(root_alice, done["task_id"], {"completed"})
    assert_task_manager_error(root_alice.delete(f"/tasks/{done['task_id']}"), 409)


def test_health_at_root(dev_url_client: httpx.Client, root_alice: httpx.Client) -> None:
    # A seed-004 client sends its key on every call; anonymous probes get the verdict and version only.
    anonymous = dev_url_client.get("/health")
    assert anonymous.status_code == 200
    assert set(anonymous.json()) == {"status", "timestamp", "version", "checks"}
    response = root_alice.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and is_iso(body["timestamp"]) and isinstance(body["version"], str)
    assert isinstance(body["uptime"], int | float) and body["uptime"] >= 0
    for key in ("active_tasks", "pending_tasks", "completed_tasks", "failed_tasks"):
        assert isinstance(body[key], int) and body[key] >= 0


def test_metrics_at_root(dev_url_client: httpx.Client, root_alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(0.1)}).json()
    _wait(root_alice, created["task_id"], {"completed"})
    anonymous = dev_url_client.get("/metrics")
    assert anonymous.status_code == 200 and "task_manager_tasks_total" not in anonymous.text
    assert "kubetask_api_requests_total" in anonymous.text
    response = root_alice.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE task_manager_tasks_total" in text
    completed = re.search(r'^task_manager_tasks_total\{status="completed"\} (\S+)$', text, re.M)
    assert completed and float(completed.group(1)) >= 1
    for status in ("failed", "pending", "running"):
        assert f'task_manager_tasks_total{{status="{status}"}}' in text
    assert "# TYPE task_manager_processing_time_seconds histogram" in text
    count = re.search(r"^task_manager_processing_time_seconds_count (\S+)$", text, re.M)
    assert count and float(count.group(1)) >= 1, "the processing-time histogram observed no finished task"
    assert re.search(r'^task_manager_processing_time_seconds_bucket\{le="10.0"\} \S+$', text, re.M)


def test_root_paths_need_the_key(dev: DevServer) -> None:
    with dev.client(None, prefix="") as anonymous:
        assert_task_manager_error(anonymous.get("/tasks"), 401)
        assert_task_manager_error(anonymous.post("/tasks", json=EXAMPLE), 401)


def test_rate_limit_headers_at_root(root_alice: httpx.Client) -> None:
    response = root_alice.get("/tasks?limit=1")
    assert int(response.headers["X-RateLimit-Remaining"]) >= 0
    assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_root_and_prefixed_views_agree(root_alice: httpx.Client, alice: httpx.Client) -> None:
    created = root_alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    assert is_uuid(created["task_id"], "task_") and created["id"] == created["task_id"]
    prefixed = alice.get(f"/tasks/{created['task_id']}").json()  # every path accepts any id form
    assert prefixed["task_id"] == prefixed["id"] == created["task_id"].removeprefix("task_")
    assert prefixed["object_name"] == created["object_name"] and prefixed["task_type"] == "text_generation"
    assert root_alice.get(f"/tasks/{created['object_name']}").json()["task_id"] == created["task_id"]
    # Told otherwise, the root paths speak another profile.
    with_header = root_alice.get(f"/tasks/{created['task_id']}", headers={"X-Compat-Profile": "canonical"})
    assert with_header.json()["task_id"] == prefixed["id"]
    root_alice.delete(f"/tasks/{created['task_id']}")


# --------------------------------------------------------------------------- merged from the in-process suite


def test_create_maps_the_task_type_onto_its_template(root_alice: httpx.Client) -> None:
    body = root_alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    assert body["template"] == "text-generation"
    assert body["parameters"]["input_data"]["prompt"] == "Hello, how are you today?"
    assert body["parameters"]["input_data"]["temperature"] == 0.8  # inference options travel with the input
    root_alice.delete(f"/tasks/{body['task_id']}")


# --------------------------------------------------------------------------- the documented examples, as written


def test_taskmanager_profile_replays_the_documented_examples(root_alice: httpx.Client,
                                                             dev_url_client: httpx.Client) -> None:
    """The Task Manager API reference's examples at its root paths (its profile is their default)."""
    # Create Task -> 201 {"task_id": "task_<uuid>", "status": "pending", "task_type", "model_name", "created_at",
    # "estimated_completion"}
    response = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(0.3, result={
        "generated_text": "Hello! I'm doing great", "tokens_generated": 18, "inference_time": 1.2})})
    assert response.status_code == 201, response.text
    created = response.json()
    assert is_uuid(created["task_id"], "task_") and created["status"] == "pending"
    assert (created["task_type"], created["model_name"]) == ("text_generation", "microsoft/DialoGPT-medium")
    assert is_iso(created["created_at"]) and "estimated_completion" in created
    # Get Task Status -> completed, started_at, completed_at, worker_id, result.
    done = _wait(root_alice, created["task_id"], {"completed", "failed"})
    assert done["status"] == "completed" and isinstance(done["worker_id"], str) and done["worker_id"]
    assert done["result"] == {"generated_text": "Hello! I'm doing great", "tokens_generated": 18,
                              "inference_time": 1.2}
    assert is_iso(done["started_at"]) and is_iso(done["completed_at"])
    # List Tasks ?status=completed&limit=10 -> {"tasks": [...], "total", "limit": 10, "offset": 0}
    listed = root_alice.get("/tasks?status=completed&limit=10").json()
    assert set(listed) >= {"tasks", "total", "limit", "offset"} and listed["limit"] == 10 and listed["offset"] == 0
    assert all(is_uuid(t["task_id"], "task_") and t["status"] == "completed" for t in listed["tasks"])
    # Cancel Task -> {"task_id", "status": "cancelled", "cancelled_at"}; 404; 409 once finished.
    waiting = root_alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    cancelled = root_alice.delete(f"/tasks/{waiting['task_id']}")
    assert cancelled.status_code == 200
    assert {k: cancelled.json()[k] for k in ("task_id", "status")} == {"task_id": waiting["task_id"],
                                                                      "status": "cancelled"}
    assert is_iso(cancelled.json()["cancelled_at"])
    assert_task_manager_error(root_alice.delete(f"/tasks/{created['task_id']}"), 409)
    assert_task_manager_error(root_alice.get("/tasks/task_123e4567-e89b-12d3-a456-426614174000"), 404,
                              "TASK_NOT_FOUND")
    # Health and metrics.
    health = root_alice.get("/health").json()
    assert health["status"] == "healthy" and {"active_tasks", "pending_tasks", "completed_tasks",
                                              "failed_tasks", "uptime", "version", "timestamp"} <= set(health)
    assert 'task_manager_tasks_total{status="completed"}' in root_alice.get("/metrics").text


def test_poll_loops_of_two_apis_on_one_server(dev: DevServer, root_alice: httpx.Client) -> None:
    """The Task Manager SDK's ``while task.status in ["pending", "running"]`` and an AI Task Orchestra client's
    ``while status in ["queued", "running"]``, against the same server: each sees the waiting task as waiting
    (not as an unknown word that ends its loop) and ends on completed."""
    add_tenant(dev, "polly", "dev-polly-orchestra-key", profile="orchestra")
    blocker = root_alice.post("/tasks", json={**EXAMPLE, "annotations": sim(4)}).json()
    tm_task = root_alice.post("/tasks", json={**EXAMPLE, "depends_on": [blocker["task_id"]],
                                              "annotations": sim(0.2)}).json()
    with dev.client("dev-polly-orchestra-key") as orchestra:
        first = orchestra.post("/tasks", json={"template": "ollama-inference", "annotations": sim(4),
                                               "parameters": {"model": "m", "prompt": "p"}}).json()
        orch_task = orchestra.post("/tasks", json={"template": "ollama-inference", "depends_on": [first["id"]],
                                                   "annotations": sim(0.2),
                                                   "parameters": {"model": "m", "prompt": "p"}}).json()
        seen_tm: list[str] = []
        seen_orch: list[str] = []
        deadline = time.monotonic() + 120
        tm_status, orch_status = tm_task["status"], orch_task["status"]
        while (tm_status in ("pending", "running") or orch_status in ("queued", "running")) \
                and time.monotonic() < deadline:
            time.sleep(0.25)
            if tm_status in ("pending", "running"):
                tm_status = root_alice.get(f"/tasks/{tm_task['task_id']}").json()["status"]
                seen_tm.append(tm_status)
            if orch_status in ("queued", "running"):
                orch_status = orchestra.get(f"/tasks/{orch_task['id']}").json()["status"]
                seen_orch.append(orch_status)
    assert tm_status == "completed" and seen_tm[0] == "pending", seen_tm
    assert orch_status == "completed" and seen_orch[0] == "queued", seen_orch
    assert set(seen_tm) <= {"pending", "running", "completed"} and set(seen_orch) <= {"queued", "running",
                                                                                        "completed"}
