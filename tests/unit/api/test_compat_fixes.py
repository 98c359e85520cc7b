"""Core behaviour behind fixes found by the black-box compat suite (tests/component/compat)."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.core.rest import (
    ANNOTATION_SUBMITTED_AT,
    BuildContext,
    RestError,
    build_task,
    make_query,
    query_tasks,
    replace_by_merge_patch,
)

TEMPLATES: list[dict[str, Any]] = [
    {"metadata": {"name": "bash-script"}, "spec": {"parameters": [
        {"name": "script", "type": "string", "required": True}]}},
    {"metadata": {"name": "text-generation"}, "spec": {
        "parameters": [{"name": "model_name", "type": "string", "required": True},
                       {"name": "input_data", "type": "object", "required": True}],
        "taskTypes": [{"name": "text_generation", "modelParameter": "model_name",
                       "inputParameter": "input_data"}]}},
]
CTX = BuildContext(user="alice", namespace="kubetask-alice", templates=TEMPLATES)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 applied, to check the patch really produces the new value."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


@pytest.mark.parametrize("old,new", [
    ({"status": "completed", "summary": "s"}, {"answer": 42}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}),
    (None, {"x": [1, 2]}),
    ({"x": 1}, "plain text"),
    ("text", {"y": {"z": 1}}),
])
def test_replace_by_merge_patch_yields_exactly_the_new_value(old: Any, new: Any) -> None:
    assert _merge(old, replace_by_merge_patch(old, new)) == new


def test_task_name_of_a_template_takes_declared_kwargs_as_parameters() -> None:
    task = build_task({"task_name": "bash-script", "task_kwargs": {"script": "echo 1", "extra": 2}}, CTX)
    assert task["spec"]["template"] == {"name": "bash-script", "parameters": {"script": "echo 1"}}


def test_task_type_needs_an_object_as_input_data() -> None:
    with pytest.raises(RestError) as error:
        build_task({"task_type": "text_generation", "model_name": "m", "input_data": "hello"}, CTX)
    assert error.value.status == 422 and error.value.field == "input_data"


def _task(name: str, created: str, submitted: str | None, phase: str = "Pending") -> dict[str, Any]:
    annotations = {ANNOTATION_SUBMITTED_AT: submitted} if submitted else {}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
            "spec": {"priority": 5}, "status": {"phase": phase}}


def test_tasks_created_in_one_second_keep_their_submission_order() -> None:
    tasks = [_task("zzz", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.100000Z"),
             _task("aaa", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.200000Z")]
    _, ascending = query_tasks(tasks, make_query(sort_by="created_at", sort_order="asc"))
    assert [t["metadata"]["name"] for t in ascending] == ["zzz", "aaa"]


def test_sort_by_status_is_alphabetical() -> None:
    tasks = [_task(p.lower(), "2026-01-01T00:00:00Z", None, p) for p in ("Running", "Pending", "Cancelled")]
    _, ordered = query_tasks(tasks, make_query(sort_by="status", sort_order="asc"))
    assert [t["metadata"]["name"] for t in ordered] == ["cancelled", "pending", "running"]
