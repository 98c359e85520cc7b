"""The scheduler's background follow-ups: per-Task ordering, the status overlay, and failure handling.

Driven with a fake client (no cluster): these are the properties the pipelined scheduler relies on
to never lose, reorder or double-apply a Task's status patches.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kubetask.core.cycle import TaskAction
from kubetask.core.status import Plan
from kubetask.kube.client import ApiError
from kubetask.operator.scheduler import Scheduler
from kubetask.operator.state import State
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

Obj = dict[str, Any]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[Obj] = []
        self.fail_next = False
        self.gate: asyncio.Event | None = None
        self.rv = 1

    async def patch_status(self, resource: Any, name: str, body: Obj, namespace: str) -> Obj:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ApiError(500, {"message": "boom"})
        self.patches.append(body["status"])
        self.rv += 1
        return task_obj(status=dict(body["status"]), rv=self.rv)

    async def create_event(self, *args: Any, **kwargs: Any) -> None:
        return None


def task_obj(status: Obj | None = None, rv: int = 1) -> Obj:
    return {"metadata": {"name": "t", "namespace": "ns", "uid": "u1", "resourceVersion": str(rv)},
            "spec": {}, "status": status or {}}


def make_scheduler() -> tuple[Scheduler, FakeClient]:
    client = FakeClient()
    state = State(OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False),
                  GpuSettings(), KubeSettings(), client)  # type: ignore[arg-type]
    state.tasks.upsert(task_obj())
    return Scheduler(state), client


def action(status: Obj, old: Obj) -> TaskAction:
    a = TaskAction(("ns", "t"), task_obj(status=old), Plan(status=status))
    a.patch = {k: v for k, v in status.items() if old.get(k) != v}
    return a


def test_follow_ups_of_one_task_apply_in_order_and_the_overlay_shows_the_expected_status() -> None:
    async def run() -> None:
        scheduler, client = make_scheduler()
        client.gate = asyncio.Event()
        scheduler._follow_up(action({"phase": "Queued"}, {}), NOW)
        scheduler._follow_up(action({"phase": "Running"}, {"phase": "Queued"}), NOW)
        assert scheduler.overlay[("ns", "t")][1] == {"phase": "Running"}
        client.gate.set()
        await scheduler.drain()
        assert client.patches == [{"phase": "Queued"}, {"phase": "Running"}]
        assert not scheduler.overlay and not scheduler.inflight
        assert scheduler.state.tasks.get("t", "ns")["status"] == {"phase": "Running"}  # type: ignore[index]

    asyncio.run(run())


def test_a_failed_patch_skips_the_rest_of_the_chain_and_drops_the_overlay() -> None:
    async def run() -> None:
        scheduler, client = make_scheduler()
        client.fail_next = True
        client.gate = asyncio.Event()
        scheduler._follow_up(action({"phase": "Queued"}, {}), NOW)
        scheduler._follow_up(action({"phase": "Running"}, {"phase": "Queued"}), NOW)
        client.gate.set()
        await scheduler.drain()
        assert client.patches == []  # the second patch was computed on top of the failed first
        assert not scheduler.overlay and not scheduler.inflight
        assert [key for _, key in scheduler.timers] == [("ns", "t")]  # a pass recomputes it from the store soon

        scheduler._follow_up(action({"phase": "Queued"}, {}), NOW)  # a fresh chain works again
        await scheduler.drain()
        assert client.patches == [{"phase": "Queued"}]

    asyncio.run(run())
