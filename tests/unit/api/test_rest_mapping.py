"""REST body -> Task spec mapping for every seed dialect, and the public representation."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.core.rest import (
    ANNOTATION_MODEL_NAME,
    ANNOTATION_TASK_TYPE,
    BuildContext,
    RestError,
    build_task,
    build_update_patch,
    clone_for_replay,
    generate_task_id,
    normalize_status,
    parse_priority,
    public_status,
    task_public,
)

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
]
CTX = BuildContext(user="alice", namespace="kubetask-alice", templates=TEMPLATES)


def build(body: dict[str, Any], ctx: BuildContext = CTX) -> dict[str, Any]:
    return build_task(body, ctx)


def refused(body: dict[str, Any]) -> RestError:
    with pytest.raises(RestError) as info:
        build(body)
    return info.value


def test_seed_001_script_with_metadata_priority_and_tags() -> None:
    task = build({"name": "Data", "description": "d", "script_content": "print(1)", "script_type": "python",
                  "timeout_seconds": 30, "metadata": {"tags": ["a", "b"], "priority": "high"}})
    spec = task["spec"]
    assert spec["displayName"] == "Data" and spec["script"] == {"language": "python", "content": "print(1)"}
    assert spec["priority"] == 8 and spec["tags"] == ["a", "b"] and spec["timeoutSeconds"] == 30
    assert spec["user"] == "alice" and task["metadata"]["labels"]["kubetask.io/user"] == "alice"
    assert task["metadata"]["namespace"] == "kubetask-alice"


def test_seed_002_template_and_parameters() -> None:
    spec = build({"template": "ollama-inference", "parameters": {"model": "m", "prompt": "p"},
                  "priority": 5, "depends_on": ["a-1", "b-2"]})["spec"]
    assert spec["template"] == {"name": "ollama-inference", "parameters": {"model": "m", "prompt": "p"}}
    assert spec["dependsOn"] == ["a-1", "b-2"] and spec["priority"] == 5


def test_seed_003_task_name_alias_args_kwargs_queue_schedule() -> None:
    task = build({"task_name": "process_payment", "task_args": [1234], "task_kwargs": {"currency": "USD"},
                  "priority": 8, "queue_name": "payments_eu", "max_retries": 3, "timeout_seconds": 300,
                  "scheduled_at": "2026-01-25T14:30:00+02:00"})
    spec = task["spec"]
    assert spec["template"]["name"] == "payments" and spec["displayName"] == "process_payment"
    assert spec["args"] == [1234] and spec["kwargs"] == {"currency": "USD"}
    assert spec["queue"] == "payments-eu" and task["metadata"]["annotations"]["kubetask.io/queue-name"] == \
        "payments_eu"
    assert spec["maxRetries"] == 3 and spec["scheduledAt"] == "2026-01-25T12:30:00Z"


def test_seed_004_task_type_model_and_input() -> None:
    task = build({"task_type": "text_generation", "model_name": "microsoft/DialoGPT-medium",
                  "input_data": {"prompt": "Hello"}, "parameters": {"temperature": 0.8}})
    spec, ann = task["spec"], task["metadata"]["annotations"]
    assert spec["template"]["name"] == "text-generation"
    assert spec["template"]["parameters"] == {"model_name": "microsoft/DialoGPT-medium",
                                              "input_data": {"temperature": 0.8, "prompt": "Hello"}}
    assert ann[ANNOTATION_TASK_TYPE] == "text_generation" and ann[ANNOTATION_MODEL_NAME].startswith("microsoft/")


def test_image_annotations_resources() -> None:
    spec = build({"image": "busybox", "command": "echo hi", "annotations": {"kubetask.dev/sim-exit-code": 1},
                  "resources": {"gpus": 2, "gpu_type": "H100", "memory": "4Gi"}, "env": {"A": 1}})["spec"]
    assert spec["command"] == ["/bin/sh", "-c", "echo hi"]
    assert spec["podAnnotations"] == {"kubetask.dev/sim-exit-code": "1"}
    assert spec["resources"] == {"gpus": 2, "gpuType": "H100", "memory": "4Gi"}
    assert spec["env"] == [{"name": "A", "value": "1"}]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "", "script_content": "x"}, "name"),
    ({"name": "x" * 256, "script_content": "x"}, "name"),
    ({"script_content": "x" * (1024 * 1024 + 1)}, "script_content"),
    ({"script_content": "x", "script_type": "ruby"}, "script_type"),
    ({"script_content": "x", "timeout_seconds": 0}, "timeout_seconds"),
    ({"script_content": "x", "timeout_seconds": 3601}, "timeout_seconds"),
    ({"script_content": "x", "priority": 11}, "priority"),
    ({"script_content": "x", "priority": "urgentest"}, "priority"),
    ({"template": "nope"}, "template"),
    ({"template": "ollama-inference", "parameters": {"model": "m"}}, "parameters.prompt"),
    ({"task_type": "mind_reading", "model_name": "m", "input_data": {}}, "task_type"),
    ({"task_name": "unknown_function"}, "task_name"),
    ({}, "template"),
    ({"template": "ollama-inference", "image": "busybox"}, "image"),
])
def test_validation_names_the_field(body: dict[str, Any], field: str) -> None:
    error = refused(body)
    assert error.status == 422 and error.field == field, (error.field, error.detail)


def test_timeout_limit_follows_the_tenant() -> None:
    ctx = BuildContext(user="alice", namespace="ns", templates=TEMPLATES, max_timeout_seconds=7200)
    assert build_task({"script_content": "x", "timeout_seconds": 7200}, ctx)["spec"]["timeoutSeconds"] == 7200


@pytest.mark.parametrize(("word", "value"), [("high", 8), ("LOW", 2), ("critical", 10), ("5", 5), (0, 0)])
def test_priority_words(word: Any, value: int) -> None:
    assert parse_priority(word) == value


@pytest.mark.parametrize(("text", "status"), [
    ("PENDING", "pending"), ("success", "completed"), ("succeeded", "completed"), ("done", "completed"),
    ("error", "failed"), ("canceled", "cancelled"), ("in_progress", "running"), ("In-Progress", "running"),
    ("QUEUED", "queued"),
])
def test_status_synonyms(text: str, status: str) -> None:
    assert normalize_status(text) == status


def test_generated_ids_keep_job_names_short() -> None:
    tid = generate_task_id("A very long display name that goes on and on!!!")
    slug, suffix = tid.rsplit("-", 1)
    assert len(slug) <= 20 and len(suffix) == 8 and len(f"{tid}-100") <= 63
    assert generate_task_id("???").startswith("task-")


def _obj(phase: str | None = None, **status: Any) -> dict[str, Any]:
    task = build({"name": "n", "template": "ollama-inference", "parameters": {"model": "m", "prompt": "p"},
                  "timeout_seconds": 60})
    task["metadata"].update(name="n-12345678", creationTimestamp="2030-01-01T00:00:00Z")
    task["status"] = {"phase": phase, **status} if phase else {}
    return task


def test_public_representation_carries_every_seed_name() -> None:
    public = task_public(_obj("Running", startedAt="2030-01-01T00:00:05Z", nodeName="gpu-node-1"))
    assert public["id"] == public["task_id"] == "n-12345678"
    assert public["name"] == public["task_name"] == "n"
    assert public["status"] == "running" and public["worker_id"] == "gpu-node-1"
    assert public["estimated_completion"] == "2030-01-01T00:01:05Z"
    assert public["template"] == "ollama-inference" and public["parameters"] == {"model": "m", "prompt": "p"}
    assert public["resource_usage"]["model_name"] == "m"


@pytest.mark.parametrize(("phase", "status"), [
    (None, "pending"), ("Pending", "pending"), ("Queued", "queued"), ("Running", "running"),
    ("Succeeded", "completed"), ("Failed", "failed"), ("Cancelled", "cancelled"),
])
def test_status_mapping(phase: str | None, status: str) -> None:
    assert public_status(_obj(phase)) == status


def test_queued_reads_as_pending_for_seed_004_and_cancel_shows_at_once() -> None:
    assert public_status(_obj("Queued"), queued_as_pending=True) == "pending"
    cancelling = _obj("Running")
    cancelling["spec"]["cancel"] = True
    assert public_status(cancelling) == "cancelled"


def test_update_patch_and_immutables() -> None:
    task = _obj("Pending")
    patch = build_update_patch({"name": "new", "priority": "low", "parameters": {"model": "x", "prompt": "y"},
                                "template": "ollama-inference"}, task, max_timeout_seconds=3600)
    assert patch == {"displayName": "new", "priority": 2,
                     "template": {"name": "ollama-inference", "parameters": {"model": "x", "prompt": "y"}}}
    with pytest.raises(RestError) as info:
        build_update_patch({"template": "other"}, task, max_timeout_seconds=3600)
    assert info.value.field == "template"


def test_replay_clone_points_at_the_original() -> None:
    original = _obj("Failed")
    original["spec"]["cancel"] = True
    clone = clone_for_replay(original, user="alice", namespace="kubetask-alice")
    assert "cancel" not in clone["spec"] and clone["metadata"]["annotations"]["kubetask.io/replay-of"] == "n-12345678"
    assert "name" not in clone["metadata"] and clone["spec"]["template"] == original["spec"]["template"]
