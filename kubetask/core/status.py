"""Task status derivation (pure): from Job/Pod state and the clock to the next ``status``.

Two layers:

* :func:`observe_execution` reads one execution's Job and Pods and says what
  happened: pending, running, succeeded or failed — with the exit code, a
  reason (``OOMKilled``, ``DeadlineExceeded``, ``ImagePullBackOff``, ``Error`` …)
  turned into a sentence a person understands, and the termination message
  (parsed as JSON when it is JSON) as the result.
* :func:`reconcile_task` is the lifecycle state machine (DESIGN §3): given a
  Task, what its current execution looks like, the phases of its dependencies
  and "now", it returns the new status, the merge patch that gets there, the
  Events to record, and what to do to the cluster (delete the workload,
  re-create it, delete the Task).  Admission itself is the queue's decision
  (:mod:`kubetask.core.queue`); :func:`admit` and :func:`set_waiting` apply it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kubetask.core.objects import ANNOTATION_RERUN, ANNOTATION_SUBMITTED_AT
from kubetask.core.phases import CANCELLED, FAILED, PENDING, QUEUED, RUNNING, SUCCEEDED
from kubetask.core.times import format_time, parse_time

TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
RERUN_ANNOTATION = ANNOTATION_RERUN

COND_ADMITTED = "Admitted"
COND_FINISHED = "Finished"
COND_CANCEL_IGNORED = "CancelIgnored"

IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERROR_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
MAX_BACKOFF_SECONDS = 3600

EventType = Literal["Normal", "Warning"]


# --------------------------------------------------------------------------- time

fmt_time = format_time
"""Kubernetes' timestamp form (``2025-03-01T14:30:00Z``); the one formatter of :mod:`kubetask.core.times`."""


def human_time(value: datetime, now: datetime) -> str:
    """``14:30 UTC`` today, else ``2025-03-01 14:30 UTC``."""
    value = value.astimezone(UTC)
    if value.date() == now.astimezone(UTC).date():
        return value.strftime("%H:%M:%S UTC") if value.second else value.strftime("%H:%M UTC")
    return value.strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- observation


@dataclass
class Observation:
    """What one execution's Job and Pods say."""

    state: Literal["pending", "running", "succeeded", "failed", "gone"]
    pod_name: str | None = None
    node_name: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    termination_message: str | None = None
    workload_active: bool = False  # the Job (or Pod) still exists and is not finished
    pods_alive: bool = False  # some pod is not terminal yet (counts against quota / nodes)


def parse_result(message: str | None) -> Any:
    """The task's result from its termination message: JSON when it parses, else the text."""
    if message is None:
        return None
    text = message.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def readable_reason(reason: str | None, exit_code: int | None, detail: str | None = None, *,
                    timeout_seconds: int | None = None, memory: str | None = None,
                    image: str | None = None) -> str:
    """A sentence a person can act on, for the way an execution ended."""
    detail = (detail or "").strip()
    if reason == "OOMKilled":
        limit = f" of {memory}" if memory else ""
        return (f"Out of memory: the container was killed after exceeding its memory limit{limit}"
                f" (exit code {exit_code if exit_code is not None else 137}); request more memory")
    if reason == "DeadlineExceeded":
        after = f" after {timeout_seconds} s" if timeout_seconds else ""
        return f"Timed out: the task was still running{after} (timeoutSeconds) and was stopped"
    if reason in IMAGE_PULL_REASONS or reason == "ImagePullBackOff":
        what = f"image '{image}'" if image else "the image"
        return f"Cannot pull {what}: check the image name and registry access" + (f" ({detail})" if detail else "")
    if reason in CONFIG_ERROR_REASONS:
        return f"The container could not be created ({reason})" + (f": {detail}" if detail else "")
    if reason == "Cancelled":
        return "Cancelled by request"
    if reason == "Evicted":
        return "The pod was evicted from its node" + (f": {detail}" if detail else "")
    if exit_code is not None and exit_code != 0:
        tail = detail.splitlines()[-1][:300] if detail else ""
        return f"Exited with code {exit_code}" + (f": {tail}" if tail else "")
    if detail:
        return detail[:500]
    return reason or "Failed"


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = list((pod.get("status") or {}).get("containerStatuses") or [])
    for status in statuses:
        if status.get("name") == "task":
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def _pod_created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def observe_execution(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> Observation:
    """Derive an execution's state from its Job (``None`` for a bare Pod) and its Pods."""
    pods = sorted(pods, key=_pod_created)
    pod = pods[-1] if pods else None
    pods_alive = any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods)
    obs = Observation(state="pending", pods_alive=pods_alive)
    job_finished = False
    if job is not None:
        job_finished = bool(_job_condition(job, "Complete") or _job_condition(job, "Failed")
                            or _job_condition(job, "SuccessCriteriaMet") or _job_condition(job, "FailureTarget"))
        obs.workload_active = not job_finished and not (job.get("metadata") or {}).get("deletionTimestamp")
    elif pod is not None:
        obs.workload_active = pods_alive and not (pod.get("metadata") or {}).get("deletionTimestamp")
    if job is None and pod is None:
        obs.state = "gone"
        return obs

    terminated: Mapping[str, Any] = {}
    if pod is not None:
        pmeta = pod.get("metadata") or {}
        pstatus = pod.get("status") or {}
        obs.pod_name = pmeta.get("name")
        obs.node_name = (pod.get("spec") or {}).get("nodeName")
        cstatus = _container_status(pod)
        state = cstatus.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        running = state.get("running") or {}
        if running:
            obs.state = "running"
            obs.started_at = parse_time(running.get("startedAt")) or parse_time(pstatus.get("startTime"))
        if terminated:
            obs.started_at = parse_time(terminated.get("startedAt")) or parse_time(pstatus.get("startTime"))
            obs.finished_at = parse_time(terminated.get("finishedAt"))
            obs.exit_code = terminated.get("exitCode")
            obs.termination_message = terminated.get("message")
            obs.reason = terminated.get("reason")
            obs.state = "succeeded" if terminated.get("exitCode") == 0 else "failed"
        elif waiting.get("reason") in IMAGE_PULL_REASONS + CONFIG_ERROR_REASONS:
            reason = str(waiting.get("reason"))
            obs.state = "failed"
            obs.reason = "ImagePullBackOff" if reason in IMAGE_PULL_REASONS else reason
            obs.message = waiting.get("message")
        elif pstatus.get("phase") in ("Succeeded", "Failed") and not terminated:
            obs.state = "succeeded" if pstatus["phase"] == "Succeeded" else "failed"
            obs.reason = pstatus.get("reason") or ("Completed" if obs.state == "succeeded" else "Error")
            obs.message = pstatus.get("message")
            obs.started_at = obs.started_at or parse_time(pstatus.get("startTime"))
        elif pstatus.get("phase") == "Running" and obs.state == "pending":
            obs.state = "running"
            obs.started_at = parse_time(pstatus.get("startTime"))
        if pstatus.get("reason") == "DeadlineExceeded":
            obs.state, obs.reason = "failed", "DeadlineExceeded"
        elif job is not None and obs.workload_active and obs.state == "failed" and pmeta.get("deletionTimestamp"):
            # A pod that failed because it was deleted under a running Job was stopped by someone
            # else: the job controller past activeDeadlineSeconds deletes the pod before it writes
            # its DeadlineExceeded verdict, and an eviction's exit 143 is no verdict either. The
            # Job's condition says how the execution ended; the pod's details stay for it.
            obs.state = "running"

    if job is not None:
        # The Job controller states its verdict first (FailureTarget / SuccessCriteriaMet, e.g. reason
        # DeadlineExceeded while it stops the pod) and sets Failed / Complete once the pods are gone.
        failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
        complete = _job_condition(job, "Complete") or _job_condition(job, "SuccessCriteriaMet")
        jstatus = job.get("status") or {}
        if failed:
            job_reason = failed.get("reason")
            if job_reason == "DeadlineExceeded":
                obs.state, obs.reason = "failed", "DeadlineExceeded"
                obs.finished_at = obs.finished_at or parse_time(failed.get("lastTransitionTime"))
            elif obs.state in ("pending", "running") and not pods_alive:
                # The Job gave up but the pod's last state is not (yet) visible.
                obs.state = "failed"
                obs.reason = obs.reason or job_reason or "Error"
                obs.message = obs.message or failed.get("message")
                obs.finished_at = parse_time(failed.get("lastTransitionTime"))
        elif complete and obs.state in ("pending", "running") and not pods_alive:
            obs.state = "succeeded"
            obs.finished_at = parse_time(jstatus.get("completionTime") or complete.get("lastTransitionTime"))
        obs.started_at = obs.started_at or (parse_time(jstatus.get("startTime")) if obs.state != "pending"
                                            else None)
    if obs.state in ("succeeded", "failed") and obs.finished_at is None:
        obs.finished_at = None  # the caller stamps "now"
    return obs


# --------------------------------------------------------------------------- conditions


def set_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
                  now: datetime, generation: int | None = None) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set; lastTransitionTime moves only when the status flips."""
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = fmt_time(now)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = previous["lastTransitionTime"]
    cond: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message,
                            "lastTransitionTime": transition}
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    return out


def get_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


# --------------------------------------------------------------------------- reconcile


@dataclass
class EventSpec:
    reason: str
    message: str
    type: EventType = "Normal"


@dataclass
class Plan:
    """The outcome of :func:`reconcile_task`."""

    status: dict[str, Any]
    events: list[EventSpec] = field(default_factory=list)
    delete_workload: bool = False
    ensure_workload: bool = False
    delete_task: bool = False
    admissible: bool = False
    requeue_at: datetime | None = None
    finished_execution: dict[str, Any] | None = None  # set when an execution ended in this step


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level merge patch from ``old`` to ``new`` (lists are replaced whole, as merge patch does)."""
    patch: dict[str, Any] = {}
    for key in set(old) | set(new):
        if old.get(key) != new.get(key):
            patch[key] = new.get(key)
    return patch


def _gpus(spec: Mapping[str, Any]) -> int:
    return int((spec.get("resources") or {}).get("gpus") or 0)


def _exec_gpu_seconds(execution: Mapping[str, Any], gpus: int) -> float:
    start = parse_time(execution.get("startedAt"))
    end = parse_time(execution.get("finishedAt"))
    if not start or not end or gpus <= 0:
        return 0.0
    return max(0.0, (end - start).total_seconds()) * gpus


def retry_delay(backoff_seconds: int, retry: int) -> float:
    """Exponential backoff: ``backoff · 2^(retry-1)`` seconds before retry number ``retry`` (1-based)."""
    return float(min(MAX_BACKOFF_SECONDS, max(0, backoff_seconds) * 2 ** max(0, retry - 1)))


def _finish(status: dict[str, Any], phase: str, reason: str, message: str, now: datetime,
            generation: int | None) -> None:
    status["phase"] = phase
    status["completedAt"] = fmt_time(now)
    status["message"] = message
    status["queuePosition"] = None
    status["estimatedStartTime"] = None
    status["conditions"] = set_condition(status.get("conditions") or [], COND_FINISHED, "True", phase if
                                         reason in ("", phase) else reason, message, now, generation)
    admitted = get_condition(status, COND_ADMITTED)
    if admitted is not None and admitted.get("status") != "True":
        status["conditions"] = set_condition(status["conditions"], COND_ADMITTED, "False", reason or phase,
                                             message, now, generation)


def reconcile_task(
    task: Mapping[str, Any],
    *,
    observation: Observation | None,
    dependencies: Mapping[str, str | None],
    now: datetime,
) -> Plan:
    """One level-triggered step of the Task lifecycle.

    ``observation`` describes the current (last, unfinished) execution, if any;
    ``dependencies`` maps each ``dependsOn`` name to that Task's phase (``None``
    when no such Task exists).
    """
    meta = task.get("metadata") or {}
    spec = task.get("spec") or {}
    old = task.get("status") or {}
    # A shallow copy: every nested value this function changes (executions, conditions) is rebuilt,
    # never edited in place, so the stored object stays as the watch delivered it.
    status: dict[str, Any] = dict(old)
    generation = meta.get("generation")
    plan = Plan(status=status)
    if meta.get("deletionTimestamp"):
        return plan

    if generation is not None:
        status["observedGeneration"] = generation
    if not status.get("createdAt"):
        status["createdAt"] = meta.get("creationTimestamp") or fmt_time(now)
    executions: list[dict[str, Any]] = [dict(e) for e in status.get("executions") or []]
    status["executions"] = executions
    phase = status.get("phase")
    if phase is None:
        phase = status["phase"] = PENDING
        status["retryCount"] = 0
        plan.events.append(EventSpec("Created", "Task accepted; waiting to be queued"))
    gpus = _gpus(spec)

    # A rerun request (REST POST /tasks/{id}/execute) on a finished Task: start a fresh execution.
    rerun = (meta.get("annotations") or {}).get(RERUN_ANNOTATION)
    if rerun and rerun != status.get("handledRerun") and phase in TERMINAL and not spec.get("cancel"):
        status["handledRerun"] = rerun
        for key in ("completedAt", "startedAt", "nextRetryAt", "nodeName", "result", "resultSource",
                    "queuedAt", "message"):
            status[key] = None
        status["retryCount"] = 0
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") not in (COND_FINISHED, COND_CANCEL_IGNORED)]
        phase = status["phase"] = PENDING
        plan.events.append(EventSpec("Rerun", "Rerun requested: a new execution will start"))

    current = executions[-1] if executions and not executions[-1].get("finishedAt") else None

    # --- cancel -------------------------------------------------------------------------
    if spec.get("cancel"):
        if phase in TERMINAL:
            if phase != CANCELLED and not get_condition(status, COND_CANCEL_IGNORED):
                message = f"Cancel ignored: the task already {phase.lower()}"
                status["conditions"] = set_condition(status.get("conditions") or [], COND_CANCEL_IGNORED, "True",
                                                     "AlreadyFinished", message, now, generation)
                plan.events.append(EventSpec("CancelIgnored", message, "Warning"))
            return _with_ttl(plan, task, status, old, now)
        if current is not None and observation is not None and (
                observation.workload_active or observation.pods_alive):
            plan.delete_workload = observation.workload_active
            if status.get("message") != "Cancelling: stopping the running execution":
                status["message"] = "Cancelling: stopping the running execution"
                plan.events.append(EventSpec("Cancelling", "Cancel requested: deleting the running Job"))
            return plan
        if current is not None:
            current["finishedAt"] = fmt_time(now)
            current["reason"] = "Cancelled"
            current["message"] = readable_reason("Cancelled", None)
            current["phase"] = CANCELLED
            if observation is not None:
                current["exitCode"] = observation.exit_code
            plan.finished_execution = current
        status["gpuSeconds"] = _total_gpu_seconds(executions, gpus)
        _finish(status, CANCELLED, "Cancelled", "Cancelled by request", now, generation)
        status["nextRetryAt"] = None
        plan.events.append(EventSpec("Cancelled", "Task cancelled"))
        return _with_ttl(plan, task, status, old, now)

    if phase in TERMINAL:
        return _with_ttl(plan, task, status, old, now)

    # --- an execution in flight ---------------------------------------------------------
    if current is not None:
        obs = observation or Observation(state="gone")
        if obs.state == "gone":
            plan.ensure_workload = True  # admitted, but its Job is missing: create it (idempotent name)
            return plan
        # A pod that has not started is not news yet: its name and node are written with its start
        # (or its end), in one status write instead of three.
        if obs.pod_name and obs.state != "pending":
            current["podName"] = obs.pod_name
        if obs.node_name and obs.state != "pending":
            current["nodeName"] = obs.node_name
            status["nodeName"] = obs.node_name
        if obs.state in ("running", "succeeded", "failed") and obs.started_at is not None \
                and not current.get("startedAt"):
            current["startedAt"] = fmt_time(obs.started_at)
            if not status.get("startedAt"):
                status["startedAt"] = current["startedAt"]
            current["phase"] = RUNNING
            on = f" on {obs.node_name}" if obs.node_name else ""
            plan.events.append(EventSpec("Started", f"Execution {current.get('id')} started{on}"))
        if status.get("phase") != RUNNING:
            status["phase"] = RUNNING
        if obs.state in ("pending", "running"):
            if obs.state == "running" and status.get("message") != "Running":
                status["message"] = "Running"
            return plan

        # The execution has ended.
        finished = obs.finished_at or now
        current["finishedAt"] = fmt_time(finished)
        if not current.get("startedAt") and obs.started_at is not None:
            current["startedAt"] = fmt_time(obs.started_at)
        current["exitCode"] = obs.exit_code
        # Only a Job whose pod cannot end by itself (an image that never pulls) is deleted: once the
        # pod has terminated, the Job controller finishes the Job moments later (it keeps the record
        # and the pod's logs); a real Job controller lags the pod, so "still active" is normal here.
        plan.delete_workload = obs.workload_active and obs.pods_alive
        resources = spec.get("resources") or {}
        if obs.state == "succeeded":
            current["phase"] = SUCCEEDED
            current["reason"] = "Completed"
            current["message"] = None
            if status.get("resultSource") != "callback":
                result = parse_result(obs.termination_message)
                if result is not None:
                    status["result"] = result
                    status["resultSource"] = "terminationMessage"
            plan.finished_execution = current
            status["gpuSeconds"] = _total_gpu_seconds(executions, gpus)
            status["nextRetryAt"] = None
            _finish(status, SUCCEEDED, "Succeeded", "Completed successfully", now, generation)
            plan.events.append(EventSpec("Succeeded", f"Execution {current.get('id')} succeeded"))
            return _with_ttl(plan, task, status, old, now)

        reason = obs.reason if obs.reason and obs.reason != "Completed" else "Error"
        message = readable_reason(reason, obs.exit_code, obs.termination_message or obs.message,
                                  timeout_seconds=spec.get("timeoutSeconds"), memory=resources.get("memory"),
                                  image=spec.get("image"))
        current["phase"] = FAILED
        current["reason"] = reason
        current["message"] = message
        plan.finished_execution = current
        status["gpuSeconds"] = _total_gpu_seconds(executions, gpus)
        retries = int(status.get("retryCount") or 0)
        if retries < int(spec.get("maxRetries") or 0):
            retries += 1
            delay = retry_delay(int(spec.get("retryBackoffSeconds", 10) or 0), retries)
            at = now + timedelta(seconds=delay)
            status["retryCount"] = retries
            status["nextRetryAt"] = fmt_time(at)
            status["phase"] = PENDING
            wait = f"retry {retries} of {spec.get('maxRetries')} not before {human_time(at, now)}"
            status["message"] = f"{message}; {wait}"
            status["conditions"] = set_condition(status.get("conditions") or [], COND_ADMITTED, "False",
                                                 "RetryBackoff", wait, now, generation)
            plan.events.append(EventSpec("Retrying", f"Execution {current.get('id')} failed ({message}); {wait}",
                                         "Warning"))
            plan.requeue_at = at
            return plan
        _finish(status, FAILED, reason, message, now, generation)
        plan.events.append(EventSpec("Failed", f"Execution {current.get('id')} failed: {message}", "Warning"))
        return _with_ttl(plan, task, status, old, now)

    # --- waiting to be queued -------------------------------------------------------------
    next_retry = parse_time(status.get("nextRetryAt"))
    scheduled = parse_time(spec.get("scheduledAt"))
    deps = list(spec.get("dependsOn") or [])
    failed_deps = [d for d in deps if dependencies.get(d) in (FAILED, CANCELLED)]
    if failed_deps:
        dep = failed_deps[0]
        message = f"Dependency '{dep}' {str(dependencies[dep]).lower()}, so this task cannot run"
        _finish(status, FAILED, "DependencyFailed", message, now, generation)
        plan.events.append(EventSpec("Failed", message, "Warning"))
        return _with_ttl(plan, task, status, old, now)

    wait_reason, wait_message = "", ""
    if next_retry is not None and next_retry > now:
        wait_reason = "RetryBackoff"
        wait_message = f"retry {status.get('retryCount')} of {spec.get('maxRetries')} not before " \
                       f"{human_time(next_retry, now)}"
        plan.requeue_at = next_retry
    elif scheduled is not None and scheduled > now:
        wait_reason, wait_message = "Scheduled", f"scheduled for {human_time(scheduled, now)}"
        plan.requeue_at = scheduled
    else:
        waiting = [d for d in deps if dependencies.get(d) != SUCCEEDED]
        if waiting:
            missing = [d for d in waiting if dependencies.get(d) is None]
            wait_reason = "Dependencies"
            wait_message = f"waiting for {len(waiting)} of {len(deps)} dependencies"
            if missing:
                wait_message += f" ({', '.join(missing)} not found)"
    if wait_reason:
        if status.get("phase") != PENDING:
            status["phase"] = PENDING
        if status.get("message") != wait_message:
            status["message"] = wait_message
            status["conditions"] = set_condition(status.get("conditions") or [], COND_ADMITTED, "False",
                                                 wait_reason, wait_message, now, generation)
            plan.events.append(EventSpec("Waiting", wait_message))
        return plan

    if status.get("phase") != QUEUED:
        # A fresh Task was queued when it was submitted: the same instant on every pass until its status is
        # written (a waiting Task's first write is held back, see kubetask.core.cycle), so its place holds.
        first = old.get("phase") is None and _submitted_at(meta, now)
        status["phase"] = QUEUED
        status["queuedAt"] = fmt_time(first or now)
        status["nextRetryAt"] = None
        plan.events.append(EventSpec("Queued", "Task queued for admission"))
    plan.admissible = True
    return plan


def _submitted_at(meta: Mapping[str, Any], now: datetime) -> datetime | None:
    """When a Task was submitted: its ``kubetask.io/submitted-at`` stamp (the API's or the webhook's), else
    its creation time; never later than ``now``."""
    stamp = parse_time((meta.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT)) or parse_time(
        meta.get("creationTimestamp"))
    return min(stamp, now) if stamp is not None else None


def _total_gpu_seconds(executions: list[dict[str, Any]], gpus: int) -> float:
    return round(sum(_exec_gpu_seconds(e, gpus) for e in executions), 3)


def _with_ttl(plan: Plan, task: Mapping[str, Any], status: dict[str, Any], old: Mapping[str, Any],
              now: datetime) -> Plan:
    ttl = (task.get("spec") or {}).get("ttlSecondsAfterFinished")
    done = parse_time(status.get("completedAt"))
    if ttl is not None and done is not None and status.get("phase") in TERMINAL:
        # completedAt has second precision: count from the end of that second, so it is never early.
        at = done + timedelta(seconds=int(ttl) + (0 if done.microsecond else 1))
        if at <= now:
            plan.delete_task = True
        else:
            plan.requeue_at = at
    return plan


def admit(status: Mapping[str, Any], *, job_name: str, now: datetime, generation: int | None = None,
          message: str = "") -> dict[str, Any]:
    """The status after admitting the next execution (phase Running, a new ``executions[]`` entry)."""
    new = dict(status)  # shallow: executions and conditions are rebuilt below
    executions = [dict(e) for e in new.get("executions") or []]
    execution_id = len(executions) + 1
    executions.append({"id": execution_id, "jobName": job_name, "phase": PENDING})
    new["executions"] = executions
    new["phase"] = RUNNING
    new["queuePosition"] = None
    new["estimatedStartTime"] = None
    new["message"] = message or f"Admitted: execution {execution_id} created as {job_name}"
    new["conditions"] = set_condition(new.get("conditions") or [], COND_ADMITTED, "True", "Admitted",
                                      new["message"], now, generation)
    return new


def set_waiting(status: Mapping[str, Any], *, reason: str, message: str, now: datetime,
                position: int | None, estimated_start: datetime | None,
                generation: int | None = None) -> dict[str, Any]:
    """The status of a Queued task the queue did not admit: why, its position, its estimated start."""
    new = dict(status)  # shallow: conditions are rebuilt by set_condition
    new["queuePosition"] = position
    new["estimatedStartTime"] = fmt_time(estimated_start)
    new["message"] = message
    new["conditions"] = set_condition(new.get("conditions") or [], COND_ADMITTED, "False", reason, message,
                                      now, generation)
    return new


def next_execution_id(status: Mapping[str, Any]) -> int:
    return len(status.get("executions") or []) + 1


def current_execution(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The last execution if it has not finished yet."""
    executions = status.get("executions") or []
    if executions and not executions[-1].get("finishedAt"):
        return dict(executions[-1])
    return None


def fail(status: Mapping[str, Any], *, reason: str, message: str, now: datetime,
         generation: int | None = None) -> dict[str, Any]:
    """The status of a Task that cannot run at all (bad spec, unknown template …): Failed with the reason."""
    new = dict(status)  # shallow: _finish rebuilds the conditions
    _finish(new, FAILED, reason, message, now, generation)
    return new
