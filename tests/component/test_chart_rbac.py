"""The chart's RBAC is enough, and only what is used: the operator and the API run as the
ServiceAccounts the Helm chart renders (real ServiceAccount tokens from the TokenRequest API),
bound to exactly its (Cluster)Roles, against the real apiserver, which enforces RBAC, escalation
prevention included (the operator grants each tenant a Role it must hold itself).

A missing permission shows up as a stalled flow, an error response, or a 403 that the operator's
or the API's client logs; the test fails on any of them. Before the flow, the test proves the
identities really are the ServiceAccounts and really are confined by RBAC.

Least privilege (issue 12, docs/rbac.md): the API holds no Secret or ConfigMap verb cluster-wide.
It reads API-key digests only from the one Secret the operator publishes in the release
namespace, and it writes in a tenant namespace only through the RoleBinding the operator makes there.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
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
from kubetask.core.tokens import hash_api_key
from kubetask.dev import free_port
from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NS = "kt", "kubetask-chart-rbac"
"""A release namespace of this test's own: the shared cluster's other tests never see it."""
ALICE, ROOT, CAROL = "chart-alice", "chart-root", "chart-carol"
KEYS_SECRET = "kubetask-api-keys"
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
    namespaces = [RELEASE_NS, f"kubetask-{ALICE}", f"kubetask-{ROOT}", f"kubetask-{CAROL}"]
    api = operator = None
    # Where the API keeps its own ConfigMaps: its pod's namespace in the chart (POD_NAMESPACE there).
    saved_api_namespace = os.environ.get("KUBETASK_API_NAMESPACE")
    os.environ["KUBETASK_API_NAMESPACE"] = RELEASE_NS
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
        # The chart's settings (tests/unit/deploy/test_rbac_table.py checks the Deployments carry them).
        api = run_api_in_thread(ApiSettings(port=0, keys_secret_namespace=RELEASE_NS, keys_secret_name=KEYS_SECRET),
                                api_kube)
        operator = run_operator_in_thread(OperatorSettings(
            webhook_host="127.0.0.1", webhook_port=free_port(), metrics_port=free_port(),
            liveness_port=free_port(), leader_election=True, leader_lease_namespace=RELEASE_NS,
            callback_url=api.url, api_keys_secret_namespace=RELEASE_NS, api_keys_secret_name=KEYS_SECRET,
            api_service_account_name=names["api"], api_service_account_namespace=RELEASE_NS,
            api_tenant_cluster_role=f"{names['api']}-tenant",
        ), GpuSettings(), operator_kube, timeout=90)
        yield ChartStack(cluster, api.url, names, tokens, forbidden,
                         [d for d in rbac if d["kind"] in ("ClusterRole", "ClusterRoleBinding")])
    finally:
        if saved_api_namespace is None:
            os.environ.pop("KUBETASK_API_NAMESPACE", None)
        else:
            os.environ["KUBETASK_API_NAMESPACE"] = saved_api_namespace
        logging.getLogger().removeHandler(forbidden)
        if api is not None:
            api.stop()
        if operator is not None:
            operator.stop()
        remove_webhook_configurations(cluster)
        cluster.admin().patch(f"/api/v1/nodes/{NODE}", json={"metadata": {"labels": {"kubetask.io/paused": None}}},
                              headers={"Content-Type": "application/merge-patch+json"})
        for tenant in (ALICE, ROOT, CAROL):
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
    with chart_stack.as_account("api") as http:  # the API reads no Secret but the published digests
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
    _wait(lambda: alice.get("/tasks").status_code == 200, 60, "alice's key in the published digests")

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
    # The Kubernetes object names (the REST id is not the Task's name).
    long_obj, pod_obj = long.json().get("object_name") or long_id, bare.json().get("object_name") or pod_id

    def finished_task(tid: str) -> Any:
        return _wait(lambda: (t := alice.get(f"/tasks/{tid}").json())["status"] in ("completed", "failed") and t,
                     60, f"the task {tid} to finish")

    finished = finished_task(task_id)
    assert finished["status"] == "completed" and finished["result"] == {"ok": True}
    assert finished_task(pod_id)["status"] == "completed"  # runtime: pod, the operator's own bare Pod
    assert cluster.get("v1", "Pod", f"{pod_obj}-1", alice_ns) is not None
    assert alice.get(f"/tasks/{task_id}/timeline").status_code == 200
    assert alice.get(f"/tasks/{task_id}/logs").status_code in (200, 404, 409)
    _wait(lambda: alice.get(f"/tasks/{long_id}").json()["status"] == "running", 60, "the script task to run")
    job = cluster.get("batch/v1", "Job", f"{long_obj}-1", alice_ns)
    assert job is not None
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    callback = httpx.post(f"{url}/api/v1/tasks/{long_id}/complete", json={"result": {"rows": 3}},
                          headers={"X-Task-Token": env["KUBETASK_TASK_TOKEN"]}, timeout=30)
    assert callback.status_code == 200, callback.text
    assert alice.get(f"/tasks/{long_id}").json()["result"] == {"rows": 3}
    assert alice.delete(f"/tasks/{long_id}").status_code == 200
    _wait(lambda: cluster.get("batch/v1", "Job", f"{long_obj}-1", alice_ns) is None, 60,
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


# ---------------------------------------------------------------------- least privilege (issue 12)


def _key_secret(name: str, namespace: str, key: str, *, labelled: bool = True) -> dict[str, Any]:
    labels = {"kubetask.io/api-key": "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "type": "Opaque", "data": {"sha256": base64.b64encode(hash_api_key(key).encode()).decode()}}


def _status(url: str, key: str) -> int:
    with httpx.Client(base_url=f"{url}/api/v1", headers={"X-API-Key": key}, timeout=30) as client:
        return client.get("/tasks").status_code


def test_the_api_account_reaches_secrets_and_configmaps_only_where_it_is_bound(chart_stack: ChartStack) -> None:
    cluster, alice_ns = chart_stack.cluster, f"kubetask-{ALICE}"
    binding = _wait(lambda: cluster.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-api", alice_ns), 60,
                    "the operator's RoleBinding of the API in alice's namespace")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": f"{chart_stack.accounts['api']}-tenant"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": chart_stack.accounts["api"],
                                    "namespace": RELEASE_NS}]
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "stringData": {"x": "y"},
                   "metadata": {"name": "not-for-the-api", "namespace": RELEASE_NS}})
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-probe"}, "data": {"a": "b"}}
    with chart_stack.as_account("api") as http:
        # Secrets: nowhere but the published digests, not even in the namespaces it is bound in.
        assert http.get("/api/v1/namespaces/kube-system/secrets").status_code == 403
        assert http.get("/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef").status_code == 403
        assert http.get(f"/api/v1/namespaces/{alice_ns}/secrets/{ALICE}-api-key").status_code == 403
        assert http.get(f"/api/v1/namespaces/{RELEASE_NS}/secrets/not-for-the-api").status_code == 403
        assert http.get(f"/api/v1/namespaces/{RELEASE_NS}/secrets").status_code == 403, "a list needs the name"
        assert http.get(f"/api/v1/namespaces/{RELEASE_NS}/secrets/{KEYS_SECRET}").status_code == 200
        listed = http.get(f"/api/v1/namespaces/{RELEASE_NS}/secrets",
                          params={"fieldSelector": f"metadata.name={KEYS_SECRET}"})
        assert listed.status_code == 200, listed.text
        # ConfigMaps: written only in tenant namespaces (through the binding) and its own namespace.
        assert http.post("/api/v1/namespaces/kube-system/configmaps", json=probe).status_code == 403
        assert http.post("/api/v1/namespaces/default/configmaps", json=probe).status_code == 403
        assert http.get("/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt").status_code == 403
        created = http.post(f"/api/v1/namespaces/{alice_ns}/configmaps", json=probe)
        assert created.status_code == 201, created.text
        # ...and even there it reads only its own acknowledgements ConfigMap, never a task's script.
        assert http.get(f"/api/v1/namespaces/{alice_ns}/configmaps/rbac-probe").status_code == 403
        assert http.get(f"/api/v1/namespaces/{alice_ns}/configmaps").status_code == 403
        # Secrets in a tenant namespace: write (webhook signing secrets), never read.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rbac-probe"}, "stringData": {"k": "v"}}
        assert http.post(f"/api/v1/namespaces/{alice_ns}/secrets", json=secret).status_code == 201
        assert http.get(f"/api/v1/namespaces/{alice_ns}/secrets/rbac-probe").status_code == 403
        assert http.post("/api/v1/namespaces/kube-system/secrets", json=secret).status_code == 403
    assert cluster.delete("v1", "ConfigMap", "rbac-probe", alice_ns)
    assert cluster.delete("v1", "Secret", "rbac-probe", alice_ns)
    with chart_stack.as_account("operator") as http:  # it deletes namespaces only by its own check, not by RBAC
        assert http.get("/api/v1/namespaces/kube-system").status_code == 200


def test_api_keys_are_checked_against_the_published_digests_only(chart_stack: ChartStack) -> None:
    cluster, url, carol_ns = chart_stack.cluster, chart_stack.url, f"kubetask-{CAROL}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": carol_ns}})
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "carol-bot", "namespace": carol_ns}})
    cluster.apply(_key_secret("carol-key", carol_ns, "carol-key-1"))

    def tenant(keys: list[dict[str, Any]]) -> None:
        cluster.apply({"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": CAROL},
                       "spec": {"namespace": carol_ns, "apiKeys": keys,
                                "subjects": [{"kind": "ServiceAccount", "name": "carol-bot", "namespace": carol_ns}]}})

    def published() -> dict[str, str]:
        return dict((cluster.get("v1", "Secret", KEYS_SECRET, RELEASE_NS) or {}).get("data") or {})

    tenant([{"name": "carol-key"}])
    _wait(lambda: _status(url, "carol-key-1") == 200, 60, "carol's new key to be accepted")
    digests = published()
    assert hash_api_key("carol-key-1") in digests
    assert {hash_api_key(k) for k in ("chart-alice-key", "chart-root-key")} <= set(digests)
    record = base64.b64decode(digests[hash_api_key("carol-key-1")]).decode()
    assert "carol-key-1" not in record and '"tenant":"chart-carol"' in record

    # Rotation in place: a new digest in the same (watched) Secret; the old key stops working.
    rotated_at = time.monotonic()
    cluster.apply(_key_secret("carol-key", carol_ns, "carol-key-2"))
    _wait(lambda: _status(url, "carol-key-2") == 200, 60, "the rotated key to be accepted")
    _wait(lambda: _status(url, "carol-key-1") == 401, 60, "the replaced key to be refused")
    print(f"\nkey rotation (Secret patched -> new key accepted, old refused): {time.monotonic() - rotated_at:.3f} s")
    assert hash_api_key("carol-key-1") not in published()

    # A key Secret without the watch label is read when the Tenant starts referencing it.
    cluster.apply(_key_secret("carol-extra", carol_ns, "carol-key-3", labelled=False))
    tenant([{"name": "carol-key"}, {"name": "carol-extra"}])
    _wait(lambda: _status(url, "carol-key-3") == 200, 60, "the unlabelled key to be accepted")

    # Revocation: the Tenant drops its keys; both are refused, and the digests are gone.
    tenant([])
    _wait(lambda: _status(url, "carol-key-2") == 401 and _status(url, "carol-key-3") == 401, 60,
          "the revoked keys to be refused")
    assert not {hash_api_key("carol-key-2"), hash_api_key("carol-key-3")} & set(published())
    assert _status(url, "chart-alice-key") == 200, "other tenants' keys are untouched"

    # Bearer tokens still go through a TokenReview, not the digests.
    response = cluster.admin().post(f"/api/v1/namespaces/{carol_ns}/serviceaccounts/carol-bot/token",
                                    json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                          "spec": {"expirationSeconds": 600}})
    assert response.status_code == 201, response.text
    token = response.json()["status"]["token"]
    with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30) as bot:
        assert bot.get("/tasks").status_code == 200
    with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": "Bearer not-a-token"}, timeout=30) as bad:
        assert bad.get("/tasks").status_code == 401
    assert chart_stack.forbidden.records == []
