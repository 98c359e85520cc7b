"""Fixtures for the operator's component tests: a sim cluster with CRDs, templates and a running operator."""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings
from kubetask.sim import SimCluster

ROOT = Path(__file__).resolve().parents[3]
API = "kubetask.io/v1alpha1"
FAST = {"kubetask.dev/sim-duration-seconds": "0.2"}


class FakeClock:
    """An injectable "now": real time plus an offset, or a fixed instant."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC) + self.offset


@dataclass
class Harness:
    cluster: SimCluster
    kubeconfig: Path
    clock: FakeClock = field(default_factory=FakeClock)
    handle: OperatorHandle | None = None
    http: httpx.Client | None = None

    # -------------------------------------------------------------- operator

    def start(self, **overrides: Any) -> OperatorHandle:
        settings = OperatorSettings(**{"metrics_port": 0, "liveness_port": 0, "webhook_port": 0,
                                       "leader_election": False, **overrides})
        self.handle = run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=str(self.kubeconfig)),
                                             clock=self.clock, timeout=60)
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    # -------------------------------------------------------------- objects

    def client(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(base_url=self.cluster.url, timeout=30,
                                     headers={"Authorization": f"Bearer {self.cluster.admin_token}"})
        return self.http

    def create_task(self, name: str, namespace: str = "default", *, fast: bool = True,
                    annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        spec.setdefault("image", "busybox")
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
        body = {"apiVersion": API, "kind": "Tenant", "metadata": {"name": name}, "spec": {"limits": limits}}
        response = self.client().post("/apis/kubetask.io/v1alpha1/tenants", json=body)
        assert response.status_code == 201, response.text
        ns = f"kubetask-{name}"
        wait_until(lambda: self.get("v1", "ResourceQuota", "kubetask-quota", ns) is not None, 10,
                   f"tenant {name} reconciled")
        return dict(response.json())

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        response = self.client().patch(path, json=patch, headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def patch_task(self, name: str, patch: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        return self.patch(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace}/tasks/{name}", patch)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.cluster.get_object(api_version, kind, name, namespace)

    def task(self, name: str, namespace: str = "default") -> dict[str, Any]:
        obj = self.get(API, "Task", name, namespace)
        assert obj is not None, f"task {namespace}/{name} not found"
        return obj

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.cluster.list_objects("batch/v1", "Job", namespace)

    def wait_phase(self, name: str, phases: str | tuple[str, ...], namespace: str = "default",
                   timeout: float = 20) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases
        result: dict[str, Any] = {}

        def check() -> bool:
            nonlocal result
            result = self.task(name, namespace)
            return (result.get("status") or {}).get("phase") in wanted

        wait_until(check, timeout, lambda: f"{name} to reach {wanted}: {result.get('status')}")
        return result


def wait_until(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str] = "condition",
               interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def install(cluster: SimCluster) -> None:
    for path in sorted(glob.glob(str(ROOT / "crds" / "*.yaml"))):
        cluster.apply_file(path)
    for path in sorted(glob.glob(str(ROOT / "kubetask" / "resources" / "tasktemplates" / "*.yaml"))):
        cluster.apply_file(path)


@pytest.fixture
def harness(sim_cluster: SimCluster, kubeconfig_path: Path) -> Iterator[Harness]:
    """The sim cluster with kubetask's CRDs and templates installed; the operator is not started yet."""
    install(sim_cluster)
    h = Harness(sim_cluster, kubeconfig_path)
    try:
        yield h
    finally:
        h.stop()
        if h.http is not None:
            h.http.close()


@pytest.fixture
def kt(harness: Harness) -> Harness:
    """``harness`` with the operator running (webhook included)."""
    harness.start()
    return harness
