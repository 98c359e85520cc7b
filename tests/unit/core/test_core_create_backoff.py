"""Job creates the apiserver refuses: the backoff decision and what the cycle does with it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.cycle import (
    CreateBackoff,
    CycleSettings,
    Snapshot,
    TaskView,
    after_create_failure,
    plan_pass,
)
from kubetask.core.scheduling import MILLI, NodeInfo, to_milli

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NS = "kubetask-alice"
SETTINGS = CycleSettings(callback_secret="s")
INVALID = 'Job.batch "t-1" is invalid: spec.template.annotations: Invalid value: "bad key": name part must ...'


def node() -> NodeInfo:
    return NodeInfo(name="cpu", labels={}, taints=[],
                    allocatable={"gpus": 0, "cpu": 64 * MILLI, "memory": to_milli("512Gi")},
                    used={"gpus": 0, "cpu": 0, "memory": 0}, gpu_product=None, is_gpu_node=False)


def task(name: str = "t", status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1,
                         "creationTimestamp": "2025-03-01T11:00:00Z"},
            "spec": {"image": "busybox", "user": "alice", "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"}},
            "status": status or {}}


def one_pass(obj: dict[str, Any], backoff: dict[tuple[str, str], CreateBackoff], at: datetime = NOW) -> Any:
    key = (NS, obj["metadata"]["name"])
    snapshot = Snapshot(changed=[TaskView(task=obj, tenant="alice")], tasks={key: obj}, queued={}, running={},
                        nodes=[node()], create_backoff=backoff)
    return plan_pass(snapshot, at, SETTINGS)


def rejections(count: int) -> CreateBackoff | None:
    backoff = None
    for i in range(count):
        backoff = after_create_failure(backoff, status=422, message=INVALID, now=NOW + timedelta(seconds=i),
                                       settings=SETTINGS)
    return backoff


def test_a_refused_create_is_retried_after_1_2_and_4_seconds_then_given_up() -> None:
    waits, backoff, now = [], None, NOW
    for _ in range(4):
        backoff = after_create_failure(backoff, status=422, message=INVALID, now=now, settings=SETTINGS)
        waits.append((backoff.retry_at - now).total_seconds())
        now = backoff.retry_at
    assert waits[:3] == [1.0, 2.0, 4.0]
    assert backoff is not None and backoff.give_up and backoff.rejections == 4 and backoff.message == INVALID


@pytest.mark.parametrize("status", [400, 422])
def test_bad_request_and_invalid_are_rejections(status: int) -> None:
    assert after_create_failure(None, status=status, message="x", now=NOW, settings=SETTINGS).rejections == 1


@pytest.mark.parametrize("status", [None, 403, 409, 429, 500, 503, 504])
def test_transient_failures_retry_for_ever_with_a_capped_backoff(status: int | None) -> None:
    backoff = None
    for _ in range(50):
        backoff = after_create_failure(backoff, status=status, message="busy", now=NOW, settings=SETTINGS)
        assert not backoff.give_up
        assert timedelta(seconds=1) <= backoff.retry_at - NOW <= timedelta(seconds=SETTINGS.create_backoff_max_seconds)
    assert backoff is not None and backoff.retry_at - NOW == timedelta(seconds=SETTINGS.create_backoff_max_seconds)


def test_transient_failures_in_between_do_not_count_as_rejections() -> None:
    backoff = None
    for status in (422, 503, 422, 503, 422):
        backoff = after_create_failure(backoff, status=status, message="m", now=NOW, settings=SETTINGS)
    assert backoff is not None and backoff.rejections == 3 and not backoff.give_up


def test_without_backoff_the_task_is_admitted() -> None:
    plan = one_pass(task(), {})
    assert plan.admitted == [(NS, "t")]


def test_a_task_backing_off_is_not_queued_and_comes_back_when_due() -> None:
    backoff = rejections(1)
    assert backoff is not None
    plan = one_pass(task(), {(NS, "t"): backoff})
    assert plan.admitted == []
    assert plan.queued.get((NS, "t")) is None
    assert plan.requeue[(NS, "t")] == backoff.retry_at
    due = one_pass(task(), {(NS, "t"): backoff}, at=backoff.retry_at)
    assert due.admitted == [(NS, "t")]


def test_given_up_the_task_fails_with_the_apiservers_message_and_an_event() -> None:
    backoff = rejections(4)
    assert backoff is not None and backoff.give_up
    plan = one_pass(task(), {(NS, "t"): backoff})
    action = plan.actions[(NS, "t")]
    assert plan.admitted == []
    assert action.plan.status["phase"] == "Failed"
    assert action.patch["phase"] == "Failed" and action.patch["message"] == INVALID
    reasons = {c.get("reason") for c in action.plan.status.get("conditions") or []}
    assert "JobRejected" in reasons
    assert [(e.reason, e.type) for e in action.plan.events] == [("JobRejected", "Warning")]
    assert INVALID in action.plan.events[0].message
    assert plan.backoff_done == [(NS, "t")]


def test_a_task_no_longer_waiting_ends_its_backoff() -> None:
    backoff = rejections(1)
    assert backoff is not None
    cancelled = {**task(), "spec": {**task()["spec"], "cancel": True}}
    plan = one_pass(cancelled, {(NS, "t"): backoff})
    assert plan.backoff_done == [(NS, "t")]
    assert plan.admitted == []


def test_event_messages_say_what_happens_next() -> None:
    first = rejections(1)
    last = rejections(4)
    assert first is not None and last is not None
    assert "attempt 1" in first.event_message("t-1") and "retrying at 12:00:01" in first.event_message("t-1")
    assert "giving up" in last.event_message("t-1") and INVALID in last.event_message("t-1")
