"""Defaulting and validation of built-in kinds (the subset the sim's users exercise)."""

from __future__ import annotations

import base64
import copy
from typing import Any

from kubetask.sim import validation
from kubetask.sim.errors import FieldError

Obj = dict[str, Any]


def validate_name(key: tuple[str, str], meta: Obj) -> list[FieldError]:
    """``metadata.name`` / ``metadata.generateName`` rules per resource, with the real messages."""
    return validation.validate_name(key, meta)


# ------------------------------------------------------------------- defaults

def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod_spec(spec: Obj) -> Obj:
    spec = copy.deepcopy(spec)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", _image_pull_policy(str(c.get("image", ""))))
        c.setdefault("resources", {})
        res = c["resources"]
        # Requests default to limits when only limits are given (as the apiserver does).
        lim = res.get("limits") or {}
        if lim:
            req = res.setdefault("requests", {})
            for k, v in lim.items():
                req.setdefault(k, v)
        for p in c.get("ports") or ():
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
        for ev in c.get("env") or ():
            fr = ((ev or {}).get("valueFrom") or {}).get("fieldRef") if isinstance(ev, dict) else None
            if isinstance(fr, dict):
                fr.setdefault("apiVersion", "v1")
    return spec


def default_object(key: tuple[str, str], obj: Obj) -> Obj:
    """Apply scheme defaults for built-in kinds (a pragmatic subset of the real ones)."""
    if key == ("", "pods"):
        obj["spec"] = default_pod_spec(obj.get("spec") or {})
        spec = obj["spec"]
        if spec.get("serviceAccountName") is None and spec.get("serviceAccount"):
            spec["serviceAccountName"] = spec["serviceAccount"]
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        tgp = spec.get("terminationGracePeriodSeconds")
        if isinstance(tgp, int) and tgp < 0:
            spec["terminationGracePeriodSeconds"] = 1  # the pod strategy turns negative grace periods into 1
    elif key == ("batch", "jobs"):
        spec = obj.setdefault("spec", {})
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
            spec["parallelism"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("manualSelector", None)
        if spec.get("manualSelector") is None:
            spec.pop("manualSelector")
        spec.setdefault("podReplacementPolicy",
                        "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed")
        tmpl = spec.setdefault("template", {})
        tmpl["spec"] = default_pod_spec(tmpl.get("spec") or {})
    elif key == ("", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            # stringData is write-only: the apiserver merges it into data (base64) and never stores it.
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif key == ("", "services"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or ():
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
    elif key == ("", "limitranges"):
        for item in (obj.get("spec") or {}).get("limits") or ():
            if isinstance(item, dict):
                _default_limit_range_item(item)
    elif key == ("rbac.authorization.k8s.io", "rolebindings") or key == (
            "rbac.authorization.k8s.io", "clusterrolebindings"):
        for subj in obj.get("subjects") or ():
            if isinstance(subj, dict) and not subj.get("apiGroup") and subj.get("kind") in ("User", "Group"):
                subj["apiGroup"] = "rbac.authorization.k8s.io"
    elif key[0] == "admissionregistration.k8s.io" and key[1].endswith("webhookconfigurations"):
        for wh in obj.get("webhooks") or ():
            if isinstance(wh, dict):
                _default_webhook(wh, key[1].startswith("mutating"))
    elif key == ("coordination.k8s.io", "leases"):
        obj.setdefault("spec", {})
    return obj


def _default_limit_range_item(item: Obj) -> None:
    """``SetDefaults_LimitRangeItem``: for containers, default ← max, defaultRequest ← default ← min."""
    if item.get("type") != "Container":
        return
    default = item.setdefault("default", {})
    dreq = item.setdefault("defaultRequest", {})
    for k, v in (item.get("max") or {}).items():
        default.setdefault(k, v)
    for k, v in default.items():
        dreq.setdefault(k, v)
    for k, v in (item.get("min") or {}).items():
        dreq.setdefault(k, v)
    for f in ("default", "defaultRequest"):
        if not item[f]:
            del item[f]


def _default_webhook(wh: Obj, mutating: bool) -> None:
    """``admissionregistration/v1`` webhook defaults."""
    wh.setdefault("failurePolicy", "Fail")
    wh.setdefault("matchPolicy", "Equivalent")
    wh.setdefault("namespaceSelector", {})
    wh.setdefault("objectSelector", {})
    wh.setdefault("timeoutSeconds", 10)
    if mutating:
        wh.setdefault("reinvocationPolicy", "Never")
    for r in wh.get("rules") or ():
        if isinstance(r, dict):
            r.setdefault("scope", "*")
    svc = (wh.get("clientConfig") or {}).get("service")
    if isinstance(svc, dict):
        svc.setdefault("port", 443)


def initial_status(key: tuple[str, str], obj: Obj) -> Obj | None:
    """What a built-in's strategy sets as status on create (``None``: drop status)."""
    if key == ("", "pods"):
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if key == ("", "namespaces"):
        return {"phase": "Active"}
    if key == ("batch", "jobs"):
        return {}
    if key == ("", "nodes"):
        return dict(obj.get("status") or {})  # kubelets register nodes with status
    return None


def qos_class(spec: Obj) -> str:
    cs = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    req_all, lim_all, any_set = True, True, False
    for c in cs:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim:
                lim_all = False
            if r not in req or req.get(r) != lim.get(r):
                req_all = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if lim_all and req_all else "Burstable"


# ------------------------------------------------------------------ validation

def validate_object(key: tuple[str, str], obj: Obj, old: Obj | None, sub: str = "") -> list[FieldError]:
    """Kind-specific validation; returns field errors (empty when valid)."""
    return validation.validate(key, obj, old, sub)
