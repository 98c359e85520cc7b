"""Seed 001 (Task Management API Endpoints): CRUD, execute, executions, pagination/filtering,
the validation rules (as 422 naming the field), authorization and rate-limit headers."""

from __future__ import annotations

import httpx
import pytest
from kt_api_support import Stack, assert_error_body

EXAMPLE = {
    "name": "Data Processing Script",
    "description": "Process CSV data and generate report",
    "script_content": "import pandas as pd\\nprint('Processing...')",
    "script_type": "python",
    "timeout_seconds": 30,
    "metadata": {"tags": ["data", "processing"], "priority": "high"},
}


def test_create_task_example(a: httpx.Client) -> None:
    response = a.post("/tasks", json=EXAMPLE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] and body["name"] == "Data Processing Script"
    assert body["status"] == "pending"
    assert body["created_at"].endswith("Z")
    assert body["user_id"] == "alice"
    assert body["priority"] == 8  # metadata.priority "high"
    assert body["tags"] == ["data", "processing"]
    assert body["timeout_seconds"] == 30
    assert a.get(f"/tasks/{body['id']}").json()["id"] == body["id"]  # read-your-writes


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


def test_pagination_pages_and_sizes(shared: Stack) -> None:
    shared.add_tenant("pager", "pager-key", limits={"maxPending": 1000, "requestsPerMinute": 100000})
    with shared.client("pager-key") as pager:
        ids = [pager.post("/tasks", json={**EXAMPLE, "name": f"t{i:02d}"}).json()["id"] for i in range(25)]
        page3 = pager.get("/tasks", params={"page": 3, "limit": 10, "sort": "created_at", "order": "asc"}).json()
        assert page3["total"] == 25 and len(page3["tasks"]) == 5 and page3["offset"] == 20
        everything = pager.get("/tasks", params={"limit": 100, "sort_by": "name", "sort_order": "asc"}).json()
        assert [t["name"] for t in everything["tasks"]] == [f"t{i:02d}" for i in range(25)]
        assert set(ids) == {t["id"] for t in everything["tasks"]}
        assert pager.get("/tasks", params={"created_after": "2999-01-01"}).json()["total"] == 0
        assert pager.get("/tasks", params={"created_before": "2999-01-01", "limit": 1}).json()["total"] == 25


def test_get_update_and_delete(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=EXAMPLE).json()
    updated = a.put(f"/tasks/{task['id']}", json={"name": "Renamed", "priority": 3, "timeout_seconds": 60})
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Renamed" and updated.json()["priority"] == 3
    assert a.patch(f"/tasks/{task['id']}", json={"description": "new"}).json()["description"] == "new"
    assert_error_body(a.put(f"/tasks/{task['id']}", json={"script_content": "print(2)"}), 422, "IMMUTABLE_FIELD")
    shared.set_status(task, {"phase": "Running", "startedAt": "2030-01-01T00:00:00Z"}, client=a)
    assert_error_body(a.put(f"/tasks/{task['id']}", json={"name": "late"}), 409, "TASK_ALREADY_STARTED")
    deleted = a.delete(f"/tasks/{task['id']}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"


def test_execute_and_execution_history(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=EXAMPLE).json()
    pending = a.post(f"/tasks/{task['id']}/execute")
    assert pending.status_code == 200 and pending.json()["execution_requested"] is False
    executions = [
        {"id": 1, "jobName": f"{task['id']}-1", "podName": f"{task['id']}-1-abcde", "nodeName": "gpu-node-1",
         "startedAt": "2030-01-01T00:00:00Z", "finishedAt": "2030-01-01T00:00:10Z", "exitCode": 1,
         "reason": "Error", "message": "exit 1"},
        {"id": 2, "jobName": f"{task['id']}-2", "podName": f"{task['id']}-2-fghij", "nodeName": "gpu-node-2",
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


def test_execute_a_finished_task_requests_a_rerun(a: httpx.Client, shared: Stack) -> None:
    task = a.post("/tasks", json=EXAMPLE).json()
    shared.set_status(task, {"phase": "Succeeded", "completedAt": "2030-01-01T00:00:10Z",
                             "result": {"rows": 3}}, client=a)
    rerun = a.post(f"/tasks/{task['id']}/execute")
    assert rerun.status_code == 200 and rerun.json()["execution_requested"] is True
    from kubetask.kube.client import TASKS

    obj = shared.kube(lambda c: c.get(TASKS, task["id"], task["namespace"]))
    assert obj["metadata"]["annotations"]["kubetask.io/rerun"]


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"script_content": "x" * (1024 * 1024 + 1)}, "script_content"),
    ({"script_type": "ruby"}, "script_type"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"timeout_seconds": 3601}, "timeout_seconds"),
    ({"priority": 11}, "priority"),
    ({"priority": -1}, "priority"),
    ({"scheduled_at": "tomorrow-ish"}, "scheduled_at"),
])
def test_validation_rules_are_422_naming_the_field(a: httpx.Client, change: dict[str, object], field: str) -> None:
    body = assert_error_body(a.post("/tasks", json={**EXAMPLE, **change}), 422)
    assert body["field"] == field, body
    assert body["errors"][0]["field"] == field


def test_boundaries_are_accepted(a: httpx.Client) -> None:
    for change in ({"name": "x"}, {"name": "x" * 255}, {"timeout_seconds": 1}, {"timeout_seconds": 3600},
                   {"priority": 0}, {"priority": 10}, {"script_type": "bash", "script_content": "echo hi"},
                   {"script_content": "x" * (1024 * 1024)}):
        response = a.post("/tasks", json={**EXAMPLE, **change})
        assert response.status_code == 201, (change.keys(), response.text[:200])


def test_not_json_and_unknown_task(a: httpx.Client) -> None:
    assert_error_body(a.post("/tasks", content=b"not json", headers={"Content-Type": "application/json"}), 422)
    assert_error_body(a.get("/tasks/does-not-exist"), 404, "TASK_NOT_FOUND")
    assert_error_body(a.put("/tasks/does-not-exist", json={"name": "x"}), 404)


def test_rate_limit_headers_on_every_authenticated_response(a: httpx.Client) -> None:
    for response in (a.get("/tasks"), a.get("/tasks/nope")):
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert int(response.headers["X-RateLimit-Reset"]) > 1_600_000_000
