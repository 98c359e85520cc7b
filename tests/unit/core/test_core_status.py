"""Status derivation: observations of Job/Pod state and the lifecycle state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetask.core.status import (
    Observation,
    admit,
    observe_execution,
    parse_result,
    readable_reason,
    reconcile_task,
    retry_delay,
    set_waiting,
    status_patch,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def pod(state: dict[str, Any], phase: str = "Running", node: str = "n1", reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "task", "state": state}]}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": "t-1-abc", "creationTimestamp": "2025-03-01T11:59:00Z"},
            "spec": {"nodeName": node}, "status": status}


def job(condition: str | None = None, reason: str | None = None) -> dict[str, Any]:
    conds = [{"type": condition, "status": "True", "reason": reason,
              "lastTransitionTime": "2025-03-01T11:59:50Z"}] if condition else []
    return {"metadata": {"name": "t-1"}, "status": {"conditions": conds}}


TERM_OK = {"terminated": {"exitCode": 0, "reason": "Completed", "message": '{"x": 1}',
                          "startedAt": "2025-03-01T11:59:00Z", "finishedAt": "2025-03-01T11:59:30Z"}}
TERM_FAIL = {"terminated": {"exitCode": 1, "reason": "Error", "message": "boom",
                            "startedAt": "2025-03-01T11:59:00Z", "finishedAt": "2025-03-01T11:59:30Z"}}
TERM_OOM = {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                           "startedAt": "2025-03-01T11:59:00Z", "finishedAt": "2025-03-01T11:59:30Z"}}


@pytest.mark.parametrize(("job_obj", "pods", "state", "reason"), [
    (job(), [], "pending", None),
    (None, [], "gone", None),
    (job(), [pod({"waiting": {"reason": "ContainerCreating"}}, phase="Pending")], "pending", None),
    (job(), [pod({"running": {"startedAt": "2025-03-01T11:59:00Z"}})], "running", None),
    (job("Complete"), [pod(TERM_OK, phase="Succeeded")], "succeeded", "Completed"),
    (job("Failed", "BackoffLimitExceeded"), [pod(TERM_FAIL, phase="Failed")], "failed", "Error"),
    (job("Failed", "BackoffLimitExceeded"), [pod(TERM_OOM, phase="Failed")], "failed", "OOMKilled"),
    (job("Failed", "DeadlineExceeded"), [pod(TERM_FAIL, phase="Failed")], "failed", "DeadlineExceeded"),
    (job("Failed", "DeadlineExceeded"), [], "failed", "DeadlineExceeded"),
    (job(), [pod({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}, phase="Pending")],
     "failed", "ImagePullBackOff"),
    (job(), [pod({"waiting": {"reason": "ErrImagePull"}}, phase="Pending")], "failed", "ImagePullBackOff"),
    (job("Complete"), [], "succeeded", None),
    (None, [pod(TERM_OK, phase="Succeeded")], "succeeded", "Completed"),
    (None, [pod({}, phase="Failed", reason="DeadlineExceeded")], "failed", "DeadlineExceeded"),
])
def test_observe(job_obj: dict[str, Any] | None, pods: list[dict[str, Any]], state: str,
                 reason: str | None) -> None:
    obs = observe_execution(job_obj, pods)
    assert obs.state == state
    assert obs.reason == reason


def test_pod_killed_by_its_deletion_waits_for_the_jobs_verdict() -> None:
    """The job controller deletes the pod past the deadline before it writes DeadlineExceeded."""
    killed = pod({"terminated": {"exitCode": 143, "reason": "Error", "startedAt": "2025-03-01T11:59:00Z",
                                 "finishedAt": "2025-03-01T11:59:02Z"}}, phase="Failed")
    killed["metadata"]["deletionTimestamp"] = "2025-03-01T11:59:01Z"
    assert observe_execution(job(), [killed]).state == "running"
    deadline = observe_execution(job("FailureTarget", "DeadlineExceeded"), [killed])
    assert (deadline.state, deadline.reason) == ("failed", "DeadlineExceeded")
    evicted = observe_execution(job("FailureTarget", "BackoffLimitExceeded"), [killed])
    assert (evicted.state, evicted.reason, evicted.exit_code) == ("failed", "Error", 143)
    # a bare pod (no Job to decide) that was killed by its deletion has failed
    assert observe_execution(None, [killed]).state == "failed"


def test_observe_running_pod_not_yet_terminal_waits_for_pod() -> None:
    """A Job already Complete whose pod status lags is not reported done without its result."""
    obs = observe_execution(job("Complete"), [pod({"running": {}})])
    assert obs.state == "running"


@pytest.mark.parametrize(("message", "result"), [
    ('{"a": 1}', {"a": 1}), ("[1,2]", [1, 2]), ("plain text", "plain text"), ("", None), (None, None),
    ("  42 ", 42),
])
def test_parse_result(message: str | None, result: Any) -> None:
    assert parse_result(message) == result


@pytest.mark.parametrize(("reason", "code", "fragment"), [
    ("OOMKilled", 137, "Out of memory"),
    ("DeadlineExceeded", None, "Timed out"),
    ("ImagePullBackOff", None, "Cannot pull"),
    ("Error", 3, "Exited with code 3"),
])
def test_readable_reason(reason: str, code: int | None, fragment: str) -> None:
    assert fragment in readable_reason(reason, code, "detail")


def make_task(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "t", "namespace": "ns", "generation": 1,
                            "creationTimestamp": "2025-03-01T11:00:00Z"}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"image": "x", **(spec or {})}, "status": status or {}}


def running_status(**extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "retryCount": 0, "executions": [{"id": 1, "jobName": "t-1", "phase": "Pending"}],
            **extra}


def test_new_task_goes_straight_to_queued() -> None:
    plan = reconcile_task(make_task(), observation=None, dependencies={}, now=NOW)
    assert plan.status["phase"] == "Queued"
    assert plan.admissible
    assert plan.status["createdAt"] == "2025-03-01T11:00:00Z"
    assert [e.reason for e in plan.events] == ["Created", "Queued"]


@pytest.mark.parametrize(("spec", "deps", "phase", "message"), [
    ({"scheduledAt": "2025-03-01T14:30:00Z"}, {}, "Pending", "scheduled for 14:30 UTC"),
    ({"dependsOn": ["a", "b", "c"]}, {"a": "Succeeded", "b": "Running", "c": "Pending"}, "Pending",
     "waiting for 2 of 3 dependencies"),
    ({"dependsOn": ["a"]}, {"a": "Failed"}, "Failed", "Dependency 'a' failed"),
    ({"dependsOn": ["a"]}, {"a": "Cancelled"}, "Failed", "Dependency 'a' cancelled"),
    ({"dependsOn": ["a"]}, {"a": "Succeeded"}, "Queued", None),
    ({"dependsOn": ["a"]}, {"a": None}, "Pending", "(a not found)"),
])
def test_waiting(spec: dict[str, Any], deps: dict[str, str | None], phase: str, message: str | None) -> None:
    plan = reconcile_task(make_task(spec), observation=None, dependencies=deps, now=NOW)
    assert plan.status["phase"] == phase
    if message:
        assert message in plan.status["message"]


def test_success_records_result_and_gpu_seconds() -> None:
    obs = observe_execution(job("Complete"), [pod(TERM_OK, phase="Succeeded")])
    plan = reconcile_task(make_task({"resources": {"gpus": 2}}, running_status()), observation=obs,
                          dependencies={}, now=NOW)
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["result"] == {"x": 1}
    assert plan.status["resultSource"] == "terminationMessage"
    assert plan.status["gpuSeconds"] == 60.0
    assert plan.status["executions"][0]["exitCode"] == 0
    assert plan.finished_execution is not None


def test_callback_result_is_never_overwritten() -> None:
    obs = observe_execution(job("Complete"), [pod(TERM_OK, phase="Succeeded")])
    status = running_status(result={"from": "callback"}, resultSource="callback")
    plan = reconcile_task(make_task(status=status), observation=obs, dependencies={}, now=NOW)
    assert plan.status["result"] == {"from": "callback"}


def test_failure_with_retries_backs_off_exponentially() -> None:
    obs = observe_execution(job("Failed", "BackoffLimitExceeded"), [pod(TERM_FAIL, phase="Failed")])
    spec = {"maxRetries": 2, "retryBackoffSeconds": 10}
    plan = reconcile_task(make_task(spec, running_status()), observation=obs, dependencies={}, now=NOW)
    assert plan.status["phase"] == "Pending"
    assert plan.status["retryCount"] == 1
    assert plan.status["nextRetryAt"] == "2025-03-01T12:00:10Z"
    assert plan.events[-1].reason == "Retrying"
    # the retry waits, then queues
    waiting = reconcile_task(make_task(spec, plan.status), observation=None, dependencies={}, now=NOW)
    assert waiting.status["phase"] == "Pending" and not waiting.admissible
    later = reconcile_task(make_task(spec, plan.status), observation=None, dependencies={},
                           now=NOW + timedelta(seconds=11))
    assert later.admissible
    assert retry_delay(10, 2) == 20 and retry_delay(10, 3) == 40


def test_failure_after_retries_spent() -> None:
    obs = observe_execution(job("Failed", "BackoffLimitExceeded"), [pod(TERM_OOM, phase="Failed")])
    status = running_status(retryCount=2)
    plan = reconcile_task(make_task({"maxRetries": 2, "resources": {"memory": "1Gi"}}, status), observation=obs,
                          dependencies={}, now=NOW)
    assert plan.status["phase"] == "Failed"
    assert plan.status["executions"][0]["reason"] == "OOMKilled"
    assert "Out of memory" in plan.status["message"] and "1Gi" in plan.status["message"]


def test_image_pull_failure_deletes_the_job() -> None:
    obs = observe_execution(job(), [pod({"waiting": {"reason": "ImagePullBackOff"}}, phase="Pending")])
    plan = reconcile_task(make_task(status=running_status()), observation=obs, dependencies={}, now=NOW)
    assert plan.status["phase"] == "Failed"
    assert plan.delete_workload


@pytest.mark.parametrize("phase", ["Pending", "Queued"])
def test_cancel_waiting_task(phase: str) -> None:
    plan = reconcile_task(make_task({"cancel": True}, {"phase": phase}), observation=None, dependencies={},
                          now=NOW)
    assert plan.status["phase"] == "Cancelled"


def test_cancel_running_task_deletes_then_finishes() -> None:
    live = Observation(state="running", workload_active=True, pods_alive=True)
    plan = reconcile_task(make_task({"cancel": True}, running_status()), observation=live, dependencies={}, now=NOW)
    assert plan.delete_workload and plan.status["phase"] == "Running"
    gone = Observation(state="gone")
    plan = reconcile_task(make_task({"cancel": True}, running_status()), observation=gone, dependencies={}, now=NOW)
    assert plan.status["phase"] == "Cancelled"
    assert plan.status["executions"][0]["reason"] == "Cancelled"


def test_cancel_finished_task_is_ignored_with_event() -> None:
    plan = reconcile_task(make_task({"cancel": True}, {"phase": "Succeeded"}), observation=None, dependencies={},
                          now=NOW)
    assert plan.status["phase"] == "Succeeded"
    assert plan.events[0].reason == "CancelIgnored"
    again = reconcile_task(make_task({"cancel": True}, plan.status), observation=None, dependencies={}, now=NOW)
    assert not again.events


def test_missing_job_is_recreated() -> None:
    plan = reconcile_task(make_task(status=running_status()), observation=Observation(state="gone"),
                          dependencies={}, now=NOW)
    assert plan.ensure_workload


def test_rerun_starts_a_fresh_execution() -> None:
    status = {"phase": "Succeeded", "executions": [{"id": 1, "finishedAt": "2025-03-01T11:00:00Z"}],
              "completedAt": "2025-03-01T11:00:00Z"}
    plan = reconcile_task(make_task(status=status, annotations={"kubetask.io/rerun": "r1"}), observation=None,
                          dependencies={}, now=NOW)
    assert plan.status["phase"] == "Queued" and plan.status["handledRerun"] == "r1"
    assert plan.admissible
    assert admit(plan.status, job_name="t-2", now=NOW)["executions"][-1] == {"id": 2, "jobName": "t-2",
                                                                           "phase": "Pending"}


def test_ttl() -> None:
    status = {"phase": "Failed", "completedAt": "2025-03-01T11:59:00Z"}
    plan = reconcile_task(make_task({"ttlSecondsAfterFinished": 30}, status), observation=None, dependencies={},
                          now=NOW)
    assert plan.delete_task
    plan = reconcile_task(make_task({"ttlSecondsAfterFinished": 300}, status), observation=None, dependencies={},
                          now=NOW)
    # 300 s after the end of the completedAt second (it has second precision): never early
    assert not plan.delete_task and plan.requeue_at == NOW + timedelta(seconds=241)


def test_set_waiting_and_patch() -> None:
    status = {"phase": "Queued"}
    new = set_waiting(status, reason="MaxRunning", message="alice has 4 of 4 running tasks", now=NOW, position=3,
                      estimated_start=NOW)
    patch = status_patch(status, new)
    assert patch["queuePosition"] == 3
    assert patch["conditions"][0]["message"] == "alice has 4 of 4 running tasks"
    assert status_patch(new, new) == {}
