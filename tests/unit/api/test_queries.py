"""Filtering, sorting and paging over cached Task objects; grouping; limits and queue status."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.core.rest import (
    RestError,
    group_by_status,
    limits_patch,
    limits_public,
    list_envelope,
    make_query,
    query_tasks,
    queue_status_public,
)


def task(name: str, *, phase: str | None = None, priority: int = 5, created: str = "2030-01-01T00:00:00Z",
         tags: list[str] | None = None, queue: str = "default", user: str = "alice", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": f"kubetask-{user}", "creationTimestamp": created,
                     "annotations": {"kubetask.io/task-type": "text_generation"} if name.startswith("tg") else {}},
        "spec": {"displayName": name.upper(), "priority": priority, "queue": queue, "user": user,
                 "tags": tags or [], "template": {"name": "ollama-inference", "parameters": {"model": "m"}}},
        "status": {"phase": phase, **status} if phase else {},
    }


TASKS = [
    task("a", phase="Running", priority=9, created="2030-01-01T00:00:01Z", tags=["x"]),
    task("b", phase="Succeeded", priority=1, created="2030-01-01T00:00:02Z"),
    task("c", phase="Queued", priority=5, created="2030-01-01T00:00:03Z", queue="gpu", queuePosition=1),
    task("tg-d", phase="Failed", priority=8, created="2030-01-01T00:00:04Z", tags=["x", "y"]),
    task("e", created="2030-01-01T00:00:05Z"),
]


def names(**params: Any) -> list[str]:
    _, items = query_tasks(TASKS, make_query(**params))
    return [t["metadata"]["name"] for t in items]


def test_default_is_newest_first() -> None:
    assert names() == ["e", "tg-d", "c", "b", "a"]


def test_filters() -> None:
    assert names(status="RUNNING") == ["a"]
    assert names(status="success") == ["b"]
    assert names(status=["pending,queued"]) == ["e", "c"]
    assert names(priority=8) == ["tg-d"]
    assert names(queue_name="gpu") == ["c"]
    assert names(tag=["x"]) == ["tg-d", "a"]
    assert names(tag="x,y") == ["tg-d"]
    assert names(task_type="text_generation") == ["tg-d"]
    assert names(template="ollama-inference", model_name="m", limit=2) == ["e", "tg-d"]
    assert names(search="TG") == ["tg-d"]
    assert names(created_after="2030-01-01T00:00:03Z", created_before="2030-01-01T00:00:04Z") == ["tg-d", "c"]


def test_seed_004_pending_includes_queued() -> None:
    _, items = query_tasks(TASKS, make_query(status="pending", queued_as_pending=True))
    assert [t["metadata"]["name"] for t in items] == ["e", "c"]


def test_sort_and_pages() -> None:
    assert names(sort_by="priority", sort_order="desc") == ["a", "tg-d", "e", "c", "b"]  # ties: newest first
    assert names(sort_by="name", sort_order="asc") == ["a", "b", "c", "e", "tg-d"]
    assert names(sort_by="created_at", sort_order="asc", limit=2, page=2) == ["c", "tg-d"]
    assert names(sort_by="-priority", limit=1) == ["a"]
    q = make_query(limit=2, offset=4)
    total, items = query_tasks(TASKS, q)
    envelope = list_envelope(total, q, [dict(i) for i in items])
    assert envelope["total"] == 5 and envelope["has_more"] is False and envelope["page"] == 3
    assert envelope["tasks"] is envelope["data"]


@pytest.mark.parametrize("params", [{"sort_by": "nope"}, {"sort_order": "sideways"}, {"limit": 0},
                                    {"limit": 5000}, {"page": 0}, {"status": "sleepy"},
                                    {"created_after": "not a date"}])
def test_bad_queries_are_422(params: dict[str, Any]) -> None:
    with pytest.raises(RestError) as info:
        make_query(**params)
    assert info.value.status == 422


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


def test_limits_patch() -> None:
    assert limits_patch({"max_running": 3, "maxPending": 9, "monthly_gpu_hours": None}) == \
        {"maxRunning": 3, "maxPending": 9, "monthlyGpuHours": None}
    assert limits_patch({"max_task_duration_minutes": 2}) == {"maxTimeoutSeconds": 120}
    with pytest.raises(RestError):
        limits_patch({"speed": 3})
    with pytest.raises(RestError):
        limits_patch({"max_running": -1})
