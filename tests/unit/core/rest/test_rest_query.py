"""kubetask.core.rest.query: filters, sort and paging over Task objects."""

from __future__ import annotations

from typing import Any

import pytest
from rest_samples import TASKS, names, stub_task, submitted_task

from kubetask.core.rest.errors import RestError
from kubetask.core.rest.query import list_envelope, make_query, normalize_status, query_tasks


@pytest.mark.parametrize(("text", "status"), [
    ("PENDING", "pending"), ("success", "completed"), ("succeeded", "completed"), ("done", "completed"),
    ("error", "failed"), ("canceled", "cancelled"), ("in_progress", "running"), ("In-Progress", "running"),
    ("QUEUED", "queued"),
])
def test_status_synonyms(text: str, status: str) -> None:
    assert normalize_status(text) == status


def test_tasks_created_in_one_second_keep_their_submission_order() -> None:
    tasks = [submitted_task("zzz", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.100000Z"),
             submitted_task("aaa", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.200000Z")]
    _, ascending = query_tasks(tasks, make_query(sort_by="created_at", sort_order="asc"))
    assert [t["metadata"]["name"] for t in ascending] == ["zzz", "aaa"]


def test_sort_by_status_is_alphabetical() -> None:
    tasks = [submitted_task(p.lower(), "2026-01-01T00:00:00Z", None, p) for p in ("Running", "Pending", "Cancelled")]
    _, ordered = query_tasks(tasks, make_query(sort_by="status", sort_order="asc"))
    assert [t["metadata"]["name"] for t in ordered] == ["cancelled", "pending", "running"]


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


@pytest.mark.parametrize("word", ["pending", "queued", "PENDING", "Queued", "waiting", "pending,queued"])
def test_pending_and_queued_both_select_every_waiting_task(word: str) -> None:
    _, items = query_tasks(TASKS, make_query(status=word))
    assert [t["metadata"]["name"] for t in items] == ["e", "c"]


def test_an_admitted_task_whose_pod_has_not_started_is_waiting() -> None:
    admitted = stub_task("z", phase="Running", executions=[{"id": 1, "jobName": "z-1"}])
    started = stub_task("y", phase="Running",
                        executions=[{"id": 1, "jobName": "y-1", "startedAt": "2030-01-01T00:00:09Z"}])
    waiting = query_tasks([admitted, started], make_query(status="queued"))[1]
    running = query_tasks([admitted, started], make_query(status="running"))[1]
    assert [t["metadata"]["name"] for t in waiting] == ["z"] and [t["metadata"]["name"] for t in running] == ["y"]


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
