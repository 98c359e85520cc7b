"""The chart's RBAC is enough, and only what is used: the operator and the API run as the
ServiceAccounts the Helm chart renders, bound to exactly its (Cluster)Roles, against the
simulated cluster (which evaluates RBAC, escalation prevention included, as the real
apiserver does). A missing permission shows up as a stalled flow or a 403 recorded
by the simulated apiserver.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubetask.dev import free_port, packaged_manifests
from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings
from kubetask.sim import SimCluster

REPO = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NS = "kt", "kubetask-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _helm() -> str:
    for candidate in (os.environ.get("KUBETASK_HELM"), str(Path.home() / ".cache/kubetask/bin/helm"),
                      shutil.which("helm")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("helm not found (run hack/fetch-tools.sh): cannot render the chart's RBAC")


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


def _sa_kubeconfig(cluster: SimCluster, name: str, path: Path) -> Path:
    from kubernetes import client

    configuration = client.Configuration(host=cluster.url,
                                         api_key={"authorization": f"Bearer {cluster.admin_token}"})
    admin = client.ApiClient(configuration)
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        name, RELEASE_NS, {"spec": {"expirationSeconds": 3600}}).status.token
    admin.close()
    return cluster.write_kubeconfig(path, user=f"system:serviceaccount:{RELEASE_NS}:{name}", token=token)


@pytest.fixture(scope="module")
def chart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimCluster, str]]:
    from kubetask.api.server import run_api_in_thread
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient
    from kubetask.operator.runner import run_operator_in_thread

    rbac = _rendered_rbac()
    tmp = tmp_path_factory.mktemp("chart-rbac")
    cluster = SimCluster(nodes=SimCluster.dev_nodes())
    cluster.start()
    try:
        for path in [*packaged_manifests("crds"), *packaged_manifests("tasktemplates")]:
            cluster.apply_file(path)
        cluster.apply_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}})
        cluster.apply_manifest(rbac)
        accounts = {doc["metadata"]["name"] for doc in rbac if doc["kind"] == "ServiceAccount"}
        operator_sa = next(a for a in accounts if a.endswith("-operator"))
        api_sa = next(a for a in accounts if a.endswith("-api"))
        operator_kube = KubeSettings(kubeconfig=str(_sa_kubeconfig(cluster, operator_sa, tmp / "operator.yaml")))
        api_kube = KubeSettings(kubeconfig=str(_sa_kubeconfig(cluster, api_sa, tmp / "api.yaml")))

        async def bootstrap() -> None:  # what `helm install` with tenants in values would create
            async with await KubeClient.connect(str(cluster.write_kubeconfig(tmp / "admin.yaml"))) as admin:
                await ensure_tenant(admin, "alice", api_key="chart-alice-key")
                await ensure_tenant(admin, "root", api_key="chart-root-key", role="admin")

        asyncio.run(bootstrap())
        api = run_api_in_thread(ApiSettings(port=0), api_kube)
        operator = run_operator_in_thread(OperatorSettings(
            webhook_host="127.0.0.1", webhook_port=free_port(), metrics_port=free_port(),
            liveness_port=free_port(), leader_election=True, leader_lease_namespace=RELEASE_NS,
            callback_url=api.url,
        ), GpuSettings(), operator_kube)
        try:
            yield cluster, api.url
        finally:
            api.stop()
            operator.stop()
    finally:
        cluster.stop()


def _forbidden_for(cluster: SimCluster, *accounts: str) -> list[Any]:
    stats = cluster.stats()
    return [d for d in stats.get("forbidden", []) if any(a in str(d.get("user")) for a in accounts)]


def test_operator_and_api_do_everything_with_the_charts_rbac(chart_stack: tuple[SimCluster, str]) -> None:
    cluster, url = chart_stack
    alice = httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": "chart-alice-key"}, timeout=30)
    root = httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": "chart-root-key"}, timeout=30)

    # Tenant reconciliation: namespace, quota, LimitRange and the tenant's RBAC (escalation-checked).
    _wait(lambda: cluster.get_object("v1", "ResourceQuota", "kubetask-quota", "kubetask-alice")
          or cluster.list_objects("v1", "ResourceQuota", "kubetask-alice"), 30, "the tenant's ResourceQuota")
    assert cluster.list_objects("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-alice") is not None

    done = alice.post("/tasks", json={
        "name": "rbac ok", "image": "busybox", "resources": {"gpus": 1},
        "annotations": {"kubetask.dev/sim-duration-seconds": "0.2",
                        "kubetask.dev/sim-termination-message": '{"ok": true}'}})
    assert done.status_code == 201, done.text
    long = alice.post("/tasks", json={"name": "rbac long", "script_content": "print(1)", "script_type": "python",
                                      "annotations": {"kubetask.dev/sim-duration-seconds": "60"}})
    assert long.status_code == 201, long.text
    task_id, long_id = done.json()["id"], long.json()["id"]

    finished = _wait(lambda: (t := alice.get(f"/tasks/{task_id}").json())["status"] in ("completed", "failed") and t,
                     30, "the task to finish")
    assert finished["status"] == "completed" and finished["result"] == {"ok": True}
    assert alice.get(f"/tasks/{task_id}/timeline").status_code == 200
    assert alice.get(f"/tasks/{task_id}/logs").status_code in (200, 404, 409)
    _wait(lambda: alice.get(f"/tasks/{long_id}").json()["status"] == "running", 30, "the script task to run")
    job = next(j for j in cluster.list_objects("batch/v1", "Job", "kubetask-alice")
               if j["metadata"]["name"] == f"{long_id}-1")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    callback = httpx.post(f"{url}/api/v1/tasks/{long_id}/complete", json={"result": {"rows": 3}},
                          headers={"X-Task-Token": env["KUBETASK_TASK_TOKEN"]}, timeout=30)
    assert callback.status_code == 200, callback.text
    assert alice.get(f"/tasks/{long_id}").json()["result"] == {"rows": 3}
    assert alice.delete(f"/tasks/{long_id}").status_code == 200
    _wait(lambda: not cluster.list_objects("batch/v1", "Job", "kubetask-alice")
          or all(j["metadata"]["name"] != f"{long_id}-1" for j in cluster.list_objects("batch/v1", "Job",
                                                                                       "kubetask-alice")),
          30, "the cancelled task's Job to be deleted")

    worker = root.patch("/workers/gpu-node-2/pause")
    assert worker.status_code == 200, worker.text
    assert root.patch("/workers/gpu-node-2/resume").status_code == 200
    alerts = alice.get("/alerts")
    assert alerts.status_code == 200
    assert root.get("/resilience/summary").status_code == 200
    limits = root.patch("/users/alice/limits", json={"max_running": 3})
    assert limits.status_code == 200, limits.text

    assert _forbidden_for(cluster, "-operator", "-api") == []
