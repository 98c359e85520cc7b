"""Task objects shared by the unit tests of the API's caches, its admission adapter and the REST rows.

A seeded, varied population (phases, users, templates, annotations) plus small builders; one copy, so the
three suites exercise the same shapes."""

from __future__ import annotations

import random
from typing import Any

from kubetask.core.rest.query import TaskRow

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


