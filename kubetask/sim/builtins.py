"""Defaulting and validation of built-in kinds (the subset the sim's users exercise)."""

from __future__ import annotations

import copy
from typing import Any

from kubetask.sim.errors import FieldError
from kubetask.sim.schema import DNS_LABEL_MSG, DNS_SUB_MSG, is_dns_label, is_dns_subdomain

Obj = dict[str, Any]

#: Resources whose names must be DNS-1123 labels (the rest: subdomains).
LABEL_NAMED = {("", "namespaces"), ("", "services")}
#: Path-segment-only names (RBAC objects may contain ':' etc.).
PATH_NAMED = {("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
              ("rbac.authorization.k8s.io", "clusterroles"), ("rbac.authorization.k8s.io", "clusterrolebindings")}


def validate_name(key: tuple[str, str], name: str) -> list[FieldError]:
    """``metadata.name`` rules per resource, with the real messages."""
    if key in PATH_NAMED:
        if name in (".", "..") or "/" in name or "%" in name:
            return [FieldError("metadata.name", "Invalid value", "may not contain '/' or '%'", name, True)]
        return []
    if key == ("", "events") or key == ("events.k8s.io", "events"):
        return []  # event names are free-form-ish (involvedObject.name + "." + hex)
    if key in LABEL_NAMED:
        if not is_dns_label(name):
            if len(name) > 63:
                return [FieldError("metadata.name", "Invalid value", "must be no more than 63 characters",
                                   name, True)]
            return [FieldError("metadata.name", "Invalid value", DNS_LABEL_MSG, name, True)]
        return []
    errs: list[FieldError] = []
    if not is_dns_subdomain(name):
        if len(name) > 253:
            errs.append(FieldError("metadata.name", "Invalid value", "must be no more than 253 characters",
                                   name, True))
        else:
            errs.append(FieldError("metadata.name", "Invalid value", DNS_SUB_MSG, name, True))
    if key == ("batch", "jobs") and len(name) > 63:
        # The job name becomes the value of the job-name label, hence the label limit.
        errs.append(FieldError("metadata.name", "Invalid value", "must be no more than 63 characters",
                               name, True))
    return errs


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
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        tmpl = spec.setdefault("template", {})
        tmpl["spec"] = default_pod_spec(tmpl.get("spec") or {})
    elif key == ("", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
    elif key == ("", "services"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
    elif key == ("coordination.k8s.io", "leases"):
        obj.setdefault("spec", {})
    return obj


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

def _containers(spec: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    cs = spec.get("containers")
    if not cs:
        errs.append(FieldError(f"{path}.containers", "Required value", ""))
        return errs
    names: set[str] = set()
    for i, c in enumerate(cs):
        cp = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            continue
        n = c.get("name")
        if not n:
            errs.append(FieldError(f"{cp}.name", "Required value", ""))
        elif not is_dns_label(str(n)):
            errs.append(FieldError(f"{cp}.name", "Invalid value", DNS_LABEL_MSG, n, True))
        elif n in names:
            errs.append(FieldError(f"{cp}.name", "Duplicate value", "", n, True))
        names.add(str(n))
        if not c.get("image"):
            errs.append(FieldError(f"{cp}.image", "Required value", ""))
    rp = spec.get("restartPolicy")
    if rp not in (None, "Always", "OnFailure", "Never"):
        errs.append(FieldError(f"{path}.restartPolicy", "Unsupported value",
                               'supported values: "Always", "OnFailure", "Never"', rp, True))
    return errs


def validate_object(key: tuple[str, str], obj: Obj, old: Obj | None) -> list[FieldError]:
    """Kind-specific validation; returns field errors (empty when valid)."""
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    if key == ("", "pods"):
        errs.extend(_containers(spec, "spec"))
        if old is not None:
            ospec = old.get("spec") or {}
            # Pod spec updates may only change images, activeDeadlineSeconds and tolerations (additions).
            strip = ("containers", "initContainers", "activeDeadlineSeconds", "tolerations",
                     "terminationGracePeriodSeconds", "schedulingGates")
            a = {k: v for k, v in spec.items() if k not in strip}
            b = {k: v for k, v in ospec.items() if k not in strip}
            if a != b:
                errs.append(FieldError("spec", "Forbidden",
                                       "pod updates may not change fields other than `spec.containers[*].image`,"
                                       "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                                       "`spec.tolerations` (only additions to existing tolerations),"
                                       "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                                       "previously negative)"))
    elif key == ("batch", "jobs"):
        tmpl = spec.get("template") or {}
        tspec = tmpl.get("spec") or {}
        errs.extend(_containers(tspec, "spec.template.spec"))
        if tspec.get("restartPolicy") not in ("OnFailure", "Never"):
            errs.append(FieldError("spec.template.spec.restartPolicy", "Required value",
                                   'valid values: "OnFailure", "Never"'))
        for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds",
                  "ttlSecondsAfterFinished"):
            v = spec.get(f)
            if v is not None and isinstance(v, int) and v < (1 if f == "activeDeadlineSeconds" else 0):
                errs.append(FieldError(f"spec.{f}", "Invalid value",
                                       "must be greater than or equal to " + ("1" if f == "activeDeadlineSeconds"
                                                                               else "0"), v, True))
        if old is not None:
            ospec = old.get("spec") or {}
            for f in ("completions", "selector", "completionMode"):
                if f in ospec and spec.get(f) != ospec.get(f) and f != "completions":
                    errs.append(FieldError(f"spec.{f}", "Invalid value", "field is immutable", spec.get(f), True))
            if ospec.get("template") != spec.get("template") and old.get("status", {}).get("startTime") is not None:
                pass
            if (ospec.get("template") != spec.get("template")
                    and not (ospec.get("suspend") and (old.get("status") or {}).get("startTime") is None)):
                errs.append(FieldError("spec.template", "Invalid value", "field is immutable", "object", True))
    elif key[0] == "rbac.authorization.k8s.io":
        errs.extend(_rbac(key[1], obj, old))
    elif key == ("", "configmaps") or key == ("", "secrets"):
        data = obj.get("data") or {}
        for k in data:
            if not k or len(k) > 253 or not all(ch.isalnum() or ch in "-_." for ch in k):
                errs.append(FieldError(f"data[{k}]", "Invalid value",
                                       "a valid config key must consist of alphanumeric characters, '-', '_' "
                                       "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
                                       "for validation is '[-._a-zA-Z0-9]+')", k, True))
        if old is not None and old.get("immutable") and (
                old.get("data") != obj.get("data") or old.get("binaryData") != obj.get("binaryData")):
            errs.append(FieldError("data", "Forbidden", "field is immutable when `immutable` is set"))
    elif key == ("", "resourcequotas"):
        from kubernetes.utils.quantity import parse_quantity

        for k, v in (spec.get("hard") or {}).items():
            try:
                parse_quantity(v)  # type: ignore[no-untyped-call]
            except ValueError:
                errs.append(FieldError(f"spec.hard[{k}]", "Invalid value", "quantities must match the regular "
                                       "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'", v, True))
    elif key == ("", "serviceaccounts") or key == ("", "namespaces"):
        pass
    return errs


def _rbac(plural: str, obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if plural in ("roles", "clusterroles"):
        for i, r in enumerate(obj.get("rules") or ()):
            p = f"rules[{i}]"
            if not isinstance(r, dict):
                continue
            if not r.get("verbs"):
                errs.append(FieldError(f"{p}.verbs", "Required value", "verbs must contain at least one value"))
            if r.get("nonResourceURLs"):
                if plural == "roles":
                    errs.append(FieldError(f"{p}.nonResourceURLs", "Invalid value",
                                           "namespaced rules cannot apply to non-resource URLs",
                                           r["nonResourceURLs"], True))
                if r.get("apiGroups") or r.get("resources"):
                    errs.append(FieldError(f"{p}.nonResourceURLs", "Invalid value",
                                           "rules cannot apply to both regular resources and non-resource URLs",
                                           r["nonResourceURLs"], True))
            else:
                if not r.get("resources"):
                    errs.append(FieldError(f"{p}.resources", "Required value",
                                           "resource rules must supply at least one resource"))
                if r.get("apiGroups") is None:
                    errs.append(FieldError(f"{p}.apiGroups", "Required value",
                                           "resource rules must supply at least one api group"))
    else:
        rr = obj.get("roleRef") or {}
        if rr.get("apiGroup") != "rbac.authorization.k8s.io":
            errs.append(FieldError("roleRef.apiGroup", "Unsupported value",
                                   '"supported values: "rbac.authorization.k8s.io"', rr.get("apiGroup", ""), True))
        kinds = ("Role", "ClusterRole") if plural == "rolebindings" else ("ClusterRole",)
        if rr.get("kind") not in kinds:
            errs.append(FieldError("roleRef.kind", "Unsupported value",
                                   "supported values: " + ", ".join(f'"{k}"' for k in kinds),
                                   rr.get("kind", ""), True))
        if not rr.get("name"):
            errs.append(FieldError("roleRef.name", "Required value", ""))
        for i, s in enumerate(obj.get("subjects") or ()):
            if not isinstance(s, dict):
                continue
            k = s.get("kind")
            if k not in ("ServiceAccount", "User", "Group"):
                errs.append(FieldError(f"subjects[{i}].kind", "Unsupported value",
                                       'supported values: "ServiceAccount", "User", "Group"', k, True))
            if not s.get("name"):
                errs.append(FieldError(f"subjects[{i}].name", "Required value", ""))
            if k == "ServiceAccount" and plural == "clusterrolebindings" and not s.get("namespace"):
                errs.append(FieldError(f"subjects[{i}].namespace", "Required value", ""))
        if old is not None and old.get("roleRef") != obj.get("roleRef"):
            errs.append(FieldError("roleRef", "Invalid value", "cannot change roleRef", rr, True))
    return errs
