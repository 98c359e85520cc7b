"""The objects kubetask's own core builders produce must pass the sim's (real-apiserver) validation.

Anything rejected here would be rejected by a real cluster too: a production bug in the builder,
not something to relax in the sim.  Known builder bugs are ``xfail(strict=True)`` so that they
are visible here and flip to a failure (to be cleaned up) once fixed.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetask import settings
from kubetask.core import events, jobs, tenants
from kubetask.sim.api import Sim
from kubetask.sim.errors import ApiError

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "charts" / "kubetask" / "files" / "tasktemplates"
KEYS = {"Event": ("", "events"), "Namespace": ("", "namespaces"), "ResourceQuota": ("", "resourcequotas"),
        "LimitRange": ("", "limitranges"), "Role": ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"), "Job": ("batch", "jobs"),
        "Pod": ("", "pods"), "ConfigMap": ("", "configmaps")}


def new_sim(*namespaces: str) -> Sim:
    sim = Sim()
    for ns in ("default", *namespaces):
        sim.seed(("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return sim


def create(sim: Sim, obj: Obj) -> Obj:
    rt = sim.rt_for(KEYS[obj["kind"]])
    ns = obj["metadata"].get("namespace", "") if rt.namespaced else ""
    return copy.deepcopy(asyncio.run(sim.create(rt, ns, copy.deepcopy(obj))))


def tenant(name: str, uid: str = "0b5a3e0e-1111-4c1e-9d7e-000000000001", **limits: Any) -> Obj:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name, "uid": uid},
            "spec": {"displayName": name, "limits": limits,
                     "subjects": [{"kind": "User", "name": f"{name}@example.com"},
                                  {"kind": "Group", "name": "ml-team"},
                                  {"kind": "ServiceAccount", "name": "ci", "namespace": "default"}]}}


def task(name: str = "hello", namespace: str = "default", **spec: Any) -> Obj:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": namespace, "uid": "6f0c2a55-2222-4c1e-9d7e-000000000002"},
            "spec": {"user": "alice", "priority": 5, "queue": "default", **spec}}


# ------------------------------------------------------------------------------- tenants

@pytest.mark.parametrize("limits", [
    {},
    {"maxRunning": 4, "maxPending": 50, "gpuQuota": 8, "cpuQuota": "16", "memoryQuota": "64Gi"},
    {"maxRunning": 0, "gpuQuota": 0},
], ids=["no-limits", "all-limits", "zero-limits"])
def test_tenant_objects_are_accepted(limits: Obj) -> None:
    sim = new_sim()
    for obj in tenants.build_tenant_objects(tenant("alice", **limits)):
        create(sim, obj)


def test_tenant_limit_range_with_max_gpus_is_accepted() -> None:
    sim = new_sim()
    for obj in tenants.build_tenant_objects(tenant("bob", maxGpusPerTask=2)):
        create(sim, obj)


def test_cpu_task_in_tenant_with_max_gpus_gets_no_gpu() -> None:
    """Regression: a LimitRange ``max`` for nvidia.com/gpu is defaulted by the apiserver into
    ``default``/``defaultRequest``, which would give every CPU-only container nvidia.com/gpu=<max>."""
    sim = new_sim()
    t = tenant("bob", maxGpusPerTask=2)
    objs = tenants.build_tenant_objects(t)
    for obj in objs:
        create(sim, obj)
    ns = objs[0]["metadata"]["name"]
    w = jobs.build_workload(task(namespace=ns, image="python:3.11", runtime="pod"), execution=1,
                            gpu=settings.GpuSettings())
    pod = w.body
    del pod["spec"]["containers"][0]["resources"]  # what any container without GPU limits looks like
    created = create(sim, pod)
    assert "nvidia.com/gpu" not in (created["spec"]["containers"][0].get("resources") or {}).get("limits", {})


@pytest.mark.parametrize("name", ["team.a", "a" * 55], ids=["dotted", "long"])
def test_the_tenant_crd_refuses_names_that_cannot_become_a_namespace(name: str) -> None:
    # A Tenant becomes Namespace kubetask-<name> and label kubetask.io/tenant=<name>: both need a
    # DNS label of at most 63 characters, so the CRD itself only admits names that fit.
    sim = new_sim()
    crd = yaml.safe_load((ROOT / "crds" / "tenant.yaml").read_text())
    asyncio.run(sim.create(sim.rt_for(("apiextensions.k8s.io", "customresourcedefinitions")), "", crd))
    with pytest.raises(ApiError) as refused:
        asyncio.run(sim.create(sim.rt_for(("kubetask.io", "tenants")), "", tenant(name)))
    assert refused.value.code == 422
    assert "metadata.name" in str(refused.value)


def test_the_longest_tenant_name_builds_valid_objects() -> None:
    sim = new_sim()
    for obj in tenants.build_tenant_objects(tenant("a" * 54)):
        create(sim, obj)


# ------------------------------------------------------------------------------- workloads

def _builtin_templates() -> dict[str, Obj]:
    out: dict[str, Obj] = {}
    for f in sorted(TEMPLATES.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        out[doc["metadata"]["name"]] = doc["spec"]
    return out


def _params(spec: Obj) -> Obj:
    out: Obj = {}
    for p in spec.get("parameters") or ():
        if p.get("required"):
            typed: Obj = {"integer": 3, "number": 0.5, "boolean": True, "object": {"text": "hi"},
                          "array": ["hi"]}
            out[p["name"]] = typed.get(p.get("type"), "https://x.io/a.git" if "repo" in p["name"] else "hi")
    return out


TASKS: list[tuple[str, Obj]] = [
    ("image", {"image": "busybox:1.36", "command": ["sh", "-c", "echo hi"], "args": ["a", {"k": 1}],
               "env": {"A": "1", "lower.case-name": "x"}}),
    ("image-latest-untagged", {"image": "busybox"}),
    ("script-python", {"script": {"language": "python", "content": "print('hi')"}}),
    ("script-bash", {"script": {"language": "bash", "content": "echo hi"}, "timeoutSeconds": 30}),
    ("gpu", {"image": "nvcr.io/nvidia/cuda:12.4.0-base", "resources": {"gpus": 2, "gpuType": "NVIDIA-A100-SXM4-80GB",
                                                                       "cpu": "4", "memory": "16Gi"}}),
    ("pod-runtime", {"image": "busybox:1.36", "runtime": "pod", "timeoutSeconds": 10}),
    ("extras", {"image": "busybox:1.36", "nodeSelector": {"pool": "batch"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
                "podLabels": {"team": "ml"}, "podAnnotations": {"kubetask.dev/sim-exit-code": "0"},
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]}),
]


@pytest.mark.parametrize(("spec"), [t[1] for t in TASKS], ids=[t[0] for t in TASKS])
@pytest.mark.parametrize("cpu_on_gpu", [True, False], ids=["cpu-on-gpu-nodes", "cpu-off-gpu-nodes"])
def test_task_workloads_are_accepted(spec: Obj, cpu_on_gpu: bool) -> None:
    sim = new_sim()
    gpu = settings.GpuSettings(cpu_tasks_on_gpu_nodes=cpu_on_gpu)
    w = jobs.build_workload(task("my-task.v2", **spec), execution=3, gpu=gpu, token="tok",
                            callback_url="http://kubetask-api.kubetask.svc:8000/")
    if w.configmap is not None:
        create(sim, w.configmap)
    created = create(sim, w.body)
    assert created["kind"] == w.kind


@pytest.mark.parametrize("name", sorted(_builtin_templates()))
def test_builtin_template_workloads_are_accepted(name: str) -> None:
    sim = new_sim()
    spec = _builtin_templates()[name]
    t = task("tpl-task", template={"name": name, "parameters": _params(spec)})
    w = jobs.build_workload(t, execution=1, gpu=settings.GpuSettings(), template_spec=spec)
    if w.configmap is not None:
        create(sim, w.configmap)
    create(sim, w.body)


def test_long_task_names_give_valid_job_names() -> None:
    sim = new_sim()
    for name in ("t" * 253, "a" * 62 + ".b", "x" * 58 + "-" + "y" * 20):
        w = jobs.build_workload(task(name, image="busybox:1.36"), execution=12, gpu=settings.GpuSettings())
        try:
            create(sim, w.body)
        except ApiError as e:  # pragma: no cover - a failure message that names the field
            pytest.fail(f"{name!r}: {e.message}")


def test_core_events_are_accepted() -> None:
    sim = new_sim("kubetask-alice")
    t = task(namespace="kubetask-alice")
    ten = tenant("alice")
    for involved in (t, ten):
        create(sim, events.build_event(involved, reason="Admitted", message="x" * 5000, event_type="Warning"))
