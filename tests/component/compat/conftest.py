"""Black-box compatibility suite: ONE ``kubetask dev`` process for this package, driven like a seed client.

Every module here is written from one seed document (``/work/shared/seeds``) and DESIGN §4: it sends
the seed's request examples with an ``X-API-Key`` header and asserts what a client written from that
document relies on.  The product runs exactly as the README says (``kubetask dev``: a real local
control plane with kwok GPU nodes, the operator and the REST API), on a free port, with its state
folder (``--workdir``) and kubeconfig in pytest's temporary directory, so it never touches a
developer's own ``kubetask dev``.  It is stopped when the package is done, control plane included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from compat_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, DevServer, start_dev, stop_dev

COMPAT_DIR = Path(__file__).resolve().parent


class _DevRun:
    """The package's one ``kubetask dev``, started on first use and stopped once the run leaves the package.

    (``scope="package"`` would not do: without ``__init__.py`` this folder is no Package to pytest, and a
    package-scoped fixture would live, with its control plane, until the end of the session.)"""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.server: DevServer | None = None

    def get(self) -> DevServer:
        if self.server is None:
            self.server = start_dev(self.tmp_path_factory.mktemp("compat-dev"))
        return self.server

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            stop_dev(server)


_RUN: list[_DevRun] = []


@pytest.fixture(scope="session")
def _dev_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_DevRun]:
    run = _DevRun(tmp_path_factory)
    _RUN.append(run)
    try:
        yield run
    finally:
        _RUN.remove(run)
        run.stop()


@pytest.fixture
def dev(_dev_run: _DevRun) -> DevServer:
    """The running ``kubetask dev`` (one for all the compat modules)."""
    return _dev_run.get()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the package's last test: stop ``kubetask dev`` and its control plane (SIGTERM, then no
    process may be left), so they don't run alongside later tests."""
    if nextitem is None or COMPAT_DIR not in nextitem.path.resolve().parents:
        for run in _RUN:
            run.stop()


@pytest.fixture
def alice(dev: DevServer) -> Iterator[httpx.Client]:
    """alice, as a seed client that knows the ``/api/v1`` base URL."""
    with dev.client(ALICE_KEY) as client:
        yield client


@pytest.fixture
def bob(dev: DevServer) -> Iterator[httpx.Client]:
    with dev.client(BOB_KEY) as client:
        yield client


@pytest.fixture
def admin(dev: DevServer) -> Iterator[httpx.Client]:
    with dev.client(ADMIN_KEY) as client:
        yield client


@pytest.fixture
def root_alice(dev: DevServer) -> Iterator[httpx.Client]:
    """alice, as seed 004's client: no ``/api/v1`` prefix."""
    with dev.client(ALICE_KEY, prefix="") as client:
        yield client


@pytest.fixture
def dev_url_client(dev: DevServer) -> Iterator[httpx.Client]:
    """No key, no prefix: for /docs, /openapi.json, /health, /metrics."""
    with dev.client(None, prefix="") as client:
        yield client
