"""The admission policy's cost per pass: :func:`kubetask.core.queue.decide` over a full Kueue-shaped queue.

A pass that has to decide the queue again (an entry came or went, a quota or node freed room) looks at every
waiting task, so at 30 tenants its cost is what bounds how quickly a freed quota is handed over. This times one
decision over the queue ``bench/scale_baseline.py`` builds once every task is submitted: per tenant 350 small
(1 GPU), 100 medium (5 GPU) and 50 large (20 GPU) tasks, each tenant at 18 of its 20 GPUs, so its next large task
holds its quota and everything behind it waits (the common case in that run).  Pure Python, no cluster.

Prints milliseconds per decision and microseconds per waiting task for each tenant count, ending with ``RESULT``.

Usage: ``python bench/queue_pass.py [--tenants 1,2,10,30] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime, timedelta

from _support import result
from scale_baseline import GPU, GPUS_PER_NODE, QUOTA, SHAPE

from kubetask.core.queue import QueuedTask, Quota, RunningTask, decide
from kubetask.core.scheduling import MILLI, Demand, NodeInfo

SMALL_POD = {"cpu": 10, "memory": 16 * 2**20 * MILLI}


def queue_of(tenants: int, now: datetime) -> tuple[list[QueuedTask], list[RunningTask], list[NodeInfo], list[Quota]]:
    queued: list[QueuedTask] = []
    running: list[RunningTask] = []
    quotas: list[Quota] = []
    for t in range(tenants):
        tenant, namespace = f"t{t:02d}", f"kubetask-t{t:02d}"
        quotas.append(Quota(namespace, "kubetask-quota", {f"requests.{GPU}": QUOTA * MILLI},
                            {f"requests.{GPU}": (QUOTA - 2) * MILLI}))
        running += [RunningTask(namespace, f"running-{i}", tenant, "default", Demand(gpus=MILLI, **SMALL_POD),
                                node_name="gpu-1", in_quota=True) for i in range(QUOTA - 2)]
        order = 0
        for _, count, gpus, _, _, priority in SHAPE:
            for i in range(count):
                order += 1
                queued.append(QueuedTask(namespace, f"task-{gpus}-{i}", tenant, "default", priority,
                                         now - timedelta(seconds=600 - order * 0.1),
                                         Demand(gpus=gpus * MILLI, **SMALL_POD)))
    nodes = [NodeInfo(f"gpu-{n}", allocatable={"gpus": GPUS_PER_NODE * MILLI, "cpu": 1000 * MILLI,
                                                "memory": 4000 * 2**30 * MILLI}, is_gpu_node=True, gpu_product="A100")
             for n in range(1, max(1, math.ceil(QUOTA * tenants / GPUS_PER_NODE)) + 1)]
    return queued, running, nodes, quotas


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", default="1,2,10,30", help="tenant counts (default 1,2,10,30)")
    parser.add_argument("--repeat", type=int, default=5, help="decisions timed per count (the median is shown)")
    args = parser.parse_args()
    now = datetime(2026, 12, 4, tzinfo=UTC)
    figures: dict[str, float] = {}
    print("kubetask admission policy - one decision over a full Kueue-shaped queue (500 waiting tasks per tenant)")
    for tenants in (int(n) for n in str(args.tenants).split(",") if n.strip()):
        queued, running, nodes, quotas = queue_of(tenants, now)
        decision = decide(queued, running, nodes, quotas, {}, now=now, gpu_resource=GPU)  # warm
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            decision = decide(queued, running, nodes, quotas, {}, now=now, gpu_resource=GPU)
            times.append(time.perf_counter() - started)
        seconds = sorted(times)[len(times) // 2]
        waiting = len(decision.waiting)
        per_task = seconds / len(queued) * 1e6
        print(f"  {tenants:>3} tenants: {len(queued):>6} queued, {waiting:>6} waiting, "
              f"{len(decision.admit)} admitted   {seconds * 1000:7.1f} ms per decision   "
              f"{per_task:5.1f} us per queued task")
        figures[f"decide_ms_{tenants}"] = round(seconds * 1000, 1)
        figures[f"us_per_task_{tenants}"] = round(per_task, 1)
    result(**figures)


if __name__ == "__main__":
    main()
