"""Issue 12: hostile and malformed CRs, applied with the real kubectl against the real apiserver.

The session's control plane with kubetask's CRDs, and the operator (in this process) with its webhooks
registered.  Each manifest of the table must be refused — by the CRD schema, a CEL rule or the operator's
webhook — with kubectl exiting non-zero and a message that names the field (or says what to do).  Nothing
of a refused manifest may exist afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kt_support import KubectlRunner, kubectl_runner, remove_webhook_configurations, reset_namespaces

from kubetask.cluster import LocalCluster
from kubetask.core.models import MAX_SCRIPT_BYTES
from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

API = "kubetask.io/v1alpha1"
TENANTS = "/apis/kubetask.io/v1alpha1/tenants"


@dataclass
class Scene:
    """What the hostile manifests aim at: a victim tenant (and one with an explicit namespace), its Task,
    and a namespace no Tenant owns."""

    victim: str
    namespace: str
    fixed: str
    """A Tenant created with an explicit ``spec.namespace`` (the CEL transition rules apply to it)."""
    fixed_namespace: str
    stray: str
    kubectl: KubectlRunner
    cluster: LocalCluster


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def scene(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    home = tmp_path_factory.mktemp("hostile")
    kubeconfig = local_cluster.write_kubeconfig(home / "kubeconfig")
    suffix = uuid.uuid4().hex[:6]
    victim, fixed, stray = f"hostile-{suffix}", f"hostile-fixed-{suffix}", f"hostile-stray-{suffix}"
    namespace, fixed_namespace = f"kubetask-{victim}", f"hostile-ns-{suffix}"
    settings = OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False)
    handle: OperatorHandle | None = run_operator_in_thread(
        settings, GpuSettings(), KubeSettings(kubeconfig=str(kubeconfig)), timeout=90)
    http = local_cluster.admin()
    try:
        for name, spec in ((victim, {"limits": {"maxGpusPerTask": 2}}), (fixed, {"namespace": fixed_namespace})):
            response = http.post(TENANTS, json={"apiVersion": API, "kind": "Tenant", "metadata": {"name": name},
                                                "spec": spec})
            assert response.status_code == 201, response.text
        for ns in (namespace, fixed_namespace):
            _wait(lambda n=ns: local_cluster.get("v1", "ResourceQuota", "kubetask-quota", n) is not None, 30,
                  f"{ns} reconciled")
        response = http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": stray}})
        assert response.status_code == 201, response.text
        existing = {"apiVersion": API, "kind": "Task", "metadata": {"name": "existing", "namespace": namespace},
                    "spec": {"image": "busybox", "scheduledAt": "2099-01-01T00:00:00Z"}}  # waits: never runs
        response = http.post(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace}/tasks", json=existing)
        assert response.status_code == 201, response.text
        yield Scene(victim, namespace, fixed, fixed_namespace, stray, kubectl_runner(kubeconfig, home), local_cluster)
    finally:
        if handle is not None:
            handle.stop()
        remove_webhook_configurations(local_cluster)
        reset_namespaces(local_cluster, [namespace, fixed_namespace])
        for name in (victim, fixed):
            local_cluster.delete(API, "Tenant", name)
        for ns in (namespace, fixed_namespace, stray):
            http.delete(f"/api/v1/namespaces/{ns}")


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


def task(namespace: str, name: str = "hostile", **spec: Any) -> dict[str, Any]:
    if not ({"image", "script", "template"} & set(spec)) and not spec.pop("nothing", False):
        spec["image"] = "busybox"
    return {"apiVersion": API, "kind": "Task", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def template(name: str = "hostile-template", **spec: Any) -> dict[str, Any]:
    spec.setdefault("podTemplate", {"image": "busybox"})
    if spec["podTemplate"] is None:
        del spec["podTemplate"]
    return {"apiVersion": API, "kind": "TaskTemplate", "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True)
class Case:
    id: str
    manifest: Callable[[Scene], dict[str, Any]]
    words: tuple[str, ...]
    """Substrings the refusal must contain (the field, or what to do)."""
    verb: str = "create"
    """``create`` for a new object; ``replace`` to change an existing one."""


def _t(s: Scene, **spec: Any) -> dict[str, Any]:
    return task(s.namespace, **spec)


CASES = [
    # ---- Tenants: namespace takeover and system namespaces (webhook)
    Case("tenant-takeover-derived-namespace", lambda s: tenant(f"{s.victim}-x", namespace=s.namespace),
         ("spec.namespace", "already belongs to another tenant")),
    Case("tenant-takeover-explicit-namespace", lambda s: tenant(f"{s.fixed}-x", namespace=s.fixed_namespace),
         ("spec.namespace", "already belongs to another tenant")),
    Case("tenant-kube-system", lambda s: tenant(f"{s.victim}-ks", namespace="kube-system"),
         ("spec.namespace", "system namespace")),
    Case("tenant-kube-public", lambda s: tenant(f"{s.victim}-kp", namespace="kube-public"),
         ("spec.namespace", "system namespace")),
    Case("tenant-kube-node-lease", lambda s: tenant(f"{s.victim}-kl", namespace="kube-node-lease"),
         ("spec.namespace", "system namespace")),
    Case("tenant-default-namespace", lambda s: tenant(f"{s.victim}-d", namespace="default"),
         ("spec.namespace", "system namespace")),
    # ---- Tenants: spec.namespace is immutable (webhook for a derived one, CEL for an explicit one)
    Case("tenant-namespace-change-derived", lambda s: tenant(s.victim, namespace=f"{s.namespace}-moved"),
         ("spec.namespace is immutable",), verb="replace"),
    Case("tenant-namespace-change-explicit", lambda s: tenant(s.fixed, namespace=f"{s.fixed_namespace}-moved"),
         ("spec.namespace", "immutable"), verb="replace"),
    Case("tenant-namespace-removed", lambda s: tenant(s.fixed), ("spec.namespace",), verb="replace"),
    # ---- Tenants: schema
    Case("tenant-bad-namespace-name", lambda s: tenant(f"{s.victim}-b", namespace="Not_A_Namespace"),
         ("spec.namespace", "should match")),
    Case("tenant-bad-name", lambda s: tenant("Evil_Tenant"), ("metadata.name",)),
    Case("tenant-unknown-role", lambda s: tenant(f"{s.victim}-r", role="root"), ("spec.role", "Unsupported value")),
    Case("tenant-negative-max-pending", lambda s: tenant(f"{s.victim}-n", limits={"maxPending": -1}),
         ("spec.limits.maxPending", "greater than or equal to 0")),
    Case("tenant-bad-cpu-quota", lambda s: tenant(f"{s.victim}-c", limits={"cpuQuota": "lots"}),
         ("spec.limits.cpuQuota", "should match")),
    Case("tenant-serviceaccount-without-namespace",
         lambda s: tenant(f"{s.victim}-sa", subjects=[{"kind": "ServiceAccount", "name": "ci"}]),
         ("spec.subjects[0]", "a ServiceAccount subject needs a namespace")),
    Case("tenant-unknown-subject-kind", lambda s: tenant(f"{s.victim}-k", subjects=[{"kind": "Robot", "name": "r"}]),
         ("spec.subjects[0].kind", "Unsupported value")),
    Case("tenant-unknown-key-profile",
         lambda s: tenant(f"{s.victim}-p", apiKeys=[{"name": "k", "profile": "backdoor"}]),
         ("spec.apiKeys[0].profile", "Unsupported value")),
    Case("tenant-unknown-field", lambda s: tenant(f"{s.victim}-u", owner="mallory"), ('unknown field "spec.owner"',)),
    # ---- Tasks: where
    Case("task-in-namespace-of-no-tenant", lambda s: task(s.stray), ("belongs to no kubetask Tenant",
                                                                      "your tenant's namespace")),
    Case("task-in-default-namespace", lambda s: task("default"), ("namespace default belongs to no kubetask Tenant",)),
    # ---- Tasks: schema and CEL
    Case("task-negative-gpus", lambda s: _t(s, resources={"gpus": -1}),
         ("spec.resources.gpus", "greater than or equal to 0")),
    Case("task-too-many-gpus-for-the-schema", lambda s: _t(s, resources={"gpus": 65}),
         ("spec.resources.gpus", "less than or equal to 64")),
    Case("task-huge-priority", lambda s: _t(s, priority=10**12), ("spec.priority", "less than or equal to 10")),
    Case("task-negative-priority", lambda s: _t(s, priority=-1), ("spec.priority", "greater than or equal to 0")),
    Case("task-nothing-to-run", lambda s: _t(s, nothing=True),
         ("exactly one of spec.template, spec.image or spec.script",)),
    Case("task-image-and-script", lambda s: _t(s, image="busybox", script={"language": "bash", "content": "id"}),
         ("exactly one of spec.template, spec.image or spec.script",)),
    Case("task-unknown-script-language", lambda s: _t(s, script={"language": "ruby", "content": "puts 1"}),
         ("spec.script.language", "Unsupported value")),
    Case("task-script-too-large", lambda s: _t(s, script={"language": "bash", "content": "#" * (MAX_SCRIPT_BYTES + 1)}),
         ("spec.script.content", "Too long")),
    Case("task-unknown-field", lambda s: _t(s, privileged=True), ('unknown field "spec.privileged"',)),
    Case("task-bad-queue-name", lambda s: _t(s, queue="No Spaces Please"), ("spec.queue", "should match")),
    Case("task-zero-timeout", lambda s: _t(s, timeoutSeconds=0), ("spec.timeoutSeconds", "greater than or equal to 1")),
    Case("task-too-many-retries", lambda s: _t(s, maxRetries=21), ("spec.maxRetries", "less than or equal to 20")),
    Case("task-gpu-type-without-gpus", lambda s: _t(s, resources={"gpuType": "A100"}),
         ("resources.gpuType requires resources.gpus > 0",)),
    Case("task-bad-toleration-operator", lambda s: _t(s, tolerations=[{"key": "k", "operator": "Sometimes"}]),
         ("spec.tolerations[0].operator", "Unsupported value")),
    Case("task-unknown-runtime", lambda s: _t(s, runtime="vm"), ("spec.runtime", "Unsupported value")),
    Case("task-env-without-name", lambda s: _t(s, env=[{"value": "x"}]), ("spec.env[0].name", "Required value")),
    Case("task-scheduled-at-not-a-time", lambda s: _t(s, scheduledAt="tomorrow"), ("spec.scheduledAt",)),
    Case("task-bad-name", lambda s: task(s.namespace, name="Bad_Task"), ("metadata.name",)),
    Case("task-user-changed", lambda s: task(s.namespace, name="existing", user="mallory",
                                            scheduledAt="2099-01-01T00:00:00Z"),
         ("spec.user is immutable",), verb="replace"),
    # ---- Tasks: the webhook's rules (tenant limits, templates, dependencies)
    Case("task-more-gpus-than-the-tenant-allows", lambda s: _t(s, resources={"gpus": 4}),
         ("Too many GPUs requested: 4 (max 2 per task",)),
    Case("task-timeout-over-the-tenant-maximum", lambda s: _t(s, timeoutSeconds=999999),
         ("timeoutSeconds 999999 exceeds the maximum of 3600 s",)),
    Case("task-unknown-template", lambda s: _t(s, template={"name": "no-such-template"}),
         ("Unknown template 'no-such-template'",)),
    Case("task-missing-dependency", lambda s: _t(s, dependsOn=["no-such-task"]),
         ("Dependency 'no-such-task' does not exist",)),
    Case("task-depends-on-itself", lambda s: _t(s, dependsOn=["hostile"]), ("cannot depend on itself",)),
    # ---- TaskTemplates
    Case("template-required-and-default",
         lambda s: template(parameters=[{"name": "ok"}, {"name": "model", "required": True, "default": "gpt"}]),
         ("spec.parameters[1].default", "required and has a default")),
    Case("template-default-of-the-wrong-type",
         lambda s: template(parameters=[{"name": "n", "type": "integer", "default": "many"}]),
         ("spec.parameters[0].default", "must be an integer")),
    Case("template-default-outside-its-enum",
         lambda s: template(parameters=[{"name": "c", "enum": ["red", "blue"], "default": "green"}]),
         ("spec.parameters[0].default", "must be one of red, blue")),
    Case("template-bad-parameter-name", lambda s: template(parameters=[{"name": "1bad"}]),
         ("spec.parameters[0].name", "should match")),
    Case("template-unknown-parameter-type", lambda s: template(parameters=[{"name": "d", "type": "date"}]),
         ("spec.parameters[0].type", "Unsupported value")),
    Case("template-duplicate-parameters", lambda s: template(parameters=[{"name": "a"}, {"name": "a"}]),
         ("spec.parameters[1]", "Duplicate value")),
    Case("template-without-pod-template", lambda s: template(podTemplate=None), ("spec.podTemplate", "Required value")),
    Case("template-negative-default-gpus", lambda s: template(defaults={"resources": {"gpus": -1}}),
         ("spec.defaults.resources.gpus", "greater than or equal to 0")),
]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    kinds = {case.manifest(Scene("v", "n", "f", "fn", "s", lambda *a, **k: None, None))["kind"]  # type: ignore[arg-type]
             for case in CASES}
    assert kinds == {"Tenant", "Task", "TaskTemplate"}


def _exists(scene: Scene, manifest: dict[str, Any]) -> dict[str, Any] | None:
    meta = manifest["metadata"]
    return scene.cluster.get(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_manifest_is_refused(scene: Scene, case: Case, tmp_path: Path) -> None:
    manifest = case.manifest(scene)
    before = _exists(scene, manifest)
    assert (before is not None) == (case.verb == "replace"), f"{case.id}: the scene is not as the case expects"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))  # a file: a 1 MiB script is too big for an argument or a pipe buffer
    proc = scene.kubectl(case.verb, "-f", str(path), check=False)
    output = proc.stderr + proc.stdout
    assert proc.returncode == 1, f"{case.id}: kubectl {case.verb} exited {proc.returncode}:\n{output}"
    for words in case.words:
        assert words in output, f"{case.id}: {words!r} not in:\n{output}"
    after = _exists(scene, manifest)
    if before is None:
        assert after is None, f"{case.id}: the refused object exists"
    else:
        assert after is not None and after["spec"] == before["spec"], f"{case.id}: the refused change landed"
