"""Fixtures for the REST facade's component tests (see kt_api_support for the pieces).

The simulated cluster (``sim_cluster`` from ``tests/component/conftest.py``) with the CRDs and
built-in templates applied, the tenants alice, bob (users) and root (admin), the real operator
(when ``kubetask.operator.runner`` is available) and the real API served over HTTP in a thread;
httpx clients for each tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kt_api_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, Stack, _start_stack

from kubetask.sim import SimCluster

ROOMY = {"maxPending": 100000, "requestsPerMinute": 1000000}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One sim + API (no operator) per test module; alice and bob have roomy limits.

    Tests on it create their own tasks and must not depend on others' counts.
    """
    cluster = SimCluster(nodes=SimCluster.dev_nodes())
    cluster.start()
    try:
        yield from _start_stack(cluster, tmp_path_factory.mktemp("shared"), with_operator=False,
                                tenant_limits=ROOMY)
    finally:
        cluster.stop()


@pytest.fixture
def a(shared: Stack) -> Iterator[httpx.Client]:
    """alice on the shared stack."""
    with shared.client(ALICE_KEY) as client:
        yield client


@pytest.fixture
def b(shared: Stack) -> Iterator[httpx.Client]:
    """bob on the shared stack."""
    with shared.client(BOB_KEY) as client:
        yield client


@pytest.fixture
def root(shared: Stack) -> Iterator[httpx.Client]:
    """The admin tenant on the shared stack."""
    with shared.client(ADMIN_KEY) as client:
        yield client


@pytest.fixture
def stack(sim_cluster: SimCluster, tmp_path: Path) -> Iterator[Stack]:
    """Sim + operator (if available) + API."""
    yield from _start_stack(sim_cluster, tmp_path, with_operator=True)


@pytest.fixture
def api_only(sim_cluster: SimCluster, tmp_path: Path) -> Iterator[Stack]:
    """Sim + API, no operator: tasks stay where the API put them (deterministic for shape tests)."""
    yield from _start_stack(sim_cluster, tmp_path, with_operator=False)


@pytest.fixture
def needs_operator(stack: Stack) -> Stack:
    """``stack``, named for tests whose outcome depends on the operator acting."""
    assert stack.operator is not None
    return stack


@pytest.fixture
def alice(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(ALICE_KEY) as client:
        yield client


@pytest.fixture
def bob(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(BOB_KEY) as client:
        yield client


@pytest.fixture
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(ADMIN_KEY) as client:
        yield client


