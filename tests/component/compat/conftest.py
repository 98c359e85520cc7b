"""Black-box compatibility suite: ONE ``kubetask dev`` process per session, driven like a seed client.

Every module here is written from one seed document (``/work/shared/seeds``) and DESIGN §4: it sends
the seed's request examples with an ``X-API-Key`` header and asserts what a client written from that
document relies on.  The product runs exactly as the README says (``kubetask dev``), on a free port,
with its kubeconfig written to a temporary directory (for reading Jobs, e.g. the task token).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from compat_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, DevServer, free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    workdir = tmp_path_factory.mktemp("compat-dev")
    port = free_port()
    kubeconfig = workdir / "kubeconfig.yaml"
    log = workdir / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubetask.cli", "dev", "--port", str(port),
             "--kubeconfig-out", str(kubeconfig)],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"kubetask dev exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"kubetask dev did not become healthy:\n{log.read_text()}")
        time.sleep(0.2)
    server = DevServer(proc, url, kubeconfig, log)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
