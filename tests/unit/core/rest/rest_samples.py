"""Sample templates, request contexts and Task objects shared by the REST core's unit tests."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.intake import BuildContext, build_task
from kubetask.core.rest.query import make_query, query_tasks

TEMPLATES: list[dict[str, Any]] = [
    {"metadata": {"name": "ollama-inference"}, "spec": {"parameters": [
        {"name": "model", "type": "string", "required": True},
        {"name": "prompt", "type": "string", "required": True},
        {"name": "system_prompt", "type": "string"}]}},
    {"metadata": {"name": "text-generation"}, "spec": {
        "parameters": [{"name": "model_name", "type": "string", "required": True},
                       {"name": "input_data", "type": "object", "required": True}],
        "taskTypes": [{"name": "text_generation", "modelParameter": "model_name",
                       "inputParameter": "input_data"}]}},
    {"metadata": {"name": "payments"}, "spec": {"aliases": ["process_payment"], "parameters": []}},
    {"metadata": {"name": "bash-script"}, "spec": {"parameters": [
        {"name": "script", "type": "string", "required": True}]}},
]
CTX = BuildContext(user="alice", namespace="kubetask-alice", templates=TEMPLATES)


def build(body: dict[str, Any], ctx: BuildContext = CTX) -> dict[str, Any]:
    return build_task(body, ctx)


def refused(body: dict[str, Any]) -> RestError:
    with pytest.raises(RestError) as info:
        build(body)
    return info.value


def built_task(phase: str | None = None, **status: Any) -> dict[str, Any]:
    """A template task as intake builds it, named and created, with ``status.phase`` (and more status)."""
    task = build({"name": "n", "template": "ollama-inference", "parameters": {"model": "m", "prompt": "p"},
                  "timeout_seconds": 60})
    task["metadata"].update(name="n-12345678", creationTimestamp="2030-01-01T00:00:00Z")
    task["status"] = {"phase": phase, **status} if phase else {}
    return task


def stub_task(name: str, *, phase: str | None = None, priority: int = 5, created: str = "2030-01-01T00:00:00Z",
              tags: list[str] | None = None, queue: str = "default", user: str = "alice",
              **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": f"kubetask-{user}", "creationTimestamp": created,
                     "annotations": {"kubetask.io/task-type": "text_generation"} if name.startswith("tg") else {}},
        "spec": {"displayName": name.upper(), "priority": priority, "queue": queue, "user": user,
                 "tags": tags or [], "template": {"name": "ollama-inference", "parameters": {"model": "m"}}},
        "status": {"phase": phase, **status} if phase else {},
    }


TASKS = [
    stub_task("a", phase="Running", priority=9, created="2030-01-01T00:00:01Z", tags=["x"],
              startedAt="2030-01-01T00:00:02Z"),
    stub_task("b", phase="Succeeded", priority=1, created="2030-01-01T00:00:02Z"),
    stub_task("c", phase="Queued", priority=5, created="2030-01-01T00:00:03Z", queue="gpu", queuePosition=1),
    stub_task("tg-d", phase="Failed", priority=8, created="2030-01-01T00:00:04Z", tags=["x", "y"]),
    stub_task("e", created="2030-01-01T00:00:05Z"),
]


def names(**params: Any) -> list[str]:
    """The names :func:`query_tasks` returns over :data:`TASKS` for these query parameters."""
    _, items = query_tasks(TASKS, make_query(**params))
    return [t["metadata"]["name"] for t in items]


def submitted_task(name: str, created: str, submitted: str | None, phase: str = "Pending") -> dict[str, Any]:
    annotations = {ANNOTATION_SUBMITTED_AT: submitted} if submitted else {}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
            "spec": {"priority": 5}, "status": {"phase": phase}}
