"""The queue cycle (``plan_pass``), table-driven: a snapshot in, the plan of one pass out."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.cycle import (
    ACCOUNTED_FIELD,
    CycleSettings,
    PassPlan,
    QuotaRead,
    Snapshot,
    TaskView,
    Unreported,
    plan_pass,
    quota_version,
    settled,
    unreported_due,
)
from kubetask.core.queue import (
    QueuedTask,
    Quota,
    RunningTask,
    TenantLimits,
    node_frees_room,
    quota_frees_room,
)
from kubetask.core.scheduling import MILLI, Demand, NodeInfo, to_milli

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NS = "kubetask-alice"
SETTINGS = CycleSettings(callback_secret="s")
Obj = dict[str, Any]


def gpu_node(name: str = "a100", gpus: int = 4, used: int = 0) -> NodeInfo:
    return NodeInfo(name=name, labels={"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "A100"},
                    taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
                    allocatable={"gpus": gpus * MILLI, "cpu": 64 * MILLI, "memory": to_milli("512Gi")},
                    used={"gpus": used * MILLI, "cpu": 0, "memory": 0}, gpu_product="A100", is_gpu_node=True)


def task(name: str, *, status: Obj | None = None, gpus: int = 1, priority: int = 5, annotations: Obj | None = None,
         created: str = "2025-03-01T11:00:00Z", **spec: Any) -> Obj:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1,
                         "creationTimestamp": created, "annotations": annotations or {}},
            "spec": {"image": "busybox", "user": "alice", "priority": priority,
                     "resources": {"gpus": gpus, "cpu": "1", "memory": "1Gi"}, **spec},
            "status": status or {}}


def queued_status(position: int | None = 1, message: str = "no free GPU: need 1, largest free on a node is 0",
                  reason: str = "NoCapacity") -> Obj:
    return {"phase": "Queued", "queuedAt": "2025-03-01T11:50:00Z", "observedGeneration": 1, "retryCount": 0,
            "createdAt": "2025-03-01T11:00:00Z", "executions": [], "queuePosition": position, "message": message,
            "conditions": [{"type": "Admitted", "status": "False", "reason": reason, "message": message,
                            "lastTransitionTime": "2025-03-01T11:50:00Z", "observedGeneration": 1}]}


JUST_NOW = "2025-03-01T12:00:00Z"
HELD = {"phase": "Queued", "queuedAt": JUST_NOW, "observedGeneration": 1, "retryCount": 0, "createdAt": JUST_NOW,
        "executions": []}
"""The first status of a task submitted just now, as a pass holds it back (``PassPlan.unwritten``)."""


def fresh_queued(name: str, **kwargs: Any) -> Obj:
    """A task queued ten minutes ago whose waiting reason was never written."""
    status = {**queued_status(), "queuePosition": None, "message": None, "conditions": []}
    return task(name, status=status, **kwargs)


def running_status(job: str = "t-1") -> Obj:
    return {"phase": "Running", "queuedAt": "2025-03-01T11:50:00Z", "observedGeneration": 1, "retryCount": 0,
            "createdAt": "2025-03-01T11:00:00Z", "executions": [{"id": 1, "jobName": job, "phase": "Pending"}]}


def entry(name: str, *, gpus: int = 1, priority: int = 5, at: int = 0) -> QueuedTask:
    return QueuedTask(namespace=NS, name=name, tenant="alice", queue="default", priority=priority,
                      queued_at=NOW - timedelta(minutes=10) + timedelta(seconds=at),
                      demand=Demand(cpu=MILLI, memory=to_milli("1Gi"), gpus=gpus * MILLI), expected_duration=60)


def holding(name: str, *, gpus: int = 1, node: str | None = "a100") -> RunningTask:
    return RunningTask(namespace=NS, name=name, tenant="alice", queue="default",
                       demand=Demand(cpu=MILLI, memory=to_milli("1Gi"), gpus=gpus * MILLI), node_name=node,
                       expected_end=NOW + timedelta(minutes=1), execution=1)


GPU_QUOTA_2 = Quota(NS, "q", hard={"requests.nvidia.com/gpu": 2 * MILLI}, used={"requests.nvidia.com/gpu": MILLI})


def pod(name: str, state: Obj, phase: str, node: str = "a100") -> Obj:
    return {"metadata": {"name": f"{name}-1-x", "namespace": NS, "creationTimestamp": "2025-03-01T11:55:00Z",
                         "labels": {"kubetask.io/execution": "1"}},
            "spec": {"nodeName": node}, "status": {"phase": phase, "containerStatuses": [{"name": "task",
                                                                                          "state": state}]}}


def job(name: str, owner: str) -> Obj:
    return {"metadata": {"name": name, "namespace": NS, "ownerReferences": [{"uid": f"uid-{owner}"}]}, "status": {}}


SUCCEEDED_POD = {"terminated": {"exitCode": 0, "reason": "Completed", "message": '{"ok": true}',
                                "startedAt": "2025-03-01T11:55:00Z", "finishedAt": "2025-03-01T11:55:30Z"}}


@dataclass
class Case:
    """One pass: the tasks that changed, the rest of the world, and what the plan must say."""

    changed: list[TaskView] = field(default_factory=list)
    stored: list[Obj] = field(default_factory=list)
    queued: list[QueuedTask] = field(default_factory=list)
    running: list[RunningTask] = field(default_factory=list)
    nodes: list[NodeInfo] = field(default_factory=lambda: [gpu_node()])
    quotas: list[Quota] = field(default_factory=list)
    tenants: dict[str, TenantLimits] = field(default_factory=dict)
    informed: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    unwritten: dict[tuple[str, str], Obj] = field(default_factory=dict)
    decide: bool = True
    info_budget: int = 100
    pod_versions: dict[tuple[str, str, int], int] = field(default_factory=dict)
    quota_versions: dict[str, int] = field(default_factory=dict)
    unreported: dict[tuple[str, str, int], Unreported] = field(default_factory=dict)
    admitted: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    """Planned ``status.phase`` per task name (only tasks with an action)."""
    events: dict[str, list[str]] = field(default_factory=dict)
    queued_after: list[str] | None = None
    running_after: list[str] | None = None
    no_action: list[str] = field(default_factory=list)
    check: Any = None
    """Anything else: ``check(plan)``."""


def view(obj: Obj, **kwargs: Any) -> TaskView:
    return TaskView(task=obj, tenant="alice", **kwargs)


CASES: dict[str, Case] = {
    "a new task with room is queued and admitted in one pass, with one Event": Case(
        changed=[view(task("t"))], admitted=["t"], phases={"t": "Running"},
        events={"t": ["Admitted"]}, queued_after=[], running_after=["t"],
        check=lambda plan: plan.actions[(NS, "t")].workload.body["metadata"]["name"] == "t-1"
        and plan.actions[(NS, "t")].patch["phase"] == "Running"),
    "a new task without room is queued; its first status waits with its reason for a moment": Case(
        changed=[view(task("t", created=JUST_NOW))], nodes=[gpu_node(used=4)], no_action=["t"],
        queued_after=["t"], running_after=[],
        check=lambda plan: plan.unwritten[(NS, "t")]["phase"] == "Queued"
        and plan.unwritten[(NS, "t")]["queuedAt"] == JUST_NOW and plan.info_deferred),
    "a new task seen long after its submission is queued as of then, and told why at once": Case(
        changed=[view(task("t", annotations={"kubetask.io/submitted-at": "2025-03-01T11:30:00.250000Z"}))],
        nodes=[gpu_node(used=4)], phases={"t": "Queued"}, events={"t": ["Waiting"]}, queued_after=["t"],
        check=lambda plan: plan.actions[(NS, "t")].patch["queuedAt"] == "2025-03-01T11:30:00Z"
        and plan.actions[(NS, "t")].patch["queuePosition"] == 1 and (NS, "t") not in plan.unwritten),
    "a held first status is written with the reason once the task has waited": Case(
        stored=[task("w", created=JUST_NOW)], queued=[entry("w")], nodes=[gpu_node(used=4)],
        unwritten={(NS, "w"): {**HELD, "queuedAt": "2025-03-01T11:59:57Z"}},
        phases={"w": "Queued"}, events={"w": ["Waiting"]},
        check=lambda plan: plan.actions[(NS, "w")].patch["queuedAt"] == "2025-03-01T11:59:57Z"
        and plan.actions[(NS, "w")].patch["retryCount"] == 0 and plan.unwritten == {(NS, "w"): None}),
    "a held task admitted later writes its first status with the admission": Case(
        stored=[task("w", created=JUST_NOW)], queued=[entry("w")], unwritten={(NS, "w"): HELD},
        admitted=["w"], phases={"w": "Running"}, events={"w": ["Admitted"]},
        check=lambda plan: plan.actions[(NS, "w")].patch["queuedAt"] == JUST_NOW
        and plan.actions[(NS, "w")].patch["createdAt"] == JUST_NOW and plan.unwritten == {(NS, "w"): None}),
    "a task still waiting gets its reason and position": Case(
        changed=[view(fresh_queued("t"))], nodes=[gpu_node(used=4)], phases={"t": "Queued"},
        events={"t": ["Waiting"]}, queued_after=["t"],
        check=lambda plan: plan.actions[(NS, "t")].plan.status["queuePosition"] == 1
        and "no free GPU" in plan.actions[(NS, "t")].plan.status["message"]),
    "higher priority first when there is room for one": Case(
        changed=[view(task("low", priority=1)), view(task("high", priority=9))], nodes=[gpu_node(gpus=1)],
        admitted=["high"], phases={"high": "Running", "low": "Queued"}, queued_after=["low"]),
    "an unchanged queued task is admitted when a node frees up": Case(
        stored=[task("w", status=queued_status())], queued=[entry("w")], admitted=["w"],
        phases={"w": "Running"}, events={"w": ["Admitted"]}, running_after=["w"], queued_after=[]),
    "the quota holds a task back and says so": Case(
        changed=[view(fresh_queued("t", gpus=2))], running=[holding("r", gpus=2)],
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": 3 * MILLI}, used={})],
        phases={"t": "Queued"}, queued_after=["t"],
        check=lambda plan: "GPU quota 2/3 in use" in plan.actions[(NS, "t")].plan.status["message"]),
    "a running pod the quota report counts is not counted twice": Case(
        changed=[view(task("t"))], running=[holding("r")], quotas=[GPU_QUOTA_2], pod_versions={(NS, "r", 1): 10},
        quota_versions={NS: 20}, admitted=["t"],
        check=lambda plan: plan.running[(NS, "r")].in_quota and plan.quota_doubts == set()),
    "a pod newer than the quota report is added to it, and the quota is read fresh to settle it": Case(
        changed=[view(task("t"))], running=[holding("r")], quotas=[GPU_QUOTA_2], pod_versions={(NS, "r", 1): 30},
        quota_versions={NS: 20}, admitted=[], phases={"t": "Queued"},
        check=lambda plan: plan.quota_doubts == {NS}),
    "a task held by a full quota that adds nothing to the report doubts nothing": Case(
        changed=[view(task("t"))], running=[holding("r")], pod_versions={(NS, "r", 1): 10}, quota_versions={NS: 20},
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": MILLI}, used={"requests.nvidia.com/gpu": MILLI})],
        admitted=[], phases={"t": "Queued"}, check=lambda plan: plan.quota_doubts == set()),
    "a finished pod's quota is free only once the report drops": Case(
        changed=[view(fresh_queued("t"))], quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": 2 * MILLI},
                                                  used={"requests.nvidia.com/gpu": 2 * MILLI})],
        admitted=[], phases={"t": "Queued"},
        check=lambda plan: "GPU quota 2/2 in use" in plan.actions[(NS, "t")].plan.status["message"]),
    "a task that ended before the quota report counted its pod still holds the quota": Case(
        changed=[view(task("t", status=running_status()), workloads={"t-1": job("t-1", "t")},
                      pods={1: [pod("t", SUCCEEDED_POD, "Succeeded")]})],
        running=[holding("t")], queued=[entry("next")], stored=[task("next", status=queued_status())],
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": MILLI}, used={})],
        pod_versions={(NS, "t", 1): 30}, quota_versions={NS: 20}, phases={"t": "Succeeded"}, admitted=[],
        check=lambda plan: plan.unreported[(NS, "t", 1)] == Unreported(NS, holding("t").demand, 30, since=100.0)),
    "once the report counts it, the quota is the report's again": Case(
        queued=[entry("next")], stored=[task("next", status=queued_status())],
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": MILLI}, used={})],
        unreported={(NS, "t", 1): Unreported(NS, holding("t").demand, 30, since=95.0)}, quota_versions={NS: 31},
        admitted=["next"], check=lambda plan: plan.unreported == {(NS, "t", 1): None}),
    "an older report too small to hold the finished pod is not waited for (no newer one may come)": Case(
        changed=[view(task("t", status=running_status()), workloads={"t-1": job("t-1", "t")},
                      pods={1: [pod("t", SUCCEEDED_POD, "Succeeded")]})],
        running=[holding("t")], queued=[entry("next")], stored=[task("next", status=queued_status())],
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": MILLI}, used={"requests.nvidia.com/gpu": 0})],
        pod_versions={(NS, "t", 1): 30}, quota_versions={NS: 20}, phases={"t": "Succeeded"}, admitted=["next"],
        check=lambda plan: plan.unreported == {} and plan.reports_believed == {"too_small": 1}),
    "a kept finished pod the report is too small for is dropped": Case(
        queued=[entry("next")], stored=[task("next", status=queued_status())],
        quotas=[Quota(NS, "q", hard={"requests.nvidia.com/gpu": MILLI}, used={"requests.nvidia.com/gpu": 0})],
        unreported={(NS, "t", 1): Unreported(NS, holding("t").demand, 30, since=99.0)}, quota_versions={NS: 20},
        admitted=["next"],
        check=lambda plan: plan.unreported == {(NS, "t", 1): None} and plan.reports_believed == {"too_small": 1}),
    "a finished pod an older report may hold is added to it during the grace": Case(
        queued=[entry("next")], stored=[task("next", status=queued_status())], running=[holding("r")],
        pod_versions={(NS, "r", 1): 10}, quotas=[GPU_QUOTA_2],
        unreported={(NS, "t", 1): Unreported(NS, holding("t").demand, 30, since=95.0)}, quota_versions={NS: 20},
        admitted=[], check=lambda plan: (NS, "t", 1) not in plan.unreported and plan.reports_believed == {}
        and plan.quota_doubts == {NS}),
    "after the grace the report is believed": Case(
        queued=[entry("next")], stored=[task("next", status=queued_status())], running=[holding("r")],
        pod_versions={(NS, "r", 1): 10}, quotas=[GPU_QUOTA_2],
        unreported={(NS, "t", 1): Unreported(NS, holding("t").demand, 30, since=90.0)}, quota_versions={NS: 20},
        admitted=["next"],
        check=lambda plan: plan.unreported == {(NS, "t", 1): None} and plan.reports_believed == {"grace": 1}),
    "maxRunning holds a task back": Case(
        changed=[view(fresh_queued("t"))], running=[holding("r")], tenants={"alice": TenantLimits(max_running=1)},
        phases={"t": "Queued"},
        check=lambda plan: plan.actions[(NS, "t")].plan.status["message"] == "alice has 1 of 1 running tasks"),
    "a finished pod finishes the task and releases its place at once": Case(
        changed=[view(task("t", status=running_status()), workloads={"t-1": job("t-1", "t")},
                      pods={1: [pod("t", SUCCEEDED_POD, "Succeeded")]})],
        running=[holding("t")], queued=[entry("next")], stored=[task("next", status=queued_status())],
        phases={"t": "Succeeded", "next": "Running"}, admitted=["next"], running_after=["next"],
        check=lambda plan: plan.accounting == [(NS, "t")]
        and plan.actions[(NS, "t")].plan.status["result"] == {"ok": True}),
    "a running task that ends moves the queue: it is decided without being asked": Case(
        changed=[view(task("r", status=running_status("r-1")), workloads={"r-1": job("r-1", "r")},
                      pods={1: [pod("r", SUCCEEDED_POD, "Succeeded")]})],
        running=[holding("r", gpus=4)], queued=[entry("w")], stored=[task("w", status=queued_status())],
        nodes=[gpu_node()], decide=False, admitted=["w"], phases={"r": "Succeeded", "w": "Running"}),
    "a task whose next Job exists adopts it instead of creating another": Case(
        changed=[view(task("t", status=queued_status()), workloads={"t-1": job("t-1", "t")})],
        phases={"t": "Running"}, admitted=[], running_after=["t"], queued_after=[],
        check=lambda plan: plan.actions[(NS, "t")].workload is None
        and "adopted" in plan.actions[(NS, "t")].plan.status["message"]),
    "a Job of another incarnation is not adopted": Case(
        changed=[view(task("t", status=queued_status()), workloads={"t-1": job("t-1", "someone-else")})],
        admitted=["t"], phases={"t": "Running"},
        check=lambda plan: plan.actions[(NS, "t")].workload is not None),
    "a failed dependency fails the dependant": Case(
        changed=[view(task("t", dependsOn=["d"]), dependencies={"d": "Failed"})], phases={"t": "Failed"},
        queued_after=[], running_after=[]),
    "waiting dependencies keep it pending, out of the queue": Case(
        changed=[view(task("t", dependsOn=["d"]), dependencies={"d": "Running"})], phases={"t": "Pending"},
        queued_after=[], admitted=[]),
    "a scheduled task sets a timer instead of polling": Case(
        changed=[view(task("t", scheduledAt="2025-03-01T13:00:00Z"))], phases={"t": "Pending"}, queued_after=[],
        check=lambda plan: plan.requeue[(NS, "t")] == datetime(2025, 3, 1, 13, 0, tzinfo=UTC)),
    "unreadable resources fail the task": Case(
        changed=[view(task("t", resources={"gpus": 0, "cpu": "lots"}))], phases={"t": "Failed"},
        queued_after=[], check=lambda plan: "Invalid resources" in plan.actions[(NS, "t")].plan.status["message"]),
    "a deleted task leaves the queue": Case(
        changed=[view({**task("t", status=queued_status()),
                       "metadata": {**task("t")["metadata"], "deletionTimestamp": "2025-03-01T11:59:00Z"}})],
        queued=[entry("t")], nodes=[gpu_node(used=4)], queued_after=[], no_action=["t"]),
    "a settled task is skipped": Case(
        changed=[view(task("t", status={"phase": "Succeeded", "observedGeneration": 1}))], no_action=["t"],
        queued_after=[], running_after=[]),
    "finished GPU time not yet accounted is listed": Case(
        changed=[view(task("t", status={"phase": "Succeeded", "observedGeneration": 1, "gpuSeconds": 30.0,
                                        ACCOUNTED_FIELD: 10.0}))],
        check=lambda plan: plan.accounting == [(NS, "t")]),
    "fully accounted GPU time is settled": Case(
        changed=[view(task("t", status={"phase": "Succeeded", "observedGeneration": 1, "gpuSeconds": 30.0,
                                        ACCOUNTED_FIELD: 30.0}))],
        no_action=["t"], check=lambda plan: plan.accounting == []),
    "a mark in the annotations counts for nothing (tenants may write them)": Case(
        changed=[view(task("t", status={"phase": "Succeeded", "observedGeneration": 1, "gpuSeconds": 30.0},
                           annotations={"kubetask.io/accounted-gpu-seconds": "30.000"}))],
        check=lambda plan: plan.accounting == [(NS, "t")]),
    "a moved position waits for its throttle": Case(
        stored=[task("w", status=queued_status(position=3))], queued=[entry("w")], nodes=[gpu_node(used=4)],
        informed={(NS, "w"): (99.0, 99.0)}, no_action=["w"],
        check=lambda plan: plan.info_deferred and plan.info_spent == 0),
    "a moved position is written once its throttle allows": Case(
        stored=[task("w", status=queued_status(position=3))], queued=[entry("w")], nodes=[gpu_node(used=4)],
        informed={(NS, "w"): (0.0, 0.0)}, phases={"w": "Queued"}, events={"w": []},
        check=lambda plan: plan.info_spent == 1 and plan.actions[(NS, "w")].patch["queuePosition"] == 1),
    "informational writes stop at the budget": Case(
        stored=[task("w", status=queued_status(position=3))], queued=[entry("w")], nodes=[gpu_node(used=4)],
        informed={(NS, "w"): (0.0, 0.0)}, info_budget=0, no_action=["w"], check=lambda plan: plan.info_deferred),
    "a changed reason is news, but shares the budget": Case(
        stored=[task("w", status=queued_status(reason="Quota", message="GPU quota 3/3 in use"))],
        queued=[entry("w")], nodes=[gpu_node(used=4)], informed={(NS, "w"): (50.0, 50.0)}, info_budget=0,
        no_action=["w"], check=lambda plan: plan.info_deferred),
    "a changed reason is written without an Event when the budget allows": Case(
        stored=[task("w", status=queued_status(reason="Quota", message="GPU quota 3/3 in use"))],
        queued=[entry("w")], nodes=[gpu_node(used=4)], informed={(NS, "w"): (50.0, 50.0)}, info_budget=1,
        phases={"w": "Queued"}, events={"w": []},
        check=lambda plan: "no free GPU" in plan.actions[(NS, "w")].plan.status["message"]),
}


def run(case: Case) -> PassPlan:
    stored = {(NS, t["metadata"]["name"]): t for t in case.stored}
    stored.update({v.key: v.task for v in case.changed})
    snapshot = Snapshot(changed=case.changed, tasks=stored, queued={q.key: q for q in case.queued},
                        running={(r.namespace, r.name): r for r in case.running}, nodes=case.nodes,
                        quotas=case.quotas, tenants=case.tenants, informed=case.informed,
                        pod_versions=case.pod_versions, quota_versions=case.quota_versions,
                        unreported=case.unreported, unwritten=case.unwritten, decide=case.decide,
                        info_budget=case.info_budget, mono=100.0)
    return plan_pass(snapshot, NOW, SETTINGS)


@pytest.mark.parametrize("name", list(CASES))
def test_plan_pass(name: str) -> None:
    case = CASES[name]
    before = copy.deepcopy([v.task for v in case.changed] + case.stored)
    plan = run(case)
    assert [key[1] for key in plan.admitted] == case.admitted
    for task_name, phase in case.phases.items():
        assert plan.actions[(NS, task_name)].plan.status["phase"] == phase, task_name
    for task_name, reasons in case.events.items():
        assert [e.reason for e in plan.actions[(NS, task_name)].plan.events] == reasons, task_name
    for task_name in case.no_action:
        action = plan.actions.get((NS, task_name))
        assert action is None or not action.has_work, task_name
    if case.queued_after is not None:
        after = {q.key[1] for q in case.queued} | {k[1] for k, v in plan.queued.items() if v is not None}
        after -= {k[1] for k, v in plan.queued.items() if v is None}
        assert sorted(after) == sorted(case.queued_after)
    if case.running_after is not None:
        kept = {r.name for r in case.running} | {k[1] for k, v in plan.running.items() if v is not None}
        kept -= {k[1] for k, v in plan.running.items() if v is None}
        assert sorted(kept) == sorted(case.running_after)
    if case.check is not None:
        assert case.check(plan)
    assert [v.task for v in case.changed] + case.stored == before, "plan_pass changed an input object"


def test_nothing_queued_and_nothing_changed_is_an_empty_plan() -> None:
    plan = run(Case())
    assert plan.actions == {} and plan.admitted == [] and plan.queue_depths == {}


def test_settled_rules() -> None:
    done = task("t", status={"phase": "Succeeded", "observedGeneration": 1})
    assert settled(done)
    assert not settled({**done, "spec": {**done["spec"], "ttlSecondsAfterFinished": 5}})
    assert not settled({**done, "metadata": {**done["metadata"], "generation": 2}})
    assert not settled({**done, "status": {**done["status"], "gpuSeconds": 5.0}})
    assert not settled({**done, "metadata": {**done["metadata"], "annotations": {"kubetask.io/rerun": "x"}}})
    assert not settled(task("t", status=queued_status()))


def test_only_a_change_that_may_free_room_asks_for_a_decision() -> None:
    quota = Quota(NS, "q", hard={"gpu": 4}, used={"gpu": 2})
    assert not quota_frees_room(quota, Quota(NS, "q", hard={"gpu": 4}, used={"gpu": 3}))  # more in use
    assert not quota_frees_room(quota, quota)
    assert quota_frees_room(quota, Quota(NS, "q", hard={"gpu": 4}, used={"gpu": 1}))
    assert quota_frees_room(quota, Quota(NS, "q", hard={"gpu": 6}, used={"gpu": 3}))
    assert quota_frees_room(None, quota) and quota_frees_room(quota, None)
    node = gpu_node(used=1)
    assert not node_frees_room(node, gpu_node(used=2))
    assert node_frees_room(node, gpu_node(used=0))
    assert node_frees_room(node, dataclasses.replace(gpu_node(used=2), unschedulable=True))  # cordoned: decide
    assert node_frees_room(None, node) and node_frees_room(node, None)


def test_with_nothing_freed_and_no_entry_moved_the_last_decision_stands() -> None:
    """Most passes follow the echo of the operator's own writes: they do not decide the queue again."""
    waiting, fresh = task("w", status=queued_status()), task("t", created=JUST_NOW)
    full = {"running": [holding("r", gpus=4)], "stored": [task("r")], "nodes": [gpu_node(used=4)]}
    first = run(Case(changed=[view(waiting), view(fresh)], **full))  # type: ignore[arg-type]
    assert first.queue_depths == {"default": 2} and (NS, "t") in first.unwritten
    entries = [q for q in first.queued.values() if q is not None]
    again = Case(changed=[view(waiting), view(fresh)], queued=entries, unwritten=dict(first.unwritten),
                 decide=False, **full)  # type: ignore[arg-type]
    second = run(again)
    assert second.queue_depths == {} and not second.admitted
    assert not any(action.has_work for action in second.actions.values())
    assert second.unwritten[(NS, "t")]["phase"] == "Queued"  # the fresh task's first status is still held
    asked = run(dataclasses.replace(again, decide=True))
    assert asked.queue_depths == {"default": 2}


def test_the_first_finished_executions_grace_end_is_the_schedulers_wake_up() -> None:
    demand = holding("t").demand
    grace = SETTINGS.unreported_grace_seconds
    assert unreported_due([], SETTINGS) is None
    assert unreported_due([Unreported(NS, demand, 30, since=50.0), Unreported(NS, demand, 31, since=20.0)],
                          SETTINGS) == 20.0 + grace


@pytest.mark.parametrize(("stored", "read", "expected"), [
    (20, None, 20),
    (20, QuotaRead(revision=50, versions={"q": 20}), 50),  # the store holds what was read: it counts up to 50
    (30, QuotaRead(revision=50, versions={"q": 20}), 50),  # newer than the read
    (60, QuotaRead(revision=50, versions={"q": 20}), 60),  # rewritten after the read
    (20, QuotaRead(revision=50, versions={"q": 25}), 20),  # the watch has not brought what was read yet
    (20, QuotaRead(revision=50, versions={"other": 20}), 20),
])
def test_a_fresh_quota_read_raises_the_version_a_report_counts_pods_up_to(
        stored: int, read: QuotaRead | None, expected: int) -> None:
    assert quota_version(stored, "q", read) == expected


def test_a_quota_list_gives_its_revision_and_each_quotas_version() -> None:
    listed = {"metadata": {"resourceVersion": "120"},
              "items": [{"metadata": {"name": "tenant-quota", "resourceVersion": "97"}},
                        {"metadata": {"name": "jobs", "resourceVersion": "110"}}]}
    assert QuotaRead.from_list(listed) == QuotaRead(120, {"tenant-quota": 97, "jobs": 110})
    assert QuotaRead.from_list({"metadata": {"resourceVersion": "5"}}) == QuotaRead(5, {})
    with pytest.raises(ValueError):
        QuotaRead.from_list({"metadata": {}, "items": []})
    with pytest.raises(KeyError):
        QuotaRead.from_list({"metadata": {"resourceVersion": "5"}, "items": [{"metadata": {"name": "q"}}]})
