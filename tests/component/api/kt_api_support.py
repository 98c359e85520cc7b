"""Support code for the REST facade's component tests (imported by conftest and the tests).

The simulated cluster (``sim_cluster`` from ``tests/component/conftest.py``) with
the CRDs and built-in templates applied, the tenants alice, bob (users) and root
(admin), the real operator (unless a test plays the operator itself) and
the real API served over HTTP in a thread; httpx clients for each tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from kubetask.api.server import ApiHandle, run_api_in_thread
from kubetask.kube.bootstrap import ensure_tenant
from kubetask.kube.client import TASKS, KubeClient
from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings
from kubetask.sim import SimCluster

ROOT = Path(__file__).resolve().parents[3]
CRDS = sorted((ROOT / "kubetask" / "resources" / "crds").glob("*.yaml")) or sorted((ROOT / "crds").glob("*.yaml"))
TEMPLATES = sorted((ROOT / "kubetask" / "resources" / "tasktemplates").glob("*.yaml"))

ALICE_KEY = "dev-alice-key"
BOB_KEY = "dev-bob-key"
ADMIN_KEY = "dev-admin-key"
CALLBACK_SECRET = "component-test-callback-secret"

# A template that seed 003's ``task_name: process_payment`` resolves to (by alias).
PAYMENTS_TEMPLATE: dict[str, Any] = {
    "apiVersion": "kubetask.io/v1alpha1",
    "kind": "TaskTemplate",
    "metadata": {"name": "payments"},
    "spec": {
        "description": "Process a payment (test template)",
        "aliases": ["process_payment", "process_data"],
        "parameters": [],
        "podTemplate": {"image": "python:3.12-slim", "command": ["python", "-c", "print('paid')"]},
        "defaults": {"timeoutSeconds": 600},
    },
}


async def _bootstrap(kubeconfig: Path, tenants: list[tuple[str, str, str, dict[str, Any] | None]]) -> None:
    client = await KubeClient.connect(str(kubeconfig))
    try:
        for name, key, role, limits in tenants:
            await ensure_tenant(client, name, api_key=key, role=role, limits=limits)
    finally:
        await client.close()


class Stack:
    """The running pieces of one component test."""

    def __init__(self, cluster: SimCluster, kubeconfig: Path, api: ApiHandle, operator: OperatorHandle | None) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.api = api
        self.operator = operator
        self.url = api.url

    def client(self, key: str | None = None, *, prefix: str = "/api/v1", **headers: str) -> httpx.Client:
        all_headers = dict(headers)
        if key is not None:
            all_headers["X-API-Key"] = key
        return httpx.Client(base_url=self.url + prefix, headers=all_headers, timeout=30.0)

    def add_tenant(self, name: str, key: str, *, role: str = "user", limits: dict[str, Any] | None = None) -> None:
        """Create a tenant and wait until the API knows its key."""
        asyncio.run(_bootstrap(self.kubeconfig, [(name, key, role, limits)]))
        with self.client(key) as client:
            self.wait_for(lambda: client.get("/users/me/limits").status_code == 200, timeout=15)

    def kube(self, coro_fn: Callable[[KubeClient], Any]) -> Any:
        """Run ``await coro_fn(client)`` with an admin KubeClient on the sim."""
        async def run() -> Any:
            client = await KubeClient.connect(str(self.kubeconfig))
            try:
                return await coro_fn(client)
            finally:
                await client.close()
        return asyncio.run(run())

    def set_status(self, task: dict[str, Any], status: dict[str, Any], *, client: httpx.Client | None = None) -> None:
        """Play the operator: write ``status`` on a task (status subresource) and wait until the API sees it."""
        namespace = task.get("namespace") or f"kubetask-{task['user_id']}"
        self.kube(lambda c: c.patch_status(TASKS, task["id"], {"status": status}, namespace))
        if client is not None and status.get("phase"):
            want = {"Pending": "pending", "Queued": "queued", "Running": "running", "Succeeded": "completed",
                    "Failed": "failed", "Cancelled": "cancelled"}[status["phase"]]
            self.wait_for(lambda: client.get(f"/tasks/{task['id']}").json().get("status") == want, timeout=10)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def _start_stack(cluster: SimCluster, tmp_path: Path, *, with_operator: bool,
                 tenant_limits: dict[str, Any] | None = None) -> Iterator[Stack]:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    for crd in CRDS:
        cluster.apply_file(crd)
    time.sleep(0.2)
    for template in TEMPLATES:
        cluster.apply_file(template)
    cluster.apply_manifest(PAYMENTS_TEMPLATE)
    asyncio.run(_bootstrap(kubeconfig, [
        ("alice", ALICE_KEY, "user", tenant_limits),
        ("bob", BOB_KEY, "user", tenant_limits),
        ("root", ADMIN_KEY, "admin", None),
    ]))
    operator = _start_operator(kubeconfig) if with_operator else None
    kube = KubeSettings(kubeconfig=str(kubeconfig))
    settings = ApiSettings(host="127.0.0.1", port=0, callback_secret=CALLBACK_SECRET)
    api = run_api_in_thread(settings, kube)
    try:
        yield Stack(cluster, kubeconfig, api, operator)
    finally:
        api.stop()
        if operator is not None:
            operator.stop()


def _start_operator(kubeconfig: Path) -> OperatorHandle:
    settings = OperatorSettings(callback_secret=CALLBACK_SECRET, leader_election=False, metrics_port=0,
                                liveness_port=0, webhook_host="127.0.0.1", webhook_port=0)
    return run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=str(kubeconfig)))


def assert_error_body(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"detail", "code", "request_id", "timestamp"}, body
    assert response.headers.get("x-request-id") == body["request_id"]
    if code is not None:
        assert body["code"] == code, body
    return body
