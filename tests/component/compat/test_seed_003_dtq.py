"""Seed 003 (Distributed Task Queue System) as a client written from it would use it.

Tasks (task_name/task_args/task_kwargs, 201, POST cancel, replay, timeline, compare), the list
envelope {total, limit, offset, tasks} with uppercase filters, workers (admin mutations), search,
presets, CSV export, dashboard, analytics, alerts, resilience, health, error codes and bodies,
rate-limit headers.  Statuses come back lowercase (DESIGN §4); filters accept the seed's uppercase.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import time

import httpx
import pytest
from compat_support import (
    ALICE_KEY,
    ALICE_NS,
    BOB_KEY,
    FAR_FUTURE,
    DevServer,
    assert_error,
    is_iso,
    is_uuid,
    sim,
    wait_started,
    wait_status,
)

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
# DESIGN §4: a task_name that names no TaskTemplate must say what runs.
RUNNABLE = {**PAYMENT, "script_content": "import sys; print(sys.argv)", "script_type": "python"}


def _submit(client: httpx.Client, **extra: object) -> dict[str, object]:
    response = client.post("/tasks", json={**RUNNABLE, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_submit_task(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json=RUNNABLE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["task_id"], str) and body["task_id"]
    assert body["task_name"] == "process_payment"
    assert body["status"] == "pending"
    assert body["priority"] == 8
    assert is_iso(body["created_at"])
    assert body["queue_name"] == "payments" and body["max_retries"] == 3
    assert body["task_args"] == [1234] and body["task_kwargs"] == {"currency": "USD", "amount": 99.99}
    assert body["scheduled_at"] == "2026-01-25T14:30:00Z"
    assert alice.post("/tasks?async=true", json=RUNNABLE).status_code == 201
    assert alice.post("/tasks?async=false", json=RUNNABLE).status_code == 201


def test_bare_task_name_says_what_runs(alice: httpx.Client) -> None:
    body = assert_error(alice.post("/tasks", json=PAYMENT), 422)
    for choice in ("template", "script_content", "image"):
        assert choice in body["detail"]


def test_task_name_of_a_template_runs_it(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json={"task_name": "bash-script", "task_kwargs": {"script": "echo 1"},
                                          "annotations": sim(0.1)})
    assert response.status_code == 201, response.text
    assert wait_status(alice, response.json()["task_id"], {"completed", "failed"})["status"] == "completed"


def test_get_task(alice: httpx.Client) -> None:
    task = _submit(alice, scheduled_at=None, annotations=sim(20))
    body = wait_started(alice, str(task["task_id"]))
    for key in ("task_id", "task_name", "status", "priority", "worker_id", "created_at", "started_at",
                "completed_at", "retry_count", "max_retries"):
        assert key in body, key
    assert body["completed_at"] is None and body["retry_count"] == 0 and body["max_retries"] == 3
    assert isinstance(body["worker_id"], str) and body["worker_id"]
    assert is_iso(body["started_at"])
    alice.post(f"/tasks/{task['task_id']}/cancel")


def test_running_means_started_on_a_worker(alice: httpx.Client, dev: DevServer) -> None:
    """Seed 003's RUNNING task has a ``worker_id`` and a ``started_at``: a task the operator has admitted
    (its Job and pod created) whose pod has not started is still waiting, and says so. The window between
    admission and the pod's start is short; a busy kube-scheduler (paused here) holds it open."""
    scheduler = dev.pids["kube-scheduler"]
    assert "kube-scheduler" in dev.alive(), dev.alive()
    os.kill(scheduler, signal.SIGSTOP)
    try:
        task_id = str(_submit(alice, scheduled_at=None, annotations=sim(1))["task_id"])
        deadline = time.monotonic() + 60
        name = alice.get(f"/tasks/{task_id}").json()["object_name"]
        while not dev.kubectl_json("-n", ALICE_NS, "get", "pods", "-l", f"kubetask.io/task={name}")["items"]:
            assert time.monotonic() < deadline, f"the operator created no pod for {task_id}"
            time.sleep(0.25)
        while not (executions := alice.get(f"/tasks/{task_id}/executions").json()["executions"]):
            assert time.monotonic() < deadline, f"the API never saw {task_id} admitted"
            time.sleep(0.25)
        body = alice.get(f"/tasks/{task_id}").json()
        # Admitted, nothing runs yet: waiting, with the fine state and the words saying why.
        assert body["status"] == "queued" and body["queue_state"] == "starting", body
        assert body["worker_id"] is None and body["started_at"] is None, body
        assert "start" in (body["waiting_reason"] or ""), body
        assert executions[-1]["status"] == "pending", executions
        queued = {t["id"] for t in alice.get("/tasks", params={"status": "PENDING", "limit": 1000}).json()["tasks"]}
        running = {t["id"] for t in alice.get("/tasks", params={"status": "RUNNING", "limit": 1000}).json()["tasks"]}
        assert task_id in queued and task_id not in running
    finally:
        os.kill(scheduler, signal.SIGCONT)
    assert wait_status(alice, task_id, {"completed", "failed"})["status"] == "completed"


def test_retries_are_counted(alice: httpx.Client) -> None:
    task = _submit(alice, scheduled_at=None, max_retries=1, retry_backoff_seconds=0,
                   annotations=sim(0.1, exit_code=1))
    body = wait_status(alice, str(task["task_id"]), {"failed", "completed"})
    assert body["status"] == "failed"
    assert body["retry_count"] == 1
    assert len(alice.get(f"/tasks/{task['task_id']}/executions").json()["executions"]) == 2


def test_list_envelope_with_uppercase_filters(alice: httpx.Client) -> None:
    failed = _submit(alice, scheduled_at=None, max_retries=0, annotations=sim(0.1, exit_code=2))
    wait_status(alice, str(failed["task_id"]), {"failed"})
    response = alice.get("/tasks?status=FAILED&priority=8&limit=10")
    assert response.status_code == 200
    body = response.json()
    assert {"total", "limit", "offset", "tasks"} <= set(body)
    assert body["limit"] == 10 and body["offset"] == 0 and body["total"] >= 1
    assert failed["task_id"] in {t["task_id"] for t in body["tasks"]}
    assert all(t["status"] == "failed" and t["priority"] == 8 for t in body["tasks"])
    for upper in ("PENDING", "RUNNING", "COMPLETED", "FAILED"):
        assert alice.get("/tasks", params={"status": upper}).status_code == 200
    assert_error(alice.get("/tasks", params={"status": "SLEEPING"}), 422)


def test_default_limit_and_queue_filter_and_sort(alice: httpx.Client) -> None:
    body = alice.get("/tasks").json()
    assert body["limit"] == 50 and body["offset"] == 0
    a = _submit(alice, queue_name="sortq", priority=2, scheduled_at=FAR_FUTURE)
    b = _submit(alice, queue_name="sortq", priority=9, scheduled_at=FAR_FUTURE)
    by_queue = alice.get("/tasks", params={"queue_name": "sortq", "sort_by": "priority", "sort_order": "asc"})
    assert [t["task_id"] for t in by_queue.json()["tasks"]] == [a["task_id"], b["task_id"]]
    desc = alice.get("/tasks", params={"queue_name": "sortq", "sort_by": "priority", "sort_order": "desc"})
    assert [t["task_id"] for t in desc.json()["tasks"]] == [b["task_id"], a["task_id"]]
    by_created = alice.get("/tasks", params={"queue_name": "sortq", "sort_by": "created_at", "sort_order": "asc"})
    assert [t["task_id"] for t in by_created.json()["tasks"]] == [a["task_id"], b["task_id"]]
    assert_error(alice.get("/tasks", params={"sort_order": "sideways"}), 422)
    assert_error(alice.get("/tasks", params={"priority": 11}), 422)
    for t in (a, b):
        alice.post(f"/tasks/{t['task_id']}/cancel")


def test_pagination_envelope(alice: httpx.Client) -> None:
    ids = [str(_submit(alice, queue_name="pageq", scheduled_at=FAR_FUTURE)["task_id"]) for _ in range(3)]
    page = alice.get("/tasks?limit=2&offset=0&queue_name=pageq&sort_by=created_at&sort_order=asc").json()
    rest = alice.get("/tasks?limit=2&offset=2&queue_name=pageq&sort_by=created_at&sort_order=asc").json()
    assert page["total"] == rest["total"] == 3
    assert [t["task_id"] for t in page["tasks"] + rest["tasks"]] == ids
    assert page["data"] == page["tasks"]
    beyond = alice.get("/tasks?limit=2&offset=50&queue_name=pageq").json()
    assert beyond["tasks"] == [] and beyond["total"] == 3
    for task_id in ids:
        alice.post(f"/tasks/{task_id}/cancel")


def test_cancel_via_post(alice: httpx.Client) -> None:
    task = _submit(alice, scheduled_at=FAR_FUTURE)
    response = alice.post(f"/tasks/{task['task_id']}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == task["task_id"] and body["status"] == "cancelled"
    assert isinstance(body["message"], str) and body["message"]
    assert_error(alice.post(f"/tasks/{task['task_id']}/cancel"), 409)
    assert_error(alice.post("/tasks/550e8400-e29b-41d4-a716-446655440000/cancel"), 404, "TASK_NOT_FOUND")


def test_replay_timeline_compare(alice: httpx.Client) -> None:
    original = _submit(alice, scheduled_at=None, max_retries=0, annotations=sim(0.1, exit_code=1))
    tid = str(original["task_id"])
    wait_status(alice, tid, {"failed"})
    replay = alice.post(f"/tasks/{tid}/replay")
    assert replay.status_code in (200, 201), replay.text
    r = replay.json()
    assert r["original_task_id"] == tid and r["task_id"] != tid and r["status"] == "pending"
    assert alice.get(f"/tasks/{r['task_id']}").json()["task_name"] == "process_payment"

    timeline = alice.get(f"/tasks/{tid}/timeline")
    assert timeline.status_code == 200
    t = timeline.json()
    assert t["task_id"] == tid and t["task_name"] == "process_payment" and t["status"] == "failed"
    assert is_iso(t["created_at"]) and is_iso(t["started_at"]) and is_iso(t["completed_at"])
    assert isinstance(t["duration_seconds"], int | float)
    assert t["events"] and all(is_iso(e["timestamp"]) and isinstance(e["event_type"], str)
                               and isinstance(e["details"], dict) for e in t["events"])
    assert "started" in {e["event_type"] for e in t["events"]}
    assert [e["timestamp"] for e in t["events"]] == sorted(e["timestamp"] for e in t["events"])

    other = _submit(alice, scheduled_at=None, task_args=[9], priority=8, annotations=sim(0.1))
    wait_status(alice, str(other["task_id"]), {"completed"})
    compare = alice.get(f"/tasks/{tid}/compare/{other['task_id']}")
    assert compare.status_code == 200
    c = compare.json()
    assert c["same_function"] is True and c["same_args"] is False and c["same_priority"] is True
    assert set(c["timing"]) >= {"task1_duration", "task2_duration"}
    assert_error(alice.get(f"/tasks/{tid}/compare/nope-0000"), 404)
    assert_error(alice.get("/tasks/nope-0000/timeline"), 404)
    assert_error(alice.post("/tasks/nope-0000/replay"), 404)


# --------------------------------------------------------------------------- workers


def _gpu_workers(client: httpx.Client) -> list[str]:
    """The ids of the GPU workers, as a client learns them: from the listing (``kubetask dev`` has two)."""
    listed = client.get("/workers")
    assert listed.status_code == 200, listed.text
    ids = [w["worker_id"] for w in listed.json()["workers"] if w["gpus"] > 0]
    assert len(ids) >= 2, listed.json()
    return ids


def test_workers_list_and_status(alice: httpx.Client) -> None:
    listed = alice.get("/workers")
    assert listed.status_code == 200
    workers = listed.json()["workers"]
    gpu = next(w for w in workers if w["worker_id"] == _gpu_workers(alice)[0])
    assert gpu["gpus"] == 8 and gpu["gpu_type"] in ("A100", "H100")
    status = alice.get(f"/workers/{gpu['worker_id']}/status")
    assert status.status_code == 200
    s = status.json()
    for key in ("worker_id", "hostname", "status", "capacity", "current_load", "current_tasks",
                "last_heartbeat", "is_draining"):
        assert key in s, key
    assert s["status"] == "ACTIVE" and s["is_draining"] is False
    assert isinstance(s["capacity"], int) and isinstance(s["current_load"], int)
    assert_error(alice.get("/workers/no-such-worker/status"), 404, "WORKER_NOT_FOUND")
    assert_error(alice.get("/workers/no-such-worker"), 404, "WORKER_NOT_FOUND")


def test_worker_mutations_need_admin(alice: httpx.Client) -> None:
    worker = _gpu_workers(alice)[0]
    assert_error(alice.patch(f"/workers/{worker}/pause"), 403)
    assert_error(alice.patch(f"/workers/{worker}/resume"), 403)
    assert_error(alice.post(f"/workers/{worker}/drain"), 403)
    assert_error(alice.patch(f"/workers/{worker}/capacity", json={"capacity": 10}), 403)
    assert_error(alice.post("/workers?hostname=compute-9&capacity=5"), 403)


def test_register_pause_resume_drain_capacity(admin: httpx.Client) -> None:
    registered = admin.post("/workers?hostname=compute-1&capacity=5")
    assert registered.status_code == 201, registered.text
    r = registered.json()
    assert r["hostname"] == "compute-1" and r["status"] == "ACTIVE" and r["capacity"] == 5
    assert r["current_load"] == 0 and isinstance(r["worker_id"], str)
    wid = r["worker_id"]
    default_capacity = admin.post("/workers?hostname=compute-2").json()
    assert default_capacity["capacity"] == 5

    paused = admin.patch(f"/workers/{wid}/pause")
    assert paused.status_code == 200 and paused.json() == {**paused.json(), "worker_id": wid, "status": "paused"}
    assert admin.get(f"/workers/{wid}/status").json()["status"] == "PAUSED"
    resumed = admin.patch(f"/workers/{wid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "resumed"
    assert admin.get(f"/workers/{wid}/status").json()["status"] == "ACTIVE"
    capacity = admin.patch(f"/workers/{wid}/capacity", json={"capacity": 10})
    assert capacity.status_code == 200 and capacity.json() == {**capacity.json(), "worker_id": wid, "capacity": 10}
    assert admin.get(f"/workers/{wid}/status").json()["capacity"] == 10
    assert_error(admin.patch(f"/workers/{wid}/capacity", json={"capacity": 0}), 422)
    assert_error(admin.patch(f"/workers/{wid}/capacity", json={}), 422)
    drained = admin.post(f"/workers/{wid}/drain")
    assert drained.status_code == 200 and drained.json()["status"] == "draining"
    assert admin.get(f"/workers/{wid}/status").json()["is_draining"] is True
    assert_error(admin.patch("/workers/no-such-worker/pause"), 404)


def test_paused_gpu_node_takes_no_new_tasks(admin: httpx.Client, alice: httpx.Client) -> None:
    gpu_workers = _gpu_workers(admin)
    for worker in gpu_workers:
        assert admin.patch(f"/workers/{worker}/pause").status_code == 200
    try:
        task = alice.post("/tasks", json={"name": "needs gpu", "image": "busybox", "resources": {"gpus": 1},
                                          "annotations": sim(0.1)}).json()
        # The operator has looked at it and says why it waits (the scheduler knows nothing of pausing).
        deadline = time.monotonic() + 30
        body = alice.get(f"/tasks/{task['id']}").json()
        while "paused" not in (body.get("waiting_reason") or "") and time.monotonic() < deadline:
            assert body["status"] in ("pending", "queued"), body
            time.sleep(0.25)
            body = alice.get(f"/tasks/{task['id']}").json()
        assert body["status"] in ("pending", "queued") and "paused" in body["waiting_reason"], body
    finally:
        for worker in gpu_workers:
            admin.patch(f"/workers/{worker}/resume")
    assert wait_status(alice, task["id"], {"completed", "failed"})["status"] == "completed"


# --------------------------------------------------------------------------- search, presets, export


def test_search_example(alice: httpx.Client) -> None:
    failed = _submit(alice, scheduled_at=None, max_retries=0, description="payment run",
                     annotations=sim(0.1, exit_code=1))
    wait_status(alice, str(failed["task_id"]), {"failed"})
    response = alice.get("/search/tasks?status=FAILED&created_after=2026-01-24&search=payment&limit=50")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"total", "limit", "offset", "tasks"} <= set(body)
    assert failed["task_id"] in {t["task_id"] for t in body["tasks"]}
    assert all(t["status"] == "failed" for t in body["tasks"])
    none = alice.get("/search/tasks", params={"search": "no-such-needle-xyz"}).json()
    assert none["total"] == 0 and none["tasks"] == []
    future = alice.get("/search/tasks", params={"created_after": "2099-01-01T00:00:00Z"}).json()
    assert future["total"] == 0
    by_name = alice.get("/search/tasks", params={"task_name": "process_payment", "priority": 8}).json()
    assert failed["task_id"] in {t["task_id"] for t in by_name["tasks"]}
    assert_error(alice.get("/search/tasks", params={"created_before": "not-a-date"}), 422)


def test_presets(alice: httpx.Client) -> None:
    response = alice.get("/search/presets")
    assert response.status_code == 200
    presets = {p["name"]: p for p in response.json()["presets"]}
    for name in ("failed_today", "high_priority_pending", "stuck_tasks"):
        assert isinstance(presets[name]["description"], str)
    failed = _submit(alice, scheduled_at=None, max_retries=0, annotations=sim(0.1, exit_code=1))
    wait_status(alice, str(failed["task_id"]), {"failed"})
    applied = alice.get("/search/presets/failed_today")
    assert applied.status_code == 200
    assert failed["task_id"] in {t["task_id"] for t in applied.json()["tasks"]}
    urgent = _submit(alice, scheduled_at=FAR_FUTURE, priority=9)
    hp = alice.get("/search/presets/high_priority_pending").json()
    assert urgent["task_id"] in {t["task_id"] for t in hp["tasks"]}
    assert all(t["priority"] >= 8 and t["status"] in ("pending", "queued") for t in hp["tasks"])
    assert alice.get("/search/presets/stuck_tasks").status_code == 200
    assert_error(alice.get("/search/presets/no_such_preset"), 404)
    alice.post(f"/tasks/{urgent['task_id']}/cancel")


def test_csv_export(alice: httpx.Client) -> None:
    task = _submit(alice, scheduled_at=FAR_FUTURE, queue_name="csvq")
    response = alice.get("/search/tasks/export/csv", params={"status": "PENDING", "queue_name": "csvq"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers.get("content-disposition", "")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert task["task_id"] in {r["task_id"] for r in rows}
    assert {"task_id", "task_name", "status", "priority", "created_at"} <= set(rows[0])
    alice.post(f"/tasks/{task['task_id']}/cancel")


# --------------------------------------------------------------------------- monitoring


def test_dashboard_stats(alice: httpx.Client) -> None:
    body = alice.get("/dashboard/stats").json()
    for key in ("queue_depth", "active_workers", "total_workers", "total_tasks_submitted", "tasks_completed",
                "tasks_failed"):
        assert isinstance(body[key], int), key
    for key in ("cpu_usage_percent", "memory_usage_percent"):
        assert isinstance(body[key], int | float) and 0 <= body[key] <= 100
    assert body["total_workers"] >= body["active_workers"] >= 1


def test_dashboard_workers(alice: httpx.Client) -> None:
    workers = alice.get("/dashboard/workers").json()["workers"]
    assert workers
    for w in workers:
        for key in ("worker_id", "hostname", "status", "uptime_seconds", "task_rate", "error_rate",
                    "capacity_utilization"):
            assert key in w, key
        assert 0 <= w["capacity_utilization"] <= 1


def test_analytics_trends(alice: httpx.Client) -> None:
    trend_queries: list[dict[str, str | int]] = [{}, {"hours": 24, "interval": "hourly"},
                                                 {"hours": 72, "interval": "daily"}]
    for params in trend_queries:
        response = alice.get("/analytics/trends", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body["completion_rate"], int | float)
        assert isinstance(body["average_wait_time_seconds"], int | float)
        assert isinstance(body["peak_loads"], list)
        for pattern in body["failure_patterns"]:
            assert {"error", "count", "percentage"} <= set(pattern)
    assert_error(alice.get("/analytics/trends", params={"interval": "weekly-ish"}), 422)
    assert_error(alice.get("/analytics/trends", params={"hours": -1}), 422)


def test_alerts(alice: httpx.Client) -> None:
    body = alice.get("/alerts").json()
    assert isinstance(body["alerts"], list)
    for alert in body["alerts"]:
        assert {"alert_id", "type", "severity", "description", "created_at", "acknowledged"} <= set(alert)


def test_resilience(admin: httpx.Client, alice: httpx.Client) -> None:
    summary = alice.get("/resilience/summary").json()
    assert {"components_total", "healthy", "unhealthy"} <= set(summary["system_health"])
    assert isinstance(summary["resilience_score"], int | float)
    assert_error(alice.post("/resilience/degradation/mark",
                            json={"service_name": "database", "strategy": "return_cached",
                                  "duration_seconds": 300}), 403)
    marked = admin.post("/resilience/degradation/mark",
                        json={"service_name": "database", "strategy": "return_cached", "duration_seconds": 300})
    assert marked.status_code in (200, 201), marked.text
    after = admin.get("/resilience/summary").json()
    assert "database" in after["degradation"]["services"]
    assert after["degradation"]["degraded_services_count"] >= 1
    assert_error(admin.post("/resilience/degradation/mark", json={"strategy": "return_cached"}), 422)


def test_health_under_api_prefix(dev: DevServer) -> None:
    with dev.client(None) as anonymous:
        response = anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and isinstance(body["version"], str)
    assert isinstance(body["checks"], dict) and all(v == "healthy" for v in body["checks"].values())


# --------------------------------------------------------------------------- errors, rate limits


def test_error_body_format(alice: httpx.Client) -> None:
    body = assert_error(alice.get("/tasks/550e8400-e29b-41d4-a716-446655440000"), 404, "TASK_NOT_FOUND")
    assert body["request_id"]
    response = alice.get("/tasks/nope-1", headers={"X-Request-ID": "req-my-own-id"})
    assert response.json()["request_id"] == "req-my-own-id" == response.headers["X-Request-ID"]


def test_rate_limit_headers(alice: httpx.Client) -> None:
    response = alice.get("/tasks?limit=50&offset=0")
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(response.headers[header]) >= 0, header
    assert int(response.headers["X-RateLimit-Reset"]) > time.time() - 1
    error = alice.get("/tasks/nope-2")
    assert "X-RateLimit-Remaining" in error.headers


@pytest.mark.parametrize("path", ["/workers", "/search/tasks", "/dashboard/stats", "/alerts", "/analytics/trends",
                                  "/resilience/summary", "/search/presets"])
def test_401_without_key(dev: DevServer, path: str) -> None:
    with dev.client(None) as anonymous:
        assert_error(anonymous.get(path), 401)


def test_over_the_rate_limit_is_429(admin: httpx.Client, dev: DevServer) -> None:
    assert admin.patch("/users/bob/limits", json={"requests_per_minute": 3}).status_code == 200
    try:
        with dev.client(BOB_KEY) as bob:
            deadline = time.monotonic() + 10
            statuses: list[int] = []
            while time.monotonic() < deadline and 429 not in statuses:
                statuses.append(bob.get("/tasks", params={"limit": 1}).status_code)
            assert statuses[-1] == 429, statuses
            limited = bob.get("/tasks", params={"limit": 1})
            body = assert_error(limited, 429, "RATE_LIMITED")
            assert "per minute" in body["detail"]
            assert limited.headers["X-RateLimit-Limit"] == "3" and limited.headers["X-RateLimit-Remaining"] == "0"
            assert int(limited.headers["Retry-After"]) >= 1
    finally:
        assert admin.patch("/users/bob/limits", json={"requests_per_minute": None}).status_code == 200


# --------------------------------------------------------------------------- merged from the in-process suite


def test_task_name_of_no_template_names_the_field_and_inline_code_runs(alice: httpx.Client) -> None:
    body = assert_error(alice.post("/tasks", json={**PAYMENT, "task_name": "send_email"}), 422)
    assert body["field"] == "task_name"
    inline = alice.post("/tasks", json={"task_name": "send_email", "script_content": "print('mail')",
                                        "scheduled_at": FAR_FUTURE})
    assert inline.status_code == 201 and inline.json()["task_name"] == "send_email"
    assert inline.json()["script_content"] == "print('mail')"
    alice.post(f"/tasks/{inline.json()['task_id']}/cancel")


def test_cancel_of_a_finished_task_is_409_task_already_finished(alice: httpx.Client) -> None:
    done = _submit(alice, scheduled_at=None, annotations=sim(0.1))
    wait_status(alice, str(done["task_id"]), {"completed"})
    assert_error(alice.post(f"/tasks/{done['task_id']}/cancel"), 409, "TASK_ALREADY_FINISHED")


def test_replay_clones_the_arguments(alice: httpx.Client) -> None:
    original = _submit(alice, scheduled_at=FAR_FUTURE)
    alice.post(f"/tasks/{original['task_id']}/cancel")
    replay = alice.post(f"/tasks/{original['task_id']}/replay").json()
    clone = alice.get(f"/tasks/{replay['task_id']}").json()
    assert clone["replay_of"] == original["task_id"] and clone["task_kwargs"] == PAYMENT["task_kwargs"]
    assert clone["task_args"] == PAYMENT["task_args"]
    alice.post(f"/tasks/{replay['task_id']}/cancel")


# --------------------------------------------------------------------------- the documented examples, as written


def test_dtq_profile_replays_the_documented_examples(dev: DevServer) -> None:
    """The Distributed Task Queue System API reference's task examples under its profile (X-Compat-Profile: dtq):
    UUID task ids, upper-case statuses, the envelope, POST cancel, replay, timeline, compare, errors."""
    with dev.client(ALICE_KEY, **{"X-Compat-Profile": "dtq"}) as client:
        # Submit Task -> 201 {"task_id": uuid, "task_name", "status": "PENDING", "priority": 8, "created_at"}
        submitted = client.post("/tasks", json={**RUNNABLE, "scheduled_at": FAR_FUTURE})
        assert submitted.status_code == 201, submitted.text
        body = submitted.json()
        assert is_uuid(body["task_id"]) and body["task_name"] == "process_payment" and body["status"] == "PENDING"
        assert body["priority"] == 8 and is_iso(body["created_at"])
        # Get Task -> "RUNNING" with worker_id, started_at, completed_at null, retry_count 0, max_retries 3.
        running = client.post("/tasks", json={**RUNNABLE, "scheduled_at": None, "annotations": sim(20)}).json()
        got = wait_started(client, running["task_id"], status="RUNNING")
        assert isinstance(got["worker_id"], str) and got["worker_id"] and is_iso(got["started_at"])
        assert got["completed_at"] is None and got["retry_count"] == 0 and got["max_retries"] == 3
        # Cancel Task: POST /cancel -> {"task_id", "status": "CANCELLED", "message"}
        cancelled = client.post(f"/tasks/{running['task_id']}/cancel").json()
        assert cancelled["task_id"] == running["task_id"] and cancelled["status"] == "CANCELLED"
        assert cancelled["message"]
        # List Tasks ?status=FAILED&priority=8&limit=10 -> {"total", "limit": 10, "offset": 0, "tasks"}
        failed = client.post("/tasks", json={**RUNNABLE, "scheduled_at": None, "max_retries": 0,
                                             "annotations": sim(0.1, exit_code=1)}).json()
        wait_status(client, failed["task_id"], {"FAILED"})
        listed = client.get("/tasks?status=FAILED&priority=8&limit=10").json()
        assert {"total", "limit", "offset", "tasks"} <= set(listed) and listed["limit"] == 10
        assert failed["task_id"] in {t["task_id"] for t in listed["tasks"]}
        assert all(t["status"] == "FAILED" for t in listed["tasks"])
        pending = {t["task_id"] for t in
                   client.get("/tasks", params={"status": "PENDING", "limit": 1000}).json()["tasks"]}
        assert body["task_id"] in pending
        # Replay Task -> {"task_id": new uuid, "status": "PENDING", "original_task_id"}
        replay = client.post(f"/tasks/{failed['task_id']}/replay").json()
        assert is_uuid(replay["task_id"]) and replay["task_id"] != failed["task_id"]
        assert replay["status"] == "PENDING" and replay["original_task_id"] == failed["task_id"]
        # Timeline -> {"task_id", "task_name", "status": "FAILED", ..., "events": [...]}
        timeline = client.get(f"/tasks/{failed['task_id']}/timeline").json()
        assert timeline["task_id"] == failed["task_id"] and timeline["status"] == "FAILED"
        assert "started" in {e["event_type"] for e in timeline["events"]}
        # Compare Tasks -> {"same_function", "same_args", "same_priority", "timing": {task1_duration, ...}}
        compared = client.get(f"/tasks/{failed['task_id']}/compare/{replay['task_id']}").json()
        assert compared["same_function"] is True and compared["same_args"] is True
        assert set(compared["timing"]) >= {"task1_duration", "task2_duration"}
        # Error Response Format: {"detail": "Task not found", "code": "TASK_NOT_FOUND", "request_id", "timestamp"}
        assert_error(client.get("/tasks/550e8400-e29b-41d4-a716-446655440000"), 404, "TASK_NOT_FOUND")
        for task_id in (body["task_id"], replay["task_id"]):
            client.post(f"/tasks/{task_id}/cancel")
