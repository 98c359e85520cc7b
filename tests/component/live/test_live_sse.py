"""Server-Sent Events from the watch cache, on the real control plane with the real operator: a client sees
running then completed without polling, only its own tasks, filtered like the list, and resumes with
Last-Event-ID (or is told explicitly that it cannot)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from live_support import ALICE_KEY, BOB_KEY, SSEReader, Stack, sim, wait_until


def submit(client: httpx.Client, name: str, seconds: float = 2, exit_code: int = 0, **fields: object) -> dict:
    response = client.post("/tasks", json={"name": name, "image": "busybox", "command": ["true"],
                                           "annotations": sim(seconds, exit_code), **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def stream(stack: Stack, path: str, key: str | None = ALICE_KEY, **headers: str) -> SSEReader:
    all_headers = {"X-API-Key": key, **headers} if key else dict(headers)
    return SSEReader(f"{stack.url}/api/v1{path}", all_headers)


def test_a_client_sees_running_then_completed_without_polling(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, stream(live_stack, "/tasks/events") as events:
        assert events.status == 200
        ready = events.next()
        assert ready.event == "ready" and ready.id and ready.json()["last_event_id"] == ready.id
        task = submit(alice, "sse-run", seconds=2)
        seen = events.until(lambda e: e.event == "finished" and e.json()["id"] == task["id"])
        mine = [e for e in seen if e.event != "ready" and e.json()["id"] == task["id"]]
        statuses = [e.json()["status"] for e in mine]
        assert mine[0].event == "created" and statuses[0] in ("pending", "queued")
        assert "running" in statuses and statuses[-1] == "completed"
        assert statuses.index("running") < len(statuses) - 1
        assert mine[-1].json()["worker_id"] and mine[-1].json()["started_at"]  # where and when it ran
        seqs = [int(str(e.id).rsplit("-", 1)[1]) for e in mine]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(e.id and e.id.split("-")[0] == ready.id.split("-")[0] for e in mine)


def test_one_task_stream_starts_with_its_state_and_others_get_404(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice:
        task = submit(alice, "sse-one", seconds=1)
        with stream(live_stack, f"/tasks/{task['id']}/events") as events:
            assert events.next().event == "ready"
            snapshot = events.next()
            assert snapshot.event == "snapshot" and snapshot.json()["id"] == task["id"]
            if snapshot.json()["status"] != "completed":
                seen = events.until(lambda e: e.event == "finished")
                assert seen[-1].json()["status"] == "completed"
                assert {e.json()["id"] for e in seen} == {task["id"]}
        with stream(live_stack, f"/tasks/{task['id']}/events", key=BOB_KEY) as other:
            assert other.status == 404
            assert task["id"] in other.body and "not found" in other.body.lower()
        with stream(live_stack, "/tasks/events", key=None) as anonymous:
            assert anonymous.status == 401


def test_another_users_changes_never_reach_a_stream(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, live_stack.client(BOB_KEY) as bob, \
            stream(live_stack, "/tasks/events", key=BOB_KEY) as bobs:
        assert bobs.next().event == "ready"
        theirs = submit(alice, "sse-alice-private", seconds=1)
        marker = submit(bob, "sse-bob-marker", seconds=1)
        seen = bobs.until(lambda e: e.event == "finished" and e.json()["id"] == marker["id"])
        wait_until(lambda: alice.get(f"/tasks/{theirs['id']}").json()["status"] == "completed")
        seen += bobs.drain()
        assert all(e.json()["user_id"] == "bob" for e in seen if e.event != "ready"), seen
        assert theirs["id"] not in "".join(e.data for e in seen)


def test_filters_like_the_list_and_a_task_leaving_the_filter_is_shown(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, \
            stream(live_stack, "/tasks/events?status=running&tag=watched") as running:
        assert running.next().event == "ready"
        other = submit(alice, "sse-untagged", seconds=1)
        task = submit(alice, "sse-tagged", seconds=2, tags=["watched"])
        seen = running.until(lambda e: e.event == "finished" and e.json()["id"] == task["id"])
        assert {e.json()["id"] for e in seen[:-1] if e.event != "ready"} <= {task["id"]}
        statuses = [e.json()["status"] for e in seen if e.event != "ready"]
        assert statuses[0] == "running" and statuses[-1] == "completed"  # entered, then left the filter
        assert "pending" not in statuses and "queued" not in statuses
        wait_until(lambda: alice.get(f"/tasks/{other['id']}").json()["status"] == "completed")
        assert all(e.json()["id"] != other["id"] for e in running.drain())


def test_bad_filter_is_a_422_naming_the_parameter(live_stack: Stack) -> None:
    with stream(live_stack, "/tasks/events?status=bogus") as events:
        assert events.status == 422 and "status" in events.body


def test_last_event_id_resumes_without_loss_and_an_unknown_id_is_said(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice:
        with stream(live_stack, "/tasks/events") as first:
            ready = first.next()
            submit(alice, "sse-resume-1", seconds=1)
            created = first.until(lambda e: e.event == "created")[-1]
        missed = submit(alice, "sse-resume-2", seconds=1)  # while no stream is open
        wait_until(lambda: alice.get(f"/tasks/{missed['id']}").json()["status"] == "completed")
        with stream(live_stack, "/tasks/events", **{"Last-Event-ID": str(created.id)}) as resumed:
            assert resumed.next().event == "ready"
            replay = resumed.until(lambda e: e.event == "finished" and e.json()["id"] == missed["id"])
            assert all(e.event != "reset" for e in replay)
            ids = [e.id for e in replay]
            assert ids == sorted(ids, key=lambda i: int(str(i).rsplit("-", 1)[1]))
            assert int(str(ids[0]).rsplit("-", 1)[1]) == int(str(created.id).rsplit("-", 1)[1]) + 1  # nothing skipped
            assert [e.json()["status"] for e in replay if e.json()["id"] == missed["id"]][-1] == "completed"
        for stale in (f"{ready.id.split('-')[0]}x-1", "00000000-1", "garbage"):
            with stream(live_stack, f"/tasks/events?last_event_id={stale}") as restarted:
                assert restarted.next().event == "ready"
                reset = restarted.next()
                assert reset.event == "reset" and "not from this server process" in reset.json()["detail"]


def test_a_task_written_by_someone_else_streams_too(live_stack: Stack, kubectl: Any) -> None:
    """The stream follows the watch cache, not the API's own writes: a Task applied with kubectl shows up."""
    manifest = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "metadata": {"name": "sse-from-kubectl", "namespace": "kubetask-alice"},
                "spec": {"displayName": "sse-from-kubectl", "image": "busybox", "podAnnotations": sim(1)}}
    with stream(live_stack, "/tasks/events") as events:
        assert events.next().event == "ready"
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
        seen = events.until(lambda e: e.event == "finished" and e.json()["object_name"] == "sse-from-kubectl")
        assert seen[0].json()["object_name"] == "sse-from-kubectl" and seen[0].event == "created"
        assert seen[-1].json()["status"] == "completed"
