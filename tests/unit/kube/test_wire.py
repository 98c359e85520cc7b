"""Shaped decoding (kubetask.kube.wire): the caches store the same objects, and the rest is never built.

``apiserver_objects.json`` holds Pods, Jobs and Tasks as a real kube-apiserver 1.36 sent them
(managedFields included; the task token in the pod environment is redacted), taken during
bench/cost_at_scale.py: pending, running and finished ones of each kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubetask.core import jsonwire
from kubetask.kube import wire
from kubetask.kube.lean import lean_job, lean_pod, lean_task, without_managed_fields

OBJECTS: dict[str, list[dict[str, Any]]] = json.loads((Path(__file__).parent / "apiserver_objects.json").read_text())

KINDS: list[tuple[str, wire.Shape, Callable[[Any], Any]]] = [
    ("pods", wire.POD, lean_pod),
    ("jobs", wire.JOB, lean_job),
    ("tasks", wire.TASK, lean_task),
    ("tasks", wire.TASK, without_managed_fields),  # what the API's Task cache keeps
]


def _cases() -> list[Any]:
    return [pytest.param(kind, shape, transform, i, id=f"{kind}-{i}-{transform.__name__}")
            for kind, shape, transform in KINDS for i in range(len(OBJECTS[kind]))]


def _event(obj: Any, event_type: str = "MODIFIED") -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode()


@pytest.mark.parametrize(("kind", "shape", "transform", "index"), _cases())
def test_a_shaped_event_keeps_everything_its_transform_keeps(kind: str, shape: wire.Shape,
                                                              transform: Callable[[Any], Any], index: int) -> None:
    whole = OBJECTS[kind][index]
    shaped = shape.event(_event(whole))
    assert shaped["type"] == "MODIFIED"
    assert transform(shaped["object"]) == transform(json.loads(json.dumps(whole)))


@pytest.mark.parametrize(("kind", "shape", "transform", "index"), _cases())
def test_a_shaped_list_page_keeps_everything_its_transform_keeps(kind: str, shape: wire.Shape,
                                                                  transform: Callable[[Any], Any], index: int) -> None:
    whole = OBJECTS[kind][index]
    page = shape.page(json.dumps({"apiVersion": "v1", "kind": "List", "items": [whole],
                                  "metadata": {"resourceVersion": "42", "continue": "abc"}}).encode())
    assert page["metadata"] == {"resourceVersion": "42", "continue": "abc"}
    assert [transform(item) for item in page["items"]] == [transform(whole)]


@pytest.mark.parametrize(("kind", "shape"), [("pods", wire.POD), ("jobs", wire.JOB), ("tasks", wire.TASK)])
def test_what_no_transform_reads_is_not_decoded(kind: str, shape: wire.Shape) -> None:
    for whole in OBJECTS[kind]:
        assert whole["metadata"]["managedFields"]  # the fixture is whole
        shaped = shape.event(_event(whole))["object"]
        assert "managedFields" not in shaped["metadata"]
        assert shaped["metadata"]["uid"] == whole["metadata"]["uid"]
        if kind == "pods":
            assert [sorted(c) for c in shaped["spec"]["containers"]] == [["name", "resources"]] * len(
                whole["spec"]["containers"])
            assert "conditions" not in shaped["status"] and "env" not in json.dumps(shaped)
        if kind == "jobs":
            assert "spec" not in shaped and whole["spec"]["template"]


@pytest.mark.parametrize("shape", [wire.POD, wire.JOB, wire.TASK])
def test_an_error_event_keeps_the_apiservers_status(shape: wire.Shape) -> None:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
              "reason": "Expired", "message": "too old resource version: 5 (90)"}
    assert shape.event(_event(status, "ERROR")) == {"type": "ERROR", "object": status}


def test_a_bookmark_keeps_its_resource_version() -> None:
    bookmark = {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": "7788", "annotations": {"k8s.io/initial-events-end": "true"}}}
    assert wire.POD.event(_event(bookmark, "BOOKMARK")) == {"type": "BOOKMARK", "object": bookmark}


def test_a_document_the_schema_does_not_fit_is_decoded_whole() -> None:
    odd = {"type": "MODIFIED", "object": {"kind": "Pod", "metadata": {"name": "p", "managedFields": []},
                                          "status": 3, "spec": {"containers": "none"}}}
    data = json.dumps(odd).encode()
    assert wire.POD.event(data) == jsonwire.loads(data) == odd
    page = json.dumps({"items": {"not": "a list"}, "metadata": {}}).encode()
    assert wire.POD.page(page) == {"items": {"not": "a list"}, "metadata": {}}


def test_text_that_is_not_json_is_refused_as_before() -> None:
    with pytest.raises(ValueError):
        wire.TASK.event(b'{"type": "ADDED", "object": ')


def test_a_task_keeps_every_metadata_field_but_managed_fields() -> None:
    task = json.loads(json.dumps(OBJECTS["tasks"][-1]))
    task["metadata"].update({
        "generateName": "train-", "deletionTimestamp": "2026-12-03T13:20:00Z", "deletionGracePeriodSeconds": 0,
        "finalizers": ["example.com/keep"], "selfLink": "/apis/kubetask.io/v1alpha1/x",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u-1"}],
    })
    shaped = wire.TASK.event(_event(task))["object"]
    assert shaped["metadata"] == {k: v for k, v in task["metadata"].items() if k != "managedFields"}
    assert without_managed_fields(shaped) == without_managed_fields(task)
