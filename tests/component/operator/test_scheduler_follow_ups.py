"""The scheduler's background follow-ups: per-Task ordering, the status overlay, and failure handling.

Driven with a fake client (no cluster): these are the properties the pipelined scheduler relies on
to never lose, reorder or double-apply a Task's status patches.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kubetask.core.cycle import ACCOUNTED_FIELD, PassPlan, TaskAction
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
        self.writes: list[tuple[str, Obj]] = []
        """Every status write in order, Tasks' and Tenants', by resource kind."""
        self.fail_next = False
        self.fail_tenant_next = False
        self.gate: asyncio.Event | None = None
        self.rv = 1

    async def patch_status(self, resource: Any, name: str, body: Obj, namespace: str | None = None) -> Obj:
        if self.gate is not None:
            await self.gate.wait()
        if resource.kind == "Tenant":
            if self.fail_tenant_next:
                self.fail_tenant_next = False
                raise ApiError(500, {"message": "boom"})
            self.writes.append(("Tenant", body["status"]))
            return {"metadata": {"name": name, "resourceVersion": "1"}, "spec": {}, "status": body["status"]}
        if self.fail_next:
            self.fail_next = False
            raise ApiError(500, {"message": "boom"})
        self.patches.append(body["status"])
        self.writes.append(("Task", body["status"]))
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


FINISHED = {"phase": "Succeeded", "gpuSeconds": 4.0, "completedAt": "2026-01-01T00:00:00Z"}


def finishing(scheduler: Scheduler) -> PassPlan:
    """A pass whose one action writes the Task's final status with 4 new GPU-seconds."""
    scheduler.state.tenants.upsert({"metadata": {"name": "alice", "resourceVersion": "1"}, "spec": {}, "status": {}})
    scheduler.state.tenant_by_namespace = {"ns": "alice"}
    plan = PassPlan()
    plan.actions[("ns", "t")] = action(dict(FINISHED), {"phase": "Running"})
    plan.accounting.append(("ns", "t"))
    return plan


def fold_and_follow_up(scheduler: Scheduler, plan: PassPlan) -> None:
    charges = scheduler._fold_accounting(plan, NOW)
    for a in plan.actions.values():
        scheduler._follow_up(a, NOW, after=charges.get(a.key))


def test_the_final_patch_carries_the_accounted_mark_after_the_tenant_is_charged() -> None:
    async def run() -> None:
        scheduler, client = make_scheduler()
        fold_and_follow_up(scheduler, finishing(scheduler))
        assert ("ns", "t") in scheduler.accounting  # no second accounting of it meanwhile
        await scheduler.drain()
        assert [kind for kind, _ in client.writes] == ["Tenant", "Task"]
        assert client.writes[0][1]["gpuSecondsThisMonth"] == 4.0
        assert client.writes[1][1] == {**FINISHED, ACCOUNTED_FIELD: 4.0}
        assert not scheduler.accounting and not scheduler.charged and not scheduler.timers

    asyncio.run(run())


def test_a_failed_charge_writes_the_status_without_the_mark_and_accounts_later() -> None:
    async def run() -> None:
        scheduler, client = make_scheduler()
        client.fail_tenant_next = True
        fold_and_follow_up(scheduler, finishing(scheduler))
        await scheduler.drain()
        assert client.writes == [("Task", FINISHED)]  # never a mark without the charge
        assert not scheduler.accounting and not scheduler.charged
        assert [key for _, key in scheduler.timers] == [("ns", "t")]

    asyncio.run(run())


def test_a_charge_whose_patch_failed_is_not_charged_again() -> None:
    async def run() -> None:
        scheduler, client = make_scheduler()
        client.fail_next = True
        fold_and_follow_up(scheduler, finishing(scheduler))
        await scheduler.drain()
        assert [kind for kind, _ in client.writes] == ["Tenant"]
        assert scheduler.charged == {("ns", "t"): 4.0}
        # the next pass plans the same final status again: it is written with the mark, with no second charge
        fold_and_follow_up(scheduler, finishing(scheduler))
        await scheduler.drain()
        assert client.writes[1:] == [("Task", {**FINISHED, ACCOUNTED_FIELD: 4.0})]
        assert not scheduler.charged

    asyncio.run(run())
