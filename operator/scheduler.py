"""The scheduler loop: one level-triggered pass over the views, then idempotent actions.

Each pass:

1. runs :func:`kubetask.core.status.reconcile_task` for every Task (status from
   its Job/Pods, dependencies, scheduledAt, retries, cancel, TTL, reruns);
2. asks :func:`kubetask.core.queue.decide` which Queued tasks start now;
3. acts, with bounded concurrency: create the admitted Jobs (deterministic
   ``<task>-<execution>`` names: an AlreadyExists means "done before"), then
   merge-patch each changed ``/status``, record Events, delete workloads and
   expired Tasks, account finished GPU time into the Tenant.

The pass waits for its Job creates (so admissions reach the cluster in priority
order), but not for the per-Task follow-ups (status patch, events, deletes):
those run in the background, chained per Task so one Task's patches land in
order, while the next pass already runs.  Until a Task's chain has finished,
passes see the Task with the status its chain will have written (the
"overlay"), so an in-flight admission still counts as running and is never
admitted twice; if a link fails, the rest of that Task's chain is skipped and
the overlay dropped, and the next pass recomputes from the cluster's view.

Passes are woken by watch events (debounced) and by a periodic tick for the
clock-driven transitions.  Every action derives from the objects, so a crash
at any point is repaired by the next pass of the next operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from kubetask.core import queue as policy
from kubetask.core.jobs import BuildError, Workload, build_workload, job_name, task_demand
from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.scheduling import QuantityError, node_info, to_milli
from kubetask.core.status import (
    RUNNING,
    EventSpec,
    Observation,
    Plan,
    admit,
    current_execution,
    fail,
    fmt_time,
    next_execution_id,
    observe_execution,
    parse_time,
    reconcile_task,
    set_waiting,
    status_patch,
)
from kubetask.core.templates import TemplateError, find_template
from kubetask.core.tenants import add_usage, gpu_seconds_in_month, month_key, usage_status
from kubetask.core.tokens import task_token
from kubetask.kube.client import CONFIGMAPS, JOBS, PODS, TASKS, TENANTS, ApiError
from kubetask.operator.state import Key, Obj, State

log = logging.getLogger("kubetask.operator.scheduler")

ACCOUNTED_ANNOTATION = "kubetask.io/accounted-gpu-seconds"
CONCURRENCY = 48
DEBOUNCE_SECONDS = 0.02
TICK_SECONDS = 1.0
INFO_MIN_INTERVAL = 5.0  # seconds between informational (position/estimate) updates of one queued task
ESTIMATE_MIN_INTERVAL = 30.0
TENANT_STATUS_INTERVAL = 2.0


@dataclass
class Action:
    """What to do for one Task in this pass."""

    key: Key
    task: Obj
    plan: Plan
    workload: Workload | None = None
    patch: dict[str, Any] = field(default_factory=dict)
    adopted: bool = False
    priority: int = 0
    created: bool = False


class Scheduler:
    def __init__(self, state: State) -> None:
        self.state = state
        self.sem = asyncio.Semaphore(CONCURRENCY)
        # Job creates have slots of their own: a backlog of background status patches must not hold
        # up the admissions of the next pass.
        self.create_sem = asyncio.Semaphore(CONCURRENCY)
        self.info_written: dict[Key, float] = {}
        self.estimate_written: dict[Key, float] = {}
        self.durations: dict[str, tuple[int, float]] = {}
        self.tenant_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.tenant_status_written: dict[str, float] = {}
        self.events: asyncio.Queue[tuple[Obj, EventSpec]] = asyncio.Queue()
        self.next_wake: float | None = None
        self.background: set[asyncio.Task[Any]] = set()
        self.passes = 0
        # Per-Task chains of background follow-ups, and the status each chain will have written.
        self.inflight: dict[Key, asyncio.Task[bool]] = {}
        self.overlay: dict[Key, tuple[Any, Obj]] = {}

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._event_worker(), name=f"kubetask-events-{i}") for i in range(4)]
        try:
            while not stop.is_set():
                if await _wait_any(stop, self.state.synced, seconds=1.0):
                    break
                if self.state.synced.is_set():
                    break
            while not stop.is_set():
                timeout = TICK_SECONDS
                if self.next_wake is not None:
                    timeout = max(0.05, min(TICK_SECONDS, self.next_wake - time.monotonic()))
                await _wait_any(stop, self.state.wake, seconds=timeout)
                if stop.is_set():
                    break
                await asyncio.sleep(DEBOUNCE_SECONDS)
                self.state.wake.clear()
                try:
                    await self.run_pass()
                except Exception:
                    self.state.metrics.reconcile_errors.inc()
                    log.exception("scheduler pass failed; retrying")
                    await asyncio.sleep(0.5)
        finally:
            for worker in workers:
                worker.cancel()
            for task in list(self.background):
                task.cancel()
            await asyncio.gather(*workers, *self.background, return_exceptions=True)

    async def _event_worker(self) -> None:
        while True:
            involved, event = await self.events.get()
            try:
                await self.state.client.create_event(involved, reason=event.reason, message=event.message,
                                                      event_type=event.type, component="kubetask-operator")
            except Exception:  # never let an event break the loop
                log.debug("event not recorded", exc_info=True)

    # ------------------------------------------------------------------ one pass

    def _observe(self, task: Obj, execution: Mapping[str, Any]) -> Observation:
        meta = task["metadata"]
        spec = task.get("spec") or {}
        namespace, name = str(meta.get("namespace")), str(meta["name"])
        exec_id = int(execution.get("id") or 0)
        workload = str(execution.get("jobName") or job_name(name, exec_id))
        pods = self.state.pods_of(namespace, name, exec_id)
        if (spec.get("runtime") or "job") == "pod":
            pod = self.state.pods.get((namespace, workload))
            if pod is not None and not any(p is pod for p in pods):
                pods.append(pod)
            return observe_execution(None, pods)
        job = self.state.jobs.get((namespace, workload))
        if job is not None and not _owned_by(job, task):
            job = None
        return observe_execution(job, pods)

    def _template_spec(self, task: Mapping[str, Any]) -> Obj | None:
        template = (task.get("spec") or {}).get("template") or {}
        if not template.get("name"):
            return None
        found = find_template(self.state.templates_by_name(), str(template["name"]))
        return dict(found[1]) if found else None

    def _expected_duration(self, task: Mapping[str, Any]) -> float:
        spec = task.get("spec") or {}
        template = (spec.get("template") or {}).get("name")
        if template and template in self.durations:
            count, total = self.durations[template]
            return total / max(1, count)
        if spec.get("timeoutSeconds"):
            return float(spec["timeoutSeconds"])
        return policy.DEFAULT_DURATION_SECONDS

    async def run_pass(self) -> None:
        state = self.state
        now = state.clock()
        mono = time.monotonic()
        self.passes += 1
        state.metrics.scheduler_passes.inc()
        tasks = dict(state.tasks.items)
        for key, (uid, expected) in list(self.overlay.items()):
            seen = tasks.get(key)
            if seen is not None and (seen.get("metadata") or {}).get("uid") == uid:
                tasks[key] = {**seen, "status": expected}
        phases = {key: (t.get("status") or {}).get("phase") for key, t in tasks.items()}

        actions: dict[Key, Action] = {}
        queued: list[policy.QueuedTask] = []
        running: list[policy.RunningTask] = []
        wake_at: datetime | None = None
        phase_counts: dict[str, int] = defaultdict(int)
        tenant_running: dict[str, int] = defaultdict(int)
        tenant_pending: dict[str, int] = defaultdict(int)
        tenant_gpus: dict[str, int] = defaultdict(int)
        accounting: list[Obj] = []

        for key, task in tasks.items():
            meta = task.get("metadata") or {}
            spec = task.get("spec") or {}
            status = task.get("status") or {}
            namespace = key[0]
            if meta.get("deletionTimestamp"):
                continue
            if _settled(task):
                phase_counts[str(status.get("phase"))] += 1
                continue
            current = current_execution(status)
            observation = self._observe(task, current) if current else None
            deps = {d: (phases.get((namespace, d)) or "Pending") if (namespace, d) in tasks else None
                    for d in spec.get("dependsOn") or []}
            try:
                plan = reconcile_task(task, observation=observation, dependencies=deps, now=now)
            except Exception as error:  # a spec the core cannot digest: fail it, never crash the loop
                log.exception("cannot reconcile %s/%s", *key)
                plan = Plan(status=fail(status, reason="InvalidSpec", message=f"Invalid task: {error}", now=now,
                                        generation=meta.get("generation")))
            action = Action(key, task, plan)
            actions[key] = action
            if plan.requeue_at is not None and (wake_at is None or plan.requeue_at < wake_at):
                wake_at = plan.requeue_at
            tenant = state.tenant_key(task)
            new_phase = plan.status.get("phase")
            try:
                demand = task_demand(spec, self._template_spec(task))
            except (BuildError, QuantityError, ValueError) as error:
                plan.status = fail(plan.status, reason="InvalidSpec", message=f"Invalid resources: {error}",
                                   now=now, generation=meta.get("generation"))
                plan.admissible = False
                continue
            if plan.admissible:
                # A Job for the next execution may already exist (crash after create, before the status patch).
                exec_id = next_execution_id(plan.status)
                existing = self._existing_workload(task, exec_id)
                if existing is not None:
                    plan.status = admit(plan.status, job_name=existing, now=now, generation=meta.get("generation"),
                                        message=f"Admitted: execution {exec_id} adopted as {existing}")
                    plan.admissible = False
                    action.adopted = True
                    new_phase = RUNNING
                else:
                    queued.append(policy.QueuedTask(
                        namespace=namespace, name=key[1], tenant=tenant,
                        queue=str(spec.get("queue") or state.settings.default_queue),
                        priority=int(spec.get("priority", 5)),
                        queued_at=parse_time(plan.status.get("queuedAt")) or now,
                        submitted_at=parse_time((meta.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT)),
                        demand=demand, node_selector=dict(spec.get("nodeSelector") or {}),
                        tolerations=[dict(t) for t in spec.get("tolerations") or []],
                        expected_duration=self._expected_duration(task)))
            holds = current_execution(plan.status) is not None and new_phase == RUNNING
            if holds or (observation is not None and observation.pods_alive):
                node_name = None
                cur = current_execution(plan.status) or current or {}
                for pod in state.pods_of(namespace, key[1], int(cur.get("id") or 0)):
                    if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                        node_name = (pod.get("spec") or {}).get("nodeName") or node_name
                started = parse_time(cur.get("startedAt")) or parse_time(cur.get("admittedAt")) or now
                running.append(policy.RunningTask(
                    namespace=namespace, name=key[1], tenant=tenant,
                    queue=str(spec.get("queue") or state.settings.default_queue), demand=demand,
                    node_name=node_name,
                    expected_end=started + timedelta(seconds=self._expected_duration(task)),
                    node_selector=dict(spec.get("nodeSelector") or {}),
                    tolerations=[dict(t) for t in spec.get("tolerations") or []]))
                tenant_running[tenant] += 1
                tenant_gpus[tenant] += demand.gpu_count
            elif new_phase in ("Pending", "Queued") and not spec.get("cancel"):
                tenant_pending[tenant] += 1
            if float(plan.status.get("gpuSeconds") or 0) > _accounted(task) + 1e-6:
                accounting.append(task)
            if plan.finished_execution and plan.finished_execution.get("phase") == "Succeeded":
                self._record_duration(task, plan.finished_execution)

        decision = policy.decide(
            queued, running, self._nodes(), self._quotas(), self._tenant_limits(now), now=now,
            gpu_resource=state.gpu.resource_name,
            gpu_toleration={"key": state.gpu.taint_key, "operator": "Exists", "effect": "NoSchedule"},
            cpu_tasks_on_gpu_nodes=state.gpu.cpu_tasks_on_gpu_nodes,
            job_counts=self._job_counts(),
        )

        queued_by_key = {q.key: q for q in queued}
        for key in decision.admit:
            action = actions[key]
            task = action.task
            meta = task["metadata"]
            exec_id = next_execution_id(action.plan.status)
            try:
                action.workload = build_workload(
                    task, execution=exec_id, gpu=state.gpu,
                    token=task_token(state.settings.callback_secret, key[0], key[1], str(meta.get("uid"))),
                    callback_url=state.settings.callback_url, template_spec=self._template_spec(task))
            except (BuildError, TemplateError, QuantityError, ValueError) as error:
                action.plan.status = fail(action.plan.status, reason="InvalidSpec", message=str(error), now=now,
                                          generation=meta.get("generation"))
                action.plan.events.append(EventSpec("Failed", f"Cannot run: {error}", "Warning"))
                continue
            action.priority = queued_by_key[key].priority
            queued_at = queued_by_key[key].queued_at
            state.metrics.admission_wait.observe(max(0.0, (now - queued_at).total_seconds()))
            state.metrics.admissions.inc()
            action.plan.status = admit(action.plan.status, job_name=action.workload.body["metadata"]["name"],
                                       now=now, generation=meta.get("generation"))
            node = decision.placement.get(key)
            action.plan.events.append(EventSpec(
                "Admitted", f"Admitted: execution {exec_id} created as {action.workload.kind} "
                            f"{action.workload.body['metadata']['name']}" + (f" (fits {node})" if node else "")))
            tenant = state.tenant_key(task)
            tenant_pending[tenant] = max(0, tenant_pending[tenant] - 1)
            tenant_running[tenant] += 1
            tenant_gpus[tenant] += action.workload.demand.gpu_count

        for key, waiting in decision.waiting.items():
            action = actions[key]
            self._apply_waiting(action, waiting, now, mono)

        # Create the admitted workloads first, one priority level after the other (higher first), so the
        # cluster sees admissions in priority order; within a level they go out concurrently.
        admitted = [a for a in actions.values() if a.workload is not None]
        for priority in sorted({a.priority for a in admitted}, reverse=True):
            await asyncio.gather(*(self._guarded(self._create(a), self.create_sem)
                                   for a in admitted if a.priority == priority))

        # Work out the patches, then act: per-Task follow-ups go to the background (see the module doc).
        jobs_to_run: list[Awaitable[bool]] = []
        for action in actions.values():
            old = action.task.get("status") or {}
            action.patch = status_patch(old, action.plan.status)
            phase_counts[str(action.plan.status.get("phase") or "Pending")] += 1
            if action.workload is not None and not action.created:
                continue  # the Job could not be created: try again next pass; the status stays as it was
            if action.patch or action.workload or action.plan.events or action.plan.delete_workload \
                    or action.plan.delete_task or action.plan.ensure_workload:
                self._follow_up(action, now)
        for task in accounting:
            jobs_to_run.append(self._guarded(self._account(task, now)))
        jobs_to_run.append(self._guarded(self._tenant_status(now, mono, tenant_running, tenant_pending,
                                                              tenant_gpus)))
        if jobs_to_run:
            await asyncio.gather(*jobs_to_run)

        state.metrics.set_phases(phase_counts)
        depths: dict[str, int] = defaultdict(int)
        for q in queued:
            if q.key in decision.waiting:
                depths[q.queue] += 1
        state.metrics.set_queue_depths(depths)
        state.metrics.set_gpus(dict(tenant_gpus))
        if wake_at is not None:
            self.next_wake = time.monotonic() + max(0.0, (wake_at - state.clock()).total_seconds())
        else:
            self.next_wake = None

    def _apply_waiting(self, action: Action, waiting: policy.Waiting, now: datetime, mono: float) -> None:
        """Explain why a queued task waits — throttled, so a long queue is not re-patched on every pass."""
        status = action.plan.status
        meta = action.task.get("metadata") or {}
        old = action.task.get("status") or {}
        first = old.get("phase") != "Queued" or old.get("queuePosition") is None
        last = self.info_written.get(action.key, 0.0)
        message_changed = status.get("message") != waiting.message
        position_changed = status.get("queuePosition") != waiting.position
        estimate = fmt_time(waiting.estimated_start)
        estimate_changed = status.get("estimatedStartTime") != estimate
        due = (first or (message_changed and mono - last >= 1.0)
               or (position_changed and mono - last >= INFO_MIN_INTERVAL)
               or (estimate_changed and mono - self.estimate_written.get(action.key, 0.0) >= ESTIMATE_MIN_INTERVAL))
        if not due:
            return
        action.plan.status = set_waiting(status, reason=waiting.reason, message=waiting.message, now=now,
                                         position=waiting.position, estimated_start=waiting.estimated_start,
                                         generation=meta.get("generation"))
        self.info_written[action.key] = mono
        self.estimate_written[action.key] = mono
        if message_changed or first:
            action.plan.events.append(EventSpec("Waiting", waiting.message))

    def _existing_workload(self, task: Obj, exec_id: int) -> str | None:
        meta = task["metadata"]
        name = job_name(str(meta["name"]), exec_id)
        view = self.state.pods if ((task.get("spec") or {}).get("runtime") or "job") == "pod" else self.state.jobs
        found = view.get((str(meta.get("namespace")), name))
        if found is not None and _owned_by(found, task):
            return name
        return None

    def _record_duration(self, task: Obj, execution: Mapping[str, Any]) -> None:
        template = ((task.get("spec") or {}).get("template") or {}).get("name")
        start, end = parse_time(execution.get("startedAt")), parse_time(execution.get("finishedAt"))
        if template and start and end:
            count, total = self.durations.get(template, (0, 0.0))
            self.durations[template] = (count + 1, total + (end - start).total_seconds())

    # ------------------------------------------------------------------ inputs for the policy

    def _nodes(self) -> list[Any]:
        state = self.state
        out = []
        for (_, name), node in state.nodes.items.items():
            pods = [state.pods.items[k] for k in state.pods_by_node.get(name, ()) if k in state.pods.items]
            out.append(node_info(node, pods, gpu_resource=state.gpu.resource_name,
                                 gpu_label_key=state.gpu.node_label_key, gpu_label_value=state.gpu.node_label_value,
                                 product_label_key=state.gpu.product_label_key))
        return out

    def _quotas(self) -> list[policy.Quota]:
        out = []
        for (namespace, name), quota in self.state.quotas.items.items():
            hard_raw = (quota.get("status") or {}).get("hard") or (quota.get("spec") or {}).get("hard") or {}
            spec_hard = (quota.get("spec") or {}).get("hard") or {}
            hard_raw = {**hard_raw, **spec_hard}  # the spec is the newest truth
            used_raw = (quota.get("status") or {}).get("used") or {}
            out.append(policy.Quota(namespace=namespace, name=name, hard=_milli_map(hard_raw),
                                    used=_milli_map(used_raw)))
        return out

    def _job_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for namespace, _ in self.state.jobs.items:
            counts[namespace] += 1
        return counts

    def _tenant_limits(self, now: datetime) -> dict[str, policy.TenantLimits]:
        out = {}
        for (_, name), tenant in self.state.tenants.items.items():
            limits = (tenant.get("spec") or {}).get("limits") or {}
            left = None
            if limits.get("monthlyGpuHours") is not None:
                used = gpu_seconds_in_month(tenant.get("status") or {}, month_key(now))
                left = float(limits["monthlyGpuHours"]) * 3600 - used
            max_running = limits.get("maxRunning")
            out[str(name)] = policy.TenantLimits(
                max_running=int(max_running) if max_running is not None else None,
                monthly_gpu_seconds_left=left)
        return out

    # ------------------------------------------------------------------ actions

    def _follow_up(self, action: Action, now: datetime) -> None:
        """Run ``_act`` for one Task in the background, after that Task's earlier follow-ups."""
        key = action.key
        previous = self.inflight.get(key)
        if action.patch:
            self.overlay[key] = ((action.task.get("metadata") or {}).get("uid"), action.plan.status)

        async def link() -> bool:
            if previous is not None:
                await asyncio.wait([previous])
                if previous.cancelled() or previous.exception() is not None or not previous.result():
                    self.state.poke()
                    return False  # an earlier patch failed: this one was computed on top of it
            return await self._guarded(self._act(action, now))

        task = asyncio.create_task(link(), name=f"kubetask-act-{key[0]}/{key[1]}")
        self.inflight[key] = task
        self.background.add(task)
        task.add_done_callback(lambda done: self._follow_up_done(key, done))

    def _follow_up_done(self, key: Key, task: asyncio.Task[bool]) -> None:
        self.background.discard(task)
        if self.inflight.get(key) is task:
            del self.inflight[key]
            self.overlay.pop(key, None)
        elif task.cancelled() or task.exception() is not None or not task.result():
            self.overlay.pop(key, None)  # the rest of the chain will be skipped

    async def drain(self) -> None:
        """Wait until every background follow-up has finished."""
        while self.inflight:
            await asyncio.wait(list(self.inflight.values()))

    async def _guarded(self, coro: Awaitable[None], sem: asyncio.Semaphore | None = None) -> bool:
        async with sem or self.sem:
            try:
                await coro
                return True
            except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                self.state.metrics.reconcile_errors.inc()
                log.warning("action failed (will retry): %s", error)
                self.state.poke()
            except Exception:
                self.state.metrics.reconcile_errors.inc()
                log.exception("action failed (will retry)")
                self.state.poke()
            return False

    async def _act(self, action: Action, now: datetime) -> None:
        state = self.state
        client = state.client
        namespace, name = action.key
        task = action.task
        plan = action.plan

        if action.workload is not None and not action.created:
            return  # the Job could not be created: try again next pass; the status stays Queued
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
            action.task = updated

        for event in plan.events:
            self.events.put_nowait((action.task, event))

        if plan.delete_workload:
            await self._delete_workload(task, plan.status)
        if plan.delete_task:
            await client.delete(TASKS, name, namespace, propagation="Background")

    async def _create(self, action: Action) -> None:
        assert action.workload is not None
        action.created = await self._create_workload(action.task, action.workload)

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
        view = self.state.jobs if workload.kind == "Job" else self.state.pods
        try:
            created = await client.create(resource, workload.body, namespace)
        except ApiError as error:
            if not error.already_exists:
                raise
            existing = await client.get_or_none(resource, str(meta["name"]), namespace)
            if existing is None or not _owned_by(existing, task):
                log.warning("%s %s/%s exists but belongs to another Task; retrying later", workload.kind,
                            namespace, meta["name"])
                return False
            created = existing
        view.upsert(created)
        return True

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
        job = self.state.jobs.get((namespace, workload))
        if job is not None and not (job.get("metadata") or {}).get("deletionTimestamp"):
            await client.delete(JOBS, workload, namespace, propagation="Background")
        elif job is None:
            # The Job is gone; make sure no pod outlives it (a GC that lags must not hold quota forever).
            for pod in self.state.pods_of(namespace, name, exec_id):
                if not (pod.get("metadata") or {}).get("deletionTimestamp"):
                    await client.delete(PODS, str(pod["metadata"]["name"]), namespace, propagation="Background")

    async def _account(self, task: Obj, now: datetime) -> None:
        """Add a task's newly finished GPU time to its tenant's month, exactly once per second of it.

        The Task's annotation records how much of its ``gpuSeconds`` has been
        accounted; the tenant is charged the difference first, then the mark
        moves.  A crash in between may charge one execution twice, never zero.
        """
        state = self.state
        meta = task["metadata"]
        namespace = str(meta.get("namespace"))
        tenant_name, _ = state.tenant_of_namespace(namespace)
        latest = state.tasks.get((namespace, str(meta["name"]))) or task
        total = float((latest.get("status") or {}).get("gpuSeconds") or 0.0)
        delta = total - _accounted(latest)
        if delta <= 1e-6:
            return
        if tenant_name is not None:
            async with self.tenant_locks[tenant_name]:
                tenant = state.tenants.get(("", tenant_name))
                if tenant is not None:
                    finished = parse_time((latest.get("status") or {}).get("completedAt")) or now
                    usage = add_usage((tenant.get("status") or {}).get("usage"), month_key(finished), delta)
                    this_month = gpu_seconds_in_month({"usage": usage}, month_key(now))
                    updated = await state.client.patch_status(
                        TENANTS, tenant_name, {"status": {"usage": usage, "gpuSecondsThisMonth": this_month,
                                                          "month": month_key(now)}})
                    state.tenants.upsert(updated)
        try:
            updated_task = await state.client.patch(
                TASKS, str(meta["name"]), {"metadata": {"annotations": {ACCOUNTED_ANNOTATION: f"{total:.3f}"}}},
                namespace)
            state.tasks.upsert(updated_task)
        except ApiError as error:
            if not error.not_found:
                raise

    async def _tenant_status(self, now: datetime, mono: float, running: Mapping[str, int],
                             pending: Mapping[str, int], gpus: Mapping[str, int]) -> None:
        state = self.state
        for (_, name), tenant in list(state.tenants.items.items()):
            name = str(name)
            if mono - self.tenant_status_written.get(name, 0.0) < TENANT_STATUS_INTERVAL:
                continue
            status = tenant.get("status") or {}
            namespace = next((ns for ns, t in state.tenant_by_namespace.items() if t == name), "")
            live = usage_status(status, now=now, running=running.get(name, 0), pending=pending.get(name, 0),
                                gpus_in_use=gpus.get(name, 0), namespace=namespace)
            patch = {k: v for k, v in live.items() if status.get(k) != v}
            generation = (tenant.get("metadata") or {}).get("generation")
            if generation is not None and status.get("observedGeneration") != generation:
                patch["observedGeneration"] = generation
            if not patch:
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


def _settled(task: Mapping[str, Any]) -> bool:
    """A finished Task with nothing left to do (no cancel/rerun/TTL/accounting pending): skip it in passes."""
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
    return float(status.get("gpuSeconds") or 0) <= _accounted(task) + 1e-6


def _owned_by(obj: Mapping[str, Any], task: Mapping[str, Any]) -> bool:
    uid = (task.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    if not refs or uid is None:
        return True
    return any(ref.get("uid") == uid for ref in refs)


def _accounted(task: Mapping[str, Any]) -> float:
    raw = ((task.get("metadata") or {}).get("annotations") or {}).get(ACCOUNTED_ANNOTATION)
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0


def _milli_map(raw: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        with contextlib.suppress(QuantityError):
            out[str(key)] = to_milli(value)
    return out


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, *, seconds: float) -> bool:
    """Wait for either event or the timeout; True if ``stop`` is set."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


__all__ = ["Scheduler"]
