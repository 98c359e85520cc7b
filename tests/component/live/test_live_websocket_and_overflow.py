"""Seed 004's WebSocket (/ws/tasks) and the bounds of the fan-out: subscribe/unsubscribe by task id, own tasks
only, authentication by header or first message; a client that falls behind is told and closed, and resumes
from the ring with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_support import ALICE_KEY, BOB_KEY, OwnApi, SSEReader, Stack, serve_own_api, sim, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def submit(client: httpx.Client, name: str, seconds: float = 2) -> dict[str, Any]:
    response = client.post("/tasks", json={"name": name, "image": "busybox", "annotations": sim(seconds)})
    assert response.status_code == 201, response.text
    return dict(response.json())


def ws_url(stack_url: str) -> str:
    return stack_url.replace("http://", "ws://") + "/ws/tasks"


def receive(ws: ClientConnection, timeout: float = 60) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def until(ws: ClientConnection, predicate: Any, timeout: float = 90) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = receive(ws, timeout)
        seen.append(message)
        if predicate(message):
            return seen


def test_subscribe_to_a_task_and_follow_it_to_completed(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, \
            connect(ws_url(live_stack.url), additional_headers={"X-API-Key": ALICE_KEY}) as ws:
        assert receive(ws)["type"] == "connected"
        task = submit(alice, "ws-follow", seconds=2)
        ws.send(json.dumps({"action": "subscribe", "task_id": task["id"]}))
        assert receive(ws) == {"type": "subscribed", "task_id": task["id"]}
        snapshot = receive(ws)
        assert snapshot["type"] == "task_update" and snapshot["event"] == "snapshot" and snapshot["id"] == task["id"]
        seen = until(ws, lambda m: m.get("status") == "completed")
        assert all(m["task_id"] == task["id"] for m in seen)  # one message per update, only this task
        assert "running" in [m["status"] for m in seen] or snapshot["status"] == "running"
        assert seen[-1]["event"] == "finished" and seen[-1]["event_id"]
        ws.send(json.dumps({"action": "unsubscribe", "task_id": task["id"]}))
        assert receive(ws) == {"type": "unsubscribed", "task_id": task["id"]}
        second = submit(alice, "ws-after-unsubscribe", seconds=1)
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws) == {"type": "pong"}  # nothing about the unsubscribed task came first
        wait_until(lambda: alice.get(f"/tasks/{second['id']}").json()["status"] == "completed")
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws) == {"type": "pong"}


def test_another_users_task_is_not_found_and_never_streamed(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, \
            connect(ws_url(live_stack.url), additional_headers={"X-API-Key": BOB_KEY}) as ws:
        assert receive(ws)["type"] == "connected"
        theirs = submit(alice, "ws-alice-only", seconds=1)
        ws.send(json.dumps({"action": "subscribe", "task_id": theirs["id"]}))
        refused = receive(ws)
        assert refused["type"] == "error" and refused["code"] == "TASK_NOT_FOUND" and refused["task_id"] == theirs["id"]
        ws.send(json.dumps({"action": "subscribe", "task_id": "*"}))  # every task of bob's: none of alice's
        assert receive(ws) == {"type": "subscribed", "task_id": "*"}
        wait_until(lambda: alice.get(f"/tasks/{theirs['id']}").json()["status"] == "completed")
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws) == {"type": "pong"}
        ws.send(json.dumps({"action": "dance"}))
        assert receive(ws)["code"] == "UNKNOWN_ACTION"
        ws.send("not json")
        assert receive(ws)["code"] == "BAD_MESSAGE"


def test_authentication_by_first_message_and_refusal(live_stack: Stack) -> None:
    with connect(ws_url(live_stack.url)) as ws:
        assert receive(ws)["type"] == "auth_required"
        ws.send(json.dumps({"action": "auth", "api_key": ALICE_KEY}))
        connected = receive(ws)
        assert connected["type"] == "connected" and connected["user_id"] == "alice"
    with connect(ws_url(live_stack.url)) as ws:
        assert receive(ws)["type"] == "auth_required"
        ws.send(json.dumps({"action": "auth", "api_key": "wrong"}))
        with pytest.raises(ConnectionClosed) as closed:
            receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with connect(ws_url(live_stack.url), additional_headers={"X-API-Key": "wrong"}) as ws:
        assert receive(ws)["code"] == "INVALID_CREDENTIALS"
        with pytest.raises(ConnectionClosed):
            receive(ws)


# --------------------------------------------------------------------------- bounds (own API: its hub at hand)

BUFFER = 4


@pytest.fixture(scope="module")
def own_api(live_stack: Stack) -> Iterator[OwnApi]:
    api = serve_own_api(live_stack.kubeconfig, {"KUBETASK_LIVE_CLIENT_BUFFER": str(BUFFER),
                                                "KUBETASK_LIVE_WINDOW_EVENTS": "64",
                                                "KUBETASK_LIVE_MAX_STREAMS_PER_TENANT": "3"})
    try:
        wait_until(lambda: httpx.get(f"{api.url}/health").status_code == 200)
        yield api
    finally:
        api.close()


def burst(api: OwnApi, count: int, prefix: str) -> None:
    """``count`` task changes applied in one go on the server's loop, as a relist or a burst of watch events
    read from one socket buffer arrives (the client has no chance to read in between)."""
    def apply() -> None:
        hub = api.hub()
        for i in range(count):
            hub.on_change("ADDED", {
                "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "metadata": {"name": f"{prefix}-{i}", "namespace": "kubetask-alice", "resourceVersion": str(i + 1)},
                "spec": {"user": "alice", "displayName": f"{prefix}-{i}"}, "status": {"phase": "Queued"}})
    api.call(apply)


def _metric(api: OwnApi, name: str) -> float:
    for line in httpx.get(f"{api.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the API's /metrics")


def test_a_slow_client_is_closed_with_a_message_and_resumes_without_loss(own_api: OwnApi) -> None:
    headers = {"X-API-Key": ALICE_KEY}
    overflows_before = _metric(own_api, "kubetask_api_live_overflows_total")
    published_before = _metric(own_api, "kubetask_api_live_events_total")
    with SSEReader(f"{own_api.url}/api/v1/tasks/events", headers) as slow, \
            SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": BOB_KEY}) as bystander:
        ready = slow.next()
        assert ready.event == "ready" and ready.json()["buffer"] == BUFFER
        assert bystander.next().event == "ready"
        burst(own_api, BUFFER + 3, "burst")
        overflow = slow.next()
        assert overflow.event == "overflow" and str(BUFFER) in overflow.json()["detail"]
        assert slow.ended.wait(10), "the stream must end after the overflow message"
        assert bystander.drain() == []  # bob's stream never saw alice's burst, nor was it closed
        assert not bystander.ended.is_set()
        assert _metric(own_api, "kubetask_api_live_subscribers") == 1  # the bystander; the slow one is gone
    assert _metric(own_api, "kubetask_api_live_overflows_total") == overflows_before + 1
    assert _metric(own_api, "kubetask_api_live_events_total") >= published_before + BUFFER + 3
    resumed_from = overflow.json()["last_event_id"] or ready.id
    with SSEReader(f"{own_api.url}/api/v1/tasks/events", {**headers, "Last-Event-ID": resumed_from}) as again:
        assert again.next().event == "ready"
        names = [again.next().json()["object_name"] for _ in range(BUFFER + 3)]
        assert names == [f"burst-{i}" for i in range(BUFFER + 3)]  # all of them, in order, from the ring


def test_an_id_older_than_the_window_gets_an_explicit_reset(own_api: OwnApi) -> None:
    with SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": ALICE_KEY}) as first:
        old = first.next().id
    burst(own_api, 70, "flood")  # more than the 64 events the window keeps
    with SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": ALICE_KEY, "Last-Event-ID": str(old)}) as late:
        assert late.next().event == "ready"
        reset = late.next()
        assert reset.event == "reset" and "no longer held" in reset.json()["detail"]


def test_streams_per_tenant_are_bounded(own_api: OwnApi) -> None:
    readers = [SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": ALICE_KEY}) for _ in range(3)]
    try:
        for reader in readers:
            assert reader.status == 200
        with SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": ALICE_KEY}) as extra:
            assert extra.status == 429 and "TOO_MANY_STREAMS" in extra.body
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: own_api.hub().subscribers == 0, timeout=30)  # closed streams are released
    with SSEReader(f"{own_api.url}/api/v1/tasks/events", {"X-API-Key": ALICE_KEY}) as later:
        assert later.status == 200
