"""The live fan-out (kubetask.api.live.LiveHub) without a server: event kinds, who sees what, the ring and
Last-Event-ID, the per-client bound. The component tests run the same hub behind real SSE/WebSocket."""

from __future__ import annotations

import asyncio
from typing import Any

from kubetask.api.live import LiveHub, Viewer
from kubetask.settings import LiveSettings


def task(name: str, phase: str | None, ns: str = "kubetask-alice", user: str = "alice", **status: Any) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"user": user},
            "status": {"phase": phase, **status} if phase else {}}


ALICE = Viewer("kubetask-alice", "alice")
BOB = Viewer("kubetask-bob", "bob")
ADMIN = Viewer("kubetask-root", "root", admin=True)


def drain(sub: Any) -> list[Any]:
    async def run() -> list[Any]:
        out = []
        while sub.pending():
            out.append(await sub.next())
        return out
    return asyncio.run(run())


def test_kinds_and_unchanged_versions() -> None:
    hub = LiveHub(LiveSettings())
    sub, resume = hub.subscribe(ALICE, lambda e: True)
    assert resume.complete
    hub.on_change("ADDED", task("a", "Pending"))
    hub.on_change("MODIFIED", task("a", "Pending"))  # nothing visible changed: no event
    hub.on_change("MODIFIED", task("a", "Running"))
    hub.on_change("MODIFIED", task("a", "Succeeded"))
    hub.on_change("DELETED", task("a", "Succeeded"))
    events = drain(sub)
    assert [e.kind for e in events] == ["created", "updated", "finished", "deleted"]
    assert [e.seq for e in events] == [1, 2, 3, 4] and events[2].previous["status"]["phase"] == "Running"


def test_primed_tasks_are_known_and_each_viewer_sees_only_its_own() -> None:
    hub = LiveHub(LiveSettings())
    hub.prime([task("old", "Queued")])
    subs = {name: hub.subscribe(v, lambda e: True)[0] for name, v in (("alice", ALICE), ("bob", BOB),
                                                                         ("admin", ADMIN))}
    hub.on_change("MODIFIED", task("old", "Running"))
    hub.on_change("ADDED", task("b1", "Pending", ns="kubetask-bob", user="bob"))
    hub.on_change("ADDED", task("sneaky", "Pending", ns="kubetask-alice", user="mallory"))
    assert [(e.kind, e.name) for e in drain(subs["alice"])] == [("updated", "old")]
    assert [e.name for e in drain(subs["bob"])] == ["b1"]
    assert [e.name for e in drain(subs["admin"])] == ["old", "b1", "sneaky"]


def test_resume_inside_and_outside_the_window() -> None:
    hub = LiveHub(LiveSettings(window_events=3))
    for i in range(5):
        hub.on_change("ADDED", task(f"t{i}", "Pending"))
    sub, resume = hub.subscribe(ALICE, lambda e: True, f"{hub.epoch}-3")
    assert resume.complete and [e.name for e in drain(sub)] == ["t3", "t4"]
    _, gone = hub.subscribe(ALICE, lambda e: True, f"{hub.epoch}-1")
    assert not gone.complete and "no longer held" in (gone.detail or "")
    _, other = hub.subscribe(ALICE, lambda e: True, "deadbeef-4")
    assert not other.complete and "not from this server process" in (other.detail or "")


def test_a_client_over_its_buffer_is_flagged_and_replay_costs_no_buffer() -> None:
    hub = LiveHub(LiveSettings(client_buffer=2, window_events=100))
    for i in range(5):
        hub.on_change("ADDED", task(f"r{i}", "Pending"))
    resumed, _ = hub.subscribe(ALICE, lambda e: True, f"{hub.epoch}-0")
    assert resumed.pending() == 5 and not resumed.overflowed  # replayed from the ring
    slow, _ = hub.subscribe(ALICE, lambda e: True)
    for i in range(3):
        hub.on_change("ADDED", task(f"s{i}", "Pending"))
    assert slow.overflowed and hub.overflows >= 1
    assert asyncio.run(slow.next()) is None  # the stream ends
    hub.unsubscribe(slow)
    assert hub.subscribers == 1
