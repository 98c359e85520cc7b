"""The sim's caches and indexes (event aggregation index, CEL memo, registry lookups, webhook TLS
contexts) must behave exactly like the uncached code paths they replace."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubetask.sim.admission import Admission
from kubetask.sim.api import K_EVENTS, Sim
from kubetask.sim.schema import eval_cel
from kubetask.sim.tls import self_signed

Obj = dict[str, Any]


def new_sim() -> Sim:
    sim = Sim()
    sim.seed(("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return sim


def involved(name: str, uid: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": uid}}


def events(sim: Sim) -> list[Obj]:
    return list(sim.store.iter(K_EVENTS, "default"))


def test_record_event_aggregates_same_object_reason_and_message() -> None:
    sim = new_sim()
    pod = involved("p", "uid-1")
    sim.record_event(pod, "Normal", "Scheduled", "assigned", "default-scheduler")
    sim.record_event(pod, "Normal", "Scheduled", "assigned", "default-scheduler")
    sim.record_event(pod, "Normal", "Scheduled", "other message", "default-scheduler")
    sim.record_event(involved("q", "uid-2"), "Normal", "Scheduled", "assigned", "default-scheduler")
    counts = sorted((e["involvedObject"]["uid"], e["message"], e["count"]) for e in events(sim))
    assert counts == [("uid-1", "assigned", 2), ("uid-1", "other message", 1), ("uid-2", "assigned", 1)]


def test_record_event_after_the_event_is_deleted_starts_a_new_one() -> None:
    sim = new_sim()
    pod = involved("p", "uid-1")
    sim.record_event(pod, "Normal", "Pulled", "pulled", "kubelet")
    (first,) = events(sim)
    sim.store.remove(K_EVENTS, "default", first["metadata"]["name"])
    sim.record_event(pod, "Normal", "Pulled", "pulled", "kubelet")
    (second,) = events(sim)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert second["count"] == 1


def test_record_event_bumps_a_client_created_look_alike() -> None:
    sim = new_sim()
    rt = sim.rt_for(K_EVENTS)
    body = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "by-client", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "uid-1"},
            "reason": "Started", "message": "started", "type": "Normal", "count": 3}
    asyncio.run(sim.create(rt, "default", body))
    sim.record_event(involved("p", "uid-1"), "Normal", "Started", "started", "kubelet")
    (event,) = events(sim)
    assert event["metadata"]["name"] == "by-client"
    assert event["count"] == 4


def test_record_event_follows_an_event_whose_message_was_changed() -> None:
    sim = new_sim()
    pod = involved("p", "uid-1")
    sim.record_event(pod, "Normal", "Started", "started", "kubelet")
    (event,) = events(sim)
    changed = {**event, "message": "edited"}
    sim.store.put(K_EVENTS, changed)
    sim.record_event(pod, "Normal", "Started", "edited", "kubelet")
    sim.record_event(pod, "Normal", "Started", "started", "kubelet")
    counts = sorted((e["message"], e["count"]) for e in events(sim))
    assert counts == [("edited", 2), ("started", 1)]


def test_cel_results_depend_on_self_and_old_self_not_on_cache_order() -> None:
    rule = "self == oldSelf"
    assert bool(eval_cel(rule, {"a": 1}, {"a": 1}, True))
    assert not bool(eval_cel(rule, {"a": 1}, {"a": 2}, True))
    assert bool(eval_cel(rule, {"a": 1}, {"a": 1}, True))
    # Types are part of the key: 1 and 1.0 and true are different JSON values.
    assert bool(eval_cel("self.x == 1", {"x": 1}))
    assert bool(eval_cel("self.x == true", {"x": True}))
    assert not bool(eval_cel("has(self.y)", {"x": 1}))
    assert bool(eval_cel("has(self.y)", {"x": 1, "y": 2}))


def test_registry_lookups_follow_crd_registration() -> None:
    sim = new_sim()
    assert sim.registry.for_key(("example.io", "widgets")) is None
    assert "example.io" not in sim.registry.groups()
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.io"},
           "spec": {"group": "example.io", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    sim.registry.register_crd(crd)
    rt = sim.registry.for_key(("example.io", "widgets"))
    assert rt is not None and rt.version == "v1"
    assert sim.registry.groups()["example.io"] == ["v1"]
    sim.registry.unregister_crd("widgets.example.io")
    assert sim.registry.for_key(("example.io", "widgets")) is None
    assert "example.io" not in sim.registry.groups()


def test_webhook_tls_context_is_built_once_per_ca_bundle() -> None:
    admission = Admission(new_sim())
    ca_a, _ = self_signed(("127.0.0.1", "localhost"))
    ca_b, _ = self_signed(("127.0.0.1", "localhost"))
    bundle_a = base64.b64encode(ca_a).decode()
    bundle_b = base64.b64encode(ca_b).decode()
    first = admission._ssl({"caBundle": bundle_a})
    assert admission._ssl({"caBundle": bundle_a}) is first
    assert admission._ssl({"caBundle": bundle_b}) is not first
    assert admission._ssl({}) is admission._ssl({"caBundle": ""})
