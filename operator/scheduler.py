"""The scheduler loop: looping, concurrency and I/O around the pure queue cycle (:mod:`kubetask.core.cycle`).

Each pass:

1. takes what changed since the last one (the dirty sets the stores' change events fill, see
   :mod:`kubetask.operator.state`, plus the timers that came due) and builds a
   :class:`~kubetask.core.cycle.Snapshot`: the changed Tasks with their Jobs, Pods and
   dependencies, the queue entries kept from earlier passes, the nodes and quotas (their
   parsed forms are cached and rebuilt only when they changed);
2. calls :func:`~kubetask.core.cycle.plan_pass`;
3. acts, with bounded concurrency: creates the admitted Jobs (deterministic
   ``<task>-<execution>`` names: an AlreadyExists means "done before"), then merge-patches
   each changed ``/status``, records Events, deletes workloads and expired Tasks, and
   accounts finished GPU time into the Tenant.

A pass with nothing changed does not run: with every Task settled the operator is idle.

The pass waits for its Job creates (so admissions reach the cluster in priority order), but
not for the per-Task follow-ups (status patch, events, deletes): those run in the
background, chained per Task so one Task's patches land in order, while the next pass
already runs.  Until a Task's chain has finished, passes see the Task with the status its
chain will have written (the "overlay"), so an in-flight admission still counts as running
and is never admitted twice; if a link fails, the rest of that Task's chain is skipped, the
overlay dropped, and the Task reconciled again a moment later from the store.

Every action derives from the objects, so a crash at any point is repaired by the next
operator's first pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from kubetask.core import queue as policy
from kubetask.core.cycle import (
    ACCOUNTED_FIELD,
    CreateBackoff,
    CycleSettings,
    PassPlan,
    QuotaRead,
    Snapshot,
    TaskAction,
    TaskView,
    Unreported,
    accounted,
    after_create_failure,
    is_quota_refusal,
    owned_by,
    plan_pass,
    quota_version,
    unreported_due,
)
from kubetask.core.jobs import Workload, build_workload, job_name
from kubetask.core.objects import Key, Obj
from kubetask.core.scheduling import NodeInfo, QuantityError, node_info, to_milli
from kubetask.core.status import EventSpec, current_execution
from kubetask.core.templates import find_template
from kubetask.core.tenants import add_usage, gpu_seconds_in_month, month_key, usage_status
from kubetask.core.times import parse_time
from kubetask.core.tokens import task_token
from kubetask.kube.client import CONFIGMAPS, JOBS, PODS, RESOURCE_QUOTAS, TASKS, TENANTS, ApiError
from kubetask.kube.memory import CollectorPause, HeapSettler
from kubetask.operator.indexes import phase_of
from kubetask.operator.state import State

log = logging.getLogger("kubetask.operator.scheduler")

CONCURRENCY = 48
DEBOUNCE_SECONDS = 0.02
MAX_DEBOUNCE_SECONDS = 0.25
TICK_SECONDS = 1.0
QUOTA_READ_INTERVAL_SECONDS = 0.5
"""The shortest time between two fresh reads of one namespace's quota (see ``PassPlan.quota_doubts``)."""
COLLECTOR_PAUSE_SECONDS = 120.0
"""The longest the start-up's lists run without the cyclic collector (see ``CollectorPause``)."""
RETRY_SECONDS = 1.0
TENANT_STATUS_INTERVAL = 2.0
INFO_WRITES_PER_SECOND = 2.0
"""Informational waiting-status writes (positions, estimates) per second, for the whole queue."""
MAX_QUEUED_EVENTS = 10_000
"""Events waiting to be recorded; beyond this, new ones are dropped (Events are best effort)."""


_Charge = tuple[Key, float, float, str]
"""A Task's GPU time to add to its tenant: (task, its total, what is new of it, the month it is charged to)."""


class _Overlaid(Mapping[Key, Obj]):
    """The Task store, with the status each Task's in-flight follow-ups will have written."""

    def __init__(self, state: State, overlay: Mapping[Key, tuple[Any, Obj]]) -> None:
        self._tasks, self._overlay = state.tasks, overlay

    def __getitem__(self, key: Key) -> Obj:
        found = self._tasks.get_key(key)
        if found is None:
            raise KeyError(key)
        expected = self._overlay.get(key)
        if expected is not None and (found.get("metadata") or {}).get("uid") == expected[0]:
            return {**found, "status": expected[1]}
        return found

    def __iter__(self) -> Iterator[Key]:
        return iter(key for key, _ in self._tasks.items())

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks


class Scheduler:
    def __init__(self, state: State) -> None:
        self.state = state
        settings = state.settings
        self.cycle = CycleSettings(gpu=state.gpu, default_queue=settings.default_queue,
                                   callback_secret=settings.callback_secret, callback_url=settings.callback_url)
        self.sem = asyncio.Semaphore(CONCURRENCY)
        # Job creates have slots of their own: a backlog of background status patches must not hold
        # up the admissions of the next pass.
        self.create_sem = asyncio.Semaphore(CONCURRENCY)
        self.queued: dict[Key, policy.QueuedTask] = {}
        self.running: dict[Key, policy.RunningTask] = {}
        self.informed: dict[Key, tuple[float, float]] = {}
        self.unwritten: dict[Key, Mapping[str, Any]] = {}
        """Fresh waiting Tasks' first statuses, held back until their admission or reason is written."""
        self.unreported: dict[tuple[str, str, int], Unreported] = {}
        self.durations: dict[str, tuple[int, float]] = {}
        self.node_infos: dict[str, NodeInfo] = {}
        self.quota_infos: dict[Key, policy.Quota] = {}
        self.quota_rvs: dict[Key, int] = {}
        self.quota_versions: dict[str, int] = {}
        self.timers: list[tuple[datetime, Key]] = []
        self.info_tokens = INFO_WRITES_PER_SECOND
        self.info_refilled = time.monotonic()
        self.info_due: float | None = None
        self.month = ""
        self.tenant_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.accounting: set[Key] = set()
        """Tasks whose GPU time is being added to their tenant right now (never twice at once)."""
        self.charged: dict[Key, float] = {}
        """GPU-seconds totals already added to the tenant whose mark on the Task is not written yet."""
        self.tenant_status_written: dict[str, float] = {}
        self.tenant_status_at: float | None = None
        """When a Tenant status write held back by the 2 s interval is due (monotonic)."""
        self.events: asyncio.Queue[tuple[Obj, Any]] = asyncio.Queue()
        self.events_dropped = 0
        self.background: set[asyncio.Task[Any]] = set()
        self.passes = 0
        self.plan_seconds = 0.0
        """How long the last pass took to plan (pure computation, the loop blocked meanwhile)."""
        # Per-Task chains of background follow-ups, and the status each chain will have written.
        self.inflight: dict[Key, asyncio.Task[bool]] = {}
        self.overlay: dict[Key, tuple[Any, Obj]] = {}
        self.first_pass = True
        self.heap = HeapSettler()
        self.create_backoff: dict[Key, CreateBackoff] = {}
        """Tasks whose Job create failed lately: held back, then retried or failed (see ``after_create_failure``)."""
        self.quota_reads: dict[str, QuotaRead] = {}
        """Per namespace, the last fresh read of its quotas (see ``quota_version``)."""
        self.quota_read_at: dict[str, float] = {}
        """When (monotonic) each namespace's quotas were last read fresh, or are being read."""

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._event_worker(), name=f"kubetask-events-{i}") for i in range(4)]
        changes = self.state.changes
        listing = CollectorPause()
        pause_ends = time.monotonic() + COLLECTOR_PAUSE_SECONDS
        try:
            while not stop.is_set():
                if await _wait_any(stop, self.state.synced, seconds=1.0):
                    break
                if self.state.synced.is_set():
                    break
                if time.monotonic() >= pause_ends:
                    listing.resume()
            listing.resume()
            while not stop.is_set():
                await _wait_any(stop, changes.wake, seconds=self._sleep_seconds())
                if stop.is_set():
                    break
                # Changes that come while the last plan was computed wait as long as it took: under load a
                # pass re-decides a queue of thousands, so deciding at most half the time leaves the loop
                # the other half for watch events, webhook reviews and writes (a 20 ms plan, 20 ms later).
                await asyncio.sleep(max(DEBOUNCE_SECONDS, min(MAX_DEBOUNCE_SECONDS, self.plan_seconds)))
                changes.wake.clear()
                if not (self.first_pass or changes.pending or self._due()):
                    self._idle()
                    continue
                try:
                    await self.run_pass()
                    self.heap.maybe_settle(self.state.informers.events, busy=True)
                except Exception:
                    self.state.metrics.reconcile_errors.inc()
                    log.exception("scheduler pass failed; retrying")
                    changes.decide()
                    await asyncio.sleep(0.5)
        finally:
            listing.resume()
            for worker in workers:
                worker.cancel()
            for task in list(self.background):
                task.cancel()
            await asyncio.gather(*workers, *self.background, return_exceptions=True)

    def _idle(self) -> None:
        """Nothing to do: after much work (a burst decodes thousands of objects), settle the heap."""
        self.heap.maybe_settle(self.state.informers.events)

    def _sleep_seconds(self) -> float:
        """Until the next timer, deferred explanation, Tenant status write, end of a finished execution's quota
        grace (``unreported_due``) or tick, whichever is first."""
        timeout = TICK_SECONDS
        if self.timers:
            timeout = min(timeout, (self.timers[0][0] - self.state.clock()).total_seconds())
        for due in self._monotonic_dues():
            if due is not None:
                timeout = min(timeout, due - time.monotonic())
        return max(0.05, timeout)

    def _monotonic_dues(self) -> tuple[float | None, ...]:
        """The monotonic deadlines: a deferred explanation, the tenants' status, a finished execution's grace."""
        return self.info_due, self.tenant_status_at, self._grace_due()

    def _grace_due(self) -> float | None:
        return unreported_due(self.unreported.values(), self.cycle)

    def _due(self) -> bool:
        """Something clock-driven is due: a timer, a deferred explanation, a new month, the tenants' status, the end
        of a finished execution's quota grace."""
        if self.timers and self.timers[0][0] <= self.state.clock():
            return True
        mono = time.monotonic()
        if any(due is not None and due <= mono for due in self._monotonic_dues()):
            return True
        return month_key(self.state.clock()) != self.month

    async def _event_worker(self) -> None:
        while True:
            involved, event = await self.events.get()
            try:
                await self.state.client.create_event(involved, reason=event.reason, message=event.message,
                                                     event_type=event.type, component="kubetask-operator")
            except Exception:  # never let an event break the loop
                log.debug("event not recorded", exc_info=True)

    # ------------------------------------------------------------------ one pass

    async def run_pass(self) -> None:
        state = self.state
        now = state.clock()
        mono = time.monotonic()
        self.passes += 1
        state.metrics.scheduler_passes.inc()
        dirty, nodes, quotas, decide = state.changes.take()
        if self.first_pass:  # a fresh operator looks at every Task once
            dirty = {key for key, _ in state.tasks.items()} | set(self.queued) | set(self.running)
            nodes = {name for (_, name), _ in state.nodes.items()} | set(self.node_infos)
            quotas = {key for key, _ in state.quotas.items()} | set(self.quota_infos)
            self.first_pass = False
            decide = True
        while self.timers and self.timers[0][0] <= now:
            dirty.add(heapq.heappop(self.timers)[1])
        month = month_key(now)
        if month != self.month:
            self.month, decide = month, True
        if self.info_due is not None and self.info_due <= mono:
            self.info_due, decide = None, True
        grace_due = self._grace_due()
        if grace_due is not None and grace_due <= mono:
            decide = True  # a finished execution's grace is over: its quota may be free now
        nodes_freed = self._refresh_nodes(nodes)
        quotas_freed = self._refresh_quotas(quotas)
        decide = decide or nodes_freed or quotas_freed
        self.info_tokens = min(INFO_WRITES_PER_SECOND,
                               self.info_tokens + (mono - self.info_refilled) * INFO_WRITES_PER_SECOND)
        self.info_refilled = mono

        tasks = _Overlaid(state, self.overlay)
        changed = [view for key in dirty if (view := self._view(key, tasks)) is not None]
        for key in dirty:
            if key not in tasks:  # deleted: it holds and waits for nothing any more
                self.queued.pop(key, None)
                self.running.pop(key, None)
                self.informed.pop(key, None)
                self.unwritten.pop(key, None)
                self.charged.pop(key, None)
                self.create_backoff.pop(key, None)
        snapshot = Snapshot(
            changed=changed, tasks=tasks, queued=self.queued, running=self.running,
            nodes=list(self.node_infos.values()), quotas=list(self.quota_infos.values()),
            tenants=self._tenant_limits(now), job_counts=state.job_counts, templates=state.template_specs,
            durations=self.durations, pod_versions=state.pod_versions, quota_versions=self.quota_versions,
            unreported=self.unreported, informed=self.informed, unwritten=self.unwritten,
            info_budget=int(self.info_tokens), mono=mono,
            create_backoff=self.create_backoff, decide=decide)
        plan, self.plan_seconds = PassPlan(), 0.0
        if changed or decide:
            started = time.perf_counter()
            plan = plan_pass(snapshot, now, self.cycle)
            self.plan_seconds = time.perf_counter() - started
            state.metrics.plan_seconds.observe(self.plan_seconds)
        await self._apply(plan, now, mono)

    def _view(self, key: Key, tasks: Mapping[Key, Obj]) -> TaskView | None:
        task = tasks.get(key)
        if task is None:
            return None
        state = self.state
        deps: dict[str, str | None] = {}
        for dep in (task.get("spec") or {}).get("dependsOn") or []:
            found = tasks.get((key[0], str(dep)))
            deps[str(dep)] = (phase_of(found) or "Pending") if found is not None else None
        return TaskView(task=task, tenant=state.tenant_key(task), workloads=state.workloads_of(task),
                        pods=state.pods_by_execution(*key), dependencies=deps,
                        has_tenant=key[0] in state.tenant_by_namespace)

    def _refresh_nodes(self, names: set[str]) -> bool:
        """Rebuild the changed nodes' infos; whether any of them may have room it did not have."""
        state = self.state
        freed = False
        for name in names:
            node = state.nodes.get(name)
            before = self.node_infos.get(name)
            if node is None:
                self.node_infos.pop(name, None)
                freed = freed or before is not None
                continue
            after = self.node_infos[name] = node_info(
                node, state.pods.by_index("node", name), gpu_resource=state.gpu.resource_name,
                gpu_label_key=state.gpu.node_label_key, gpu_label_value=state.gpu.node_label_value,
                product_label_key=state.gpu.product_label_key)
            freed = freed or policy.node_frees_room(before, after)
        return freed

    def _refresh_quotas(self, keys: set[Key]) -> bool:
        """Rebuild the changed quotas' infos; whether any of them may let in a task it held back."""
        freed = False
        for key in keys:
            quota = self.state.quotas.get_key(key)
            before = self.quota_infos.get(key)
            if quota is None:
                self.quota_infos.pop(key, None)
                self.quota_rvs.pop(key, None)
                freed = freed or before is not None
                continue
            spec_hard = (quota.get("spec") or {}).get("hard") or {}
            status = quota.get("status") or {}
            hard_raw = {**(status.get("hard") or spec_hard), **spec_hard}  # the spec is the newest truth
            after = self.quota_infos[key] = policy.Quota(namespace=key[0], name=key[1], hard=_milli_map(hard_raw),
                                                         used=_milli_map(status.get("used") or {}))
            freed = freed or policy.quota_frees_room(before, after)
            with contextlib.suppress(TypeError, ValueError):
                self.quota_rvs[key] = int((quota.get("metadata") or {}).get("resourceVersion") or "")
        self.quota_versions = {}
        for (namespace, name), stored in self.quota_rvs.items():
            version = quota_version(stored, name, self.quota_reads.get(namespace))
            self.quota_versions[namespace] = min(version, self.quota_versions.get(namespace, version))
        return freed

    def _read_quotas(self, namespaces: set[str], mono: float) -> None:
        """Read the doubted namespaces' quotas fresh (in the background, one read per namespace at a time)."""
        for namespace in namespaces:
            if mono - self.quota_read_at.get(namespace, -QUOTA_READ_INTERVAL_SECONDS) < QUOTA_READ_INTERVAL_SECONDS:
                continue
            self.quota_read_at[namespace] = mono
            task = asyncio.create_task(self._read_quota(namespace), name=f"kubetask-quota-read-{namespace}")
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def _read_quota(self, namespace: str) -> None:
        try:
            read = QuotaRead.from_list(await self.state.client.list(RESOURCE_QUOTAS, namespace))
        except (TimeoutError, ApiError, aiohttp.ClientError, KeyError, TypeError, ValueError) as error:
            # Not retried here: the next pass that still doubts the quota reads it again.
            log.warning("fresh read of the quotas of %s failed: %s", namespace, error)
            return
        self.quota_reads[namespace] = read
        self.state.changes.decide()

    def _tenant_limits(self, now: datetime) -> dict[str, policy.TenantLimits]:
        out = {}
        for (_, name), tenant in self.state.tenants.items():
            limits = (tenant.get("spec") or {}).get("limits") or {}
            left = None
            if limits.get("monthlyGpuHours") is not None:
                used = gpu_seconds_in_month(tenant.get("status") or {}, month_key(now))
                left = float(limits["monthlyGpuHours"]) * 3600 - used
            max_running = limits.get("maxRunning")
            out[name] = policy.TenantLimits(max_running=int(max_running) if max_running is not None else None,
                                            monthly_gpu_seconds_left=left)
        return out

    # ------------------------------------------------------------------ applying a plan

    async def _apply(self, plan: PassPlan, now: datetime, mono: float) -> None:
        state = self.state
        for key, problem in plan.problems:
            log.error("cannot reconcile %s/%s: %s", *key, problem)
        for key, queued in plan.queued.items():
            _put(self.queued, key, queued)
        for key, running in plan.running.items():
            _put(self.running, key, running)
        for execution, use in plan.unreported.items():
            _put(self.unreported, execution, use)
        for why, count in plan.reports_believed.items():
            state.metrics.quota_reports_believed.labels(reason=why).inc(count)
        if plan.quota_doubts:
            self._read_quotas(plan.quota_doubts, mono)
        for key in plan.forget:
            self.informed.pop(key, None)
            self.unwritten.pop(key, None)
        self.informed.update(plan.informed)
        for key, held in plan.unwritten.items():
            _put(self.unwritten, key, held)
        self.info_tokens -= plan.info_spent
        if plan.info_deferred:
            self.info_due = mono + 1.0
        for key, at in plan.requeue.items():
            heapq.heappush(self.timers, (at, key))
        for template, seconds in plan.durations:
            count, total = self.durations.get(template, (0, 0.0))
            self.durations[template] = (count + 1, total + seconds)
        for wait in plan.admission_waits:
            state.metrics.admission_wait.observe(wait)
            state.metrics.admissions.inc()

        # Create the admitted workloads first, one priority level after the other (higher first), so the
        # cluster sees admissions in priority order; within a level they go out concurrently.
        for key in plan.backoff_done:
            self.create_backoff.pop(key, None)
        admitted = [plan.actions[key] for key in plan.admitted]
        created: dict[Key, bool] = {}
        for priority in sorted({a.priority for a in admitted}, reverse=True):
            level = [a for a in admitted if a.priority == priority]
            results = await asyncio.gather(*(self._create(a) for a in level))
            for action, failure in zip(level, results, strict=True):
                created[action.key] = failure is None
                if failure is None:
                    self.create_backoff.pop(action.key, None)
                else:
                    self._create_failed(action, *failure)

        # Per-Task follow-ups go to the background (see the module doc).
        charges = self._fold_accounting(plan, now)
        for action in plan.actions.values():
            if action.workload is not None and not created.get(action.key):
                continue
            if action.has_work:
                self._follow_up(action, now, after=charges.get(action.key))
        accounting = [key for key in plan.accounting if key not in self.accounting]
        if accounting:  # in the background, like the follow-ups; a Task is accounted by one write at a time
            self.accounting.update(accounting)
            task = asyncio.create_task(self._account(accounting, now), name="kubetask-accounting")
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        await self._guarded(self._tenant_status(now, mono))

        state.metrics.set_phases(dict(state.phase_counts))
        if plan.queue_depths or not self.queued:
            state.metrics.set_queue_depths(plan.queue_depths)
        gpus: dict[str, int] = defaultdict(int)
        for entry in self.running.values():
            gpus[entry.tenant] += entry.demand.gpu_count
        state.metrics.set_gpus(dict(gpus))

    def _retry(self, key: Key, now: datetime) -> None:
        heapq.heappush(self.timers, (now + timedelta(seconds=RETRY_SECONDS), key))

    def _follow_up(self, action: TaskAction, now: datetime, after: asyncio.Task[bool] | None = None) -> None:
        """Run ``_act`` for one Task in the background, after that Task's earlier follow-ups.

        ``after`` is the charge of the Task's GPU time to its tenant, when the patch carries the mark
        of it (:meth:`_fold_accounting`): the patch waits for the charge, and without the charge it goes
        without the mark.
        """
        key = action.key
        previous = self.inflight.get(key)
        if action.patch:
            self.overlay[key] = ((action.task.get("metadata") or {}).get("uid"), action.plan.status)

        async def link() -> bool:
            uncharged = False
            try:
                if after is not None and not await after:
                    # Not charged: write the rest, and a later pass accounts the time the usual way.
                    uncharged = True
                    action.patch.pop(ACCOUNTED_FIELD, None)
                    action.plan.status.pop(ACCOUNTED_FIELD, None)
                if previous is not None:
                    await asyncio.wait([previous])
                    if previous.cancelled() or previous.exception() is not None or not previous.result():
                        return False  # an earlier patch failed: this one was computed on top of it
                done = await self._guarded(self._act(action), key=key)
                if done and ACCOUNTED_FIELD in action.patch:
                    self.charged.pop(key, None)
                return done
            finally:
                if after is not None:
                    self.accounting.discard(key)
                if uncharged:
                    self._retry(key, self.state.clock())

        task = asyncio.create_task(link(), name=f"kubetask-act-{key[0]}/{key[1]}")
        self.inflight[key] = task
        self.background.add(task)
        task.add_done_callback(lambda done: self._follow_up_done(key, done))

    def _follow_up_done(self, key: Key, task: asyncio.Task[bool]) -> None:
        self.background.discard(task)
        failed = task.cancelled() or task.exception() is not None or not task.result()
        if self.inflight.get(key) is task:
            del self.inflight[key]
            self.overlay.pop(key, None)
        elif failed:
            self.overlay.pop(key, None)  # the rest of the chain will be skipped (the failure set a retry timer)

    async def drain(self) -> None:
        """Wait until every background follow-up has finished."""
        while self.inflight:
            await asyncio.wait(list(self.inflight.values()))

    async def _guarded(self, coro: Coroutine[Any, Any, Any], sem: asyncio.Semaphore | None = None,
                       key: Key | None = None) -> bool:
        """Run one action; a failure is logged, counted and retried by a later pass (never raised)."""
        try:
            async with sem or self.sem:
                try:
                    await coro
                    return True
                except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                    self.state.metrics.reconcile_errors.inc()
                    log.warning("action failed (will retry): %s", error)
                except Exception:
                    self.state.metrics.reconcile_errors.inc()
                    log.exception("action failed (will retry)")
        finally:
            coro.close()  # cancelled while waiting for a slot (shutdown): it never ran, and never will
        if key is not None:
            self._retry(key, self.state.clock())
        else:
            self.state.poke()
        return False

    async def _act(self, action: TaskAction) -> None:
        state = self.state
        client = state.client
        namespace, name = action.key
        task = action.task
        plan = action.plan
        if plan.ensure_workload:
            await self._ensure_workload(task, plan.status)
        if action.patch:
            try:
                updated = await client.patch_status(TASKS, name, {"status": action.patch}, namespace)
            except ApiError as error:
                if error.not_found:
                    return
                raise
            state.tasks.upsert(updated)
            task = state.tasks.get(name, namespace) or task
        for event in plan.events:
            if self.events.qsize() >= MAX_QUEUED_EVENTS:
                self.events_dropped += 1
                continue
            self.events.put_nowait((task, event))
        if plan.delete_workload:
            await self._delete_workload(task, plan.status)
        if plan.delete_task:
            await client.delete(TASKS, name, namespace, propagation="Background")

    async def _create(self, action: TaskAction) -> tuple[int | None, str] | None:
        """Create the admission's workload; ``None`` if done, else the apiserver's status (``None``: no
        answer) and message."""
        assert action.workload is not None
        name = action.workload.body["metadata"]["name"]
        async with self.create_sem:
            try:
                if await self._create_workload(action.task, action.workload):
                    return None
                return None, f"{action.workload.kind} {name} exists but belongs to another Task"
            except ApiError as error:
                self.state.metrics.reconcile_errors.inc()
                log.warning("creating %s failed: %s", name, error)
                return error.status, error.message
            except (TimeoutError, aiohttp.ClientError) as error:
                self.state.metrics.reconcile_errors.inc()
                log.warning("creating %s failed: %s", name, error or type(error).__name__)
                return None, str(error) or type(error).__name__
            except Exception as error:
                self.state.metrics.reconcile_errors.inc()
                log.exception("creating %s failed", name)
                return None, f"{type(error).__name__}: {error}"

    def _create_failed(self, action: TaskAction, status: int | None, message: str) -> None:
        """Not created: hold the Task back (it is not queued) until the core's backoff says retry, or fail."""
        key = action.key
        now = self.state.clock()
        backoff = after_create_failure(self.create_backoff.get(key), status=status, message=message, now=now,
                                       settings=self.cycle)
        self.create_backoff[key] = backoff
        self.running.pop(key, None)
        self.queued.pop(key, None)
        heapq.heappush(self.timers, (backoff.retry_at, key))
        assert action.workload is not None
        message = backoff.event_message(f"{action.workload.kind} {action.workload.body['metadata']['name']}")
        log.warning("%s/%s: %s", *key, message)
        if not backoff.give_up and self.events.qsize() < MAX_QUEUED_EVENTS:  # the give-up has its own Event
            self.events.put_nowait((action.task, EventSpec("JobCreateFailed", message, "Warning")))

    async def _create_workload(self, task: Obj, workload: Workload) -> bool:
        client = self.state.client
        meta = workload.body["metadata"]
        namespace = str(meta["namespace"])
        if workload.configmap is not None:
            try:
                await client.create(CONFIGMAPS, workload.configmap, namespace)
            except ApiError as error:
                if not error.already_exists:
                    raise
        resource = JOBS if workload.kind == "Job" else PODS
        store = self.state.jobs if workload.kind == "Job" else self.state.pods
        try:
            created = await _create_retrying(client, resource, workload.body, namespace,
                                             lag_waits=self.cycle.quota_lag_retry_seconds,
                                             on_quota_retry=self.state.metrics.quota_lag_retries.inc)
        except ApiError as error:
            if not error.already_exists:
                raise
            existing = await client.get_or_none(resource, str(meta["name"]), namespace)
            if existing is None or not owned_by(existing, task):
                log.warning("%s %s/%s exists but belongs to another Task; retrying later", workload.kind,
                            namespace, meta["name"])
                return False
            created = existing
        store.upsert(created)
        return True

    def _template_spec(self, task: Mapping[str, Any]) -> Obj | None:
        template = (task.get("spec") or {}).get("template") or {}
        if not template.get("name"):
            return None
        found = find_template(self.state.template_specs, str(template["name"]))
        return dict(found[1]) if found else None

    async def _ensure_workload(self, task: Obj, status: Mapping[str, Any]) -> None:
        """An admitted execution whose Job is missing (e.g. crash between patch and create): create it."""
        current = current_execution(status)
        if current is None:
            return
        state = self.state
        meta = task["metadata"]
        exec_id = int(current.get("id") or 1)
        workload = build_workload(
            task, execution=exec_id, gpu=state.gpu,
            token=task_token(state.settings.callback_secret, str(meta.get("namespace")), str(meta["name"]),
                             str(meta.get("uid"))),
            callback_url=state.settings.callback_url, template_spec=self._template_spec(task))
        await self._create_workload(task, workload)

    async def _delete_workload(self, task: Obj, status: Mapping[str, Any]) -> None:
        client = self.state.client
        meta = task["metadata"]
        namespace, name = str(meta.get("namespace")), str(meta["name"])
        executions = list(status.get("executions") or [])
        if not executions:
            return
        execution = executions[-1]
        exec_id = int(execution.get("id") or 0)
        workload = str(execution.get("jobName") or job_name(name, exec_id))
        if ((task.get("spec") or {}).get("runtime") or "job") == "pod":
            await client.delete(PODS, workload, namespace, propagation="Background")
            return
        job = self.state.jobs.get(workload, namespace)
        if job is not None and not (job.get("metadata") or {}).get("deletionTimestamp"):
            await client.delete(JOBS, workload, namespace, propagation="Background")
        elif job is None:
            # The Job is gone; make sure no pod outlives it (a GC that lags must not hold quota forever).
            for pod in self.state.pods_of(namespace, name, exec_id):
                if not (pod.get("metadata") or {}).get("deletionTimestamp"):
                    await client.delete(PODS, str(pod["metadata"]["name"]), namespace, propagation="Background")

    def _fold_accounting(self, plan: PassPlan, now: datetime) -> dict[Key, asyncio.Task[bool]]:
        """Charge the GPU time of Tasks whose status patch records it, so the patch carries the mark.

        A Task that finishes has its time added to the tenant first (one write per tenant for the
        pass), then its final status patch sets ``accountedGpuSeconds`` too: one Task write fewer than
        a separate mark.  Returns each folded Task's charge, which its follow-up waits for.
        """
        by_tenant: dict[str | None, list[_Charge]] = defaultdict(list)
        for key in plan.accounting:
            action = plan.actions.get(key)
            if key in self.accounting or action is None or not action.patch or action.workload is not None:
                continue
            by_tenant[self.state.tenant_of_namespace(key[0])[0]].append(
                self._unaccounted(key, action.task, action.plan.status, now))
        charges: dict[Key, asyncio.Task[bool]] = {}

        async def charge_tenant(tenant: str | None, items: list[_Charge]) -> bool:
            # The coroutine is made once the task runs: a task cancelled before it starts leaves none unawaited.
            return await self._guarded(self._charge_tenant(tenant, items, now))

        for tenant, items in by_tenant.items():
            charge = asyncio.create_task(charge_tenant(tenant, items), name=f"kubetask-charge-{tenant}")
            self.background.add(charge)
            charge.add_done_callback(self.background.discard)
            for key, total, _, _ in items:
                self.accounting.add(key)
                action = plan.actions[key]
                action.patch[ACCOUNTED_FIELD] = total
                action.plan.status[ACCOUNTED_FIELD] = total
                charges[key] = charge
        return charges

    async def _account(self, keys: list[Key], now: datetime) -> None:
        """Add finished GPU time to the tenants' months, exactly once per second of it, one write per tenant.

        Each Task's ``status.accountedGpuSeconds`` records how much of its ``gpuSeconds`` has been accounted; a tenant
        is charged the difference first, then the marks move.  A crash in between may charge one
        execution twice, never zero.
        """
        state = self.state
        by_tenant: dict[str | None, list[_Charge]] = defaultdict(list)
        for key in keys:
            latest = state.tasks.get_key(key)
            if latest is None:
                continue
            item = self._unaccounted(key, latest, latest.get("status") or {}, now)
            if item[2] > 1e-6 or key in self.charged:
                by_tenant[state.tenant_of_namespace(key[0])[0]].append(item)
        try:
            results = await asyncio.gather(*(self._guarded(self._charge(tenant, items, now))
                                             for tenant, items in by_tenant.items()))
            for ok, items in zip(results, by_tenant.values(), strict=True):
                if not ok:
                    for key, *_ in items:
                        self._retry(key, now)
        finally:
            self.accounting.difference_update(keys)

    def _unaccounted(self, key: Key, task: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> _Charge:
        """The Task's GPU time not yet added to its tenant; ``status`` is the one that holds its total."""
        total = float(status.get("gpuSeconds") or 0.0)
        delta = total - max(accounted(task), self.charged.get(key, 0.0))
        return key, total, delta, month_key(parse_time(status.get("completedAt")) or now)

    async def _charge_tenant(self, tenant_name: str | None, items: list[_Charge], now: datetime) -> None:
        """Add the items' new GPU-seconds (``delta``) to the tenant's months in one write."""
        state = self.state
        charges = [(month, delta) for _, _, delta, month in items if delta > 1e-6]
        if tenant_name is not None and charges:
            async with self.tenant_locks[tenant_name]:
                tenant = state.tenants.get(tenant_name)
                if tenant is not None:
                    usage = (tenant.get("status") or {}).get("usage")
                    for month, delta in charges:
                        usage = add_usage(usage, month, delta)
                    this_month = gpu_seconds_in_month({"usage": usage}, month_key(now))
                    updated = await state.client.patch_status(
                        TENANTS, tenant_name, {"status": {"usage": usage, "gpuSecondsThisMonth": this_month,
                                                          "month": month_key(now)}})
                    state.tenants.upsert(updated)
        for key, total, _, _ in items:  # until the marks are written, no later pass charges these again
            self.charged[key] = max(total, self.charged.get(key, 0.0))

    async def _charge(self, tenant_name: str | None, items: list[_Charge], now: datetime) -> None:
        state = self.state
        await self._charge_tenant(tenant_name, items, now)

        async def mark(key: Key, total: float) -> None:
            try:
                updated = await state.client.patch_status(
                    TASKS, key[1], {"status": {ACCOUNTED_FIELD: total}}, key[0])
                state.tasks.upsert(updated)
            except ApiError as error:
                if not error.not_found:
                    raise
            self.charged.pop(key, None)

        await asyncio.gather(*(mark(key, total) for key, total, _, _ in items))

    async def _tenant_status(self, now: datetime, mono: float) -> None:
        """Write each Tenant's live usage (running, pending, GPUs in use), at most every 2 s per Tenant."""
        state = self.state
        running: dict[str, int] = defaultdict(int)
        gpus: dict[str, int] = defaultdict(int)
        for entry in self.running.values():
            running[entry.tenant] += 1
            gpus[entry.tenant] += entry.demand.gpu_count
        self.tenant_status_at = None
        for (_, name), tenant in list(state.tenants.items()):
            status = tenant.get("status") or {}
            namespace = (state.namespaces_of_tenant.get(name) or [""])[0]
            live = usage_status(status, now=now, running=running.get(name, 0), pending=state.pending_count(name),
                                gpus_in_use=gpus.get(name, 0), namespace=namespace)
            patch = {k: v for k, v in live.items() if status.get(k) != v}
            generation = (tenant.get("metadata") or {}).get("generation")
            if generation is not None and status.get("observedGeneration") != generation:
                patch["observedGeneration"] = generation
            if not patch:
                continue
            due = self.tenant_status_written.get(name, float("-inf")) + TENANT_STATUS_INTERVAL
            if mono < due:  # written moments ago: write it on a later pass
                self.tenant_status_at = due if self.tenant_status_at is None else min(self.tenant_status_at, due)
                continue
            async with self.tenant_locks[name]:
                try:
                    updated = await state.client.patch_status(TENANTS, name, {"status": patch})
                except ApiError as error:
                    if error.not_found:
                        continue
                    raise
                state.tenants.upsert(updated)
                self.tenant_status_written[name] = mono


async def _create_retrying(client: Any, resource: Any, body: Obj, namespace: str, attempts: int = 5, *,
                           lag_waits: Sequence[float] = (), on_quota_retry: Callable[[], None] | None = None) -> Obj:
    """Create, retrying at once what the apiserver's quota admission refused only for a moment.

    * A 409 Conflict: the quota admission updates the namespace's ResourceQuota for every Job and pod it
      admits, and two admissions at the same moment conflict.
    * A 403 "exceeded quota", after each of ``lag_waits`` (``CycleSettings.quota_lag_retry_seconds``): the
      operator admits only what the newest quota report it watched has room for, but the admission checks its
      own informer's copy of the quota, which can lag that report by some milliseconds, and refuses on it
      (``quotaAccessor.GetQuotas`` in k8s.io/apiserver; seen on kube-apiserver 1.36 with bare pods: refused at
      "used 20" 20 ms after the operator saw the quota controller's report of 15).  A refusal that outlasts
      these retries is a real one: the caller's backoff and its Event follow.
    """
    conflicts = refusals = 0
    while True:
        try:
            return dict(await client.create(resource, body, namespace))
        except ApiError as error:
            if error.conflict and not error.already_exists and conflicts < attempts - 1:
                await asyncio.sleep(0.01 * 2 ** conflicts)
                conflicts += 1
                continue
            if is_quota_refusal(error.status, error.message) and refusals < len(lag_waits):
                if on_quota_retry is not None:
                    on_quota_retry()
                await asyncio.sleep(lag_waits[refusals])
                refusals += 1
                continue
            raise


def _put(entries: dict[Any, Any], key: Any, entry: Any) -> None:
    if entry is None:
        entries.pop(key, None)
    else:
        entries[key] = entry


def _milli_map(raw: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        with contextlib.suppress(QuantityError):
            out[str(key)] = to_milli(value)
    return out


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, *, seconds: float) -> bool:
    """Wait for either event or the timeout; True if ``stop`` is set."""
    if stop.is_set() or other.is_set():
        return stop.is_set()
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


__all__ = ["Scheduler"]
