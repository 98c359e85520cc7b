"""Job controller, scheduler and kubelet semantics of the sim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sim_helpers import api_client, wait_for

from kubetask.sim import SimCluster

GPU_TOL = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.fixture
def k8s(sim_cluster: SimCluster, tmp_path: Path) -> client.ApiClient:
    return api_client(sim_cluster, tmp_path)


def job(name: str, annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {**spec, "template": {
        "metadata": {"annotations": annotations},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}


def conditions(batch: client.BatchV1Api, name: str) -> dict[str, str]:
    j = batch.read_namespaced_job_status(name, "default")
    return {c.type: c.reason for c in j.status.conditions or () if c.status == "True"}


def test_job_runs_pod_to_success(sim_cluster: SimCluster, k8s: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job("default", job("ok", {"kubetask.dev/sim-duration-seconds": "0.1",
                                                      "kubetask.dev/sim-termination-message": "42",
                                                      "kubetask.dev/sim-logs": "hello\nworld"}))
    pods = wait_for(lambda: core.list_namespaced_pod("default", label_selector="job-name=ok").items, what="pod")
    pod = pods[0]
    assert pod.metadata.owner_references[0].kind == "Job" and pod.metadata.owner_references[0].controller
    assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "ok"
    wait_for(lambda: core.read_namespaced_pod(pod.metadata.name, "default").status.phase == "Running",
             what="running")
    assert core.read_namespaced_pod_log(pod.metadata.name, "default") == "hello\nworld\n"
    wait_for(lambda: "Complete" in conditions(batch, "ok"), what="job complete")
    j = batch.read_namespaced_job_status("ok", "default")
    assert j.status.succeeded == 1 and j.status.completion_time and j.status.start_time
    assert "SuccessCriteriaMet" in conditions(batch, "ok")
    done = core.read_namespaced_pod(pod.metadata.name, "default")
    term = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Succeeded" and term.exit_code == 0 and term.message == "42"
    assert sim_cluster.stats()["pods_per_job"] == {"default/ok": 1}


def test_failed_pod_with_backoff_limit_zero_fails_job(k8s: client.ApiClient) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job("default", job("bad", {"kubetask.dev/sim-duration-seconds": "0.05",
                                                       "kubetask.dev/sim-exit-code": "3"}, backoffLimit=0))
    wait_for(lambda: "Failed" in conditions(batch, "bad"), what="job failed")
    assert conditions(batch, "bad")["Failed"] == "BackoffLimitExceeded"
    assert batch.read_namespaced_job_status("bad", "default").status.failed == 1


def test_active_deadline_exceeded(k8s: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job("default", job("slow", {"kubetask.dev/sim-duration-seconds": "30"},
                                               activeDeadlineSeconds=1))
    wait_for(lambda: "Failed" in conditions(batch, "slow"), timeout=5, what="deadline")
    assert conditions(batch, "slow")["Failed"] == "DeadlineExceeded"
    wait_for(lambda: not core.list_namespaced_pod("default", label_selector="job-name=slow").items,
             what="pods deleted")


def test_suspended_job_creates_no_pods_until_resumed(k8s: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job("default", job("sus", {"kubetask.dev/sim-duration-seconds": "0.05"},
                                               suspend=True))
    wait_for(lambda: "Suspended" in conditions(batch, "sus"), what="suspended")
    assert not core.list_namespaced_pod("default", label_selector="job-name=sus").items
    assert batch.read_namespaced_job_status("sus", "default").status.start_time is None
    batch.patch_namespaced_job("sus", "default", {"spec": {"suspend": False}})
    wait_for(lambda: "Complete" in conditions(batch, "sus"), what="complete after resume")


def test_scheduler_gpu_fit_taints_selector_and_unschedulable(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)

    def pod(name: str, gpus: int, tolerate: bool = True, selector: dict[str, str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox", "resources": {
            "limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}}],
            "nodeSelector": selector or {}}
        if tolerate:
            spec["tolerations"] = GPU_TOL
        return {"metadata": {"name": name, "annotations": {"kubetask.dev/sim-duration-seconds": "30"}},
                "spec": spec}

    def node_of(name: str) -> str | None:
        return str(core.read_namespaced_pod(name, "default").spec.node_name or "") or None

    core.create_namespaced_pod("default", pod("h100", 4, selector={"nvidia.com/gpu.product": "H100"}))
    assert wait_for(lambda: node_of("h100"), what="bind") == "gpu-node-2"
    core.create_namespaced_pod("default", pod("a100", 3))
    assert wait_for(lambda: node_of("a100"), what="bind") == "gpu-node-1"
    core.create_namespaced_pod("default", pod("cpu-only", 0, tolerate=False))
    assert wait_for(lambda: node_of("cpu-only"), what="bind") == "cpu-node-1"
    core.create_namespaced_pod("default", pod("toobig", 2))

    def unsched() -> str | None:
        conds = core.read_namespaced_pod("toobig", "default").status.conditions or []
        return next((c.message for c in conds if c.type == "PodScheduled" and c.reason == "Unschedulable"), None)

    msg = wait_for(unsched, what="unschedulable")
    assert msg.startswith("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: ")
    core.create_namespaced_pod("default", pod("untolerated", 1, tolerate=False))
    msg2 = wait_for(lambda: next((c.message for c in core.read_namespaced_pod("untolerated", "default")
                                  .status.conditions or [] if c.reason == "Unschedulable"), None), what="taint")
    assert "2 node(s) had untolerated taint {nvidia.com/gpu: present}" in msg2
    core.delete_namespaced_pod("a100", "default")
    assert wait_for(lambda: node_of("toobig"), what="rescheduled after capacity freed") == "gpu-node-1"


def test_image_pull_backoff_and_log_error(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod("default", {"metadata": {"name": "nopull"}, "spec": {
        "containers": [{"name": "c", "image": "registry/does-not-exist:1"}]}})

    def waiting() -> str | None:
        cs = core.read_namespaced_pod("nopull", "default").status.container_statuses or []
        return cs[0].state.waiting.reason if cs and cs[0].state.waiting else None

    wait_for(lambda: waiting() == "ImagePullBackOff", what="ImagePullBackOff")
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_pod_log("nopull", "default")
    assert e.value.status == 400
