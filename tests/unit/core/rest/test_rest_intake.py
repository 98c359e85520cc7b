"""kubetask.core.rest.intake: request bodies of every seed dialect -> Task objects; validation names the field."""

from __future__ import annotations

from typing import Any

import pytest
from rest_samples import CTX, TEMPLATES, build, refused

from kubetask.core.objects import ANNOTATION_MODEL_NAME, ANNOTATION_TASK_TYPE
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.intake import BuildContext, build_task, generate_task_id, parse_priority


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


def test_generated_ids_keep_job_names_short() -> None:
    tid = generate_task_id("A very long display name that goes on and on!!!")
    slug, suffix = tid.rsplit("-", 1)
    assert len(slug) <= 20 and len(suffix) == 8 and len(f"{tid}-100") <= 63
    assert generate_task_id("???").startswith("task-")


def test_task_name_of_a_template_takes_declared_kwargs_as_parameters() -> None:
    task = build_task({"task_name": "bash-script", "task_kwargs": {"script": "echo 1", "extra": 2}}, CTX)
    assert task["spec"]["template"] == {"name": "bash-script", "parameters": {"script": "echo 1"}}


def test_task_type_needs_an_object_as_input_data() -> None:
    with pytest.raises(RestError) as error:
        build_task({"task_type": "text_generation", "model_name": "m", "input_data": "hello"}, CTX)
    assert error.value.status == 422 and error.value.field == "input_data"


def test_unknown_fields_are_422_naming_the_field() -> None:
    error = refused({"image": "busybox", "gpuz": 3})
    assert error.status == 422 and error.code == "UNKNOWN_FIELD" and error.field == "gpuz"
    assert "'gpus'" in error.detail  # the nearest known name
    assert refused({"image": "busybox", "client_version": "1.2"}).field == "client_version"


def test_depends_on_takes_ids_and_records_their_uids() -> None:
    known = {"123e4567-e89b-12d3-a456-426614174000": ("first-1a2b3c4d", "123e4567-e89b-12d3-a456-426614174000"),
             "first-1a2b3c4d": ("first-1a2b3c4d", "123e4567-e89b-12d3-a456-426614174000")}
    ctx = BuildContext(user="alice", namespace="ns", templates=TEMPLATES, lookup=known.get)
    task = build_task({"image": "busybox", "depends_on": ["123e4567-e89b-12d3-a456-426614174000",
                                                          "first-1a2b3c4d", "unknown-name"]}, ctx)
    assert task["spec"]["dependsOn"] == ["first-1a2b3c4d", "unknown-name"]  # admission says unknown-name is missing
    assert task["metadata"]["annotations"]["kubetask.io/depends-on-uids"] == \
        '{"first-1a2b3c4d":"123e4567-e89b-12d3-a456-426614174000"}'
    with pytest.raises(RestError) as info:
        build_task({"image": "busybox", "depends_on": ["Not A Name"]}, ctx)
    assert info.value.code == "DEPENDENCY_NOT_FOUND" and info.value.field == "depends_on"
