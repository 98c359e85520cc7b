"""Operator throughput on the real control plane: admission rate against raw Job creates, and Task→Job latency.

Starts the local real control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok
nodes with room for everything, so nothing waits for capacity) and the real operator with its
admission webhook (in its own process, as deployed), then:

1. **burst**: creates ``--tasks`` Tasks (default 1,000) as fast as ``--concurrency`` clients can,
   through the webhook, and measures the operator's admission rate (Jobs created per second,
   from the first Task create to the last Job), the Task create rate, and Task→Job latency;
2. **arrivals**: once the burst is admitted, creates Tasks at ``--rate`` per second (default 50)
   for ``--seconds`` (default 20) and measures Task created → Job created (p50/p99);
3. **raw**: creates as many Jobs as the burst had (the same bodies the operator builds) directly,
   with the same client and concurrency: the ceiling, and the ratio admission / raw.

It also prints each Task webhook's review time twice: as the kube-apiserver measured its call, and as the
operator measured its answer (``kubetask_admission_review_duration_seconds``, from its metrics port).

Usage: ``python bench/operator_throughput.py [--tasks 1000] [--rate 50] [--seconds 20] [--operator-thread]
[--profile DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _support import (
    Meter,
    OperatorProcess,
    create_namespace,
    duplicate_jobs,
    ensure_tenant,
    free_port,
    histogram_summary,
    load,
    pct,
    profiled,
    quota_refusals,
    result,
    rss_mb,
    start_cluster,
)

from kubetask.cluster import NodeShape
from kubetask.core.jobs import build_workload
from kubetask.kube.client import JOBS, TASKS, ApiError, KubeClient
from kubetask.settings import GpuSettings

TENANT = "bench"
NAMESPACE = f"kubetask-{TENANT}"
LIMITS = {"maxPending": 100_000, "maxRunning": 5000}


def task_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"image": "busybox", "resources": {"cpu": "10m", "memory": "16Mi"},
                     "podAnnotations": {"kubetask.dev/sim-duration-seconds": "0.01"}}}


class JobWatch:
    """When each Job of the namespace was first seen (a watch delivers creates in etcd order)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self.waiters: list[tuple[int, asyncio.Event]] = []

    async def run(self) -> None:
        version = (await self.client.list(JOBS, NAMESPACE))["metadata"].get("resourceVersion")
        while True:
            try:
                async for event in self.client.watch(JOBS, NAMESPACE, resource_version=version, timeout_seconds=120):
                    meta = (event.get("object") or {}).get("metadata") or {}
                    version = meta.get("resourceVersion") or version
                    if event.get("type") == "ADDED" and meta.get("name") not in self.seen:
                        self.seen[str(meta["name"])] = time.monotonic()
                        for count, waiter in self.waiters:
                            if len(self.seen) >= count:
                                waiter.set()
            except (TimeoutError, ApiError, OSError) as error:
                print(f"job watch: {error}; watching again", flush=True)

    async def wait_for(self, count: int) -> None:
        waiter = asyncio.Event()
        self.waiters.append((count, waiter))
        if len(self.seen) < count:
            await asyncio.wait_for(waiter.wait(), 900)


async def create_tasks(client: KubeClient, names: list[str], concurrency: int, rate: float = 0.0
                       ) -> tuple[dict[str, float], list[float]]:
    """Create the Tasks (at most ``rate`` per second when given: an open-loop load); their create times."""
    sem = asyncio.Semaphore(concurrency)
    created: dict[str, float] = {}
    latencies: list[float] = []
    start = time.monotonic()

    async def one(i: int, name: str) -> None:
        if rate > 0:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        async with sem:
            began = time.monotonic()
            await client.create(TASKS, task_body(name), NAMESPACE)
            created[name] = time.monotonic()
            latencies.append(created[name] - began)

    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    return created, latencies


async def raw_job_rate(client: KubeClient, n: int, concurrency: int) -> float:
    """Create the same Jobs (as the builder makes them) directly: the ceiling for the operator."""
    gpu = GpuSettings()
    bodies = []
    for i in range(n):
        task = {**task_body(f"raw-{i:05d}"), "metadata": {"name": f"raw-{i:05d}", "namespace": "raw", "uid": f"u{i}"}}
        body = build_workload(task, execution=1, gpu=gpu).body
        body["metadata"].pop("ownerReferences", None)
        bodies.append(body)
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await client.create(JOBS, body, "raw")

    start = time.monotonic()
    await asyncio.gather(*(one(b) for b in bodies))
    return n / (time.monotonic() - start)


async def measure(kubeconfig: str, args: argparse.Namespace) -> dict[str, Any]:
    client = await KubeClient.connect(kubeconfig)
    try:
        jobs = JobWatch(client)
        watcher = asyncio.create_task(jobs.run())
        await asyncio.sleep(0.5)
        burst = [f"burst-{i:05d}" for i in range(args.tasks)]
        start = time.monotonic()
        created, create_lat = await create_tasks(client, burst, args.concurrency)
        submitted = time.monotonic() - start
        await jobs.wait_for(len(burst))
        admitted = max(jobs.seen[f"{n}-1"] for n in burst) - start
        burst_lat = [jobs.seen[f"{n}-1"] - created[n] for n in burst]

        arrivals = [f"arrive-{i:05d}" for i in range(int(args.rate * args.seconds))]
        arrived, _ = await create_tasks(client, arrivals, args.concurrency, rate=args.rate)
        await jobs.wait_for(len(burst) + len(arrivals))
        arrival_lat = [jobs.seen[f"{n}-1"] - arrived[n] for n in arrivals]
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        raw = await raw_job_rate(client, args.tasks, args.concurrency)
        return {"submitted": submitted, "admitted": admitted, "create_lat": create_lat, "burst_lat": burst_lat,
                "arrival_lat": arrival_lat, "raw_rate": raw}
    finally:
        await client.close()


def operator_metrics(port: int) -> str:
    with httpx.Client() as http:
        return http.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def review_latencies(apiserver: str, operator: str) -> list[str]:
    """Each Task webhook's review time as the kube-apiserver measured it (its call), and as the operator did (its
    answer): where the difference is, is the way there and back."""
    lines = []
    for webhook, kind in (("defaults", "admit"), ("rules", "validating")):
        count, mean, fast = histogram_summary(apiserver, "apiserver_admission_webhook_admission_duration_seconds",
                                              0.025, name=f"{webhook}.kubetask.io", operation="CREATE", type=kind)
        line = f"webhook {webhook}: {count} reviews, kube-apiserver's call mean {mean * 1000:.0f} ms ({fast:.0%} " \
               f"within 25 ms)"
        if operator:
            count, mean, fast = histogram_summary(operator, "kubetask_admission_review_duration_seconds", 0.025,
                                                  webhook=webhook)
            line += f"; operator's answer mean {mean * 1000:.1f} ms ({fast:.0%} within 25 ms)"
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="Tasks in the burst (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent creates of the client")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second after the burst (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the arrivals last (default 20)")
    parser.add_argument("--operator-thread", action="store_true",
                        help="run the operator in a thread of this process instead of its own process")
    parser.add_argument("--profile", default=None, metavar="DIR", help="py-spy the operator process into DIR")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubetask-throughput-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", [NodeShape("cpu", count=4, cpu="1000", memory="4000Gi",
                                                                  pods="5000")])
        kubeconfig = str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig"))
        create_namespace(cluster, "raw")
        try:
            if args.operator_thread:
                from kubetask.operator.runner import run_operator_in_thread
                from kubetask.settings import KubeSettings, OperatorSettings

                settings = OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False)
                handle: Any = run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=kubeconfig))
                pid = None
            else:
                metrics_port = free_port()
                handle = OperatorProcess(kubeconfig, metrics_port=metrics_port).wait_ready()
                pid = handle.pid
            ensure_tenant(cluster, TENANT, LIMITS)
            meter = Meter({**({"operator": pid} if pid else {}),
                           **{name: proc.pid for name, proc in cluster.processes.items()}})
            profile = Path(args.profile).resolve() / "operator-throughput.txt" if args.profile and pid else None
            try:
                with profiled(pid or 0, profile):
                    figures = asyncio.run(measure(kubeconfig, args))
                cpu = meter.used()
                memory = rss_mb(pid) if pid else float("nan")
                reviews = review_latencies(cluster.admin().get("/metrics").text,
                                           operator_metrics(metrics_port) if pid else "")
            finally:
                handle.stop()
            duplicates = duplicate_jobs(cluster, [NAMESPACE])
            refusals = quota_refusals(cluster, [NAMESPACE])
        finally:
            cluster.stop()

    n = args.tasks
    rate = n / figures["admitted"]
    ratio = rate / figures["raw_rate"]
    create_lat, burst_lat, arrival_lat = figures["create_lat"], figures["burst_lat"], figures["arrival_lat"]
    print(f"kubetask operator throughput - real control plane, operator "
          f"{'in a thread of the benchmark' if args.operator_thread else 'in its own process'}, webhook on; "
          f"load {load()}")
    print(f"  burst of {n} Tasks: created in {figures['submitted']:.2f} s ({n / figures['submitted']:.0f} creates/s "
          f"through the webhook; create latency p50 {statistics.median(create_lat) * 1000:.0f} ms "
          f"p99 {pct(create_lat, 0.99) * 1000:.0f} ms)")
    print(f"  admitted (Jobs created) by {figures['admitted']:.2f} s after the first create = {rate:.0f} tasks/s; "
          f"Task->Job p50 {statistics.median(burst_lat) * 1000:.0f} ms  p99 {pct(burst_lat, 0.99) * 1000:.0f} ms")
    print(f"  raw Job creates, same client and concurrency: {figures['raw_rate']:.0f} Jobs/s   "
          f"ratio admission / raw: {ratio:.2f}")
    print(f"  {args.rate:.0f}/s arrivals for {args.seconds:.0f} s ({len(arrival_lat)} Tasks): Task created -> Job "
          f"created p50 {statistics.median(arrival_lat) * 1000:.0f} ms  p99 {pct(arrival_lat, 0.99) * 1000:.0f} ms  "
          f"max {max(arrival_lat) * 1000:.0f} ms")
    per_task = {name: 1000 * seconds / (n + len(arrival_lat)) for name, seconds in cpu.items()}
    print("  CPU ms per task (burst + arrivals; the raw creates included): "
          + "  ".join(f"{name} {ms:.1f}" for name, ms in sorted(per_task.items(), key=lambda item: -item[1]))
          + (f"   operator RSS {memory:.0f} MB" if pid else ""))
    for line in reviews:
        print(f"  {line}")
    print(f"  duplicate Jobs: {duplicates}   pods refused by quota: {refusals}")
    result(tasks=n, admission_per_s=round(rate), raw_jobs_per_s=round(figures["raw_rate"]), ratio=round(ratio, 2),
           creates_per_s=round(n / figures["submitted"]), arrival_rate=args.rate,
           task_to_job_p50_ms=round(statistics.median(arrival_lat) * 1000),
           task_to_job_p99_ms=round(pct(arrival_lat, 0.99) * 1000), duplicates=duplicates)


if __name__ == "__main__":
    main()
