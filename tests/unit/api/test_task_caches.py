"""The API's caches: the informer's derived rows and bucket stamps, the result LRU, pending counts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubetask.api.state import PendingCounts, ResultCache
from kubetask.core.admission import count_pending
from kubetask.core.rest.query import (
    TaskRow,
    task_row,
)
from kubetask.kube.cache import Informer
from kubetask.kube.client import TASKS

PHASES = [None, "Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]


def make_task(i: int, rng: random.Random) -> dict[str, Any]:
    phase = rng.choice(PHASES)
    user = rng.choice(["alice", "bob"])
    ann: dict[str, str] = {"kubetask.io/submitted-at": f"2030-01-01T00:00:{i % 7:02d}.{i:06d}Z"}
    if rng.random() < 0.3:
        ann["kubetask.io/task-type"] = rng.choice(["text_generation", "embedding"])
    if rng.random() < 0.2:
        ann["kubetask.io/model-name"] = "llama"
    spec: dict[str, Any] = {
        "displayName": rng.choice(["Train", "infer ü", "batch", None]),
        "user": user if rng.random() < 0.9 else None,
        "priority": rng.randint(0, 10),
        "tags": rng.sample(["x", "y", "z"], rng.randint(0, 3)),
        "cancel": rng.random() < 0.1,
        "image": rng.choice([None, "busybox"]),
        "timeoutSeconds": rng.choice([None, 60]),
    }
    if rng.random() < 0.5:
        spec["queue"] = rng.choice(["default", "gpu"])
    if rng.random() < 0.6:
        spec["template"] = {"name": rng.choice(["ollama-inference", "train"]),
                            "parameters": {"model": rng.choice(["m", "llama"])}}
    status: dict[str, Any] = {}
    if phase:
        status = {"phase": phase, "nodeName": rng.choice([None, "gpu-1"]),
                  "startedAt": "2030-01-01T00:01:00Z" if phase != "Pending" else None,
                  "completedAt": "2030-01-01T00:02:00Z" if phase in ("Succeeded", "Failed", "Cancelled") else None,
                  "message": rng.choice([None, "waiting for a GPU"]), "queuePosition": rng.choice([None, 1, 2])}
    return {
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": f"t-{i:03d}", "namespace": "kubetask-alice", "resourceVersion": str(100 + i),
                     "creationTimestamp": f"2030-01-0{1 + i % 3}T00:00:{i % 5:02d}Z", "annotations": ann,
                     "labels": {"kubetask.io/user": user}},
        "spec": spec,
        "status": status,
    }


TASK_OBJS = [make_task(i, random.Random(i)) for i in range(120)]


ROWS = [TaskRow(o) for o in TASK_OBJS]


QUERIES: list[dict[str, Any]] = [
    {},
    {"status": "pending", "tag": "x", "sort_by": "priority", "sort_order": "desc", "limit": 7, "offset": 3},
    {"status": ["running,completed"], "sort_by": "name", "sort_order": "asc"},
    {"status": "cancelled", "sort_by": "status"},
    {"priority": 5}, {"min_priority": 3, "max_priority": 6, "sort_by": "-priority"},
    {"template": "train", "model_name": "llama"}, {"task_type": "embedding", "sort_by": "task_type"},
    {"queue_name": "GPU", "sort_by": "queue_position", "sort_order": "asc"},
    {"tag": ["x", "y"], "user": "bob"}, {"worker_id": "gpu-1", "sort_by": "started_at"},
    {"created_after": "2030-01-02", "created_before": "2030-01-02T00:00:03Z", "sort_by": "created_at"},
    {"search": "GPU", "sort_by": "completed_at", "limit": 1000}, {"search": "infer ü"},
    {"sort_by": "id", "page": 3, "limit": 10}, {"sort_by": "user_id", "sort_order": "asc"},
    {"status": "pending", "queued_as_pending": True, "sort_by": "scheduled_at"},
]


def obj(name: str, rv: str, ns: str = "ns", user: str = "alice", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                         "labels": {"kubetask.io/user": user}}, "spec": {"user": user, **spec}}


TENANT = {"metadata": {"name": "alice"}, "spec": {"limits": {"maxPending": 2}}}


def waiting(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"user": "alice", **spec}, "status": {"phase": "Pending"}}


def new_task(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "kubetask-alice"}, "spec": {"image": "busybox", **spec}}


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
