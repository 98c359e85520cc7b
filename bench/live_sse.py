"""Concurrent SSE clients on one API process: memory per client and fan-out latency.

Separate processes, as in production: the real control plane (``kubetask cluster up``), the API (``kubetask
api``) and this load generator.  It opens SSE streams (``GET /api/v1/tasks/events``) in steps, keeps reading
them, and at each step prints the API process's resident memory (VmRSS from /proc), the memory each open
stream costs (RSS growth over the baseline / streams), and how long one task change takes to reach every
stream (create a Task through REST; time until each client has read its ``created`` event).

Run: ``python bench/live_sse.py [--steps 250,500,1000,2000,4000]``.  Needs ``ulimit -n`` above twice the
largest step (each stream is a socket on both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from api_latency import Child, start_api, start_cluster  # noqa: E402

from kubetask.kube.bootstrap import ensure_tenant  # noqa: E402
from kubetask.kube.client import TASKS, KubeClient  # noqa: E402

KEY = "bench-live-key"
TENANT = "benchlive"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Client:
    """One SSE stream, read on asyncio; remembers when it saw a ``created`` event for a given name."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def open(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write((f"GET /api/v1/tasks/events HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n"
                           "Accept: text/event-stream\r\n\r\n").encode())
        await self.writer.drain()
        status = await self.reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        while (await self.reader.readline()).strip():
            pass  # headers
        while b"event: ready" not in await self.reader.readline():
            pass
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.reader is not None
        event = b""
        while True:
            line = await self.reader.readline()
            if os.environ.get("LIVE_BENCH_DEBUG"):
                print("DEBUG", line[:200], file=sys.stderr)
            if not line:
                return
            if line.startswith(b"event: "):
                event = line[7:].strip()
            elif line.startswith(b"data: ") and event == b"created":
                start = line.find(b'"object_name":"') + 15
                name = line[start:line.find(b'"', start)].decode()
                self.seen.setdefault(name, time.perf_counter())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


async def fan_out(kube: KubeClient, clients: list[Client], label: str) -> list[float]:
    """Create one Task (straight through the apiserver: the fan-out starts at the watch cache, whoever wrote
    it) and time its ``created`` event's arrival at every stream."""
    name = f"{label}-{int(time.time() * 1000) % 10**9}"
    started = time.perf_counter()
    await kube.create(TASKS, {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                              "metadata": {"name": name, "namespace": f"kubetask-{TENANT}"},
                              "spec": {"user": TENANT, "displayName": name, "image": "busybox"}}, f"kubetask-{TENANT}")
    deadline = time.perf_counter() + 60
    while any(name not in c.seen for c in clients) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    missing = sum(1 for c in clients if name not in c.seen)
    if missing:
        raise RuntimeError(f"{missing} of {len(clients)} streams never got the event")
    return [c.seen[name] - started for c in clients]


async def measure(url: str, pid: int, steps: list[int], kubeconfig: Path) -> None:
    kube = await KubeClient.connect(str(kubeconfig))
    host, port = url.removeprefix("http://").split(":")
    clients: list[Client] = []
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}) as http:
        for _ in range(20):  # warm up: code paths, caches, a few streams opened and closed
            (await http.get("/api/v1/tasks?limit=1")).raise_for_status()
    warm = [Client() for _ in range(20)]
    await asyncio.gather(*(c.open(host, int(port)) for c in warm))
    await fan_out(kube, warm, "warmup")
    for c in warm:
        c.close()
    await asyncio.sleep(1.0)
    base = rss_kib(pid)
    print(f"API process RSS with no stream open: {base / 1024:.1f} MiB")
    print(f"{'streams':>8} {'RSS MiB':>9} {'KiB/stream':>11} {'fan-out p50 ms':>15} {'p99 ms':>8} {'max ms':>8}")
    for target in steps:
        batch = [Client() for _ in range(target - len(clients))]
        for i in range(0, len(batch), 200):  # open in waves, as clients would connect
            await asyncio.gather(*(c.open(host, int(port)) for c in batch[i:i + 200]))
        clients += batch
        await asyncio.sleep(1.0)
        rss = rss_kib(pid)
        latencies = sorted(await fan_out(kube, clients, f"step-{target}"))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"{target:>8} {rss / 1024:>9.1f} {(rss - base) / target:>11.1f} {p50:>15.1f} {p99:>8.1f} "
              f"{latencies[-1] * 1000:>8.1f}", flush=True)
    for c in clients:
        c.close()
    await kube.close()


async def bootstrap(kubeconfig: Path) -> None:
    client = await KubeClient.connect(str(kubeconfig))
    try:
        await ensure_tenant(client, TENANT, api_key=KEY, role="user",
                            limits={"maxPending": 100_000, "requestsPerMinute": 100_000_000})
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="250,500,1000,2000,4000")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * max(steps) + 1000)), hard))
    os.environ["KUBETASK_LIVE_MAX_STREAMS_PER_TENANT"] = str(max(steps) + 100)
    with tempfile.TemporaryDirectory(prefix="kubetask-live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cluster, kubeconfig, _ = start_cluster(tmp)
        api: Child | None = None
        try:
            asyncio.run(bootstrap(kubeconfig))
            api, url = start_api(tmp, kubeconfig)
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/api/v1/users/me/limits", headers={"X-API-Key": KEY}).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench tenant never became known to the API")
                time.sleep(0.2)
            print(f"one API process (pid {api.proc.pid}), SSE streams of one tenant, on {os.cpu_count()} cores")
            asyncio.run(measure(url, api.proc.pid, steps, kubeconfig))
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            if api is not None:
                api.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
