"""The chart's RBAC is enough, and only what is used: the operator and the API run as the
ServiceAccounts the Helm chart renders (real ServiceAccount tokens from the TokenRequest API),
bound to exactly its (Cluster)Roles, against the real apiserver, which enforces RBAC, escalation
prevention included (the operator grants each tenant a Role it must hold itself).

A missing permission shows up as a stalled flow, an error response, or a 403 that the operator's
or the API's client logs; the test fails on any of them. Before the flow, the test proves the
identities really are the ServiceAccounts and really are confined by RBAC.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kt_support import find_tool, remove_webhook_configurations, reset_namespaces

from kubetask.cluster import LocalCluster
from kubetask.dev import free_port
from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NS = "kt", "kubetask-chart-rbac"
"""A release namespace of this test's own: the shared cluster's other tests never see it."""
ALICE, ROOT = "chart-alice", "chart-root"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
NODE = "gpu-h100-1"


def _helm() -> str:
    helm: str | None = find_tool("helm")
    if helm is None:
        pytest.fail("helm not found: run `bash hack/fetch-tools.sh` (CI does) or set KUBETASK_HELM")
    return helm


def _rendered_rbac() -> list[dict[str, Any]]:
    out = subprocess.run([_helm(), "template", RELEASE, str(REPO / "charts/kubetask"), "-n", RELEASE_NS],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc and doc.get("kind") in RBAC_KINDS]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _sa_token(cluster: LocalCluster, name: str) -> str:
    response = cluster.admin().post(f"/api/v1/namespaces/{RELEASE_NS}/serviceaccounts/{name}/token",
                                    json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                          "spec": {"expirationSeconds": 3600}})
    assert response.status_code == 201, response.text
    return str(response.json()["status"]["token"])


class ForbiddenLog(logging.Handler):
    """Every log record that reports a refused API call (HTTP 403 / Forbidden)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if "403" in text or "forbidden" in text.lower():
            self.records.append(f"{record.name}: {text[:500]}")


@dataclass
class ChartStack:
    cluster: LocalCluster
    url: str
    accounts: dict[str, str]  # "operator" / "api" -> ServiceAccount name
    tokens: dict[str, str]
    forbidden: ForbiddenLog
    cluster_scoped: list[dict[str, Any]] = field(default_factory=list)

    def as_account(self, which: str) -> httpx.Client:
        return httpx.Client(base_url=self.cluster.url, verify=ssl.create_default_context(cafile=self.cluster.ca_file),
                            timeout=30,
                            headers={"Authorization": f"Bearer {self.tokens[which]}"})


@pytest.fixture(scope="module")
def chart_stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartStack]:
    from kubetask.api.server import run_api_in_thread
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient
    from kubetask.operator.runner import run_operator_in_thread

    cluster = local_cluster
    rbac = _rendered_rbac()
    tmp = tmp_path_factory.mktemp("chart-rbac")
    forbidden = ForbiddenLog()
    logging.getLogger().addHandler(forbidden)
    namespaces = [RELEASE_NS, f"kubetask-{ALICE}", f"kubetask-{ROOT}"]
    api = operator = None
    try:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}})
        for doc in rbac:
            cluster.apply(doc)
        accounts = {doc["metadata"]["name"] for doc in rbac if doc["kind"] == "ServiceAccount"}
        names = {"operator": next(a for a in accounts if a.endswith("-operator")),
                 "api": next(a for a in accounts if a.endswith("-api"))}
        tokens = {which: _sa_token(cluster, name) for which, name in names.items()}
        operator_kube = KubeSettings(kubeconfig=str(cluster.write_kubeconfig(tmp / "operator.yaml",
                                                                             token=tokens["operator"])))
        api_kube = KubeSettings(kubeconfig=str(cluster.write_kubeconfig(tmp / "api.yaml", token=tokens["api"])))

        async def bootstrap() -> None:  # what `helm install` with tenants in values would create
            async with await KubeClient.connect(str(cluster.write_kubeconfig(tmp / "admin.yaml"))) as admin:
                await ensure_tenant(admin, ALICE, api_key="chart-alice-key")
                await ensure_tenant(admin, ROOT, api_key="chart-root-key", role="admin")

        asyncio.run(bootstrap())
        api = run_api_in_thread(ApiSettings(port=0), api_kube)
        operator = run_operator_in_thread(OperatorSettings(
            webhook_host="127.0.0.1", webhook_port=free_port(), metrics_port=free_port(),
            liveness_port=free_port(), leader_election=True, leader_lease_namespace=RELEASE_NS,
            callback_url=api.url,
        ), GpuSettings(), operator_kube, timeout=90)
        yield ChartStack(cluster, api.url, names, tokens, forbidden,
                         [d for d in rbac if d["kind"] in ("ClusterRole", "ClusterRoleBinding")])
    finally:
        logging.getLogger().removeHandler(forbidden)
        if api is not None:
            api.stop()
        if operator is not None:
            operator.stop()
        remove_webhook_configurations(cluster)
        cluster.admin().patch(f"/api/v1/nodes/{NODE}", json={"metadata": {"labels": {"kubetask.io/paused": None}}},
                              headers={"Content-Type": "application/merge-patch+json"})
        for tenant in (ALICE, ROOT):
            cluster.delete("kubetask.io/v1alpha1", "Tenant", tenant)
        reset_namespaces(cluster, namespaces)
        for namespace in namespaces:
            cluster.admin().delete(f"/api/v1/namespaces/{namespace}")
        for doc in rbac:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                cluster.delete(doc["apiVersion"], doc["kind"], doc["metadata"]["name"])


def test_the_accounts_are_the_charts_service_accounts_and_rbac_confines_them(chart_stack: ChartStack) -> None:
    for which, name in chart_stack.accounts.items():
        with chart_stack.as_account(which) as http:
            review = http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            assert review.status_code == 201, review.text
            assert review.json()["status"]["userInfo"]["username"] == f"system:serviceaccount:{RELEASE_NS}:{name}"
            # neither may touch the CRDs or the cluster's RBAC
            assert http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tasks.kubetask.io") \
                .status_code == 403
            assert http.get("/apis/rbac.authorization.k8s.io/v1/clusterroles").status_code == 403
    with chart_stack.as_account("operator") as http:  # the operator never reads Secrets
        assert http.get("/api/v1/secrets").status_code == 403
        assert http.get(f"/api/v1/namespaces/kubetask-{ALICE}/secrets").status_code == 403
    with chart_stack.as_account("api") as http:  # the API never writes Jobs: the operator does
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nope"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
        assert http.post(f"/apis/batch/v1/namespaces/kubetask-{ALICE}/jobs", json=job).status_code == 403


def test_operator_and_api_do_everything_with_the_charts_rbac(chart_stack: ChartStack) -> None:
    cluster, url = chart_stack.cluster, chart_stack.url
    alice = httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": "chart-alice-key"}, timeout=30)
    root = httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": "chart-root-key"}, timeout=30)
    alice_ns = f"kubetask-{ALICE}"

    # Tenant reconciliation: namespace, quota, LimitRange and the tenant's RBAC (escalation-checked).
    _wait(lambda: cluster.get("v1", "ResourceQuota", "kubetask-quota", alice_ns), 60, "the tenant's ResourceQuota")
    _wait(lambda: cluster.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-tenant", alice_ns), 60,
          "the tenant's RoleBinding")
    assert cluster.get("rbac.authorization.k8s.io/v1", "Role", "kubetask-tenant", alice_ns) is not None
    assert cluster.get("v1", "LimitRange", "kubetask-limits", alice_ns) is not None
    _wait(lambda: cluster.get("v1", "ServiceAccount", "default", alice_ns), 60, "the namespace's default account")

    done = alice.post("/tasks", json={
        "name": "rbac ok", "image": "busybox", "resources": {"gpus": 1},
        "annotations": {"kubetask.dev/sim-duration-seconds": "0.2",
                        "kubetask.dev/sim-termination-message": '{"ok": true}'}})
    assert done.status_code == 201, done.text
    long = alice.post("/tasks", json={"name": "rbac long", "script_content": "print(1)", "script_type": "python",
                                      "annotations": {"kubetask.dev/sim-duration-seconds": "120"}})
    assert long.status_code == 201, long.text
    bare = alice.post("/tasks", json={"name": "rbac pod", "image": "busybox", "runtime": "pod",
                                      "annotations": {"kubetask.dev/sim-duration-seconds": "0.2"}})
    assert bare.status_code == 201, bare.text
    task_id, long_id, pod_id = done.json()["id"], long.json()["id"], bare.json()["id"]

    def finished_task(tid: str) -> Any:
        return _wait(lambda: (t := alice.get(f"/tasks/{tid}").json())["status"] in ("completed", "failed") and t,
                     60, f"the task {tid} to finish")

    finished = finished_task(task_id)
    assert finished["status"] == "completed" and finished["result"] == {"ok": True}
    assert finished_task(pod_id)["status"] == "completed"  # runtime: pod, the operator's own bare Pod
    assert cluster.get("v1", "Pod", f"{pod_id}-1", alice_ns) is not None
    assert alice.get(f"/tasks/{task_id}/timeline").status_code == 200
    assert alice.get(f"/tasks/{task_id}/logs").status_code in (200, 404, 409)
    _wait(lambda: alice.get(f"/tasks/{long_id}").json()["status"] == "running", 60, "the script task to run")
    job = cluster.get("batch/v1", "Job", f"{long_id}-1", alice_ns)
    assert job is not None
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    callback = httpx.post(f"{url}/api/v1/tasks/{long_id}/complete", json={"result": {"rows": 3}},
                          headers={"X-Task-Token": env["KUBETASK_TASK_TOKEN"]}, timeout=30)
    assert callback.status_code == 200, callback.text
    assert alice.get(f"/tasks/{long_id}").json()["result"] == {"rows": 3}
    assert alice.delete(f"/tasks/{long_id}").status_code == 200
    _wait(lambda: cluster.get("batch/v1", "Job", f"{long_id}-1", alice_ns) is None, 60,
          "the cancelled task's Job to be deleted")

    worker = root.patch(f"/workers/{NODE}/pause")
    assert worker.status_code == 200, worker.text
    assert (cluster.get("v1", "Node", NODE) or {})["metadata"]["labels"].get("kubetask.io/paused") == "true"
    assert root.patch(f"/workers/{NODE}/resume").status_code == 200
    assert "kubetask.io/paused" not in (cluster.get("v1", "Node", NODE) or {})["metadata"]["labels"]
    alerts = alice.get("/alerts")
    assert alerts.status_code == 200
    assert root.get("/resilience/summary").status_code == 200
    limits = root.patch(f"/users/{ALICE}/limits", json={"max_running": 3})
    assert limits.status_code == 200, limits.text
    _wait(lambda: (cluster.get("v1", "ResourceQuota", "kubetask-quota", alice_ns) or {})
          .get("spec", {}).get("hard", {}).get("pods") == "3", 60, "the new limit in the tenant's quota")

    assert chart_stack.forbidden.records == []
