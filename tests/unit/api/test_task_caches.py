"""The API's caches: the informer's derived rows and bucket stamps, the result LRU, pending counts."""

from __future__ import annotations

import random
from typing import Any

import pytest
from task_samples import PHASES, obj

from kubetask.api.state import PendingCounts, ResultCache
from kubetask.core.admission import count_pending
from kubetask.core.rest.query import (
    TaskRow,
    task_row,
)
from kubetask.kube.cache import Informer
from kubetask.kube.client import TASKS


def test_informer_derives_once_per_version_and_stamps_buckets() -> None:
    made: list[str] = []

    def derive(o: dict[str, Any]) -> TaskRow:
        made.append(o["metadata"]["resourceVersion"])
        if o["spec"].get("bad"):
            raise ValueError("cannot derive")
        return task_row(o)

    informer = Informer(None, TASKS, derive=derive)  # type: ignore[arg-type]
    assert informer.index_stamp("namespace", "ns") == -1
    informer.upsert(obj("a", "1"))
    informer.upsert(obj("b", "2", ns="other"))
    first = informer.index_stamp("namespace", "ns")
    other = informer.index_stamp("namespace", "other")
    rows = informer.derived_by_index("namespace", "ns")
    assert [r.name for r in rows] == ["a"] and made == ["1", "2"]
    assert informer.derived_by_index("namespace", "ns")[0] is rows[0]  # not derived again on read
    assert [r.name for r in informer.derived_list()] == ["a", "b"]

    informer.upsert(obj("a", "3", priority=9))  # a new version: a new row, a new stamp for its buckets only
    assert informer.derived_by_index("namespace", "ns")[0].priority == 9
    assert informer.index_stamp("namespace", "ns") > first
    assert informer.index_stamp("namespace", "other") == other
    assert informer.upsert(obj("a", "2")) is False and made == ["1", "2", "3"]

    stamp = informer.index_stamp("namespace", "ns")
    informer.upsert(obj("c", "4"))
    assert informer.index_stamp("namespace", "ns") > stamp
    stamp = informer.index_stamp("namespace", "ns")
    informer.remove(obj("c", "5"))
    assert informer.index_stamp("namespace", "ns") > stamp
    informer.remove(obj("a", "6"))
    assert informer.index_stamp("namespace", "ns") == -1 and informer.derived_by_index("namespace", "ns") == []

    informer.upsert(obj("bad", "7", bad=True))  # a failing derive keeps the object, and fails the reader
    assert informer.get("bad", "ns") is not None
    with pytest.raises(ValueError):
        informer.derived_by_index("namespace", "ns")


def test_result_cache_is_a_small_lru() -> None:
    cache = ResultCache(size=2)
    calls: list[str] = []

    def compute(key: str) -> Any:
        return lambda: calls.append(key) or key.upper()

    assert cache.get("a", compute("a")) == "A" and cache.get("a", compute("a")) == "A"
    cache.get("b", compute("b"))
    cache.get("a", compute("a"))
    cache.get("c", compute("c"))  # evicts b, the least recently used
    cache.get("a", compute("a"))
    cache.get("b", compute("b"))
    assert calls == ["a", "b", "c", "b"] and (cache.hits, cache.misses) == (3, 4)


def test_pending_counts_follow_events_like_count_pending() -> None:
    rng = random.Random(7)
    counts = PendingCounts()
    live: dict[str, dict[str, Any]] = {}
    for step in range(400):
        name = f"t{rng.randint(0, 30)}"
        if rng.random() < 0.15 and name in live:
            counts.on_event("DELETED", live.pop(name))
        else:
            o = obj(name, str(step), user=rng.choice(["alice", "bob"]), cancel=rng.random() < 0.2)
            o["status"] = {"phase": rng.choice(PHASES)} if rng.random() < 0.9 else {}
            counts.on_event("MODIFIED" if name in live else "ADDED", o)
            live[name] = o
        for user in ("alice", "bob"):
            assert counts.count("ns", user) == count_pending(list(live.values()), user)
    assert counts.count("elsewhere", "alice") == 0
