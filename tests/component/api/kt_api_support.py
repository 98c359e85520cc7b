"""Support code for the REST facade's component tests (imported by conftest and the tests).

The session's real control plane (``local_cluster`` from ``tests/conftest.py``, CRDs and
built-in templates already installed), the tenants alice, bob (users) and root (admin), the
real operator (unless a test plays the operator itself) and the real API served over HTTP in
a thread; httpx clients for each tenant.

The control plane is shared by the whole session, so a stack empties its tenants' namespaces
before it yields and after, resets the tenants' limits to the ones it was asked for, and (when
it ran an operator) stops it and removes its webhook configurations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from kt_support import remove_webhook_configurations, reset_namespaces
from schema_check import SchemaCheck

from kubetask.api.server import ApiHandle, run_api_in_thread
from kubetask.cluster import LocalCluster
from kubetask.kube.bootstrap import ensure_tenant
from kubetask.kube.client import TASKS, TENANTS, KubeClient
from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings

ALICE_KEY = "dev-alice-key"
BOB_KEY = "dev-bob-key"
ADMIN_KEY = "dev-admin-key"
CALLBACK_SECRET = "component-test-callback-secret"
ROOMY = {"maxPending": 100000, "requestsPerMinute": 1000000}

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

TenantSpec = tuple[str, str | None, str, dict[str, Any] | None]
"""``(name, api key, role, limits)``."""


async def _bootstrap(kubeconfig: Path, tenants: list[TenantSpec],
                     subjects: list[Mapping[str, Any]] | None = None) -> None:
    """Create or update each tenant; its limits become exactly ``limits`` (the cluster outlives the test)."""
    client = await KubeClient.connect(str(kubeconfig))
    try:
        for name, key, role, limits in tenants:
            if await client.get_or_none(TENANTS, name) is not None:
                await client.patch(TENANTS, name, {"spec": {"limits": None, "subjects": None}})
            await ensure_tenant(client, name, api_key=key, role=role, limits=limits, subjects=subjects)
    finally:
        await client.close()


class Stack:
    """The running pieces of one component test (or module)."""

    def __init__(self, cluster: LocalCluster, kubeconfig: Path, api: ApiHandle, operator: OperatorHandle | None,
                 namespaces: list[str]) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.api = api
        self.operator = operator
        self.url = api.url
        self.namespaces = namespaces
        """The tenant namespaces emptied at teardown (``add_tenant`` adds to them)."""
        self._schema: SchemaCheck | None = None

    @property
    def schema(self) -> SchemaCheck:
        """The API's own OpenAPI document, which every response of :meth:`client` is checked against."""
        if self._schema is None:
            self._schema = SchemaCheck.fetch(self.url)
        return self._schema

    def _check_response(self, response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
            self.schema.check(response)

    def client(self, key: str | None = None, *, prefix: str = "/api/v1", **headers: str) -> httpx.Client:
        """An httpx client for the API as ``key``; every JSON response must match the documented schema."""
        all_headers = dict(headers)
        if key is not None:
            all_headers["X-API-Key"] = key
        return httpx.Client(base_url=self.url + prefix, headers=all_headers, timeout=30.0,
                            event_hooks={"response": [self._check_response]})

    def add_tenant(self, name: str, key: str | None, *, role: str = "user", limits: dict[str, Any] | None = None,
                   subjects: list[Mapping[str, Any]] | None = None) -> None:
        """Create a tenant (limits exactly ``limits``), empty its namespace and wait until the API knows it."""
        namespace = f"kubetask-{name}"
        asyncio.run(_bootstrap(self.kubeconfig, [(name, key, role, limits)], subjects))
        if namespace not in self.namespaces:
            self.namespaces.append(namespace)
        reset_namespaces(self.cluster, [namespace])
        with self.client(ADMIN_KEY) as root:
            self.wait_for(lambda: root.get(f"/users/{name}/limits").status_code == 200, timeout=30)
        if key is not None:
            with self.client(key) as client:
                self.wait_for(lambda: client.get("/users/me/limits").status_code == 200, timeout=30)

    def kube(self, coro_fn: Callable[[KubeClient], Any]) -> Any:
        """Run ``await coro_fn(client)`` with an admin KubeClient on the cluster."""
        async def run() -> Any:
            client = await KubeClient.connect(str(self.kubeconfig))
            try:
                return await coro_fn(client)
            finally:
                await client.close()
        return asyncio.run(run())

    def set_status(self, task: dict[str, Any], status: dict[str, Any], *, client: httpx.Client | None = None) -> None:
        """Play the operator: write ``status`` on a task (status subresource) and wait until the API sees it.

        A ``Running`` phase without executions gets one that has started on a node: running means started."""
        if status.get("phase") == "Running" and "executions" not in status:
            status = {**status, "executions": [{"id": 1, "jobName": f"{task['object_name']}-1",
                                                "nodeName": status.get("nodeName") or "gpu-a100-1",
                                                "startedAt": status.get("startedAt") or "2030-01-01T00:00:00Z"}]}
        namespace = task.get("namespace") or f"kubetask-{task['user_id']}"
        self.kube(lambda c: c.patch_status(TASKS, task["object_name"], {"status": status}, namespace))
        if client is not None and status.get("phase"):
            want = {"Pending": "pending", "Queued": "queued", "Running": "running", "Succeeded": "completed",
                    "Failed": "failed", "Cancelled": "cancelled"}[status["phase"]]
            self.wait_for(lambda: client.get(f"/tasks/{task['id']}").json().get("status") == want, timeout=30)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


TENANT_NAMESPACES = ["kubetask-alice", "kubetask-bob", "kubetask-root"]


def _start_stack(cluster: LocalCluster, tmp_path: Path, *, with_operator: bool,
                 tenant_limits: dict[str, Any] | None = ROOMY) -> Iterator[Stack]:
    """alice, bob and root on empty namespaces, the API and (``with_operator``) the real operator."""
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    cluster.apply(PAYMENTS_TEMPLATE)
    asyncio.run(_bootstrap(kubeconfig, [
        ("alice", ALICE_KEY, "user", tenant_limits),
        ("bob", BOB_KEY, "user", tenant_limits),
        ("root", ADMIN_KEY, "admin", None),
    ]))
    namespaces = list(TENANT_NAMESPACES)
    reset_namespaces(cluster, namespaces)
    operator: OperatorHandle | None = None
    stack: Stack | None = None
    api: ApiHandle | None = None
    try:
        operator = _start_operator(kubeconfig) if with_operator else None
        api = run_api_in_thread(ApiSettings(host="127.0.0.1", port=0, callback_secret=CALLBACK_SECRET),
                                KubeSettings(kubeconfig=str(kubeconfig)))
        stack = Stack(cluster, kubeconfig, api, operator, namespaces)
        with stack.client(ALICE_KEY) as alice, stack.client(ADMIN_KEY) as root:
            stack.wait_for(lambda: alice.get("/users/me/limits").status_code == 200
                           and root.get("/users/me/limits").status_code == 200)
        yield stack
    finally:
        if api is not None:
            api.stop()
        if with_operator:
            # the one the stack holds now: a test may have replaced it (an operator restart)
            for running in {id(o): o for o in (operator, stack.operator if stack else None) if o}.values():
                running.stop()
            remove_webhook_configurations(cluster)
        reset_namespaces(cluster, namespaces)


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
