"""Session fixtures shared by every tier: the local real control plane.

``local_cluster`` is ONE real control plane per test session (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok GPU nodes, see :mod:`kubetask.cluster`)
with kubetask's CRDs and built-in TaskTemplates applied. Tests on it keep to their own
tenants and namespaces and clean up what they start (operators, webhook configurations).
Binaries missing? The fixture builds them first (``kubetask cluster provision``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kt_support import install_kubetask_resources

from kubetask.cluster import DEV_NODES, LocalCluster, cached_binaries, provision


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build the control plane before any test runs, so a first build is not charged to a test's timeout."""
    if cached_binaries() is None:
        provision(progress=print)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The session's real control plane with kubetask's CRDs and templates installed."""
    cluster = LocalCluster(tmp_path_factory.mktemp("local-cluster"), DEV_NODES, progress=print)
    cluster.start()
    try:
        install_kubetask_resources(cluster)
        yield cluster
    finally:
        cluster.stop()
