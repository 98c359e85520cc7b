"""Issue 12 part 3: the REST facade while its kube-apiserver hangs (SIGSTOP for ~30 s), and after.

While the apiserver is stopped: writes answer 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After`` (measured and
printed; bounded generously), reads answer 200 from the watch cache marked stale, ``/health`` answers
(unhealthy, with the reason). After SIGCONT: the API recovers by itself, a retry with the Idempotency-Key of a
create sent during the outage makes exactly one Task (whether or not the stopped apiserver executed the first
attempt when it resumed), and new tasks can be created.

The apiserver is the module's own (``own_cluster``): stopping the session's would cost its controller
manager and scheduler their leader leases.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from kt_api_support import ALICE_KEY, Stack, assert_error_body

from kubetask.core.rest.intake import idempotent_task_name
from kubetask.kube.client import TASKS, KubeClient

OUTAGE_SECONDS = 30.0
WRITE_BOUND_SECONDS = 15.0
"""Generous: the deadline is ``apiserver_timeout_seconds`` (5 s) for a write sent before the API noticed the
outage, and none for one refused at once after it did."""

BODY: dict[str, Any] = {"name": "outage probe", "image": "busybox:1.36", "command": ["true"]}


def _task_names(stack: Stack) -> list[str]:
    async def names(client: KubeClient) -> list[str]:
        listed = await client.list(TASKS, "kubetask-alice")
        return sorted(str(t["metadata"]["name"]) for t in listed.get("items") or [])
    result: list[str] = stack.kube(names)
    return result


def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_apiserver_outage_and_recovery(outage_stack: Stack) -> None:
    stack = outage_stack
    cluster = stack.cluster
    key = f"outage-{uuid.uuid4()}"
    with stack.client(ALICE_KEY) as alice, stack.client(None) as anonymous:
        before = alice.post("/tasks", json={**BODY, "name": "before the outage"})
        assert before.status_code == 201, before.text
        names_before = _task_names(stack)
        assert len(names_before) == 1

        paused_at = time.monotonic()
        cluster.pause("kube-apiserver")
        try:
            first, first_s = _timed(lambda: alice.post("/tasks", json=BODY, headers={"Idempotency-Key": key}))
            print(f"POST during the outage (first, key {key}): {first.status_code} in {first_s:.2f} s")
            assert_error_body(first, 503, "SERVICE_UNAVAILABLE")
            assert int(first.headers["retry-after"]) >= 1
            assert first_s < WRITE_BOUND_SECONDS

            second, second_s = _timed(lambda: alice.post("/tasks", json={**BODY, "name": "refused"},
                                                         headers={"Idempotency-Key": f"{key}-2"}))
            print(f"POST during the outage (second): {second.status_code} in {second_s:.2f} s")
            assert_error_body(second, 503, "SERVICE_UNAVAILABLE")
            assert "retry-after" in second.headers
            assert second_s < WRITE_BOUND_SECONDS

            cancel, cancel_s = _timed(lambda: alice.delete(f"/tasks/{before.json()['id']}"))
            print(f"DELETE during the outage: {cancel.status_code} in {cancel_s:.2f} s")
            assert_error_body(cancel, 503, "SERVICE_UNAVAILABLE")

            listed, list_s = _timed(lambda: alice.get("/tasks"))
            print(f"GET /tasks during the outage: {listed.status_code} in {list_s:.2f} s, "
                  f"Warning: {listed.headers.get('warning')!r}")
            assert listed.status_code == 200, listed.text
            assert listed.headers.get("x-kubetask-stale") == "true"
            assert listed.headers.get("warning", "").startswith("110 ")
            assert [t["id"] for t in listed.json()["tasks"]] == [before.json()["id"]]

            one = alice.get(f"/tasks/{before.json()['id']}")
            assert one.status_code == 200 and one.headers.get("x-kubetask-stale") == "true"

            health, health_s = _timed(lambda: anonymous.get("/health"))
            print(f"GET /health during the outage: {health.status_code} in {health_s:.2f} s: {health.json()}")
            assert health.status_code == 503
            assert health.json()["status"] == "unhealthy"
            assert health.json()["checks"]["apiserver"] == "unreachable"
            mine = alice.get("/health")
            assert mine.status_code == 503 and mine.json()["checks"]["apiserver"].startswith("unreachable: ")

            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - paused_at)))
        finally:
            cluster.resume("kube-apiserver")
        resumed_at = time.monotonic()
        print(f"apiserver stopped for {resumed_at - paused_at:.1f} s")

        stack.wait_for(lambda: anonymous.get("/health").status_code == 200, timeout=60, interval=0.2)
        print(f"/health healthy again {time.monotonic() - resumed_at:.2f} s after SIGCONT")
        fresh = alice.get("/tasks")
        assert fresh.status_code == 200 and "x-kubetask-stale" not in fresh.headers

        retried = alice.post("/tasks", json=BODY, headers={"Idempotency-Key": key})
        assert retried.status_code == 201, retried.text
        assert retried.json()["object_name"] == idempotent_task_name("alice", key)
        again = alice.post("/tasks", json=BODY, headers={"Idempotency-Key": key})
        assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
        assert again.json()["id"] == retried.json()["id"]
        reused = alice.post("/tasks", json={**BODY, "name": "another body"}, headers={"Idempotency-Key": key})
        assert_error_body(reused, 422, "IDEMPOTENCY_KEY_REUSED")

        new = alice.post("/tasks", json={**BODY, "name": "after the outage"})
        assert new.status_code == 201, new.text
        assert alice.get(f"/tasks/{new.json()['id']}").status_code == 200
        cancelled = alice.delete(f"/tasks/{before.json()['id']}")
        assert cancelled.status_code == 200, cancelled.text

    names_after = _task_names(stack)
    # The task from before, exactly one for the key (however many attempts reached the apiserver), the new one.
    assert len(names_after) == 3, names_after
    assert names_after.count(idempotent_task_name("alice", key)) == 1
    assert idempotent_task_name("alice", f"{key}-2") not in names_after
