"""The Task lifecycle end to end: the real operator against the real control plane (issue 3).

Each test runs in a namespace of its own (``kt.namespace``); Jobs run through the real Job
controller and scheduler, pods on kwok's fake GPU nodes (one 8-GPU A100 node, one 8-GPU H100 node).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import GPU_NODES, GPUS_PER_NODE, Harness, wait_until


def event_reasons(kt: Harness, name: str) -> list[str]:
    return [e["reason"] for e in kt.events() if e["involvedObject"]["name"] == name]


def test_success_with_result_on_a_gpu_node(kt: Harness) -> None:
    kt.create_task("hello", resources={"gpus": 1},
                   annotations={"kubetask.dev/sim-termination-message": '{"answer": 42}'})
    task = kt.wait_phase("hello", "Succeeded")
    status = task["status"]
    assert status["result"] == {"answer": 42}
    assert status["resultSource"] == "terminationMessage"
    assert status["nodeName"] in GPU_NODES.values()
    assert [e["id"] for e in status["executions"]] == [1]
    assert status["executions"][0]["exitCode"] == 0
    assert status["startedAt"] and status["completedAt"] and status["queuedAt"]
    job = kt.get("batch/v1", "Job", "hello-1", kt.namespace)
    assert job is not None
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["labels"]["kubetask.io/task"] == "hello"
    assert job["metadata"]["ownerReferences"][0]["uid"] == task["metadata"]["uid"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBETASK_TASK_NAME"] == "hello" and env["KUBETASK_TASK_TOKEN"]
    # events are asynchronous: wait for the last one, then the whole story is there
    wait_until(lambda: "Succeeded" in event_reasons(kt, "hello"), 30, "Succeeded event")
    assert "Admitted" in event_reasons(kt, "hello")


def test_failure_with_retries_keeps_the_execution_history(kt: Harness) -> None:
    kt.create_task("flaky", maxRetries=2, retryBackoffSeconds=0,
                   annotations={"kubetask.dev/sim-exit-code": "1", "kubetask.dev/sim-termination-message": "boom"})
    task = kt.wait_phase("flaky", "Failed", timeout=90)
    executions = task["status"]["executions"]
    assert [e["id"] for e in executions] == [1, 2, 3]
    assert [e["jobName"] for e in executions] == ["flaky-1", "flaky-2", "flaky-3"]
    assert all(e["exitCode"] == 1 and e["reason"] == "Error" for e in executions)
    assert "Exited with code 1: boom" in task["status"]["message"]
    assert task["status"]["retryCount"] == 2
    assert sorted(j["metadata"]["name"] for j in kt.jobs()) == ["flaky-1", "flaky-2", "flaky-3"]


def test_timeout_is_deadline_exceeded(kt: Harness) -> None:
    kt.create_task("slow", timeoutSeconds=1, fast=False, annotations={"kubetask.dev/sim-duration-seconds": "30"})
    task = kt.wait_phase("slow", "Failed", timeout=60)
    execution = task["status"]["executions"][0]
    assert execution["reason"] == "DeadlineExceeded"
    assert "Timed out" in execution["message"]


def test_oom_and_bad_image_reasons(kt: Harness) -> None:
    kt.create_task("oom", resources={"memory": "1Gi"}, annotations={"kubetask.dev/sim-reason": "OOMKilled"})
    kt.create_task("badimage", image="registry.example/does-not-exist:1")
    oom = kt.wait_phase("oom", "Failed")
    assert oom["status"]["executions"][0]["reason"] == "OOMKilled"
    assert "Out of memory" in oom["status"]["message"] and "1Gi" in oom["status"]["message"]
    bad = kt.wait_phase("badimage", "Failed", timeout=90)
    assert bad["status"]["executions"][0]["reason"] == "ImagePullBackOff"
    assert "Cannot pull image 'registry.example/does-not-exist:1'" in bad["status"]["message"]
    wait_until(lambda: kt.get("batch/v1", "Job", "badimage-1", kt.namespace) is None, 30, "bad-image Job deleted")


def test_cancel_pending_and_running(kt: Harness) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kt.create_task("waiting", scheduledAt=later)
    kt.create_task("busy", fast=False, annotations={"kubetask.dev/sim-duration-seconds": "120"})
    kt.wait_phase("waiting", "Pending")
    wait_until(lambda: ((kt.task("busy").get("status") or {}).get("executions") or [{}])[0].get("startedAt"), 60,
               "busy to start")
    kt.patch_task("waiting", {"spec": {"cancel": True}})
    kt.patch_task("busy", {"spec": {"cancel": True}})
    assert kt.wait_phase("waiting", "Cancelled")["status"]["executions"] == []
    busy = kt.wait_phase("busy", "Cancelled")
    assert busy["status"]["executions"][0]["reason"] == "Cancelled"
    # the Job and its pod go (deletion is asynchronous on a real cluster: the GC removes the pod)
    wait_until(lambda: kt.get("batch/v1", "Job", "busy-1", kt.namespace) is None, 30, "busy's Job deleted")
    wait_until(lambda: not kt.objects("v1", "Pod", kt.namespace, label_selector="kubetask.io/task=busy"), 60,
               "busy's pod deleted")
    # cancelling a finished task changes nothing and says so
    kt.create_task("done")
    kt.wait_phase("done", "Succeeded")
    kt.patch_task("done", {"spec": {"cancel": True}})
    wait_until(lambda: any(c["type"] == "CancelIgnored" for c in kt.task("done")["status"]["conditions"]), 30,
               "CancelIgnored condition")
    assert kt.task("done")["status"]["phase"] == "Succeeded"


def test_scheduled_start(kt: Harness) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    kt.create_task("later", scheduledAt=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    pending = kt.wait_phase("later", "Pending")
    assert pending["status"]["message"].startswith("scheduled for ")
    assert kt.get("batch/v1", "Job", "later-1", kt.namespace) is None
    task = kt.wait_phase("later", "Succeeded")
    job = kt.get("batch/v1", "Job", "later-1", kt.namespace)
    assert job is not None
    created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert created >= at
    assert task["status"]["executions"][0]["exitCode"] == 0


def test_dependency_chain_and_failure_propagation(kt: Harness) -> None:
    jobs = kt.record("batch/v1", "Job")
    kt.create_task("a")
    kt.create_task("b", dependsOn=["a"])
    kt.create_task("c", dependsOn=["b"])
    c = kt.wait_phase("c", "Succeeded", timeout=90)
    a, b = kt.task("a"), kt.task("b")
    wait_until(lambda: "c-1" in jobs.names, 30, "the recorder to see c-1")
    order = jobs.rank()
    assert order["a-1"] < order["b-1"] < order["c-1"]
    assert a["status"]["completedAt"] <= b["status"]["startedAt"] <= c["status"]["startedAt"]

    kt.create_task("x", annotations={"kubetask.dev/sim-exit-code": "2"})
    kt.create_task("y", dependsOn=["x"])
    kt.create_task("z", dependsOn=["y"])
    y = kt.wait_phase("y", "Failed")
    assert y["status"]["message"] == "Dependency 'x' failed, so this task cannot run"
    z = kt.wait_phase("z", "Failed")
    assert "Dependency 'y' failed" in z["status"]["message"]
    assert kt.get("batch/v1", "Job", "y-1", kt.namespace) is None
    assert "y-1" not in jobs.names and "z-1" not in jobs.names


def test_priority_order_under_gpu_scarcity(kt: Harness) -> None:
    # Fill the A100 node, queue low before high priority work for the same GPUs, then free the GPUs.
    jobs = kt.record("batch/v1", "Job")
    for i in range(GPUS_PER_NODE):
        kt.create_task(f"fill-{i}", resources={"gpus": 1, "gpuType": "A100"}, fast=False,
                       annotations={"kubetask.dev/sim-duration-seconds": "600"})
    wait_until(lambda: len(kt.jobs()) == GPUS_PER_NODE, 60, "fillers admitted")
    for i in range(4):
        kt.create_task(f"low-{i}", priority=1, resources={"gpus": 1, "gpuType": "A100"})
    for i in range(4):
        kt.create_task(f"high-{i}", priority=9, resources={"gpus": 1, "gpuType": "A100"})
    wait_until(lambda: all((kt.task(f"{p}-{i}").get("status") or {}).get("phase") == "Queued"
                           for p in ("low", "high") for i in range(4)), 30, "low and high queued")
    assert [n for n in jobs.names if not n.startswith("fill-")] == [], "nothing starts while the GPUs are full"
    for i in range(GPUS_PER_NODE):  # cancelling the fillers frees their GPUs one by one
        kt.patch_task(f"fill-{i}", {"spec": {"cancel": True}})
    wait_until(lambda: all((kt.task(f"low-{i}").get("status") or {}).get("phase") == "Succeeded"
                           for i in range(4)), 120, "all low-priority tasks to finish")
    rank = jobs.rank()
    assert max(rank[f"high-{i}-1"] for i in range(4)) < min(rank[f"low-{i}-1"] for i in range(4))
    low = kt.task("low-3")
    assert any(c["type"] == "Admitted" for c in low["status"]["conditions"])


def test_waiting_reason_and_position(kt: Harness) -> None:
    for i in range(GPUS_PER_NODE):
        kt.create_task(f"hog-{i}", resources={"gpus": 1, "gpuType": "H100"}, fast=False,
                       annotations={"kubetask.dev/sim-duration-seconds": "60"})
    wait_until(lambda: len(kt.jobs()) == GPUS_PER_NODE, 60, "hogs admitted")
    kt.create_task("queued-1", resources={"gpus": 1, "gpuType": "H100"})
    kt.create_task("queued-2", resources={"gpus": 2, "gpuType": "H100"})

    def explained() -> bool:
        status = kt.task("queued-1").get("status") or {}
        return status.get("phase") == "Queued" and status.get("queuePosition") == 1 and \
            "no free H100" in (status.get("message") or "")

    wait_until(explained, 30, lambda: f"why-pending: {kt.task('queued-1').get('status')}")
    status = kt.task("queued-1")["status"]
    admitted = next(c for c in status["conditions"] if c["type"] == "Admitted")
    assert admitted["status"] == "False" and "no free H100: need 1, largest free on a node is 0" in admitted["message"]
    assert status["estimatedStartTime"]
    wait_until(lambda: (kt.task("queued-2").get("status") or {}).get("queuePosition") == 2, 30, "position 2")


def test_gpu_type_selection(kt: Harness) -> None:
    kt.create_task("on-h100", resources={"gpus": 2, "gpuType": "H100"})
    kt.create_task("on-a100", resources={"gpus": 1, "gpuType": "A100"})
    assert kt.wait_phase("on-h100", "Succeeded")["status"]["nodeName"] == GPU_NODES["H100"]
    assert kt.wait_phase("on-a100", "Succeeded")["status"]["nodeName"] == GPU_NODES["A100"]
    job = kt.get("batch/v1", "Job", "on-h100-1", kt.namespace) or {}
    assert job["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "H100"


def test_script_task_runs_from_a_configmap(kt: Harness) -> None:
    kt.create_task("script", image=None, script={"language": "python", "content": "print('hi')"})
    kt.wait_phase("script", "Succeeded")
    cm = kt.get("v1", "ConfigMap", "script-script", kt.namespace)
    assert cm is not None and cm["data"]["script.py"] == "print('hi')"


def test_rerun_annotation_starts_a_new_execution(kt: Harness) -> None:
    kt.create_task("again")
    kt.wait_phase("again", "Succeeded")
    kt.patch_task("again", {"metadata": {"annotations": {"kubetask.io/rerun": "token-1"}}})
    wait_until(lambda: len(kt.task("again")["status"].get("executions") or []) == 2
               and kt.task("again")["status"]["phase"] == "Succeeded", 60, "second execution")
    assert kt.task("again")["status"]["handledRerun"] == "token-1"
    assert kt.get("batch/v1", "Job", "again-2", kt.namespace) is not None


def test_ttl_deletes_finished_tasks(kt: Harness) -> None:
    kt.create_task("brief", ttlSecondsAfterFinished=1)
    kt.wait_phase("brief", "Succeeded")
    wait_until(lambda: kt.get("kubetask.io/v1alpha1", "Task", "brief", kt.namespace) is None, 30, "TTL deletion")
