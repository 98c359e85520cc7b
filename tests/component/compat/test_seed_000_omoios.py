"""Seed 000 (TKT-TQU-005, task queue with user limits), as a client written from it would use it.

POST/GET/DELETE /api/v1/tasks, GET /api/v1/tasks/queue-status, POST /api/v1/tasks/{id}/complete (the
sandbox callback, authenticated by the per-task token the pod gets as KUBETASK_TASK_TOKEN),
GET /api/v1/users/me/limits; every endpoint needs auth; 400 at 50 pending tasks; 403/404 errors.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from compat_support import (
    ALICE_KEY,
    ALICE_NS,
    BOB_KEY,
    FAR_FUTURE,
    DevServer,
    add_tenant,
    assert_error,
    is_iso,
    is_uuid,
    job_env,
    sim,
    wait_status,
)


def _container(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", "echo hi"], **extra}


def test_create_returns_task_response(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json=_container("seed000 create", annotations=sim(0.2)))
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert isinstance(body["id"], str) and body["id"]
    assert body["task_id"] == body["id"]
    assert body["status"] in ("pending", "queued")
    assert body["user_id"] == "alice"
    assert is_iso(body["created_at"])


@pytest.mark.parametrize("method,path", [
    ("POST", "/tasks"), ("GET", "/tasks"), ("DELETE", "/tasks/nope"), ("GET", "/tasks/queue-status"),
    ("GET", "/users/me/limits"), ("GET", "/tasks/nope"),
])
def test_every_endpoint_requires_authentication(dev: DevServer, method: str, path: str) -> None:
    with dev.client(None) as anonymous:
        assert_error(anonymous.request(method, path, json={"name": "x"} if method == "POST" else None), 401)
    with dev.client("not-a-key") as wrong:
        assert_error(wrong.request(method, path, json={"name": "x"} if method == "POST" else None), 401,
                     "INVALID_API_KEY")


def test_list_own_tasks_with_status_filter(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = alice.post("/tasks", json=_container("seed000 list", scheduled_at=FAR_FUTURE)).json()
    theirs = bob.post("/tasks", json=_container("seed000 bob", scheduled_at=FAR_FUTURE)).json()
    listed = alice.get("/tasks", params={"status": "pending", "limit": 1000})
    assert listed.status_code == 200
    body = listed.json()
    ids = {t["id"] for t in body["tasks"]}
    assert mine["id"] in ids and theirs["id"] not in ids
    assert all(t["status"] == "pending" for t in body["tasks"])
    assert all(t["user_id"] == "alice" for t in body["tasks"])
    everything = {t["id"] for t in alice.get("/tasks", params={"limit": 1000}).json()["tasks"]}
    assert theirs["id"] not in everything
    none_running = alice.get("/tasks", params={"status": "completed", "limit": 1000}).json()["tasks"]
    assert mine["id"] not in {t["id"] for t in none_running}
    for client, task in ((alice, mine), (bob, theirs)):
        client.delete(f"/tasks/{task['id']}")


def test_cancel_pending_task(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_container("seed000 cancel", scheduled_at=FAR_FUTURE)).json()
    response = alice.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task_id"] == task["id"] and body["status"] == "cancelled" and is_iso(body["cancelled_at"])
    assert alice.get(f"/tasks/{task['id']}").json()["status"] == "cancelled"
    assert_error(alice.delete(f"/tasks/{task['id']}"), 409)


def test_cancel_running_task_stops_its_job(alice: httpx.Client, dev: DevServer) -> None:
    task = alice.post("/tasks", json=_container("seed000 running", annotations=sim(30))).json()
    wait_status(alice, task["id"], {"running"})
    assert alice.delete(f"/tasks/{task['id']}").status_code == 200
    done = wait_status(alice, task["id"], {"cancelled", "failed", "completed"})
    assert done["status"] == "cancelled"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = dev.kubectl_json("-n", ALICE_NS, "get", "jobs", "-l", f"kubetask.io/task={task['object_name']}")["items"]
        if not jobs or all(j["metadata"].get("deletionTimestamp") for j in jobs):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the Job of cancelled task {task['id']} still exists")


def test_cancel_errors(alice: httpx.Client, bob: httpx.Client) -> None:
    assert_error(alice.delete("/tasks/does-not-exist-123"), 404)
    theirs = bob.post("/tasks", json=_container("seed000 not yours", scheduled_at=FAR_FUTURE)).json()
    assert_error(alice.delete(f"/tasks/{theirs['id']}"), 404)
    assert_error(alice.get(f"/tasks/{theirs['id']}"), 404)
    assert bob.get(f"/tasks/{theirs['id']}").json()["status"] == "pending"
    bob.delete(f"/tasks/{theirs['id']}")
    done = alice.post("/tasks", json=_container("seed000 done", annotations=sim(0.1))).json()
    wait_status(alice, done["id"], {"completed"})
    assert_error(alice.delete(f"/tasks/{done['id']}"), 409)


def test_queue_status_counts(alice: httpx.Client) -> None:
    before = alice.get("/tasks/queue-status")
    assert before.status_code == 200
    b = before.json()
    for key in ("running", "pending"):
        assert isinstance(b[key], int) and b[key] >= 0
    assert isinstance(b["can_submit"], bool)
    assert b["max_pending"] == 50
    for key in ("max_concurrent", "can_start_more", "monthly_hours_used", "monthly_hours_limit", "pending_tasks"):
        assert key in b, key
    task = alice.post("/tasks", json=_container("seed000 queue", scheduled_at=FAR_FUTURE)).json()
    after = alice.get("/tasks/queue-status").json()
    assert after["pending"] == b["pending"] + 1
    alice.delete(f"/tasks/{task['id']}")
    assert alice.get("/tasks/queue-status").json()["pending"] == b["pending"]


def test_user_limits(alice: httpx.Client) -> None:
    response = alice.get("/users/me/limits")
    assert response.status_code == 200
    body = response.json()
    for key in ("plan", "max_concurrent_agents", "max_task_duration_minutes", "monthly_agent_hours_limit",
                "monthly_agent_hours_used", "billing_cycle_resets_at"):
        assert key in body, key
    assert body["max_task_duration_minutes"] == 60 and is_iso(body["billing_cycle_resets_at"])
    assert body["user_id"] == "alice"
    assert body["limits"]["max_pending"] == 50
    assert body["limits"]["max_timeout_seconds"] == 3600
    assert isinstance(body["monthly_agent_hours_used"], int | float)
    assert isinstance(body["max_task_duration_minutes"], int)


def test_pending_limit_is_400_at_50(dev: DevServer) -> None:
    with dev.client(BOB_KEY) as bob:
        start = bob.get("/tasks/queue-status").json()["pending"]
        created: list[str] = []

        def fill(i: int) -> httpx.Response:
            return bob.post("/tasks", json=_container(f"seed000 fill {i}", scheduled_at=FAR_FUTURE))

        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                responses = list(pool.map(fill, range(50 - start)))
            created = [r.json()["id"] for r in responses if r.status_code == 201]
            assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
            refused = bob.post("/tasks", json=_container("seed000 one too many", scheduled_at=FAR_FUTURE))
            body = assert_error(refused, 400)
            assert "50" in body["detail"] and "pending" in body["detail"].lower()
        finally:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda task_id: bob.delete(f"/tasks/{task_id}"), created))
        assert bob.post("/tasks", json=_container("seed000 room again", scheduled_at=FAR_FUTURE)).status_code == 201


def test_complete_callback_with_task_token(alice: httpx.Client, dev: DevServer) -> None:
    task = alice.post("/tasks", json=_container("seed000 callback", annotations=sim(20))).json()
    env = job_env(dev, ALICE_NS, task["object_name"])
    token = env["KUBETASK_TASK_TOKEN"]
    assert token
    with dev.client(None) as sandbox:
        assert_error(sandbox.post(f"/tasks/{task['id']}/complete", json={"status": "completed"}), 401)
        assert_error(sandbox.post(f"/tasks/{task['id']}/complete", json={"status": "completed"},
                                  headers={"X-Task-Token": "forged"}), 401)
        ok = sandbox.post(f"/tasks/{task['id']}/complete",
                          json={"status": "completed", "summary": "done", "files_changed": ["a.py"]},
                          headers={"X-Task-Token": token})
        assert ok.status_code == 200, ok.text
        assert alice.get(f"/tasks/{task['id']}").json()["result"] == {
            "status": "completed", "summary": "done", "files_changed": ["a.py"]}
        again = sandbox.post(f"/tasks/{task['id']}/complete", json={"status": "completed", "result": {"answer": 42}},
                             headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 200, again.text
    body = alice.get(f"/tasks/{task['id']}").json()
    assert body["result"] == {"answer": 42}
    alice.delete(f"/tasks/{task['id']}")


def test_token_of_one_task_does_not_complete_another(alice: httpx.Client, dev: DevServer) -> None:
    one = alice.post("/tasks", json=_container("seed000 tok one", annotations=sim(20))).json()
    other = alice.post("/tasks", json=_container("seed000 tok two", scheduled_at=FAR_FUTURE)).json()
    token = job_env(dev, ALICE_NS, one["object_name"])["KUBETASK_TASK_TOKEN"]
    with dev.client(None) as sandbox:
        assert_error(sandbox.post(f"/tasks/{other['id']}/complete", json={"status": "completed"},
                                  headers={"X-Task-Token": token}), 401)
    for task in (one, other):
        alice.delete(f"/tasks/{task['id']}")


def test_bad_request_bodies(alice: httpx.Client) -> None:
    assert_error(alice.post("/tasks", json={"name": "nothing runs"}), 422)
    assert_error(alice.post("/tasks", content=b"{not json", headers={"Content-Type": "application/json"}), 400,
                 "MALFORMED_JSON")
    assert_error(alice.post("/tasks", json=_container("too many gpus", resources={"gpus": 1000})), 422)


# --------------------------------------------------------------------------- merged from the in-process suite


def test_hard_limits_are_403_naming_the_limit(dev: DevServer) -> None:
    add_tenant(dev, "erin", "dev-erin-key", limits={"maxGpusPerTask": 1, "monthlyGpuHours": 0})
    with dev.client("dev-erin-key") as erin:
        body = assert_error(erin.post("/tasks", json=_container("two gpus", gpus=2)), 403, "QUOTA_EXCEEDED")
        assert "max 1" in body["detail"]
        monthly = assert_error(erin.post("/tasks", json=_container("one gpu", gpus=1)), 403,
                               "MONTHLY_LIMIT_REACHED")
        assert "Monthly GPU-hours" in monthly["detail"]


def test_a_small_pending_limit_is_400_with_the_seed_message(dev: DevServer) -> None:
    add_tenant(dev, "carol", "dev-carol-key", limits={"maxPending": 3})
    with dev.client("dev-carol-key") as carol:
        created = [carol.post("/tasks", json=_container(f"carol {i}", scheduled_at=FAR_FUTURE)) for i in range(3)]
        assert all(r.status_code == 201 for r in created), [r.text for r in created]
        body = assert_error(carol.post("/tasks", json=_container("carol 4", scheduled_at=FAR_FUTURE)), 400,
                            "TOO_MANY_PENDING")
        assert body["detail"] == "Too many pending tasks (max 3)"
        assert carol.get("/tasks/queue-status").json()["can_submit"] is False
        for response in created:
            carol.delete(f"/tasks/{response.json()['id']}")


def test_admins_read_and_change_limits(admin: httpx.Client, alice: httpx.Client) -> None:
    got = admin.get("/users/alice/limits")
    assert got.status_code == 200 and got.json()["user_id"] == "alice"
    try:
        patched = admin.patch("/users/alice/limits", json={"max_running": 7})
        assert patched.status_code == 200 and patched.json()["max_concurrent_agents"] == 7
        deadline = time.monotonic() + 30
        while alice.get("/users/me/limits").json()["max_concurrent_agents"] != 7:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert admin.patch("/users/alice/limits", json={"max_running": None}).status_code == 200
    assert_error(alice.patch("/users/alice/limits", json={"max_running": 100}), 403)
    assert_error(alice.get("/users/bob/limits"), 403)


# --------------------------------------------------------------------------- the documented examples, as written


def test_omoios_profile_replays_the_documented_examples(dev: DevServer) -> None:
    """TKT-TQU-005's endpoints and models under its profile (X-Compat-Profile: omoios)."""
    with dev.client(ALICE_KEY, **{"X-Compat-Profile": "omoios"}) as client:
        created = client.post("/tasks", json=_container("omoios create", scheduled_at=FAR_FUTURE))
        assert created.status_code == 201, created.text  # POST /api/v1/tasks (with limit checks)
        task = created.json()
        assert is_uuid(task["id"]) and task["status"] == "pending" and task["user_id"] == "alice"
        listed = client.get("/tasks", params={"status": "pending", "limit": 1000}).json()  # optional status filter
        assert task["id"] in {t["id"] for t in listed["tasks"]}
        assert {t["status"] for t in listed["tasks"]} == {"pending"}
        status = client.get("/tasks/queue-status").json()  # QueueStatus
        assert task["id"] in {t["task_id"] for t in status["pending_tasks"]}
        assert {t["status"] for t in status["pending_tasks"]} == {"pending"}
        limits = client.get("/users/me/limits").json()  # UserLimits
        assert limits["user_id"] == "alice" and "monthly_agent_hours_used" in limits
        cancelled = client.delete(f"/tasks/{task['id']}")  # DELETE: cancel a pending/running task
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert_error(client.delete("/tasks/does-not-exist-123"), 404)  # proper error responses
    with dev.client(None, **{"X-Compat-Profile": "omoios"}) as anonymous:
        assert_error(anonymous.get("/tasks"), 401)  # all endpoints require authentication
