"""Object storage: one global resourceVersion counter, per-resource indexes, watch fan-out.

Everything here is synchronous and only ever touched from the sim's event loop, so each
method is atomic with respect to every other request (there is no ``await`` inside).
Stored objects are treated as immutable: writers always store a fresh dict, so an object
handed to a reader or queued on a watch never changes underneath it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # (group, plural)

#: Events retained per resource for watches resuming from an old resourceVersion.
HISTORY = 20_000


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Event:
    """One committed change; its JSON line is serialised once and shared by all watchers."""

    __slots__ = ("_lines", "key", "name", "namespace", "obj", "old", "rv", "type")

    def __init__(self, type_: str, key: Key, obj: Obj, old: Obj | None, rv: int) -> None:
        self.type = type_
        self.key = key
        self.obj = obj
        self.old = old
        self.rv = rv
        meta = obj["metadata"]
        self.namespace: str = meta.get("namespace", "")
        self.name: str = meta["name"]
        self._lines: dict[str, bytes] = {}

    def line(self, type_: str | None = None) -> bytes:
        t = type_ or self.type
        cached = self._lines.get(t)
        if cached is None:
            cached = b'{"type":"' + t.encode() + b'","object":' + dumps(self.obj) + b"}\n"
            self._lines[t] = cached
        return cached


Matcher = Callable[[Obj], bool]


class Watcher:
    """A registered watch: its scope, its filter and the queue its HTTP stream drains."""

    def __init__(self, key: Key, namespace: str | None, match: Matcher | None) -> None:
        self.key = key
        self.namespace = namespace
        self.match = match
        self.queue: asyncio.Queue[tuple[str, Event] | None] = asyncio.Queue()

    def classify(self, ev: Event) -> str | None:
        """The event type this watcher sees (selector transitions become ADDED/DELETED)."""
        if self.namespace is not None and ev.namespace != self.namespace:
            return None
        if self.match is None:
            return ev.type
        new_ok = self.match(ev.obj)
        if ev.type != "MODIFIED":
            return ev.type if new_ok else None
        old_ok = ev.old is not None and self.match(ev.old)
        if new_ok and old_ok:
            return "MODIFIED"
        if new_ok:
            return "ADDED"
        if old_ok:
            return "DELETED"
        return None


class TooOld(Exception):
    """The requested resourceVersion is older than the retained history."""


class Store:
    """All objects of the sim, indexed by resource and namespace."""

    def __init__(self) -> None:
        self.rv = 1
        self._data: dict[Key, dict[str, dict[str, Obj]]] = {}
        self._history: dict[Key, deque[Event]] = {}
        self._evicted: dict[Key, int] = {}
        self._watchers: dict[Key, set[Watcher]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self.by_owner: dict[str, set[tuple[Key, str, str]]] = {}
        self.by_uid: dict[str, tuple[Key, str, str]] = {}
        self.counts: dict[Key, int] = {}

    # ---------------------------------------------------------------- reads
    def get(self, key: Key, ns: str, name: str) -> Obj | None:
        return self._data.get(key, {}).get(ns, {}).get(name)

    def iter(self, key: Key, ns: str | None = None) -> Iterator[Obj]:
        by_ns = self._data.get(key, {})
        if ns is not None:
            yield from by_ns.get(ns, {}).values()
            return
        for objs in by_ns.values():
            yield from objs.values()

    def list_sorted(self, key: Key, ns: str | None = None) -> list[Obj]:
        """Objects in etcd key order (namespace, then name), as a real list returns them."""
        by_ns = self._data.get(key, {})
        nss = [ns] if ns is not None else sorted(by_ns)
        out: list[Obj] = []
        for n in nss:
            objs = by_ns.get(n, {})
            out.extend(objs[k] for k in sorted(objs))
        return out

    def namespaces_with(self, key: Key) -> Iterable[str]:
        return [ns for ns, objs in self._data.get(key, {}).items() if objs]

    def count(self, key: Key, ns: str | None = None) -> int:
        if ns is None:
            return self.counts.get(key, 0)
        return len(self._data.get(key, {}).get(ns, {}))

    def dependents(self, uid: str) -> list[tuple[Key, Obj]]:
        out = []
        for key, ns, name in list(self.by_owner.get(uid, ())):
            o = self.get(key, ns, name)
            if o is not None:
                out.append((key, o))
        return out

    # ---------------------------------------------------------------- writes
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, key: Key, obj: Obj) -> Event:
        """Store ``obj`` (a fresh dict) under a new resourceVersion; returns the event."""
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        bucket = self._data.setdefault(key, {}).setdefault(ns, {})
        old = bucket.get(name)
        bucket[name] = obj
        if old is None:
            self.counts[key] = self.counts.get(key, 0) + 1
        else:
            self._unindex(key, old)
        self._index(key, obj)
        ev = Event("ADDED" if old is None else "MODIFIED", key, obj, old, rv)
        self._emit(ev)
        return ev

    def remove(self, key: Key, ns: str, name: str) -> Event | None:
        bucket = self._data.get(key, {}).get(ns, {})
        old = bucket.pop(name, None)
        if old is None:
            return None
        self.counts[key] -= 1
        self._unindex(key, old)
        rv = self.next_rv()
        # The DELETED event carries the object at the deletion's resourceVersion, as real.
        final = dict(old)
        final["metadata"] = dict(old["metadata"], resourceVersion=str(rv))
        ev = Event("DELETED", key, final, old, rv)
        self._emit(ev)
        return ev

    def get_by_uid(self, uid: str) -> Obj | None:
        loc = self.by_uid.get(uid)
        return self.get(*loc) if loc is not None else None

    def _index(self, key: Key, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("uid"):
            self.by_uid[meta["uid"]] = (key, meta.get("namespace", ""), meta["name"])
        for ref in meta.get("ownerReferences") or ():
            uid = ref.get("uid")
            if uid:
                self.by_owner.setdefault(uid, set()).add((key, meta.get("namespace", ""), meta["name"]))

    def _unindex(self, key: Key, obj: Obj) -> None:
        meta = obj["metadata"]
        self.by_uid.pop(meta.get("uid", ""), None)
        for ref in meta.get("ownerReferences") or ():
            s = self.by_owner.get(ref.get("uid", ""))
            if s is not None:
                s.discard((key, meta.get("namespace", ""), meta["name"]))
                if not s:
                    del self.by_owner[ref["uid"]]

    def _emit(self, ev: Event) -> None:
        hist = self._history.setdefault(ev.key, deque())
        hist.append(ev)
        if len(hist) > HISTORY:
            self._evicted[ev.key] = hist.popleft().rv
        for w in self._watchers.get(ev.key, ()):
            t = w.classify(ev)
            if t is not None:
                w.queue.put_nowait((t, ev))
        for cb in self._listeners:
            cb(ev)

    # ---------------------------------------------------------------- watch
    def subscribe(self, cb: Callable[[Event], None]) -> None:
        """Controllers: ``cb`` runs synchronously for every committed event."""
        self._listeners.append(cb)

    def watch(self, key: Key, namespace: str | None, match: Matcher | None, since: int | None) -> Watcher:
        """Register a watcher; with ``since`` replay retained history after that RV first.

        Replay and registration happen in one synchronous step, so no event is lost or
        duplicated between them.
        """
        w = Watcher(key, namespace, match)
        if since is not None:
            if since < self._evicted.get(key, 0):
                raise TooOld(since)
            for ev in self._history.get(key, ()):
                if ev.rv > since:
                    t = w.classify(ev)
                    if t is not None:
                        w.queue.put_nowait((t, ev))
        self._watchers.setdefault(key, set()).add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        self._watchers.get(w.key, set()).discard(w)

    def close_watchers(self, key: Key | None = None) -> None:
        for k, ws in self._watchers.items():
            if key is None or k == key:
                for w in ws:
                    w.queue.put_nowait(None)
