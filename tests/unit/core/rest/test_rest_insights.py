"""kubetask.core.rest.insights: failures, trends, dashboard, worker grid, presets, search predicates, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.rest.errors import RestError
from kubetask.core.rest.insights import (
    CSV_COLUMNS,
    PRESETS,
    apply_preset,
    dashboard_stats,
    failure_category,
    failures,
    parse_interval,
    presets_public,
    ran_on,
    task_name_matches,
    tasks_csv,
    trends,
    worker_grid,
)

NOW = datetime(2026, 1, 25, 14, 30, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def task(name: str, phase: str | None = None, *, created: datetime | None = None, started: datetime | None = None,
         done: datetime | None = None, node: str | None = None, reason: str | None = None, exit_code: int | None = None,
         priority: int = 5, user: str = "alice", display: str | None = None, cancel: bool = False,
         **spec: Any) -> dict[str, Any]:
    created = created or ago(hours=1)
    if phase == "Running" and started is None:
        started = created  # a Running task has started on a node (admitted-but-not-started tasks are waiting)
    status: dict[str, Any] = {"createdAt": iso(created)}
    if phase:
        status["phase"] = phase
    if started:
        execution: dict[str, Any] = {"id": 1, "startedAt": iso(started), "nodeName": node}
        if done:
            execution["finishedAt"] = iso(done)
            execution["exitCode"] = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
        if reason:
            execution["reason"] = reason
        status.update({"startedAt": iso(started), "executions": [execution], "nodeName": node})
    if done:
        status["completedAt"] = iso(done)
    return {"metadata": {"name": name, "namespace": f"kubetask-{user}", "creationTimestamp": iso(created)},
            "spec": {"user": user, "priority": priority, "displayName": display or name, "cancel": cancel, **spec},
            "status": status}


def node(name: str, *, ready: bool = True, gpus: int = 4, cpu: str = "32", memory: str = "64Gi",
         labels: dict[str, str] | None = None, created: datetime | None = None,
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    all_labels = dict(labels or {})
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
        all_labels["nvidia.com/gpu.present"] = "true"
    return {"metadata": {"name": name, "labels": all_labels, "annotations": annotations or {},
                         "creationTimestamp": iso(created or ago(days=1))},
            "status": {"allocatable": allocatable, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False",
                 "reason": "KubeletReady" if ready else "KubeletNotReady",
                 "lastTransitionTime": iso(ago(minutes=10))}]}}


def pod(name: str, node_name: str, *, cpu: str = "8", memory: str = "16Gi", gpus: int = 1,
        phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kubetask-alice", "labels": {"kubetask.io/task": name}},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {
                "requests": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


@pytest.mark.parametrize(("reason", "expected"), [
    ("DeadlineExceeded", "Timeout"), ("OOMKilled", "OOMKilled"), ("ImagePullBackOff", "ImagePullError"),
    ("ErrImagePull", "ImagePullError"), ("Error", "Error"), (None, "Error"), ("BackoffLimitExceeded", "Error"),
    ("Evicted", "Evicted"), ("DependencyFailed", "DependencyFailed"),
    ("CreateContainerConfigError", "CreateContainerConfigError"),
])
def test_failure_category(reason: str | None, expected: str) -> None:
    assert failure_category(reason) == expected


def test_failures_counts_each_failed_execution_and_never_run_failures() -> None:
    retried = task("retried", "Succeeded", started=ago(minutes=20), done=ago(minutes=5))
    retried["status"]["executions"] = [
        {"id": 1, "startedAt": iso(ago(minutes=20)), "finishedAt": iso(ago(minutes=15)), "exitCode": 1,
         "reason": "OOMKilled", "nodeName": "n1"},
        {"id": 2, "startedAt": iso(ago(minutes=10)), "finishedAt": iso(ago(minutes=5)), "exitCode": 0,
         "nodeName": "n1"},
    ]
    orphan = task("orphan", "Failed", done=ago(minutes=3))
    orphan["status"]["conditions"] = [{"type": "Finished", "status": "True", "reason": "DependencyFailed"}]
    old = task("old", "Failed", started=ago(days=3), done=ago(days=3), reason="Error")
    found = failures([retried, orphan, old], ago(hours=1), NOW)
    assert sorted((f.task, f.category) for f in found) == [("orphan", "DependencyFailed"), ("retried", "OOMKilled")]


def test_trends_rates_waits_peaks_and_patterns() -> None:
    tasks = [
        task("s1", "Succeeded", created=ago(minutes=40), started=ago(minutes=39, seconds=50), done=ago(minutes=30)),
        task("s2", "Succeeded", created=ago(minutes=40), started=ago(minutes=39, seconds=30), done=ago(minutes=20)),
        task("s3", "Succeeded", created=ago(hours=3, minutes=10), started=ago(hours=3), done=ago(hours=2)),
        task("f1", "Failed", created=ago(minutes=40), started=ago(minutes=39), done=ago(minutes=10),
             reason="DeadlineExceeded"),
        task("c1", "Cancelled", created=ago(minutes=40), done=ago(minutes=35)),
        task("p1", "Pending", created=ago(minutes=5)),
        task("ancient", "Failed", created=ago(days=5), started=ago(days=5), done=ago(days=5), reason="Error"),
    ]
    body = trends(tasks, hours=24, interval="hourly", now=NOW)
    assert body["completion_rate"] == 75.0  # 3 succeeded of 4 finished (cancelled excluded)
    # waits: s1 10 s, s2 30 s, s3 600 s, f1 60 s
    assert body["average_wait_time_seconds"] == 175.0
    assert body["peak_loads"] == ["13:00", "11:00", "14:00"]  # 4 submitted at 13:50; ties (1 each): earlier first
    assert body["failure_patterns"] == [{"error": "Timeout", "count": 1, "percentage": 100.0}]
    assert body["totals"] == {"submitted": 6, "started": 4, "completed": 3, "failed": 1, "cancelled": 1,
                              "finished": 4}
    series = {b["bucket"]: b for b in body["series"]}
    assert len(body["series"]) == 25 and body["series"][-1]["bucket"] == "14:00"
    assert series["13:00"]["submitted"] == 4 and series["13:00"]["started"] == 3
    assert series["14:00"]["completed"] == 2 and series["14:00"]["failed"] == 1
    assert series["13:00"]["cancelled"] == 1

    daily = trends(tasks, hours=48, interval="DAILY", now=NOW)
    assert [b["bucket"] for b in daily["series"]] == ["2026-01-23", "2026-01-24", "2026-01-25"]
    assert daily["peak_loads"] == ["2026-01-25"]


def test_trends_with_nothing_and_bad_parameters() -> None:
    empty = trends([], hours=1, now=NOW)
    assert empty["completion_rate"] == 0.0 and empty["average_wait_time_seconds"] == 0.0
    assert empty["peak_loads"] == [] and empty["failure_patterns"] == []
    for kwargs, field in (({"hours": 0}, "hours"), ({"hours": 100000}, "hours"), ({"interval": "weekly"}, "interval")):
        with pytest.raises(RestError) as info:
            trends([], now=NOW, **kwargs)
        assert info.value.status == 422 and info.value.field == field
    assert parse_interval("Hour") == "hourly" and parse_interval(None) == "hourly"


def test_failure_patterns_percentages() -> None:
    tasks = [task(f"t{i}", "Failed", started=ago(minutes=30), done=ago(minutes=20), reason=r)
             for i, r in enumerate(["DeadlineExceeded"] * 3 + ["OOMKilled"] + ["Error"] * 6)]
    patterns = trends(tasks, hours=1, now=NOW)["failure_patterns"]
    assert patterns == [{"error": "Error", "count": 6, "percentage": 60.0},
                        {"error": "Timeout", "count": 3, "percentage": 30.0},
                        {"error": "OOMKilled", "count": 1, "percentage": 10.0}]


def test_dashboard_stats() -> None:
    nodes = [node("g1"), node("g2", labels={"kubetask.io/paused": "true"}), node("g3", ready=False),
             node("cp", gpus=0, labels={"node-role.kubernetes.io/control-plane": ""})]
    pods = [pod("a", "g1", cpu="16", memory="32Gi", gpus=2), pod("b", "g2", cpu="8", memory="16Gi", gpus=1),
            pod("done", "g1", phase="Succeeded")]
    tasks = [task("p", "Pending"), task("q", "Queued"), task("r", "Running"), task("s", "Succeeded"),
             task("f", "Failed"), task("x", "Pending", cancel=True)]
    body = dashboard_stats(tasks, nodes, pods, now=NOW)
    assert body["queue_depth"] == 2
    assert (body["active_workers"], body["total_workers"]) == (1, 3)  # cp is not a worker
    assert body["workers_by_status"] == {"ACTIVE": 1, "PAUSED": 1, "DRAINING": 0, "OFFLINE": 1}
    assert body["cpu_usage_percent"] == 37.5  # 24 of 64 CPUs on the Ready workers g1 + g2
    assert body["memory_usage_percent"] == 37.5  # 48 of 128 GiB
    assert (body["gpus_total"], body["gpus_allocated"], body["gpu_utilization_percent"]) == (8, 3, 37.5)
    assert body["total_tasks_submitted"] == 6
    assert (body["tasks_completed"], body["tasks_failed"], body["tasks_cancelled"]) == (1, 1, 1)
    assert body["status_counts"] == {"pending": 1, "queued": 1, "running": 1, "completed": 1, "failed": 1,
                                     "cancelled": 1}
    assert body["running_task_pods"] == 2
    empty = dashboard_stats([], [], [], now=NOW)
    assert empty["cpu_usage_percent"] == 0.0 and empty["total_workers"] == 0


def test_worker_grid_rates() -> None:
    nodes = [node("g1", created=ago(hours=2), annotations={"kubetask.io/capacity": "4"}), node("g2")]
    tasks = [
        task("ok1", "Succeeded", started=ago(minutes=50), done=ago(minutes=40), node="g1"),
        task("ok2", "Succeeded", started=ago(minutes=30), done=ago(minutes=20), node="g1"),
        task("ok3", "Succeeded", started=ago(minutes=30), done=ago(minutes=15), node="g1"),
        task("bad", "Failed", started=ago(minutes=20), done=ago(minutes=10), node="g1", reason="Error"),
        task("old", "Failed", started=ago(hours=3), done=ago(hours=2), node="g1", reason="Error"),
    ]
    grid = worker_grid(nodes, [pod("r", "g1")], tasks, now=NOW)
    rows = {w["worker_id"]: w for w in grid["workers"]}
    assert rows["g1"]["task_rate"] == 4.0 and rows["g1"]["error_rate"] == 25.0
    assert rows["g1"]["uptime_seconds"] == 7200 and rows["g1"]["capacity_utilization"] == 0.25
    assert rows["g1"]["status"] == "ACTIVE"
    assert rows["g2"]["task_rate"] == 0.0 and rows["g2"]["error_rate"] == 0.0
    two_hours = worker_grid(nodes, [], tasks, now=NOW, window_seconds=3 * 3600)
    assert {w["worker_id"]: w for w in two_hours["workers"]}["g1"]["task_rate"] == round(5 / 3, 2)


def test_presets() -> None:
    assert {p["name"] for p in presets_public()["presets"]} >= {
        "failed_today", "high_priority_pending", "stuck_tasks", "recently_completed"}
    tasks = [
        task("failed-now", "Failed", started=ago(hours=2), done=ago(hours=1)),
        task("failed-old", "Failed", started=ago(days=2), done=ago(days=2)),
        task("urgent", "Queued", priority=9), task("urgent-pending", "Pending", priority=8),
        task("urgent-cancelled", "Pending", priority=10, cancel=True), task("meh", "Pending", priority=7),
        task("stuck", "Running", started=ago(hours=1, seconds=1)), task("busy", "Running", started=ago(minutes=59)),
        task("just-done", "Succeeded", started=ago(minutes=50), done=ago(minutes=30)),
        task("done-earlier", "Succeeded", started=ago(hours=3), done=ago(hours=2)),
        task("waiting-long", "Pending", created=ago(hours=2)),
    ]

    def names(preset: str) -> set[str]:
        return {t["metadata"]["name"] for t in apply_preset(PRESETS[preset], tasks, NOW)}

    assert names("failed_today") == {"failed-now"}
    assert names("high_priority_pending") == {"urgent", "urgent-pending"}
    assert names("stuck_tasks") == {"stuck"}
    assert names("recently_completed") == {"just-done"}
    assert names("running_now") == {"stuck", "busy"}
    assert "waiting-long" in names("long_waiting") and "urgent" not in names("long_waiting")


def test_task_name_and_worker_predicates() -> None:
    t = task("proc-1a2b", display="process_payment", template={"name": "payments"})
    assert task_name_matches(t, "PROCESS_PAYMENT")
    assert task_name_matches(t, "proc-1a2b") and task_name_matches(t, "payments")
    assert task_name_matches(t, "process_*") and not task_name_matches(t, "process")
    retried = task("r", "Running", started=ago(minutes=1), node="n2")
    retried["status"]["executions"].insert(0, {"id": 0, "nodeName": "n1"})
    assert ran_on(retried, "n1") and ran_on(retried, "n2") and not ran_on(retried, "n3")


def test_csv_header_rows_and_formula_guard() -> None:
    rows = [{"task_id": "t1", "task_name": "=HYPERLINK(\"x\")", "status": "failed", "priority": 8,
             "tags": ["a", "b"], "error": "boom, with comma", "duration_seconds": 1.5},
            {"task_id": "t2", "task_name": "plain", "status": "pending", "priority": 0}]
    text = tasks_csv(rows)
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["task_id"] for r in parsed] == ["t1", "t2"]
    assert parsed[0]["task_name"] == "'=HYPERLINK(\"x\")"
    assert parsed[0]["tags"] == "a;b" and parsed[0]["error"] == "boom, with comma"
    assert parsed[0]["priority"] == "8" and parsed[0]["duration_seconds"] == "1.5"
    assert parsed[1]["worker_id"] == "" and parsed[1]["priority"] == "0"
    assert tasks_csv([]) == ",".join(CSV_COLUMNS) + "\r\n"
