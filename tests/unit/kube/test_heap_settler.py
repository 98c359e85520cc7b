"""The heap settler: cached objects leave the cyclic collector's walks, garbage made before a settle is freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from kubetask.kube.memory import HeapSettler


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process's collector as it found it


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_first_call_settles_then_only_after_enough_events() -> None:
    heap = HeapSettler(after_events=100)
    assert heap.maybe_settle(5) is True
    assert heap.maybe_settle(104) is False  # 99 events since: not yet
    assert heap.maybe_settle(105) is True
    assert (heap.settles, heap.settled_at_events) == (2, 105)


def test_settled_objects_are_out_of_the_collectors_walks() -> None:
    cache = [{"metadata": {"name": f"t{i}"}} for i in range(1000)]
    HeapSettler().settle(0)
    assert gc.get_freeze_count() >= len(cache)
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in tracked for obj in cache)


def test_cyclic_garbage_made_before_a_settle_is_freed_by_it() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    HeapSettler().settle(0)
    assert gone() is None


def test_a_busy_process_settles_only_after_many_more_events() -> None:
    heap = HeapSettler(after_events=100)
    assert heap.maybe_settle(0, busy=True) is True  # never settled: settle even when busy
    assert heap.maybe_settle(100, busy=True) is False
    assert heap.maybe_settle(999, busy=True) is False
    assert heap.maybe_settle(1000, busy=True) is True


def test_the_listing_pause_stops_the_collector_on_the_main_thread_until_resumed() -> None:
    from kubetask.kube.memory import CollectorPause

    assert gc.isenabled()
    pause = CollectorPause()
    try:
        assert pause.paused and not gc.isenabled()
        pause.resume()
        assert gc.isenabled() and not pause.paused
        pause.resume()  # idempotent: it never enables a collector someone else disabled
        gc.disable()
        pause.resume()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_listing_pause_leaves_another_process_s_collector_alone() -> None:
    import threading

    from kubetask.kube.memory import CollectorPause

    seen: list[tuple[bool, bool]] = []
    thread = threading.Thread(target=lambda: seen.append((CollectorPause().paused, gc.isenabled())))
    thread.start()
    thread.join()
    assert seen == [(False, True)]
