"""Fixtures for the operator's component tests: the session's real control plane and an operator.

Every test gets a namespace of its own (``harness.namespace``, the default for its Tasks) and
names its Tenants itself; at teardown the operator is stopped, its webhook configurations
removed, the Tenants deleted and the namespaces emptied and deleted, so the next test (or
test folder) finds the shared control plane as it was.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from kt_support import Recorder, remove_webhook_configurations, reset_namespaces, wait_until
from kubernetes.utils.quantity import parse_quantity

from kubetask.cluster import LocalCluster
from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

API = "kubetask.io/v1alpha1"
FAST = {"kubetask.dev/sim-duration-seconds": "0.2"}
GPU_NODES = {"A100": "gpu-a100-1", "H100": "gpu-h100-1"}
"""The session cluster's GPU nodes (kubetask.cluster.DEV_NODES): one node of 8 GPUs per product."""
GPUS_PER_NODE = 8


class FakeClock:
    """An injectable "now": real time plus an offset, or a fixed instant."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC) + self.offset




TERMINAL_POD_PHASES = ("Succeeded", "Failed")


def _job_requests(job: dict[str, Any]) -> dict[str, Decimal]:
    """What one pod of ``job`` counts against a ResourceQuota (requests, else limits; one pod)."""
    amounts: dict[str, Decimal] = {"pods": Decimal(1)}
    for container in job["spec"]["template"]["spec"]["containers"]:
        resources = container.get("resources") or {}
        for name in ("nvidia.com/gpu", "cpu", "memory"):
            value = (resources.get("requests") or {}).get(name) or (resources.get("limits") or {}).get(name)
            if value is not None:
                key = f"requests.{name}"
                amounts[key] = amounts.get(key, Decimal(0)) + Decimal(str(parse_quantity(value)))
    return amounts


def over_admissions(jobs: Recorder, pods: Recorder, hard: dict[str, str]) -> list[str]:
    """Job creations that the quota ``hard`` (or maxRunning, as ``pods``) could not hold at that moment.

    A Job holds its pod's resources from its creation until its pod ended (or was deleted);
    at each creation, everything still held plus the new Job must fit. Revisions order the
    events of both recorders, so this is the truth the operator could have known; it does not
    depend on how fast the quota controller refreshes ``status.used``.
    """
    pods._checked()
    jobs._checked()
    released: dict[str, int] = {}
    for rv, kind, pod in pods.events:
        owner = (pod["metadata"].get("labels") or {}).get("job-name")
        if owner and (kind == "DELETED" or (pod.get("status") or {}).get("phase") in TERMINAL_POD_PHASES):
            released[owner] = min(released.get(owner, rv), rv)
    created: list[tuple[int, str, dict[str, Decimal]]] = []
    for rv, kind, job in jobs.events:
        name = job["metadata"]["name"]
        if kind == "ADDED":
            created.append((rv, name, _job_requests(job)))
        elif kind == "DELETED":
            released[name] = min(released.get(name, rv), rv)
    limits = {key: Decimal(str(parse_quantity(value))) for key, value in hard.items()
              if key == "pods" or key.startswith("requests.")}
    problems = []
    for rv, name, _ in created:
        held = [(other, amounts) for other_rv, other, amounts in created
                if other_rv <= rv and released.get(other, rv + 1) > rv]
        for key, limit in limits.items():
            total = sum((amounts.get(key, Decimal(0)) for _, amounts in held), Decimal(0))
            if total > limit:
                problems.append(f"{name} (rv {rv}): {key} {total} > {limit}, held by {[n for n, _ in held]}")
    return problems


@dataclass
class Harness:
    cluster: LocalCluster
    kubeconfig: Path
    namespace: str
    """This test's own namespace: the default for Tasks, Jobs and the leader-election Lease."""
    clock: FakeClock = field(default_factory=FakeClock)
    handle: OperatorHandle | None = None
    tenants: list[str] = field(default_factory=list)
    recorders: list[Recorder] = field(default_factory=list)

    # -------------------------------------------------------------- operator

    def start(self, **overrides: Any) -> OperatorHandle:
        settings = OperatorSettings(**{"metrics_port": 0, "liveness_port": 0, "webhook_port": 0,
                                       "leader_election": False, **overrides})
        self.handle = run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=str(self.kubeconfig)),
                                             clock=self.clock, timeout=90)
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    # -------------------------------------------------------------- objects

    def client(self) -> httpx.Client:
        """The cluster admin's client (thread-safe, shared)."""
        return self.cluster.admin()

    def create_task(self, name: str, namespace: str | None = None, *, fast: bool = True,
                    annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        namespace = namespace or self.namespace
        spec.setdefault("image", "busybox")
        if spec["image"] is None:
            del spec["image"]
        pod_annotations = {**(FAST if fast else {}), **(annotations or {})}
        if pod_annotations:
            spec["podAnnotations"] = {**pod_annotations, **spec.get("podAnnotations", {})}
        body = {"apiVersion": API, "kind": "Task", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        response = self.client().post(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace}/tasks", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def create_many(self, items: list[tuple[str, str, dict[str, Any]]], *, workers: int = 8) -> None:
        """Create many tasks concurrently: ``(name, namespace, kwargs of create_task)``."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(self.create_task, name, namespace, **kwargs)
                           for name, namespace, kwargs in items]:
                future.result()

    def create_tenant(self, name: str, **limits: Any) -> dict[str, Any]:
        """A Tenant (deleted at teardown, with its namespace), once its objects are reconciled."""
        body = {"apiVersion": API, "kind": "Tenant", "metadata": {"name": name}, "spec": {"limits": limits}}
        self.tenants.append(name)
        response = self.client().post("/apis/kubetask.io/v1alpha1/tenants", json=body)
        assert response.status_code == 201, response.text
        self.wait_tenant_namespace(name)
        return dict(response.json())

    def wait_tenant_namespace(self, name: str) -> None:
        ns = f"kubetask-{name}"
        wait_until(lambda: self.get("v1", "ResourceQuota", "kubetask-quota", ns) is not None, 30,
                   f"tenant {name} reconciled")
        # Pods need the namespace's default ServiceAccount (made by kube-controller-manager).
        wait_until(lambda: self.get("v1", "ServiceAccount", "default", ns) is not None, 30,
                   f"the default ServiceAccount of {ns}")

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        response = self.client().patch(path, json=patch, headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def patch_task(self, name: str, patch: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self.patch(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace or self.namespace}/tasks/{name}",
                          patch)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.cluster.get(api_version, kind, name, namespace or None)

    def objects(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.cluster.list(api_version, kind, namespace, label_selector=label_selector)

    def task(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        obj = self.get(API, "Task", name, namespace or self.namespace)
        assert obj is not None, f"task {namespace or self.namespace}/{name} not found"
        return obj

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.objects("batch/v1", "Job", namespace or self.namespace)

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.objects("v1", "Event", namespace or self.namespace)

    def quota_rejections(self, namespace: str) -> list[str]:
        """Pods the apiserver's ResourceQuota admission refused (the Job controller records them as events)."""
        return [e.get("message", "") for e in self.events(namespace)
                if e.get("reason") == "FailedCreate" and "exceeded quota" in e.get("message", "")]

    def record(self, api_version: str, kind: str, namespace: str | None = None) -> Recorder:
        """Start recording the creates of ``kind`` in ``namespace`` (this test's by default)."""
        recorder = Recorder(self.cluster, self.cluster.path(api_version, kind, None, namespace or self.namespace))
        self.recorders.append(recorder)
        return recorder

    def wait_phase(self, name: str, phases: str | tuple[str, ...], namespace: str | None = None,
                   timeout: float = 60) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases
        result: dict[str, Any] = {}

        def check() -> bool:
            nonlocal result
            result = self.task(name, namespace)
            return (result.get("status") or {}).get("phase") in wanted

        wait_until(check, timeout, lambda: f"{name} to reach {wanted}: {result.get('status')}")
        return result

    # -------------------------------------------------------------- teardown

    def cleanup(self) -> None:
        for recorder in self.recorders:
            recorder.stop()
        self.stop()
        remove_webhook_configurations(self.cluster)
        namespaces = [self.namespace, *(f"kubetask-{t}" for t in self.tenants)]
        for tenant in [*self.tenants, self.namespace]:
            self.cluster.delete(API, "Tenant", tenant)
        reset_namespaces(self.cluster, namespaces)
        for namespace in namespaces:
            self.cluster.admin().delete(f"/api/v1/namespaces/{namespace}")


def _namespace_for(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")[:40].strip("-")
    return f"op-{stem}-{uuid.uuid4().hex[:5]}"


def create_namespace(cluster: LocalCluster, name: str, *, tenant: bool = True) -> None:
    """A namespace; with ``tenant``, also a Tenant of the same name that owns it (Tasks run only in a
    tenant's namespace), whose pending limit leaves room for the bursts these tests make."""
    response = cluster.admin().post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                                 "metadata": {"name": name}})
    assert response.status_code == 201, response.text
    if tenant:
        body = {"apiVersion": API, "kind": "Tenant", "metadata": {"name": name},
                "spec": {"namespace": name, "limits": {"maxPending": 500}}}
        response = cluster.admin().post("/apis/kubetask.io/v1alpha1/tenants", json=body)
        assert response.status_code == 201, response.text
    # Pods need the default ServiceAccount, which kube-controller-manager makes moments later.
    wait_until(lambda: cluster.get("v1", "ServiceAccount", "default", name) is not None, 30,
               f"the default ServiceAccount of {name}")


@pytest.fixture
def harness(cluster: LocalCluster, kubeconfig_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The shared control plane and a fresh namespace of this test's own (owned by a Tenant of the same
    name); the operator is not started yet."""
    namespace = _namespace_for(request.node.name)
    _wait_for_free_gpus(cluster)
    create_namespace(cluster, namespace)
    h = Harness(cluster, kubeconfig_path, namespace)
    try:
        yield h
    finally:
        h.cleanup()


def _gpu_holders(cluster: LocalCluster) -> list[str]:
    holders = []
    for pod in cluster.list("v1", "Pod"):
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or not pod["spec"].get("nodeName"):
            continue
        limits = [(c.get("resources") or {}).get("limits") or {} for c in pod["spec"].get("containers") or ()]
        if any("nvidia.com/gpu" in limit for limit in limits):
            holders.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
    return holders


def _wait_for_free_gpus(cluster: LocalCluster, timeout: float = 60) -> None:
    """These tests count GPUs: pods another test folder left on the GPU nodes would skew them, so say whose."""
    deadline = time.monotonic() + timeout
    while holders := _gpu_holders(cluster):
        if time.monotonic() > deadline:
            raise AssertionError(f"GPUs of the shared cluster are still held by pods of earlier tests: {holders}")
        time.sleep(0.5)


@pytest.fixture
def kt(harness: Harness) -> Harness:
    """``harness`` with the operator running (webhook included)."""
    harness.start()
    return harness
