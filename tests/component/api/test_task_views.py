"""How the API shows states the operator writes, played here by writing Task status directly: execution
history, results and usage, timelines, grouping, and the words of each compatibility profile.

The seeds' documented examples, run against the real operator, live in tests/component/compat/test_seed_*.
"""

from __future__ import annotations

import httpx
import pytest
from kt_api_support import ALICE_KEY, Stack, assert_error_body

EXAMPLE = {
    "name": "Data Processing Script",
    "description": "Process CSV data and generate report",
    "script_content": "import pandas as pd\\nprint('Processing...')",
    "script_type": "python",
    "timeout_seconds": 30,
    "metadata": {"tags": ["data", "processing"], "priority": "high"},
}


OLLAMA = {
    "template": "ollama-inference",
    "parameters": {"model": "llama3.1:8b", "prompt": "Explain quantum computing in simple terms"},
    "priority": 5,
}


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


CREATE = {
    "task_type": "text_generation",
    "model_name": "microsoft/DialoGPT-medium",
    "input_data": {"prompt": "Hello, how are you today?"},
    "parameters": {"max_length": 100, "temperature": 0.8, "do_sample": True},
}


@pytest.fixture
def root_client(shared: Stack) -> httpx.Client:
    return shared.client(ALICE_KEY, prefix="")


def test_list_with_filtering_example(a: httpx.Client, shared: Stack) -> None:
    ids = [a.post("/tasks", json={**EXAMPLE, "name": f"job {i}"}).json()["id"] for i in range(3)]
    running = a.get(f"/tasks/{ids[1]}").json()
    shared.set_status(running, {"phase": "Running", "startedAt": "2030-01-01T00:00:00Z"}, client=a)
    response = a.get("/tasks?status=running&page=1&limit=20&sort=created_at&order=desc")
    assert response.status_code == 200
    body = response.json()
    assert {"total", "limit", "offset", "tasks"} <= set(body)
    assert body["limit"] == 20 and body["offset"] == 0
    assert [t["id"] for t in body["tasks"]] == [ids[1]]
    for synonym in ("RUNNING", "in_progress", "Running"):
        assert [t["id"] for t in a.get("/tasks", params={"status": synonym}).json()["tasks"]] == [ids[1]]


def test_execute_and_execution_history(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=EXAMPLE).json()
    pending = a.post(f"/tasks/{task['id']}/execute")
    assert pending.status_code == 200 and pending.json()["execution_requested"] is False
    executions = [
        {"id": 1, "jobName": f"{task['object_name']}-1", "podName": f"{task['object_name']}-1-abcde",
         "nodeName": "gpu-node-1",
         "startedAt": "2030-01-01T00:00:00Z", "finishedAt": "2030-01-01T00:00:10Z", "exitCode": 1,
         "reason": "Error", "message": "exit 1"},
        {"id": 2, "jobName": f"{task['object_name']}-2", "podName": f"{task['object_name']}-2-fghij",
         "nodeName": "gpu-node-2",
         "startedAt": "2030-01-01T00:01:00Z"},
    ]
    shared.set_status(task, {"phase": "Running", "executions": executions, "retryCount": 1,
                             "startedAt": "2030-01-01T00:00:00Z", "nodeName": "gpu-node-2"}, client=a)
    history = a.get(f"/tasks/{task['id']}/executions").json()
    assert history["total"] == 2
    assert [e["status"] for e in history["executions"]] == ["failed", "running"]
    one = a.get(f"/tasks/{task['id']}/executions/1").json()
    assert one["exit_code"] == 1 and one["duration_seconds"] == 10 and one["worker_id"] == "gpu-node-1"
    assert_error_body(a.get(f"/tasks/{task['id']}/executions/9"), 404, "EXECUTION_NOT_FOUND")
    assert_error_body(a.post(f"/tasks/{task['id']}/execute"), 409, "TASK_RUNNING")
    assert_error_body(a.delete(f"/tasks/{task['id']}/executions/1"), 409, "EXECUTION_NOT_RUNNING")
    cancelled = a.delete(f"/tasks/{task['id']}/executions/2")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


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


def test_get_task_fields(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Running", "startedAt": "2030-01-25T14:05:00Z", "nodeName": "gpu-node-1",
                             "executions": [{"id": 1, "nodeName": "gpu-node-1",
                                             "startedAt": "2030-01-25T14:05:00Z"}]}, client=a)
    body = a.get(f"/tasks/{task['task_id']}").json()
    assert body["status"] == "running" and body["worker_id"] == "gpu-node-1"
    assert body["started_at"] == "2030-01-25T14:05:00Z" and body["completed_at"] is None
    assert body["retry_count"] == 0 and body["max_retries"] == 3


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
    missing = root_client.get("/tasks/task_123e4567-e89b-12d3-a456-426614174000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TASK_NOT_FOUND"


def test_queued_reads_as_pending_at_the_root(root_client: httpx.Client, shared: Stack) -> None:
    task = root_client.post("/tasks", json=CREATE).json()
    shared.set_status({**task, "id": task["task_id"]}, {"phase": "Queued", "queuePosition": 2})
    with shared.client(ALICE_KEY) as v1:
        shared.wait_for(lambda: v1.get(f"/tasks/{task['task_id']}").json()["status"] == "queued")
    assert root_client.get(f"/tasks/{task['task_id']}").json()["status"] == "pending"
    listed = root_client.get("/tasks", params={"status": "pending", "limit": 1000}).json()
    assert task["task_id"] in {t["task_id"] for t in listed["tasks"]}


def test_an_admitted_task_waits_until_its_pod_starts(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(task, {"phase": "Running", "executions": [{"id": 1, "jobName": f"{task['object_name']}-1"}]})
    body = shared.wait_for(lambda: (lambda t: t if t["queue_state"] == "starting" else None)(
        a.get(f"/tasks/{task['id']}").json()))
    assert body["status"] == "queued" and body["started_at"] is None and body["worker_id"] is None
    assert task["id"] not in {t["id"] for t in a.get("/tasks", params={"status": "running"}).json()["tasks"]}
    assert task["id"] in {t["id"] for t in a.get("/tasks", params={"status": "pending"}).json()["tasks"]}


@pytest.mark.parametrize(("profile", "waiting", "running"), [
    ("canonical", "queued", "running"), ("orchestra", "queued", "running"), ("dtq", "PENDING", "RUNNING"),
    ("taskmanager", "pending", "running"), ("voidrunner", "pending", "running"), ("omoios", "pending", "running"),
])
def test_each_profile_words_the_same_state(a: httpx.Client, shared: Stack, profile: str, waiting: str,
                                           running: str) -> None:
    queued = a.post("/tasks", json=PAYMENT).json()
    started = a.post("/tasks", json=PAYMENT).json()
    shared.set_status(queued, {"phase": "Queued", "queuePosition": 1}, client=a)
    shared.set_status(started, {"phase": "Running", "startedAt": "2030-01-01T00:00:00Z"}, client=a)
    with shared.client(ALICE_KEY, **{"X-Compat-Profile": profile}) as client:
        assert client.get(f"/tasks/{queued['id']}").json()["status"] == waiting
        assert client.get(f"/tasks/{started['id']}").json()["status"] == running
        for word in ("pending", "queued", "PENDING", "QUEUED"):
            found = client.get("/tasks", params={"status": word, "limit": 1000, "format": "array"}).json()
            assert queued["id"].removeprefix("task_") in {t["id"].removeprefix("task_") for t in found}, word
