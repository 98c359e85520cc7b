"""Seed 004 (Task Manager API, no /api/v1 prefix): task_type + model_name + input_data, the list
envelope, DELETE 200/404/409, /health and /metrics at the root; root paths speak seed 004's status words."""

from __future__ import annotations

import httpx
import pytest
from kt_api_support import ALICE_KEY, Stack, assert_error_body

CREATE = {
    "task_type": "text_generation",
    "model_name": "microsoft/DialoGPT-medium",
    "input_data": {"prompt": "Hello, how are you today?"},
    "parameters": {"max_length": 100, "temperature": 0.8, "do_sample": True},
}


@pytest.fixture
def root_client(shared: Stack) -> httpx.Client:
    return shared.client(ALICE_KEY, prefix="")


def test_create_task(root_client: httpx.Client) -> None:
    response = root_client.post("/tasks", json=CREATE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["task_id"] and body["status"] == "pending"
    assert body["task_type"] == "text_generation" and body["model_name"] == "microsoft/DialoGPT-medium"
    assert body["created_at"] and "estimated_completion" in body
    assert body["template"] == "text-generation"
    assert body["parameters"]["input_data"]["prompt"] == "Hello, how are you today?"
    assert body["parameters"]["input_data"]["temperature"] == 0.8


@pytest.mark.parametrize("task_type", ["text_generation", "image_generation", "text_to_speech", "image_to_text"])
def test_every_seed_task_type_maps_to_a_template(root_client: httpx.Client, task_type: str) -> None:
    response = root_client.post("/tasks", json={**CREATE, "task_type": task_type,
                                                "input_data": {"prompt": "x", "image_url": "http://x/y.png"}})
    assert response.status_code == 201, response.text


def test_create_validation(root_client: httpx.Client) -> None:
    unknown = assert_error_body(root_client.post("/tasks", json={**CREATE, "task_type": "mind_reading"}), 422)
    assert unknown["field"] == "task_type" and "text_generation" in unknown["detail"]
    no_model = {k: v for k, v in CREATE.items() if k != "model_name"}
    assert assert_error_body(root_client.post("/tasks", json=no_model), 422)["field"] == "model_name"


def test_get_task_status(root_client: httpx.Client, shared: Stack) -> None:
    task = root_client.post("/tasks", json=CREATE).json()
    shared.set_status({**task, "id": task["task_id"]}, {
        "phase": "Succeeded", "startedAt": "2030-05-30T12:00:15Z", "completedAt": "2030-05-30T12:01:30Z",
        "nodeName": "worker_gpu_0", "result": {"generated_text": "Hello!", "tokens_generated": 18},
    }, client=root_client)
    body = root_client.get(f"/tasks/{task['task_id']}").json()
    assert body["status"] == "completed" and body["worker_id"] == "worker_gpu_0"
    assert body["result"]["generated_text"] == "Hello!"
    assert body["started_at"] == "2030-05-30T12:00:15Z" and body["completed_at"] == "2030-05-30T12:01:30Z"
    assert_error_body(root_client.get("/tasks/task_123e4567-e89b-12d3-a456-426614174000"), 404)


def test_queued_reads_as_pending_at_the_root(root_client: httpx.Client, shared: Stack) -> None:
    task = root_client.post("/tasks", json=CREATE).json()
    shared.set_status({**task, "id": task["task_id"]}, {"phase": "Queued", "queuePosition": 2})
    with shared.client(ALICE_KEY) as v1:
        shared.wait_for(lambda: v1.get(f"/tasks/{task['task_id']}").json()["status"] == "queued")
    assert root_client.get(f"/tasks/{task['task_id']}").json()["status"] == "pending"
    listed = root_client.get("/tasks", params={"status": "pending", "limit": 1000}).json()
    assert task["task_id"] in {t["task_id"] for t in listed["tasks"]}


def test_list_tasks(root_client: httpx.Client) -> None:
    for _ in range(2):
        root_client.post("/tasks", json=CREATE)
    response = root_client.get("/tasks", params={"task_type": "text_generation", "model_name":
                                                 "microsoft/DialoGPT-medium", "limit": 10, "offset": 0,
                                                 "sort_by": "task_type", "sort_order": "asc"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"tasks", "total", "limit", "offset"} and body["limit"] == 10 and body["total"] >= 2
    assert all(t["task_type"] == "text_generation" for t in body["tasks"])
    assert root_client.get("/tasks?status=completed&limit=10").status_code == 200


def test_cancel_task(root_client: httpx.Client, shared: Stack) -> None:
    task = root_client.post("/tasks", json=CREATE).json()
    response = root_client.delete(f"/tasks/{task['task_id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == task["task_id"] and body["status"] == "cancelled" and body["cancelled_at"]
    assert_error_body(root_client.delete("/tasks/task_does_not_exist"), 404)
    done = root_client.post("/tasks", json=CREATE).json()
    shared.set_status({**done, "id": done["task_id"]}, {"phase": "Failed", "completedAt": "2030-01-01T00:00:00Z"},
                      client=root_client)
    assert_error_body(root_client.delete(f"/tasks/{done['task_id']}"), 409)


def test_health_and_metrics_at_the_root(shared: Stack) -> None:
    with shared.client(prefix="") as anonymous:
        health = anonymous.get("/health")
        assert health.status_code == 200
        body = health.json()
        for key in ("status", "timestamp", "version", "uptime", "active_tasks", "pending_tasks",
                    "completed_tasks", "failed_tasks"):
            assert key in body, key
        assert body["status"] == "healthy"
        metrics = anonymous.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'task_manager_tasks_total{status="completed"}' in metrics.text
        assert "kubetask_api_requests_total" in metrics.text


def test_root_aliases_are_not_in_the_schema(shared: Stack) -> None:
    with shared.client(prefix="") as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    assert "/api/v1/tasks" in paths and "/tasks" not in paths and "/health" not in paths
