"""Every response validates against the OpenAPI document the API serves.

The clients of this package (and of tests/component/compat) check each JSON response against the documented
schema of its operation and status (tests/schema_check.py), so every test here is also a schema test.  This
module drives one of each kind of response, under every compatibility profile, and checks that they were
indeed checked.
"""

from __future__ import annotations

import pytest
from kt_api_support import ADMIN_KEY, ALICE_KEY, Stack

from kubetask.core.rest.profiles import PROFILES


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_kind_of_response_matches_the_document(shared: Stack, profile: str) -> None:
    headers = {"X-Compat-Profile": profile}
    before = shared.schema.checked
    with shared.client(ALICE_KEY, **headers) as a, shared.client(ALICE_KEY, prefix="", **headers) as root, \
            shared.client(ADMIN_KEY, **headers) as admin, shared.client(None, **headers) as anonymous:
        created = a.post("/tasks", json={"name": "schema", "image": "busybox", "scheduled_at": "2099-01-01T00:00:00Z",
                                         "gpus": 64})
        assert created.status_code == 201 and created.json()["warnings"], created.text
        task_id = created.json()["id"]
        other = a.post("/tasks", json={"template": "ollama-inference", "depends_on": [task_id],
                                       "parameters": {"model": "m", "prompt": "p"}}).json()
        shared.set_status(other, {"phase": "Running", "startedAt": "2030-01-01T00:00:00Z"})
        responses = [
            a.get("/tasks"), a.get("/tasks", params={"format": "array"}),
            a.get("/tasks", params={"format": "envelope"}),
            a.get(f"/tasks/{task_id}"), a.get("/tasks/status"), a.get("/tasks/queue-status"),
            a.put(f"/tasks/{task_id}", json={"priority": 3, "image": "busybox:1.37"}),
            a.patch(f"/tasks/{task_id}/priority", params={"priority": 4}), a.get(f"/tasks/{task_id}/executions"),
            a.get(f"/tasks/{task_id}/timeline"), a.get(f"/tasks/{task_id}/compare/{other['id']}"),
            a.post(f"/tasks/{task_id}/execute"), a.post(f"/tasks/{task_id}/replay"),
            a.get("/templates"), a.get("/templates/ollama-inference"),
            a.post("/templates/validate", params={"template_name": "ollama-inference"}, json={"model": "m"}),
            a.get("/users/me/limits"), admin.get("/users/alice/limits"), a.get("/workers"),
            a.get("/search/tasks"), a.get("/search/presets"), a.get("/search/presets/failed_today"),
            a.get("/dashboard/stats"), a.get("/dashboard/workers"), a.get("/analytics/trends"), a.get("/alerts"),
            a.get("/resilience/summary"), a.get("/health"), root.get("/tasks"), root.get(f"/tasks/{task_id}"),
            # errors, in the profile's error style
            a.get("/tasks/no-such-task"), a.post("/tasks", json={"image": "busybox", "gpuz": 1}),
            a.post("/tasks", content=b"{", headers={"Content-Type": "application/json"}),
            a.put(f"/tasks/{other['id']}", json={"name": "late"}), anonymous.get("/tasks"),
            a.get("/tasks", params={"status": "sleeping"}), a.get("/tasks", params={"limit": 0}),
            a.delete(f"/tasks/{task_id}"), a.post(f"/tasks/{task_id}/cancel"),
        ]
    statuses = {r.status_code for r in responses}
    assert {200, 400, 401, 404, 409, 422} <= statuses, statuses
    json_responses = [r for r in responses if r.headers.get("content-type", "").startswith("application/json")]
    assert shared.schema.checked - before >= len(json_responses) >= 35
