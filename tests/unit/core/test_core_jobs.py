"""Table-driven tests of the Task → Job/Pod/ConfigMap builder."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetask.core.jobs import BuildError, build_workload, job_name, task_demand
from kubetask.core.scheduling import MILLI, to_milli
from kubetask.settings import GpuSettings

GPU = GpuSettings()


def task(spec: dict[str, Any], name: str = "t1") -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "kubetask-alice", "uid": "uid-1"},
            "spec": {"user": "alice", **spec}}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize(("spec", "expect"), [
    ({"image": "busybox", "command": ["echo", "hi"], "resources": {"gpus": 2}},
     {"gpu_limit": "2", "selector": {"nvidia.com/gpu.present": "true"}, "toleration": True, "cpu": "1",
      "memory": "2Gi"}),
    ({"image": "busybox", "resources": {"gpus": 1, "gpuType": "H100", "cpu": "4", "memory": "8Gi"}},
     {"gpu_limit": "1", "selector": {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "H100"},
      "toleration": True, "cpu": "4", "memory": "8Gi"}),
    ({"image": "busybox", "resources": {"gpus": 0}},
     {"gpu_limit": None, "selector": None, "toleration": False, "cpu": "1", "memory": "2Gi"}),
    ({"image": "busybox", "nodeSelector": {"zone": "a"}},
     {"gpu_limit": None, "selector": {"zone": "a"}, "toleration": False, "cpu": "1", "memory": "2Gi"}),
])
def test_gpu_scheduling_and_requests(spec: dict[str, Any], expect: dict[str, Any]) -> None:
    workload = build_workload(task(spec), execution=1, gpu=GPU)
    pod = workload.body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"].get("nvidia.com/gpu") == expect["gpu_limit"]
    assert container["resources"]["requests"].get("nvidia.com/gpu") == expect["gpu_limit"]
    assert container["resources"]["requests"]["cpu"] == expect["cpu"]
    assert container["resources"]["requests"]["memory"] == expect["memory"]
    assert pod.get("nodeSelector") == expect["selector"]
    has_toleration = any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or [])
    assert has_toleration is expect["toleration"]
    assert pod["restartPolicy"] == "Never"


def test_job_shape_labels_owner_deadline_env() -> None:
    spec = {"image": "busybox", "timeoutSeconds": 30, "args": ["a", 1], "kwargs": {"k": "v"},
            "podAnnotations": {"kubetask.dev/sim-exit-code": "1"}, "podLabels": {"team": "x"}}
    workload = build_workload(task(spec), execution=3, gpu=GPU, token="tok",
                              callback_url="http://api:8000/")
    job = workload.body
    assert workload.kind == "Job"
    assert job["metadata"]["name"] == "t1-3"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 30
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["kubetask.io/task"] == "t1" and labels["kubetask.io/user"] == "alice"
    assert labels["kubetask.io/execution"] == "3" and labels["team"] == "x"
    assert job["spec"]["template"]["metadata"]["annotations"]["kubetask.dev/sim-exit-code"] == "1"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Task" and owner["uid"] == "uid-1" and owner["controller"] is True
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["KUBETASK_TASK_NAME"] == "t1"
    assert env["KUBETASK_TASK_TOKEN"] == "tok"
    assert env["KUBETASK_CALLBACK_URL"] == "http://api:8000/api/v1/tasks/t1/complete"
    assert json.loads(env["KUBETASK_ARGS"]) == ["a", 1]
    assert json.loads(env["KUBETASK_KWARGS"]) == {"k": "v"}


def test_no_callback_url_no_env() -> None:
    workload = build_workload(task({"image": "x"}), execution=1, gpu=GPU)
    assert "KUBETASK_CALLBACK_URL" not in env_of(workload.body["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize(("language", "interpreter", "filename"), [("python", "python", "script.py"),
                                                                  ("bash", "bash", "script.sh")])
def test_script_configmap(language: str, interpreter: str, filename: str) -> None:
    workload = build_workload(task({"script": {"language": language, "content": "print(1)"}}), execution=1,
                              gpu=GPU)
    assert workload.configmap is not None
    assert workload.configmap["data"] == {filename: "print(1)"}
    assert workload.configmap["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    container = workload.body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == [interpreter, f"/kubetask/script/{filename}"]
    assert workload.body["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "t1-script"


def test_runtime_pod() -> None:
    workload = build_workload(task({"image": "x", "runtime": "pod", "timeoutSeconds": 5}), execution=2, gpu=GPU)
    assert workload.kind == "Pod"
    assert workload.body["metadata"]["name"] == "t1-2"
    assert workload.body["spec"]["activeDeadlineSeconds"] == 5
    assert workload.body["metadata"]["labels"]["kubetask.io/execution"] == "2"


def test_template_rendering_and_defaults() -> None:
    template = {"parameters": [{"name": "model", "type": "string", "required": True},
                               {"name": "n", "type": "integer", "default": 3}],
                "podTemplate": {"image": "ollama:1", "args": ["--model={{model}}", "{{n}}"]},
                "defaults": {"resources": {"gpus": 1, "memory": "16Gi"}, "timeoutSeconds": 99}}
    workload = build_workload(task({"template": {"name": "ollama", "parameters": {"model": "llama"}}}),
                              execution=1, gpu=GPU, template_spec=template)
    container = workload.body["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--model=llama", "3"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["memory"] == "16Gi"
    assert workload.body["spec"]["activeDeadlineSeconds"] == 99


@pytest.mark.parametrize("spec", [{}, {"template": {"name": "missing"}}])
def test_nothing_to_run(spec: dict[str, Any]) -> None:
    with pytest.raises(BuildError):
        build_workload(task(spec), execution=1, gpu=GPU)


def test_long_names_are_deterministic_and_short() -> None:
    long = "a" * 80
    assert job_name(long, 1) == job_name(long, 1)
    assert len(job_name(long, 12)) <= 63 and job_name(long, 12).endswith("-12")
    assert job_name("short", 2) == "short-2"


def test_cpu_tasks_off_gpu_nodes() -> None:
    gpu = GpuSettings(cpu_tasks_on_gpu_nodes=False)
    pod = build_workload(task({"image": "x"}), execution=1, gpu=gpu).body["spec"]["template"]["spec"]
    expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert expr["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"] == "NotIn"


def test_demand() -> None:
    demand = task_demand({"resources": {"gpus": 2, "cpu": "500m", "memory": "1Gi", "gpuType": "A100"}})
    assert demand.gpus == 2 * MILLI and demand.cpu == 500 and demand.memory == to_milli("1Gi")
    assert demand.gpu_type == "A100"
    assert task_demand({}).cpu == MILLI
