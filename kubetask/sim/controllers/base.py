"""A tiny work-queue reconciler, event-driven off the store."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetask.sim.api import Sim

log = logging.getLogger("kubetask.sim")
Obj = dict[str, Any]


class Reconciler(abc.ABC):
    """Deduplicating queue of keys; ``reconcile`` runs one key at a time."""

    name = "reconciler"

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self.pending: set[Hashable] = set()
        self.timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.task: asyncio.Task[None] | None = None

    def enqueue(self, key: Hashable, delay: float = 0.0) -> None:
        if delay > 0:
            loop = asyncio.get_running_loop()
            old = self.timers.get(key)
            when = loop.time() + delay
            if old is not None and old.when() <= when:
                return
            if old is not None:
                old.cancel()
            self.timers[key] = loop.call_at(when, self._fire, key)
            return
        if key not in self.pending:
            self.pending.add(key)
            self.queue.put_nowait(key)

    def _fire(self, key: Hashable) -> None:
        self.timers.pop(key, None)
        self.enqueue(key)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        for t in self.timers.values():
            t.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            key = await self.queue.get()
            self.pending.discard(key)
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: reconcile of %r failed", self.name, key)
                self.enqueue(key, 0.5)

    @abc.abstractmethod
    async def reconcile(self, key: Any) -> None:
        """Bring the object behind ``key`` to its desired state (level-triggered, idempotent)."""
