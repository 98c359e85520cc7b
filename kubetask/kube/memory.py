"""The long-lived heap: freed memory given back to the system (glibc's ``malloc_trim``), and the cached
objects kept out of the cyclic garbage collector's walks (:class:`HeapSettler`).

A burst of watch events decodes thousands of whole objects only to keep a lean copy of each:
the garbage is freed, but glibc keeps the freed pages of its heaps mapped, so the process's RSS
stays at the burst's high-water mark.  ``malloc_trim(0)`` returns what is free; a long-running
process calls it when it goes idle after much work.  Elsewhere (no glibc) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
import threading
from typing import Any

_libc: Any = None
with contextlib.suppress(OSError, AttributeError, TypeError):
    name = ctypes.util.find_library("c")
    if name:
        candidate = ctypes.CDLL(name)
        if hasattr(candidate, "malloc_trim"):
            _libc = candidate


def release_free_memory() -> bool:
    """Return freed heap pages to the system; whether anything was released (False without glibc)."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))


TLS_READ_BUFFER_BYTES = 32 * 1024
"""asyncio's read buffer of one TLS connection, for :func:`small_tls_read_buffers`."""


def small_tls_read_buffers(size: int = TLS_READ_BUFFER_BYTES) -> int:
    """Make every TLS connection asyncio opens from now on read through a ``size``-byte buffer; the old size.

    asyncio's ``SSLProtocol`` gives each connection a buffer of its ``max_size`` (256 KiB), zeroed at
    once, so it is resident for as long as the connection object lives.  The operator holds 30-70 of
    them: its watches, its request pool, Kopf's, and the connections the kube-apiserver opens to the
    webhook in a burst (kept alive afterwards): 8-17 MB of a 10k-task operator's RSS.  A TLS record
    carries at most 16 KiB, so a 32 KiB buffer still takes a whole record or two per read; a large LIST
    page takes more reads of it, each a cheap copy.  Process-wide, and harmless to call twice.
    """
    from asyncio import sslproto

    previous: int = sslproto.SSLProtocol.max_size
    sslproto.SSLProtocol.max_size = size
    return previous


UNUSED_CLIENTS = ("kubernetes", "kubernetes_asyncio", "pykube")
"""Client libraries Kopf imports whenever they are installed, to recognise their model objects."""


def forgo_unused_clients() -> list[str]:
    """Keep the process from ever importing :data:`UNUSED_CLIENTS`; the ones it will now go without.

    The operator hands Kopf plain dicts, never a client library's models, so Kopf has no use for
    them.  The image installs none of them; a development venv has ``kubernetes`` (the e2e tests
    drive the cluster with it), whose generated models Kopf would load: ~10 MB of RSS and ~0.4 s
    at start-up that the deployed operator does not pay.  A process that runs only the operator
    calls this before it imports Kopf; from then on importing one of them raises ``ImportError``
    (which Kopf expects of a library that is not installed).  One already imported is left alone.
    """
    blocked = [name for name in UNUSED_CLIENTS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" mark
    return blocked


class CollectorPause:
    """The cyclic garbage collector off while a process lists what it will cache, on the main thread only.

    A start-up lists every Task, Job and Pod: hundreds of thousands of dicts decoded a second,
    nearly all of them garbage a moment later (only the lean copy is kept) and none in a reference
    cycle, so reference counting alone frees them.  The collector still runs every 700 allocations,
    and a full collection each time a quarter more objects have survived: over 30,000 kwok Tasks,
    Jobs and Pods that was 2.7 of the listing's 7.2 CPU-seconds.  The first settle after the lists
    (:class:`HeapSettler`) collects once and freezes what survived.

    Only the main thread of a process the caller owns pauses it (``kubetask operator``); in a thread
    of another process (``kubetask dev``, tests) the collector is left alone.  :meth:`resume` is
    idempotent; the caller bounds the pause, because retries (tracebacks) do make cyclic garbage.
    """

    def __init__(self) -> None:
        self.paused = threading.current_thread() is threading.main_thread() and gc.isenabled()
        if self.paused:
            gc.disable()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            gc.enable()


SETTLE_AFTER_EVENTS = 2_000
"""Watch events (each a new object version, most of them kept) after which the heap is settled again."""
BUSY_SETTLE_FACTOR = 10
"""A busy process (never idle under a long burst) settles after this many times as many events."""


class HeapSettler:
    """Keeps the cyclic garbage collector off the caches' objects (``gc.freeze``).

    A watch cache of 10,000 Tasks, Jobs and Pods is a million small dicts, lists and strings that
    live until their next version.  CPython's collector walks every tracked object in a full
    collection, which it starts whenever a quarter more objects have survived since the last
    one: with such a heap that is a pause of several hundred milliseconds, in the middle of a
    request or a scheduling pass (the API's paced GET p99 was 110 ms against a p50 of 4 ms).

    Settling collects once (a pause over only what was allocated since the last settle) and then
    freezes every survivor: the collector never walks them again.  The cached objects hold no
    reference cycles, so reference counting alone frees a replaced version; what a freeze keeps
    from the collector is only the cyclic garbage of objects alive at that moment, which is rare.
    """

    def __init__(self, after_events: int = SETTLE_AFTER_EVENTS) -> None:
        self.after_events = after_events
        self.settled_at_events: int | None = None
        self.settles = 0

    def settle(self, events: int) -> None:
        """Collect, freeze what survives, and give the freed pages back to the system."""
        gc.collect()
        gc.freeze()
        release_free_memory()
        self.settled_at_events = events
        self.settles += 1

    def maybe_settle(self, events: int, *, busy: bool = False) -> bool:
        """Settle if never done, or if enough watch events came since the last time; whether it did.

        ``busy``: the process has work waiting, and the collection would pause it: settle only after
        :data:`BUSY_SETTLE_FACTOR` times as many events."""
        needed = self.after_events * (BUSY_SETTLE_FACTOR if busy else 1)
        if self.settled_at_events is not None and events - self.settled_at_events < needed:
            return False
        self.settle(events)
        return True
