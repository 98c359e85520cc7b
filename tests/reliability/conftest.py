"""Fixtures of the reliability suite (issue 12): the REST facade on the real control plane, reusing the
component API harness (``tests/component/api/kt_api_support.py``).

``api_stack`` is the API (no operator) on the session's control plane with alice, bob and root, as the
component tier's ``shared``. ``outage_stack`` runs on a control plane of its own: its kube-apiserver is
SIGSTOPped, and the session's kube-controller-manager and scheduler would lose their leader leases (and exit)
if the shared one were.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "component" / "api"))

from kt_api_support import ROOMY, Stack, _start_stack
from kt_support import running_cluster

from kubetask.cluster import LocalCluster
from kubetask.cluster.kwok import NodeShape

OUTAGE_NODES = (NodeShape("gpu-a100", gpus=8, gpu_product="A100"), NodeShape("cpu", cpu="32", memory="128Gi"))


@pytest.fixture(scope="module")
def api_stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API (no operator: tests play it by writing task status) on the session cluster; roomy limits.
    Webhook URLs on loopback are allowed (no operator delivers here), so tenants can own webhooks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBETASK_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
        yield from _start_stack(local_cluster, tmp_path_factory.mktemp("reliability-api"), with_operator=False,
                                tenant_limits=ROOMY)


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A control plane of this module's own (two kwok GPU nodes), for tests that stop its apiserver."""
    with running_cluster(tmp_path_factory.mktemp("own-cluster"), OUTAGE_NODES) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def outage_stack(own_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API (no operator) on :func:`own_cluster`."""
    yield from _start_stack(own_cluster, tmp_path_factory.mktemp("outage-api"), with_operator=False,
                            tenant_limits=ROOMY)


# ---------------------------------------------------------------------- crash safety (operators as processes)

import asyncio  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402

from kt_process_support import CrashRig, wait_until  # noqa: E402
from kt_support import reset_namespaces  # noqa: E402


@pytest.fixture
def crash_rig(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[CrashRig]:
    """A fresh tenant (roomy limits) whose namespace the test fills; every operator process is stopped after."""
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient

    tenant = f"crash-{uuid.uuid4().hex[:6]}"
    kubeconfig = local_cluster.write_kubeconfig(tmp_path / "kubeconfig")

    async def bootstrap() -> None:
        client = await KubeClient.connect(str(kubeconfig))
        try:
            await ensure_tenant(client, tenant, api_key=None, limits={"maxPending": 100000})
        finally:
            await client.close()

    asyncio.run(bootstrap())
    namespace = f"kubetask-{tenant}"
    wait_until(lambda: local_cluster.get("v1", "ServiceAccount", "default", namespace) is not None, 30,
               f"the default ServiceAccount of {namespace}")
    rig = CrashRig(local_cluster, kubeconfig, namespace, tmp_path, [])
    try:
        yield rig
    finally:
        for process in rig.started:
            process.stop()
        reset_namespaces(local_cluster, [namespace])
        local_cluster.delete("kubetask.io/v1alpha1", "Tenant", tenant)
        local_cluster.admin().delete(f"/api/v1/namespaces/{namespace}")



# ---------------------------------------------------------------------- load (the API and the operator as processes)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _support import ApiReplicas  # noqa: E402
from kt_process_support import LiveApi, OperatorProcess  # noqa: E402
from rest_load import REQUESTS_PER_MINUTE, wait_keys  # noqa: E402
from rest_load import limits as load_limits  # noqa: E402


@pytest.fixture
def live_api(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[LiveApi]:
    """Two fresh tenants with API keys (roomy limits), the operator and the API as processes; all gone after."""
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient

    suffix = uuid.uuid4().hex[:6]
    tenants = {f"load-a-{suffix}": f"load-a-key-{suffix}", f"load-b-{suffix}": f"load-b-key-{suffix}"}
    kubeconfig = local_cluster.write_kubeconfig(tmp_path / "kubeconfig")

    async def bootstrap() -> None:
        client = await KubeClient.connect(str(kubeconfig))
        try:
            for name, key in tenants.items():
                await ensure_tenant(client, name, api_key=key, limits=load_limits(
                    int(os.environ.get("KUBETASK_LOAD_RPM", REQUESTS_PER_MINUTE))))
        finally:
            await client.close()

    asyncio.run(bootstrap())
    namespaces = [f"kubetask-{name}" for name in tenants]
    for namespace in namespaces:
        wait_until(lambda ns=namespace: local_cluster.get("v1", "ServiceAccount", "default", ns) is not None, 30,
                   f"the default ServiceAccount of {namespace}")
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", leader_election=False,
                               lease_namespace=namespaces[0]).start()
    api: ApiReplicas | None = None
    try:
        operator.wait_alive()
        api = ApiReplicas(kubeconfig, 1, logs=tmp_path / "api-logs").wait_healthy()
        wait_keys(api.url, list(tenants.values()))
        yield LiveApi(api.url, list(tenants.values()), namespaces)
    finally:
        if api is not None:
            api.stop()
        operator.stop()
        # No reset_namespaces (a minute of deleting thousands of tasks one collection at a time): the
        # namespaces are this module's own, and the namespace controller empties them in the background.
        for name in tenants:
            local_cluster.delete("kubetask.io/v1alpha1", "Tenant", name)
        for namespace in namespaces:
            local_cluster.admin().delete(f"/api/v1/namespaces/{namespace}")
