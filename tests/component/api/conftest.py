"""Fixtures for the REST facade's component tests (see kt_api_support for the pieces).

The session's real control plane (``local_cluster``) with the tenants alice, bob (users) and root
(admin), the real API served over HTTP in a thread and, for ``stack``, the real operator; httpx
clients for each tenant. Both stacks are module-scoped (starting them per test costs seconds on a
real cluster): tests create their own tasks and must not depend on others' counts. A module uses
one of the two, never both: the operator of ``stack`` would act on the tasks of ``shared``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from kt_api_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, ROOMY, Stack, _start_stack

from kubetask.cluster import LocalCluster


@pytest.fixture(scope="module")
def shared(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API (no operator: tests play it by writing task status) per test module; roomy limits."""
    yield from _start_stack(local_cluster, tmp_path_factory.mktemp("shared"), with_operator=False,
                            tenant_limits=ROOMY)


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


@pytest.fixture(scope="module")
def stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real operator + the API per test module; roomy limits."""
    yield from _start_stack(local_cluster, tmp_path_factory.mktemp("stack"), with_operator=True,
                            tenant_limits=ROOMY)


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
