"""The watched-object store (informer) of both the operator and the API: list once, then watch.

One :class:`Informer` per resource (optionally one namespace / label selector):

* lists, then watches from the list's resourceVersion; relists on ``410 Gone`` (or an
  ``ERROR`` event carrying 410) and reconnects with exponential backoff on any other failure;
  the line reader copes with objects of any size (a Task may carry a 1 MiB script);
* stores what its ``transform`` keeps of each object (:mod:`kubetask.kube.lean`), so a
  cache of 10,000 objects holds only the fields its readers use;
* never regresses: an object older (by resourceVersion) than the stored one is ignored, so
  read-your-writes (:meth:`Informer.upsert` of an object the apiserver just returned) and
  the watch can race safely;
* a change that leaves the stored object as it was (apart from its resourceVersion; e.g. a
  node heartbeat, once the transform dropped the heartbeat times) is stored silently;
* keeps indexes (by namespace, ``kubetask.io/user``, name, and any extra index functions),
  with per-bucket stamps for caching what is computed from a bucket;
* optionally derives a value from each object version as it is stored (``derive=``, e.g.
  precomputed query keys), read back with :meth:`Informer.derived_by_index` and
  :meth:`Informer.derived_list`;
* tells subscribers about every change with the old and the new object
  (:meth:`Informer.subscribe`), synchronously and in watch order, so incremental state
  (counters, reverse indexes, dirty sets) can be kept from the events alone;
* exposes ``synced`` (and :meth:`Informer.wait_synced`).

Reads never touch the apiserver. Stored objects are shared with every reader: never mutate them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from kubetask.core.objects import LABEL_USER, Key, Obj
from kubetask.kube.client import ApiError, KubeClient, Resource
from kubetask.kube.lean import Transform
from kubetask.kube.wire import Shape

log = logging.getLogger(__name__)

IndexFunc = Callable[[Obj], Iterable[str]]
Listener = Callable[[str, Obj], None]
"""``listener(event_type, obj)``: the object after the change (before it, for DELETED)."""
Handler = Callable[[str, "Obj | None", "Obj | None"], None]
"""``handler(event_type, old, new)``: ADDED (None, new), MODIFIED (old, new), DELETED (old, None)."""
Derive = Callable[[Obj], Any]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
LIST_PAGE = 100
"""Objects per page of a relist: only one page of whole objects is decoded at a time (the rest is lean)."""


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def is_newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` is at least as new as ``current`` (numeric resourceVersions; else trust it).

    resourceVersions are etcd revisions, global to the cluster, so they order two incarnations
    of one name too (a re-created object is newer than the deleted one).
    """
    if current is None:
        return True
    a, b = _rv(candidate), _rv(current)
    if a is None or b is None:
        return True
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def _same_but_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two versions of an object differ in nothing but ``metadata.resourceVersion``."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        if key == "metadata":
            other = b[key]
            if value.keys() != other.keys():
                return False
            if any(v != other[k] for k, v in value.items() if k != "resourceVersion"):
                return False
        elif value != b[key]:
            return False
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
        namespaces: Sequence[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        default_indexers: bool = True,
        watch_timeout_seconds: int = 240,
        max_backoff: float = 30.0,
        derive: Derive | None = None,
        transform: Transform | None = None,
        shape: Shape | None = None,
        stamps: bool = True,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.namespaces: tuple[str | None, ...] = tuple(namespaces) if namespaces else (namespace,)
        """One list+watch stream per namespace (``None``: all namespaces, or a cluster-scoped resource)."""
        self.label_selector = label_selector
        self.field_selector = field_selector
        """E.g. ``metadata.name=<name>``: RBAC authorizes a list/watch by ``resourceNames`` only with it."""
        self.indexers: dict[str, IndexFunc] = {**(DEFAULT_INDEXERS if default_indexers else {}), **(indexers or {})}
        self._index_names = tuple(self.indexers)
        self._index_funcs = tuple(self.indexers.values())
        self.watch_timeout_seconds = watch_timeout_seconds
        self.max_backoff = max_backoff
        self.transform = transform
        self.shape = shape
        """How lists and watches decode: only the fields ``transform`` reads (:mod:`kubetask.kube.wire`)."""
        self._items: dict[Key, Obj] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {name: {} for name in self.indexers}
        self._index_values: dict[Key, tuple[tuple[str, ...], ...]] = {}
        self.derive = derive
        self._derived: dict[Key, Any] = {}
        self._bucket_stamps: dict[tuple[str, str], int] = {}
        self._stamps = stamps
        """Whether to keep :meth:`index_stamp`'s per-bucket stamps (a reader that caches per bucket needs them)."""
        self._synced = asyncio.Event()
        self._listed: set[str | None] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._resource_versions: dict[str | None, str | None] = {}
        self._handlers: list[Handler] = []
        self.last_error: str | None = None
        self.relists = 0
        self.generation = 0
        self.events = 0
        """Watch events received (bookmarks excluded): what the informer's CPU scales with."""

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

    def get_key(self, key: Key) -> Obj | None:
        """The object stored under ``(namespace, name)`` (``""`` for a cluster-scoped one)."""
        return self._items.get(key)

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def items(self) -> Iterable[tuple[Key, Obj]]:
        """``(key, object)`` pairs, without copying the store (do not change the informer while iterating)."""
        return self._items.items()

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self._indexes[index].get(value, ())
        return [self._items[k] for k in keys if k in self._items]

    def keys_by_index(self, index: str, value: str) -> builtins.set[Key]:
        """The keys in the bucket ``index=value`` (a copy)."""
        return set(self._indexes[index].get(value, ()))

    def index_values(self, index: str) -> builtins.list[str]:
        """The values of ``index`` that have objects."""
        return list(self._indexes[index])

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

    def __contains__(self, key: object) -> bool:
        return key in self._items

    # ------------------------------------------------------------------ change notifications

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call ``handler(event_type, old, new)`` after every change; returns the unsubscribe function.

        ``event_type`` is ``ADDED`` (old is None), ``MODIFIED`` or ``DELETED`` (new is None); the
        objects are the stored (transformed) versions.  Handlers run synchronously, in the order
        of the changes, before the next watch event is read: keep them short (update a counter,
        mark something dirty, set an :class:`asyncio.Event`), and never raise.
        """
        self._handlers.append(handler)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.remove(handler)

        return unsubscribe

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """``listener(event_type, obj)`` after every change (ADDED/MODIFIED: the new object; DELETED: the old)."""
        return self.subscribe(lambda event_type, old, new: listener(event_type, new if new is not None
                                                                    else old or {}))

    def _notify(self, event_type: str, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(event_type, old, new)
            except Exception:  # a subscriber must never break the informer
                log.exception("informer subscriber failed")

    # ------------------------------------------------------------------ writes into the cache

    def upsert(self, obj: Obj) -> bool:
        """Insert/replace ``obj`` unless the cache holds a newer version; returns whether it changed."""
        if self.transform is not None:
            obj = self.transform(obj)
        return self._put(obj)

    def remove(self, obj: Mapping[str, Any]) -> None:
        """Drop the object; ignored if the store holds a newer incarnation of the name (another uid)."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is None:
            return
        uid = (obj.get("metadata") or {}).get("uid")
        if uid and (old.get("metadata") or {}).get("uid") not in (None, uid) and not is_newer(obj, old):
            return
        self._unindex(key)
        del self._items[key]
        self._derived.pop(key, None)
        self._notify(DELETED, old, None)

    def _put(self, obj: Obj) -> bool:
        key = object_key(obj)
        current = self._items.get(key)
        if current is not None:
            if not is_newer(obj, current):
                return False
            if _same_but_version(obj, current):
                self._items[key] = obj  # remember the newer resourceVersion; nothing anyone reads changed
                return False
        self._store(key, obj)
        self._notify(MODIFIED if current is not None else ADDED, current, obj)
        return True

    def _store(self, key: Key, obj: Obj) -> None:
        self._unindex(key)
        self._items[key] = obj
        stamp = self.generation + 1
        values = tuple(tuple(func(obj)) for func in self._index_funcs)
        for name, vals in zip(self._index_names, values, strict=True):
            index = self._indexes[name]
            for v in vals:
                bucket = index.get(v)
                if bucket is None:
                    bucket = index[v] = set()
                bucket.add(key)
                if self._stamps:
                    self._bucket_stamps[(name, v)] = stamp
        if values:
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
        for name, vals in zip(self._index_names, values, strict=True):
            index = self._indexes[name]
            for v in vals:
                bucket = index.get(v)
                if bucket is not None:
                    bucket.discard(key)
                    if bucket:
                        if self._stamps:
                            self._bucket_stamps[(name, v)] = self.generation
                    else:
                        del index[v]
                        self._bucket_stamps.pop((name, v), None)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._tasks and not all(task.done() for task in self._tasks):
            return
        self._tasks = [asyncio.create_task(self._run(namespace), name=f"informer-{self.resource.plural}"
                                           + (f"-{namespace}" if namespace else ""))
                       for namespace in self.namespaces]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def _incoming(self, obj: Obj) -> Obj:
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        return self.transform(obj) if self.transform is not None else obj

    def _field_selector(self) -> dict[str, str]:
        # Passed only when set, so clients without the parameters (tests' fakes) keep working.
        return {"field_selector": self.field_selector} if self.field_selector else {}

    def _stream_options(self) -> dict[str, Any]:
        """The field selector and the shape, for a paged list or a watch."""
        return {**self._field_selector(), **({"shape": self.shape} if self.shape is not None else {})}

    async def _relist(self, namespace: str | None) -> None:
        fresh: dict[Key, Obj] = {}
        version: str | None = None
        pages = getattr(self.client, "list_pages", None)
        if pages is None:  # a client without paging (tests' fakes)
            listed = [await self.client.list(self.resource, namespace, label_selector=self.label_selector,
                                             **self._field_selector())]
        else:
            listed = pages(self.resource, namespace, label_selector=self.label_selector, limit=LIST_PAGE,
                           **self._stream_options())
        # Page by page: only one page of whole objects is alive at a time, the rest is already lean.
        async for page in _aiter(listed):
            version = str((page.get("metadata") or {}).get("resourceVersion") or "") or version
            for item in page.get("items") or []:
                fresh[object_key(item)] = self._incoming(item)
            del page
        gone = [k for k in self._items if k not in fresh and (namespace is None or k[0] == namespace)]
        for key in gone:
            self.remove(self._items[key])
        for item in fresh.values():
            self._put(item)
        self._resource_versions[namespace] = version
        self.relists += 1
        self._listed.add(namespace)
        if len(self._listed) == len(self.namespaces):
            self._synced.set()

    async def _run(self, namespace: str | None) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist(namespace)
                    need_list = False
                async for event in self.client.watch(
                    self.resource, namespace, resource_version=self._resource_versions.get(namespace),
                    timeout_seconds=self.watch_timeout_seconds, label_selector=self.label_selector,
                    **self._stream_options(),
                ):
                    self._apply(event, namespace)
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

    def _apply(self, event: Mapping[str, Any], namespace: str | None = None) -> None:
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone()
            raise ApiError(int(code or 500), obj)
        rv = _rv(obj)
        if rv:
            self._resource_versions[namespace] = rv
        if event_type == "BOOKMARK":
            return
        self.events += 1
        if event_type == DELETED:
            self.remove(obj)
            return
        self._put(self._incoming(obj))


async def _aiter(source: Any) -> AsyncIterator[Obj]:
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


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

    @property
    def events(self) -> int:
        return sum(i.events for i in self.informers.values())

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers.values()))
