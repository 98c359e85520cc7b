"""The Kueue-baseline shape on the real control plane: wall-clock time against the floor (issue 11).

``N`` tenants (30 by default), each a Tenant with a GPU quota of 20; per tenant

* 350 small tasks: 1 GPU, 200 ms run, one every 100 ms, priority 2;
* 100 medium tasks: 5 GPU, 500 ms run, one every 500 ms, priority 5;
* 50 large tasks: 20 GPU, 1 s run, one every 1.2 s, priority 10 (Kueue's 50, 100 and 200);

15,000 tasks for 30 tenants, on kwok nodes of 24 GPUs (``ceil(20 N / 24)`` of them: 25 for 30 tenants),
submitted through the apiserver (and the operator's admission webhook) by an open-loop generator.

Prints the wall-clock time from the first submit to the last Succeeded, the floor (a tenant's
GPU-seconds of work at full quota: 66 s), ``ratio = wall / floor``, the final phases, the pods the
apiserver's ResourceQuota admission refused (must be 0), how long after its pod ended a task was
seen Succeeded (the quota and place it held are free from then on), and the operator's CPU.

``--runtime pod`` runs the tasks as bare Pods (the Task's ``spec.runtime: pod``) instead of Jobs: the same
queue without the job controller's hop (its pod create, status writes and pod finalizer), which
shows how much of the wall-clock time above the floor is the Job machinery's.

Usage: ``python bench/scale_baseline.py [--tenants 30] [--runtime job|pod] [--profile DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _support import (
    Meter,
    OperatorProcess,
    apiserver_profiled,
    apiserver_requests,
    duplicate_jobs,
    event_reasons,
    load,
    pct,
    profiled,
    quota_refusals,
    result,
    rss_mb,
    start_cluster,
)

from kubetask.cluster import NodeShape
from kubetask.kube.client import JOBS, PODS, RESOURCE_QUOTAS, TASKS, TENANTS, ApiError, KubeClient

QUOTA = 20
GPU = "nvidia.com/gpu"
GPUS_PER_NODE = 24
SHAPE = (  # (kind, count, gpus, run seconds, interval seconds, priority)
    ("small", 350, 1, 0.2, 0.1, 2),
    ("medium", 100, 5, 0.5, 0.5, 5),
    ("large", 50, 20, 1.0, 1.2, 10),
)
"""Kueue's baseline (``test/performance/scheduler/configs/baseline/generator.yaml``): its priorities 50, 100
and 200 become 2, 5 and 10 on kubetask's 0-10 scale (the order is what counts: large first).  Kueue's
ClusterQueues also borrow within cohorts and preempt lower priorities; kubetask's tenants do neither."""
TERMINAL = ("Succeeded", "Failed", "Cancelled")


@dataclass
class Planned:
    namespace: str
    name: str
    gpus: int
    seconds: float
    at: float  # seconds after the start
    priority: int
    runtime: str = "job"

    def body(self) -> dict[str, Any]:
        return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"image": "busybox", "priority": self.priority, "runtime": self.runtime,
                         "resources": {"gpus": self.gpus, "cpu": "10m", "memory": "16Mi"},
                         "podAnnotations": {"kubetask.dev/sim-duration-seconds": str(self.seconds)}}}


def plan(tenants: list[str], runtime: str = "job") -> list[Planned]:
    out = []
    for tenant in tenants:
        for kind, count, gpus, seconds, interval, priority in SHAPE:
            out += [Planned(f"kubetask-{tenant}", f"{kind}-{i:03d}", gpus, seconds, i * interval, priority, runtime)
                    for i in range(count)]
    return sorted(out, key=lambda p: p.at)


BURST_GAP = 0.05
"""Jobs the operator creates less than this apart count as one admission burst."""


def admission_bursts(job_added: dict[Any, float], pod_running: dict[Any, float]) -> list[tuple[int, list[float]]]:
    """Each admission burst as ``(its size in Jobs, Job created -> pod Running of those whose pod ran)``: how
    much a handover's start-up latency grows with the number of tasks admitted together."""
    order = sorted(job_added.items(), key=lambda item: item[1])
    gaps = [i for i in range(1, len(order)) if order[i][1] - order[i - 1][1] >= BURST_GAP]
    bounds = list(zip([0, *gaps], [*gaps, len(order)], strict=True)) if order else []
    return [(end - begin, [pod_running[k] - t for k, t in order[begin:end] if k in pod_running])
            for begin, end in bounds]


def floor_seconds(planned: list[Planned]) -> float:
    work: Counter[str] = Counter()
    for item in planned:
        work[item.namespace] += item.gpus * item.seconds
    return max(work.values()) / QUOTA


class Tracker:
    """Watches Tasks and task pods: when each task finished, and when its pod ended."""

    def __init__(self, client: KubeClient, expected: int) -> None:
        self.client = client
        self.expected = expected
        self.finished: dict[tuple[str, str], tuple[str, float]] = {}
        self.pod_ended: dict[tuple[str, str], float] = {}
        self.pod_added: dict[tuple[str, str], float] = {}
        self.pod_running: dict[tuple[str, str], float] = {}
        self.pod_bound: dict[tuple[str, str], float] = {}
        self.job_added: dict[tuple[str, str], float] = {}
        self.quota_used: dict[str, list[tuple[float, int]]] = {}
        """Per namespace, each GPU usage its ResourceQuota reported, with when it was seen."""
        self.done = asyncio.Event()

    async def follow(self, resource: Any, on_object: Any, **selector: Any) -> None:
        """List, then watch ``resource`` until every task finished, handing each object to ``on_object``."""
        version = (await self.client.list(resource, **selector))["metadata"].get("resourceVersion")
        while not self.done.is_set():
            try:
                async for event in self.client.watch(resource, resource_version=version, timeout_seconds=60,
                                                     **selector):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    on_object(obj, obj.get("metadata") or {}, time.monotonic())
                    if self.done.is_set():
                        return
            except (TimeoutError, ApiError, OSError) as error:
                print(f"{resource.plural} watch: {error}; watching again", flush=True)

    def on_task(self, obj: dict[str, Any], meta: dict[str, Any], now: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if phase in TERMINAL and key not in self.finished:
            self.finished[key] = (phase, now)
            if len(self.finished) >= self.expected:
                self.done.set()

    def on_pod(self, obj: dict[str, Any], meta: dict[str, Any], now: float) -> None:
        key = (str(meta.get("namespace")), str((meta.get("annotations") or {}).get("kubetask.io/task-name")))
        phase = (obj.get("status") or {}).get("phase")
        self.pod_added.setdefault(key, now)
        if (obj.get("spec") or {}).get("nodeName"):
            self.pod_bound.setdefault(key, now)
        if phase == "Running":
            self.pod_running.setdefault(key, now)
        if phase in ("Succeeded", "Failed"):
            self.pod_ended.setdefault(key, now)

    def on_job(self, obj: dict[str, Any], meta: dict[str, Any], now: float) -> None:
        task = (meta.get("annotations") or {}).get("kubetask.io/task-name")
        self.job_added.setdefault((str(meta.get("namespace")), str(task)), now)

    def on_quota(self, obj: dict[str, Any], meta: dict[str, Any], now: float) -> None:
        used = ((obj.get("status") or {}).get("used") or {}).get(f"requests.{GPU}")
        if used is not None:
            self.quota_used.setdefault(str(meta.get("namespace")), []).append((now, int(used)))

    def watchers(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.follow(TASKS, self.on_task)),
                asyncio.create_task(self.follow(PODS, self.on_pod, label_selector="kubetask.io/task")),
                asyncio.create_task(self.follow(JOBS, self.on_job)),
                asyncio.create_task(self.follow(RESOURCE_QUOTAS, self.on_quota))]


def quota_time(planned: list[Planned], tracker: Tracker) -> dict[str, float]:
    """Where the tenants' GPU-seconds went: ``starting`` (Job created -> pod Running, quota held before any work),
    ``running`` (pod Running -> ended, as kwok reports it) and the planned ``work`` inside that."""
    out = {"starting": 0.0, "running": 0.0, "work": 0.0}
    for item in planned:
        key = (item.namespace, item.name)
        job, running, ended = tracker.job_added.get(key), tracker.pod_running.get(key), tracker.pod_ended.get(key)
        if job is None or running is None or ended is None:
            continue
        out["starting"] += item.gpus * max(0.0, running - job)
        out["running"] += item.gpus * max(0.0, ended - running)
        out["work"] += item.gpus * item.seconds
    return out


def whole_quota_handovers(planned: list[Planned], tracker: Tracker) -> dict[str, list[float]]:
    """The steps of each hand-over to a task that needs its tenant's whole quota (the large ones: nothing else
    runs beside them, so every second of the gap is quota left idle): the last pod before it ended -> its quota
    reported empty -> its Job created -> its pod Running."""
    ended: dict[str, list[float]] = {}
    for (namespace, _), at in tracker.pod_ended.items():
        ended.setdefault(namespace, []).append(at)
    for times in ended.values():
        times.sort()
    steps: dict[str, list[float]] = {"pod ended -> quota empty": [], "quota empty -> Job": [],
                                     "Job -> pod Running": [], "pod ended -> next pod Running": []}
    for item in planned:
        key = (item.namespace, item.name)
        job, running = tracker.job_added.get(key), tracker.pod_running.get(key)
        if item.gpus < QUOTA or job is None or running is None:
            continue
        emptied = [at for at, used in tracker.quota_used.get(item.namespace, []) if used == 0 and at <= job]
        before = ended.get(item.namespace, [])
        last_end = before[bisect.bisect_right(before, emptied[-1]) - 1] if emptied and before and \
            before[0] <= emptied[-1] else None
        if not emptied or last_end is None:
            continue
        steps["pod ended -> quota empty"].append(emptied[-1] - last_end)
        steps["quota empty -> Job"].append(job - emptied[-1])
        steps["Job -> pod Running"].append(running - job)
        steps["pod ended -> next pod Running"].append(running - last_end)
    return steps


async def ensure_tenants(client: KubeClient, tenants: list[str]) -> None:
    for tenant in tenants:
        body = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": tenant},
                "spec": {"limits": {"gpuQuota": QUOTA, "maxPending": 1000, "requestsPerMinute": 1_000_000}}}
        try:
            await client.create(TENANTS, body)
        except ApiError as error:
            if not error.already_exists:
                raise


async def run(kubeconfig: Path, tenants: list[str], concurrency: int, runtime: str = "job") -> dict[str, Any]:
    client = await KubeClient.connect(str(kubeconfig))
    try:
        await ensure_tenants(client, tenants)
        for tenant in tenants:  # the operator made the namespace, its quota, and the controller its ServiceAccount
            deadline = time.monotonic() + 120
            while True:
                quota = await _get(client, f"/api/v1/namespaces/kubetask-{tenant}/resourcequotas/kubetask-quota")
                account = await _get(client, f"/api/v1/namespaces/kubetask-{tenant}/serviceaccounts/default")
                if quota and account:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tenant {tenant} was not reconciled")
                await asyncio.sleep(0.2)
        planned = plan(tenants, runtime)
        tracker = Tracker(client, len(planned))
        watchers = tracker.watchers()
        await asyncio.sleep(0.5)
        sem = asyncio.Semaphore(concurrency)
        lag: list[float] = []
        refused: list[str] = []
        start = time.monotonic()

        created: dict[tuple[str, str], float] = {}

        async def submit(item: Planned) -> None:
            await asyncio.sleep(max(0.0, start + item.at - time.monotonic()))
            async with sem:
                lag.append(time.monotonic() - start - item.at)
                try:
                    await client.create(TASKS, item.body(), item.namespace)
                    created[(item.namespace, item.name)] = time.monotonic()
                except ApiError as error:
                    refused.append(f"{item.namespace}/{item.name}: {error}")

        await asyncio.gather(*(submit(item) for item in planned))
        submitted = time.monotonic() - start
        expected = len(planned) - len(refused)
        tracker.expected = expected
        if len(tracker.finished) >= expected:
            tracker.done.set()
        await asyncio.wait_for(tracker.done.wait(), timeout=3600)
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        last = max(t for _, t in tracker.finished.values())
        if runtime == "pod":  # the operator creates the pod itself: the workload appears with it
            tracker.job_added = dict(tracker.pod_added)
        release = [tracker.finished[k][1] - t for k, t in tracker.pod_ended.items() if k in tracker.finished]
        startup = [tracker.pod_running[k] - t for k, t in tracker.job_added.items() if k in tracker.pod_running]
        to_job = [t - created[k] for k, t in tracker.job_added.items() if k in created]
        steps = {name: [later[k] - t for k, t in earlier.items() if k in later] for name, earlier, later in (
            ("Job -> pod", tracker.job_added, tracker.pod_added),
            ("pod -> bound", tracker.pod_added, tracker.pod_bound),
            ("bound -> Running", tracker.pod_bound, tracker.pod_running))}
        bursts = admission_bursts(tracker.job_added, tracker.pod_running)
        return {"startup": startup, "to_job": to_job, "steps": steps, "planned": planned, "wall": last - start,
                "bursts": bursts, "handovers": whole_quota_handovers(planned, tracker),
                "quota_time": quota_time(planned, tracker),
                "submitted": submitted, "lag": lag, "refused": refused,
                "phases": Counter(p for p, _ in tracker.finished.values()), "release": release}
    finally:
        await client.close()


async def _get(client: KubeClient, path: str) -> Any:
    try:
        return await client.request("GET", path)
    except ApiError as error:
        if error.not_found:
            return None
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, default=30, help="tenants (default 30: 15,000 tasks)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent creates of the generator")
    parser.add_argument("--runtime", choices=("job", "pod"), default="job",
                        help="run the tasks as Jobs (default) or as bare Pods")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="py-spy the operator, and take the kube-apiserver's pprof, into DIR")
    args = parser.parse_args()
    tenants = [f"t{i:02d}" for i in range(args.tenants)]
    nodes = [NodeShape("gpu", count=max(1, math.ceil(QUOTA * args.tenants / GPUS_PER_NODE)), gpus=GPUS_PER_NODE,
                       gpu_product="A100", cpu="1000", memory="4000Gi", pods="1000")]
    profile = Path(args.profile).resolve() / "operator-scale.txt" if args.profile else None
    with tempfile.TemporaryDirectory(prefix="kubetask-scale-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", nodes, profiling=profile is not None)
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        operator = None
        try:
            operator = OperatorProcess(kubeconfig).wait_ready()
            print(f"operator ready in {operator.ready_after:.1f} s (pid {operator.pid}); load {load()}", flush=True)
            pids = {"operator": operator.pid, "bench": os.getpid(),
                    **{name: proc.pid for name, proc in cluster.processes.items()}}
            meter = Meter(pids)
            apiserver_profile = profile.with_name("apiserver-scale.pprof") if profile else None
            with profiled(operator.pid, profile), apiserver_profiled(cluster, apiserver_profile, seconds=60):
                figures = asyncio.run(run(kubeconfig, tenants, args.concurrency, args.runtime))
            cpu = meter.used()
            operator_rss = rss_mb(operator.pid)
            namespaces = [f"kubetask-{t}" for t in tenants]
            requests = apiserver_requests(cluster)
            events = event_reasons(cluster, [f"kubetask-{t}" for t in tenants])
            refusals = quota_refusals(cluster, namespaces)
            duplicates = duplicate_jobs(cluster, namespaces)
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()

    planned = figures["planned"]
    floor = floor_seconds(planned)
    wall = figures["wall"]
    phases = figures["phases"]
    release = figures["release"] or [float("nan")]
    gpu_work = sum(p.gpus * p.seconds for p in planned)
    print(f"kubetask scale baseline (Kueue shape) - {args.tenants} tenants x 500 tasks = {len(planned)} tasks as "
          f"{'bare Pods' if args.runtime == 'pod' else 'Jobs'}, "
          f"{nodes[0].count} nodes x {GPUS_PER_NODE} GPUs, quota {QUOTA} GPUs per tenant; load {load()}")
    print(f"  submitted in {figures['submitted']:.1f} s (schedule {max(p.at for p in planned):.1f} s; generator lag "
          f"p50 {statistics.median(figures['lag']) * 1000:.0f} ms, max {max(figures['lag']):.2f} s); "
          f"creates refused: {len(figures['refused'])}")
    print(f"  wall (first submit -> last terminal) {wall:.1f} s   floor {floor:.1f} s   ratio {wall / floor:.2f}")
    capacity = wall * QUOTA * args.tenants
    spent = figures["quota_time"]
    print(f"  GPU utilisation {gpu_work / capacity:.0%} of the tenants' quotas; of their GPU-seconds "
          f"{spent['starting'] / capacity:.0%} went to starting pods (Job or pod created -> Running), "
          f"{spent['running'] / capacity:.0%} to running ones, "
          f"{max(0.0, 1 - (spent['starting'] + spent['running']) / capacity):.0%} to neither")
    refused_at_apiserver = requests["POST pods (403)"] + requests["POST jobs (403)"]
    print(f"  final phases: {dict(phases)}   pods refused by quota: {refusals}   duplicate Jobs: {duplicates}")
    print(f"  creates the apiserver refused (403: its quota admission, on its cached copy of the quota): "
          f"{refused_at_apiserver}; each retried within 150 ms unless counted as refused above")
    print(f"  pod ended -> task Succeeded seen: p50 {pct(release, 0.5) * 1000:.0f} ms  "
          f"p99 {pct(release, 0.99) * 1000:.0f} ms")
    startup, to_job = figures["startup"] or [float("nan")], figures["to_job"] or [float("nan")]
    print(f"  Task created -> Job created: p50 {pct(to_job, 0.5):.2f} s  p99 {pct(to_job, 0.99):.2f} s (queueing "
          f"included)   Job created -> pod Running: p50 {pct(startup, 0.5) * 1000:.0f} ms  "
          f"p99 {pct(startup, 0.99) * 1000:.0f} ms")
    print("  of which: " + "   ".join(
        f"{name} p50 {pct(values, 0.5) * 1000:.0f} ms p99 {pct(values, 0.99) * 1000:.0f} ms"
        for name, values in figures["steps"].items() if values))
    handovers = figures["handovers"]
    if any(handovers.values()):
        print(f"  hand-overs to a whole-quota task (n={len(handovers['quota empty -> Job'])}): " + "   ".join(
            f"{name} p50 {pct(values, 0.5) * 1000:.0f} ms p99 {pct(values, 0.99) * 1000:.0f} ms"
            for name, values in handovers.items() if values))
    bursts = figures["bursts"]
    if bursts:
        sizes = [size for size, _ in bursts]

        def latencies(low: int, high: float) -> list[float]:
            return [v for size, values in bursts if low <= size < high for v in values]

        print(f"  admission bursts (Jobs created < {BURST_GAP * 1000:.0f} ms apart): {sum(sizes)} Jobs in "
              f"{len(bursts)} bursts, size p50 {pct(sizes, 0.5):.0f} p90 {pct(sizes, 0.9):.0f} max {max(sizes)}; "
              "Job created -> pod Running p50 "
              + "  ".join(f"{label} {pct(values, 0.5) * 1000:.0f} ms (n={len(values)})" for label, values in (
                  ("alone", latencies(1, 2)), ("in 2-9", latencies(2, 10)), ("in 10+", latencies(10, float("inf"))))
                  if values))
    print("  CPU seconds: " + "  ".join(f"{name} {seconds:.1f}" for name, seconds in
                                         sorted(cpu.items(), key=lambda item: -item[1]))
          + f"   (machine: {2 * wall:.0f} core-seconds)   operator RSS {operator_rss:.0f} MB")
    print("  apiserver writes (and pod and quota reads) by verb and resource: "
          + ", ".join(f"{what} {n}" for what, n in requests.most_common(24)))
    print("  events: " + ", ".join(f"{what} {n}" for what, n in events.most_common(12)))
    for line in figures["refused"][:5]:
        print(f"  refused: {line}")
    result(tenants=args.tenants, runtime=args.runtime, tasks=len(planned), wall_s=round(wall, 1),
           floor_s=round(floor, 1),
           ratio=round(wall / floor, 2), succeeded=phases.get("Succeeded", 0),
           not_succeeded=len(planned) - phases.get("Succeeded", 0), quota_refusals=refusals,
           refused_at_apiserver=refused_at_apiserver, duplicates=duplicates,
           release_p50_ms=round(pct(release, 0.5) * 1000), release_p99_ms=round(pct(release, 0.99) * 1000),
           operator_cpu_s=round(cpu["operator"], 1), operator_rss_mb=round(operator_rss))


if __name__ == "__main__":
    main()
