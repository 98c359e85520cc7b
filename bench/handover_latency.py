"""Quota hand-over on the real control plane: from one task's pod ending to the next task's pod running.

The Kueue-baseline shape is bound by hand-overs, not by CPU: a tenant's 20-GPU tasks take its
whole quota, so every second between one pod ending and the next one running is a second of
quota left idle.  This benchmark queues ``--tasks`` (12) tasks that each need the tenant's whole
quota (20 GPUs, ``--seconds`` 1 s run) and times each step of every hand-over:

1. the pod ended (kwok set it Succeeded);
2. the ResourceQuota no longer counts it (the controller-manager's quota controller);
3. the next Task's Job exists (the operator admitted it);
4. the Job controller created its pod (the quota admission let it in);
5. the scheduler bound the pod;
6. kwok reported it Running.

Also the Task side: pod ended -> the ended Task's status Succeeded.  Prints each step's p50/max
and the whole gap, ending with ``RESULT``.

Usage: ``python bench/handover_latency.py [--tasks 12] [--seconds 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import OperatorProcess, ensure_tenant, load, pct, result, start_cluster

from kubetask.cluster import NodeShape
from kubetask.kube.client import JOBS, PODS, RESOURCE_QUOTAS, TASKS, ApiError, KubeClient

QUOTA = 20
TENANT = "handover"
NAMESPACE = f"kubetask-{TENANT}"
GPU = "requests.nvidia.com/gpu"


class Timeline:
    """When each object reached each state, first seen by this process's watches (monotonic seconds)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.quota_free: list[float] = []
        """Moments the quota's used GPUs dropped below the whole quota."""
        self.quota_used: int | None = None

    def mark(self, what: str, task: str) -> None:
        self.seen.setdefault((what, task), time.monotonic())

    def at(self, what: str, task: str) -> float | None:
        return self.seen.get((what, task))


async def follow(client: KubeClient, resource: Any, timeline: Timeline, on_object: Any, stop: asyncio.Event) -> None:
    version = (await client.list(resource, NAMESPACE))["metadata"].get("resourceVersion")
    while not stop.is_set():
        try:
            async for event in client.watch(resource, NAMESPACE, resource_version=version, timeout_seconds=30):
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                on_object(obj)
        except (TimeoutError, ApiError, OSError) as error:
            print(f"watch {resource}: {error}; again", flush=True)


def task_of(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get("kubetask.io/task-name"))


async def run(kubeconfig: str, count: int, seconds: float) -> Timeline:
    client = await KubeClient.connect(kubeconfig)
    timeline = Timeline()
    stop = asyncio.Event()

    def on_task(obj: dict[str, Any]) -> None:
        if (obj.get("status") or {}).get("phase") == "Succeeded":
            timeline.mark("task-succeeded", str(obj["metadata"]["name"]))

    def on_job(obj: dict[str, Any]) -> None:
        timeline.mark("job", task_of(obj))

    def on_pod(obj: dict[str, Any]) -> None:
        task = task_of(obj)
        timeline.mark("pod", task)
        if (obj.get("spec") or {}).get("nodeName"):
            timeline.mark("bound", task)
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Running":
            timeline.mark("running", task)
        if phase in ("Succeeded", "Failed"):
            timeline.mark("ended", task)

    def on_quota(obj: dict[str, Any]) -> None:
        used = int(((obj.get("status") or {}).get("used") or {}).get(GPU, "0"))
        if used < QUOTA and (timeline.quota_used is None or timeline.quota_used >= QUOTA):
            timeline.quota_free.append(time.monotonic())
        timeline.quota_used = used

    watchers = [asyncio.create_task(follow(client, resource, timeline, handler, stop))
                for resource, handler in ((TASKS, on_task), (JOBS, on_job), (PODS, on_pod),
                                          (RESOURCE_QUOTAS, on_quota))]
    try:
        await asyncio.sleep(0.5)
        for i in range(count):
            await client.create(TASKS, {
                "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "metadata": {"name": f"whole-{i:02d}", "namespace": NAMESPACE},
                # priority: run in this order (below 0, ties: the first created first)
                "spec": {"image": "busybox", "priority": max(0, 10 - i),
                         "resources": {"gpus": QUOTA, "cpu": "10m", "memory": "16Mi"},
                         "podAnnotations": {"kubetask.dev/sim-duration-seconds": str(seconds)}}}, NAMESPACE)
        deadline = time.monotonic() + 60 + count * (seconds + 10)
        while timeline.at("task-succeeded", f"whole-{count - 1:02d}") is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the tasks did not finish")
            await asyncio.sleep(0.2)
        return timeline
    finally:
        stop.set()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await client.close()


STEPS = (("ended", "quota freed"), ("quota freed", "job"), ("job", "pod"), ("pod", "bound"), ("bound", "running"))


def hand_overs(timeline: Timeline, count: int) -> list[dict[str, float]]:
    out = []
    for i in range(1, count):
        before, after = f"whole-{i - 1:02d}", f"whole-{i:02d}"
        ended = timeline.at("ended", before)
        if ended is None:
            continue
        freed = next((t for t in timeline.quota_free if t >= ended), None)
        times = {"ended": ended, "quota freed": freed, **{what: timeline.at(what, after)
                                                          for what in ("job", "pod", "bound", "running")}}
        succeeded = timeline.at("task-succeeded", before)
        if any(value is None for value in times.values()) or succeeded is None:
            continue
        row = {f"{a} -> {b}": float(times[b]) - float(times[a]) for a, b in STEPS}  # type: ignore[arg-type]
        row["ended -> running"] = float(times["running"]) - ended  # type: ignore[arg-type]
        row["ended -> Task Succeeded"] = succeeded - ended
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=1.0, help="each task's run time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetask-handover-") as tmp:
        nodes = [NodeShape("gpu", count=1, gpus=24, gpu_product="A100", cpu="1000", memory="4000Gi", pods="1000")]
        cluster = start_cluster(Path(tmp) / "cluster", nodes)
        kubeconfig = str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig"))
        operator = None
        try:
            operator = OperatorProcess(kubeconfig).wait_ready()
            ensure_tenant(cluster, TENANT, {"gpuQuota": QUOTA, "maxPending": 1000})
            timeline = asyncio.run(run(kubeconfig, args.tasks, args.seconds))
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()
    rows = hand_overs(timeline, args.tasks)
    print(f"kubetask quota hand-over - {args.tasks} tasks of the whole quota ({QUOTA} GPUs), {args.seconds:g} s each, "
          f"{len(rows)} hand-overs measured; load {load()}")
    for step in rows[0] if rows else ():
        values = [row[step] for row in rows]
        print(f"  {step:<28} p50 {pct(values, 0.5) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms")
    gap = [row["ended -> running"] for row in rows] or [float("nan")]
    freed = [row["ended -> quota freed"] for row in rows] or [float("nan")]
    result(hand_overs=len(rows), gap_p50_ms=round(pct(gap, 0.5) * 1000), gap_max_ms=round(max(gap) * 1000),
           quota_freed_p50_ms=round(pct(freed, 0.5) * 1000))


if __name__ == "__main__":
    main()
