"""Issue 12 part 2: no data crosses tenants, endpoint by endpoint.

alice has tasks (waiting, running on a node with a task pod, finished there), a webhook and alerts. bob then
calls EVERY operation of the API's own OpenAPI document (so a new endpoint is covered without editing this
file) with alice's ids in every path parameter. Each answer must hold none of alice's ids, names or markers;
an operation that names one of her objects answers 404 (or a refusal that names nothing: 401/403/422);
aggregates (dashboard, worker grid, workers, health) count bob's own tasks only, which are none. bob's
writes change nothing of alice's. The completion callback answers the same for alice's ids and unknown ids.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kt_api_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, ROOMY, Stack

from kubetask.kube.client import PODS, TASKS, KubeClient

NODE = "cpu-1"
CAROL_KEY = "reliability-carol-key"
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
STREAMS = {"/api/v1/tasks/events", "/api/v1/tasks/{task_id}/events"}
NAMING = re.compile(r"\{(task_id|other_id|exec_id|webhook_id)\}")
"""Path parameters that name one of alice's objects: the answer must be a 404 (or a refusal naming nothing)."""


class Alice:
    """What alice owns, and every string that would betray it."""

    def __init__(self) -> None:
        self.marker = f"alicesecret{uuid.uuid4().hex[:8]}"
        self.tasks: list[dict[str, Any]] = []
        self.webhook_id = ""
        self.alert_id = "no-alert"

    @property
    def secrets(self) -> set[str]:
        found = {self.marker}
        for task in self.tasks:
            found |= {task["id"], task["object_name"], task["task_id"]}
        if self.webhook_id:
            found.add(self.webhook_id)
        return found


def _pod(task: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{task['object_name']}-1-pod", "namespace": "kubetask-alice",
                         "labels": {"kubetask.io/task": task["object_name"]},
                         "annotations": {"kubetask.io/task-name": task["object_name"],
                                         "kubetask.dev/sim-duration-seconds": "3600"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "busybox",
                                                       "resources": {"requests": {"cpu": "500m"}}}]}}


@pytest.fixture(scope="module")
def alice_world(api_stack: Stack) -> Iterator[Alice]:
    world = Alice()
    with api_stack.client(ALICE_KEY) as alice:
        for i in range(4):
            created = alice.post("/tasks", json={"name": f"{world.marker} task {i}", "image": "busybox",
                                                 "tags": [world.marker], "queue_name": world.marker})
            assert created.status_code == 201, created.text
            world.tasks.append(created.json())
        running, done = world.tasks[2], world.tasks[3]
        api_stack.set_status(running, {"phase": "Running", "nodeName": NODE, "startedAt": NOW}, client=alice)
        api_stack.set_status(done, {"phase": "Succeeded", "completedAt": NOW, "executions": [
            {"id": 1, "jobName": f"{done['object_name']}-1", "nodeName": NODE, "startedAt": NOW,
             "finishedAt": NOW, "exitCode": 0}]}, client=alice)
        api_stack.kube(lambda c: c.create(PODS, _pod(running), "kubetask-alice"))
        hook = alice.post("/webhooks", json={"url": f"http://127.0.0.1:9/{world.marker}",
                                             "events": ["completed"], "description": world.marker})
        assert hook.status_code == 201, hook.text
        world.webhook_id = hook.json()["id"]
        with api_stack.client(ADMIN_KEY) as root:
            api_stack.wait_for(lambda: root.get("/dashboard/stats").json()["running_task_pods"] >= 1)
        alerts = alice.get("/alerts").json()["alerts"]
        if alerts:
            world.alert_id = alerts[0]["alert_id"]
    yield world


def _value(name: str, world: Alice, operation: dict[str, Any]) -> str:
    tasks = world.tasks
    return {"task_id": tasks[0]["id"], "other_id": tasks[1]["id"], "exec_id": "1", "webhook_id": world.webhook_id,
            "worker_id": NODE, "user_id": "alice", "alert_id": world.alert_id, "template_name": "payments",
            "name": "failed_today"}.get(name, "x")


def _example_body(operation: dict[str, Any], components: dict[str, Any]) -> Any:
    content = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if content is None:
        return None
    schema = content.get("schema") or {}
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema.get("examples") or []
    return examples[0] if examples else {}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


def _read_stream(client: httpx.Client, url: str, seconds: float, poke: Any) -> tuple[int, str]:
    """Status and what a stream sent within ``seconds`` while ``poke()`` changes alice's tasks."""
    chunks: list[bytes] = []
    status = {"code": 0}
    stop = threading.Event()

    def read() -> None:
        try:
            with client.stream("GET", url, timeout=httpx.Timeout(10, read=0.5)) as response:
                status["code"] = response.status_code
                iterator = response.iter_raw()
                while not stop.is_set():
                    try:
                        chunks.append(next(iterator))
                    except StopIteration:
                        return
                    except httpx.ReadTimeout:
                        iterator = response.iter_raw()
        except (httpx.ReadTimeout, httpx.StreamError, httpx.RemoteProtocolError):
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    poke()
    time.sleep(seconds)
    stop.set()
    reader.join(timeout=5)
    return status["code"], b"".join(chunks).decode(errors="replace")


def test_bob_sees_nothing_of_alice_on_any_endpoint(api_stack: Stack, alice_world: Alice) -> None:
    world = alice_world
    spec = httpx.get(api_stack.url + "/openapi.json").json()
    components = spec["components"]["schemas"]
    secrets = world.secrets
    leaks: list[str] = []
    table: list[str] = []
    with api_stack.client(ALICE_KEY) as alice, \
            httpx.Client(base_url=api_stack.url, headers={"X-API-Key": BOB_KEY}, timeout=30) as raw_bob:
        pokes = iter(range(1000))
        for method, path, operation in _operations(spec):
            sent = {name: _value(name, world, operation) for name in re.findall(r"\{(\w+)\}", path)}
            url = re.sub(r"\{(\w+)\}", lambda m, sent=sent: sent[m.group(1)], path)
            if path in STREAMS:
                code, text = _read_stream(raw_bob, url, 1.5, lambda: alice.patch(
                    f"/tasks/{world.tasks[0]['id']}/priority", json={"priority": next(pokes) % 10}))
            else:
                body = _example_body(operation, components)
                response = raw_bob.request(method, url, json=body) if body is not None \
                    else raw_bob.request(method, url)
                code, text = response.status_code, response.text
            table.append(f"{method:6} {path:50} {code}")
            # A 404 may echo the id bob sent ("Task <id> not found"): that tells him nothing he did not send.
            found = sorted(s for s in secrets - set(sent.values()) if s in text)
            if found:
                leaks.append(f"{method} {path}: {code} carries {found}: {text[:300]}")
            if NAMING.search(path) and code not in (401, 403, 404, 422):
                leaks.append(f"{method} {path}: {code} for alice's ids (want 404): {text[:300]}")
            assert code < 500, f"{method} {path}: {code} {text[:300]}"
    print("\n".join(table))
    print(f"{len(table)} operations as bob on alice's ids: {len(leaks)} leaks")
    assert not leaks, "\n".join(leaks)


def test_aggregates_count_only_the_callers_tasks(api_stack: Stack, alice_world: Alice) -> None:
    # A tenant with no task at all (bob may own tasks the endpoint table created): every count of its own is 0.
    api_stack.add_tenant("carol", CAROL_KEY, limits=ROOMY)
    with api_stack.client(CAROL_KEY) as bob, api_stack.client(ADMIN_KEY) as root, \
            api_stack.client(ALICE_KEY) as alice, api_stack.client(None) as anonymous:
        mine = bob.get("/dashboard/stats").json()
        assert mine["scope"] == "carol"
        for key in ("running_task_pods", "total_tasks_submitted", "tasks_running", "tasks_completed",
                    "queue_depth", "gpus_allocated"):
            assert mine[key] == 0, (key, mine)
        assert mine["cpu_usage_percent"] == 0, mine
        everyone = root.get("/dashboard/stats").json()
        assert everyone["running_task_pods"] >= 1 and everyone["total_tasks_submitted"] >= 4
        hers = alice.get("/dashboard/stats").json()
        assert hers["running_task_pods"] == 1 and hers["total_tasks_submitted"] == 4

        grid = {w["worker_id"]: w for w in bob.get("/dashboard/workers").json()["workers"]}
        assert grid[NODE]["tasks_finished"] == 0 and grid[NODE]["current_load"] == 0, grid[NODE]
        assert grid[NODE]["capacity"] > 0  # capacity is the node's, not tenant data
        admin_grid = {w["worker_id"]: w for w in root.get("/dashboard/workers").json()["workers"]}
        assert admin_grid[NODE]["tasks_finished"] >= 1 and admin_grid[NODE]["current_load"] >= 1

        worker = bob.get(f"/workers/{NODE}").json()
        assert worker["current_load"] == 0 and worker["tasks"] == [] and worker["cpu_requested_millicores"] == 0
        assert root.get(f"/workers/{NODE}").json()["current_load"] >= 1

        public = anonymous.get("/health").json()
        assert set(public) == {"status", "timestamp", "version", "checks"}, public
        own = bob.get("/health").json()
        assert own["scope"] == "carol" and own["active_tasks"] == 0 and own["completed_tasks"] == 0
        assert alice.get("/health").json()["active_tasks"] == 1


def test_bobs_writes_change_nothing_of_alices(api_stack: Stack, alice_world: Alice) -> None:
    async def specs(client: KubeClient) -> dict[str, Any]:
        listed = await client.list(TASKS, "kubetask-alice")
        return {t["metadata"]["name"]: (t["spec"], (t.get("metadata") or {}).get("annotations"),
                                        (t.get("status") or {}).get("result")) for t in listed["items"]}

    before = api_stack.kube(specs)
    with api_stack.client(BOB_KEY) as bob:
        for task in alice_world.tasks:
            for method, path, body in (("DELETE", "", None), ("POST", "/cancel", None), ("POST", "/execute", None),
                                       ("PATCH", "", {"priority": 9}), ("PUT", "", {"name": "mine"}),
                                       ("PATCH", "/priority", {"priority": 1}), ("POST", "/replay", None),
                                       ("POST", "/complete", {"result": {"forged": True}})):
                response = bob.request(method, f"/tasks/{task['id']}{path}", json=body)
                assert response.status_code == 404, (method, path, response.text)
    assert api_stack.kube(specs) == before


def test_completion_callback_is_no_existence_oracle(api_stack: Stack, alice_world: Alice) -> None:
    theirs = alice_world.tasks[0]
    unknown = str(uuid.uuid4())
    body = {"result": {"ok": True}}

    def answers(headers: dict[str, str]) -> list[tuple[int, str, str]]:
        out = []
        with httpx.Client(base_url=api_stack.url + "/api/v1", headers=headers, timeout=30) as client:
            for task_id in (theirs["id"], theirs["object_name"], unknown, "no-such-task-1a2b3c4d"):
                response = client.post(f"/tasks/{task_id}/complete", json=body)
                payload = response.json()
                detail = str(payload.get("detail", "")).replace(task_id, "<id>")
                out.append((response.status_code, str(payload.get("code")), detail))
        return out

    for headers in ({}, {"X-Task-Token": "forged"}, {"Authorization": "Bearer forged"},
                    {"X-API-Key": "not-a-key"}):
        seen = answers(headers)
        assert len(set(seen)) == 1 and seen[0][0] == 401, (headers, seen)
    bobs = answers({"X-API-Key": BOB_KEY})
    assert len(set(bobs)) == 1 and bobs[0][:2] == (404, "TASK_NOT_FOUND"), bobs
    # Unauthenticated: 401 before the body is validated (a 422 would tell a parsed request apart).
    with httpx.Client(base_url=api_stack.url + "/api/v1", timeout=30) as client:
        for task_id in (theirs["id"], unknown):
            response = client.post(f"/tasks/{task_id}/complete", json={"files_changed": "not a list"})
            assert response.status_code == 401, response.text
    assert json.dumps(bobs).count(theirs["object_name"]) == 0
