"""The admission policy: priority, FIFO, DRF fairness, limits, quota headroom, node capacity, messages."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.queue import QueuedTask, Quota, RunningTask, TenantLimits, decide, effective_quota_used
from kubetask.core.scheduling import MILLI, Demand, NodeInfo, node_info, parse_quantity, to_milli

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAINT = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]


def gpu_node(name: str, gpus: int, product: str, **kw: Any) -> NodeInfo:
    return NodeInfo(name=name, labels={"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product},
                    taints=TAINT, allocatable={"gpus": gpus * MILLI, "cpu": 32 * MILLI,
                                               "memory": to_milli("256Gi")},
                    gpu_product=product, is_gpu_node=True, **kw)


def cpu_node(name: str = "cpu-1", cpus: int = 32) -> NodeInfo:
    return NodeInfo(name=name, allocatable={"gpus": 0, "cpu": cpus * MILLI, "memory": to_milli("256Gi")})


def queued(name: str, *, tenant: str = "alice", gpus: int = 1, priority: int = 5, at: int = 0,
           gpu_type: str | None = None, ns: str | None = None, queue: str = "default") -> QueuedTask:
    return QueuedTask(namespace=ns or f"kubetask-{tenant}", name=name, tenant=tenant, queue=queue,
                      priority=priority, queued_at=NOW + timedelta(seconds=at),
                      demand=Demand(gpus=gpus * MILLI, gpu_type=gpu_type), expected_duration=60)


def running(name: str, *, tenant: str = "alice", gpus: int = 1, node: str | None = "a100",
            ends_in: int = 30) -> RunningTask:
    return RunningTask(namespace=f"kubetask-{tenant}", name=name, tenant=tenant, queue="default",
                       demand=Demand(gpus=gpus * MILLI), node_name=node, expected_end=NOW + timedelta(seconds=ends_in))


NODES = [gpu_node("a100", 4, "A100"), gpu_node("h100", 4, "H100"), cpu_node()]


def bound(nodes: list[NodeInfo], busy: list[RunningTask]) -> list[NodeInfo]:
    """Nodes carry the usage of the pods bound to them (as node_info derives it from Pods)."""
    for node in nodes:
        for r in busy:
            if r.node_name == node.name:
                node.used["gpus"] = node.used.get("gpus", 0) + r.demand.gpus
                node.tasks += 1
    return nodes


def test_priority_first_then_fifo() -> None:
    tasks = [queued("low", priority=1, at=0), queued("high", priority=9, at=5), queued("mid-2", at=3),
             queued("mid-1", at=1)]
    nodes = [gpu_node("a100", 2, "A100")]
    decision = decide(tasks, [], nodes, [], {}, now=NOW)
    assert decision.admit == [("kubetask-alice", "high"), ("kubetask-alice", "mid-1")]
    assert decision.waiting[("kubetask-alice", "mid-2")].position == 1
    assert decision.waiting[("kubetask-alice", "low")].position == 2


def test_fifo_within_one_second_follows_the_submission_stamp() -> None:
    # Same queuedAt (one scheduler pass), names that sort the other way: the microsecond stamp decides.
    first = queued("zz-first", at=0)
    second = queued("aa-second", at=0)
    first.submitted_at = NOW + timedelta(microseconds=10)
    second.submitted_at = NOW + timedelta(microseconds=20)
    decision = decide([second, first], [], [gpu_node("a100", 1, "A100")], [], {}, now=NOW)
    assert decision.admit == [("kubetask-alice", "zz-first")]
    assert decision.waiting[("kubetask-alice", "aa-second")].position == 1


def test_drf_lets_the_newcomer_overtake_a_backlog() -> None:
    backlog = [queued(f"a{i}", tenant="alice", at=i) for i in range(20)]
    newcomer = [queued(f"b{i}", tenant="bob", at=100 + i) for i in range(3)]
    busy = [running(f"r{i}", tenant="alice", node="a100") for i in range(3)]
    decision = decide(backlog + newcomer, busy, bound([gpu_node("a100", 4, "A100")], busy), [], {}, now=NOW)
    # one slot free: bob (share 0) beats alice (share 3/4) despite queueing later
    assert decision.admit == [("kubetask-bob", "b0")]


def test_drf_alternates_between_equal_tenants() -> None:
    tasks = [queued(f"a{i}", tenant="alice", at=i) for i in range(4)] + \
            [queued(f"b{i}", tenant="bob", at=10 + i) for i in range(4)]
    decision = decide(tasks, [], [gpu_node("a100", 4, "A100")], [], {}, now=NOW)
    assert sorted(k[1] for k in decision.admit) == ["a0", "a1", "b0", "b1"]


def test_max_running_names_the_limit() -> None:
    busy = [running(f"r{i}", node="a100") for i in range(4)]
    decision = decide([queued("t1"), queued("t2")], busy, NODES, [], {"alice": TenantLimits(max_running=4)},
                      now=NOW)
    assert decision.admit == []
    assert decision.waiting[("kubetask-alice", "t1")].message == "alice has 4 of 4 running tasks"
    assert decision.waiting[("kubetask-alice", "t2")].reason == "MaxRunning"


def test_max_running_of_one_tenant_does_not_block_another() -> None:
    decision = decide([queued("a1", at=0), queued("b1", tenant="bob", at=1)], [running("r", node="a100")], NODES,
                      [], {"alice": TenantLimits(max_running=1)}, now=NOW)
    assert decision.admit == [("kubetask-bob", "b1")]


def test_quota_headroom_counts_inflight_admissions() -> None:
    quota = Quota("kubetask-alice", "q", hard={"requests.nvidia.com/gpu": 8 * MILLI}, used={})
    busy = [running(f"r{i}", gpus=2, node=None) for i in range(4)]  # admitted, pods not yet counted
    decision = decide([queued("t", gpus=1)], busy, [gpu_node("a", 8, "A100"), gpu_node("b", 8, "A100")],
                      [quota], {}, now=NOW)
    assert decision.admit == []
    assert decision.waiting[("kubetask-alice", "t")].message == "GPU quota 8/8 in use"


def test_quota_within_one_pass_never_over_admits() -> None:
    quota = Quota("kubetask-alice", "q", hard={"requests.nvidia.com/gpu": 3 * MILLI, "pods": 10 * MILLI},
                  used={"requests.nvidia.com/gpu": 1 * MILLI})
    tasks = [queued(f"t{i}", at=i) for i in range(5)]
    decision = decide(tasks, [], [gpu_node("a", 8, "A100")], [quota], {}, now=NOW)
    assert len(decision.admit) == 2


def test_a_task_waiting_for_quota_holds_back_later_tasks_that_need_the_same_resource() -> None:
    quota = Quota("kubetask-alice", "q", hard={"requests.nvidia.com/gpu": 4 * MILLI},
                  used={"requests.nvidia.com/gpu": 3 * MILLI})
    tasks = [queued("big", gpus=2, at=0), queued("small", gpus=1, at=1), queued("cpu", gpus=0, at=2)]
    decision = decide(tasks, [], [gpu_node("a", 8, "A100"), cpu_node()], [quota], {}, now=NOW)
    assert decision.admit == [("kubetask-alice", "cpu")]  # the GPU quota holds small, not the CPU-only task
    assert decision.waiting[("kubetask-alice", "small")].message == (
        "GPU quota 3/4 in use; waiting behind big, which needs 2 first")
    other = decide([queued("big", gpus=2), queued("b", tenant="bob", gpus=1)], [], [gpu_node("a", 8, "A100")],
                   [quota], {}, now=NOW)
    assert other.admit == [("kubetask-bob", "b")]  # another tenant's namespace is not held


def test_effective_quota_used_adds_what_the_report_does_not_count_yet() -> None:
    used = effective_quota_used({"requests.cpu": 5000}, [Demand(cpu=2000), Demand(cpu=2000)],
                                gpu_resource="nvidia.com/gpu", job_count=7)
    assert used["requests.cpu"] == 9000 and used["pods"] == 2000 and used["count/jobs.batch"] == 7000
    # a report short of the pods it must count (the quota controller recounted from a stale cache)
    short = effective_quota_used({"requests.cpu": 1000}, [], counted=[Demand(cpu=2000), Demand(cpu=2000)],
                                 gpu_resource="nvidia.com/gpu")
    assert short["requests.cpu"] == 4000


def test_a_finished_pod_frees_quota_only_once_the_quota_says_so() -> None:
    # 3 of 4 GPUs reported in use: two running pods the report counts, and one finished pod the quota
    # controller has not taken out yet. The two running ones must not be added again, and the finished
    # one still blocks: the apiserver would refuse a 2-GPU pod until the report drops.
    quota = Quota("kubetask-alice", "q", hard={"requests.nvidia.com/gpu": 4 * MILLI},
                  used={"requests.nvidia.com/gpu": 3 * MILLI})
    busy = [RunningTask(namespace="kubetask-alice", name=f"r{i}", tenant="alice", queue="default",
                        demand=Demand(gpus=MILLI), node_name="a", in_quota=True) for i in range(2)]
    nodes = [gpu_node("a", 8, "A100")]
    assert decide([queued("one", gpus=1)], busy, nodes, [quota], {}, now=NOW).admit == [("kubetask-alice", "one")]
    waiting = decide([queued("two", gpus=2)], busy, nodes, [quota], {}, now=NOW).waiting[("kubetask-alice", "two")]
    assert waiting.message == "GPU quota 3/4 in use, task needs 2"


@pytest.mark.parametrize(("task", "nodes", "busy", "message"), [
    (queued("t", gpus=2), [gpu_node("a", 4, "A100")], [running("r1", gpus=3, node="a")],
     "no free GPU: need 2, largest free on a node is 1"),
    (queued("t", gpu_type="H100"), NODES, [running(f"h{i}", node="h100") for i in range(4)],
     "no free H100: need 1, largest free on a node is 0"),
    (queued("t", gpu_type="V100"), NODES, [], "no node offers V100 GPUs"),
    (queued("t", gpus=8), NODES, [], "no node can ever fit this task: it needs 8 GPUs, the largest node has 4"),
    (queued("t"), [gpu_node("a", 4, "A100", paused=True)], [],
     "no schedulable node with GPUs: all are paused, cordoned or draining"),
    (queued("t"), [gpu_node("a", 4, "A100", max_tasks=1, tasks=1)], [],
     "every eligible node is at its kubetask task capacity"),
])
def test_capacity_messages(task: QueuedTask, nodes: list[NodeInfo], busy: list[RunningTask], message: str) -> None:
    decision = decide([task], busy, bound(nodes, busy), [], {}, now=NOW)
    assert decision.waiting[task.key].message == message


def test_gpu_type_selection_and_unbound_reservations() -> None:
    unbound = [running(f"u{i}", node=None) for i in range(4)]  # 4 GPUs admitted, not yet bound: fill one node
    tasks = [queued("h", gpu_type="H100"), queued("a", gpu_type="A100", at=1)]
    decision = decide(tasks, unbound, [gpu_node("a100", 4, "A100"), gpu_node("h100", 4, "H100")], [], {}, now=NOW)
    # the 4 unbound pods are placed first (best fit on A100 or H100); exactly one of the typed tasks still fits
    assert len(decision.admit) == 1
    assert decision.placement[decision.admit[0]] in ("a100", "h100")


def test_capacity_blocked_task_holds_back_smaller_ones_in_its_pool() -> None:
    busy = [running("r", gpus=3, node="a")]
    nodes = bound([gpu_node("a", 4, "A100")], busy)
    tasks = [queued("big", gpus=2, priority=9), queued("small", gpus=1, priority=5)]
    decision = decide(tasks, busy, nodes, [], {}, now=NOW)
    assert decision.admit == []
    assert "waiting behind big" in decision.waiting[("kubetask-alice", "small")].message
    # an unsatisfiable task does not block
    tasks = [queued("huge", gpus=16, priority=9), queued("small", gpus=1, priority=5)]
    assert decide(tasks, busy, nodes, [], {}, now=NOW).admit == [("kubetask-alice", "small")]


def test_cpu_tasks_use_the_cpu_node_and_respect_taints() -> None:
    task = QueuedTask(namespace="ns", name="c", tenant="t", queue="default", priority=5, queued_at=NOW,
                      demand=Demand(cpu=4 * MILLI))
    decision = decide([task], [], NODES, [], {}, now=NOW)
    assert decision.placement[task.key] == "cpu-1"


def test_estimates_follow_running_ends() -> None:
    busy = [running(f"r{i}", node="a100", ends_in=10 * (i + 1)) for i in range(4)]
    tasks = [queued(f"t{i}", at=i, gpu_type="A100") for i in range(3)]
    decision = decide(tasks, busy, bound([gpu_node("a100", 4, "A100")], busy), [], {}, now=NOW)
    starts = [decision.waiting[("kubetask-alice", f"t{i}")].estimated_start for i in range(3)]
    assert starts == [NOW + timedelta(seconds=10), NOW + timedelta(seconds=20), NOW + timedelta(seconds=30)]


def test_estimates_reuse_the_slot_a_short_task_frees_again() -> None:
    busy = [running("soon", node="a100", ends_in=10), running("late", node="a100", ends_in=100)]
    tasks = [dataclasses.replace(queued(f"t{i}", at=i, gpu_type="A100"), expected_duration=5) for i in range(3)]
    nodes = bound([gpu_node("a100", 2, "A100")], busy)
    decision = decide(tasks, busy, nodes, [], {}, now=NOW)
    starts = [decision.waiting[("kubetask-alice", f"t{i}")].estimated_start for i in range(3)]
    # Each short task takes the slot the one before it frees, never the one busy until 100 s.
    assert starts == [NOW + timedelta(seconds=10), NOW + timedelta(seconds=15), NOW + timedelta(seconds=20)]
    assert [decision.waiting[("kubetask-alice", f"t{i}")].position for i in range(3)] == [1, 2, 3]


def test_monthly_hours_used_up_blocks_gpu_tasks() -> None:
    decision = decide([queued("t")], [], NODES, [], {"alice": TenantLimits(monthly_gpu_seconds_left=0)}, now=NOW)
    assert decision.waiting[("kubetask-alice", "t")].reason == "MonthlyHours"


def test_node_info_from_objects() -> None:
    node = {"metadata": {"name": "n", "labels": {"nvidia.com/gpu.present": "true", "kubetask.io/paused": "true",
                                                  "nvidia.com/gpu.product": "A100"},
                         "annotations": {"kubetask.io/capacity": "2"}},
            "spec": {"unschedulable": False, "taints": TAINT},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "4"}}}
    pods = [{"metadata": {"labels": {"kubetask.io/task": "x"}}, "status": {"phase": "Running"},
             "spec": {"containers": [{"resources": {"requests": {"cpu": "500m"},
                                                    "limits": {"nvidia.com/gpu": "1"}}}]}},
            {"metadata": {}, "status": {"phase": "Succeeded"},
             "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}]
    info = node_info(node, pods, gpu_resource="nvidia.com/gpu", gpu_label_key="nvidia.com/gpu.present",
                     gpu_label_value="true", product_label_key="nvidia.com/gpu.product")
    assert info.free("gpus") == 3 * MILLI and info.free("cpu") == 7500
    assert info.paused and not info.takes_work and info.max_tasks == 2 and info.tasks == 1


@pytest.mark.parametrize(("text", "value"), [("500m", "0.5"), ("2Gi", str(2 * 2**30)), ("1.5", "1.5"),
                                             ("1e3", "1000"), ("4", "4"), ("1k", "1000")])
def test_parse_quantity(text: str, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value)
