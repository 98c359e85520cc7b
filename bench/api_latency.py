"""REST facade latency against the simulated cluster (issue 4's benchmark).

Prints:
* ``POST /tasks`` p50/p99 with 50 concurrent clients, next to the raw Task-CR create latency against the
  same apiserver in the same run (same concurrency, same bodies), and their ratio;
* ``GET /tasks`` with a filter, a sort and a page over 10,000 tasks (1,000 per user): p50/p99.

Run: ``python bench/api_latency.py [--clients 50] [--posts 1000] [--gets 2000]``.  No operator runs, so
tasks stay pending and the figures are the API's own cost (auth, validation, admission, the apiserver
round trip, the cache).  Everything shares one machine (and the sim, the API and the clients each
have a thread), so absolute numbers say more about the ratio than about a real cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubetask.api.server import run_api_in_thread  # noqa: E402
from kubetask.core.rest import BuildContext, build_task, generate_task_id  # noqa: E402
from kubetask.kube.bootstrap import ensure_tenant  # noqa: E402
from kubetask.kube.client import TASKS, KubeClient  # noqa: E402
from kubetask.settings import ApiSettings, KubeSettings  # noqa: E402
from kubetask.sim import SimCluster  # noqa: E402

USERS = [f"user{i:02d}" for i in range(10)]
PER_USER = 1000
LIMITS = {"maxPending": 100_000, "requestsPerMinute": 100_000_000}
BODY = {"name": "bench", "script_content": "print('bench')", "priority": 5, "metadata": {"tags": ["bench"]}}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] * 1000


async def run_concurrently(clients: int, total: int, op: Callable[[int], Awaitable[None]]) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


async def bench(args: argparse.Namespace) -> None:
    cluster = SimCluster(nodes=SimCluster.dev_nodes()).start()
    tmp = Path(tempfile.mkdtemp(prefix="kubetask-bench-"))
    kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig")
    for crd in sorted((ROOT / "kubetask" / "resources" / "crds").glob("*.yaml")):
        cluster.apply_file(crd)
    await asyncio.sleep(0.3)
    for template in sorted((ROOT / "kubetask" / "resources" / "tasktemplates").glob("*.yaml")):
        cluster.apply_file(template)
    kube = await KubeClient.connect(str(kubeconfig))
    for user in USERS:
        await ensure_tenant(kube, user, api_key=f"{user}-key", limits=LIMITS)
    api = start_api(args, kubeconfig)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    http = {u: httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"X-API-Key": f"{u}-key"},
                                 timeout=60, limits=limits) for u in USERS}
    try:
        # Warm up both paths (connections, caches).
        for user in USERS:
            (await http[user].post("/tasks", json=BODY)).raise_for_status()
        created = {u: 1 for u in USERS}

        async def post(i: int) -> None:
            user = USERS[i % len(USERS)]
            response = await http[user].post("/tasks", json=BODY)
            if response.status_code != 201:
                raise RuntimeError(f"POST /tasks -> {response.status_code}: {response.text[:200]}")
            created[user] += 1

        started = time.perf_counter()
        post_lat = await run_concurrently(args.clients, args.posts, post)
        post_rate = len(post_lat) / (time.perf_counter() - started)

        bodies = {u: build_task(BODY, BuildContext(user=u, namespace=f"kubetask-{u}")) for u in USERS}

        async def raw(i: int) -> None:
            user = USERS[i % len(USERS)]
            body = {**bodies[user], "metadata": {**bodies[user]["metadata"], "name": generate_task_id("bench")}}
            await kube.create(TASKS, body, f"kubetask-{user}")
            created[user] += 1

        started = time.perf_counter()
        raw_lat = await run_concurrently(args.clients, args.posts, raw)
        raw_rate = len(raw_lat) / (time.perf_counter() - started)

        # Fill up to 1,000 tasks per user (raw creates; not timed).
        fill = [(u, PER_USER - created[u]) for u in USERS]
        jobs = [u for u, n in fill for _ in range(max(0, n))]
        await run_concurrently(args.clients, len(jobs), lambda i: _create(kube, bodies[jobs[i]], jobs[i]))
        total_tasks = sum(max(created[u], PER_USER) for u in USERS)

        # Wait until the API's cache holds every task.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = [(await http[u].get("/tasks", params={"limit": 1})).json()["total"] for u in USERS]
            if all(c >= PER_USER for c in counts):
                break
            await asyncio.sleep(0.5)

        async def get(i: int) -> None:
            user = USERS[i % len(USERS)]
            response = await http[user].get("/tasks", params={
                "status": "pending", "tag": "bench", "sort_by": "priority", "sort_order": "desc",
                "limit": 50, "offset": (i * 50) % 900,
            })
            if response.status_code != 200 or len(response.json()["tasks"]) != 50:
                raise RuntimeError(f"GET /tasks -> {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        get_lat = await run_concurrently(args.clients, args.gets, get)
        get_rate = len(get_lat) / (time.perf_counter() - started)

        where = "a thread of the benchmark process" if args.in_thread else "its own process"
        print(f"kubetask API latency - simulated cluster, {args.clients} concurrent clients, "
              f"{len(USERS)} users; API in {where}")
        print(f"  POST /tasks            n={len(post_lat):5d}  p50 {pct(post_lat, 50):7.2f} ms  "
              f"p99 {pct(post_lat, 99):7.2f} ms  mean {statistics.mean(post_lat) * 1000:7.2f} ms  "
              f"{post_rate:6.0f} req/s")
        print(f"  raw Task CR create     n={len(raw_lat):5d}  p50 {pct(raw_lat, 50):7.2f} ms  "
              f"p99 {pct(raw_lat, 99):7.2f} ms  mean {statistics.mean(raw_lat) * 1000:7.2f} ms  "
              f"{raw_rate:6.0f} req/s")
        print(f"  ratio POST/raw         p50 {pct(post_lat, 50) / pct(raw_lat, 50):5.2f}x   "
              f"p99 {pct(post_lat, 99) / pct(raw_lat, 99):5.2f}x")
        print(f"  GET /tasks (status+tag filter, sort by priority, page of 50) over {total_tasks} tasks "
              f"({PER_USER} per user)")
        print(f"                         n={len(get_lat):5d}  p50 {pct(get_lat, 50):7.2f} ms  "
              f"p99 {pct(get_lat, 99):7.2f} ms  mean {statistics.mean(get_lat) * 1000:7.2f} ms  "
              f"{get_rate:6.0f} req/s")
    finally:
        for client in http.values():
            await client.aclose()
        api.stop()
        await kube.close()
        cluster.stop()


class _Process:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url, self.proc = url, proc

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_api(args: argparse.Namespace, kubeconfig: Path) -> Any:
    """The API in its own process (as in production: its own interpreter and GIL), or in a thread."""
    if args.in_thread:
        return run_api_in_thread(ApiSettings(host="127.0.0.1", port=0), KubeSettings(kubeconfig=str(kubeconfig)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = ("import asyncio; from kubetask.api.server import serve_api; "
            "from kubetask.settings import ApiSettings, KubeSettings; "
            f"asyncio.run(serve_api(ApiSettings(host='127.0.0.1', port={port}), "
            f"KubeSettings(kubeconfig={str(kubeconfig)!r})))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return _Process(url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API process did not become healthy")


async def _create(kube: KubeClient, body: dict[str, Any], user: str) -> None:
    obj = {**body, "metadata": {**body["metadata"], "name": generate_task_id("bench")}}
    await kube.create(TASKS, obj, f"kubetask-{user}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts", type=int, default=1000, help="POSTs (and as many raw creates)")
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--in-thread", action="store_true", help="run the API in a thread of this process")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
