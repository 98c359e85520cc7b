"""Cost at scale on the real control plane: RSS and CPU-seconds per 1,000 tasks of the operator and the API.

Runs the operator (with its webhook) and the API in their own processes, then takes the cluster
to 1,000, 5,000 and 10,000 Tasks (``--levels``): each step creates the missing Tasks through the
apiserver and waits until every one Succeeded (near-instant pods on roomy kwok nodes; every Task
keeps its Job and pod, as kubetask keeps them for history).  After each step it prints both
processes' RSS and the CPU-seconds they spent on the step per 1,000 tasks of it, and the API's
idle RSS growth per 1,000 tasks present.

Then it restarts the operator with every Task, Job and pod present and reports how long until it
is ready and until it is idle (below 5 % of a core over 2 s), with its CPU-seconds for that.

Usage: ``python bench/cost_at_scale.py [--levels 1000,5000,10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    ApiReplicas,
    Meter,
    OperatorProcess,
    cpu_seconds,
    ensure_tenant,
    load,
    result,
    rss_mb,
    sockets,
    start_cluster,
    wait_idle,
)

from kubetask.cluster import NodeShape
from kubetask.kube.client import TASKS, ApiError, KubeClient

TENANT = "cost"
NAMESPACE = f"kubetask-{TENANT}"
LIMITS = {"maxPending": 1_000_000, "maxRunning": 5000}


def task_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"image": "busybox", "resources": {"cpu": "10m", "memory": "16Mi"},
                     "podAnnotations": {"kubetask.dev/sim-duration-seconds": "0.01"}}}


async def step(kubeconfig: str, first: int, last: int, concurrency: int) -> float:
    """Create Tasks ``first..last-1`` and wait until all Tasks so far Succeeded; returns the seconds taken."""
    client = await KubeClient.connect(kubeconfig)
    started = time.monotonic()
    try:
        listed = await client.list(TASKS, NAMESPACE)
        succeeded = {t["metadata"]["name"] for t in listed["items"]
                     if (t.get("status") or {}).get("phase") == "Succeeded"}
        version = listed["metadata"].get("resourceVersion")
        del listed
        done = asyncio.Event()

        async def follow() -> None:
            nonlocal version
            while True:
                try:
                    async for event in client.watch(TASKS, NAMESPACE, resource_version=version, timeout_seconds=60):
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if (obj.get("status") or {}).get("phase") == "Succeeded":
                            succeeded.add(str(obj["metadata"]["name"]))
                            if len(succeeded) >= last:
                                done.set()
                except (TimeoutError, ApiError, OSError) as error:
                    print(f"task watch: {error}; watching again", flush=True)

        watcher = asyncio.create_task(follow())
        sem = asyncio.Semaphore(concurrency)

        async def create(i: int) -> None:
            async with sem:
                try:
                    await client.create(TASKS, task_body(f"t{i:06d}"), NAMESPACE)
                except ApiError as error:
                    if not error.already_exists:
                        raise

        await asyncio.gather(*(create(i) for i in range(first, last)))
        if len(succeeded) < last:
            await asyncio.wait_for(done.wait(), timeout=3600)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        return time.monotonic() - started
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--levels", default="1000,5000,10000", help="task counts to measure at")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--heap-report", action="store_true",
                        help="after each step and the restart, print the operator's pymalloc figures and its RSS "
                             "before and after a forced collection and trim (a diagnosis of the RSS)")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="kubetask-cost-") as tmp:
        nodes = [NodeShape("cpu", count=4, cpu="1000", memory="4000Gi", pods="5000")]
        cluster = start_cluster(Path(tmp) / "cluster", nodes, templates=True)
        kubeconfig = str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig"))
        operator = api = None
        try:
            operator = OperatorProcess(kubeconfig).wait_ready()
            ensure_tenant(cluster, TENANT, LIMITS)
            api = ApiReplicas(kubeconfig, 1, logs=Path(tmp) / "api").wait_healthy()
            api_pid = api.pids[0]
            done = 0
            for level in levels:
                meter = Meter({"operator": operator.pid, "api": api_pid})
                seconds = asyncio.run(step(kubeconfig, done, level, args.concurrency))
                used = meter.used()
                time.sleep(3)  # let both settle before reading their memory
                print(f"  sockets: operator {sockets(operator.pid)}, API {sockets(api_pid)}", flush=True)
                row = {"tasks": level, "seconds": seconds, "operator_rss": rss_mb(operator.pid),
                       "api_rss": rss_mb(api_pid), "operator_cpu_per_1k": 1000 * used["operator"] / (level - done),
                       "api_cpu_per_1k": 1000 * used["api"] / (level - done)}
                rows.append(row)
                print(f"  {level:6d} tasks (+{level - done} in {seconds:.0f} s): operator RSS "
                      f"{row['operator_rss']:.0f} MB, {row['operator_cpu_per_1k']:.1f} CPU-s per 1k; "
                      f"API RSS {row['api_rss']:.0f} MB, "
                      f"{row['api_cpu_per_1k']:.1f} CPU-s per 1k; load {load()}", flush=True)
                if args.heap_report:
                    print(f"  operator heap after {level} tasks: {operator.heap_report()}", flush=True)
                done = level
            operator.stop()
            restarted_at = time.monotonic()
            operator = OperatorProcess(kubeconfig)
            before = cpu_seconds(operator.pid)
            operator.wait_ready()
            ready = time.monotonic() - restarted_at
            idle = ready + wait_idle(operator.pid)
            restart_cpu = cpu_seconds(operator.pid) - before
            restart_rss = rss_mb(operator.pid)
            if args.heap_report:
                print(f"  operator heap after the restart: {operator.heap_report()}", flush=True)
        finally:
            if operator is not None:
                operator.stop()
            if api is not None:
                api.stop()
            cluster.stop()

    print(f"kubetask cost at scale - real control plane, operator and API in their own processes; load {load()}")
    print(f"  {'tasks':>6}  {'operator RSS':>12}  {'op CPU-s/1k':>11}  {'API RSS':>8}  {'API CPU-s/1k':>12}")
    for row in rows:
        print(f"  {row['tasks']:6.0f}  {row['operator_rss']:9.0f} MB  {row['operator_cpu_per_1k']:11.1f}  "
              f"{row['api_rss']:5.0f} MB  {row['api_cpu_per_1k']:12.1f}")
    print(f"  operator restarted with {levels[-1]} Tasks (and their Jobs and pods): ready in {ready:.1f} s, idle "
          f"{idle:.1f} s after start, {restart_cpu:.1f} CPU-s, RSS {restart_rss:.0f} MB")
    last = rows[-1]
    result(tasks=levels[-1], operator_rss_mb=round(last["operator_rss"]), api_rss_mb=round(last["api_rss"]),
           operator_cpu_s_per_1k=round(last["operator_cpu_per_1k"], 1),
           api_cpu_s_per_1k=round(last["api_cpu_per_1k"], 1), restart_ready_s=round(ready, 1),
           restart_idle_s=round(idle, 1), restart_cpu_s=round(restart_cpu, 1))


if __name__ == "__main__":
    main()
