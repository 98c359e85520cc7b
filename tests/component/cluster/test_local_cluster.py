"""The local real control plane itself: what ``kubetask dev`` and every component test stand on.

The pod lifecycle here is the real Job controller's and scheduler's; kwok's Stages play the
kubelet from the ``kubetask.dev/sim-*`` annotations (README "Try it"). These tests pin the
behaviour the README documents, so a change to the Stages that breaks it fails here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kt_support import KubectlRunner, reset_namespaces

from kubetask.cluster import LocalCluster

NAMESPACE = "cluster-checks"


@pytest.fixture(scope="module", autouse=True)
def checks_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace of this module's own, emptied afterwards: its pods hold GPUs that later tests count on."""
    local_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    reset_namespaces(local_cluster, [NAMESPACE])


def _job(name: str, annotations: dict[str, str], *, image: str = "busybox", deadline: int | None = None,
         gpus: int = 1) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": image,
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}}],
    }
    if gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        pod_spec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    if deadline is not None:
        pod_spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"annotations": annotations}, "spec": pod_spec}}}


def _pod_of(cluster: LocalCluster, job: str) -> dict[str, Any] | None:
    pods = cluster.list("v1", "Pod", NAMESPACE, label_selector=f"job-name={job}")
    return pods[0] if pods else None


def _wait_pod(cluster: LocalCluster, job: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pod = _pod_of(cluster, job)
        if pod is not None and check(pod):
            return pod
        time.sleep(0.1)
    raise AssertionError(f"pod of job {job} never matched: {json.dumps((pod or {}).get('status'))}")


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]
    return dict(state.get("terminated") or {})


def test_readyz_lists_etcd_and_reports_a_real_version(local_cluster: LocalCluster, kubectl: KubectlRunner) -> None:
    readyz = kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in readyz
    assert "readyz check passed" in readyz
    version = json.loads(kubectl("get", "--raw", "/version").stdout)
    assert version["major"] == "1" and int(version["minor"]) >= 34, version


def test_crds_apply_server_side_with_kubectl(local_cluster: LocalCluster, kubectl: KubectlRunner) -> None:
    out = kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/").stdout
    for name in ("tasks", "tasktemplates", "tenants"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}.kubetask.io serverside-applied" in out


def test_gpu_nodes_have_the_nvidia_shape(local_cluster: LocalCluster) -> None:
    gpu_nodes = local_cluster.list("v1", "Node", label_selector="nvidia.com/gpu.present=true")
    assert {n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in gpu_nodes} == {"A100", "H100"}
    for node in gpu_nodes:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_annotations_steer_run_time_exit_and_termination_message(local_cluster: LocalCluster) -> None:
    name = f"ok-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, {"kubetask.dev/sim-duration-seconds": "1.5",
                                    "kubetask.dev/sim-termination-message": '{"answer": 42}'}))
    running = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") == "Running")
    assert running["spec"]["nodeName"].startswith("gpu-")
    done = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") == "Succeeded")
    terminated = _terminated(done)
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"answer": 42}
    started = time.mktime(time.strptime(terminated["startedAt"], "%Y-%m-%dT%H:%M:%SZ"))
    finished = time.mktime(time.strptime(terminated["finishedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert finished - started >= 1, terminated
    deadline = time.monotonic() + 20
    while (local_cluster.get("batch/v1", "Job", name, NAMESPACE) or {}).get("status", {}).get("succeeded") != 1:
        assert time.monotonic() < deadline, "the Job controller never counted the succeeded pod"
        time.sleep(0.1)


@pytest.mark.parametrize(("annotations", "exit_code", "reason"), [
    ({"kubetask.dev/sim-exit-code": "3"}, 3, "Error"),
    ({"kubetask.dev/sim-reason": "OOMKilled"}, 137, "OOMKilled"),
    ({"kubetask.dev/sim-reason": "ContainerCannotRun"}, 128, "ContainerCannotRun"),
])
def test_failures_end_the_pod_failed_with_code_and_reason(local_cluster: LocalCluster, annotations: dict[str, str],
                                                          exit_code: int, reason: str) -> None:
    name = f"fail-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, {"kubetask.dev/sim-duration-seconds": "0.2", **annotations}))
    pod = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") == "Failed")
    terminated = _terminated(pod)
    assert (terminated["exitCode"], terminated["reason"]) == (exit_code, reason)


@pytest.mark.parametrize(("image", "annotations", "reason"), [
    ("registry.example/does-not-exist:1", {}, "ImagePullBackOff"),
    ("busybox", {"kubetask.dev/sim-reason": "CreateContainerConfigError"}, "CreateContainerConfigError"),
])
def test_a_container_that_cannot_start_waits(local_cluster: LocalCluster, image: str, annotations: dict[str, str],
                                             reason: str) -> None:
    name = f"wait-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, annotations, image=image))
    pod = _wait_pod(local_cluster, name, lambda p: (p["status"].get("containerStatuses") or [{}])[0]
                    .get("state", {}).get("waiting", {}).get("reason") == reason)
    assert pod["status"]["phase"] == "Pending"
    time.sleep(1.5)
    still = _pod_of(local_cluster, name)
    assert still is not None and still["status"]["phase"] == "Pending"


def test_active_deadline_fails_the_pod_with_deadline_exceeded(local_cluster: LocalCluster) -> None:
    name = f"deadline-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, {"kubetask.dev/sim-duration-seconds": "60"}, deadline=1))
    pod = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") == "Failed", timeout=20)
    assert pod["status"]["reason"] == "DeadlineExceeded"


def test_logs_come_from_the_annotation_through_the_apiserver(local_cluster: LocalCluster,
                                                            kubectl: KubectlRunner) -> None:
    name = f"logs-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, {"kubetask.dev/sim-duration-seconds": "1", "kubetask.dev/sim-logs": "hello\nworld"},
                             gpus=0))
    pod = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") in ("Running", "Succeeded"))
    assert kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"]).stdout == "hello\nworld\n"
    assert kubectl("-n", NAMESPACE, "logs", "--tail=1", pod["metadata"]["name"]).stdout == "world\n"
    stamped = kubectl("-n", NAMESPACE, "logs", "--timestamps", pod["metadata"]["name"]).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["hello", "world"]
    # follow holds the stream until the container ends
    followed = kubectl("-n", NAMESPACE, "logs", "-f", pod["metadata"]["name"], timeout=30).stdout
    assert followed == "hello\nworld\n"
    assert _pod_of(local_cluster, name)["status"]["phase"] == "Succeeded"  # type: ignore[index]


def test_deleting_a_running_job_terminates_its_pod(local_cluster: LocalCluster) -> None:
    name = f"del-{uuid.uuid4().hex[:6]}"
    local_cluster.apply(_job(name, {"kubetask.dev/sim-duration-seconds": "60"}))
    pod = _wait_pod(local_cluster, name, lambda p: p["status"].get("phase") == "Running")
    response = local_cluster.admin().delete(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}",
                                            params={"propagationPolicy": "Foreground"})
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while local_cluster.get("v1", "Pod", pod["metadata"]["name"], NAMESPACE) is not None:
        assert time.monotonic() < deadline, "the pod of a deleted job was never removed"
        time.sleep(0.1)
