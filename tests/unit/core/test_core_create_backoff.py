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


def failing(count: int, status: int, message: str) -> tuple[list[float], CreateBackoff | None]:
    """``count`` failed creates in a row, each tried when the last one's backoff said: the waits, the last backoff."""
    waits: list[float] = []
    backoff, now = None, NOW
    for _ in range(count):
        backoff = after_create_failure(backoff, status=status, message=message, now=now, settings=SETTINGS)
        waits.append((backoff.retry_at - now).total_seconds())
        now = backoff.retry_at
    return waits, backoff


def test_a_refused_create_is_retried_after_1_2_and_4_seconds_then_given_up() -> None:
    waits, backoff = failing(4, 422, INVALID)
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


QUOTA_REFUSAL = ('pods "small-243-1" is forbidden: exceeded quota: kubetask-quota, requested: '
                 'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=20, limited: requests.nvidia.com/gpu=20')


def test_a_quota_refusal_is_retried_once_soon_then_as_any_failure() -> None:
    # The quota admission refuses on its cached copy of the quota, a moment behind the recount the
    # operator admitted on: the next try a fifth of a second later usually passes.  Refused again,
    # the quota is really full, and the usual doubling (1 s, 2 s, ...) keeps it from a tight loop.
    waits, backoff = failing(12, 403, QUOTA_REFUSAL)
    assert waits[:5] == [0.2, 1.0, 2.0, 4.0, 8.0]
    assert waits[-1] == SETTINGS.create_backoff_max_seconds
    assert backoff is not None and not backoff.give_up and backoff.rejections == 0


@pytest.mark.parametrize(("status", "message"), [
    (403, 'jobs.batch "t-1" is forbidden: User "system:serviceaccount:kubetask:op" cannot create resource'),
    (409, "Operation cannot be fulfilled: exceeded quota"),  # the words alone are not the quota admission
    (500, QUOTA_REFUSAL),
])
def test_other_failures_keep_the_one_second_backoff(status: int, message: str) -> None:
    backoff = after_create_failure(None, status=status, message=message, now=NOW, settings=SETTINGS)
    assert (backoff.retry_at - NOW).total_seconds() == SETTINGS.create_backoff_seconds == 1.0


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


@pytest.mark.parametrize(("runtime", "kind"), [(None, "Job"), ("job", "Job"), ("pod", "Pod")])
def test_given_up_the_task_fails_with_the_apiservers_message_and_an_event(runtime: str | None, kind: str) -> None:
    backoff = rejections(4)
    assert backoff is not None and backoff.give_up
    obj = task()
    if runtime is not None:
        obj["spec"]["runtime"] = runtime
    plan = one_pass(obj, {(NS, "t"): backoff})
    action = plan.actions[(NS, "t")]
    assert plan.admitted == []
    assert action.plan.status["phase"] == "Failed"
    assert action.patch["phase"] == "Failed" and action.patch["message"] == INVALID
    reasons = {c.get("reason") for c in action.plan.status.get("conditions") or []}
    assert "JobRejected" in reasons
    assert [(e.reason, e.type) for e in action.plan.events] == [("JobRejected", "Warning")]
    assert action.plan.events[0].message == f"Cannot run: the apiserver refuses its {kind}: {INVALID}"
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
    assert first.event_message("Job t-1") == f"Creating Job t-1 failed (attempt 1); retrying at 12:00:01.000: {INVALID}"
    assert last.event_message("Pod t-1").startswith("Pod t-1 refused by the apiserver 4 times; giving up: ")
    assert INVALID in last.event_message("Pod t-1")
    quick = after_create_failure(None, status=403, message=QUOTA_REFUSAL, now=NOW, settings=SETTINGS)
    assert "retrying at 12:00:00.200" in quick.event_message("Pod small-243-1")  # the quick retry is visible as such
