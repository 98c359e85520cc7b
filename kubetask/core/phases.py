"""Task phases (``status.phase``) and the public status words every client reads.

The CRD's phases are ``Pending | Queued | Running | Succeeded | Failed | Cancelled``
(:class:`kubetask.core.models.Phase`).  The REST API speaks lowercase words
(``pending queued running completed failed cancelled``, :func:`public_status`):

* ``running`` means started on a node: a task the operator has admitted (phase ``Running``,
  its Job created) whose pod has not started yet is still waiting, ``queued``;
* a requested cancel reads ``cancelled`` at once;
* the fine-grained state of a waiting task has its own field (:func:`queue_state`).

Filters accept any case and every seed's synonyms (:func:`status_word`); ``pending`` and
``queued`` both select every waiting task (:func:`filter_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetask.core.models import Phase

PENDING, QUEUED, RUNNING = Phase.PENDING.value, Phase.QUEUED.value, Phase.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = Phase.SUCCEEDED.value, Phase.FAILED.value, Phase.CANCELLED.value

TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED, CANCELLED})
WAITING_PHASES = frozenset({PENDING, QUEUED})
"""Not admitted yet: waiting for dependencies, a schedule, a retry or capacity."""

PHASE_TO_STATUS: dict[str, str] = {
    PENDING: "pending",
    QUEUED: "queued",
    RUNNING: "running",
    SUCCEEDED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled",
}
STATUS_TO_PHASE: dict[str, str] = {v: k for k, v in PHASE_TO_STATUS.items()}
PUBLIC_STATUSES: tuple[str, ...] = ("pending", "queued", "running", "completed", "failed", "cancelled")
WAITING_STATUSES = frozenset({"pending", "queued"})

_SYNONYMS: dict[str, str] = {}
for _status, _words in {
    "pending": ["pending", "waiting", "created", "submitted", "new", "scheduled", "deferred", "blocked"],
    "queued": ["queued", "enqueued", "ready", "claimed", "admitted"],
    "running": ["running", "in_progress", "inprogress", "started", "active", "processing", "executing",
                "assigned", "run"],
    "completed": ["completed", "complete", "success", "successful", "succeeded", "succeed", "done",
                  "finished", "ok", "passed"],
    "failed": ["failed", "failure", "fail", "error", "errored", "errors", "timeout", "timed_out", "crashed"],
    "cancelled": ["cancelled", "canceled", "cancel", "aborted", "revoked", "killed", "stopped", "terminated"],
}.items():
    for _word in _words:
        _SYNONYMS[_word] = _status


def status_word(value: str) -> str | None:
    """Any case or seed synonym (``PENDING``, ``success``, ``in-progress``, ``canceled``) -> the public
    status word; ``None`` for a word no seed uses."""
    return _SYNONYMS.get(value.strip().lower().replace("-", "_").replace(" ", "_"))


def task_phase(obj: Mapping[str, Any]) -> str:
    """The effective phase: ``status.phase``, ``Pending`` before the operator has looked at the task."""
    phase = (obj.get("status") or {}).get("phase")
    return str(phase) if phase else PENDING


def is_terminal(obj: Mapping[str, Any]) -> bool:
    return task_phase(obj) in TERMINAL_PHASES


def cancel_requested(obj: Mapping[str, Any]) -> bool:
    """``spec.cancel`` is set on a task that has not finished yet."""
    return bool((obj.get("spec") or {}).get("cancel")) and not is_terminal(obj)


def started(obj: Mapping[str, Any]) -> bool:
    """The current execution's pod has started on a node (before any execution: ``status.startedAt``)."""
    status = obj.get("status") or {}
    executions = status.get("executions") or []
    if executions:
        return bool(executions[-1].get("startedAt"))
    return bool(status.get("startedAt"))


def public_status(obj: Mapping[str, Any]) -> str:
    """The lowercase public status: ``running`` only once started on a node; a requested cancel shows as
    ``cancelled`` at once."""
    if cancel_requested(obj):
        return "cancelled"
    phase = task_phase(obj)
    if phase == RUNNING and not started(obj):
        return "queued"  # admitted, its pod not started yet: still waiting
    return PHASE_TO_STATUS.get(phase, phase.lower())


WAITING = "waiting"
"""The filter state of every waiting task."""


def filter_state(obj: Mapping[str, Any]) -> str:
    """What a status filter matches: ``waiting`` for every task that waits (``pending`` and ``queued`` alike),
    else the public status."""
    status = public_status(obj)
    return WAITING if status in WAITING_STATUSES else status


def filter_key(word: str) -> str:
    """A public status word -> the :func:`filter_state` it selects."""
    return WAITING if word in WAITING_STATUSES else word


def _admitted_reason(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Admitted":
            return str(cond.get("reason") or "")
    return ""


QUEUE_STATES = ("submitted", "waiting_for_dependencies", "scheduled", "retry_backoff", "pending", "queued",
                "starting", "running", "cancelling", "completed", "failed", "cancelled")


def queue_state(obj: Mapping[str, Any]) -> str:
    """The fine-grained state (the REST field ``queue_state``): for a waiting task, what it waits for.

    ``submitted`` (no status written yet: just created, or runnable but waiting so briefly that the operator
    has not written its reason yet), ``waiting_for_dependencies``, ``scheduled``
    (``scheduledAt`` in the future), ``retry_backoff``, ``pending`` (waiting for another reason),
    ``queued`` (runnable, waiting for admission: capacity, limits, priority), ``starting`` (admitted,
    its pod not started yet); then ``running``, ``cancelling`` and the final ``completed``, ``failed``,
    ``cancelled``."""
    phase = task_phase(obj)
    if cancel_requested(obj):
        return "cancelling"
    if phase in TERMINAL_PHASES:
        return PHASE_TO_STATUS[phase]
    status = obj.get("status") or {}
    if phase == RUNNING:
        return "running" if started(obj) else "starting"
    if phase == QUEUED:
        return "queued"
    if not status.get("phase"):
        return "submitted"
    return {"Dependencies": "waiting_for_dependencies", "Scheduled": "scheduled",
            "RetryBackoff": "retry_backoff"}.get(_admitted_reason(status), "pending")
