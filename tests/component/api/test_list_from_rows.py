"""``GET /tasks`` from precomputed rows and cached query results: byte-identical to the core's mapping of
the apiserver's objects, and never stale after a write or a watch event."""

from __future__ import annotations

from typing import Any

from kt_api_support import Stack

from kubetask.api.routes.common import FastJSON
from kubetask.core.rest.present import task_public
from kubetask.core.rest.profiles import CANONICAL, PROFILES, Profile
from kubetask.core.rest.query import list_envelope, make_query, query_tasks
from kubetask.kube.client import TASKS, KubeClient

BODY = {"name": "rows", "script_content": "print(1)", "metadata": {"tags": ["rows"]}}
ROOMY = {"maxPending": 1000, "requestsPerMinute": 100000}


def apiserver_tasks(shared: Stack, namespace: str) -> list[dict[str, Any]]:
    async def list_them(client: KubeClient) -> list[dict[str, Any]]:
        return list((await client.list(TASKS, namespace))["items"])
    items: list[dict[str, Any]] = shared.kube(list_them)
    return items


def test_list_bodies_match_the_core_mapping_and_follow_changes(shared: Stack) -> None:
    shared.add_tenant("rows", "rows-key", limits=ROOMY)
    namespace = "kubetask-rows"
    with shared.client("rows-key") as client, shared.client("rows-key", prefix="") as root_paths:
        ids = [client.post("/tasks", json={**BODY, "priority": i % 4}).json()["id"] for i in range(6)]
        params = {"status": "pending", "tag": "rows", "sort_by": "priority", "sort_order": "desc", "limit": "4",
                  "offset": "1"}

        def expected(profile: Profile = CANONICAL, **overrides: Any) -> bytes:
            p = {**params, **overrides}
            q = make_query(status=p["status"], tag=p["tag"], sort_by=p["sort_by"], sort_order=p["sort_order"],
                           limit=int(p["limit"]), offset=int(p["offset"]))
            total, items = query_tasks(apiserver_tasks(shared, namespace), q)
            return bytes(FastJSON(list_envelope(total, q, [task_public(o, profile) for o in items])).body)

        first = client.get("/tasks", params=params)
        assert first.status_code == 200 and first.headers["content-type"] == "application/json"
        assert first.content == expected()
        assert client.get("/tasks", params=params).content == first.content  # served again from the cache
        assert client.get("/tasks", params={**params, "offset": "0"}).content == expected(offset="0")

        # A write through the API shows at once (read-your-writes), in every cached query.
        new = client.post("/tasks", json={**BODY, "priority": 9}).json()["id"]
        listed = client.get("/tasks", params={**params, "offset": "0"}).json()
        assert listed["total"] == 7 and listed["tasks"][0]["id"] == new

        # A change made behind the API's back (the operator's status write) shows once its watch event lands.
        task = client.get(f"/tasks/{ids[0]}").json()
        shared.set_status(task, {"phase": "Queued", "queuePosition": 1}, client=client)
        listed = client.get("/tasks", params={**params, "offset": "0", "limit": "50"}).json()
        # pending and queued both select every waiting task; the task's own status says which.
        assert listed["total"] == 7 and {t["status"] for t in listed["tasks"] if t["id"] == ids[0]} == {"queued"}
        assert client.get("/tasks", params={**params, "limit": "50"}).content == expected(limit="50")
        assert client.get("/tasks", params={**params, "status": "queued", "limit": "50"}).content == \
            expected(status="queued", limit="50")

        # The Task Manager API's root paths know no "queued": every waiting task reads pending there.
        seed = root_paths.get("/tasks", params={**params, "offset": "0", "limit": "50"})
        assert seed.content == expected(PROFILES["taskmanager"], offset="0", limit="50")
        assert {t["status"] for t in seed.json()["tasks"]} == {"pending"} and seed.json()["total"] == 7

        array = client.get("/tasks", params={**params, "format": "array"})
        assert array.json() == client.get("/tasks", params=params).json()["tasks"]

        assert client.delete(f"/tasks/{new}").status_code == 200  # a cancel: no longer pending
        listed = client.get("/tasks", params={**params, "offset": "0", "limit": "50"}).json()
        assert new not in [t["id"] for t in listed["tasks"]] and listed["total"] == 6
