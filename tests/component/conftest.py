"""Component-tier fixtures: the session's real control plane (``local_cluster``), its admin
kubeconfig and real kubectl. The operator and the API run in this process against it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kt_support import KubectlRunner, kubectl_runner

from kubetask.cluster import LocalCluster


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> LocalCluster:
    """The shared real control plane (session-scoped; keep to your own tenants and namespaces)."""
    return local_cluster


@pytest.fixture
def kubeconfig_path(local_cluster: LocalCluster, tmp_path: Path) -> Path:
    """An admin kubeconfig for the shared control plane."""
    return local_cluster.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kubectl(kubeconfig_path: Path, tmp_path: Path) -> KubectlRunner:
    """Real kubectl against the shared control plane, as admin."""
    return kubectl_runner(kubeconfig_path, tmp_path)
