"""Fixtures of the live-update tests: the real API (and for ``live_stack`` the real operator) on the session's
real control plane, with the webhook settings the tests need (loopback receivers allowed, short backoff)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_support import WEBHOOK_ENV, Stack, start_stack

from kubetask.cluster import LocalCluster


@pytest.fixture(scope="module")
def live_stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real operator + the API, per test module."""
    yield from start_stack(local_cluster, tmp_path_factory.mktemp("live"), with_operator=True, env=WEBHOOK_ENV)
