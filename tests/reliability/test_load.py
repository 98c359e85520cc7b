"""Load (issue 12, part 5): 200 concurrent REST clients for 60 s mixing POST, GET and list, the operator running.

The API (``kubetask api``'s server) and the operator run as processes of their own on loopback; the load
generator is :func:`bench/rest_load.drive` (the benchmark ``bench/rest_load.py`` runs the same).  Every answer
must be a 2xx or the rate limit's 429, and no connection may be dropped or time out; p99 and throughput are
printed, not asserted (they move with what else runs on the machine).

``KUBETASK_LOAD_SECONDS`` (60) and ``KUBETASK_LOAD_CLIENTS`` (200) size the run; ``KUBETASK_LOAD_RPM`` is each
of the two tenants' rate limit (default ``rest_load.REQUESTS_PER_MINUTE``): beyond it the API sheds with 429.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from _support import pct
from kt_process_support import LiveApi
from rest_load import RATE_LIMITED, drive

from kubetask.cluster import LocalCluster

SECONDS = float(os.environ.get("KUBETASK_LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("KUBETASK_LOAD_CLIENTS", "200"))


@pytest.mark.timeout(int(SECONDS) + 300)
def test_200_concurrent_clients_get_only_answers_or_rate_limits(live_api: LiveApi, local_cluster: LocalCluster) -> None:
    # The apiserver's own answer time meanwhile, asked from outside the API: tells a slow apiserver from a busy API.
    version_times: list[float] = []
    done = threading.Event()

    def probe() -> None:
        client = local_cluster.admin()
        while not done.wait(0.5):
            started = time.monotonic()
            try:
                client.get("/version", timeout=30)
            finally:
                version_times.append(time.monotonic() - started)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        figures = asyncio.run(drive(live_api.url, live_api.keys, clients=CLIENTS, seconds=SECONDS))
    finally:
        done.set()
        prober.join(35)
    every = figures.all_latencies()
    print("\n".join(figures.lines()))
    print(f"apiserver GET /version meanwhile (from the test process): p50 {pct(version_times, 0.5) * 1000:.0f} ms, "
          f"max {max(version_times, default=0) * 1000:.0f} ms, {sum(t > 2 for t in version_times)} of "
          f"{len(version_times)} over 2 s")
    print(f"load: {CLIENTS} clients x {figures.seconds:.0f} s: {figures.requests} requests, "
          f"{figures.requests / figures.seconds:.0f} req/s, p99 {pct(every, 0.99) * 1000:.0f} ms, "
          f"p50 {pct(every, 0.5) * 1000:.0f} ms, 429s {figures.statuses[RATE_LIMITED]}, "
          f"other errors {sum(figures.unexpected.values())}, dropped {figures.dropped}, "
          f"timeouts {figures.errors['TimeoutError']}")
    assert figures.unexpected == {}, figures.samples
    assert figures.errors == {}, dict(figures.errors)
    assert figures.statuses[201] > 0 and figures.statuses[200] > 0  # every kind of request was answered
    assert all(figures.latencies[kind] for kind in ("post", "get", "list"))
