"""End to end through the real operator on the local control plane (real Job controller, kwok pods):
submit, run, finish, result, logs, cancel a running task, run a finished task again."""

from __future__ import annotations

import httpx
from kt_api_support import Stack, assert_error_body

FAST = {"kubetask.dev/sim-duration-seconds": "0.5", "kubetask.dev/sim-exit-code": "0",
        "kubetask.dev/sim-logs": "hello\nfrom the pod"}


def submit(client: httpx.Client, **extra: object) -> dict[str, object]:
    body = {"name": "e2e", "script_content": "print('hello')", "annotations": FAST, **extra}
    response = client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_status(stack: Stack, client: httpx.Client, task_id: object, *statuses: str,
                timeout: float = 60) -> dict[str, object]:
    return dict(stack.wait_for(
        lambda: (lambda t: t if t["status"] in statuses else None)(client.get(f"/tasks/{task_id}").json()),
        timeout=timeout))


def _pods(stack: Stack, task_id: str) -> list[tuple[str, str, object]]:
    """The task's pods as the apiserver has them (context for a failure message)."""
    return [(p["metadata"]["name"], p["spec"].get("nodeName", ""), p["status"].get("containerStatuses"))
            for p in stack.cluster.list("v1", "Pod", "kubetask-alice", label_selector=f"kubetask.io/task={task_id}")]


def test_task_runs_to_completion(needs_operator: Stack, alice: httpx.Client) -> None:
    task = submit(alice)
    done = wait_status(needs_operator, alice, task["id"], "completed", "failed")
    assert done["status"] == "completed", done
    assert done["started_at"] and done["completed_at"] and done["worker_id"]
    executions = alice.get(f"/tasks/{task['id']}/executions").json()
    assert executions["total"] == 1 and executions["executions"][0]["status"] == "completed"
    timeline = alice.get(f"/tasks/{task['id']}/timeline").json()
    assert {"created", "started"} <= {e["event_type"] for e in timeline["events"]}
    logs = alice.get(f"/tasks/{task['id']}/logs", params={"tail": 10})
    assert logs.status_code == 200, (logs.text, _pods(needs_operator, str(task["id"])))
    assert logs.text.splitlines()[-2:] == ["hello", "from the pod"] and logs.headers["x-pod-name"]
    tail = alice.get(f"/tasks/{task['id']}/logs", params={"tail": 1})
    assert tail.text.splitlines() == ["from the pod"]


def test_failing_task_is_failed(needs_operator: Stack, alice: httpx.Client) -> None:
    task = submit(alice, annotations={**FAST, "kubetask.dev/sim-exit-code": "3"})
    done = wait_status(needs_operator, alice, task["id"], "completed", "failed")
    assert done["status"] == "failed"
    assert_error_body(alice.delete(f"/tasks/{task['id']}"), 409)


def test_cancel_a_running_task(needs_operator: Stack, alice: httpx.Client) -> None:
    task = submit(alice, annotations={"kubetask.dev/sim-duration-seconds": "60"})
    wait_status(needs_operator, alice, task["id"], "running")
    selector = f"kubetask.io/task={task['object_name']}"
    cluster = needs_operator.cluster
    assert cluster.list("batch/v1", "Job", "kubetask-alice", label_selector=selector)
    assert cluster.list("v1", "Pod", "kubetask-alice", label_selector=selector)
    assert alice.delete(f"/tasks/{task['id']}").status_code == 200
    assert alice.get(f"/tasks/{task['id']}").json()["status"] == "cancelled"  # at once
    needs_operator.wait_for(lambda: alice.get(f"/tasks/{task['id']}").json()["phase"] == "Cancelled", timeout=60)
    # The running Job is deleted and the garbage collector takes its pod: nothing keeps the node busy.
    needs_operator.wait_for(lambda: not cluster.list("batch/v1", "Job", "kubetask-alice", label_selector=selector)
                            and not cluster.list("v1", "Pod", "kubetask-alice", label_selector=selector), timeout=60)


def test_execute_runs_a_finished_task_again(needs_operator: Stack, alice: httpx.Client) -> None:
    task = submit(alice)
    wait_status(needs_operator, alice, task["id"], "completed")
    assert alice.post(f"/tasks/{task['id']}/execute").json()["execution_requested"] is True
    needs_operator.wait_for(lambda: alice.get(f"/tasks/{task['id']}/executions").json()["total"] >= 2, timeout=60)
