"""The OpenAPI document's task schema IS the core's public Task model (one model, no drift)."""

from __future__ import annotations

from kubetask.api.app import create_app
from kubetask.core.rest.present import task_public
from kubetask.core.rest.shapes import TaskPublic
from kubetask.settings import ApiSettings, KubeSettings


def test_the_documented_task_is_the_core_model() -> None:
    spec = create_app(ApiSettings(), KubeSettings()).openapi()
    documented = spec["components"]["schemas"]["TaskPublic"]
    assert set(documented["properties"]) == set(TaskPublic.model_fields)
    assert documented.get("additionalProperties") is False  # a field the model lacks cannot be sent
    for path, op in (("/api/v1/tasks", "post"), ("/api/v1/tasks/{task_id}", "get"),
                     ("/api/v1/tasks/{task_id}", "put")):
        schema = spec["paths"][path][op]["responses"]["201" if op == "post" else "200"]["content"][
            "application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/TaskPublic"}, (path, op)


def test_the_real_output_has_exactly_the_model_fields() -> None:
    obj = {"metadata": {"name": "t-1", "namespace": "ns", "uid": "123e4567-e89b-12d3-a456-426614174000"},
           "spec": {"image": "busybox"}}
    assert set(task_public(obj)) == set(TaskPublic.model_fields)
