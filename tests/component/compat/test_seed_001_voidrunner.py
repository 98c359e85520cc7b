"""Seed 001 (Task Management API, GitHub issue #5) as a client written from it would use it.

CRUD on /api/v1/tasks with script tasks, execute, execution history, pagination with page/limit,
status + date-range filters, sort/order, validation rules (name 1-255, script ≤ 1 MB, python|bash,
timeout 1-3600, priority 0-10), per-user authorization and rate-limit headers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from compat_support import (
    ALICE_KEY,
    FAR_FUTURE,
    DevServer,
    assert_error,
    is_iso,
    is_uuid,
    parse_iso,
    sim,
    wait_started,
    wait_status,
)

EXAMPLE = {
    "name": "Data Processing Script",
    "description": "Process CSV data and generate report",
    "script_content": "import pandas as pd\\nprint('Processing...')",
    "script_type": "python",
    "timeout_seconds": 30,
    "metadata": {"tags": ["data", "processing"], "priority": "high"},
}


def _script(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "script_content": "echo hi", "script_type": "bash", **extra}


def test_create_task_example(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json=EXAMPLE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["id"], str) and body["id"]
    assert body["name"] == "Data Processing Script"
    assert body["status"] == "pending"
    assert is_iso(body["created_at"]) and body["created_at"].endswith("Z")
    assert body["user_id"] == "alice"
    assert body["description"] == EXAMPLE["description"]
    assert body["timeout_seconds"] == 30
    assert body["script_type"] == "python"
    assert body["metadata"]["tags"] == ["data", "processing"]
    assert body["priority"] == 8  # metadata.priority "high"
    got = alice.get(f"/tasks/{body['id']}")
    assert got.status_code == 200 and got.json()["name"] == "Data Processing Script"


def test_get_task_details(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_script("seed001 get", annotations=sim(0.1, result={"rows": 3}))).json()
    done = wait_status(alice, task["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["result"] == {"rows": 3}
    assert is_iso(done["started_at"]) and is_iso(done["completed_at"])
    assert parse_iso(done["completed_at"]) >= parse_iso(done["started_at"]) >= parse_iso(done["created_at"])


@pytest.mark.parametrize("patch,field", [
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"script_type": "ruby"}, "script_type"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"timeout_seconds": 3601}, "timeout_seconds"),
    ({"priority": 11}, "priority"),
    ({"priority": -1}, "priority"),
    ({"priority": "urgent-ish"}, "priority"),
    ({"script_content": "x" * (1024 * 1024 + 1)}, "script_content"),
])
def test_validation_rules(alice: httpx.Client, patch: dict[str, object], field: str) -> None:
    body = assert_error(alice.post("/tasks", json={**EXAMPLE, **patch}), 422)
    assert body["field"] == field and body["errors"][0]["field"] == field, body


def test_validation_boundaries_accepted(alice: httpx.Client) -> None:
    for patch in ({"name": "y" * 255, "priority": 0, "timeout_seconds": 1},
                  {"name": "x", "priority": 10, "timeout_seconds": 3600, "script_type": "bash"},
                  {"script_content": "x" * 100_000}):
        response = alice.post("/tasks", json={**EXAMPLE, **patch, "scheduled_at": FAR_FUTURE})
        assert response.status_code == 201, (patch if "script_content" not in patch else "100k", response.text)
        assert alice.delete(f"/tasks/{response.json()['id']}").status_code == 200


# Regression: AdmissionReviews of Tasks with scripts near 1 MiB (CREATE) or over ~512 KiB (UPDATE:
# object + oldObject) used to exceed the webhook server's default 1 MiB body limit.


def test_script_of_almost_1mb_is_accepted(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json={**EXAMPLE, "script_content": "x" * (1024 * 1024 - 64),
                                          "scheduled_at": FAR_FUTURE})
    assert response.status_code == 201, response.text[:300]


def test_task_with_a_600k_script_can_be_cancelled(alice: httpx.Client) -> None:
    response = alice.post("/tasks", json={**EXAMPLE, "script_content": "x" * 600_000, "scheduled_at": FAR_FUTURE})
    assert response.status_code == 201, response.text[:300]
    cancelled = alice.delete(f"/tasks/{response.json()['id']}")
    assert cancelled.status_code == 200, cancelled.text[:300]


def test_missing_name_or_script_is_rejected(alice: httpx.Client) -> None:
    no_script = {k: v for k, v in EXAMPLE.items() if k != "script_content"}
    assert_error(alice.post("/tasks", json=no_script), 422)
    assert_error(alice.post("/tasks", json={**EXAMPLE, "script_content": ""}), 422)


def test_update_task_put(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    response = alice.put(f"/tasks/{task['id']}", json={"name": "Renamed", "description": "new", "priority": 3,
                                                       "timeout_seconds": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Renamed" and body["description"] == "new"
    assert body["priority"] == 3 and body["timeout_seconds"] == 60
    assert alice.get(f"/tasks/{task['id']}").json()["name"] == "Renamed"
    patched = alice.patch(f"/tasks/{task['id']}", json={"description": "patched"})  # PATCH: only what is given
    assert patched.status_code == 200 and patched.json()["description"] == "patched"
    assert patched.json()["name"] == "Renamed"
    assert_error(alice.put(f"/tasks/{task['id']}", json={"priority": 42}), 422)
    assert_error(alice.put("/tasks/no-such-task-0000", json={"name": "x"}), 404)
    alice.delete(f"/tasks/{task['id']}")


def test_update_finished_task_is_409(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_script("seed001 finished", annotations=sim(0.1))).json()
    wait_status(alice, task["id"], {"completed"})
    assert_error(alice.put(f"/tasks/{task['id']}", json={"name": "late"}), 409)


def test_delete_then_get(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    response = alice.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_execute_and_execution_history(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_script("seed001 exec", annotations=sim(0.1, result={"n": 1}))).json()
    wait_status(alice, task["id"], {"completed"})
    history = alice.get(f"/tasks/{task['id']}/executions")
    assert history.status_code == 200
    executions = history.json()["executions"]
    assert len(executions) == 1
    first = executions[0]
    assert first["status"] == "completed" and is_iso(first["started_at"]) and is_iso(first["completed_at"])
    one = alice.get(f"/tasks/{task['id']}/executions/{first['id']}")
    assert one.status_code == 200 and one.json()["id"] == first["id"]
    assert_error(alice.get(f"/tasks/{task['id']}/executions/999"), 404)

    rerun = alice.post(f"/tasks/{task['id']}/execute")
    assert rerun.status_code in (200, 201, 202), rerun.text
    assert rerun.json()["task_id"] == task["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        executions = alice.get(f"/tasks/{task['id']}/executions").json()["executions"]
        if len(executions) == 2 and executions[-1]["status"] == "completed":
            break
        time.sleep(0.3)
    assert len(executions) == 2 and executions[-1]["status"] == "completed", executions
    assert executions[0]["id"] != executions[1]["id"]


def test_cancel_running_execution(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_script("seed001 exec cancel", annotations=sim(30))).json()
    wait_started(alice, task["id"])
    executions = alice.get(f"/tasks/{task['id']}/executions").json()["executions"]
    assert executions and executions[-1]["status"] == "running"
    response = alice.delete(f"/tasks/{task['id']}/executions/{executions[-1]['id']}")
    assert response.status_code == 200, response.text
    assert wait_status(alice, task["id"], {"cancelled", "failed", "completed"})["status"] == "cancelled"
    assert_error(alice.delete(f"/tasks/{task['id']}/executions/{executions[-1]['id']}"), 409)


def test_list_example_query(alice: httpx.Client) -> None:
    response = alice.get("/tasks?status=running&page=1&limit=20&sort=created_at&order=desc")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["limit"] == 20 and body["offset"] == 0 and isinstance(body["total"], int)
    assert all(t["status"] == "running" for t in body["tasks"])


def test_pagination_with_page_and_limit(alice: httpx.Client) -> None:
    tag = f"pg{datetime.now(UTC).strftime('%H%M%S%f')}"
    ids = []
    for i in range(5):
        ids.append(alice.post("/tasks", json={**_script(f"seed001 page {i}"), "tags": [tag],
                                              "scheduled_at": FAR_FUTURE}).json()["id"])
    page1 = alice.get("/tasks", params={"tag": tag, "page": 1, "limit": 2, "sort": "created_at",
                                        "order": "asc"}).json()
    page3 = alice.get("/tasks", params={"tag": tag, "page": 3, "limit": 2, "sort": "created_at",
                                        "order": "asc"}).json()
    assert page1["total"] == 5 and len(page1["tasks"]) == 2 and page1["offset"] == 0
    assert page3["offset"] == 4 and len(page3["tasks"]) == 1
    seen = [t["id"] for t in page1["tasks"]] + [t["id"] for t in page3["tasks"]]
    assert seen == [ids[0], ids[1], ids[4]]
    desc = alice.get("/tasks", params={"tag": tag, "limit": 5, "sort": "created_at", "order": "desc"}).json()
    assert [t["id"] for t in desc["tasks"]] == list(reversed(ids))
    assert_error(alice.get("/tasks", params={"page": 0}), 422)
    assert_error(alice.get("/tasks", params={"limit": 0}), 422)
    assert_error(alice.get("/tasks", params={"limit": "many"}), 422)
    for task_id in ids:
        alice.delete(f"/tasks/{task_id}")


def test_date_range_filter(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json={**_script("seed001 dates"), "scheduled_at": FAR_FUTURE}).json()
    created = parse_iso(task["created_at"])
    before = (created - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = (created + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")  # no Z
    inside = alice.get("/tasks", params={"created_after": before, "created_before": after, "limit": 1000})
    assert inside.status_code == 200 and task["id"] in {t["id"] for t in inside.json()["tasks"]}
    later = alice.get("/tasks", params={"created_after": after, "limit": 1000}).json()
    assert task["id"] not in {t["id"] for t in later["tasks"]}
    day = created.strftime("%Y-%m-%d")
    by_day = alice.get("/tasks", params={"created_after": day, "limit": 1000}).json()
    assert task["id"] in {t["id"] for t in by_day["tasks"]}
    assert_error(alice.get("/tasks", params={"created_after": "yesterday-ish"}), 422)
    alice.delete(f"/tasks/{task['id']}")


def test_users_only_access_their_tasks(alice: httpx.Client, bob: httpx.Client) -> None:
    task = alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    assert_error(bob.get(f"/tasks/{task['id']}"), 404)
    assert_error(bob.put(f"/tasks/{task['id']}", json={"name": "mine now"}), 404)
    assert_error(bob.delete(f"/tasks/{task['id']}"), 404)
    assert_error(bob.post(f"/tasks/{task['id']}/execute"), 404)
    assert_error(bob.get(f"/tasks/{task['id']}/executions"), 404)
    assert task["id"] not in {t["id"] for t in bob.get("/tasks", params={"limit": 1000}).json()["tasks"]}
    alice.delete(f"/tasks/{task['id']}")


def test_rate_limit_headers_per_user(alice: httpx.Client) -> None:
    first = alice.get("/tasks", params={"limit": 1})
    second = alice.get("/tasks", params={"limit": 1})
    for response in (first, second):
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert int(second.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Remaining"])


def test_openapi_documents_the_endpoints(dev_url_client: httpx.Client) -> None:
    spec = dev_url_client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/v1/tasks", "/api/v1/tasks/{task_id}", "/api/v1/tasks/{task_id}/execute",
                 "/api/v1/tasks/{task_id}/executions", "/api/v1/tasks/{task_id}/executions/{exec_id}"):
        assert path in paths, path
    assert {"get", "post"} <= set(paths["/api/v1/tasks"])
    assert {"get", "put", "delete"} <= set(paths["/api/v1/tasks/{task_id}"])
    assert "/tasks" not in paths and "/health" not in paths  # the root aliases stay out of the schema
    # /docs and /redoc work air-gapped: their assets come from the package, no CDN.
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
        html = dev_url_client.get(page)
        assert html.status_code == 200 and asset in html.text and "cdn" not in html.text.lower(), page
        served = dev_url_client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100_000, asset
    assert dev_url_client.get("/docs-assets/swagger-ui.css").status_code == 200


def test_date_range_aliases_and_page_size(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json={**_script("seed001 alias"), "scheduled_at": FAR_FUTURE}).json()
    created = parse_iso(task["created_at"])
    later = (created + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = (created - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for after, before in (("start_date", "end_date"), ("date_from", "date_to"), ("created_from", "created_to")):
        ids = {t["id"] for t in alice.get("/tasks", params={after: earlier, before: later, "limit": 1000})
               .json()["tasks"]}
        assert task["id"] in ids, after
        assert task["id"] not in {t["id"] for t in alice.get("/tasks", params={after: later, "limit": 1000})
                                  .json()["tasks"]}, after
    for size in ("page_size", "per_page"):
        assert alice.get("/tasks", params={size: 3}).json()["limit"] == 3
    alice.delete(f"/tasks/{task['id']}")


# --------------------------------------------------------------------------- update what runs, bad input


def test_put_may_change_what_a_task_that_has_not_started_runs(alice: httpx.Client) -> None:
    """Seed 001's ``PUT /tasks/{id}`` "Update task": script_content and script_type change while the task
    waits (re-validated like a create), and the response echoes the new script."""
    task = alice.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE}).json()
    assert task["script_content"] == EXAMPLE["script_content"]  # echoed on create ...
    assert alice.get(f"/tasks/{task['id']}").json()["script_content"] == EXAMPLE["script_content"]  # ... and get
    updated = alice.put(f"/tasks/{task['id']}", json={"script_content": "echo changed", "script_type": "bash"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["script_content"] == "echo changed" and updated.json()["script_type"] == "bash"
    switched = alice.put(f"/tasks/{task['id']}", json={"template": "ollama-inference",
                                                       "parameters": {"model": "m", "prompt": "p"}})
    assert switched.status_code == 200, switched.text
    assert switched.json()["template"] == "ollama-inference" and switched.json()["script_content"] is None
    # Re-validated by the admission rules: a bad template's parameters are a 422 naming them.
    assert_error(alice.put(f"/tasks/{task['id']}", json={"template": "ollama-inference", "parameters": {}}), 422,
                 "INVALID_PARAMETERS")
    assert_error(alice.put(f"/tasks/{task['id']}", json={"script_content": "x" * (1024 * 1024 + 1)}), 422)
    assert_error(alice.put(f"/tasks/{task['id']}", json={"gpus": 3}), 422, "IMMUTABLE_FIELD")
    alice.delete(f"/tasks/{task['id']}")


def test_put_on_a_started_task_is_409_saying_why(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=_script("seed001 started", annotations=sim(20))).json()
    wait_started(alice, task["id"])
    body = assert_error(alice.put(f"/tasks/{task['id']}", json={"script_content": "echo late"}), 409,
                        "TASK_ALREADY_STARTED")
    assert "not started" in body["detail"] and "running" in body["detail"]
    alice.delete(f"/tasks/{task['id']}")


def test_malformed_json_is_400_with_line_and_column(alice: httpx.Client) -> None:
    body = assert_error(alice.post("/tasks", content=b'{\n  "name": "x",\n  "script_content": }',
                                   headers={"Content-Type": "application/json"}), 400, "MALFORMED_JSON")
    assert "line 3, column 21" in body["detail"] and body["field"] == "body", body
    assert body["errors"][0]["line"] == 3 and body["errors"][0]["column"] == 21


def test_unknown_create_field_is_422_naming_it(alice: httpx.Client) -> None:
    body = assert_error(alice.post("/tasks", json={**EXAMPLE, "gpuz": 3}), 422, "UNKNOWN_FIELD")
    assert body["field"] == "gpuz" and "gpus" in body["detail"]


def test_a_task_no_node_could_ever_fit_is_accepted_with_warnings(alice: httpx.Client) -> None:
    too_big = alice.post("/tasks", json={**EXAMPLE, "gpus": 64, "scheduled_at": FAR_FUTURE})
    assert too_big.status_code == 201, too_big.text
    assert any("no node has 64 GPUs" in w and "the most on one node is 8" in w for w in too_big.json()["warnings"])
    unknown_type = alice.post("/tasks", json={**EXAMPLE, "gpus": 1, "gpu_type": "B200", "scheduled_at": FAR_FUTURE})
    assert any("'B200'" in w for w in unknown_type.json()["warnings"]), unknown_type.json()
    fits = alice.post("/tasks", json={**EXAMPLE, "gpus": 8, "gpu_type": "A100", "scheduled_at": FAR_FUTURE})
    assert fits.json()["warnings"] == []
    for response in (too_big, unknown_type, fits):
        alice.delete(f"/tasks/{response.json()['id']}")


# --------------------------------------------------------------------------- the documented examples, as written


def test_voidrunner_profile_replays_the_documented_examples(dev: DevServer) -> None:
    """The Task Management API issue's examples under its profile (X-Compat-Profile: voidrunner)."""
    with dev.client(ALICE_KEY, **{"X-Compat-Profile": "voidrunner"}) as client:
        # Create Task -> {"id": uuid, "name", "status": "pending", "created_at", "user_id"} (scheduled far out, so
        # that it is still waiting when it is updated below)
        response = client.post("/tasks", json={**EXAMPLE, "scheduled_at": FAR_FUTURE})
        assert response.status_code == 201, response.text
        created = response.json()
        assert is_uuid(created["id"]) and created["name"] == "Data Processing Script"
        assert created["status"] == "pending" and is_iso(created["created_at"]) and created["user_id"] == "alice"
        # GET /api/v1/tasks?status=running&page=1&limit=20&sort=created_at&order=desc
        listed = client.get("/tasks?status=running&page=1&limit=20&sort=created_at&order=desc").json()
        assert listed["limit"] == 20 and listed["offset"] == 0
        assert all(t["status"] == "running" for t in listed["tasks"])
        # Waiting tasks read "pending" whatever they wait for (this API knows no "queued").
        waiting = client.get("/tasks", params={"status": "pending", "limit": 1000}).json()["tasks"]
        assert created["id"] in {t["id"] for t in waiting} and {t["status"] for t in waiting} == {"pending"}
        # PUT updates, DELETE deletes (cancels), execute, executions.
        assert client.put(f"/tasks/{created['id']}", json={"name": "Renamed"}).json()["name"] == "Renamed"
        assert client.delete(f"/tasks/{created['id']}").status_code == 200
        done = client.post("/tasks", json=_script("voidrunner exec", annotations=sim(0.1))).json()
        wait_status(client, done["id"], {"completed"})
        assert client.post(f"/tasks/{done['id']}/execute").json()["execution_requested"] is True
        history = client.get(f"/tasks/{done['id']}/executions").json()
        assert history["task_id"] == done["id"] and history["executions"][0]["status"] == "completed"
