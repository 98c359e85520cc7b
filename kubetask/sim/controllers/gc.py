"""Garbage collector, namespace controller and ResourceQuota status controller."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from kubetask.sim.api import Ctx
from kubetask.sim.controllers.base import Reconciler
from kubetask.sim.errors import ApiError
from kubetask.sim.keys import K_NS, K_RQ
from kubetask.sim.store import Event

Obj = dict[str, Any]


class GarbageCollector(Reconciler):
    """Deletes dependents of deleted owners; handles ``orphan`` and ``foregroundDeletion`` finalizers."""

    name = "garbage-collector"

    def on_event(self, ev: Event) -> None:
        meta = ev.obj["metadata"]
        if ev.type == "DELETED":
            self.enqueue(("owner-gone", meta.get("uid", "")))
            # A dependent vanished: its foreground-deleting owners may now finish.
            for ref in meta.get("ownerReferences") or ():
                self.enqueue(("owner", ref.get("uid", "")))
        elif meta.get("deletionTimestamp") and set(meta.get("finalizers") or ()) & {"orphan", "foregroundDeletion"}:
            self.enqueue(("owner", meta.get("uid", "")))

    async def reconcile(self, key: Any) -> None:
        kind, uid = key
        store = self.sim.store
        if kind == "owner-gone":
            if store.get_by_uid(uid) is not None:
                return
            for dkey, dep in store.dependents(uid):
                refs = dep["metadata"].get("ownerReferences") or []
                alive = [r for r in refs if r.get("uid") != uid and store.get_by_uid(r.get("uid", "")) is not None]
                if alive:
                    new = copy.deepcopy(dep)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    store.put(dkey, new)
                elif not dep["metadata"].get("deletionTimestamp"):
                    await self._delete(dkey, dep, "Background")
            return
        owner = store.get_by_uid(uid)
        if owner is None:
            return
        okey = store.by_uid[uid][0]
        fins = list(owner["metadata"].get("finalizers") or [])
        deps = store.dependents(uid)
        if "orphan" in fins:
            for dkey, dep in deps:
                new = copy.deepcopy(dep)
                new["metadata"]["ownerReferences"] = [r for r in dep["metadata"].get("ownerReferences") or []
                                                      if r.get("uid") != uid]
                if not new["metadata"]["ownerReferences"]:
                    new["metadata"].pop("ownerReferences")
                store.put(dkey, new)
            self._drop_finalizer(okey, owner, "orphan")
        elif "foregroundDeletion" in fins:
            blocking = False
            for dkey, dep in deps:
                if not dep["metadata"].get("deletionTimestamp"):
                    await self._delete(dkey, dep, "Foreground")
                blocks = any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                             for r in dep["metadata"].get("ownerReferences") or ())
                if blocks and store.get_by_uid(dep["metadata"]["uid"]) is not None:
                    blocking = True
            if not blocking:
                self._drop_finalizer(okey, owner, "foregroundDeletion")

    def _drop_finalizer(self, key: tuple[str, str], owner: Obj, fin: str) -> None:
        cur = self.sim.store.get(key, owner["metadata"].get("namespace", ""), owner["metadata"]["name"])
        if cur is None:
            return
        new = copy.deepcopy(cur)
        fins = [f for f in new["metadata"].get("finalizers") or [] if f != fin]
        new["metadata"]["finalizers"] = fins
        if not fins:
            new["metadata"].pop("finalizers")
        self.sim.store.put(key, new)
        if not fins:
            self.sim.force_remove(key, new["metadata"].get("namespace", ""), new["metadata"]["name"])

    async def _delete(self, key: tuple[str, str], obj: Obj, policy: str) -> None:
        rt = self.sim.registry.for_key(key)
        if rt is None:
            return
        try:
            await self.sim.delete(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                                  {"propagationPolicy": policy,
                                   "preconditions": {"uid": obj["metadata"]["uid"]}}, Ctx())
        except ApiError as e:
            if e.code not in (404, 409):
                raise


class NamespaceController(Reconciler):
    """Empties terminating namespaces, then removes them."""

    name = "namespace-controller"

    def on_event(self, ev: Event) -> None:
        if ev.key == K_NS and ev.type != "DELETED" and ev.obj["metadata"].get("deletionTimestamp"):
            self.enqueue(ev.name)

    async def reconcile(self, key: Any) -> None:
        ns = key
        store = self.sim.store
        nso = store.get(K_NS, "", ns)
        if nso is None or not nso["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for rkey in sorted(self.sim.registry.keys()):
            rt = self.sim.registry.for_key(rkey)
            if rt is None or not rt.namespaced:
                continue
            for o in list(store.iter(rkey, ns)):
                remaining += 1
                if o["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.sim.delete(rt, ns, o["metadata"]["name"], {"propagationPolicy": "Background"}, Ctx())
                except ApiError as e:
                    if e.code != 404:
                        raise
        left = sum(store.count(k, ns) for k in self.sim.registry.keys())  # noqa: SIM118
        if left:
            self.enqueue(ns, 0.05 if remaining else 0.2)
            return
        cur = store.get(K_NS, "", ns)
        if cur is None:
            return
        if cur["metadata"].get("finalizers"):
            new = copy.deepcopy(cur)
            new.setdefault("spec", {})["finalizers"] = []
            store.put(K_NS, new)
            return
        self.sim.force_remove(K_NS, "", ns)


class QuotaController(Reconciler):
    """Keeps ``ResourceQuota.status.hard/used`` current, promptly after each relevant change."""

    name = "resourcequota-controller"

    def on_event(self, ev: Event) -> None:
        if ev.key == K_RQ:
            if ev.type != "DELETED":
                self.enqueue(ev.namespace)
            return
        if ev.namespace and self.sim.store.count(K_RQ, ev.namespace):
            self.enqueue(ev.namespace)

    async def reconcile(self, key: Any) -> None:
        ns = key
        for quota in list(self.sim.store.iter(K_RQ, ns)):
            hard = dict((quota.get("spec") or {}).get("hard") or {})
            from kubetask.sim.admission import fmt_q

            usage = self.sim.admission.usage(ns, list(hard))
            used = {r: fmt_q(usage.get(r, Decimal(0)), r) for r in hard}
            status = {"hard": hard, "used": used}
            cur = self.sim.store.get(K_RQ, ns, quota["metadata"]["name"])
            if cur is not None and cur.get("status") != status:
                new = copy.deepcopy(cur)
                new["status"] = status
                self.sim.store.put(K_RQ, new)
