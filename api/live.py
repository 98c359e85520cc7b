"""The live fan-out: task changes from the API's watch cache to SSE and WebSocket clients.

One :class:`LiveHub` per API process.  It hears every change the task cache applies (no request ever asks
the apiserver), turns it into a :class:`LiveEvent` (the task in the public REST shape, encoded once and
shared by every client), keeps the last ``window`` events in a ring for ``Last-Event-ID`` resumption, and
offers each event to the subscribers that may see it (indexed by namespace, so a change costs the clients
of that namespace, not all of them).

* Event ids are ``<epoch>-<seq>``: ``epoch`` is random per process, so an id from another process (a
  restart, another replica) or one older than the ring is recognised and answered with an explicit gap
  instead of a silent skip.
* Each subscriber has a bounded buffer.  A client that falls behind by more than ``buffer`` events is
  flagged ``overflowed``; its stream sends a closing message naming the last event it got, so it can
  resume with ``Last-Event-ID`` while that is still inside the window.

:func:`follow_task_cache` is the one place that knows how the cache reports changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetask.api.metrics import LiveCollector
from kubetask.api.state import AppState
from kubetask.core.objects import Key
from kubetask.core.phases import TERMINAL_PHASES, task_phase
from kubetask.core.rest.present import task_public
from kubetask.core.rest.query import encode_json
from kubetask.kube.cache import Informer, object_key
from kubetask.settings import LiveSettings

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
ChangeListener = Callable[[str, dict[str, Any]], None]

CREATED, UPDATED, FINISHED, DELETED = "created", "updated", "finished", "deleted"
HUB_KEY = "live"
"""Where the app keeps its hub: ``state.extra[HUB_KEY]``."""


def follow_task_cache(tasks: Informer, listener: ChangeListener) -> None:
    """Call ``listener(event_type, obj)`` after every change the API's task cache applies."""
    tasks.add_listener(listener)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One change of one task, as every client gets it."""

    seq: int
    id: str
    kind: str
    namespace: str
    name: str
    owner: str | None
    obj: Obj
    previous: Obj | None
    data: str
    """``encode_json(task_public(obj))``: the payload, encoded once."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who may see what: admins everything, a tenant the tasks of its namespace it owns."""

    namespace: str
    tenant: str
    admin: bool = False

    def sees(self, event: LiveEvent) -> bool:
        if self.admin:
            return True
        return event.namespace == self.namespace and event.owner in (None, "", self.tenant)


Match = Callable[[LiveEvent], bool]


class Subscriber:
    """One client's queue: bounded; overflowing it ends the client's stream (it may resume)."""

    __slots__ = ("_queue", "_replay", "_wake", "buffer", "closed", "last_id", "match", "overflowed", "viewer")

    def __init__(self, viewer: Viewer, match: Match, buffer: int) -> None:
        self.viewer = viewer
        self.match = match
        self.buffer = buffer
        self._queue: deque[LiveEvent] = deque()
        self._replay = 0  # events at the head of the queue replayed from the ring (they cost no buffer)
        self._wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.last_id: str | None = None

    def offer(self, event: LiveEvent) -> None:
        if self.overflowed or self.closed or not self.viewer.sees(event) or not self.match(event):
            return
        if len(self._queue) - self._replay >= self.buffer:
            self.overflowed = True
            self._queue.clear()
            self._replay = 0
        else:
            self._queue.append(event)
        self._wake.set()

    def preload(self, events: Iterable[LiveEvent]) -> None:
        """Queue the ring's events a resuming client missed: they are the ring's (no copies), so they do not
        count against the buffer, which bounds what piles up live."""
        for event in events:
            if self.viewer.sees(event) and self.match(event):
                self._queue.append(event)
                self._replay += 1
        if self._queue:
            self._wake.set()

    async def next(self) -> LiveEvent | None:
        """The next event; ``None`` once the buffer overflowed (the stream must close)."""
        while True:
            if self.overflowed:
                return None
            if self._queue:
                event = self._queue.popleft()
                if self._replay:
                    self._replay -= 1
                self.last_id = event.id
                return event
            self._wake.clear()
            await self._wake.wait()

    def pending(self) -> int:
        return len(self._queue)


@dataclass(frozen=True)
class Resume:
    """What a ``Last-Event-ID`` asked for and what the hub could give."""

    complete: bool
    detail: str | None = None


class LiveHub:
    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.ring: deque[LiveEvent] = deque(maxlen=max(1, self.settings.window_events))
        self._known: dict[Key, tuple[int, bool]] = {}
        # The latest version of each task, so an event also carries the one before it (a filter that the
        # change makes the task leave still shows it); these are the cache's own objects, never copies.
        self._last_obj: dict[Key, Obj] = {}
        self._by_namespace: dict[str, set[Subscriber]] = {}
        self._admins: set[Subscriber] = set()
        self._streams: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.published = 0
        self.overflows = 0

    # ------------------------------------------------------------------ feeding

    def prime(self, objs: Iterable[Obj]) -> None:
        """Learn the tasks that exist before the hub follows the cache (no events for them)."""
        for obj in objs:
            public = encode_json(task_public(obj))
            key = object_key(obj)
            self._known[key] = (hash(public), task_phase(obj) in TERMINAL_PHASES)
            self._last_obj[key] = obj

    def on_change(self, event_type: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        known = self._known.get(key)
        if event_type == "DELETED":
            if self._known.pop(key, None) is None:
                return
            self._publish(DELETED, key, obj, encode_json(task_public(obj)))
            return
        data = encode_json(task_public(obj))
        digest = hash(data)
        terminal = task_phase(obj) in TERMINAL_PHASES
        if known is not None and known[0] == digest:
            self._last_obj[key] = obj
            return  # nothing a client can see changed (e.g. an annotation Kopf keeps)
        self._known[key] = (digest, terminal)
        if known is None:
            kind = CREATED
        elif terminal and not known[1]:
            kind = FINISHED
        else:
            kind = UPDATED
        self._publish(kind, key, obj, data)

    def _publish(self, kind: str, key: Key, obj: Obj, data: str) -> None:
        self.seq += 1
        spec = obj.get("spec") or {}
        owner = spec.get("user") or ((obj.get("metadata") or {}).get("labels") or {}).get("kubetask.io/user")
        last = self._last_obj.get(key)
        event = LiveEvent(self.seq, f"{self.epoch}-{self.seq}", kind, key[0], key[1], owner, obj, last, data)
        if kind == DELETED:
            self._last_obj.pop(key, None)
        else:
            self._last_obj[key] = obj
        self.ring.append(event)
        self.published += 1
        for sub in tuple(self._by_namespace.get(key[0], ())):
            self._offer(sub, event)
        for sub in tuple(self._admins):
            self._offer(sub, event)

    def _offer(self, sub: Subscriber, event: LiveEvent) -> None:
        was = sub.overflowed
        sub.offer(event)
        if sub.overflowed and not was:
            self.overflows += 1

    # ------------------------------------------------------------------ clients

    @property
    def last_id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def parse_id(self, value: str | None) -> int | None:
        """The sequence number of one of this process's event ids (None: not ours or malformed)."""
        if not value:
            return None
        epoch, _, seq = value.strip().rpartition("-")
        if epoch != self.epoch or not seq.isdigit():
            return None
        return int(seq)

    def subscribe(self, viewer: Viewer, match: Match, last_event_id: str | None = None) -> tuple[Subscriber, Resume]:
        """A subscriber that gets every later event (and, given a ``Last-Event-ID``, the ones it missed)."""
        sub = Subscriber(viewer, match, max(1, self.settings.client_buffer))
        resume = Resume(True)
        if last_event_id:
            seq = self.parse_id(last_event_id)
            oldest = self.ring[0].seq if self.ring else self.seq + 1
            if seq is None:
                resume = Resume(False, f"event id {last_event_id!r} is not from this server process (it restarted, "
                                       f"or this is another replica); changes since then are unknown here")
            elif seq > self.seq:
                resume = Resume(False, f"event id {last_event_id!r} is newer than this server's last event")
            elif seq < oldest - 1:
                resume = Resume(False, f"event {last_event_id!r} is older than the {len(self.ring)} changes this "
                                       f"server keeps; changes between it and {self.ring[0].id} are no longer "
                                       f"held")
            else:
                sub.preload(e for e in self.ring if e.seq > seq)
        if viewer.admin:
            self._admins.add(sub)
        else:
            self._by_namespace.setdefault(viewer.namespace, set()).add(sub)
        return sub, resume

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        self._admins.discard(sub)
        bucket = self._by_namespace.get(sub.viewer.namespace)
        if bucket is not None:
            bucket.discard(sub)
            if not bucket:
                del self._by_namespace[sub.viewer.namespace]

    def open_stream(self, tenant: str) -> bool:
        """Count one more open stream for ``tenant``; False if that is over the limit."""
        count = self._streams.get(tenant, 0)
        if count >= self.settings.max_streams_per_tenant:
            return False
        self._streams[tenant] = count + 1
        return True

    def close_stream(self, tenant: str) -> None:
        count = self._streams.get(tenant, 0) - 1
        if count > 0:
            self._streams[tenant] = count
        else:
            self._streams.pop(tenant, None)

    @property
    def subscribers(self) -> int:
        return len(self._admins) + sum(len(s) for s in self._by_namespace.values())


async def start_hub(hub: LiveHub, tasks: Informer) -> None:
    """Once the task cache is synced: learn its tasks, then follow its changes (in one step, so none is lost)."""
    await tasks.wait_synced()
    hub.prime(tasks.list())
    follow_task_cache(tasks, hub.on_change)
    hub.ready.set()


class LiveService:
    """The app's hub (``state.extra["live"]``) and the task that attaches it to the task cache."""

    def __init__(self, state: AppState, settings: LiveSettings | None = None) -> None:
        self.hub = LiveHub(settings)
        state.extra[HUB_KEY] = self.hub
        hub = self.hub
        state.metrics.track_live(LiveCollector(lambda: hub.subscribers, lambda: hub.published,
                                               lambda: hub.overflows))
        self._task = asyncio.create_task(start_hub(self.hub, state.tasks), name="kubetask-live-hub")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
