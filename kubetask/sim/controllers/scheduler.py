"""The scheduler: filters (unschedulable, taints, node affinity/selector, resource fit) and binding."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from kubetask.sim.admission import container_sum, q
from kubetask.sim.api import now_iso
from kubetask.sim.controllers.base import Reconciler
from kubetask.sim.errors import ApiError, conflict, not_found
from kubetask.sim.keys import K_NODES, K_PODS
from kubetask.sim.store import Event

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")


def tolerates(tols: list[Obj], taint: Obj) -> bool:
    for t in tols:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if not t.get("key") and op == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expr_match(e: Obj, labels: dict[str, str]) -> bool:
    k, op, vals = e.get("key", ""), e.get("operator"), e.get("values") or []
    if op == "In":
        return k in labels and labels[k] in vals
    if op == "NotIn":
        return k not in labels or labels[k] not in vals
    if op == "Exists":
        return k in labels
    if op == "DoesNotExist":
        return k not in labels
    if op in ("Gt", "Lt"):
        try:
            a, b = int(labels[k]), int(vals[0])
        except (KeyError, ValueError, IndexError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def affinity_ok(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = req.get("nodeSelectorTerms")
    if terms:
        ok = False
        for term in terms:
            exprs = term.get("matchExpressions") or []
            fields = term.get("matchFields") or []
            fl = {"metadata.name": node["metadata"]["name"]}
            if (exprs or fields) and all(_expr_match(e, labels) for e in exprs) and all(
                    _expr_match(f, fl) for f in fields):
                ok = True
                break
        if not ok:
            return False
    return True


class Scheduler(Reconciler):
    """Binds pending pods to nodes that pass the filters; records ``Unschedulable`` otherwise."""

    name = "scheduler"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        # node -> {(ns, name): requests}: the node's committed (non-terminal) pods.
        self.node_pods: dict[str, dict[tuple[str, str], dict[str, Decimal]]] = {}
        self.unschedulable: set[tuple[str, str]] = set()

    def on_event(self, ev: Event) -> None:
        if ev.key == K_NODES:
            self._retry_all()
            return
        if ev.key != K_PODS:
            return
        pod = ev.obj
        k = (ev.namespace, ev.name)
        for pods in self.node_pods.values():
            pods.pop(k, None)
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if ev.type != "DELETED" and node and phase not in TERMINAL:
            self.node_pods.setdefault(node, {})[k] = container_sum(pod, "requests")
        freed = ev.type == "DELETED" or phase in TERMINAL
        if ev.type == "DELETED":
            self.unschedulable.discard(k)
        elif not node and (pod.get("spec") or {}).get("schedulerName", "default-scheduler") == "default-scheduler" \
                and not pod["metadata"].get("deletionTimestamp"):
            self.enqueue(k)
        if freed and node:
            self._retry_all()

    def _retry_all(self) -> None:
        for k in list(self.unschedulable):
            self.enqueue(k)

    def _fit(self, pod: Obj, node: Obj) -> list[str]:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        used: dict[str, Decimal] = {}
        pods = self.node_pods.get(node["metadata"]["name"], {})
        for r in pods.values():
            for k, v in r.items():
                used[k] = used.get(k, Decimal(0)) + v
        reasons = []
        if len(pods) + 1 > q(alloc.get("pods", "110")):
            reasons.append("Too many pods")
        for k, v in sorted(container_sum(pod, "requests").items()):
            if v == 0:
                continue
            cap = q(alloc[k]) if k in alloc else Decimal(0)
            if used.get(k, Decimal(0)) + v > cap:
                reasons.append(f"Insufficient {k}")
        return reasons

    def filter(self, pod: Obj) -> tuple[list[Obj], dict[str, int]]:
        ok: list[Obj] = []
        reasons: dict[str, int] = {}
        tols = (pod.get("spec") or {}).get("tolerations") or []
        for node in self.sim.store.list_sorted(K_NODES):
            spec = node.get("spec") or {}
            rs: list[str] = []
            if spec.get("unschedulable") and not tolerates(
                    tols, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
                rs = ["node(s) were unschedulable"]
            if not rs:
                for t in spec.get("taints") or ():
                    if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tols, t):
                        val = t.get("value")
                        rs = [f"node(s) had untolerated taint {{{t.get('key')}: {val}}}" if val else
                              f"node(s) had untolerated taint {{{t.get('key')}: }}"]
                        break
            if not rs and not affinity_ok(pod, node):
                rs = ["node(s) didn't match Pod's node affinity/selector"]
            if not rs:
                rs = self._fit(pod, node)
            if rs:
                for r in rs:
                    reasons[r] = reasons.get(r, 0) + 1
            else:
                ok.append(node)
        return ok, reasons

    async def reconcile(self, key: Any) -> None:
        ns, name = key
        pod = self.sim.store.get(K_PODS, ns, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            self.unschedulable.discard(key)
            return
        if (pod.get("spec") or {}).get("schedulingGates"):
            return
        nodes, reasons = self.filter(pod)
        if nodes:
            # Least-allocated-ish: prefer the node with the fewest pods, then name order.
            nodes.sort(key=lambda n: (len(self.node_pods.get(n["metadata"]["name"], {})), n["metadata"]["name"]))
            await self.bind(ns, name, nodes[0]["metadata"]["name"])
            self.unschedulable.discard(key)
            return
        total = self.sim.store.count(K_NODES)
        parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        msg = (f"0/{total} nodes are available: {parts}. preemption: 0/{total} nodes are available: "
               f"{total} Preemption is not helpful for scheduling.")
        self.unschedulable.add(key)
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                "lastProbeTime": None, "lastTransitionTime": now_iso()}
        conds = (pod.get("status") or {}).get("conditions") or []
        old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if old is not None and old.get("message") == msg and old.get("status") == "False":
            return
        new = copy.deepcopy(pod)
        st = new.setdefault("status", {})
        st["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [cond]
        self.sim.store.put(K_PODS, new)
        self.sim.record_event(pod, "Warning", "FailedScheduling", msg, "default-scheduler")

    async def bind(self, ns: str, name: str, node: str) -> None:
        pod = self.sim.store.get(K_PODS, ns, name)
        if pod is None:
            raise not_found("pods", "", name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise conflict("pods", "", name, f'pod {name} is already assigned to node '
                                             f'"{pod["spec"]["nodeName"]}"')
        if self.sim.store.get(K_NODES, "", node) is None:
            raise ApiError(404, f'nodes "{node}" not found', "NotFound")
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        st = new.setdefault("status", {})
        st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_iso()}]
        self.sim.store.put(K_PODS, new)
        self.sim.record_event(new, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}",
                              "default-scheduler")
