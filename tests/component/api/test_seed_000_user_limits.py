"""Seed 000 (TKT-TQU-005, task queue user limits): replay its endpoints and promised shapes and codes.

POST/GET/DELETE /api/v1/tasks, GET /tasks/queue-status (QueueStatus), POST /tasks/{id}/complete
(sandbox callback), GET /users/me/limits (UserLimits); everything needs auth; 400 over the pending
limit ("Too many pending tasks (max 50)"), 403 over a hard limit, 404 for a task that is not yours.
"""

from __future__ import annotations

import httpx
from kt_api_support import ADMIN_KEY, CALLBACK_SECRET, Stack, assert_error_body

from kubetask.core.tokens import task_token

SCRIPT = {"name": "overnight job", "script_content": "print('hi')", "script_type": "python"}


def test_create_list_and_cancel(a: httpx.Client) -> None:
    created = a.post("/tasks", json=SCRIPT)
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["id"] and task["status"] == "pending" and task["priority"] == 5
    listed = a.get("/tasks", params={"status": "pending"}).json()
    assert task["id"] in {t["id"] for t in listed["tasks"]}
    cancelled = a.delete(f"/tasks/{task['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"]
    again = a.delete(f"/tasks/{task['id']}")
    assert_error_body(again, 409)


def test_queue_status_shape(a: httpx.Client) -> None:
    a.post("/tasks", json=SCRIPT)
    status = a.get("/tasks/queue-status")
    assert status.status_code == 200
    body = status.json()
    for key in ("running", "pending", "max_concurrent", "can_start_more", "monthly_hours_used",
                "monthly_hours_limit"):
        assert key in body, key
    assert body["pending"] >= 1 and body["can_start_more"] is True
    assert isinstance(body["pending_tasks"], list) and body["pending_tasks"][0]["task_id"]


def test_user_limits_shape(a: httpx.Client) -> None:
    body = a.get("/users/me/limits").json()
    for key in ("plan", "max_concurrent_agents", "max_task_duration_minutes", "monthly_agent_hours_limit",
                "monthly_agent_hours_used", "billing_cycle_resets_at"):
        assert key in body, key
    assert body["user_id"] == "alice"
    assert body["max_task_duration_minutes"] == 60


def test_everything_requires_auth(shared: Stack) -> None:
    with shared.client() as anonymous:
        for method, path in (("GET", "/tasks"), ("POST", "/tasks"), ("DELETE", "/tasks/x"),
                             ("GET", "/tasks/queue-status"), ("GET", "/users/me/limits"),
                             ("GET", "/templates")):
            assert_error_body(anonymous.request(method, path, json={}), 401)
    with shared.client("not-a-key") as wrong:
        assert_error_body(wrong.get("/tasks"), 401, "INVALID_API_KEY")


def test_other_users_task_is_404(a: httpx.Client, b: httpx.Client) -> None:
    task = a.post("/tasks", json=SCRIPT).json()
    assert_error_body(b.get(f"/tasks/{task['id']}"), 404, "TASK_NOT_FOUND")
    assert_error_body(b.delete(f"/tasks/{task['id']}"), 404)


def test_completion_callback_with_task_token(shared: Stack, a: httpx.Client) -> None:
    task = a.post("/tasks", json=SCRIPT).json()
    obj = shared.kube(lambda c: c.get(__import__("kubetask.kube.client", fromlist=["TASKS"]).TASKS,
                                      task["id"], task["namespace"]))
    token = task_token(CALLBACK_SECRET, task["namespace"], task["id"], obj["metadata"]["uid"])
    with shared.client() as sandbox:
        bad = sandbox.post(f"/tasks/{task['id']}/complete", json={"status": "completed"},
                           headers={"X-Task-Token": "forged"})
        assert_error_body(bad, 401)
        ok = sandbox.post(f"/tasks/{task['id']}/complete",
                          json={"status": "completed", "summary": "done", "files_changed": ["a.py"]},
                          headers={"X-Task-Token": token})
        assert ok.status_code == 200, ok.text
        assert ok.json()["ok"] is True
    got = shared.wait_for(lambda: a.get(f"/tasks/{task['id']}").json()["result"])
    assert got["summary"] == "done"
    assert a.get(f"/tasks/{task['id']}").json()["result_source"] == "callback"


def test_too_many_pending_is_400_with_the_seed_message(shared: Stack) -> None:
    shared.add_tenant("carol", "carol-key", limits={"maxPending": 3})
    with shared.client("carol-key") as carol:
        for _ in range(3):
            assert carol.post("/tasks", json=SCRIPT).status_code == 201
        refused = carol.post("/tasks", json=SCRIPT)
        body = assert_error_body(refused, 400, "TOO_MANY_PENDING")
        assert body["detail"] == "Too many pending tasks (max 3)"
        assert carol.get("/tasks/queue-status").json()["can_submit"] is False


def test_default_pending_limit_is_50(shared: Stack) -> None:
    shared.add_tenant("dave", "dave-key")
    with shared.client("dave-key") as dave:
        for _ in range(50):
            assert dave.post("/tasks", json=SCRIPT).status_code == 201
        body = assert_error_body(dave.post("/tasks", json=SCRIPT), 400, "TOO_MANY_PENDING")
        assert body["detail"] == "Too many pending tasks (max 50)"


def test_hard_quota_is_403_naming_the_limit(shared: Stack) -> None:
    shared.add_tenant("erin", "erin-key", limits={"maxGpusPerTask": 1, "monthlyGpuHours": 0})
    with shared.client("erin-key") as erin:
        body = assert_error_body(erin.post("/tasks", json={**SCRIPT, "gpus": 2}), 403, "QUOTA_EXCEEDED")
        assert "max 1" in body["detail"]
        monthly = assert_error_body(erin.post("/tasks", json={**SCRIPT, "gpus": 1}), 403, "MONTHLY_LIMIT_REACHED")
        assert "Monthly GPU-hours" in monthly["detail"]


def test_admin_reads_and_patches_limits(shared: Stack, a: httpx.Client) -> None:
    with shared.client(ADMIN_KEY) as root:
        got = root.get("/users/alice/limits")
        assert got.status_code == 200 and got.json()["user_id"] == "alice"
        patched = root.patch("/users/alice/limits", json={"max_running": 7})
        assert patched.status_code == 200, patched.text
        assert patched.json()["max_concurrent_agents"] == 7
    shared.wait_for(lambda: a.get("/users/me/limits").json()["max_concurrent_agents"] == 7)
    assert_error_body(a.patch("/users/alice/limits", json={"max_running": 100}), 403)
    assert_error_body(a.get("/users/bob/limits"), 403)
