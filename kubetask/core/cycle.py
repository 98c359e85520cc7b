"""The queue cycle (pure): one scheduling pass, from a snapshot of the cluster to the plan of what to do.

Kueue splits its scheduler the same way (``pkg/cache`` snapshot → ``pkg/scheduler``
nominate/admit → apply): the operator's scheduler (``kubetask.operator.scheduler``) takes a
:class:`Snapshot` of what changed, calls :func:`plan_pass`, and applies the :class:`PassPlan`
(creates Jobs, patches statuses, records Events).  Nothing here does I/O, so every rule of
the cycle is tested on plain data (``tests/unit/core/test_core_cycle.py``).

One pass, in order:

1. **Reconcile what changed.**  Only the Tasks in ``snapshot.changed`` (their Task, Job or
   Pods changed, a dependency's phase moved, a timer fired) go through
   :func:`kubetask.core.status.reconcile_task`; every other Task keeps the queue entry it had
   (``snapshot.queued`` / ``snapshot.running``).  Finished Tasks with nothing left to do
   (:func:`settled`) are skipped.
2. **Nominate.**  Each reconciled Task becomes a queue entry: waiting to be admitted
   (:class:`~kubetask.core.queue.QueuedTask`), holding quota and a node
   (:class:`~kubetask.core.queue.RunningTask`), or neither.  A Task whose next Job already
   exists (a crash between the create and the status patch) adopts it instead.
3. **Decide.**  :func:`kubetask.core.queue.decide` picks the admissions (priority, DRF,
   limits, quota headroom, node fit) and explains the rest, when something may change the
   outcome: an entry came, went or changed, room may have been freed (``Snapshot.decide``),
   or an explanation is due.  Otherwise the last decision stands.
4. **Plan.**  Each admission gets its workload (:func:`kubetask.core.jobs.build_workload`) and
   its Running status; each waiting Task its reason, position and estimate, throttled: the
   first reason is written once the task has waited a moment (and recorded as an Event),
   while a changed reason, a moved position, a new count in the message or a new estimate
   is informational and shares a budget of patches per second, so a long queue is not
   rewritten on every pass.

Stored objects are shared with the caches: this module copies what it changes and never
mutates an input.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubetask.core import queue as policy
from kubetask.core.jobs import BuildError, Workload, build_workload, job_name, task_demand
from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.objects import Key, Obj
from kubetask.core.phases import QUEUED, RUNNING, SUCCEEDED
from kubetask.core.scheduling import Demand, NodeInfo, QuantityError
from kubetask.core.status import (
    COND_ADMITTED,
    EventSpec,
    Observation,
    Plan,
    admit,
    current_execution,
    fail,
    get_condition,
    next_execution_id,
    observe_execution,
    reconcile_task,
    set_waiting,
    status_patch,
)
from kubetask.core.templates import TemplateError, find_template
from kubetask.core.times import parse_time
from kubetask.core.tokens import task_token
from kubetask.settings import GpuSettings

ACCOUNTED_FIELD = "accountedGpuSeconds"
"""In a Task's status: how much of its ``status.gpuSeconds`` has been added to its tenant's month.  Status,
not an annotation: tenants may edit their Tasks' metadata but not their status, so nobody can mark their
own GPU time as paid for; and a ``/status`` patch passes no admission webhook."""


@dataclass(frozen=True)
class CycleSettings:
    """The knobs of the cycle (the operator fills them from its settings)."""

    gpu: GpuSettings = field(default_factory=GpuSettings)
    default_queue: str = "default"
    callback_secret: str = ""
    callback_url: str | None = None
    explain_after: float = 2.0
    """Seconds a task waits in the queue before its reason is written (most bursts are admitted sooner)."""
    reason_min_interval: float = 3.0
    """Seconds between two writes of a waiting task's changed reason."""
    info_min_interval: float = 10.0
    """Seconds between two informational writes (position, message counts) of one waiting task."""
    estimate_min_interval: float = 30.0
    """Seconds between two writes of one waiting task's estimated start."""
    estimate_tolerance: float = 30.0
    """An estimate that moved by less than this many seconds is not news."""
    create_retries: int = 3
    """Retries of a Job create the apiserver refuses as invalid (422/400) before the Task fails as JobRejected."""
    create_backoff_seconds: float = 1.0
    """The wait after a Job create failed the first time; it doubles with every further failure."""
    create_backoff_max_seconds: float = 30.0
    """The longest wait between two Job creates of one Task (transient errors are retried for ever)."""
    quota_lag_retry_seconds: tuple[float, ...] = (0.05, 0.1)
    """The waits before a Job or pod create the quota admission refused is sent again at once, within the same
    admission (see ``quota_refusal_retry_seconds`` for why such a refusal is often only the admission's lag);
    only a refusal that outlasts them counts as a failed create."""
    quota_refusal_retry_seconds: float = 0.2
    """The wait after the apiserver's quota admission refused a Task's first create (later refusals wait as any
    failure does).  Short, because the operator admits only what the newest quota report has room for, and the
    admission checks its own cached copy of the quota: that copy can lag a moment behind the quota controller's
    recount, and the admission refuses on it without trying the write that would have shown it stale (seen on
    kube-apiserver 1.36: refused at "used 20" while the stored quota said 16).  The create has been sent again
    after each of ``quota_lag_retry_seconds`` before it failed, so this wait comes after those.  A refusal after it
    means the quota is really full (or limits something kubetask does not count), so the usual backoff
    follows."""
    unreported_grace_seconds: float = 10.0
    """How long a finished execution that no quota report has counted yet is added to the reports.  The quota
    controller recounts as soon as it sees a pod end, but writes only a usage that changed: a report written
    between the quota admission's count and the pod's store (a race of a loaded apiserver) lacks the pod, and
    is never rewritten once the pod ended, so no report newer than the pod comes.  After the grace the report
    is believed (at worst one pod is refused and retried); without it, the namespace's queue waited forever."""

    @property
    def gpu_toleration(self) -> dict[str, str]:
        return {"key": self.gpu.taint_key, "operator": "Exists", "effect": "NoSchedule"}


NO_TENANT = "NoTenant"
"""The reason on a held Task whose namespace belongs to no Tenant."""


@dataclass
class TaskView:
    """One changed Task, with what the cluster shows of its executions."""

    task: Obj
    """The Task (with the status its in-flight patches will have written)."""
    tenant: str
    """Who it counts against (its namespace's tenant, else its user, else its namespace)."""
    workloads: Mapping[str, Obj] = field(default_factory=dict)
    """Its Jobs (``runtime: pod``: its Pods) by name."""
    pods: Mapping[int, Sequence[Obj]] = field(default_factory=dict)
    """Its Pods by execution id."""
    dependencies: Mapping[str, str | None] = field(default_factory=dict)
    """Each ``dependsOn`` name → that Task's phase (``"Pending"`` before it has one; ``None``: no such Task)."""
    has_tenant: bool = True
    """Its namespace belongs to a Tenant; if not (it slipped past the webhook), it is held, never run."""

    @property
    def key(self) -> Key:
        meta = self.task.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name")))


@dataclass(frozen=True)
class Unreported:
    """A finished execution the namespace's quota report has not counted yet.

    A short task can end before the quota report that counts its pod arrives; the apiserver
    counted it all the same (and keeps counting it until the quota controller takes it out),
    so its demand is added to the report until a report as new as its pod is seen.
    """

    namespace: str
    demand: Demand
    pod_version: int
    since: float = 0.0
    """When (monotonic seconds) it ended unreported: it is added to the reports for
    :attr:`CycleSettings.unreported_grace_seconds` at most."""


REJECTED_STATUSES = (400, 422)
"""The apiserver's answers to a create that no retry can change: the object itself is invalid (BadRequest,
Invalid).  Everything else (409 conflicts, 403 quota, 429, 5xx, timeouts, no answer) may pass later."""


@dataclass(frozen=True)
class CreateBackoff:
    """A Task whose Job create failed: how often in a row, the last error, and when to try again."""

    failures: int
    """Consecutive failed creates."""
    rejections: int
    """Of those, the ones the apiserver refused as invalid (a transient failure in between resets none)."""
    retry_at: datetime
    """Not admitted again before this."""
    message: str
    """The last error, as the apiserver worded it."""
    give_up: bool = False
    """Refused as invalid once more than ``create_retries`` allow: the next pass fails the Task (JobRejected)."""

    def event_message(self, workload: str) -> str:
        """``workload``: what was to be created, as ``"<kind> <name>"`` (``Job t-1``, ``Pod t-1``)."""
        if self.give_up:
            return f"{workload} refused by the apiserver {self.rejections} times; giving up: {self.message}"
        return f"Creating {workload} failed (attempt {self.failures}); retrying at " \
               f"{self.retry_at.strftime('%H:%M:%S.%f')[:-3]}: {self.message}"


def after_create_failure(previous: CreateBackoff | None, *, status: int | None, message: str, now: datetime,
                         settings: CycleSettings) -> CreateBackoff:
    """What a failed Job create means: retry after a doubling, capped wait, or (refused as invalid once
    more than ``settings.create_retries`` allow) give up.  ``status`` is the apiserver's HTTP status
    (``None``: no answer).  With the defaults a refused Job is created 4 times, 1 s, 2 s and 4 s apart; a
    create the quota admission refused is tried again after 0.2 s, then 1 s, 2 s, 4 s and so on."""
    failures = (previous.failures if previous else 0) + 1
    rejected = status in REJECTED_STATUSES
    rejections = (previous.rejections if previous else 0) + (1 if rejected else 0)
    if rejected and rejections > settings.create_retries:
        return CreateBackoff(failures, rejections, now, message, give_up=True)
    doublings = failures - 1
    if is_quota_refusal(status, message):
        doublings -= 1  # one quick retry first, then the usual schedule
    wait = settings.quota_refusal_retry_seconds if doublings < 0 else \
        min(settings.create_backoff_max_seconds, settings.create_backoff_seconds * 2 ** doublings)
    return CreateBackoff(failures, rejections, now + timedelta(seconds=wait), message)


def is_quota_refusal(status: int | None, message: str) -> bool:
    """Whether the apiserver's ResourceQuota admission refused the create (403 "exceeded quota")."""
    return status == 403 and "exceeded quota" in message


@dataclass
class Snapshot:
    """What one pass looks at."""

    changed: Sequence[TaskView]
    """The Tasks to reconcile."""
    tasks: Mapping[Key, Obj]
    """Every Task by key (read for the admitted and waiting ones that did not change)."""
    queued: Mapping[Key, policy.QueuedTask]
    """The queue entries of the previous passes."""
    running: Mapping[Key, policy.RunningTask]
    nodes: Sequence[NodeInfo] = ()
    quotas: Sequence[policy.Quota] = ()
    tenants: Mapping[str, policy.TenantLimits] = field(default_factory=dict)
    job_counts: Mapping[str, int] = field(default_factory=dict)
    templates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """TaskTemplate specs by name."""
    durations: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    """Per template: (finished executions, their total run time), for estimates."""
    pod_versions: Mapping[tuple[str, str, int], int] = field(default_factory=dict)
    """Per execution ``(namespace, task, id)``: the resourceVersion its pod was first seen with."""
    quota_versions: Mapping[str, int] = field(default_factory=dict)
    """Per namespace: the resourceVersion of its ResourceQuota as seen (the oldest, if several)."""
    unreported: Mapping[tuple[str, str, int], Unreported] = field(default_factory=dict)
    """Finished executions whose pods the quota reports never counted yet (see :class:`Unreported`)."""
    informed: Mapping[Key, tuple[float, float]] = field(default_factory=dict)
    """Per waiting Task: when (monotonic seconds) its explanation and its estimate were last written."""
    unwritten: Mapping[Key, Mapping[str, Any]] = field(default_factory=dict)
    """Fresh Tasks waiting in the queue whose first status (Queued) is held back: it is written with their
    admission or their reason for waiting, whichever comes first (one write instead of two)."""
    info_budget: int = 1_000_000
    """How many informational waiting-status writes this pass may plan."""
    mono: float = 0.0
    """Monotonic "now", for the write throttles."""
    create_backoff: Mapping[Key, CreateBackoff] = field(default_factory=dict)
    """Tasks whose Job create failed lately (:func:`after_create_failure`): held back until ``retry_at``."""
    decide: bool = True
    """Decide the queue even if no entry moved: room may have been freed (capacity, limits), or an explanation is
    due.  When it is false, the queue is decided only if this pass changes an entry."""


@dataclass
class TaskAction:
    """What to do about one Task."""

    key: Key
    task: Obj
    """The Task the plan was computed from."""
    plan: Plan
    workload: Workload | None = None
    """Create this (an admission); the pass waits for these creates, in priority order."""
    priority: int = 0
    patch: dict[str, Any] = field(default_factory=dict)
    """The status merge patch, once :meth:`PassPlan.finish` computed it."""

    @property
    def has_work(self) -> bool:
        plan = self.plan
        return bool(self.patch or self.workload is not None or plan.events or plan.delete_workload
                    or plan.delete_task or plan.ensure_workload)


@dataclass
class PassPlan:
    """The outcome of :func:`plan_pass`."""

    actions: dict[Key, TaskAction] = field(default_factory=dict)
    admitted: list[Key] = field(default_factory=list)
    """The admissions, in order."""
    admitted_from: dict[Key, policy.QueuedTask] = field(default_factory=dict)
    """The queue entry each admission left (restore it if the Job could not be created)."""
    queued: dict[Key, policy.QueuedTask | None] = field(default_factory=dict)
    """Changes to the queue entries: a new entry, or ``None`` to drop one."""
    running: dict[Key, policy.RunningTask | None] = field(default_factory=dict)
    unreported: dict[tuple[str, str, int], Unreported | None] = field(default_factory=dict)
    """Changes to the finished executions the quota reports do not count yet (``None``: counted now)."""
    quota_doubts: set[str] = field(default_factory=set)
    """Namespaces where a task waits on the quota while demand is added on top of a report older than its pods.
    The quota admission counts a pod before the pod is stored, and nothing rewrites the quota while the pod
    runs, so such a report usually counts the pod already: a fresh read of the quota settles it (the caller's
    ``Snapshot.quota_versions`` is then at least the read's revision)."""
    reports_believed: dict[str, int] = field(default_factory=dict)
    """Finished executions no longer added to an older quota report, by why: ``too_small`` (it cannot hold
    them) or ``grace`` (:attr:`CycleSettings.unreported_grace_seconds` passed)."""
    informed: dict[Key, tuple[float, float]] = field(default_factory=dict)
    """New write stamps of waiting Tasks (the caller keeps them for the next snapshot)."""
    forget: list[Key] = field(default_factory=list)
    """Tasks no longer waiting: drop their write stamps (and any held first status)."""
    unwritten: dict[Key, dict[str, Any] | None] = field(default_factory=dict)
    """Changes to the held first statuses (``Snapshot.unwritten``): one to keep, or ``None`` once written."""
    info_spent: int = 0
    info_deferred: bool = False
    """Some informational update was held back (throttle or budget): look again later."""
    accounting: list[Key] = field(default_factory=list)
    """Tasks with finished GPU time not yet added to their tenant's month."""
    durations: list[tuple[str, float]] = field(default_factory=list)
    """(template, seconds) of executions that succeeded in this pass."""
    requeue: dict[Key, datetime] = field(default_factory=dict)
    """When to reconcile a Task again although nothing changed (schedules, retries, TTLs)."""
    admission_waits: list[float] = field(default_factory=list)
    """Seconds from Queued to admitted, per admission."""
    queue_depths: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[Key, str]] = field(default_factory=list)
    """Tasks the core could not digest (failed as InvalidSpec), with the error, for the log."""
    backoff_done: list[Key] = field(default_factory=list)
    """Tasks whose create backoff is over (failed as JobRejected, or no longer waiting to be created)."""


# ---------------------------------------------------------------------- small rules


def accounted(task: Mapping[str, Any]) -> float:
    """The GPU-seconds of the Task already added to its tenant's usage."""
    raw = (task.get("status") or {}).get(ACCOUNTED_FIELD)
    try:
        return float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def needs_accounting(task: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> bool:
    gpu_seconds = float(((status if status is not None else task.get("status")) or {}).get("gpuSeconds") or 0)
    return gpu_seconds > accounted(task) + 1e-6


def settled(task: Mapping[str, Any]) -> bool:
    """A finished Task with nothing left to do (no cancel/rerun/TTL/accounting pending): passes skip it."""
    status = task.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed", "Cancelled"):
        return False
    spec = task.get("spec") or {}
    if spec.get("ttlSecondsAfterFinished") is not None:
        return False
    if spec.get("cancel") and status.get("phase") != "Cancelled" and not any(
            c.get("type") == "CancelIgnored" for c in status.get("conditions") or []):
        return False
    rerun = ((task.get("metadata") or {}).get("annotations") or {}).get("kubetask.io/rerun")
    if rerun and rerun != status.get("handledRerun"):
        return False
    if status.get("observedGeneration") != (task.get("metadata") or {}).get("generation"):
        return False
    return not needs_accounting(task)


def owned_by(obj: Mapping[str, Any], task: Mapping[str, Any]) -> bool:
    """Whether a Job/Pod belongs to this incarnation of the Task (an object without owners is trusted)."""
    uid = (task.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    if not refs or uid is None:
        return True
    return any(ref.get("uid") == uid for ref in refs)


def template_spec(task: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The spec of the TaskTemplate the Task names (or that lists its name as an alias)."""
    template = (task.get("spec") or {}).get("template") or {}
    if not template.get("name"):
        return None
    found = find_template(templates, str(template["name"]))
    return found[1] if found else None


def expected_duration(task: Mapping[str, Any], durations: Mapping[str, tuple[int, float]]) -> float:
    """How long an execution will probably run: its template's mean so far, else its timeout, else 10 min."""
    spec = task.get("spec") or {}
    template = (spec.get("template") or {}).get("name")
    if template and template in durations:
        count, total = durations[template]
        return total / max(1, count)
    if spec.get("timeoutSeconds"):
        return float(spec["timeoutSeconds"])
    return policy.DEFAULT_DURATION_SECONDS


def observe(view: TaskView, execution: Mapping[str, Any]) -> Observation:
    """What the cluster shows of one execution of the Task: its Job (or bare Pod) and its Pods."""
    task = view.task
    name = str(task["metadata"]["name"])
    exec_id = int(execution.get("id") or 0)
    workload_name = str(execution.get("jobName") or job_name(name, exec_id))
    pods = list(view.pods.get(exec_id, ()))
    workload = view.workloads.get(workload_name)
    if workload is not None and not owned_by(workload, task):
        workload = None
    if ((task.get("spec") or {}).get("runtime") or "job") == "pod":
        if workload is not None and not any(p is workload for p in pods):
            pods.append(workload)
        return observe_execution(None, pods)
    return observe_execution(workload, pods)


def _node_of(pods: Sequence[Mapping[str, Any]]) -> str | None:
    node = None
    for pod in pods:
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            node = (pod.get("spec") or {}).get("nodeName") or node
    return node


# ---------------------------------------------------------------------- the pass


def plan_pass(snapshot: Snapshot, now: datetime, settings: CycleSettings) -> PassPlan:
    """One scheduling pass: reconcile the changed Tasks, decide the queue, plan the writes."""
    out = PassPlan()
    queued = dict(snapshot.queued)
    running = dict(snapshot.running)
    statuses: dict[Key, dict[str, Any]] = {}  # the planned status of every reconciled Task

    for view in snapshot.changed:
        _reconcile(view, snapshot, now, settings, out, statuses)
    for key, waiting in out.queued.items():
        _put(queued, key, waiting)
    for key, holding in out.running.items():
        _put(running, key, holding)

    unreported = _count_in_quota(running, snapshot, out, settings)
    if queued and (snapshot.decide or _entries_moved(snapshot, out)):
        decision = policy.decide(
            list(queued.values()), list(running.values()), snapshot.nodes, snapshot.quotas, snapshot.tenants,
            now=now, gpu_resource=settings.gpu.resource_name, gpu_toleration=settings.gpu_toleration,
            cpu_tasks_on_gpu_nodes=settings.gpu.cpu_tasks_on_gpu_nodes, job_counts=snapshot.job_counts,
            quota_unreported=unreported)
        for key in decision.admit:
            _admit(key, queued[key], decision, snapshot, now, settings, out, statuses)
        for key, why in decision.waiting.items():
            _explain(key, why, snapshot, now, settings, out, statuses, snapshot.info_budget - out.info_spent)
            _hold_first_write(key, out)
        held = {key[0] for key, why in decision.waiting.items() if why.reason == "Quota"}
        if held:
            added = {ns for ns, demands in unreported.items() if demands}
            added.update(entry.namespace for entry in running.values() if not entry.in_quota)
            out.quota_doubts = held & added
        depths: dict[str, int] = defaultdict(int)
        for key in decision.waiting:
            depths[queued[key].queue] += 1
        out.queue_depths = dict(depths)
    else:  # the queue stands as the last decision left it: its fresh tasks still wait to be written
        for key, waiting in out.queued.items():
            if waiting is not None:
                _hold_first_write(key, out)
    for action in out.actions.values():
        action.patch = status_patch(action.task.get("status") or {}, action.plan.status)
        _coalesce(action.plan)
        if action.key in snapshot.unwritten:
            out.unwritten[action.key] = None
    return out


def _entries_moved(snapshot: Snapshot, out: PassPlan) -> bool:
    """Whether this pass changed the queue: an entry came, went or changed, or a quota report moved.

    Otherwise the last decision stands (nothing was freed, nobody new waits) and deciding again, over a
    queue of thousands, would only repeat it: most passes follow the echo of the operator's own writes.
    """
    if out.unreported:
        return True
    return any(snapshot.queued.get(key) != entry for key, entry in out.queued.items()) or any(
        snapshot.running.get(key) != entry for key, entry in out.running.items())


def _hold_first_write(key: Key, out: PassPlan) -> None:
    """A fresh Task that only waits in the queue: hold its first status back rather than write it.

    Most Tasks of a burst either start within a moment or wait long enough to be told why
    (``explain_after``); writing "Queued" first would cost each of them a second status write.
    Until then the Task reads as Pending (not looked at yet), which it is for the clients.
    """
    action = out.actions.get(key)
    if action is None or key in out.informed:  # not reconciled in this pass, or its reason is written now
        return
    plan = action.plan
    if (action.task.get("status") or {}).get("phase") is not None or plan.status.get("phase") != QUEUED:
        return
    if action.workload is not None or plan.delete_workload or plan.delete_task or plan.ensure_workload:
        return
    if any(event.reason not in _QUIET_WHEN_QUEUED for event in plan.events):
        return
    out.unwritten[key] = plan.status
    del out.actions[key]


_SUPERSEDED = {"Admitted": ("Created", "Waiting"), "Queued": ("Created",)}
"""Events one pass makes redundant: an admission says the task was accepted and queued."""
_UNRECORDED = ("Queued", "Started")
"""Events never recorded: a queued task's Event is its reason for waiting (``Waiting``, written once it has
waited a moment) or its admission (``Admitted``), so "queued for admission" alone tells nobody anything;
a start is recorded by the pod's own ``Started`` Event and in the Task's ``status.executions[]``."""
_QUIET_WHEN_QUEUED = ("Created", *_UNRECORDED)
"""The Events of a fresh Task that is queued: none of them is recorded (``_SUPERSEDED``, ``_UNRECORDED``)."""


def _coalesce(plan: Plan) -> None:
    reasons = {event.reason for event in plan.events}
    dropped = {old for new, olds in _SUPERSEDED.items() if new in reasons for old in olds} | set(_UNRECORDED)
    if dropped:
        plan.events = [event for event in plan.events if event.reason not in dropped]


def in_quota(pod_version: int | None, quota_version: int | None) -> bool:
    """Whether a quota report (at ``quota_version``) counts a pod first seen at ``pod_version``.

    The apiserver's quota admission writes the quota's usage before it stores the pod, so a
    report at least as new as the pod includes it; a pod not seen yet is not included.  An older
    report usually counts it too (nothing rewrites the quota while the pod runs), but the operator
    cannot tell from the versions it watched: it reads the quota fresh (``PassPlan.quota_doubts``),
    and ``quota_version`` is then at least that read's revision.
    """
    return pod_version is not None and quota_version is not None and quota_version >= pod_version


@dataclass(frozen=True)
class QuotaRead:
    """A fresh (consistent) read of one namespace's quotas: the revision it was read at, and each quota's
    resourceVersion then."""

    revision: int
    versions: Mapping[str, int]

    @classmethod
    def from_list(cls, listed: Mapping[str, Any]) -> QuotaRead:
        """The read a ResourceQuota LIST answered; raises ``KeyError``, ``TypeError`` or ``ValueError`` for an
        answer without its revision or versions."""
        revision = int((listed.get("metadata") or {}).get("resourceVersion") or "")
        versions = {str(item["metadata"]["name"]): int(item["metadata"]["resourceVersion"])
                    for item in listed.get("items") or []}
        return cls(revision, versions)


def quota_version(stored: int, name: str, read: QuotaRead | None) -> int:
    """What a stored quota's report counts pods up to (for :func:`in_quota`): its own resourceVersion, or the
    revision of a fresh read if the store holds what was read or newer (the report then counts every pod
    stored before that revision: nothing rewrote the quota since)."""
    if read is not None and name in read.versions and stored >= read.versions[name]:
        return max(stored, read.revision)
    return stored


def report_lacks(demand: Demand, reported: Sequence[policy.Quota], gpu_resource: str) -> bool:
    """Whether a quota report cannot be counting a pod of ``demand``: it reports less of some resource the pod
    holds than the pod alone (a Job, unlike its pod, is still counted after the pod ended)."""
    vector = demand.quota_vector(gpu_resource)
    return any(amount > 0 and key != "count/jobs.batch" and key in quota.used and quota.used[key] < amount
               for quota in reported for key, amount in vector.items())


def _count_in_quota(running: dict[Key, policy.RunningTask], snapshot: Snapshot, out: PassPlan,
                    settings: CycleSettings) -> dict[str, list[Demand]]:
    """Mark the executions the quota reports count already; return, per namespace, the finished ones
    they do not count yet (both are added to the reports by the decision).

    A finished execution stops being added once a report as new as its pod came, once the report is too
    small to hold it (it was written without the pod, and a recount would not change it), or after
    :attr:`CycleSettings.unreported_grace_seconds`.
    """
    versions, quota_versions = snapshot.pod_versions, snapshot.quota_versions
    for key, entry in running.items():
        counted = in_quota(versions.get((key[0], key[1], entry.execution)), quota_versions.get(key[0]))
        if counted != entry.in_quota:
            running[key] = out.running[key] = dataclasses.replace(entry, in_quota=counted)
    reports: dict[str, list[policy.Quota]] = defaultdict(list)
    for quota in snapshot.quotas:
        reports[quota.namespace].append(quota)
    gpu_resource = settings.gpu.resource_name

    def counted_now(namespace: str, demand: Demand, version: int, since: float) -> bool:
        if in_quota(version, quota_versions.get(namespace)):
            return True
        why = ("too_small" if report_lacks(demand, reports[namespace], gpu_resource)
               else "grace" if snapshot.mono - since >= settings.unreported_grace_seconds else None)
        if why is not None:
            out.reports_believed[why] = out.reports_believed.get(why, 0) + 1
        return why is not None

    uncounted: dict[str, list[Demand]] = defaultdict(list)
    for execution, use in snapshot.unreported.items():
        if counted_now(use.namespace, use.demand, use.pod_version, use.since):
            out.unreported[execution] = None
        else:
            uncounted[use.namespace].append(use.demand)
    for key, entry in snapshot.running.items():
        if key in running and running[key].execution == entry.execution:
            continue  # still holding
        execution = (key[0], key[1], entry.execution)
        version = versions.get(execution)
        if version is not None and not counted_now(key[0], entry.demand, version, snapshot.mono):
            out.unreported[execution] = Unreported(key[0], entry.demand, version, since=snapshot.mono)
            uncounted[key[0]].append(entry.demand)
    return uncounted


def unreported_due(unreported: Iterable[Unreported], settings: CycleSettings) -> float | None:
    """When (monotonic seconds) the first of these finished executions is no longer added to the reports."""
    return min((use.since + settings.unreported_grace_seconds for use in unreported), default=None)


def _put(entries: dict[Key, Any], key: Key, entry: Any) -> None:
    if entry is None:
        entries.pop(key, None)
    else:
        entries[key] = entry


def _reconcile(view: TaskView, snapshot: Snapshot, now: datetime, settings: CycleSettings, out: PassPlan,
               statuses: dict[Key, dict[str, Any]]) -> None:
    task = view.task
    key = view.key
    meta = task.get("metadata") or {}
    spec = task.get("spec") or {}
    status = task.get("status") or {}
    out.queued[key] = None
    out.running[key] = None
    if meta.get("deletionTimestamp"):
        out.forget.append(key)
        return
    if settled(task):
        out.forget.append(key)
        return
    current = current_execution(status)
    observation = observe(view, current) if current else None
    try:
        plan = reconcile_task(task, observation=observation, dependencies=view.dependencies, now=now)
    except Exception as error:  # a spec the core cannot digest: fail it, never stop the pass
        out.problems.append((key, f"{type(error).__name__}: {error}"))
        plan = Plan(status=fail(status, reason="InvalidSpec", message=f"Invalid task: {error}", now=now,
                                generation=meta.get("generation")))
    action = TaskAction(key, task, plan)
    out.actions[key] = action
    if plan.requeue_at is not None:
        out.requeue[key] = plan.requeue_at
    template = template_spec(task, snapshot.templates)
    try:
        demand = task_demand(spec, template)
    except (BuildError, QuantityError, ValueError) as error:
        plan.status = fail(plan.status, reason="InvalidSpec", message=f"Invalid resources: {error}", now=now,
                           generation=meta.get("generation"))
        plan.admissible = False
        statuses[key] = plan.status
        out.forget.append(key)
        return
    new_phase = plan.status.get("phase")
    queue = str(spec.get("queue") or settings.default_queue)
    duration = expected_duration(task, snapshot.durations)
    backoff = snapshot.create_backoff.get(key)
    if backoff is not None and not plan.admissible:
        out.backoff_done.append(key)  # admitted, cancelled or finished since: nothing waits to be created
    elif backoff is not None and backoff.give_up:
        plan.status = fail(plan.status, reason="JobRejected", message=backoff.message, now=now,
                           generation=meta.get("generation"))
        kind = "Pod" if (spec.get("runtime") or "job") == "pod" else "Job"
        plan.events.append(EventSpec("JobRejected", f"Cannot run: the apiserver refuses its {kind}: "
                                                    f"{backoff.message}", "Warning"))
        plan.admissible = False
        new_phase = plan.status.get("phase")
        out.backoff_done.append(key)
    elif backoff is not None and backoff.retry_at > now:
        plan.admissible = False  # not queued until the wait is over; the timer brings it back
        out.requeue[key] = min(backoff.retry_at, out.requeue.get(key, backoff.retry_at))
    if plan.admissible and not view.has_tenant:
        # Run as nobody, under no quota: never.  It waits (visibly) until a Tenant claims the namespace.
        plan.admissible = False
        plan.status = set_waiting(plan.status, reason=NO_TENANT, message=f"namespace {key[0]} belongs to no "
                                  f"kubetask Tenant: the task waits until a Tenant claims the namespace",
                                  now=now, position=None, estimated_start=None, generation=meta.get("generation"))
    if plan.admissible:
        exec_id = next_execution_id(plan.status)
        existing = job_name(str(meta["name"]), exec_id)
        found = view.workloads.get(existing)
        if found is not None and owned_by(found, task):
            # The Job of the next execution exists already (a crash after its create, before the patch).
            plan.status = admit(plan.status, job_name=existing, now=now, generation=meta.get("generation"),
                                message=f"Admitted: execution {exec_id} adopted as {existing}")
            plan.admissible = False
            new_phase = RUNNING
        else:
            out.queued[key] = policy.QueuedTask(
                namespace=key[0], name=key[1], tenant=view.tenant, queue=queue,
                priority=int(spec.get("priority", 5)),
                queued_at=parse_time(plan.status.get("queuedAt")) or now,
                submitted_at=parse_time((meta.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT)),
                demand=demand, node_selector=dict(spec.get("nodeSelector") or {}),
                tolerations=[dict(t) for t in spec.get("tolerations") or []],
                expected_duration=duration)
    if out.queued.get(key) is None:
        out.forget.append(key)  # not waiting in the queue: no more explanations to throttle
    holds = current_execution(plan.status) is not None and new_phase == RUNNING
    if holds or (observation is not None and observation.pods_alive):
        cur = current_execution(plan.status) or current or {}
        started = parse_time(cur.get("startedAt")) or parse_time(cur.get("admittedAt")) or now
        out.running[key] = policy.RunningTask(
            namespace=key[0], name=key[1], tenant=view.tenant, queue=queue, demand=demand,
            node_name=_node_of(view.pods.get(int(cur.get("id") or 0), ())), execution=int(cur.get("id") or 0),
            expected_end=started + timedelta(seconds=duration),
            node_selector=dict(spec.get("nodeSelector") or {}),
            tolerations=[dict(t) for t in spec.get("tolerations") or []])
    if needs_accounting(task, plan.status):
        out.accounting.append(key)
    finished = plan.finished_execution
    if finished and finished.get("phase") == SUCCEEDED:
        template_name = (spec.get("template") or {}).get("name")
        start, end = parse_time(finished.get("startedAt")), parse_time(finished.get("finishedAt"))
        if template_name and start and end:
            out.durations.append((str(template_name), (end - start).total_seconds()))
    statuses[key] = plan.status


def _action_for(key: Key, snapshot: Snapshot, out: PassPlan, statuses: dict[Key, dict[str, Any]]) -> TaskAction:
    """The Task's action of this pass (one is made for a Task that did not change)."""
    action = out.actions.get(key)
    if action is None:
        task = snapshot.tasks[key]
        status = dict(_stored_or_held(key, task, snapshot))
        action = out.actions[key] = TaskAction(key, task, Plan(status=status))
        statuses[key] = status
    return action


def _admit(key: Key, entry: policy.QueuedTask, decision: policy.Decision, snapshot: Snapshot, now: datetime,
           settings: CycleSettings, out: PassPlan, statuses: dict[Key, dict[str, Any]]) -> None:
    action = _action_for(key, snapshot, out, statuses)
    task = action.task
    meta = task["metadata"]
    exec_id = next_execution_id(action.plan.status)
    try:
        workload = build_workload(
            task, execution=exec_id, gpu=settings.gpu,
            token=task_token(settings.callback_secret, key[0], key[1], str(meta.get("uid"))),
            callback_url=settings.callback_url, template_spec=template_spec(task, snapshot.templates))
    except (BuildError, TemplateError, QuantityError, ValueError) as error:
        action.plan.status = fail(action.plan.status, reason="InvalidSpec", message=str(error), now=now,
                                  generation=meta.get("generation"))
        action.plan.events.append(EventSpec("Failed", f"Cannot run: {error}", "Warning"))
        out.queued[key] = None
        out.forget.append(key)
        return
    name = workload.body["metadata"]["name"]
    action.workload = workload
    action.priority = entry.priority
    action.plan.status = admit(action.plan.status, job_name=name, now=now, generation=meta.get("generation"))
    node = decision.placement.get(key)
    action.plan.events.append(EventSpec(
        "Admitted", f"Admitted: execution {exec_id} created as {workload.kind} {name}"
                    + (f" (fits {node})" if node else "")))
    out.admitted.append(key)
    out.admitted_from[key] = entry
    out.admission_waits.append(max(0.0, (now - entry.queued_at).total_seconds()))
    out.queued[key] = None
    out.running[key] = policy.RunningTask(
        namespace=key[0], name=key[1], tenant=entry.tenant, queue=entry.queue, demand=workload.demand,
        node_name=None, expected_end=now + timedelta(seconds=entry.expected_duration), execution=exec_id,
        node_selector=entry.node_selector, tolerations=entry.tolerations)
    out.forget.append(key)


def _explain(key: Key, waiting: policy.Waiting, snapshot: Snapshot, now: datetime, settings: CycleSettings,
             out: PassPlan, statuses: dict[Key, dict[str, Any]], budget: int) -> bool:
    """Plan the waiting status of a queued Task, throttled; returns whether it was written."""
    stored = snapshot.tasks.get(key)
    base: Mapping[str, Any] | None = statuses.get(key)
    if base is None:
        if stored is None:
            return False
        base = _stored_or_held(key, stored, snapshot)
    old = (stored or {}).get("status") or {}
    mono = snapshot.mono
    last_info, last_estimate = snapshot.informed.get(key, (float("-inf"), float("-inf")))
    condition = get_condition(base, COND_ADMITTED) or {}
    first = old.get("phase") != QUEUED or old.get("queuePosition") is None
    reason_changed = condition.get("reason") != waiting.reason
    message_changed = base.get("message") != waiting.message
    position_changed = base.get("queuePosition") != waiting.position
    estimate_changed = _moved(base.get("estimatedStartTime"), waiting.estimated_start, settings.estimate_tolerance)
    if first:
        queued_at = parse_time(base.get("queuedAt")) or now
        if (now - queued_at).total_seconds() < settings.explain_after:
            out.info_deferred = True  # it may well be admitted before then: no write, no Event
            return False
        informational = False
    elif reason_changed and mono - last_info >= settings.reason_min_interval and budget > 0:
        informational = True
    elif reason_changed or message_changed or position_changed or estimate_changed:
        due = ((message_changed or position_changed) and mono - last_info >= settings.info_min_interval) or (
            estimate_changed and mono - last_estimate >= settings.estimate_min_interval)
        if not due or budget <= 0:
            out.info_deferred = True
            return False
        informational = True
    else:
        return False
    action = _action_for(key, snapshot, out, statuses)
    meta = action.task.get("metadata") or {}
    action.plan.status = set_waiting(
        action.plan.status, reason=waiting.reason, message=waiting.message, now=now, position=waiting.position,
        estimated_start=waiting.estimated_start if estimate_changed or first else parse_time(
            base.get("estimatedStartTime")),
        generation=meta.get("generation"))
    out.informed[key] = (mono, mono if (estimate_changed or first) else last_estimate)
    if informational:
        out.info_spent += 1
    else:
        action.plan.events.append(EventSpec("Waiting", waiting.message))
    return True


def _stored_or_held(key: Key, task: Mapping[str, Any], snapshot: Snapshot) -> Mapping[str, Any]:
    """The Task's status as stored, or the first status held back for it (:func:`_hold_first_write`)."""
    stored: Mapping[str, Any] = task.get("status") or {}
    if stored.get("phase") is None and key in snapshot.unwritten:
        return snapshot.unwritten[key]
    return stored


def _moved(old: Any, new: datetime | None, tolerance: float) -> bool:
    before = parse_time(old)
    if before is None or new is None:
        return (before is None) != (new is None)
    return abs((new - before).total_seconds()) >= tolerance


__all__ = ["ACCOUNTED_FIELD", "REJECTED_STATUSES", "CreateBackoff", "CycleSettings", "PassPlan", "QuotaRead",
           "Snapshot", "TaskAction", "TaskView", "Unreported", "accounted", "after_create_failure", "expected_duration",
           "in_quota", "is_quota_refusal", "needs_accounting", "observe", "owned_by", "plan_pass", "quota_version",
           "report_lacks", "settled", "template_spec", "unreported_due"]
