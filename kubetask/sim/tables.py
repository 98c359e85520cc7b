"""``meta.k8s.io/v1 Table`` rendering for ``kubectl get``."""

from __future__ import annotations

import re
import time
from typing import Any

from kubetask.sim.resources import ResourceType

Obj = dict[str, Any]


def _age(ts: str | None) -> str:
    from kubetask.sim.api import parse_time

    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration(max(0.0, time.time() - t))


def human_duration(s: float) -> str:
    """``duration.HumanDuration`` from apimachinery."""
    sec = int(s)
    if sec < 120:
        return f"{sec}s"
    m = sec // 60
    if m < 10:
        return f"{m}m{sec % 60}s" if sec % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = sec // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def eval_jsonpath(obj: Any, path: str) -> Any:
    """Evaluate the simple JSONPaths printer columns use (``.a.b``, ``.a[0].b``, ``.a['x.y']``)."""
    cur = obj
    for tok in re.findall(r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]|\['([^']+)'\]|\[\"([^\"]+)\"\]", path):
        name, idx, q1, q2 = tok
        if idx:
            if not isinstance(cur, list) or int(idx) >= len(cur):
                return None
            cur = cur[int(idx)]
        else:
            key = name or q1 or q2
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
        if cur is None:
            return None
    return cur


def _cell(v: Any, typ: str) -> Any:
    if v is None:
        return None
    if typ == "integer":
        return v if isinstance(v, int) else None
    if typ == "number":
        return v if isinstance(v, int | float) else None
    if typ == "boolean":
        return v if isinstance(v, bool) else None
    if typ == "date":
        return _age(v) if isinstance(v, str) else None
    if isinstance(v, str):
        return v
    import json

    return json.dumps(v)


NAME_COL = {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a "
            "namespace.", "priority": 0}
AGE_COL = {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp "
           "representing the server time when this object was created.", "priority": 0}


def _col(name: str, typ: str = "string", priority: int = 0, desc: str = "") -> Obj:
    return {"name": name, "type": typ, "format": "", "description": desc or name, "priority": priority}


def _pod_row(o: Obj) -> list[Any]:
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in cs)
    reason = st.get("reason") or st.get("phase") or "Pending"
    for c in cs:
        s = c.get("state") or {}
        if "waiting" in s and s["waiting"].get("reason"):
            reason = s["waiting"]["reason"]
        elif "terminated" in s:
            t = s["terminated"]
            reason = t.get("reason") or f"ExitCode:{t.get('exitCode')}"
    if o["metadata"].get("deletionTimestamp") and reason not in ("Completed", "Error"):
        reason = "Terminating"
    return [o["metadata"]["name"], f"{ready}/{total}", reason, restarts, _age(o["metadata"].get("creationTimestamp")),
            st.get("podIP") or "<none>", (o.get("spec") or {}).get("nodeName") or "<none>"]


def _job_row(o: Obj) -> list[Any]:
    from kubetask.sim.api import parse_time

    st = o.get("status") or {}
    spec = o.get("spec") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or ()}
    if conds.get("Complete") == "True":
        status = "Complete"
    elif conds.get("Failed") == "True":
        status = "Failed"
    elif conds.get("FailureTarget") == "True":
        status = "FailureTarget"
    elif conds.get("SuccessCriteriaMet") == "True":
        status = "SuccessCriteriaMet"
    elif spec.get("suspend"):
        status = "Suspended"
    else:
        status = "Running"
    comp = spec.get("completions")
    completions = f"{st.get('succeeded', 0)}/{comp}" if comp is not None else f"{st.get('succeeded', 0)}/1 of " \
        f"{spec.get('parallelism', 1)}"
    start = parse_time(st.get("startTime"))
    end = parse_time(st.get("completionTime")) or time.time()
    duration = human_duration(end - start) if start else ""
    return [o["metadata"]["name"], status, completions, duration, _age(o["metadata"].get("creationTimestamp"))]


def _node_row(o: Obj) -> list[Any]:
    conds = {c.get("type"): c.get("status") for c in (o.get("status") or {}).get("conditions") or ()}
    status = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = o["metadata"].get("labels") or {}
    roles = ",".join(sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))) \
        or "<none>"
    ver = ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [o["metadata"]["name"], status, roles, _age(o["metadata"].get("creationTimestamp")), ver]


BUILTIN: dict[tuple[str, str], tuple[list[Obj], Any]] = {
    ("", "pods"): ([NAME_COL, _col("Ready"), _col("Status"), _col("Restarts", "string"), AGE_COL,
                    _col("IP", priority=1), _col("Node", priority=1)], _pod_row),
    ("batch", "jobs"): ([NAME_COL, _col("Status"), _col("Completions"), _col("Duration"), AGE_COL], _job_row),
    ("", "nodes"): ([NAME_COL, _col("Status"), _col("Roles"), AGE_COL, _col("Version")], _node_row),
    ("", "namespaces"): ([NAME_COL, _col("Status"), AGE_COL],
                         lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                                    _age(o["metadata"].get("creationTimestamp"))]),
    ("", "configmaps"): ([NAME_COL, _col("Data", "integer"), AGE_COL],
                         lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                    _age(o["metadata"].get("creationTimestamp"))]),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
                     lambda o: [_age(o.get("lastTimestamp") or o["metadata"].get("creationTimestamp")),
                                o.get("type", ""), o.get("reason", ""),
                                f"{str((o.get('involvedObject') or {}).get('kind', '')).lower()}/"
                                f"{(o.get('involvedObject') or {}).get('name', '')}", o.get("message", "")]),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [NAME_COL, _col("Created At", "date")],
        lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
}


def to_table(rt: ResourceType, items: list[Obj], list_meta: Obj, include_object: str = "Metadata") -> Obj:
    """Convert objects to a Table like the apiserver's TableConvertor."""
    if rt.crd_version is not None:
        cols: list[Obj] = [NAME_COL]
        pcs = rt.crd_version.get("additionalPrinterColumns")
        specs = []
        if pcs is None:
            pcs = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        for pc in pcs:
            cols.append({"name": pc["name"], "type": pc.get("type", "string"), "format": pc.get("format", ""),
                         "description": pc.get("description", ""), "priority": pc.get("priority", 0)})
            specs.append(pc)

        def row(o: Obj) -> list[Any]:
            return [o["metadata"]["name"]] + [_cell(eval_jsonpath(o, pc["jsonPath"]), pc.get("type", "string"))
                                              for pc in specs]
    elif rt.key in BUILTIN:
        cols, row = BUILTIN[rt.key]
    else:
        cols = [NAME_COL, AGE_COL]

        def row(o: Obj) -> list[Any]:
            return [o["metadata"]["name"], _age(o["metadata"].get("creationTimestamp"))]

    rows = []
    for o in items:
        r: Obj = {"cells": row(o)}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o["metadata"]}
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": cols,
            "rows": rows}
