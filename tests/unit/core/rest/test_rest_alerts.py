"""kubetask.core.rest.alerts: alerts from cluster state, acknowledgements, degradations, resilience checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.rest.alerts import (
    Check,
    Thresholds,
    active_degradations,
    alert_id,
    compute_alerts,
    degradation_record,
    gpu_nodes_check,
    lease_check,
    parse_records,
    prune_expired,
    resilience_summary,
    validate_service_name,
    webhook_check,
)
from kubetask.core.rest.errors import RestError

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
