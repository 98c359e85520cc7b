"""Workers, search, dashboard, analytics, alerts and resilience: how they compute from controlled cluster state.

The Distributed Task Queue System API's documented examples of these endpoints are replayed against the
real operator in tests/component/compat/test_seed_003_dtq.py; here the real API runs over HTTP against
the session's local control plane with no operator (the tests play it by writing task status), so counts,
rates, alerts and acknowledgements can be checked exactly.  Workers are the kwok nodes (gpu-a100-1/A100,
gpu-h100-1/H100, both 8 GPUs, and cpu-1) plus the ones registered here (deleted again: the control plane
outlives this module).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kt_api_support import ROOMY, Stack, assert_error_body

import kubetask.api.server as api_server
from kubetask.core.rest.alerts import alert_id
from kubetask.core.rest.insights import CSV_COLUMNS
from kubetask.kube.client import CONFIGMAPS, NODES, PODS, TASKS, TENANTS, KubeClient
from kubetask.settings import ApiSettings, KubeSettings

SCRIPT = {"script_content": "print('hi')", "script_type": "python"}
WORKER_KEYS = {"worker_id", "hostname", "status", "capacity", "current_load", "current_tasks", "last_heartbeat",
               "is_draining"}


# --------------------------------------------------------------------------- stack


@pytest.fixture
def nodes(shared: Stack) -> Iterator[list[str]]:
    """Names of Nodes a test registers; deleted afterwards (other tests share the control plane)."""
    names: list[str] = []
    yield names
    for name in names:
        shared.cluster.delete("v1", "Node", name)


@pytest.fixture
def anon(shared: Stack) -> Iterator[httpx.Client]:
    with shared.client() as client:
        yield client


def _tenant(shared: Stack, name: str, limits: dict[str, Any] | None = None) -> httpx.Client:
    """A fresh tenant: its own tasks only, so counts and rates are exact."""
    key = f"key-{name}-{uuid.uuid4().hex[:8]}"
    shared.add_tenant(name, key, limits={**ROOMY, **(limits or {})})
    return shared.client(key)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/tasks", json={**SCRIPT, **fields})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def _set_status(shared: Stack, client: httpx.Client, task: dict[str, Any], status: dict[str, Any]) -> None:
    shared.set_status(task, status, client=client)


def _finished(shared: Stack, client: httpx.Client, task: dict[str, Any], *, phase: str, node: str,
              created: datetime, started: datetime, done: datetime, reason: str | None = None,
              exit_code: int = 0) -> None:
    execution = {"id": 1, "jobName": f"{task['id']}-1", "podName": f"{task['id']}-1-x", "nodeName": node,
                 "startedAt": _iso(started), "finishedAt": _iso(done), "exitCode": exit_code}
    if reason:
        execution["reason"] = reason
    _set_status(shared, client, task, {"phase": phase, "createdAt": _iso(created), "startedAt": _iso(started),
                                       "completedAt": _iso(done), "nodeName": node, "executions": [execution]})


def _running(shared: Stack, client: httpx.Client, task: dict[str, Any], *, node: str, started: datetime) -> None:
    execution = {"id": 1, "jobName": f"{task['id']}-1", "podName": f"{task['id']}-1-x", "nodeName": node,
                 "startedAt": _iso(started)}
    _set_status(shared, client, task, {"phase": "Running", "startedAt": _iso(started), "nodeName": node,
                                       "executions": [execution]})


# --------------------------------------------------------------------------- auth on every endpoint


def test_every_endpoint_requires_auth(anon: httpx.Client) -> None:
    for method, path in (
        ("GET", "/workers"), ("GET", "/workers/gpu-a100-1"), ("GET", "/workers/gpu-a100-1/status"),
        ("POST", "/workers?hostname=x"), ("PATCH", "/workers/gpu-a100-1/pause"),
        ("PATCH", "/workers/gpu-a100-1/resume"), ("POST", "/workers/gpu-a100-1/drain"),
        ("PATCH", "/workers/gpu-a100-1/capacity"), ("GET", "/search/tasks"), ("GET", "/search/presets"),
        ("GET", "/search/presets/failed_today"), ("GET", "/search/tasks/export/csv"), ("GET", "/dashboard/stats"),
        ("GET", "/dashboard/workers"), ("GET", "/analytics/trends"), ("GET", "/alerts"),
        ("POST", "/alerts/alert-x/acknowledge"), ("GET", "/resilience/summary"),
        ("POST", "/resilience/degradation/mark"),
    ):
        assert_error_body(anon.request(method, path, json={}), 401, "UNAUTHORIZED")


# --------------------------------------------------------------------------- workers


def test_list_workers_are_the_nodes(a: httpx.Client) -> None:
    response = a.get("/workers")
    assert response.status_code == 200, response.text
    body = response.json()
    by_id = {w["worker_id"]: w for w in body["workers"]}
    assert {"gpu-a100-1", "gpu-h100-1", "cpu-1"} <= set(by_id)
    assert body["total"] == len(body["workers"])
    gpu1 = by_id["gpu-a100-1"]
    assert set(gpu1) >= WORKER_KEYS
    assert gpu1["hostname"] == "gpu-a100-1"
    assert gpu1["gpus"] == 8 and gpu1["gpu_type"] == "A100"
    assert gpu1["labels"]["nvidia.com/gpu.present"] == "true"
    assert by_id["cpu-1"]["gpus"] == 0
    assert by_id["gpu-h100-1"]["gpu_type"] == "H100"
    offline = a.get("/workers", params={"status": "offline"}).json()
    assert all(w["status"] == "OFFLINE" for w in offline["workers"])
    assert_error_body(a.get("/workers", params={"status": "sleepy"}), 422, "VALIDATION_ERROR")


def test_register_pause_resume_drain_capacity(shared: Stack, root: httpx.Client, nodes: list[str]) -> None:
    name = f"compute-{uuid.uuid4().hex[:6]}"
    nodes.append(name)
    created = root.post("/workers", params={"hostname": name, "capacity": 5})
    assert created.status_code == 201, created.text
    body = created.json()
    assert {"worker_id": name, "hostname": name, "status": "ACTIVE", "capacity": 5, "current_load": 0}.items() \
        <= body.items()
    node = shared.kube(lambda c: c.get(NODES, name))
    assert node["metadata"]["labels"]["kubetask.io/worker"] == "true"
    assert node["metadata"]["annotations"]["kubetask.io/capacity"] == "5"

    status = root.get(f"/workers/{name}/status").json()
    assert status["status"] == "ACTIVE" and status["is_draining"] is False and status["last_heartbeat"]

    paused = root.patch(f"/workers/{name}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["worker_id"] == name and paused.json()["status"] == "paused"
    assert root.get(f"/workers/{name}/status").json()["status"] == "PAUSED"
    assert shared.kube(lambda c: c.get(NODES, name))["metadata"]["labels"]["kubetask.io/paused"] == "true"

    resumed = root.patch(f"/workers/{name}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["worker_id"] == name and resumed.json()["status"] == "resumed"
    assert root.get(f"/workers/{name}/status").json()["status"] == "ACTIVE"
    assert "kubetask.io/paused" not in shared.kube(lambda c: c.get(NODES, name))["metadata"]["labels"]

    drained = root.post(f"/workers/{name}/drain")
    assert drained.status_code == 200
    assert drained.json()["worker_id"] == name and drained.json()["status"] == "draining"
    after = root.get(f"/workers/{name}/status").json()
    assert after["is_draining"] is True and after["status"] == "DRAINING"

    capacity = root.patch(f"/workers/{name}/capacity", json={"capacity": 10})
    assert capacity.status_code == 200, capacity.text
    assert capacity.json()["worker_id"] == name and capacity.json()["capacity"] == 10
    assert root.get(f"/workers/{name}").json()["capacity"] == 10
    assert shared.kube(lambda c: c.get(NODES, name))["metadata"]["annotations"]["kubetask.io/capacity"] == "10"

    root.patch(f"/workers/{name}/resume")
    assert root.get(f"/workers/{name}/status").json()["is_draining"] is False


def test_register_existing_node_keeps_it(shared: Stack, root: httpx.Client) -> None:
    before = shared.kube(lambda c: c.get(NODES, "cpu-1"))["metadata"]
    try:
        response = root.post("/workers", params={"hostname": "cpu-1", "capacity": 7})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["worker_id"] == "cpu-1" and body["capacity"] == 7 and body["registration"] == "existing-node"
        node = shared.kube(lambda c: c.get(NODES, "cpu-1"))
        assert node["status"]["allocatable"]["cpu"] == "32"  # the real node is patched, not replaced
        assert node["metadata"]["labels"]["kubetask.io/worker"] == "true"
        assert node["metadata"]["annotations"]["kubetask.io/capacity"] == "7"
    finally:  # the kwok node is the session's: put back what registration added
        restore = {"metadata": {
            "labels": {k: before.get("labels", {}).get(k) for k in ("kubetask.io/worker",)},
            "annotations": {k: (before.get("annotations") or {}).get(k) for k in ("kubetask.io/capacity",)}}}
        shared.kube(lambda c: c.patch(NODES, "cpu-1", restore))


def test_worker_mutations_need_admin_and_valid_input(a: httpx.Client, root: httpx.Client) -> None:
    for method, path in (("PATCH", "/workers/gpu-a100-1/pause"), ("PATCH", "/workers/gpu-a100-1/resume"),
                         ("POST", "/workers/gpu-a100-1/drain"), ("POST", "/workers?hostname=w1")):
        body = assert_error_body(a.request(method, path), 403, "FORBIDDEN")
        assert "admin" in body["detail"]
    assert_error_body(a.patch("/workers/gpu-a100-1/capacity", json={"capacity": 3}), 403)
    assert a.get("/workers/gpu-a100-1/status").json()["status"] == "ACTIVE"  # nothing changed

    assert_error_body(root.patch("/workers/nope/pause"), 404, "WORKER_NOT_FOUND")
    assert_error_body(root.post("/workers/nope/drain"), 404, "WORKER_NOT_FOUND")
    assert_error_body(root.patch("/workers/nope/capacity", json={"capacity": 3}), 404, "WORKER_NOT_FOUND")
    missing = assert_error_body(root.post("/workers"), 422, "VALIDATION_ERROR")
    assert missing["field"] == "hostname"
    bad = assert_error_body(root.post("/workers", params={"hostname": "Bad_Host!"}), 422)
    assert bad["field"] == "hostname"
    zero = assert_error_body(root.post("/workers", params={"hostname": "w-ok", "capacity": 0}), 422)
    assert zero["field"] == "capacity"
    body = assert_error_body(root.patch("/workers/gpu-a100-1/capacity", json={"capacity": -1}), 422)
    assert body["field"] == "capacity"
    body = assert_error_body(root.patch("/workers/gpu-a100-1/capacity", json={}), 422)
    assert body["field"] == "capacity"


def test_load_and_usage_come_from_task_pods(shared: Stack, a: httpx.Client, root: httpx.Client) -> None:
    """A running kubetask pod on gpu-a100-1 (2 GPUs, 8 CPUs) shows as load, GPUs and CPU usage to an admin;
    to alice it is someone else's work (issue 12): capacity yes, that load no."""
    pod_name = f"load-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "default",
                     "labels": {"kubetask.io/task": "someone-elses-task"},
                     "annotations": {"kubetask.dev/sim-duration-seconds": "3600"}},
        "spec": {"nodeName": "gpu-a100-1", "restartPolicy": "Never",
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{"name": "main", "image": "busybox", "resources": {
                     "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
                     "limits": {"nvidia.com/gpu": "2"}}}]},
    }
    before = root.get("/dashboard/stats").json()
    alice_before = a.get("/dashboard/stats").json()
    alice_worker_before = a.get("/workers/gpu-a100-1").json()
    shared.kube(lambda c: c.create(PODS, pod, "default"))
    try:
        worker = shared.wait_for(lambda: (w := root.get("/workers/gpu-a100-1").json())["current_load"] >= 1 and w)
        assert worker["gpus_allocated"] >= 2 and worker["current_tasks"] >= 1
        assert 0 < worker["capacity_utilization"] <= 1
        seen_by_alice = a.get("/workers/gpu-a100-1").json()
        assert seen_by_alice["tasks"] == []  # another namespace's task id is not shown to alice
        for key in ("current_load", "current_tasks", "gpus_allocated"):
            assert seen_by_alice[key] == alice_worker_before[key], key
        assert seen_by_alice["gpus"] == worker["gpus"]  # capacity is not tenant data
        alice_stats = a.get("/dashboard/stats").json()
        for key in ("running_task_pods", "gpus_allocated", "cpu_usage_percent", "memory_usage_percent"):
            assert alice_stats[key] == alice_before[key], key
        stats = root.get("/dashboard/stats").json()
        assert stats["cpu_usage_percent"] > before["cpu_usage_percent"]
        assert stats["memory_usage_percent"] > before["memory_usage_percent"]
        assert stats["gpus_allocated"] >= before["gpus_allocated"] + 2
        assert stats["gpus_total"] >= 16  # the two 8-GPU kwok nodes
        assert stats["gpu_utilization_percent"] == round(100 * stats["gpus_allocated"] / stats["gpus_total"], 1)
    finally:  # at once, and gone before the next test: it holds 2 GPUs of the session's node
        shared.cluster.admin().delete(f"/api/v1/namespaces/default/pods/{pod_name}",
                                      params={"gracePeriodSeconds": "0"})
        shared.wait_for(lambda: shared.cluster.get("v1", "Pod", pod_name, "default") is None)


# --------------------------------------------------------------------------- search


def test_search_filters_and_envelope(shared: Stack, a: httpx.Client, b: httpx.Client) -> None:
    token = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    failed = _create(a, name=f"payment {token} one", priority=8, tags=["billing"])
    done = _create(a, name=f"payment {token} two", priority=3)
    other = _create(a, name=f"report {token}", priority=8)
    _finished(shared, a, failed, phase="Failed", node="gpu-h100-1", created=now - timedelta(minutes=5),
              started=now - timedelta(minutes=4), done=now - timedelta(minutes=1), reason="DeadlineExceeded",
              exit_code=1)
    _finished(shared, a, done, phase="Succeeded", node="gpu-a100-1", created=now - timedelta(minutes=5),
              started=now - timedelta(minutes=4), done=now - timedelta(minutes=2))

    response = a.get("/search/tasks", params={"status": "FAILED", "created_after": "2020-01-24",
                                              "search": f"payment {token}", "limit": 50})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"total", "limit", "offset", "tasks"} <= set(body)
    assert body["total"] == 1 and body["limit"] == 50 and body["offset"] == 0
    assert [t["task_id"] for t in body["tasks"]] == [failed["id"]]
    assert body["tasks"][0]["status"] == "failed"

    everything = a.get("/search/tasks", params={"search": token}).json()
    assert {t["task_id"] for t in everything["tasks"]} == {failed["id"], done["id"], other["id"]}
    assert a.get("/search/tasks", params={"search": token, "priority": 8}).json()["total"] == 2
    by_name = a.get("/search/tasks", params={"task_name": f"PAYMENT {token} TWO"}).json()
    assert [t["task_id"] for t in by_name["tasks"]] == [done["id"]]
    wildcard = a.get("/search/tasks", params={"task_name": f"payment {token}*"}).json()
    assert wildcard["total"] == 2
    on_node = a.get("/search/tasks", params={"worker_id": "gpu-h100-1", "search": token}).json()
    assert [t["task_id"] for t in on_node["tasks"]] == [failed["id"]]
    future = _iso(now + timedelta(days=1))
    assert a.get("/search/tasks", params={"search": token, "created_after": future}).json()["total"] == 0
    assert a.get("/search/tasks", params={"search": token, "created_before": "2020-01-01"}).json()["total"] == 0
    paged = a.get("/search/tasks", params={"search": token, "limit": 2, "offset": 2,
                                           "sort_by": "priority", "sort_order": "asc"}).json()
    assert paged["total"] == 3 and paged["limit"] == 2 and paged["offset"] == 2 and len(paged["tasks"]) == 1
    assert paged["tasks"][0]["priority"] == 8

    assert b.get("/search/tasks", params={"search": token}).json()["total"] == 0  # not bob's tasks

    for params, field in (({"created_after": "yesterday-ish"}, "created_after"), ({"status": "sleeping"}, "status"),
                          ({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"priority": "11"}, "priority"),
                          ({"sort_by": "colour"}, "sort_by")):
        error = assert_error_body(a.get("/search/tasks", params=params), 422, "VALIDATION_ERROR")
        assert error["field"] == field, (params, error)


def test_presets_list_and_apply(shared: Stack, a: httpx.Client) -> None:
    listed = a.get("/search/presets")
    assert listed.status_code == 200
    presets = {p["name"]: p for p in listed.json()["presets"]}
    assert {"failed_today", "high_priority_pending", "stuck_tasks", "recently_completed"} <= set(presets)
    assert presets["failed_today"]["description"] == "Tasks failed in last 24 hours"
    assert presets["stuck_tasks"]["description"] == "RUNNING for more than 1 hour"

    now = datetime.now(UTC)
    stuck = _create(a, name="stuck one")
    fresh = _create(a, name="fresh one")
    urgent = _create(a, name="urgent one", priority=9)
    failed = _create(a, name="failed one")
    _running(shared, a, stuck, node="gpu-a100-1", started=now - timedelta(hours=2))
    _running(shared, a, fresh, node="gpu-a100-1", started=now - timedelta(minutes=2))
    _finished(shared, a, failed, phase="Failed", node="gpu-a100-1", created=now - timedelta(hours=3),
              started=now - timedelta(hours=2), done=now - timedelta(hours=1), reason="OOMKilled", exit_code=137)

    def ids(name: str) -> set[str]:
        response = a.get(f"/search/presets/{name}", params={"limit": 1000})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["preset"] == name and {"total", "limit", "offset", "tasks"} <= set(body)
        assert body["total"] == len(body["tasks"])
        return {t["task_id"] for t in body["tasks"]}

    stuck_ids = ids("stuck_tasks")
    assert stuck["id"] in stuck_ids and fresh["id"] not in stuck_ids
    pending = ids("high_priority_pending")
    assert urgent["id"] in pending and fresh["id"] not in pending and stuck["id"] not in pending
    today = ids("failed_today")
    assert failed["id"] in today and stuck["id"] not in today
    assert failed["id"] not in ids("recently_completed")
    assert_error_body(a.get("/search/presets/everything"), 404, "PRESET_NOT_FOUND")


def test_export_csv(shared: Stack, a: httpx.Client, b: httpx.Client) -> None:
    token = uuid.uuid4().hex[:8]
    first = _create(a, name=f"=cmd|{token}", priority=7)
    second = _create(a, name=f"export {token}", priority=2)
    response = a.get("/search/tasks/export/csv", params={"search": token})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    assert ".csv" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_id = {row[0]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert set(by_id) == {first["id"], second["id"]}
    assert by_id[second["id"]]["priority"] == "2" and by_id[second["id"]]["status"] == "pending"
    assert by_id[first["id"]]["task_name"] == f"'=cmd|{token}"  # no spreadsheet formula
    only_low = list(csv.reader(io.StringIO(a.get("/search/tasks/export/csv",
                                                 params={"search": token, "priority": 2}).text)))
    assert len(only_low) == 2 and only_low[1][0] == second["id"]
    theirs = list(csv.reader(io.StringIO(b.get("/search/tasks/export/csv", params={"search": token}).text)))
    assert theirs == [list(CSV_COLUMNS)]
    error = assert_error_body(a.get("/search/tasks/export/csv", params={"created_before": "soon"}), 422)
    assert error["field"] == "created_before"


# --------------------------------------------------------------------------- dashboard


def test_dashboard_stats(shared: Stack) -> None:
    with _tenant(shared, "dora") as dora:
        now = datetime.now(UTC)
        tasks = [_create(dora, name=f"d{i}") for i in range(5)]
        _finished(shared, dora, tasks[0], phase="Succeeded", node="gpu-a100-1", created=now, started=now,
                  done=now)
        _finished(shared, dora, tasks[1], phase="Failed", node="gpu-a100-1", created=now, started=now, done=now,
                  reason="Error", exit_code=1)
        _running(shared, dora, tasks[2], node="gpu-a100-1", started=now)
        response = dora.get("/dashboard/stats")
        assert response.status_code == 200, response.text
        body = response.json()
        for key in ("queue_depth", "active_workers", "total_workers", "cpu_usage_percent", "memory_usage_percent",
                    "total_tasks_submitted", "tasks_completed", "tasks_failed"):
            assert key in body, key
        assert body["total_tasks_submitted"] == 5
        assert body["tasks_completed"] == 1 and body["tasks_failed"] == 1 and body["queue_depth"] == 2
        assert body["status_counts"]["running"] == 1 and body["status_counts"]["pending"] == 2
        assert body["total_workers"] >= 3 and 0 < body["active_workers"] <= body["total_workers"]
        assert 0.0 <= body["cpu_usage_percent"] <= 100.0 and 0.0 <= body["memory_usage_percent"] <= 100.0
        assert body["scope"] == "dora"


def test_dashboard_worker_grid(shared: Stack, root: httpx.Client, nodes: list[str]) -> None:
    node = f"grid-{uuid.uuid4().hex[:6]}"
    nodes.append(node)
    assert root.post("/workers", params={"hostname": node, "capacity": 4}).status_code == 201
    with _tenant(shared, "gwen") as gina:
        now = datetime.now(UTC)
        ok, bad = _create(gina, name="ok"), _create(gina, name="bad")
        _finished(shared, gina, ok, phase="Succeeded", node=node, created=now - timedelta(minutes=9),
                  started=now - timedelta(minutes=8), done=now - timedelta(minutes=7))
        _finished(shared, gina, bad, phase="Failed", node=node, created=now - timedelta(minutes=9),
                  started=now - timedelta(minutes=8), done=now - timedelta(minutes=6), exit_code=1)
        response = gina.get("/dashboard/workers")
        assert response.status_code == 200, response.text
        rows = {w["worker_id"]: w for w in response.json()["workers"]}
        assert {"gpu-a100-1", "gpu-h100-1", "cpu-1", node} <= set(rows)
        row = rows[node]
        for key in ("worker_id", "hostname", "status", "uptime_seconds", "task_rate", "error_rate",
                    "capacity_utilization"):
            assert key in row, key
        assert row["status"] == "ACTIVE" and row["hostname"] == node
        assert row["task_rate"] == 2.0 and row["error_rate"] == 50.0 and row["capacity_utilization"] == 0.0
        assert 0 <= row["uptime_seconds"] < 600
        assert rows["gpu-h100-1"]["uptime_seconds"] >= 0


# --------------------------------------------------------------------------- analytics


def test_trends(shared: Stack) -> None:
    with _tenant(shared, "tina") as tina:
        now = datetime.now(UTC)
        t = [_create(tina, name=f"t{i}") for i in range(5)]
        for task, phase, reason in ((t[0], "Succeeded", None), (t[1], "Succeeded", None),
                                    (t[2], "Failed", "DeadlineExceeded"), (t[3], "Failed", "OOMKilled")):
            _finished(shared, tina, task, phase=phase, node="gpu-a100-1", created=now - timedelta(seconds=130),
                      started=now - timedelta(seconds=120), done=now - timedelta(seconds=60), reason=reason,
                      exit_code=0 if phase == "Succeeded" else 1)
        response = tina.get("/analytics/trends", params={"hours": 24, "interval": "hourly"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["completion_rate"] == 50.0
        assert body["average_wait_time_seconds"] == 10.0
        patterns = {p["error"]: p for p in body["failure_patterns"]}
        assert patterns == {"Timeout": {"error": "Timeout", "count": 1, "percentage": 50.0},
                            "OOMKilled": {"error": "OOMKilled", "count": 1, "percentage": 50.0}}
        hour = (now - timedelta(seconds=130)).strftime("%H:00")
        assert body["peak_loads"][0] == hour or body["peak_loads"][0] == now.strftime("%H:00")
        assert sum(b["submitted"] for b in body["series"]) == 5
        assert body["series"][-1]["bucket"] == now.strftime("%H:00")
        daily = tina.get("/analytics/trends", params={"hours": 24, "interval": "daily"}).json()
        assert daily["series"][-1]["bucket"] == now.strftime("%Y-%m-%d") and daily["interval"] == "daily"
        assert len(daily["series"]) == 2
        assert assert_error_body(tina.get("/analytics/trends", params={"interval": "weekly"}),
                                 422)["field"] == "interval"
        assert assert_error_body(tina.get("/analytics/trends", params={"hours": 0}), 422)["field"] == "hours"


# --------------------------------------------------------------------------- alerts


def test_alerts_stuck_task_and_acknowledge(shared: Stack) -> None:
    with _tenant(shared, "sam") as sam:
        task = _create(sam, name="long runner")
        started = datetime.now(UTC) - timedelta(hours=2)
        _running(shared, sam, task, node="gpu-a100-1", started=started)
        response = sam.get("/alerts")
        assert response.status_code == 200, response.text
        alerts = response.json()["alerts"]
        stuck = [x for x in alerts if x["type"] == "STUCK_TASK"]
        assert len(stuck) == 1
        alert = stuck[0]
        assert {"alert_id", "type", "severity", "description", "created_at", "acknowledged"} <= set(alert)
        assert alert["severity"] == "WARNING" and alert["acknowledged"] is False
        assert task["id"] in alert["description"]
        assert alert["alert_id"] == alert_id("STUCK_TASK", f"kubetask-sam/{task['object_name']}#1")
        assert sam.get("/alerts").json()["alerts"][0]["alert_id"] == alert["alert_id"]  # deterministic

        acked = sam.post(f"/alerts/{alert['alert_id']}/acknowledge")
        assert acked.status_code == 200, acked.text
        assert acked.json()["alert_id"] == alert["alert_id"] and acked.json()["acknowledged"] is True
        assert acked.json()["acknowledged_by"] == "sam"
        again = [x for x in sam.get("/alerts").json()["alerts"] if x["alert_id"] == alert["alert_id"]]
        assert again[0]["acknowledged"] is True and again[0]["acknowledged_at"]
        assert sam.get("/alerts", params={"acknowledged": "false"}).json()["alerts"] == [
            x for x in sam.get("/alerts").json()["alerts"] if not x["acknowledged"]]
        config_map = shared.kube(lambda c: c.get(CONFIGMAPS, "kubetask-alert-acks", "kubetask-sam"))
        assert alert["alert_id"] in config_map["data"]
        assert_error_body(sam.post("/alerts/alert-0000/acknowledge"), 404, "ALERT_NOT_FOUND")
        assert assert_error_body(sam.get("/alerts", params={"severity": "LOUD"}), 422)["field"] == "severity"


def test_alerts_failure_rate_and_quota(shared: Stack) -> None:
    with _tenant(shared, "fay", limits={"monthlyGpuHours": 1}) as fay:
        now = datetime.now(UTC)
        for i in range(5):
            task = _create(fay, name=f"f{i}")
            _finished(shared, fay, task, phase="Failed" if i < 2 else "Succeeded", node="gpu-h100-1",
                      created=now - timedelta(minutes=10), started=now - timedelta(minutes=9),
                      done=now - timedelta(minutes=5), exit_code=1 if i < 2 else 0)
        month = now.strftime("%Y-%m")

        async def use_up(c: KubeClient) -> Any:
            return await c.patch_status(TENANTS, "fay", {"status": {"month": month, "gpuSecondsThisMonth": 4000}})

        shared.kube(use_up)

        def types() -> dict[str, dict[str, Any]]:
            return {x["type"]: x for x in fay.get("/alerts").json()["alerts"]}

        found = shared.wait_for(lambda: "QUOTA_EXHAUSTED" in (t := types()) and t)
        assert found["HIGH_FAILURE_RATE"]["severity"] == "WARNING"
        assert found["HIGH_FAILURE_RATE"]["details"]["failure_rate"] == 40.0
        assert found["QUOTA_EXHAUSTED"]["severity"] == "CRITICAL"
        assert found["QUOTA_EXHAUSTED"]["details"]["tenant"] == "fay"
        assert next(iter(found)) == "QUOTA_EXHAUSTED"  # most severe first


def test_worker_offline_alert(shared: Stack, root: httpx.Client, nodes: list[str]) -> None:
    node = f"flaky-{uuid.uuid4().hex[:6]}"
    nodes.append(node)
    assert root.post("/workers", params={"hostname": node}).status_code == 201
    stamp = _iso(datetime.now(UTC))
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}}
    shared.kube(lambda c: c.patch(NODES, node, not_ready, subresource="status"))
    shared.wait_for(lambda: root.get(f"/workers/{node}/status").json()["status"] == "OFFLINE")
    alerts = [x for x in root.get("/alerts").json()["alerts"] if x["type"] == "WORKER_OFFLINE"]
    mine = [x for x in alerts if x["details"]["worker_id"] == node]
    assert len(mine) == 1 and mine[0]["severity"] == "WARNING" and "KubeletNotReady" in mine[0]["description"]
    grid = {w["worker_id"]: w for w in root.get("/dashboard/workers").json()["workers"]}
    assert grid[node]["status"] == "OFFLINE"


# --------------------------------------------------------------------------- resilience


@pytest.fixture
def degradations(shared: Stack) -> Iterator[None]:
    """The degradation marks live in a ConfigMap of ``default``: removed again (the cluster is the session's)."""
    yield
    shared.cluster.delete("v1", "ConfigMap", "kubetask-degradations", "default")


def test_resilience_summary_and_degradation(shared: Stack, a: httpx.Client, root: httpx.Client,
                                            degradations: None) -> None:
    response = a.get("/resilience/summary")
    assert response.status_code == 200, response.text
    body = response.json()
    health = body["system_health"]
    assert {"components_total", "healthy", "unhealthy"} <= set(health)
    components = health["components"]
    assert components["apiserver"]["healthy"] is True
    assert components["task_cache"]["healthy"] is True
    assert components["gpu_nodes"]["healthy"] is True
    assert components["operator_webhook"]["healthy"] is False  # no operator in this stack
    assert health["components_total"] == len(components) == health["healthy"] + health["unhealthy"]
    assert body["resilience_score"] == round(100 * health["healthy"] / health["components_total"], 1)

    mark = {"service_name": "database", "strategy": "return_cached", "duration_seconds": 300}
    assert_error_body(a.post("/resilience/degradation/mark", json=mark), 403, "FORBIDDEN")
    marked = root.post("/resilience/degradation/mark", json=mark)
    assert marked.status_code == 200, marked.text
    assert marked.json()["service_name"] == "database" and marked.json()["status"] == "degraded"
    assert marked.json()["expires_at"]
    short = root.post("/resilience/degradation/mark",
                      json={"service_name": "cache", "strategy": "fail_fast", "duration_seconds": 1})
    assert short.status_code == 200
    degradation = a.get("/resilience/summary").json()["degradation"]
    assert "database" in degradation["services"]
    assert degradation["degraded_services_count"] == len(degradation["services"])
    config_map = shared.kube(lambda c: c.get(CONFIGMAPS, "kubetask-degradations", "default"))
    assert "database" in config_map["data"]
    degradation = shared.wait_for(lambda: "cache" not in (d := a.get("/resilience/summary").json()["degradation"])
                                  ["services"] and d)  # the 1-second mark expires, the 300-second one stays
    assert "database" in degradation["services"]

    for payload, field in (({"strategy": "x"}, "service_name"), ({**mark, "duration_seconds": 0}, "duration_seconds"),
                           ({**mark, "service_name": "bad name!"}, "service_name")):
        error = assert_error_body(root.post("/resilience/degradation/mark", json=payload), 422)
        assert error["field"] == field, error


def test_acknowledgement_survives_a_restart(shared: Stack, tmp_path: Path) -> None:
    """Acks live in a ConfigMap: a second API instance on the same cluster sees them."""
    with _tenant(shared, "ray") as ray:
        task = _create(ray, name="forever")
        _running(shared, ray, task, node="gpu-h100-1", started=datetime.now(UTC) - timedelta(hours=3))
        alert = next(x for x in ray.get("/alerts").json()["alerts"] if x["type"] == "STUCK_TASK")
        assert ray.post(f"/alerts/{alert['alert_id']}/acknowledge").status_code == 200
        key = ray.headers["X-API-Key"]
    second = api_server.run_api_in_thread(ApiSettings(host="127.0.0.1", port=0),
                                          KubeSettings(kubeconfig=str(shared.kubeconfig)))
    try:
        with httpx.Client(base_url=second.url + "/api/v1", headers={"X-API-Key": key}, timeout=30) as fresh:
            again = shared.wait_for(lambda: (r := fresh.get("/alerts")).status_code == 200 and r.json())
            mine = [x for x in again["alerts"] if x["alert_id"] == alert["alert_id"]]
            assert mine and mine[0]["acknowledged"] is True
    finally:
        second.stop()


def test_task_objects_untouched_by_reads(shared: Stack, a: httpx.Client) -> None:
    """Reads are served from caches: listing workers, stats and alerts writes nothing to Tasks."""
    task = _create(a, name="observer")
    before = shared.kube(lambda c: c.get(TASKS, task["object_name"], task["namespace"]))["metadata"]["resourceVersion"]
    for path in ("/workers", "/dashboard/stats", "/dashboard/workers", "/alerts", "/analytics/trends",
                 "/search/tasks"):
        assert a.get(path).status_code == 200, path
    after = shared.kube(lambda c: c.get(TASKS, task["object_name"], task["namespace"]))["metadata"]["resourceVersion"]
    assert before == after
