"""kubetask.core.rest.query: precomputed rows answer exactly like the objects, byte for byte."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from kubetask.api.routes.common import FastJSON
from kubetask.core.rest.present import task_public
from kubetask.core.rest.profiles import PROFILES, Profile
from kubetask.core.rest.query import (
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
)

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
    {"status": "queued", "sort_by": "scheduled_at"},
]


def obj(name: str, rv: str, ns: str = "ns", user: str = "alice", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                         "labels": {"kubetask.io/user": user}}, "spec": {"user": user, **spec}}


TENANT = {"metadata": {"name": "alice"}, "spec": {"limits": {"maxPending": 2}}}


def waiting(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"user": "alice", **spec}, "status": {"phase": "Pending"}}


def new_task(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "kubetask-alice"}, "spec": {"image": "busybox", **spec}}


@pytest.mark.parametrize("params", QUERIES)
def test_rows_query_like_objects(params: dict[str, Any]) -> None:
    q = make_query(**params)
    total, items = query_tasks(TASK_OBJS, q)
    row_total, rows = query_rows(ROWS, q)
    assert row_total == total
    assert [r.obj for r in rows] == items
    assert [r.obj for r in match_rows(list(reversed(ROWS)), q)][q.offset:q.offset + q.limit] == items


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_row_json_and_envelope_are_byte_identical(profile: Profile) -> None:
    q = make_query(status="pending", sort_by="priority", limit=5, offset=2)
    total, items = query_tasks(TASK_OBJS, q)
    public = [task_public(o, profile) for o in items]
    _, rows = query_rows(ROWS, q)
    texts = [r.public_json(profile) for r in rows]
    assert texts == [encode_json(p) for p in public]
    assert texts[0] is rows[0].public_json(profile)  # made once per object version and profile
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


def test_rows_survive_a_json_round_trip_of_the_object() -> None:
    # The cache holds decoded JSON; a row over an equal object gives the same text.
    o = TASK_OBJS[5]
    assert TaskRow(json.loads(json.dumps(o))).public_json() == TaskRow(o).public_json()
