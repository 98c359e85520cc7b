"""Fixtures for tests/component/deploy: the session's real control plane, one scratch namespace."""

from __future__ import annotations

import pytest
from deploy_support import ensure_namespace

from kubetask.cluster import LocalCluster

NAMESPACE = "kt-deploy-checks"


@pytest.fixture(scope="session")
def checks_namespace(local_cluster: LocalCluster) -> str:
    """A real namespace (with its default ServiceAccount) for dry-run creates and the few real Tasks here.

    Only this folder uses it; tests that create real objects in it delete them.
    """
    ensure_namespace(local_cluster, NAMESPACE, service_account=True)
    return NAMESPACE
