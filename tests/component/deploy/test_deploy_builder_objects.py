"""What kubetask's own builders produce, sent to the real kube-apiserver (server-side dry run).

kubetask.core.jobs (Task -> Job / Pod / ConfigMap), kubetask.core.tenants (Tenant -> Namespace,
ResourceQuota, LimitRange, Role, RoleBinding) and kubetask.core.events must produce objects a
real cluster accepts, admission plugins included (LimitRanger, ResourceQuota, ServiceAccount,
PodSecurity). A refusal here is a bug in the builder. A few deliberately broken variants of the
same outputs must be refused, so these checks can fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    API_VERSION,
    Obj,
    accepted,
    assert_refused,
    create,
    dry_run_create,
    ensure_namespace,
    unique,
    wait_for,
)

from kubetask import settings
from kubetask.cluster import LocalCluster
from kubetask.core import events, jobs, tenants
from kubetask.core.scheduling import to_milli

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "charts" / "kubetask" / "files" / "tasktemplates"
FAKE_UID = "0b5a3e0e-1111-4c1e-9d7e-000000000001"


def tenant(name: str, uid: str = FAKE_UID, **limits: Any) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name, "uid": uid},
            "spec": {"displayName": name, "limits": limits,
                     "subjects": [{"kind": "User", "name": f"{name}@example.com"},
                                  {"kind": "Group", "name": "ml-team"},
                                  {"kind": "ServiceAccount", "name": "ci", "namespace": "default"}]}}


def task(name: str, namespace: str, **spec: Any) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Task",
            "metadata": {"name": name, "namespace": namespace, "uid": "6f0c2a55-2222-4c1e-9d7e-000000000002"},
            "spec": {"user": "alice", "priority": 5, "queue": "default", **spec}}


@pytest.fixture
def tenant_namespaces(cluster: LocalCluster) -> Iterator[Callable[[Obj], Obj]]:
    """Create a tenant's Namespace for real (the builder's own object); deleted afterwards."""
    made: list[str] = []

    def make(namespace: Obj) -> Obj:
        assert namespace["kind"] == "Namespace"
        made.append(namespace["metadata"]["name"])
        created = create(cluster, namespace)
        ensure_namespace(cluster, namespace["metadata"]["name"])  # waits until it is Active
        return created

    yield make
    for name in made:
        cluster.admin().delete(f"/api/v1/namespaces/{name}")


def _dry_run_all(cluster: LocalCluster, objects: list[Obj]) -> list[Obj]:
    return [accepted(dry_run_create(cluster, obj)) for obj in objects]


# ------------------------------------------------------------------------------- tenants

@pytest.mark.parametrize("limits", [
    {},
    {"maxRunning": 4, "maxPending": 50, "gpuQuota": 8, "cpuQuota": "16", "memoryQuota": "64Gi"},
    {"maxRunning": 0, "gpuQuota": 0},
    {"maxGpusPerTask": 2, "cpuQuota": "500m", "memoryQuota": "1.5Gi"},
], ids=["no-limits", "all-limits", "zero-limits", "max-gpus-per-task"])
def test_tenant_objects_are_accepted(cluster: LocalCluster, tenant_namespaces: Callable[[Obj], Obj],
                                     limits: Obj) -> None:
    namespace, *rest = tenants.build_tenant_objects(tenant(unique("kd"), **limits))
    created = tenant_namespaces(namespace)
    assert created["metadata"]["labels"][tenants.TENANT_LABEL] == namespace["metadata"]["labels"][tenants.TENANT_LABEL]
    bodies = _dry_run_all(cluster, rest)
    assert [b["kind"] for b in bodies] == ["ResourceQuota", "LimitRange", "Role", "RoleBinding"]
    hard = bodies[0]["spec"]["hard"]  # the apiserver writes quantities canonically: 1000 -> 1k, 1.5Gi -> 1536Mi
    assert {k: to_milli(v) for k, v in hard.items()} == {k: to_milli(v) for k, v in tenants.quota_hard(limits).items()}
    assert bodies[3]["subjects"][2] == {"kind": "ServiceAccount", "name": "ci", "namespace": "default"}


def test_the_longest_tenant_name_builds_valid_objects(cluster: LocalCluster,
                                                      tenant_namespaces: Callable[[Obj], Obj]) -> None:
    name = unique("kd")
    name += "x" * (54 - len(name))
    accepted(dry_run_create(cluster, {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}}))
    namespace, *rest = tenants.build_tenant_objects(tenant(name))
    assert len(namespace["metadata"]["name"]) == 63
    tenant_namespaces(namespace)
    _dry_run_all(cluster, rest)


@pytest.mark.parametrize(("name", "fragment"), [("team.a", "should match"), ("a" * 55, "may not be more than 54")],
                         ids=["dotted", "long"])
def test_the_tenant_crd_refuses_names_that_cannot_become_a_namespace(cluster: LocalCluster, name: str,
                                                                     fragment: str) -> None:
    # A Tenant becomes Namespace kubetask-<name> and label kubetask.io/tenant=<name>: both need a
    # DNS label of at most 63 characters, so the CRD itself only admits names that fit.
    body = {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}}
    assert_refused(dry_run_create(cluster, body), "metadata.name", fragment)


def test_cpu_task_in_tenant_with_max_gpus_gets_no_gpu(cluster: LocalCluster,
                                                      tenant_namespaces: Callable[[Obj], Obj]) -> None:
    """Regression: a LimitRange ``max`` for nvidia.com/gpu is defaulted by the apiserver into
    ``default``/``defaultRequest``, which would give every CPU-only container nvidia.com/gpu=<max>.

    Everything the Tenant becomes is created for real (owned by a real Tenant, so the garbage
    collector keeps it); the LimitRanger and ResourceQuota admission plugins then see a dry-run Pod.
    """
    real = create(cluster, {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": unique("kd")},
                            "spec": tenant("x", maxGpusPerTask=2, gpuQuota=4)["spec"]})
    name = real["metadata"]["name"]
    try:
        namespace, *rest = tenants.build_tenant_objects(real)
        ns = namespace["metadata"]["name"]
        tenant_namespaces(namespace)
        for obj in rest:
            create(cluster, obj)
        ensure_namespace(cluster, ns, service_account=True)
        quota = f"/api/v1/namespaces/{ns}/resourcequotas/kubetask-quota"
        wait_for(lambda: bool((cluster.admin().get(quota).json().get("status") or {}).get("hard")),
                 "the quota controller to fill in the ResourceQuota status (admission needs it)")
        w = jobs.build_workload(task("cpu-only", ns, image="python:3.11", runtime="pod"), execution=1,
                                gpu=settings.GpuSettings())
        pod = w.body
        del pod["spec"]["containers"][0]["resources"]  # what any container without GPU limits looks like
        created = accepted(dry_run_create(cluster, pod))
        resources = created["spec"]["containers"][0].get("resources") or {}
        assert resources.get("limits") == {"cpu": tenants.DEFAULT_CONTAINER_CPU,
                                           "memory": tenants.DEFAULT_CONTAINER_MEMORY}, "LimitRange defaults"
        assert resources.get("requests") == resources["limits"]
        assert "nvidia.com/gpu" not in resources["limits"]
        gpu_pod = jobs.build_workload(task("gpu", ns, image="cuda:12", runtime="pod", resources={"gpus": 5}),
                                      execution=1, gpu=settings.GpuSettings()).body
        over_quota = dry_run_create(cluster, gpu_pod)
        assert over_quota.status_code == 403 and "exceeded quota" in over_quota.json()["message"], over_quota.text
    finally:
        cluster.delete(API_VERSION, "Tenant", name)


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
def test_task_workloads_are_accepted(cluster: LocalCluster, checks_namespace: str, spec: Obj,
                                     cpu_on_gpu: bool) -> None:
    gpu = settings.GpuSettings(cpu_tasks_on_gpu_nodes=cpu_on_gpu)
    w = jobs.build_workload(task("my-task.v2", checks_namespace, **spec), execution=3, gpu=gpu, token="tok",
                            callback_url="http://kubetask-api.kubetask.svc:8000/")
    if w.configmap is not None:
        assert accepted(dry_run_create(cluster, w.configmap))["data"] == w.configmap["data"]
    created = accepted(dry_run_create(cluster, w.body))
    assert created["kind"] == w.kind and created["metadata"]["name"] == w.body["metadata"]["name"]
    pod = created["spec"] if w.kind == "Pod" else created["spec"]["template"]["spec"]
    built = w.body["spec"] if w.kind == "Pod" else w.body["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == built["containers"][0]["resources"]
    assert pod["containers"][0]["env"] == built["containers"][0]["env"]


@pytest.mark.parametrize("name", sorted(_builtin_templates()))
def test_builtin_template_workloads_are_accepted(cluster: LocalCluster, checks_namespace: str, name: str) -> None:
    spec = _builtin_templates()[name]
    t = task("tpl-task", checks_namespace, template={"name": name, "parameters": _params(spec)})
    w = jobs.build_workload(t, execution=1, gpu=settings.GpuSettings(), template_spec=spec)
    if w.configmap is not None:
        accepted(dry_run_create(cluster, w.configmap))
    assert accepted(dry_run_create(cluster, w.body))["kind"] == "Job"


@pytest.mark.parametrize("name", ["t" * 253, "a" * 62 + ".b", "x" * 58 + "-" + "y" * 20, "z" * 60])
@pytest.mark.parametrize("runtime", ["job", "pod"])
def test_long_task_names_give_valid_workload_names(cluster: LocalCluster, checks_namespace: str, name: str,
                                                   runtime: str) -> None:
    w = jobs.build_workload(task(name, checks_namespace, image="busybox:1.36", runtime=runtime), execution=12,
                            gpu=settings.GpuSettings())
    accepted(dry_run_create(cluster, w.body))


def test_core_events_are_accepted(cluster: LocalCluster, checks_namespace: str) -> None:
    t = task("hello", checks_namespace)
    ten = tenant("alice")
    for involved in (t, ten):
        event = events.build_event(involved, reason="Admitted", message="x" * 5000, event_type="Warning")
        body = accepted(dry_run_create(cluster, event))
        assert body["involvedObject"]["kind"] == involved["kind"] and len(body["message"]) == 1024


# ------------------------------------------------------------------------------- the checks can fail

def _job(namespace: str) -> Obj:
    return jobs.build_workload(task("broken", namespace, image="busybox:1.36"), execution=1,
                               gpu=settings.GpuSettings()).body


def _pod(namespace: str) -> Obj:
    return jobs.build_workload(task("broken", namespace, image="busybox:1.36", runtime="pod"), execution=1,
                               gpu=settings.GpuSettings()).body


def _long_job_name(ns: str) -> Obj:
    job = _job(ns)
    job["metadata"]["name"] = "j" * 64
    return job


def _requests_over_limits(ns: str) -> Obj:
    pod = _pod(ns)
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    return pod


def _restart_always(ns: str) -> Obj:
    job = _job(ns)
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    return job


def _toleration_exists_with_value(ns: str) -> Obj:
    pod = _pod(ns)
    pod["spec"]["tolerations"] = [{"key": "k", "operator": "Exists", "value": "v"}]
    return pod


def _label_too_long(ns: str) -> Obj:
    job = _job(ns)
    job["spec"]["template"]["metadata"]["labels"][jobs.TASK_LABEL] = "l" * 64
    return job


def _event_in_wrong_namespace(ns: str) -> Obj:
    event = events.build_event(task("hello", "somewhere-else"), reason="Admitted", message="m")
    event["metadata"]["namespace"] = ns
    return event


def _role_binding_to_a_thing(ns: str) -> Obj:
    binding = tenants.build_role_binding(tenant("alice"), ns)
    binding["roleRef"]["kind"] = "Thing"
    return binding


def _limit_range_default_over_max(ns: str) -> Obj:
    limits = tenants.build_limit_range(tenant("alice"), ns)
    limits["spec"]["limits"][0]["max"] = {"cpu": "500m"}
    return limits


def _configmap_bad_key(ns: str) -> Obj:
    w = jobs.build_workload(task("s", ns, script={"language": "bash", "content": "echo"}), execution=1,
                            gpu=settings.GpuSettings())
    assert w.configmap is not None
    configmap = copy.deepcopy(w.configmap)
    configmap["data"] = {"a/b": "x"}
    return configmap


def _namespace_too_long(ns: str) -> Obj:
    return tenants.build_namespace("alice", "n" * 64)


def _quota_not_a_quantity(ns: str) -> Obj:
    quota = tenants.build_resource_quota(tenant("alice", cpuQuota="lots"), ns)
    return quota


BROKEN: list[tuple[str, Callable[[str], Obj], int, str, str]] = [
    ("job-name-over-63", _long_job_name, 422, "spec.template.labels", "must be no more than 63"),
    ("requests-over-limits", _requests_over_limits, 422, "spec.containers[0].resources.requests",
     "must be less than or equal to cpu limit"),
    ("job-restart-always", _restart_always, 422, "spec.template.spec.restartPolicy",
     'valid values: "OnFailure", "Never"'),
    ("toleration-exists-with-value", _toleration_exists_with_value, 422, "spec.tolerations[0].operator",
     "value must be empty when `operator` is 'Exists'"),
    ("label-value-over-63", _label_too_long, 422, "spec.template.labels", "must be no more than 63"),
    ("event-namespace-mismatch", _event_in_wrong_namespace, 422, "involvedObject.namespace",
     "does not match event.namespace"),
    ("role-ref-kind", _role_binding_to_a_thing, 422, "roleRef.kind", "Unsupported value"),
    ("limit-range-default-over-max", _limit_range_default_over_max, 422, "spec.limits[0].default[cpu]",
     "default value 1 is greater than max value 500m"),
    ("configmap-key", _configmap_bad_key, 422, "data[a/b]", "a valid config key"),
    ("namespace-name-over-63", _namespace_too_long, 422, "metadata.name", "must be no more than 63"),
    ("quota-not-a-quantity", _quota_not_a_quantity, 400, "", "quantities must match"),
]


@pytest.mark.parametrize(("build", "status", "field", "fragment"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_objects_are_refused(cluster: LocalCluster, checks_namespace: str, build: Callable[[str], Obj],
                                    status: int, field: str, fragment: str) -> None:
    assert_refused(dry_run_create(cluster, build(checks_namespace)), field, fragment, status=status)
