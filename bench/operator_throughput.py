"""Operator throughput: Task-created → Job-created latency and admitted tasks/s (issue 3).

Starts the local real control plane (kube-apiserver, etcd, controller-manager,
scheduler, kwok nodes with plenty of capacity so nothing queues for long) and the
real operator, submits N Tasks with near-instant pods, and measures:

* Task-created → Job-created latency (p50 / p99),
* admitted tasks per second (Jobs created by the operator per second of the run),
* the raw rate of creating the same Jobs directly with the shared client against
  the same server in the same run, and the ratio between the two.

``--rate R`` submits at a fixed rate instead of all at once, to measure latency when
submissions do not exceed the admission rate.

Usage: ``python bench/operator_throughput.py --tasks 1000 [--rate 40] [--webhook] [--operator-process]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from kubetask.cluster import LocalCluster, NodeShape
from kubetask.core.jobs import build_workload
from kubetask.kube.client import JOBS, TASKS, KubeClient
from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

ROOT = Path(__file__).resolve().parents[1]


def task_body(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "busybox", "resources": {"cpu": "10m", "memory": "16Mi"}, "user": "bench",
                     "podAnnotations": {"kubetask.dev/sim-duration-seconds": "0.01"}}}


async def submit(client: KubeClient, names: list[str], namespace: str, concurrency: int,
                 create_lat: list[float], rate: float = 0.0) -> dict[str, float]:
    """Create the Tasks; with ``rate`` > 0, start at most ``rate`` creates per second (an open-loop load)."""
    sem = asyncio.Semaphore(concurrency)
    created: dict[str, float] = {}
    t_start = time.monotonic()

    async def one(i: int, name: str) -> None:
        if rate > 0:
            await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))
        async with sem:
            t0 = time.monotonic()
            await client.create(TASKS, task_body(name, namespace), namespace)
            created[name] = time.monotonic()
            create_lat.append(created[name] - t0)

    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
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


async def measure(kubeconfig: str, n: int, concurrency: int, rate: float) -> dict[str, Any]:
    client = await KubeClient.connect(kubeconfig)
    try:
        seen: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_jobs(client, "default", n, seen, done))
        await asyncio.sleep(0.3)
        names = [f"bench-{i:05d}" for i in range(n)]
        start = time.monotonic()
        create_lat: list[float] = []
        created = await submit(client, names, "default", concurrency, create_lat, rate)
        submitted = time.monotonic() - start
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.monotonic() - start
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        latencies = [seen[f"{name}-1"] - created[name] for name in names if f"{name}-1" in seen]
        raw = await raw_job_rate(client, n, "raw", concurrency)
        return {"latencies": latencies, "elapsed": elapsed, "submitted": submitted, "raw_rate": raw,
                "create_lat": create_lat}
    finally:
        await client.close()


def start_cluster(workdir: Path) -> LocalCluster:
    """The real control plane with roomy CPU nodes (nothing waits for capacity) and the CRDs."""
    nodes = [NodeShape("cpu", count=4, cpu="1000", memory="4000Gi", pods="5000")]
    cluster = LocalCluster(workdir, nodes, progress=lambda message: print(message, flush=True)).start()
    for path in sorted(glob.glob(str(ROOT / "crds" / "*.yaml"))):
        cluster.apply_file(path)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "raw"}})
    return cluster


def cluster_stats(cluster: LocalCluster) -> dict[str, Any]:
    """Duplicate Jobs (two for one execution of one task) and pods refused by quota, read from the apiserver."""
    jobs = cluster.list("batch/v1", "Job", "default")
    per_execution = Counter((j["metadata"].get("labels") or {}).get("kubetask.io/task", "") + "/" +
                            (j["metadata"].get("labels") or {}).get("kubetask.io/execution", "") for j in jobs)
    events = cluster.list("v1", "Event", "default")
    refused = [e for e in events if e.get("reason") == "FailedCreate" and "exceeded quota" in e.get("message", "")]
    return {"duplicates": [key for key, count in per_execution.items() if count > 1], "quota_rejections": refused,
            "jobs": len(jobs)}


def _operator_child(conn: Any, kubeconfig: str, webhook: bool) -> None:
    """Child process: run the operator until told to stop."""
    handle = run_operator_in_thread(operator_settings(webhook), GpuSettings(), KubeSettings(kubeconfig=kubeconfig))
    try:
        conn.send(("ready", os.getpid()))
        conn.recv()
    finally:
        handle.stop()
        conn.send("stopped")


class OperatorProcess:
    """The operator in a child process, as deployed (``--operator-process``)."""

    def __init__(self, kubeconfig: str, webhook: bool) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_operator_child, args=(child, kubeconfig, webhook), daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            raise RuntimeError("operator did not start")
        _, self.pid = self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
            self.conn.poll(60)
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()


def operator_settings(webhook: bool) -> OperatorSettings:
    return OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0, leader_election=False,
                            webhook_enabled=webhook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="number of Tasks (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent creates by the submitter")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="submit at most this many Tasks per second (default 0: as fast as possible)")
    parser.add_argument("--webhook", action="store_true", help="run with the admission webhook enabled")
    parser.add_argument("--operator-process", action="store_true",
                        help="run the operator in its own process too (default: a thread of this process)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait before submitting (to attach a profiler)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = str(Path(tmp) / "kubeconfig")
        cluster = start_cluster(Path(tmp) / "cluster")
        cluster.write_kubeconfig(kubeconfig)
        print(f"kube-apiserver: pid {cluster.processes['kube-apiserver'].pid}   benchmark: pid {os.getpid()}",
              flush=True)
        try:
            handle: OperatorHandle | OperatorProcess
            if args.operator_process:
                handle = OperatorProcess(kubeconfig, args.webhook)
                print(f"operator: pid {handle.pid}", flush=True)
            else:
                handle = run_operator_in_thread(operator_settings(args.webhook), GpuSettings(),
                                                KubeSettings(kubeconfig=kubeconfig))
            try:
                if args.pause:
                    time.sleep(args.pause)
                result = asyncio.run(measure(kubeconfig, args.tasks, args.concurrency, args.rate))
            finally:
                handle.stop()
            stats = cluster_stats(cluster)
        finally:
            cluster.stop()

    lat = result["latencies"]
    rate = len(lat) / result["elapsed"]
    print(f"kubetask operator throughput — {datetime.now().isoformat(timespec='seconds')}")
    print(f"tasks: {args.tasks}   webhook: {'on' if args.webhook else 'off'}   submit concurrency: "
          f"{args.concurrency}   rate: {args.rate or 'unlimited'}   "
          f"operator: {'own process' if args.operator_process else 'thread of the benchmark process'}")
    cl = result["create_lat"]
    print(f"submitted {args.tasks} Tasks in {result['submitted']:.2f} s "
          f"({args.tasks / result['submitted']:.0f} creates/s)   Task create latency: p50 "
          f"{statistics.median(cl) * 1000:.0f} ms   p99 {pct(cl, 0.99) * 1000:.0f} ms")
    print(f"Task-created -> Job-created latency: p50 {statistics.median(lat) * 1000:.0f} ms   "
          f"p99 {pct(lat, 0.99) * 1000:.0f} ms   max {max(lat) * 1000:.0f} ms")
    print(f"admitted: {len(lat)} Jobs in {result['elapsed']:.2f} s = {rate:.0f} tasks/s")
    print(f"raw Job creation with the same client, same server: {result['raw_rate']:.0f} Jobs/s")
    print(f"ratio operator / raw: {rate / result['raw_rate']:.2f}")
    print(f"Jobs: {stats['jobs']}   duplicate Jobs: {len(stats['duplicates'])}   "
          f"pods refused by quota: {len(stats['quota_rejections'])}")


if __name__ == "__main__":
    main()
