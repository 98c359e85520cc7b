"""A watch-backed informer cache: list once, then watch from the list's resourceVersion.

* relists on ``410 Gone`` (or an ``ERROR`` event carrying 410), reconnects with
  exponential backoff on any other failure;
* keeps indexes (by namespace, by ``kubetask.io/user`` label, by name, and any
  extra index functions given);
* exposes a ``synced`` flag (and :meth:`Informer.wait_synced`);
* read-your-writes: :meth:`Informer.upsert` inserts an object returned by the
  apiserver right after a write, unless the cache already holds a newer one;
* optionally derives a value from each object version as it is stored (``derive=``,
  e.g. precomputed query keys), read back with :meth:`Informer.derived_by_index`
  and :meth:`Informer.derived_list`, so request handlers need not recompute it.

Reads never touch the apiserver, so request handlers can serve lists and gets
from memory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from kubetask.kube.client import ApiError, KubeClient, Obj, Resource

log = logging.getLogger(__name__)

Key = tuple[str, str]
IndexFunc = Callable[[Obj], Iterable[str]]
Listener = Callable[[str, Obj], None]
Derive = Callable[[Obj], Any]

LABEL_USER = "kubetask.io/user"


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def is_newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` is newer than ``current`` (numeric resourceVersions; else trust the candidate)."""
    if current is None:
        return True
    a, b = _rv(candidate), _rv(current)
    if a is None or b is None:
        return True
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def _by_namespace(obj: Obj) -> Iterable[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def _by_user(obj: Obj) -> Iterable[str]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    values = {str(v) for v in ((meta.get("labels") or {}).get(LABEL_USER), spec.get("user")) if v}
    return values


def _by_name(obj: Obj) -> Iterable[str]:
    return [str((obj.get("metadata") or {}).get("name") or "")]


DEFAULT_INDEXERS: dict[str, IndexFunc] = {"namespace": _by_namespace, "user": _by_user, "name": _by_name}


class Informer:
    """One resource (optionally one namespace / label selector), cached in memory."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        watch_timeout_seconds: int = 240,
        max_backoff: float = 30.0,
        derive: Derive | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.indexers: dict[str, IndexFunc] = {**DEFAULT_INDEXERS, **(indexers or {})}
        self.watch_timeout_seconds = watch_timeout_seconds
        self.max_backoff = max_backoff
        self._items: dict[Key, Obj] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {name: {} for name in self.indexers}
        self._index_values: dict[Key, dict[str, list[str]]] = {}
        self.derive = derive
        self._derived: dict[Key, Any] = {}
        self._bucket_stamps: dict[tuple[str, str], int] = {}
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resource_version: str | None = None
        self._listeners: list[Listener] = []
        self.last_error: str | None = None
        self.relists = 0
        self.generation = 0

    # ------------------------------------------------------------------ reads

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, within: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), within)
        except TimeoutError:
            return False
        return True

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get((namespace or "", name))

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self._indexes[index].get(value, ())
        return [self._items[k] for k in keys if k in self._items]

    def index_stamp(self, index: str, value: str) -> int:
        """Changes whenever an object of the bucket ``index=value`` is added, replaced or removed (``-1`` while
        the bucket is empty): a key for caching what is computed from that bucket."""
        return self._bucket_stamps.get((index, value), -1)

    def derived_by_index(self, index: str, value: str) -> builtins.list[Any]:
        """``derive(obj)`` of :meth:`by_index`'s objects (same order), as stored with each object version."""
        keys = self._indexes[index].get(value, ())
        return [self._derived_for(k) for k in keys if k in self._items]

    def derived_list(self) -> builtins.list[Any]:
        """``derive(obj)`` of :meth:`list`'s objects (same order)."""
        return [self._derived_for(k) for k in self._items]

    def _derived_for(self, key: Key) -> Any:
        found = self._derived.get(key, _MISSING)
        if found is _MISSING:
            if self.derive is None:
                raise LookupError(f"informer {self.resource.plural} has no derive function")
            found = self.derive(self._items[key])  # failed when stored: raise to the reader now
        return found

    def __len__(self) -> int:
        return len(self._items)

    def add_listener(self, listener: Listener) -> None:
        """``listener(event_type, obj)`` after every change (ADDED/MODIFIED/DELETED)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ writes into the cache

    def upsert(self, obj: Obj) -> bool:
        """Insert/replace ``obj`` unless the cache holds a newer version; returns whether it changed."""
        key = object_key(obj)
        current = self._items.get(key)
        if not is_newer(obj, current):
            return False
        self._store(key, obj)
        self._notify("MODIFIED" if current is not None else "ADDED", obj)
        return True

    def remove(self, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key)
            del self._items[key]
            self._derived.pop(key, None)
            self._notify("DELETED", old)

    def _store(self, key: Key, obj: Obj) -> None:
        self._unindex(key)
        self._items[key] = obj
        values: dict[str, list[str]] = {}
        stamp = self.generation + 1
        for name, func in self.indexers.items():
            vals = list(func(obj))
            values[name] = vals
            for v in vals:
                self._indexes[name].setdefault(v, set()).add(key)
                self._bucket_stamps[(name, v)] = stamp
        self._index_values[key] = values
        if self.derive is not None:
            try:
                self._derived[key] = self.derive(obj)
            except Exception:  # a bad object must not break the informer; readers derive (and fail) on demand
                self._derived.pop(key, None)
                log.exception("deriving from %s %s/%s failed", self.resource.kind, *key)
        self.generation += 1

    def _unindex(self, key: Key) -> None:
        values = self._index_values.pop(key, None)
        if not values:
            return
        self.generation += 1
        for name, vals in values.items():
            index = self._indexes[name]
            for v in vals:
                bucket = index.get(v)
                if bucket is not None:
                    bucket.discard(key)
                    if bucket:
                        self._bucket_stamps[(name, v)] = self.generation
                    else:
                        del index[v]
                        self._bucket_stamps.pop((name, v), None)

    def _notify(self, event_type: str, obj: Obj) -> None:
        for listener in self._listeners:
            try:
                listener(event_type, obj)
            except Exception:  # a listener must never break the informer
                log.exception("informer listener failed")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _relist(self) -> None:
        result = await self.client.list(self.resource, self.namespace, label_selector=self.label_selector)
        items = result.get("items") or []
        kind = self.resource.kind
        fresh: dict[Key, Obj] = {}
        for item in items:
            item.setdefault("apiVersion", self.resource.api_version)
            item.setdefault("kind", kind)
            fresh[object_key(item)] = item
        for key in list(self._items):
            if key not in fresh:
                self.remove(self._items[key])
        for key, item in fresh.items():
            current = self._items.get(key)
            if current is None or is_newer(item, current):
                self._store(key, item)
                self._notify("MODIFIED" if current is not None else "ADDED", item)
        self._resource_version = str((result.get("metadata") or {}).get("resourceVersion") or "") or None
        self.relists += 1
        self._synced.set()

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.client.watch(
                    self.resource, self.namespace, resource_version=self._resource_version,
                    timeout_seconds=self.watch_timeout_seconds, label_selector=self.label_selector,
                ):
                    self._apply(event)
                backoff = 0.2
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except _Gone:
                need_list = True
                continue
            except ApiError as error:
                self.last_error = str(error)
                if error.gone:
                    need_list = True
                    continue
                log.warning("watch %s failed: %s", self.resource.plural, error)
                await asyncio.sleep(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, self.max_backoff)
                need_list = need_list or error.status in (400, 404, 500)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.info("watch %s disconnected: %s", self.resource.plural, self.last_error)
                await asyncio.sleep(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("watch %s crashed; relisting", self.resource.plural)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                need_list = True

    def _apply(self, event: Mapping[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone()
            raise ApiError(int(code or 500), obj)
        rv = _rv(obj)
        if rv:
            self._resource_version = rv
        if event_type == "BOOKMARK":
            return
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        if event_type == "DELETED":
            self.remove(obj)
            return
        key = object_key(obj)
        current = self._items.get(key)
        if is_newer(obj, current):
            self._store(key, obj)
            self._notify(str(event_type), obj)


_MISSING: Any = object()


class _Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


class InformerSet:
    """Several informers started, synced and stopped together."""

    def __init__(self) -> None:
        self.informers: dict[str, Informer] = {}

    def add(self, name: str, informer: Informer) -> Informer:
        self.informers[name] = informer
        return informer

    def __getitem__(self, name: str) -> Informer:
        return self.informers[name]

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()

    async def wait_synced(self, within: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_synced(within) for i in self.informers.values()))
        return all(results)

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self.informers.values())

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers.values()))
