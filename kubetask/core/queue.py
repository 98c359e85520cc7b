"""The admission policy (pure): which Queued tasks start now, and why the others wait.

One call of :func:`decide` looks at every Queued task, everything admitted and
not finished, the nodes, the namespaces' ResourceQuotas and the tenants'
limits, and returns the tasks to admit plus, for each task left waiting, a
plain-language reason, its position in its queue and an estimated start time.

Rules (DESIGN §3.3, issue 5):

* Higher ``priority`` first.  Within a priority level, tenants take turns by
  **dominant resource share** (DRF, as Kueue's fair sharing and Armada do):
  the tenant whose largest share of the cluster's GPUs/CPU/memory is smallest
  goes next; within a tenant, FIFO by ``queuedAt``.
* A task is admitted only if its tenant is under ``maxRunning``, every
  ResourceQuota of its namespace has room (``hard - (reported used + what the
  report does not count yet)``, so quota never rejects a Pod — kueue#1403), and
  some eligible node has the free capacity (GPU type,
  cordon / ``kubetask.io/paused`` / ``kubetask.io/draining``, taints, the
  ``kubetask.io/capacity`` annotation, CPU and memory).
* Admitted pods not yet bound to a node are placed first (best fit), so the
  free capacity is never promised twice.
* A task that waits for cluster capacity holds back the tasks behind it in the
  same queue that compete for the same GPU type (no backfill that would starve
  a large task); likewise a task that waits for its namespace's quota holds back
  the later tasks of that namespace that need the same quota resource.  A task
  held by its *own tenant's* limits never blocks other tenants.
  A task no node could ever fit does not block anyone and says so.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubetask.core.scheduling import (
    MILLI,
    Demand,
    NodeInfo,
    format_count,
    format_cpu,
    format_memory,
    selector_matches,
    tolerates,
)

DEFAULT_DURATION_SECONDS = 600.0


@dataclass
class QueuedTask:
    namespace: str
    name: str
    tenant: str
    queue: str
    priority: int
    queued_at: datetime
    demand: Demand
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    expected_duration: float = DEFAULT_DURATION_SECONDS
    submitted_at: datetime | None = None
    """Sub-second submission time: orders tasks that entered the queue in the same second."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def fifo_key(self) -> tuple[datetime, datetime, str]:
        return (self.queued_at, self.submitted_at or self.queued_at, self.name)


@dataclass
class RunningTask:
    """An admitted, unfinished execution (it holds quota and, once bound, node capacity)."""

    namespace: str
    name: str
    tenant: str
    queue: str
    demand: Demand
    node_name: str | None = None  # None: its pod is not bound (or not created) yet
    expected_end: datetime | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    execution: int = 0
    in_quota: bool = False
    """Whether the namespace's ResourceQuota, as last seen, already counts this execution's pod.

    The apiserver's quota admission adds a pod to ``status.used`` as it creates it, and only the
    quota controller takes a finished pod out again, moments later.  So the reported usage is
    right for the pods it counts (finished ones included, until the controller catches up) and
    the executions it does not count yet must be added: that sum is what the next pod is
    checked against.
    """


@dataclass
class Quota:
    """One ResourceQuota: hard limits and reported usage, in milli-units."""

    namespace: str
    name: str
    hard: dict[str, int]
    used: dict[str, int]


@dataclass
class TenantLimits:
    max_running: int | None = None
    monthly_gpu_seconds_left: float | None = None  # None: no monthly limit


_NO_LIMITS = TenantLimits()
_NO_HOLDS: Mapping[str, tuple[QueuedTask, int, int]] = {}


@dataclass
class Waiting:
    reason: str  # machine-readable: MaxRunning, Quota, NoCapacity, Blocked, Unsatisfiable, MonthlyHours
    message: str
    position: int | None = None
    estimated_start: datetime | None = None


@dataclass
class Decision:
    admit: list[tuple[str, str]] = field(default_factory=list)  # in admission order
    waiting: dict[tuple[str, str], Waiting] = field(default_factory=dict)
    placement: dict[tuple[str, str], str] = field(default_factory=dict)  # the node each admission was fit on
    shares: dict[str, float] = field(default_factory=dict)  # tenants' dominant shares after the decision


_QUOTA_NAMES = {
    "requests.cpu": "CPU", "cpu": "CPU", "limits.cpu": "CPU limit",
    "requests.memory": "memory", "memory": "memory", "limits.memory": "memory limit",
    "pods": "pod", "count/pods": "pod", "count/jobs.batch": "job count",
}


def _quota_label(key: str, gpu_resource: str) -> str:
    if gpu_resource in key:
        return "GPU"
    return _QUOTA_NAMES.get(key, key)


def _fmt_amount(key: str, amount: int) -> str:
    if "memory" in key:
        return format_memory(amount)
    if "cpu" in key:
        return format_cpu(amount)
    return format_count(amount)


def effective_quota_used(reported: Mapping[str, int], uncounted: Iterable[Demand], *, gpu_resource: str,
                         counted: Iterable[Demand] = (), job_count: int | None = None) -> dict[str, int]:
    """Per resource: what the apiserver will check the next pod against, at most.

    That is the quota's reported usage plus the admitted executions it does not count yet
    (``uncounted``: their pods not created, or created after the report; :attr:`RunningTask.in_quota`).
    A finished pod stays in the reported usage until the quota controller takes it out, so its
    quota is free once the report says so — never earlier, or the next pod would be refused.

    The report can also be short for a moment: the quota controller recounts from its own pod
    cache, which may not show a pod the apiserver has just counted, and corrects itself a moment
    later.  So the report is taken as at least the executions it should count (``counted``).
    ``job_count`` (the Jobs kubetask sees in the namespace) is a floor for ``count/jobs.batch``.
    """
    floor: dict[str, int] = defaultdict(int)
    for demand in counted:
        for key, amount in demand.quota_vector(gpu_resource).items():
            floor[key] += amount
    used: dict[str, int] = defaultdict(int, {key: max(value, floor.get(key, 0)) for key, value in reported.items()})
    for key, amount in floor.items():
        used[key] = max(used[key], amount)
    for demand in uncounted:
        for key, amount in demand.quota_vector(gpu_resource).items():
            used[key] += amount
    if job_count is not None:
        used["count/jobs.batch"] = max(used["count/jobs.batch"], job_count * MILLI)
    return dict(used)


def dominant_share(usage: Mapping[str, int], totals: Mapping[str, int]) -> float:
    """DRF: the tenant's largest share of any cluster resource."""
    share = 0.0
    for key in ("gpus", "cpu", "memory"):
        if totals.get(key, 0) > 0:
            share = max(share, usage.get(key, 0) / totals[key])
    return share


def _node_eligible(node: NodeInfo, demand: Demand, selector: Mapping[str, str],
                   tolerations: Sequence[Mapping[str, Any]], cpu_on_gpu_nodes: bool,
                   gpu_toleration: Mapping[str, Any] | None) -> bool:
    """Whether the pod may land on the node by labels and taints (ignoring free capacity)."""
    if demand.gpus > 0:
        if not node.is_gpu_node:
            return False
        if demand.gpu_type and node.gpu_product != demand.gpu_type:
            return False
    elif node.is_gpu_node and not cpu_on_gpu_nodes:
        return False
    if not selector_matches(node.labels, selector):
        return False
    all_tolerations = list(tolerations)
    if demand.gpus > 0 and gpu_toleration is not None:
        all_tolerations.append(dict(gpu_toleration))
    return tolerates(node.taints, all_tolerations)


def _fits(node: NodeInfo, demand: Demand) -> bool:
    if node.max_tasks is not None and node.tasks >= node.max_tasks:
        return False
    return (node.free("gpus") >= demand.gpus and node.free("cpu") >= demand.cpu
            and node.free("memory") >= demand.memory)


def _place(node: NodeInfo, demand: Demand) -> None:
    node.used["gpus"] = node.used.get("gpus", 0) + demand.gpus
    node.used["cpu"] = node.used.get("cpu", 0) + demand.cpu
    node.used["memory"] = node.used.get("memory", 0) + demand.memory
    node.tasks += 1


def _best_fit(nodes: Sequence[NodeInfo], demand: Demand, selector: Mapping[str, str],
              tolerations: Sequence[Mapping[str, Any]], cpu_on_gpu_nodes: bool,
              gpu_toleration: Mapping[str, Any] | None) -> NodeInfo | None:
    best: NodeInfo | None = None
    for node in nodes:
        if not node.takes_work or not _node_eligible(node, demand, selector, tolerations, cpu_on_gpu_nodes,
                                                     gpu_toleration):
            continue
        if not _fits(node, demand):
            continue
        if best is None or (node.free("gpus"), node.free("cpu"), node.name) < (
                best.free("gpus"), best.free("cpu"), best.name):
            best = node
    return best


def _capacity_message(nodes: Sequence[NodeInfo], task: QueuedTask, cpu_on_gpu_nodes: bool,
                      gpu_toleration: Mapping[str, Any] | None) -> tuple[str, str]:
    """Why no node takes the task: (reason, message); reason ``Unsatisfiable`` if none ever could."""
    demand = task.demand
    gpu_word = demand.gpu_type or "GPU"
    eligible = [n for n in nodes if _node_eligible(n, demand, task.node_selector, task.tolerations,
                                                   cpu_on_gpu_nodes, gpu_toleration)]
    if not eligible:
        if demand.gpus > 0:
            what = f"{demand.gpu_type} GPUs" if demand.gpu_type else "GPUs"
            return "Unsatisfiable", f"no node offers {what}" + (
                " that matches the task's nodeSelector/tolerations" if task.node_selector or task.tolerations
                else "")
        return "Unsatisfiable", "no node matches the task's nodeSelector/tolerations"
    able = [n for n in eligible if n.allocatable.get("gpus", 0) >= demand.gpus
            and n.allocatable.get("cpu", 0) >= demand.cpu and n.allocatable.get("memory", 0) >= demand.memory]
    if not able:
        if demand.gpus > 0 and max(n.allocatable.get("gpus", 0) for n in eligible) < demand.gpus:
            largest = max(n.allocatable.get("gpus", 0) for n in eligible) // MILLI
            return "Unsatisfiable", (f"no node can ever fit this task: it needs {demand.gpu_count} {gpu_word}s, "
                                     f"the largest node has {largest}")
        return "Unsatisfiable", (f"no node can ever fit this task: it needs {format_cpu(demand.cpu)} CPU and "
                                 f"{format_memory(demand.memory)} memory")
    open_nodes = [n for n in able if n.takes_work]
    if not open_nodes:
        return "NoCapacity", (f"no schedulable node with {gpu_word}s: all are paused, cordoned or draining"
                              if demand.gpus > 0 else "no schedulable node: all are paused, cordoned or draining")
    with_room = [n for n in open_nodes if n.max_tasks is None or n.tasks < n.max_tasks]
    if not with_room:
        return "NoCapacity", "every eligible node is at its kubetask task capacity"
    if demand.gpus > 0:
        largest = max(n.free("gpus") for n in with_room)
        if largest < demand.gpus:
            head = f"no free {demand.gpu_type}" if demand.gpu_type else "no free GPU"
            return "NoCapacity", (f"{head}: need {demand.gpu_count}, largest free on a node is "
                                  f"{max(0, largest) // MILLI}")
    return "NoCapacity", (f"no node has {format_cpu(demand.cpu)} CPU and {format_memory(demand.memory)} "
                          f"memory free")


def _pool_kind(demand: Demand) -> str:
    """The kind of :func:`_pool` alone (the estimates replay a queue per kind, any GPU type)."""
    return "gpu" if demand.gpus > 0 else "cpu"


def _pool(task: QueuedTask | RunningTask) -> tuple[str, str]:
    kind = _pool_kind(task.demand)
    return kind, (task.demand.gpu_type or "*") if kind == "gpu" else "*"


def _pools_overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or "*" in (a[1], b[1]))


def quota_frees_room(old: Quota | None, new: Quota | None) -> bool:
    """Whether a quota's change may let a waiting task in: it came or went, its limits moved, or a use fell.

    A use that only grew (a pod the operator admitted, now counted) admits nobody new.
    """
    if old is None or new is None:
        return True
    return old.hard != new.hard or any(new.used.get(key, 0) < value for key, value in old.used.items())


def node_frees_room(old: NodeInfo | None, new: NodeInfo | None) -> bool:
    """Whether a node's change may let a waiting task in: anything but more use of an otherwise unchanged node."""
    if old is None or new is None:
        return True
    if new.tasks < old.tasks or any(new.used.get(key, 0) < value for key, value in old.used.items()):
        return True
    return dataclasses.replace(new, used=old.used, tasks=old.tasks) != old


def decide(
    queued: Sequence[QueuedTask],
    running: Sequence[RunningTask],
    nodes: Sequence[NodeInfo],
    quotas: Sequence[Quota],
    tenants: Mapping[str, TenantLimits],
    *,
    now: datetime,
    gpu_resource: str = "nvidia.com/gpu",
    gpu_toleration: Mapping[str, Any] | None = None,
    cpu_tasks_on_gpu_nodes: bool = True,
    job_counts: Mapping[str, int] | None = None,
    max_admissions: int | None = None,
    quota_unreported: Mapping[str, Sequence[Demand]] | None = None,
) -> Decision:
    """Decide which of ``queued`` start now; explain, position and estimate the rest.

    ``nodes`` carry the usage of the pods already bound to them; ``running``
    entries with ``node_name=None`` are admitted but unbound and are placed
    here first.  ``quotas[].used`` is the reported usage; the admitted demand it
    does not count yet is added by :func:`effective_quota_used`, and so is
    ``quota_unreported`` (per namespace: finished executions the report never counted).
    """
    decision = Decision()
    nodes = [dataclasses.replace(n, used=dict(n.used)) for n in nodes]
    by_name = {n.name: n for n in nodes}
    gpu_tol = gpu_toleration if gpu_toleration is not None else {
        "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

    # Reserve node capacity for admitted-but-unbound pods (largest first, best fit).
    for unbound in sorted((r for r in running if r.node_name is None or r.node_name not in by_name),
                          key=lambda r: (-r.demand.gpus, -r.demand.cpu, r.name)):
        spot = _best_fit(nodes, unbound.demand, unbound.node_selector, unbound.tolerations,
                         cpu_tasks_on_gpu_nodes, gpu_tol)
        if spot is not None:
            _place(spot, unbound.demand)

    # Quota headroom per namespace.
    uncounted_by_ns: dict[str, list[Demand]] = defaultdict(list)
    counted_by_ns: dict[str, list[Demand]] = defaultdict(list)
    for held in running:
        (counted_by_ns if held.in_quota else uncounted_by_ns)[held.namespace].append(held.demand)
    for namespace, demands in (quota_unreported or {}).items():
        uncounted_by_ns[namespace].extend(demands)
    quota_used: dict[tuple[str, str], dict[str, int]] = {}
    quotas_by_ns: dict[str, list[Quota]] = defaultdict(list)
    for quota in quotas:
        quotas_by_ns[quota.namespace].append(quota)
        quota_used[(quota.namespace, quota.name)] = effective_quota_used(
            quota.used, uncounted_by_ns[quota.namespace], counted=counted_by_ns[quota.namespace],
            gpu_resource=gpu_resource,
            job_count=(job_counts or {}).get(quota.namespace))

    # Tenants' usage: running counts and DRF shares.
    totals = {"gpus": 0, "cpu": 0, "memory": 0}
    for node in nodes:
        if node.takes_work:
            for key in totals:
                totals[key] += node.allocatable.get(key, 0)
    running_count: dict[str, int] = defaultdict(int)
    usage: dict[str, dict[str, int]] = defaultdict(lambda: {"gpus": 0, "cpu": 0, "memory": 0})
    gpu_seconds_left = {t: lim.monthly_gpu_seconds_left for t, lim in tenants.items()}
    for held in running:
        running_count[held.tenant] += 1
        usage[held.tenant]["gpus"] += held.demand.gpus
        usage[held.tenant]["cpu"] += held.demand.cpu
        usage[held.tenant]["memory"] += held.demand.memory

    # Priority levels, high to low; within a level, DRF across tenants, FIFO within a tenant.
    levels: dict[int, dict[str, list[QueuedTask]]] = defaultdict(lambda: defaultdict(list))
    for item in queued:
        levels[item.priority][item.tenant].append(item)
    considered: list[QueuedTask] = []
    blocked_pools: list[tuple[str, tuple[str, str], QueuedTask]] = []  # (queue, pool, blocker)
    quota_holds: dict[str, dict[str, tuple[QueuedTask, int, int]]] = defaultdict(dict)  # ns -> key -> blocker
    hold_messages: dict[tuple[str, str], str] = {}
    vectors: dict[Demand, dict[str, int]] = {}  # a queue of thousands has a handful of distinct demands
    standing: dict[str, tuple[float, int]] = {}
    """Each tenant's (dominant share, running tasks): they change only when that tenant has a task admitted."""
    admissions = 0

    def admit_or_explain(task: QueuedTask) -> str:
        """Returns "admitted", "tenant" (held by its tenant's limit) or "cluster"."""
        nonlocal admissions
        limits = tenants.get(task.tenant) or _NO_LIMITS
        if max_admissions is not None and admissions >= max_admissions:
            decision.waiting[task.key] = Waiting("Throttled", "waiting for the next admission round")
            return "cluster"
        if limits.max_running is not None and running_count[task.tenant] >= limits.max_running:
            decision.waiting[task.key] = Waiting(
                "MaxRunning", f"{task.tenant} has {running_count[task.tenant]} of {limits.max_running} "
                              f"running tasks")
            return "tenant"
        left = gpu_seconds_left.get(task.tenant)
        if task.demand.gpus > 0 and left is not None and left <= 0:
            decision.waiting[task.key] = Waiting("MonthlyHours", f"{task.tenant} has used up this month's "
                                                                 f"GPU-hours")
            return "tenant"
        vector = vectors.get(task.demand)
        if vector is None:
            vector = vectors[task.demand] = task.demand.quota_vector(gpu_resource)
        for key, (blocker, hard, need_first) in (quota_holds.get(task.namespace) or _NO_HOLDS).items():
            if vector.get(key):
                # Everything behind one blocker reads the same: no task that needs ``key`` is admitted in
                # this namespace once it is held, so the figures cannot move during the pass.
                message = hold_messages.get((task.namespace, key))
                if message is None:
                    label = _quota_label(key, gpu_resource)
                    have = max(used.get(key, 0) for used in
                               (quota_used[(q.namespace, q.name)] for q in quotas_by_ns.get(task.namespace, [])))
                    message = hold_messages[(task.namespace, key)] = (
                        f"{label} quota {_fmt_amount(key, have)}/{_fmt_amount(key, hard)} in use; waiting "
                        f"behind {blocker.name}, which needs {_fmt_amount(key, need_first)} first")
                decision.waiting[task.key] = Waiting("Quota", message)
                return "tenant"
        for quota in quotas_by_ns.get(task.namespace, []):
            used = quota_used[(quota.namespace, quota.name)]
            for key, hard in quota.hard.items():
                need = vector.get(key)
                if need is None:
                    continue
                have = used.get(key, 0)
                if have + need > hard:
                    label = _quota_label(key, gpu_resource)
                    if need > hard:
                        message = (f"task needs {_fmt_amount(key, need)} {label} but the {label} quota of "
                                   f"{task.namespace} is {_fmt_amount(key, hard)}")
                        decision.waiting[task.key] = Waiting("Unsatisfiable", message)
                        return "tenant"
                    message = f"{label} quota {_fmt_amount(key, have)}/{_fmt_amount(key, hard)} in use"
                    if need != MILLI or label in ("CPU", "memory"):
                        message += f", task needs {_fmt_amount(key, need)}"
                    if key == "count/jobs.batch":
                        message += " (finished Jobs count too: delete old tasks)"
                    decision.waiting[task.key] = Waiting("Quota", message)
                    # Later tasks of the namespace that need this resource wait behind it (no backfill
                    # that would starve a large task, as for cluster capacity below).
                    quota_holds[task.namespace].setdefault(key, (task, hard, need))
                    return "tenant"
        pool = _pool(task)
        for queue, blocked, blocker in blocked_pools:
            if queue == task.queue and _pools_overlap(blocked, pool):
                reason, message = _capacity_message(nodes, task, cpu_tasks_on_gpu_nodes, gpu_tol)
                if reason == "Unsatisfiable":
                    decision.waiting[task.key] = Waiting(reason, message)
                    return "tenant"
                fits_now = _best_fit(nodes, task.demand, task.node_selector, task.tolerations,
                                     cpu_tasks_on_gpu_nodes, gpu_tol) is not None
                if not fits_now:
                    message = f"{message} (behind {blocker.name})"
                else:
                    wants = (f"{blocker.demand.gpu_count} {blocker.demand.gpu_type or 'GPU'}(s)"
                             if blocker.demand.gpus else f"{format_cpu(blocker.demand.cpu)} CPU")
                    message = (f"waiting behind {blocker.name} (priority {blocker.priority}), "
                               f"which needs {wants} first")
                decision.waiting[task.key] = Waiting("Blocked", message)
                return "cluster"
        node = _best_fit(nodes, task.demand, task.node_selector, task.tolerations, cpu_tasks_on_gpu_nodes,
                         gpu_tol)
        if node is None:
            reason, message = _capacity_message(nodes, task, cpu_tasks_on_gpu_nodes, gpu_tol)
            decision.waiting[task.key] = Waiting(reason, message)
            if reason != "Unsatisfiable":
                blocked_pools.append((task.queue, pool, task))
                return "cluster"
            return "tenant"
        # Admit: charge node, quota, tenant.
        _place(node, task.demand)
        for quota in quotas_by_ns.get(task.namespace, []):
            used = quota_used[(quota.namespace, quota.name)]
            for key, amount in vector.items():
                used[key] = used.get(key, 0) + amount
        running_count[task.tenant] += 1
        for key in ("gpus", "cpu", "memory"):
            usage[task.tenant][key] += getattr(task.demand, key)
        standing.pop(task.tenant, None)
        if left is not None and task.demand.gpus > 0:
            gpu_seconds_left[task.tenant] = left  # charged when it runs; only "used up" blocks
        decision.admit.append(task.key)
        decision.placement[task.key] = node.name
        admissions += 1
        return "admitted"

    for priority in sorted(levels, reverse=True):
        per_tenant = {tenant: sorted(tasks, key=lambda t: t.fifo_key)
                      for tenant, tasks in levels[priority].items()}
        cursor = dict.fromkeys(per_tenant, 0)

        def turn(t: str, per_tenant: dict[str, list[QueuedTask]] = per_tenant,
                 cursor: dict[str, int] = cursor) -> tuple[Any, ...]:
            figures = standing.get(t)
            if figures is None:
                figures = standing[t] = (dominant_share(usage[t], totals), running_count[t])
            return figures[0], figures[1], per_tenant[t][cursor[t]].queued_at, t

        # Whose turn it is: a heap, since one turn changes only that tenant's usage and cursor (the
        # others' keys stand), instead of recomputing every tenant's share for every task considered.
        turns = [turn(t) for t in per_tenant]
        heapq.heapify(turns)
        while turns:
            tenant = heapq.heappop(turns)[-1]
            task = per_tenant[tenant][cursor[tenant]]
            considered.append(task)
            outcome = admit_or_explain(task)
            cursor[tenant] += 1
            if outcome == "tenant" and decision.waiting[task.key].reason == "MaxRunning":
                # The rest of this tenant's tasks at this level are held by the same limit.
                for rest in per_tenant[tenant][cursor[tenant]:]:
                    considered.append(rest)
                    decision.waiting[rest.key] = Waiting("MaxRunning", decision.waiting[task.key].message)
                cursor[tenant] = len(per_tenant[tenant])
            if cursor[tenant] < len(per_tenant[tenant]):
                heapq.heappush(turns, turn(tenant))

    decision.shares = {t: dominant_share(u, totals) for t, u in usage.items()}
    _positions_and_estimates(decision, considered, running, now)
    return decision


def _positions_and_estimates(decision: Decision, considered: Sequence[QueuedTask],
                             running: Sequence[RunningTask], now: datetime) -> None:
    """Queue positions (1-based, per queue, in decision order) and estimated start times.

    The estimate replays the queue against the expected ends of the running
    tasks in the same resource pool: each waiting task takes the earliest
    slot to free up and holds it for its own expected duration.
    """
    slots: dict[str, list[datetime]] = defaultdict(list)
    for held in running:
        end = held.expected_end or now + timedelta(seconds=DEFAULT_DURATION_SECONDS)
        slots[_pool_kind(held.demand)].append(max(end, now))
    for heap in slots.values():
        heapq.heapify(heap)
    positions: dict[str, int] = defaultdict(int)
    spans: dict[float, timedelta] = {}  # a queue of thousands has a handful of distinct expected durations
    for task in considered:
        waiting = decision.waiting.get(task.key)
        if waiting is None:
            continue
        positions[task.queue] += 1
        waiting.position = positions[task.queue]
        if waiting.reason == "Unsatisfiable":
            continue
        free_at = slots.get(_pool_kind(task.demand))
        if not free_at:
            continue
        start = max(now, free_at[0])
        waiting.estimated_start = start
        span = spans.get(task.expected_duration)
        if span is None:
            span = spans[task.expected_duration] = timedelta(seconds=task.expected_duration)
        heapq.heapreplace(free_at, start + span)  # the earliest slot, taken until this task's expected end
