"""E2E fixtures: a real cluster, kubetask running against it.

The cluster is the one ``KUBECONFIG`` names (kind, a cloud cluster, ``kubetask cluster up``);
without ``KUBECONFIG`` it is the session's local real control plane (``local_cluster``:
kube-apiserver, etcd, controller-manager, scheduler and kwok GPU nodes), so the suite runs
in every CI run. Default mode applies the CRDs and runs the operator (webhook included,
served on 127.0.0.1 with a self-signed certificate) and the API as local processes, out of
cluster.  ``KUBETASK_E2E_INSTALLED=1`` instead tests a chart-installed release:
the API is reached at ``KUBETASK_E2E_API_URL`` (e.g. a port-forward).

Assertions use only the Kubernetes API (objects, statuses, events): no pod logs,
exec or pod networking, which clusters with simulated nodes don't have.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubetask.core.tokens import hash_api_key

REPO = Path(__file__).resolve().parents[2]
INSTALLED = os.environ.get("KUBETASK_E2E_INSTALLED") == "1"
GROUP, VERSION = "kubetask.io", "v1alpha1"

pytestmark = pytest.mark.e2e


def _kubeconfig_from_env() -> Path | None:
    explicit = os.environ.get("KUBECONFIG")
    if not explicit:
        return None
    first = Path(explicit.split(os.pathsep)[0])
    if not first.exists():
        pytest.fail(f"e2e: KUBECONFIG names {first}, which does not exist")
    return first


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {message} (last value: {last!r})")


@dataclass
class Cluster:
    """The real cluster under test, through the official ``kubernetes`` client."""

    kubeconfig: Path
    api_client: Any
    core: Any = field(init=False)
    batch: Any = field(init=False)
    custom: Any = field(init=False)

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    def get_task(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tasks", name))

    def create_task(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tasks", body))

    def jobs_of(self, namespace: str, task: str) -> list[Any]:
        return list(self.batch.list_namespaced_job(namespace, label_selector=f"kubetask.io/task={task}").items)

    def gpu_nodes(self) -> list[Any]:
        return list(self.core.list_node(label_selector="nvidia.com/gpu.present=true").items)

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = False
                ) -> subprocess.CompletedProcess[str]:
        binary = kubectl_binary()
        if binary is None:
            pytest.skip("kubectl not found (set KUBETASK_KUBECTL or run hack/fetch-tools.sh)")
        result = subprocess.run([binary, "--kubeconfig", str(self.kubeconfig), *args], input=input_text,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result


def kubectl_binary() -> str | None:
    for candidate in (os.environ.get("KUBETASK_KUBECTL"), str(Path.home() / ".cache/kubetask/bin/kubectl"),
                      shutil.which("kubectl")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    path = _kubeconfig_from_env()
    if path is None:
        local = request.getfixturevalue("local_cluster")
        path = local.write_kubeconfig(tmp_path_factory.mktemp("e2e") / "kubeconfig")
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(path))
    try:
        client.VersionApi(api_client).get_code(_request_timeout=10)
    except Exception as error:
        pytest.fail(f"e2e: the cluster in {path} is unreachable ({type(error).__name__}: {error})")
    yield Cluster(kubeconfig=path, api_client=api_client)
    api_client.close()


def _apply_yaml(cluster: Cluster, path: Path) -> None:
    from kubernetes import utils
    from kubernetes.client.exceptions import ApiException

    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        try:
            utils.create_from_dict(cluster.api_client, doc)
        except utils.FailToCreateError as error:
            if not all(isinstance(e, ApiException) and e.status == 409 for e in error.api_exceptions):
                raise
        except ApiException as error:  # custom kinds go through CustomObjectsApi
            if error.status != 409:
                raise


def _apply_custom(cluster: Cluster, doc: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    group, version = doc["apiVersion"].split("/")
    plural = doc["kind"].lower() + "s"
    try:
        cluster.custom.create_cluster_custom_object(group, version, plural, doc)
    except ApiException as error:
        if error.status != 409:
            raise
        current = cluster.custom.get_cluster_custom_object(group, version, plural, doc["metadata"]["name"])
        doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.custom.replace_cluster_custom_object(group, version, plural, doc["metadata"]["name"], doc)


@pytest.fixture(scope="session")
def crds_applied(cluster: Cluster) -> None:
    if INSTALLED:
        return
    from kubernetes import client

    ext = client.ApiextensionsV1Api(cluster.api_client)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        _apply_yaml(cluster, path)
    for name in ("tasks", "tasktemplates", "tenants"):
        wait_for(lambda n=name: any(c.type == "Established" and c.status == "True"
                                    for c in (ext.read_custom_resource_definition(f"{n}.{GROUP}").status
                                              .conditions or [])),
                 timeout=30, message=f"CRD {name}.{GROUP} established")
    for path in sorted((REPO / "kubetask/resources/tasktemplates").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                _apply_custom(cluster, doc)


def _wait_http(url: str, timeout: float) -> None:
    def ok() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ok, timeout=timeout, message=f"{url} to answer 200")


@dataclass
class Stack:
    api_url: str
    callback_secret: str


# Module scope, not session: with no KUBECONFIG the cluster is the session's shared control plane, and an
# operator left running after the e2e module would act on the later tiers' Tasks.
@pytest.fixture(scope="module")
def stack(cluster: Cluster, crds_applied: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """kubetask running against the cluster: local processes, or the installed release."""
    if INSTALLED:
        url = os.environ.get("KUBETASK_E2E_API_URL")
        if not url:
            pytest.skip("KUBETASK_E2E_INSTALLED=1 needs KUBETASK_E2E_API_URL (e.g. a port-forward to the API)")
        yield Stack(api_url=url, callback_secret=os.environ.get("KUBETASK_E2E_CALLBACK_SECRET", ""))
        return
    logs = tmp_path_factory.mktemp("e2e-logs")
    secret = secrets.token_hex(16)
    api_port = _free_port()
    env = {
        **os.environ,
        "KUBETASK_OPERATOR_WEBHOOK_HOST": "127.0.0.1",
        "KUBETASK_OPERATOR_WEBHOOK_PORT": str(_free_port()),
        "KUBETASK_OPERATOR_METRICS_PORT": str(_free_port()),
        "KUBETASK_OPERATOR_LIVENESS_PORT": str(liveness := _free_port()),
        "KUBETASK_OPERATOR_LEADER_ELECTION": "false",
        "KUBETASK_OPERATOR_CALLBACK_SECRET": secret,
        "KUBETASK_OPERATOR_CALLBACK_URL": f"http://127.0.0.1:{api_port}",
        "KUBETASK_API_CALLBACK_SECRET": secret,
        "KUBETASK_API_PORT": str(api_port),
    }
    cmd = [sys.executable, "-m", "kubetask.cli"]
    kubeconfig = ["--kubeconfig", str(cluster.kubeconfig)]
    procs = [
        subprocess.Popen([*cmd, "operator", *kubeconfig], env=env,
                         stdout=(logs / "operator.log").open("w"), stderr=subprocess.STDOUT),
        subprocess.Popen([*cmd, "api", *kubeconfig, "--port", str(api_port)], env=env,
                         stdout=(logs / "api.log").open("w"), stderr=subprocess.STDOUT),
    ]
    try:
        _wait_http(f"http://127.0.0.1:{liveness}/healthz", timeout=120)
        _wait_http(f"http://127.0.0.1:{api_port}/health", timeout=120)
        yield Stack(api_url=f"http://127.0.0.1:{api_port}", callback_secret=secret)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"e2e component logs kept in {logs}")


@dataclass
class Tenant:
    name: str
    namespace: str
    api_key: str
    http: httpx.Client


@pytest.fixture(scope="module")
def make_tenant(cluster: Cluster, stack: Stack) -> Iterator[Callable[..., Tenant]]:
    """Create a uniquely named Tenant (namespace, hashed API key Secret) and wait for its namespace."""
    from kubernetes.client.exceptions import ApiException

    created: list[Tenant] = []

    def _make(prefix: str, limits: dict[str, Any] | None = None, subjects: list[dict[str, Any]] | None = None
              ) -> Tenant:
        name = f"e2e-{prefix}-{uuid.uuid4().hex[:6]}"
        namespace = f"kubetask-{name}"
        key = secrets.token_urlsafe(24)
        # A ServiceAccount subject without a namespace means "in the tenant's own namespace".
        subjects = [{**s, "namespace": s.get("namespace", namespace)} if s["kind"] == "ServiceAccount" else s
                    for s in subjects or []]
        try:
            cluster.core.create_namespace({"metadata": {"name": namespace, "labels": {"kubetask.io/tenant": name}}})
        except ApiException as error:
            if error.status != 409:
                raise
        cluster.core.create_namespaced_secret(namespace, {
            "metadata": {"name": f"{name}-api-key", "labels": {"kubetask.io/api-key": "true"}},
            "stringData": {"sha256": hash_api_key(key)},
        })
        _apply_custom(cluster, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"displayName": name, "namespace": namespace,
                     "apiKeys": [{"name": f"{name}-api-key", "key": "sha256"}],
                     "subjects": subjects, "limits": limits or {}},
        })
        wait_for(lambda: cluster.core.list_namespaced_resource_quota(namespace).items, timeout=60,
                 message=f"the ResourceQuota of tenant {name}")
        http = httpx.Client(base_url=f"{stack.api_url}/api/v1", headers={"X-API-Key": key}, timeout=30)
        wait_for(lambda: http.get("/users/me/limits").status_code == 200, timeout=60,
                 message=f"the API to know tenant {name}")
        tenant = Tenant(name=name, namespace=namespace, api_key=key, http=http)
        created.append(tenant)
        return tenant

    yield _make
    for tenant in created:
        tenant.http.close()
        try:
            cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "tenants", tenant.name)
            cluster.core.delete_namespace(tenant.namespace)
        except ApiException:
            pass
