"""In-loop controllers of the sim (kube-controller-manager, scheduler and kubelet stand-ins)."""

from __future__ import annotations

from typing import Any

from kubetask.sim.controllers.base import Reconciler
from kubetask.sim.controllers.gc import GarbageCollector, NamespaceController, QuotaController
from kubetask.sim.controllers.job import JobController, TTLController
from kubetask.sim.controllers.kubelet import Kubelet
from kubetask.sim.controllers.scheduler import Scheduler
from kubetask.sim.store import Event

__all__ = ["Controllers"]


class Controllers:
    """All controllers, fed synchronously from the store's commit stream."""

    def __init__(self, sim: Any) -> None:
        self.scheduler = Scheduler(sim)
        self.kubelet = Kubelet(sim)
        self.jobs = JobController(sim)
        self.ttl = TTLController(sim)
        self.gc = GarbageCollector(sim)
        self.namespaces = NamespaceController(sim)
        self.quota = QuotaController(sim)
        self.all: list[Any] = [self.scheduler, self.kubelet, self.jobs, self.ttl, self.gc, self.namespaces,
                               self.quota]
        sim.store.subscribe(self.on_event)

    def on_event(self, ev: Event) -> None:
        for c in self.all:
            c.on_event(ev)

    def start(self) -> None:
        for c in self.all:
            c.start()

    async def stop(self) -> None:
        for c in self.all:
            r: Reconciler = c
            await r.stop()
