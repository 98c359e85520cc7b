"""Operator throughput: Task-created → Job-created latency and admitted tasks/s (issue 3).

Starts the simulated cluster (with plenty of capacity so nothing queues for
long) and the real operator, submits N Tasks with near-instant pods, and
measures from the sim's own records:

* Task-created → Job-created latency (p50 / p99),
* admitted tasks per second (Jobs created by the operator per second of the run),
* the raw rate of creating the same Jobs directly with the shared client against
  the same server in the same run, and the ratio between the two.

Usage: ``python bench/operator_throughput.py --tasks 1000 [--webhook]``
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kubetask.core.jobs import build_workload
from kubetask.kube.client import JOBS, TASKS, KubeClient
from kubetask.operator.runner import run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings
from kubetask.sim import SimCluster, SimNode

ROOT = Path(__file__).resolve().parents[1]


def task_body(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "busybox", "resources": {"cpu": "10m", "memory": "16Mi"}, "user": "bench",
                     "podAnnotations": {"kubetask.dev/sim-duration-seconds": "0.01"}}}


async def submit(client: KubeClient, names: list[str], namespace: str, concurrency: int) -> dict[str, float]:
    sem = asyncio.Semaphore(concurrency)
    created: dict[str, float] = {}

    async def one(name: str) -> None:
        async with sem:
            await client.create(TASKS, task_body(name, namespace), namespace)
            created[name] = time.monotonic()

    await asyncio.gather(*(one(n) for n in names))
    return created


async def watch_jobs(client: KubeClient, namespace: str, expected: int, seen: dict[str, float],
                     done: asyncio.Event) -> None:
    async for event in client.watch(JOBS, namespace, timeout_seconds=600):
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name")
        if event.get("type") == "ADDED" and name and name not in seen:
            seen[name] = time.monotonic()
            if len(seen) >= expected:
                done.set()
                return


async def raw_job_rate(client: KubeClient, n: int, namespace: str, concurrency: int) -> float:
    """Create the same Jobs (as the builder makes them) directly: the ceiling for the operator."""
    gpu = GpuSettings()
    bodies = []
    for i in range(n):
        task = {**task_body(f"raw-{i:05d}", namespace), "metadata": {"name": f"raw-{i:05d}", "namespace": namespace,
                                                                      "uid": f"uid-{i}"}}
        body = build_workload(task, execution=1, gpu=gpu).body
        body["metadata"].pop("ownerReferences", None)
        bodies.append(body)
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await client.create(JOBS, body, namespace)

    start = time.monotonic()
    await asyncio.gather(*(one(b) for b in bodies))
    return n / (time.monotonic() - start)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


async def measure(kubeconfig: str, n: int, concurrency: int) -> dict[str, Any]:
    client = await KubeClient.connect(kubeconfig)
    try:
        seen: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_jobs(client, "default", n, seen, done))
        await asyncio.sleep(0.3)
        names = [f"bench-{i:05d}" for i in range(n)]
        start = time.monotonic()
        created = await submit(client, names, "default", concurrency)
        submitted = time.monotonic() - start
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.monotonic() - start
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        latencies = [seen[f"{name}-1"] - created[name] for name in names if f"{name}-1" in seen]
        raw = await raw_job_rate(client, n, "raw", concurrency)
        return {"latencies": latencies, "elapsed": elapsed, "submitted": submitted, "raw_rate": raw}
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="number of Tasks (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent creates by the submitter")
    parser.add_argument("--webhook", action="store_true", help="run with the admission webhook enabled")
    args = parser.parse_args()

    nodes = [SimNode(f"cpu-{i}", cpu="1000", memory="4000Gi", pods="5000") for i in range(4)]
    cluster = SimCluster(nodes=nodes)
    cluster.start()
    try:
        for path in sorted(glob.glob(str(ROOT / "crds" / "*.yaml"))):
            cluster.apply_file(path)
        cluster.apply_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "raw"}})
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig"))
            settings = OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False,
                                        webhook_enabled=args.webhook)
            handle = run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=kubeconfig))
            try:
                result = asyncio.run(measure(kubeconfig, args.tasks, args.concurrency))
            finally:
                handle.stop()
        stats = cluster.stats()
    finally:
        cluster.stop()

    lat = result["latencies"]
    rate = len(lat) / result["elapsed"]
    print(f"kubetask operator throughput — {datetime.now().isoformat(timespec='seconds')}")
    print(f"tasks: {args.tasks}   webhook: {'on' if args.webhook else 'off'}   submit concurrency: "
          f"{args.concurrency}")
    print(f"submitted {args.tasks} Tasks in {result['submitted']:.2f} s "
          f"({args.tasks / result['submitted']:.0f} creates/s)")
    print(f"Task-created -> Job-created latency: p50 {statistics.median(lat) * 1000:.0f} ms   "
          f"p99 {pct(lat, 0.99) * 1000:.0f} ms   max {max(lat) * 1000:.0f} ms")
    print(f"admitted: {len(lat)} Jobs in {result['elapsed']:.2f} s = {rate:.0f} tasks/s")
    print(f"raw Job creation with the same client, same server: {result['raw_rate']:.0f} Jobs/s")
    print(f"ratio operator / raw: {rate / result['raw_rate']:.2f}")
    print(f"duplicate Job names: {len(stats['duplicate_names'])}   quota rejections: {len(stats['quota_rejections'])}")


if __name__ == "__main__":
    main()
