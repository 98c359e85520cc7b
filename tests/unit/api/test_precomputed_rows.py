"""Precomputed list rows (``GET /tasks`` from the cache): the same matches, order, page and bytes as the
object path; the informer's derived values and bucket stamps; the POST admission shortcuts."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from kubetask.api.admission import admit
from kubetask.api.routes.common import FastJSON
from kubetask.api.state import PendingCounts, ResultCache
from kubetask.core.admission import count_pending
from kubetask.core.rest import (
    SORT_FIELDS,
    TaskRow,
    encode_json,
    list_envelope,
    list_envelope_json,
    make_query,
    match_rows,
    query_key,
    query_rows,
    query_tasks,
    task_public,
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


@pytest.mark.parametrize("params", QUERIES)
def test_rows_query_like_objects(params: dict[str, Any]) -> None:
    q = make_query(**params)
    total, items = query_tasks(TASK_OBJS, q)
    row_total, rows = query_rows(ROWS, q)
    assert row_total == total
    assert [r.obj for r in rows] == items
    assert [r.obj for r in match_rows(list(reversed(ROWS)), q)][q.offset:q.offset + q.limit] == items


@pytest.mark.parametrize("seed004", [False, True])
def test_row_json_and_envelope_are_byte_identical(seed004: bool) -> None:
    q = make_query(status="pending", sort_by="priority", limit=5, offset=2, queued_as_pending=seed004)
    total, items = query_tasks(TASK_OBJS, q)
    public = [task_public(o, queued_as_pending=seed004) for o in items]
    _, rows = query_rows(ROWS, q)
    texts = [r.public_json(seed004) for r in rows]
    assert texts == [encode_json(p) for p in public]
    assert texts[0] is rows[0].public_json(seed004)  # made once per object version
    expected = FastJSON(list_envelope(total, q, public)).body
    assert list_envelope_json(total, q, texts).encode() == expected
    assert ("[" + ",".join(texts) + "]").encode() == FastJSON(public).body
    for total, offset in itertools.product((0, 1, 7, 50), (0, 5, 60)):
        q = make_query(limit=5, offset=offset)
        assert list_envelope_json(total, q, texts[:2]).encode() == FastJSON(list_envelope(total, q,
                                                                                          public[:2])).body


def test_query_key_ignores_only_the_page() -> None:
    assert query_key(make_query(limit=5, offset=10)) == query_key(make_query(page=4, limit=50))
    assert query_key(make_query(tag="x")) != query_key(make_query(tag="y"))
    assert query_key(make_query(sort_by="created")) == query_key(make_query(sort_by="created_at"))
    assert query_key(make_query(sort_order="asc")) != query_key(make_query(sort_order="desc"))
    assert len(set(SORT_FIELDS.values())) > 5


def obj(name: str, rv: str, ns: str = "ns", user: str = "alice", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                         "labels": {"kubetask.io/user": user}}, "spec": {"user": user, **spec}}


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


TENANT = {"metadata": {"name": "alice"}, "spec": {"limits": {"maxPending": 2}}}


def waiting(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"user": "alice", **spec}, "status": {"phase": "Pending"}}


def new_task(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "kubetask-alice"}, "spec": {"image": "busybox", **spec}}


def test_admit_reads_siblings_only_for_dependencies() -> None:
    def siblings() -> list[dict[str, Any]]:
        raise AssertionError("the namespace was walked")

    admit(new_task(), TENANT, siblings, [], pending_count=lambda name: 1)
    with pytest.raises(Exception, match="Too many pending"):
        admit(new_task(), TENANT, siblings, [], pending_count=lambda name: 2)
    with pytest.raises(Exception, match="Dependency 'nope' does not exist"):
        admit(new_task(dependsOn=["nope"]), TENANT, lambda: [waiting("x")], [], pending_count=lambda name: 0)
    admit(new_task(dependsOn=["x"]), TENANT, lambda: [waiting("x")], [], pending_count=lambda name: 0)
    # A plain sequence (and no pending_count) still works as before.
    with pytest.raises(Exception, match="Too many pending"):
        admit(new_task(), TENANT, [waiting("x"), waiting("y")], [])


def test_rows_survive_a_json_round_trip_of_the_object() -> None:
    # The cache holds decoded JSON; a row over an equal object gives the same text.
    o = TASK_OBJS[5]
    assert TaskRow(json.loads(json.dumps(o))).public_json() == TaskRow(o).public_json()
