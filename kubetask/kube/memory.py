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
