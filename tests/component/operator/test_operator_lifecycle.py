"""The Task lifecycle end to end: the real operator against the simulated cluster (issue 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import Harness, wait_until


def job_order(kt: Harness, namespace: str = "default") -> dict[str, int]:
    """Job name → its creation rank, from the sim's own record of creates."""
    prefix = f"jobs/{namespace}/"
    names = [k[len(prefix):] for k in kt.cluster.stats()["created_names"] if k.startswith(prefix)]
    return {name: i for i, name in enumerate(names)}


def test_success_with_result_on_a_gpu_node(kt: Harness) -> None:
    kt.create_task("hello", resources={"gpus": 1},
                   annotations={"kubetask.dev/sim-termination-message": '{"answer": 42}'})
    task = kt.wait_phase("hello", "Succeeded")
    status = task["status"]
    assert status["result"] == {"answer": 42}
    assert status["resultSource"] == "terminationMessage"
    assert status["nodeName"] in ("gpu-node-1", "gpu-node-2")
    assert [e["id"] for e in status["executions"]] == [1]
    assert status["executions"][0]["exitCode"] == 0
    assert status["startedAt"] and status["completedAt"] and status["queuedAt"]
    job = kt.get("batch/v1", "Job", "hello-1", "default")
    assert job is not None
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["labels"]["kubetask.io/task"] == "hello"
    assert job["metadata"]["ownerReferences"][0]["uid"] == task["metadata"]["uid"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBETASK_TASK_NAME"] == "hello" and env["KUBETASK_TASK_TOKEN"]
    reasons = [e["reason"] for e in kt.cluster.list_objects("v1", "Event", "default")
               if e["involvedObject"]["name"] == "hello"]
    wait_until(lambda: "Succeeded" in [e["reason"] for e in kt.cluster.list_objects("v1", "Event", "default")
                                        if e["involvedObject"]["name"] == "hello"], 5, "Succeeded event")
    assert "Admitted" in reasons or reasons  # events are asynchronous; Succeeded is checked above


def test_failure_with_retries_keeps_the_execution_history(kt: Harness) -> None:
    kt.create_task("flaky", maxRetries=2, retryBackoffSeconds=0,
                   annotations={"kubetask.dev/sim-exit-code": "1", "kubetask.dev/sim-termination-message": "boom"})
    task = kt.wait_phase("flaky", "Failed", timeout=30)
    executions = task["status"]["executions"]
    assert [e["id"] for e in executions] == [1, 2, 3]
    assert [e["jobName"] for e in executions] == ["flaky-1", "flaky-2", "flaky-3"]
    assert all(e["exitCode"] == 1 and e["reason"] == "Error" for e in executions)
    assert "Exited with code 1: boom" in task["status"]["message"]
    assert task["status"]["retryCount"] == 2
    assert sorted(j["metadata"]["name"] for j in kt.jobs("default")) == ["flaky-1", "flaky-2", "flaky-3"]


def test_timeout_is_deadline_exceeded(kt: Harness) -> None:
    kt.create_task("slow", timeoutSeconds=1, fast=False, annotations={"kubetask.dev/sim-duration-seconds": "30"})
    task = kt.wait_phase("slow", "Failed", timeout=20)
    execution = task["status"]["executions"][0]
    assert execution["reason"] == "DeadlineExceeded"
    assert "Timed out" in execution["message"]


def test_oom_and_bad_image_reasons(kt: Harness) -> None:
    kt.create_task("oom", resources={"memory": "1Gi"}, annotations={"kubetask.dev/sim-reason": "OOMKilled"})
    kt.create_task("badimage", image="registry.example/does-not-exist:1")
    oom = kt.wait_phase("oom", "Failed")
    assert oom["status"]["executions"][0]["reason"] == "OOMKilled"
    assert "Out of memory" in oom["status"]["message"] and "1Gi" in oom["status"]["message"]
    bad = kt.wait_phase("badimage", "Failed", timeout=30)
    assert bad["status"]["executions"][0]["reason"] == "ImagePullBackOff"
    assert "Cannot pull image 'registry.example/does-not-exist:1'" in bad["status"]["message"]
    wait_until(lambda: kt.get("batch/v1", "Job", "badimage-1", "default") is None, 10, "bad-image Job deleted")


def test_cancel_pending_and_running(kt: Harness) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kt.create_task("waiting", scheduledAt=later)
    kt.create_task("busy", fast=False, annotations={"kubetask.dev/sim-duration-seconds": "60"})
    kt.wait_phase("waiting", "Pending")
    wait_until(lambda: (kt.task("busy").get("status") or {}).get("executions", [{}])[0].get("startedAt"), 10,
               "busy to start")
    kt.patch_task("waiting", {"spec": {"cancel": True}})
    kt.patch_task("busy", {"spec": {"cancel": True}})
    assert kt.wait_phase("waiting", "Cancelled")["status"]["executions"] == []
    busy = kt.wait_phase("busy", "Cancelled", timeout=20)
    assert busy["status"]["executions"][0]["reason"] == "Cancelled"
    assert kt.get("batch/v1", "Job", "busy-1", "default") is None
    assert not [p for p in kt.cluster.list_objects("v1", "Pod", "default")
                if p["metadata"].get("labels", {}).get("kubetask.io/task") == "busy"]
    # cancelling a finished task changes nothing and says so
    kt.create_task("done")
    kt.wait_phase("done", "Succeeded")
    kt.patch_task("done", {"spec": {"cancel": True}})
    wait_until(lambda: any(c["type"] == "CancelIgnored" for c in kt.task("done")["status"]["conditions"]), 10,
               "CancelIgnored condition")
    assert kt.task("done")["status"]["phase"] == "Succeeded"


def test_scheduled_start(kt: Harness) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    kt.create_task("later", scheduledAt=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    pending = kt.wait_phase("later", "Pending")
    assert pending["status"]["message"].startswith("scheduled for ")
    assert kt.get("batch/v1", "Job", "later-1", "default") is None
    task = kt.wait_phase("later", "Succeeded", timeout=15)
    job = kt.get("batch/v1", "Job", "later-1", "default")
    assert job is not None
    created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert created >= at
    assert task["status"]["executions"][0]["exitCode"] == 0


def test_dependency_chain_and_failure_propagation(kt: Harness) -> None:
    kt.create_task("a")
    kt.create_task("b", dependsOn=["a"])
    kt.create_task("c", dependsOn=["b"])
    c = kt.wait_phase("c", "Succeeded", timeout=30)
    a, b = kt.task("a"), kt.task("b")
    order = job_order(kt)
    assert order["a-1"] < order["b-1"] < order["c-1"]
    assert a["status"]["completedAt"] <= b["status"]["startedAt"] <= c["status"]["startedAt"]

    kt.create_task("x", annotations={"kubetask.dev/sim-exit-code": "2"})
    kt.create_task("y", dependsOn=["x"])
    kt.create_task("z", dependsOn=["y"])
    y = kt.wait_phase("y", "Failed", timeout=20)
    assert y["status"]["message"] == "Dependency 'x' failed, so this task cannot run"
    z = kt.wait_phase("z", "Failed", timeout=20)
    assert "Dependency 'y' failed" in z["status"]["message"]
    assert kt.get("batch/v1", "Job", "y-1", "default") is None


def test_priority_order_under_gpu_scarcity(kt: Harness) -> None:
    # Fill the four A100s, then queue low before high priority work for the same GPUs.
    for i in range(4):
        kt.create_task(f"fill-{i}", resources={"gpus": 1, "gpuType": "A100"}, fast=False,
                       annotations={"kubetask.dev/sim-duration-seconds": "1.5"})
    wait_until(lambda: len(kt.jobs("default")) == 4, 10, "fillers admitted")
    for i in range(4):
        kt.create_task(f"low-{i}", priority=1, resources={"gpus": 1, "gpuType": "A100"})
    for i in range(4):
        kt.create_task(f"high-{i}", priority=9, resources={"gpus": 1, "gpuType": "A100"})
    wait_until(lambda: all((kt.task(f"low-{i}").get("status") or {}).get("phase") == "Succeeded"
                           for i in range(4)), 30, "all low-priority tasks to finish")
    rvs = job_order(kt)
    assert max(rvs[f"high-{i}-1"] for i in range(4)) < min(rvs[f"low-{i}-1"] for i in range(4))
    low = kt.task("low-3")
    assert any(c["type"] == "Admitted" for c in low["status"]["conditions"])


def test_waiting_reason_and_position(kt: Harness) -> None:
    for i in range(4):
        kt.create_task(f"hog-{i}", resources={"gpus": 1, "gpuType": "H100"}, fast=False,
                       annotations={"kubetask.dev/sim-duration-seconds": "3"})
    wait_until(lambda: len(kt.jobs("default")) == 4, 10, "hogs admitted")
    kt.create_task("queued-1", resources={"gpus": 1, "gpuType": "H100"})
    kt.create_task("queued-2", resources={"gpus": 2, "gpuType": "H100"})

    def explained() -> bool:
        status = kt.task("queued-1").get("status") or {}
        return status.get("phase") == "Queued" and status.get("queuePosition") == 1 and \
            "no free H100" in (status.get("message") or "")

    wait_until(explained, 10, lambda: f"why-pending: {kt.task('queued-1').get('status')}")
    status = kt.task("queued-1")["status"]
    admitted = next(c for c in status["conditions"] if c["type"] == "Admitted")
    assert admitted["status"] == "False" and "no free H100: need 1, largest free on a node is 0" in admitted["message"]
    assert status["estimatedStartTime"]
    wait_until(lambda: (kt.task("queued-2").get("status") or {}).get("queuePosition") == 2, 10, "position 2")


def test_gpu_type_selection(kt: Harness) -> None:
    kt.create_task("on-h100", resources={"gpus": 2, "gpuType": "H100"})
    kt.create_task("on-a100", resources={"gpus": 1, "gpuType": "A100"})
    assert kt.wait_phase("on-h100", "Succeeded")["status"]["nodeName"] == "gpu-node-2"
    assert kt.wait_phase("on-a100", "Succeeded")["status"]["nodeName"] == "gpu-node-1"
    job = kt.get("batch/v1", "Job", "on-h100-1", "default") or {}
    assert job["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "H100"


def test_script_task_runs_from_a_configmap(kt: Harness) -> None:
    kt.create_task("script", image=None, script={"language": "python", "content": "print('hi')"})
    kt.wait_phase("script", "Succeeded")
    cm = kt.get("v1", "ConfigMap", "script-script", "default")
    assert cm is not None and cm["data"]["script.py"] == "print('hi')"


def test_rerun_annotation_starts_a_new_execution(kt: Harness) -> None:
    kt.create_task("again")
    kt.wait_phase("again", "Succeeded")
    kt.patch_task("again", {"metadata": {"annotations": {"kubetask.io/rerun": "token-1"}}})
    wait_until(lambda: len(kt.task("again")["status"].get("executions") or []) == 2
               and kt.task("again")["status"]["phase"] == "Succeeded", 15, "second execution")
    assert kt.task("again")["status"]["handledRerun"] == "token-1"


def test_ttl_deletes_finished_tasks(kt: Harness) -> None:
    kt.create_task("brief", ttlSecondsAfterFinished=1)
    kt.wait_phase("brief", "Succeeded")
    wait_until(lambda: kt.get("kubetask.io/v1alpha1", "Task", "brief", "default") is None, 10, "TTL deletion")
