"""kubetask.core.insights: trends, dashboard, alerts, presets, CSV and resilience, with a fixed clock."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.insights import (
    CSV_COLUMNS,
    PRESETS,
    Check,
    Thresholds,
    active_degradations,
    alert_id,
    apply_preset,
    compute_alerts,
    dashboard_stats,
    degradation_record,
    failure_category,
    failures,
    gpu_nodes_check,
    lease_check,
    parse_interval,
    parse_records,
    presets_public,
    prune_expired,
    ran_on,
    resilience_summary,
    task_name_matches,
    tasks_csv,
    trends,
    validate_service_name,
    webhook_check,
    worker_grid,
)
from kubetask.core.rest import RestError

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


# --------------------------------------------------------------------------- failures and trends


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


# --------------------------------------------------------------------------- dashboard


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


# --------------------------------------------------------------------------- alerts


def test_alert_ids_are_deterministic() -> None:
    assert alert_id("STUCK_TASK", "ns/t#1") == alert_id("STUCK_TASK", "ns/t#1")
    assert alert_id("STUCK_TASK", "ns/t#1") != alert_id("STUCK_TASK", "ns/t#2")
    assert alert_id("STUCK_TASK", "x") != alert_id("WORKER_OFFLINE", "x")
    assert alert_id("A", "b").startswith("alert-")


def test_alerts_from_state() -> None:
    tasks = [task(f"w{i}", "Pending") for i in range(3)]
    tasks.append(task("stuck", "Running", started=ago(hours=2), node="g1"))
    tasks.append(task("fine", "Running", started=ago(minutes=5), node="g1"))
    tasks += [task(f"f{i}", "Failed", started=ago(minutes=30), done=ago(minutes=20), reason="Error")
              for i in range(3)]
    tasks += [task(f"s{i}", "Succeeded", started=ago(minutes=30), done=ago(minutes=20)) for i in range(3)]
    nodes = [node("g1"), node("down", ready=False), node("cp-down", ready=False, gpus=0,
                                                         labels={"node-role.kubernetes.io/control-plane": ""})]
    tenants = [{"metadata": {"name": "alice"},
                "spec": {"limits": {"monthlyGpuHours": 10, "maxPending": 3}},
                "status": {"month": "2026-01", "gpuSecondsThisMonth": 9.5 * 3600}}]
    thresholds = Thresholds(queue_depth_warning=2, queue_depth_critical=10)
    alerts = compute_alerts(tasks, nodes, [pod("p", "down")], tenants, thresholds=thresholds, now=NOW)
    by_type = {a["type"]: a for a in alerts}
    assert set(by_type) == {"HIGH_QUEUE_DEPTH", "STUCK_TASK", "WORKER_OFFLINE", "HIGH_FAILURE_RATE",
                            "QUOTA_NEARLY_EXHAUSTED", "PENDING_LIMIT_REACHED"}
    assert by_type["HIGH_QUEUE_DEPTH"]["severity"] == "WARNING"
    assert by_type["HIGH_QUEUE_DEPTH"]["description"] == "Queue depth 3 exceeded 2"
    assert by_type["STUCK_TASK"]["details"]["task_id"] == "stuck"
    assert by_type["STUCK_TASK"]["created_at"] == iso(ago(hours=1))
    assert by_type["WORKER_OFFLINE"]["severity"] == "CRITICAL"  # it still has a task pod
    assert by_type["WORKER_OFFLINE"]["details"]["worker_id"] == "down"
    assert by_type["HIGH_FAILURE_RATE"]["severity"] == "CRITICAL" and \
        by_type["HIGH_FAILURE_RATE"]["details"]["failure_rate"] == 50.0
    assert by_type["QUOTA_NEARLY_EXHAUSTED"]["details"]["used_gpu_hours"] == 9.5
    assert [a["severity"] for a in alerts] == sorted((a["severity"] for a in alerts),
                                                     key=["CRITICAL", "WARNING", "INFO"].index)
    for alert in alerts:
        assert alert["acknowledged"] is False and alert["alert_id"].startswith("alert-")
        assert set(alert) >= {"alert_id", "type", "severity", "description", "created_at", "acknowledged"}
    again = compute_alerts(tasks, nodes, [pod("p", "down")], tenants, thresholds=thresholds,
                           now=NOW + timedelta(minutes=3))
    assert {a["alert_id"] for a in again} == {a["alert_id"] for a in alerts}  # same conditions, same ids


def test_alerts_quiet_state_and_acks() -> None:
    quiet = compute_alerts([task("fine", "Running", started=ago(minutes=5))], [node("g1")], [], [], now=NOW)
    assert quiet == []
    few = [task(f"f{i}", "Failed", started=ago(minutes=30), done=ago(minutes=20)) for i in range(4)]
    assert compute_alerts(few, [], [], [], now=NOW) == []  # below the minimum sample of 5
    exhausted = [{"metadata": {"name": "bob"}, "spec": {"limits": {"monthlyGpuHours": 1}},
                  "status": {"month": "2026-01", "gpuSecondsThisMonth": 3600}}]
    alerts = compute_alerts([], [], [], exhausted, now=NOW)
    assert [(a["type"], a["severity"]) for a in alerts] == [("QUOTA_EXHAUSTED", "CRITICAL")]
    assert alerts[0]["created_at"] == "2026-01-01T00:00:00Z"
    ack = {alerts[0]["alert_id"]: {"acknowledged_at": "2026-01-25T14:31:00Z", "acknowledged_by": "bob"}}
    acked = compute_alerts([], [], [], exhausted, acks=ack, now=NOW)
    assert acked[0]["acknowledged"] is True and acked[0]["acknowledged_by"] == "bob"
    last_month = [{"metadata": {"name": "bob"}, "spec": {"limits": {"monthlyGpuHours": 1}},
                   "status": {"month": "2025-12", "gpuSecondsThisMonth": 3600}}]
    assert compute_alerts([], [], [], last_month, now=NOW) == []


def test_queue_depth_critical() -> None:
    waiting = [task(f"w{i}", "Queued") for i in range(12)]
    alerts = compute_alerts(waiting, [], [], [], thresholds=Thresholds(queue_depth_warning=5,
                                                                       queue_depth_critical=10), now=NOW)
    assert [(a["type"], a["severity"], a["details"]["queue_depth"]) for a in alerts] == [
        ("HIGH_QUEUE_DEPTH", "CRITICAL", 12)]


# --------------------------------------------------------------------------- presets and search predicates


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


# --------------------------------------------------------------------------- CSV


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


# --------------------------------------------------------------------------- resilience


def test_degradation_records_expire() -> None:
    data = {"database": degradation_record("return_cached", 300, by="root", now=NOW),
            "cache": degradation_record("fail_fast", 60, by="root", now=ago(minutes=5)),
            "junk": "not json"}
    active = active_degradations(data, NOW)
    assert [d["service_name"] for d in active] == ["database"]
    assert active[0]["strategy"] == "return_cached" and active[0]["remaining_seconds"] == 300
    assert active[0]["expires_at"] == "2026-01-25T14:35:00Z"
    assert set(prune_expired(data, NOW)) == {"database"}
    assert active_degradations(data, NOW + timedelta(minutes=6)) == []
    assert json.loads(data["database"])["marked_by"] == "root"
    assert parse_records({"a": "{\"x\": 1}", "b": "[1]", "c": "nope"}) == {"a": {"x": 1}}


@pytest.mark.parametrize("name", ["", "bad name", "-x", "a" * 64, "x/y"])
def test_service_name_validation(name: str) -> None:
    with pytest.raises(RestError) as info:
        validate_service_name(name)
    assert info.value.status == 422 and info.value.field == "service_name"


def test_resilience_summary_score() -> None:
    components = {"apiserver": Check(True, "ok"), "task_cache": Check(True, "synced"),
                  "operator_webhook": Check(True, "kubetask.io"), "gpu_nodes": Check(True, "2 Ready"),
                  "operator_lease": Check(False, "stale")}
    body = resilience_summary(components, [{"service_name": "database"}], NOW)
    assert body["system_health"]["components_total"] == 5
    assert (body["system_health"]["healthy"], body["system_health"]["unhealthy"]) == (4, 1)
    assert body["system_health"]["components"]["operator_lease"] == {"healthy": False, "status": "unhealthy",
                                                                     "detail": "stale"}
    assert body["degradation"]["degraded_services_count"] == 1 and body["degradation"]["services"] == ["database"]
    assert body["resilience_score"] == 80.0
    assert resilience_summary({}, [], NOW)["resilience_score"] == 0.0


def test_lease_check() -> None:
    fresh = {"spec": {"holderIdentity": "op-1", "renewTime": iso(ago(seconds=5)), "leaseDurationSeconds": 15}}
    stale = {"spec": {"holderIdentity": "op-1", "renewTime": iso(ago(seconds=60)), "leaseDurationSeconds": 15}}
    released = {"spec": {"holderIdentity": None, "renewTime": iso(ago(seconds=1))}}
    assert lease_check(fresh, NOW).healthy
    assert not lease_check(stale, NOW).healthy and "60 s ago" in lease_check(stale, NOW).detail
    assert not lease_check(released, NOW).healthy


def test_webhook_and_gpu_node_checks() -> None:
    config = {"metadata": {"name": "kubetask.io"}, "webhooks": [
        {"name": "tasks.kubetask.io", "rules": [{"apiGroups": ["kubetask.io"], "resources": ["tasks"]}]}]}
    other = {"metadata": {"name": "other"}, "webhooks": [{"name": "x", "rules": [{"apiGroups": ["apps"]}]}]}
    assert webhook_check([other, config]).healthy
    assert not webhook_check([other]).healthy and not webhook_check([]).healthy
    check = gpu_nodes_check([node("g1"), node("g2", ready=False), node("c", gpus=0)])
    assert check.healthy and check.detail == "1 of 2 GPU nodes Ready, 4 GPUs"
    assert not gpu_nodes_check([node("g2", ready=False)]).healthy
