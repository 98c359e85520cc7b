"""kubetask.core.rest.present: the public representation of tasks, grouping, limits and queue status."""

from __future__ import annotations

import pytest
from rest_samples import TASKS, built_task

from kubetask.core.phases import public_status
from kubetask.core.rest.present import group_by_status, limits_public, queue_status_public, status_of, task_public
from kubetask.core.rest.profiles import PROFILES


def test_public_representation_carries_every_seed_name() -> None:
    public = task_public(built_task("Running", startedAt="2030-01-01T00:00:05Z", nodeName="gpu-node-1"))
    assert public["id"] == public["task_id"] == "n-12345678"
    assert public["name"] == public["task_name"] == "n"
    assert public["status"] == "running" and public["worker_id"] == "gpu-node-1"
    assert public["estimated_completion"] == "2030-01-01T00:01:05Z"
    assert public["template"] == "ollama-inference" and public["parameters"] == {"model": "m", "prompt": "p"}
    assert public["resource_usage"]["model_name"] == "m"


@pytest.mark.parametrize(("phase", "extra", "status", "state"), [
    (None, {}, "pending", "submitted"),
    ("Pending", {}, "pending", "pending"),
    ("Pending", {"conditions": [{"type": "Admitted", "status": "False", "reason": "Dependencies"}]}, "pending",
     "waiting_for_dependencies"),
    ("Pending", {"conditions": [{"type": "Admitted", "status": "False", "reason": "Scheduled"}]}, "pending",
     "scheduled"),
    ("Queued", {}, "queued", "queued"),
    ("Running", {"executions": [{"id": 1, "jobName": "n-1"}]}, "queued", "starting"),
    ("Running", {"executions": [{"id": 1, "startedAt": "2030-01-01T00:00:05Z", "nodeName": "g"}]}, "running",
     "running"),
    ("Succeeded", {}, "completed", "completed"), ("Failed", {}, "failed", "failed"),
    ("Cancelled", {}, "cancelled", "cancelled"),
])
def test_status_mapping(phase: str | None, extra: dict[str, object], status: str, state: str) -> None:
    """running means started on a node; the fine state is queue_state."""
    public = task_public(built_task(phase, **extra))
    assert public_status(built_task(phase, **extra)) == public["status"] == status
    assert public["queue_state"] == state


def test_queued_reads_as_pending_for_seed_004_and_cancel_shows_at_once() -> None:
    assert status_of(built_task("Queued"), PROFILES["taskmanager"]) == "pending"
    assert status_of(built_task("Pending"), PROFILES["orchestra"]) == "queued"
    assert status_of(built_task("Succeeded"), PROFILES["dtq"]) == "COMPLETED"
    cancelling = built_task("Running")
    cancelling["spec"]["cancel"] = True
    assert public_status(cancelling) == "cancelled"


def test_group_by_status_has_every_key() -> None:
    groups = group_by_status(TASKS)
    assert set(groups) == {"pending", "queued", "running", "completed", "failed", "cancelled"}
    assert [t["id"] for t in groups["running"]] == ["a"]


def test_limits_and_queue_status() -> None:
    tenant = {"metadata": {"name": "alice"},
              "spec": {"limits": {"maxRunning": 2, "monthlyGpuHours": 10, "maxTimeoutSeconds": 7200}},
              "status": {"gpuSecondsThisMonth": 7200.0}}
    limits = limits_public(tenant, TASKS)
    assert limits["max_concurrent_agents"] == 2 and limits["max_task_duration_minutes"] == 120
    assert limits["monthly_agent_hours_used"] == 2.0 and limits["monthly_hours_remaining"] == 8.0
    status = queue_status_public(tenant, TASKS)
    assert status["running"] == 1 and status["pending"] == 2 and status["can_start_more"] is True
    assert [e["task_id"] for e in status["pending_tasks"]] == ["c", "e"]
    assert status["pending_tasks"][0]["position"] == 1
