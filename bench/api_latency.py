"""REST facade latency on the real control plane, with one API replica and with two behind one port.

Prints:

* ``POST /tasks`` p50/p99 with ``--clients`` (50) concurrent clients, next to the raw Task-CR create
  against the same apiserver in the same run (same concurrency, same bodies, the same HTTP client
  library), and their ratio;
* ``GET /tasks`` with a filter, a sort and a page over 10,000 tasks (1,000 per user): p50/p99, for
  each replica count of ``--replicas`` (default ``1,2``); replicas are separate ``kubetask api``
  processes sharing one port (``SO_REUSEPORT``: the kernel spreads the clients' connections, as a
  Service spreads them over pods), each with its own watch caches.  Twice: closed loop (each client
  sends again as soon as it is answered, so the latency is ``clients / throughput`` by Little's law,
  the machine's saturation) and paced (``--get-rate`` requests per second spread over the clients,
  latency counted from when each request was due);
* CPU milliseconds per request of the apiserver, the API processes and this load generator.

Separate processes, as in production: the control plane, the API and this load generator.  No
operator runs, so tasks stay pending and the figures are the API's own cost (auth, validation,
the apiserver round trip, the cache).  ``--profile DIR`` attaches py-spy to the (first) API process
during each timed phase.

Run: ``python bench/api_latency.py [--clients 50] [--posts 1000] [--gets 2000] [--replicas 1,2] [--profile DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from _support import ApiReplicas, Meter, cpu_seconds, load, pct, profiled, result, rss_mb, start_cluster

from kubetask.cluster import NodeShape
from kubetask.core.rest import BuildContext, build_task, generate_task_id
from kubetask.kube.bootstrap import ensure_tenant
from kubetask.kube.client import TASKS, KubeClient

USERS = [f"user{i:02d}" for i in range(10)]
PER_USER = 1000
LIMITS = {"maxPending": 100_000, "requestsPerMinute": 100_000_000}
BODY = {"name": "bench", "script_content": "print('bench')", "priority": 5, "metadata": {"tags": ["bench"]}}
GET_PARAMS = {"status": "pending", "tag": "bench", "sort_by": "priority", "sort_order": "desc", "limit": "50"}


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


async def run_open_loop(clients: int, total: int, interval: float, op: Callable[[int], Awaitable[None]]) -> list[float]:
    """``clients`` clients, each sending its next request ``interval`` seconds after its previous one was due
    (not after it was answered: latency counts from when a request was due, so a slow answer is not hidden
    by the requests it held back)."""
    latencies: list[float] = []
    per_client = max(1, total // clients)
    started = time.perf_counter()

    async def client(index: int) -> None:
        offset = interval * index / clients  # spread the clients over the interval
        for n in range(per_client):
            due = started + offset + n * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await op(index * per_client + n)
            latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


@asynccontextmanager
async def api_sessions(url: str, clients: int) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    # aiohttp on both sides of the ratio: the raw creates go through KubeClient, itself on aiohttp.
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    sessions = {u: aiohttp.ClientSession(f"{url}/api/v1/", headers={"X-API-Key": f"{u}-key"},
                                         connector=connector, connector_owner=False,
                                         timeout=aiohttp.ClientTimeout(total=60)) for u in USERS}
    try:
        yield sessions
    finally:
        for session in sessions.values():
            await session.close()
        await connector.close()


def ms(samples: list[float], q: float) -> float:
    return pct(samples, q) * 1000


class Phase:
    """One timed phase: latencies, requests per second, CPU ms per request of each process."""

    def __init__(self, name: str, latencies: list[float], seconds: float, cpu: dict[str, float]) -> None:
        self.name, self.latencies, self.seconds = name, latencies, seconds
        self.cpu = {proc: 1000 * used / max(1, len(latencies)) for proc, used in cpu.items()}

    def line(self) -> str:
        lat = self.latencies
        return (f"  {self.name:<28} n={len(lat):5d}  p50 {ms(lat, 0.5):7.2f} ms  p99 {ms(lat, 0.99):7.2f} ms  "
                f"mean {statistics.mean(lat) * 1000:7.2f} ms  {len(lat) / self.seconds:6.0f} req/s   CPU ms/req: "
                + " ".join(f"{proc} {value:.2f}" for proc, value in self.cpu.items()))


async def timed(name: str, pids: dict[str, int], clients: int, total: int,
                op: Callable[[int], Awaitable[None]], interval: float | None = None) -> Phase:
    """Closed loop (each client sends again once answered) or, with ``interval``, open loop."""
    meter = Meter(pids)
    started = time.perf_counter()
    if interval is None:
        latencies = await run_concurrently(clients, total, op)
    else:
        latencies = await run_open_loop(clients, total, interval, op)
    return Phase(name, latencies, time.perf_counter() - started, meter.used())


async def posts(args: argparse.Namespace, kube: KubeClient, url: str, pids: dict[str, int], profile: Path | None,
                created: dict[str, int]) -> tuple[Phase, Phase]:
    bodies = {u: build_task(BODY, BuildContext(user=u, namespace=f"kubetask-{u}")) for u in USERS}
    async with api_sessions(url, args.clients) as http:
        async def post(i: int) -> None:
            user = USERS[i % len(USERS)]
            async with http[user].post("tasks", json=BODY) as response:
                body = await response.read()
                if response.status != 201:
                    raise RuntimeError(f"POST /tasks -> {response.status}: {body[:300]!r}")
            created[user] += 1

        async def raw(i: int) -> None:
            user = USERS[i % len(USERS)]
            await _create(kube, bodies[user], user)
            created[user] += 1

        # Warm up both paths with as many concurrent requests as clients (connection pools, TLS, caches).
        await run_concurrently(args.clients, 2 * args.clients, post)
        await run_concurrently(args.clients, 2 * args.clients, raw)
        with profiled(pids["api"], profile / "api-post.txt" if profile else None):
            post_phase = await timed("POST /tasks", pids, args.clients, args.posts, post)
        raw_phase = await timed("raw Task CR create", pids, args.clients, args.posts, raw)
        interval = args.clients / args.post_rate
        paced_post = await timed("POST /tasks, paced", pids, args.clients, args.posts, post, interval=interval)
        paced_raw = await timed("raw Task CR create, paced", pids, args.clients, args.posts, raw, interval=interval)
    return post_phase, raw_phase, paced_post, paced_raw


async def fill(args: argparse.Namespace, kube: KubeClient, created: dict[str, int]) -> int:
    """Raw creates up to 1,000 tasks per user (not timed)."""
    bodies = {u: build_task(BODY, BuildContext(user=u, namespace=f"kubetask-{u}")) for u in USERS}
    jobs = [u for u in USERS for _ in range(max(0, PER_USER - created[u]))]
    await run_concurrently(args.clients, len(jobs), lambda i: _create(kube, bodies[jobs[i]], jobs[i]))
    for user in USERS:
        created[user] = max(created[user], PER_USER)
    return sum(created.values())


async def gets(args: argparse.Namespace, url: str, pids: dict[str, int], profile: Path | None,
               replicas: int) -> tuple[Phase, Phase]:
    async with api_sessions(url, args.clients) as http:
        deadline = time.monotonic() + 180  # until every replica's cache holds every task
        while time.monotonic() < deadline:
            counts = []
            for _ in range(4 * replicas):
                for user in USERS:
                    async with http[user].get("tasks", params={"limit": "1"}) as response:
                        counts.append((await response.json())["total"])
            if all(c >= PER_USER for c in counts):
                break
            await asyncio.sleep(0.5)

        async def get(i: int) -> None:
            user = USERS[i % len(USERS)]
            async with http[user].get("tasks", params={**GET_PARAMS, "offset": str((i * 50) % 900)}) as response:
                body = await response.read()
                # Every tenth answer decoded in full: decoding 50 tasks costs this one-process load generator
                # about 1 ms, which on two cores would be measured as the API's latency.
                if response.status != 200 or (i % 10 == 0 and len(json.loads(body)["tasks"]) != 50):
                    raise RuntimeError(f"GET /tasks -> {response.status}: {body[:200]!r}")

        await run_concurrently(args.clients, 4 * args.clients, get)  # warm-up: connections to every replica
        label = f"{replicas} replica{'s' if replicas > 1 else ''}"
        with profiled(pids["api"], profile / f"api-get-{replicas}.txt" if profile else None):
            closed = await timed(f"GET /tasks, {label}", pids, args.clients, args.gets, get)
        opened = await timed(f"GET /tasks, {label}, paced", pids, args.clients, args.gets, get,
                             interval=args.clients / args.get_rate)
        return closed, opened


async def _create(kube: KubeClient, body: dict[str, Any], user: str) -> None:
    obj = {**body, "metadata": {**body["metadata"], "name": generate_task_id("bench")}}
    await kube.create(TASKS, obj, f"kubetask-{user}")


async def bench(args: argparse.Namespace, profile: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"gets": {}}
    with tempfile.TemporaryDirectory(prefix="kubetask-api-bench-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", [NodeShape("cpu", count=1)], templates=True)
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        kube = await KubeClient.connect(str(kubeconfig))
        try:
            for user in USERS:
                await ensure_tenant(kube, user, api_key=f"{user}-key", limits=LIMITS)
            created = dict.fromkeys(USERS, 0)
            apiserver = cluster.processes["kube-apiserver"].pid
            for index, replicas in enumerate(args.replicas):
                api = ApiReplicas(kubeconfig, replicas, logs=Path(tmp) / f"api-{replicas}").wait_healthy()
                try:
                    pids = {"apiserver": apiserver, **{f"api{i}" if i else "api": pid
                                                       for i, pid in enumerate(api.pids)}, "loadgen": os.getpid()}
                    if index == 0:
                        out["post"], out["raw"], out["paced_post"], out["paced_raw"] = await posts(
                            args, kube, api.url, pids, profile, created)
                        out["tasks"] = await fill(args, kube, created)
                    out["gets"][replicas] = await gets(args, api.url, pids, profile, replicas)
                    out.setdefault("rss", {})[replicas] = [rss_mb(pid) for pid in api.pids]
                    out.setdefault("api_cpu", {})[replicas] = [cpu_seconds(pid) for pid in api.pids]
                finally:
                    api.stop()
        finally:
            await kube.close()
            cluster.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts", type=int, default=1000, help="POSTs (and as many raw creates)")
    parser.add_argument("--gets", type=int, default=2000, help="GETs per replica count")
    parser.add_argument("--post-rate", type=float, default=100.0,
                        help="creates per second of the paced (open-loop) POST and raw phases")
    parser.add_argument("--get-rate", type=float, default=250.0,
                        help="requests per second of the paced (open-loop) GET phase, spread over the clients")
    parser.add_argument("--replicas", default="1,2", help="API replica counts to measure GET with (default 1,2)")
    parser.add_argument("--profile", default=None, metavar="DIR", help="py-spy the API process into DIR")
    args = parser.parse_args()
    args.replicas = [int(r) for r in str(args.replicas).split(",") if r.strip()]
    profile = Path(args.profile).resolve() if args.profile else None
    figures = asyncio.run(bench(args, profile))

    post, raw = figures["post"], figures["raw"]
    print(f"kubetask API latency - real kube-apiserver, {args.clients} concurrent clients, {len(USERS)} users; "
          f"control plane, API and load generator in their own processes; load {load()}")
    print(post.line())
    print(raw.line())
    p50 = ms(post.latencies, 0.5) / ms(raw.latencies, 0.5)
    p99 = ms(post.latencies, 0.99) / ms(raw.latencies, 0.99)
    print(f"  ratio POST/raw               p50 {p50:5.2f}x   p99 {p99:5.2f}x   "
          "(closed loop: both saturate the machine)")
    paced_post, paced_raw = figures["paced_post"], figures["paced_raw"]
    print(paced_post.line())
    print(paced_raw.line())
    paced_p50 = ms(paced_post.latencies, 0.5) / ms(paced_raw.latencies, 0.5)
    paced_p99 = ms(paced_post.latencies, 0.99) / ms(paced_raw.latencies, 0.99)
    print(f"  ratio POST/raw, paced        p50 {paced_p50:5.2f}x   p99 {paced_p99:5.2f}x   "
          f"({args.post_rate:g} creates/s)")
    print(f"  GET /tasks (status+tag filter, sort by priority, page of 50) over {figures['tasks']} tasks "
          f"({PER_USER} per user):")
    print(f"  closed loop: each client sends its next GET once answered (latency = clients / throughput); paced: "
          f"{args.get_rate:g} req/s in all, each client every {args.clients / args.get_rate * 1000:.0f} ms, "
          f"latency from when a request was due")
    for replicas, (closed, paced) in figures["gets"].items():
        print(closed.line() + f"   API RSS {'+'.join(f'{m:.0f}' for m in figures['rss'][replicas])} MB")
        print(paced.line())
    if profile is not None:
        print(f"  API profiles (py-spy): {profile}/api-post.top.txt, {profile}/api-get-*.top.txt")
    gets = figures["gets"]
    result(clients=args.clients, post_p50_ms=round(ms(post.latencies, 0.5), 1),
           post_p99_ms=round(ms(post.latencies, 0.99), 1), post_raw_p50=round(p50, 2), post_raw_p99=round(p99, 2),
           paced_post_raw_p50=round(paced_p50, 2), paced_post_raw_p99=round(paced_p99, 2), post_rate=args.post_rate,
           **{f"get_p99_ms_{r}replica": round(ms(closed.latencies, 0.99), 1) for r, (closed, _) in gets.items()},
           **{f"get_p50_ms_{r}replica": round(ms(closed.latencies, 0.5), 1) for r, (closed, _) in gets.items()},
           **{f"paced_get_p99_ms_{r}replica": round(ms(paced.latencies, 0.99), 1) for r, (_, paced) in gets.items()},
           get_rate=args.get_rate,
           tasks=figures["tasks"])


if __name__ == "__main__":
    main()
