"""Seed 003 (Distributed Task Queue System): task_name + task_args/kwargs, queue_name, retries,
scheduled_at; list envelope with uppercase filters; cancel; replay; timeline; compare; error codes."""

from __future__ import annotations

import httpx
from kt_api_support import Stack, assert_error_body

PAYMENT = {
    "task_name": "process_payment",
    "task_args": [1234],
    "task_kwargs": {"currency": "USD", "amount": 99.99},
    "priority": 8,
    "queue_name": "payments",
    "max_retries": 3,
    "timeout_seconds": 300,
    "scheduled_at": "2026-01-25T14:30:00Z",
}


def test_submit_task(a: httpx.Client) -> None:
    response = a.post("/tasks", json=PAYMENT)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["task_id"] and body["task_name"] == "process_payment"
    assert body["status"] == "pending" and body["priority"] == 8 and body["created_at"]
    assert body["queue_name"] == "payments" and body["max_retries"] == 3
    assert body["task_args"] == [1234] and body["task_kwargs"] == {"currency": "USD", "amount": 99.99}
    assert body["scheduled_at"] == "2026-01-25T14:30:00Z"
    assert a.post("/tasks?async=true", json=PAYMENT).status_code == 201


def test_task_name_without_a_template_says_what_runs(a: httpx.Client) -> None:
    body = assert_error_body(a.post("/tasks", json={**PAYMENT, "task_name": "send_email"}), 422)
    assert body["field"] == "task_name"
    for choice in ("template", "script_content", "image"):
        assert choice in body["detail"]
    inline = a.post("/tasks", json={"task_name": "send_email", "script_content": "print('mail')"})
    assert inline.status_code == 201 and inline.json()["task_name"] == "send_email"


def test_get_task_fields(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Running", "startedAt": "2030-01-25T14:05:00Z", "nodeName": "gpu-node-1",
                             "executions": [{"id": 1, "nodeName": "gpu-node-1",
                                             "startedAt": "2030-01-25T14:05:00Z"}]}, client=a)
    body = a.get(f"/tasks/{task['task_id']}").json()
    assert body["status"] == "running" and body["worker_id"] == "gpu-node-1"
    assert body["started_at"] == "2030-01-25T14:05:00Z" and body["completed_at"] is None
    assert body["retry_count"] == 0 and body["max_retries"] == 3


def test_list_with_uppercase_status_and_envelope(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Failed", "completedAt": "2030-01-01T00:00:00Z"}, client=a)
    body = a.get("/tasks?status=FAILED&priority=8&limit=10").json()
    assert {"total", "limit", "offset", "tasks"} <= set(body) and body["limit"] == 10
    assert task["task_id"] in {t["task_id"] for t in body["tasks"]}
    assert all(t["status"] == "failed" and t["priority"] == 8 for t in body["tasks"])
    by_queue = a.get("/tasks", params={"queue_name": "payments", "sort_by": "priority", "sort_order": "asc"})
    assert by_queue.status_code == 200 and all(t["queue_name"] == "payments" for t in by_queue.json()["tasks"])
    assert_error_body(a.get("/tasks", params={"sort_by": "bogus"}), 422)
    assert_error_body(a.get("/tasks", params={"status": "sleeping"}), 422)


def test_cancel_via_post(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    response = a.post(f"/tasks/{task['task_id']}/cancel")
    assert response.status_code == 200
    assert response.json()["task_id"] == task["task_id"] and response.json()["status"] == "cancelled"
    assert response.json()["message"]
    done = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(done, {"phase": "Succeeded", "completedAt": "2030-01-01T00:00:00Z"}, client=a)
    assert_error_body(a.post(f"/tasks/{done['task_id']}/cancel"), 409, "TASK_ALREADY_FINISHED")


def test_replay(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Failed", "completedAt": "2030-01-01T00:00:00Z"}, client=a)
    response = a.post(f"/tasks/{task['task_id']}/replay")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["original_task_id"] == task["task_id"] and body["task_id"] != task["task_id"]
    assert body["status"] == "pending"
    clone = a.get(f"/tasks/{body['task_id']}").json()
    assert clone["replay_of"] == task["task_id"] and clone["task_kwargs"] == PAYMENT["task_kwargs"]


def test_timeline(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Succeeded", "startedAt": "2030-01-25T14:05:00Z",
                             "completedAt": "2030-01-25T14:10:00Z",
                             "executions": [{"id": 1, "nodeName": "worker-1", "startedAt": "2030-01-25T14:05:00Z",
                                             "finishedAt": "2030-01-25T14:10:00Z", "exitCode": 0}]}, client=a)
    body = a.get(f"/tasks/{task['task_id']}/timeline").json()
    assert body["task_id"] == task["task_id"] and body["task_name"] == "process_payment"
    assert body["status"] == "completed" and body["duration_seconds"] == 300
    started = [e for e in body["events"] if e["event_type"] == "started"]
    assert started and started[0]["details"]["worker_id"] == "worker-1"
    assert [e["timestamp"] for e in body["events"]] == sorted(e["timestamp"] for e in body["events"])


def test_compare(a: httpx.Client) -> None:
    one = a.post("/tasks", json=PAYMENT).json()
    two = a.post("/tasks", json={**PAYMENT, "task_args": [99]}).json()
    body = a.get(f"/tasks/{one['task_id']}/compare/{two['task_id']}").json()
    assert body["same_function"] is True and body["same_args"] is False and body["same_priority"] is True
    assert set(body["timing"]) >= {"task1_duration", "task2_duration"}
    assert_error_body(a.get(f"/tasks/{one['task_id']}/compare/nope"), 404)


def test_error_codes_and_request_ids(a: httpx.Client) -> None:
    body = assert_error_body(a.get("/tasks/550e8400-e29b-41d4-a716-446655440000"), 404, "TASK_NOT_FOUND")
    assert body["detail"].startswith("Task ") and body["timestamp"].endswith("Z")
    echoed = a.get("/tasks/nope", headers={"X-Request-ID": "req-abc-123"})
    assert echoed.json()["request_id"] == "req-abc-123" and echoed.headers["x-request-id"] == "req-abc-123"


def test_health_under_the_prefix(shared: Stack) -> None:
    with shared.client() as anonymous:
        body = anonymous.get("/health").json()
    assert body["status"] == "healthy" and body["version"] and isinstance(body["checks"], dict)
