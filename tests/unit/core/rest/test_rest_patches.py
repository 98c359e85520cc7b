"""kubetask.core.rest.patches: update, replay, limits and merge patches."""

from __future__ import annotations

from typing import Any

import pytest
from rest_samples import CTX, build, built_task

from kubetask.core.rest.errors import RestError
from kubetask.core.rest.patches import build_update_patch, clone_for_replay, limits_patch, replace_by_merge_patch


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


def test_update_patch_and_immutables() -> None:
    task = built_task("Pending")
    patch = build_update_patch({"name": "new", "priority": "low", "parameters": {"model": "x", "prompt": "y"},
                                "template": "ollama-inference"}, task, CTX)
    assert patch == {"spec": {"displayName": "new", "priority": 2,
                              "template": {"name": "ollama-inference", "parameters": {"model": "x", "prompt": "y"}}}}
    with pytest.raises(RestError) as info:
        build_update_patch({"template": "other"}, task, CTX)
    assert info.value.field == "template" and info.value.code == "TEMPLATE_NOT_FOUND"
    for frozen in ({"gpus": 2}, {"depends_on": ["x"]}, {"runtime": "pod"}):
        with pytest.raises(RestError) as info:
            build_update_patch(frozen, task, CTX)
        assert info.value.code == "IMMUTABLE_FIELD" and info.value.field == next(iter(frozen))
    with pytest.raises(RestError) as info:
        build_update_patch({"priorty": 3}, task, CTX)
    assert info.value.code == "UNKNOWN_FIELD" and info.value.field == "priorty" and "priority" in info.value.detail


def test_update_may_change_what_runs() -> None:
    """Seed 001's PUT of script_content on a task that has not started: the whole of what runs is replaced."""
    task = built_task("Pending")
    patch = build_update_patch({"script_content": "print(2)", "script_type": "python"}, task, CTX)
    assert patch["spec"] == {"template": None, "script": {"language": "python", "content": "print(2)"}}
    script_task = build({"name": "s", "script_content": "echo 1", "script_type": "bash"})
    assert build_update_patch({"script_content": "echo 2"}, script_task, CTX)["spec"] == {
        "script": {"language": "bash", "content": "echo 2"}}
    assert build_update_patch({"script_type": "python"}, script_task, CTX)["spec"] == {
        "script": {"language": "python", "content": "echo 1"}}
    assert build_update_patch({"image": "busybox", "command": ["true"]}, script_task, CTX)["spec"] == {
        "script": None, "image": "busybox", "command": ["true"]}
    typed = build_update_patch({"task_type": "text_generation", "model_name": "m", "input_data": {"prompt": "p"}},
                               script_task, CTX)
    assert typed["spec"]["template"]["name"] == "text-generation" and typed["spec"]["script"] is None
    assert typed["metadata"]["annotations"] == {"kubetask.io/task-type": "text_generation",
                                                "kubetask.io/model-name": "m"}
    # Repeating what runs unchanged (a whole-object PUT) changes nothing.
    assert build_update_patch({"script_content": "echo 1", "script_type": "bash", "id": "x", "status": "pending"},
                              script_task, CTX) == {}
    with pytest.raises(RestError) as info:
        build_update_patch({"script_type": "ruby"}, script_task, CTX)
    assert info.value.field == "script_type"


def test_replay_clone_points_at_the_original() -> None:
    original = built_task("Failed")
    original["spec"]["cancel"] = True
    clone = clone_for_replay(original, user="alice", namespace="kubetask-alice")
    assert "cancel" not in clone["spec"] and clone["metadata"]["annotations"]["kubetask.io/replay-of"] == "n-12345678"
    assert "name" not in clone["metadata"] and clone["spec"]["template"] == original["spec"]["template"]


@pytest.mark.parametrize("old,new", [
    ({"status": "completed", "summary": "s"}, {"answer": 42}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}),
    (None, {"x": [1, 2]}),
    ({"x": 1}, "plain text"),
    ("text", {"y": {"z": 1}}),
])
def test_replace_by_merge_patch_yields_exactly_the_new_value(old: Any, new: Any) -> None:
    assert _merge(old, replace_by_merge_patch(old, new)) == new


def test_limits_patch() -> None:
    assert limits_patch({"max_running": 3, "maxPending": 9, "monthly_gpu_hours": None}) == \
        {"maxRunning": 3, "maxPending": 9, "monthlyGpuHours": None}
    assert limits_patch({"max_task_duration_minutes": 2}) == {"maxTimeoutSeconds": 120}
    with pytest.raises(RestError):
        limits_patch({"speed": 3})
    with pytest.raises(RestError):
        limits_patch({"max_running": -1})
