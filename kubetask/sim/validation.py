"""Validation of built-in kinds, after ``k8s.io/kubernetes`` ``pkg/apis/*/validation`` (1.36).

Rules, field paths and messages follow the real apiserver, so a write the sim accepts is one a
real cluster accepts too.  Everything here is a single pass over the object (O(object size)).

Entry point: :func:`validate` (called by the request pipeline after defaulting and mutating
admission, before validating admission).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from kubernetes.utils.quantity import parse_quantity

from kubetask.sim.errors import ApiError, FieldError
from kubetask.sim.keys import K_JOBS, K_PODS

Obj = dict[str, Any]
Errs = list[FieldError]

# ============================================================== error helpers


def inv(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "Invalid value", detail, value, True)


def req(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "Required value", detail)


def forb(path: str, detail: str) -> FieldError:
    return FieldError(path, "Forbidden", detail)


def dup(path: str, value: Any) -> FieldError:
    return FieldError(path, "Duplicate value", "", value, True)


def notfound(path: str, value: Any) -> FieldError:
    return FieldError(path, "Not found", "", value, True)


def unsup(path: str, value: Any, valid: Iterable[str]) -> FieldError:
    return FieldError(path, "Unsupported value", "supported values: " + ", ".join(json.dumps(v) for v in valid),
                      value, True)


def toolong(path: str, n: int) -> FieldError:
    return FieldError(path, "Too long", f"must have at most {n} bytes")


class DecodeError(Exception):
    """A value the real apiserver cannot even decode (answered 400, not 422)."""


# ============================================================== string formats
# (k8s.io/apimachinery/pkg/util/validation and pkg/api/validate/content)

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_RE = re.compile("^" + _LABEL_KEY_FMT + "$")
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + "$")
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile("^" + _DNS_LABEL_FMT + "$")
_DNS_SUB_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_DNS_SUB_RE = re.compile("^" + _DNS_SUB_FMT + "$")
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_RE = re.compile("^" + _DNS1035_FMT + "$")
_CM_KEY_FMT = "[-._a-zA-Z0-9]+"
_CM_KEY_RE = re.compile("^" + _CM_KEY_FMT + "$")
_PORT_NAME_CHARS = re.compile("^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile("[a-z]")
_C_IDENT_RE = re.compile("^[A-Za-z_][A-Za-z0-9_]*$")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, e in enumerate(examples):
        if i:
            msg += " or "
        msg += f"'{e}', "
    return msg + f"regex used for validation is '{fmt}')"


def max_len(n: int, unit: str = "characters") -> str:
    return f"must be no more than {n} {unit}"


def inclusive_range(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


_DNS_LABEL_MSG = regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                             "'-', and must start and end with an alphanumeric character", _DNS_LABEL_FMT,
                             "my-name", "123-abc")
_DNS_SUB_MSG = regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                           "'-' or '.', and must start and end with an alphanumeric character", _DNS_SUB_FMT,
                           "example.com")
_DNS1035_MSG = regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                           "with an alphabetic character, and end with an alphanumeric character", _DNS1035_FMT,
                           "my-name", "abc-123")
_LABEL_KEY_MSG = regex_error("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                             "with an alphanumeric character", _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
_LABEL_VALUE_MSG = regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                               "'_' or '.', and must start and end with an alphanumeric character",
                               _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
_CM_KEY_MSG = regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                          _CM_KEY_FMT, "key.name", "KEY_NAME", "key-name")


def dns_label(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append(max_len(63))
    if not _DNS_LABEL_RE.match(s):
        errs.append("must not contain dots" if _DNS_SUB_RE.match(s) else _DNS_LABEL_MSG)
    return errs


def dns_subdomain(s: str) -> list[str]:
    errs = []
    if len(s) > 253:
        errs.append(max_len(253))
    if not _DNS_SUB_RE.match(s):
        errs.append(_DNS_SUB_MSG)
    return errs


def dns1035_label(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append(max_len(63))
    if not _DNS1035_RE.match(s):
        errs.append(_DNS1035_MSG)
    return errs


def qualified_name(s: str) -> list[str]:
    """``IsQualifiedName`` / ``IsLabelKey``: optional DNS-subdomain prefix, '/', name ≤ 63."""
    errs: list[str] = []
    parts = s.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns_subdomain(prefix))
    else:
        return ["a valid label key " + _LABEL_KEY_MSG + " with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len(63, "bytes"))
    if not _LABEL_KEY_RE.match(name):
        errs.append("name part " + _LABEL_KEY_MSG)
    return errs


def label_value(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append(max_len(63, "bytes"))
    if not _LABEL_VALUE_RE.match(s):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def config_map_key(s: str) -> list[str]:
    errs = []
    if len(s) > 253:
        errs.append(max_len(253))
    if not _CM_KEY_RE.match(s):
        errs.append(_CM_KEY_MSG)
    if s == ".":
        errs.append("must not be '.'")
    elif s == "..":
        errs.append("must not be '..'")
    elif s.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def relaxed_env_name(s: str) -> list[str]:
    """``IsRelaxedEnvVarName`` (RelaxedEnvironmentVariableValidation, GA in 1.34)."""
    if not s:
        return ["environment variable name must be non-empty"]
    if any(not (32 <= ord(ch) < 127) or ch == "=" for ch in s):
        return ["a valid environment variable name must consist only of printable ASCII characters other "
                "than '='"]
    return []


def port_name(s: str) -> list[str]:
    errs = []
    if len(s) > 15:
        errs.append(max_len(15))
    if not _PORT_NAME_CHARS.match(s):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(s):
        errs.append("must contain at least one letter (a-z)")
    if "--" in s:
        errs.append("must not contain consecutive hyphens")
    if s and (s[0] == "-" or s[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def path_segment(s: str) -> list[str]:
    """``path.IsValidPathSegmentName`` (RBAC names, ...)."""
    if s in (".", ".."):
        return [f"may not be '{s}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in s:
            errs.append(f"may not contain '{bad}'")
    return errs


def _mask_trailing_dash(s: str) -> str:
    return s[:-1] + "a" if len(s) > 1 and s.endswith("-") else s


# ============================================================== generic fields


def validate_labels(labels: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(labels, dict):
        return errs
    for k, v in labels.items():
        for m in qualified_name(str(k)):
            errs.append(inv(path, k, m))
        if not isinstance(v, str):
            errs.append(inv(path, v, "must be a string"))
            continue
        for m in label_value(v):
            errs.append(inv(path, v, m))
    return errs


def validate_annotations(ann: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(ann, dict):
        return errs
    size = 0
    for k, v in ann.items():
        for m in qualified_name(str(k).lower()):
            errs.append(inv(path, k, m))
        size += len(str(k).encode()) + len(str(v).encode())
    if size > 256 * 1024:
        errs.append(toolong(path, 256 * 1024))
    return errs


def validate_label_name(key: Any, path: str) -> Errs:
    return [inv(path, key, m) for m in qualified_name(str(key))]


def validate_label_selector(sel: Any, path: str) -> Errs:
    """``metav1validation.ValidateLabelSelector``."""
    errs: Errs = []
    if not isinstance(sel, dict):
        return errs
    for i, r in enumerate(sel.get("matchExpressions") or ()):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(r, dict):
            continue
        op, vals = r.get("operator"), r.get("values") or []
        if op in ("In", "NotIn"):
            if not vals:
                errs.append(req(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errs.append(forb(f"{p}.values", "may not be specified when `operator` is 'Exists' or "
                                                "'DoesNotExist'"))
        else:
            errs.append(unsup(f"{p}.operator", op, ["In", "NotIn", "Exists", "DoesNotExist"]))
        errs.extend(validate_label_name(r.get("key", ""), f"{p}.key"))
        for j, v in enumerate(vals):
            errs.extend(inv(f"{p}.values[{j}]", v, m) for m in label_value(str(v)))
    errs.extend(validate_labels(sel.get("matchLabels"), f"{path}.matchLabels"))
    return errs


def selector_matches(sel: Obj | None, labels: dict[str, str]) -> bool:
    if not sel:
        return False  # an empty selector matches nothing for controllers
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for r in sel.get("matchExpressions") or ():
        k, op, vals = r.get("key"), r.get("operator"), r.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def nonneg(obj: Obj, field: str, path: str) -> Errs:
    v = obj.get(field)
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        return [inv(f"{path}.{field}", v, "must be greater than or equal to 0")]
    return []


def quantity(v: Any) -> Decimal:
    """Parse a quantity; raises :class:`DecodeError` like the apiserver's decoder would."""
    try:
        return Decimal(parse_quantity(v))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation) as e:
        raise DecodeError("quantities must match the regular expression "
                          "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") from e


# ============================================================== ObjectMeta

#: Resources whose names must be DNS-1123 labels / DNS-1035 labels / path segments.
LABEL_NAMED = {("", "namespaces")}
DNS1035_NAMED = {("", "services")}
PATH_NAMED = {("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
              ("rbac.authorization.k8s.io", "clusterroles"), ("rbac.authorization.k8s.io", "clusterrolebindings")}


def name_errors(key: tuple[str, str], name: str, prefix: bool = False) -> list[str]:
    """The per-kind ``nameFn`` (``prefix``: validating a generateName)."""
    if key in PATH_NAMED:
        return path_segment(name)
    if key == ("", "events"):
        return []  # legacy core/v1 events skip ObjectMeta name validation
    if prefix:
        name = _mask_trailing_dash(name)
    if key in LABEL_NAMED:
        return dns_label(name)
    if key in DNS1035_NAMED:
        return dns1035_label(name)
    return dns_subdomain(name)


def validate_name(key: tuple[str, str], meta: Obj) -> Errs:
    errs: Errs = []
    gen = meta.get("generateName")
    if gen:
        errs.extend(inv("metadata.generateName", gen, m) for m in name_errors(key, str(gen), True))
    name = meta.get("name")
    if not name:
        errs.append(req("metadata.name", "name or generateName is required"))
    else:
        errs.extend(inv("metadata.name", name, m) for m in name_errors(key, str(name)))
    return errs


def validate_meta(meta: Obj) -> Errs:
    """The parts of ObjectMeta validated on create and update, for every kind (custom ones too)."""
    errs: Errs = []
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), "metadata.annotations"))
    refs = meta.get("ownerReferences") or []
    first_controller = ""
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        p = "metadata.ownerReferences"
        av, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        version = av.rpartition("/")[2] if av.count("/") <= 1 else ""
        if not version:
            errs.append(inv(f"{p}.apiVersion", av, "version must not be empty"))
        if not kind:
            errs.append(inv(f"{p}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            errs.append(inv(f"{p}.name", ref.get("name") or "", "must not be empty"))
        if not ref.get("uid"):
            errs.append(inv(f"{p}.uid", ref.get("uid") or "", "must not be empty"))
        if av == "v1" and kind == "Event":
            errs.append(inv(p, ref, "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller"):
            cur = f"{kind}/{ref.get('name', '')}"
            if first_controller:
                errs.append(inv(p, refs, 'Only one reference can have Controller set to true. Found "true" in '
                                         f"references for {first_controller} and {cur}"))
            else:
                first_controller = cur
    fins = meta.get("finalizers") or []
    for f in fins:
        errs.extend(inv("metadata.finalizers", f, m) for m in qualified_name(str(f)))
    if "orphan" in fins and "foregroundDeletion" in fins:
        errs.append(inv("metadata.finalizers", fins, "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


# ============================================================== resources

_STD_CONTAINER_RES = {"cpu", "memory", "ephemeral-storage"}
_STD_RES = _STD_CONTAINER_RES | {
    "requests.cpu", "requests.memory", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage", "pods", "services", "replicationcontrollers", "resourcequotas", "secrets",
    "configmaps", "persistentvolumeclaims", "storage", "requests.storage", "services.nodeports",
    "services.loadbalancers"}
_STD_QUOTA_RES = {
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "cpu", "memory",
    "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage", "requests.ephemeral-storage",
    "limits.cpu", "limits.memory", "limits.ephemeral-storage"}
_INTEGER_RES = {"pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"}


def _hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def is_extended(name: str) -> bool:
    return (not is_native(name) and not name.startswith("requests.")
            and not qualified_name("requests." + name))


def overcommit_allowed(name: str) -> bool:
    return is_native(name) and not _hugepages(name)


def _resource_name(name: str, path: str) -> Errs:
    errs = [inv(path, name, m) for m in qualified_name(name)]
    if errs:
        return errs
    if "/" not in name and not (name in _STD_RES or _hugepages(name) or name.startswith("requests.hugepages-")
                                or name.startswith("limits.hugepages-")):
        errs.append(inv(path, name, "must be a standard resource type or fully qualified"))
    return errs


def container_resource_name(name: str, path: str) -> Errs:
    errs = _resource_name(name, path)
    if "/" not in name:
        if not (name in _STD_CONTAINER_RES or _hugepages(name)):
            errs.append(inv(path, name, "must be a standard resource for containers"))
    elif not is_native(name) and not is_extended(name):
        errs.append(inv(path, name, "doesn't follow extended resource name standard"))
    return errs


def quantity_value(name: str, v: Any, path: str) -> tuple[Decimal, Errs]:
    d = quantity(v)
    errs: Errs = []
    if d < 0:
        errs.append(inv(path, str(v), "must be greater than or equal to 0"))
    if (name in _INTEGER_RES or is_extended(name)) and (d * 1000) % 1000 != 0:
        errs.append(inv(path, str(v), "must be an integer"))
    return d, errs


def validate_resource_requirements(res: Any, path: str) -> Errs:
    """``ValidateContainerResourceRequirements``."""
    errs: Errs = []
    if not isinstance(res, dict):
        return errs
    lim_path, req_path = f"{path}.limits", f"{path}.requests"
    limits: dict[str, Decimal] = {}
    for r, v in (res.get("limits") or {}).items():
        p = f"{lim_path}[{r}]"
        errs.extend(container_resource_name(r, p))
        d, e = quantity_value(r, v, p)
        errs.extend(e)
        limits[r] = d
    for r, v in (res.get("requests") or {}).items():
        p = f"{req_path}[{r}]"
        errs.extend(container_resource_name(r, p))
        d, e = quantity_value(r, v, p)
        errs.extend(e)
        if r in limits:
            lim_v = res["limits"][r]
            if d != limits[r] and not overcommit_allowed(r):
                errs.append(inv(req_path, str(v), f"must be equal to {r} limit of {lim_v}"))
            elif d > limits[r]:
                errs.append(inv(req_path, str(v), f"must be less than or equal to {r} limit of {lim_v}"))
        elif not overcommit_allowed(r):
            errs.append(req(lim_path, "Limit must be set for non overcommitable resources"))
    return errs


# ============================================================== pod spec

VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI",
    "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image")
_FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
_FIELD_REF_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                    "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                    "status.hostIPs", "status.podIP", "status.podIPs")
_RESOURCE_FIELD_REFS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                        "requests.ephemeral-storage", "requests.memory")
_TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
MAX_INT32 = 2147483647


def _mode(v: Any, path: str) -> Errs:
    if isinstance(v, int) and not (0 <= v <= 0o777):
        return [inv(path, v, _FILE_MODE_MSG)]
    return []


def _key_to_paths(items: Any, path: str) -> Errs:
    errs: Errs = []
    for i, kp in enumerate(items or ()):
        p = f"{path}[{i}]"
        if not isinstance(kp, dict):
            continue
        if not kp.get("key"):
            errs.append(req(f"{p}.key", ""))
        if not kp.get("path"):
            errs.append(req(f"{p}.path", ""))
        else:
            errs.extend(_local_path(str(kp["path"]), f"{p}.path"))
        errs.extend(_mode(kp.get("mode"), f"{p}.mode"))
    return errs


def _local_path(s: str, path: str) -> Errs:
    errs: Errs = []
    if s.startswith("/"):
        errs.append(inv(path, s, "must be a relative path"))
    if ".." in s.split("/"):
        errs.append(inv(path, s, "must not contain '..'"))
    if s.startswith(".."):
        errs.append(inv(path, s, "must not start with '..'"))
    return errs


def validate_volumes(vols: Any, path: str) -> tuple[set[str], Errs]:
    errs: Errs = []
    names: set[str] = set()
    for i, v in enumerate(vols or ()):
        p = f"{path}[{i}]"
        if not isinstance(v, dict):
            continue
        found = 0
        for src in VOLUME_SOURCES:
            if v.get(src) is None:
                continue
            if found:
                errs.append(forb(f"{p}.{src}", "may not specify more than 1 volume type"))
                continue
            found += 1
            s = v[src] if isinstance(v[src], dict) else {}
            sp = f"{p}.{src}"
            if src == "configMap":
                if not s.get("name"):
                    errs.append(req(f"{sp}.name", ""))
                errs.extend(_mode(s.get("defaultMode"), f"{sp}.defaultMode"))
                errs.extend(_key_to_paths(s.get("items"), f"{sp}.items"))
            elif src == "secret":
                if not s.get("secretName"):
                    errs.append(req(f"{sp}.secretName", ""))
                errs.extend(_mode(s.get("defaultMode"), f"{sp}.defaultMode"))
                errs.extend(_key_to_paths(s.get("items"), f"{sp}.items"))
            elif src == "persistentVolumeClaim":
                if not s.get("claimName"):
                    errs.append(req(f"{sp}.claimName", ""))
            elif src == "hostPath":
                if not s.get("path"):
                    errs.append(req(f"{sp}.path", ""))
                t = s.get("type")
                valid = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                         "FileOrCreate", "Socket"]
                if t is not None and t not in valid:
                    errs.append(unsup(f"{sp}.type", t, valid))
            elif src == "nfs":
                if not s.get("server"):
                    errs.append(req(f"{sp}.server", ""))
                if not s.get("path"):
                    errs.append(req(f"{sp}.path", ""))
                elif not str(s["path"]).startswith("/"):
                    errs.append(inv(f"{sp}.path", s["path"], "must be an absolute path"))
            elif src == "emptyDir":
                if s.get("sizeLimit") is not None:
                    d = quantity(s["sizeLimit"])
                    if d < 0:
                        errs.append(inv(f"{sp}.sizeLimit", str(s["sizeLimit"]), "must be greater than or equal to 0"))
            elif src == "csi" and not s.get("driver"):
                errs.append(req(f"{sp}.driver", ""))
        if not found:
            errs.append(req(p, "must specify a volume type"))
        name = v.get("name")
        if not name:
            errs.append(req(f"{p}.name", ""))
        else:
            errs.extend(inv(f"{p}.name", name, m) for m in dns_label(str(name)))
            if name in names:
                errs.append(dup(f"{p}.name", name))
            names.add(str(name))
    return names, errs


def _env(env: Any, path: str) -> Errs:
    errs: Errs = []
    for i, ev in enumerate(env or ()):
        p = f"{path}[{i}]"
        if not isinstance(ev, dict):
            continue
        name = ev.get("name")
        if not name:
            errs.append(req(f"{p}.name", ""))
        else:
            errs.extend(inv(f"{p}.name", name, m) for m in relaxed_env_name(str(name)))
        vf = ev.get("valueFrom")
        if vf is None:
            continue
        vp = f"{p}.valueFrom"
        vf = vf if isinstance(vf, dict) else {}
        n = sum(1 for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
                if vf.get(k) is not None)
        if n == 0:
            errs.append(inv(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                    "`secretKeyRef`"))
            continue
        if ev.get("value"):
            errs.append(inv(vp, "", "may not be specified when `value` is not empty"))
        if n > 1:
            errs.append(inv(vp, "", "may not have more than one field specified at a time"))
            continue
        if vf.get("fieldRef") is not None:
            fr = vf["fieldRef"]
            fp = f"{vp}.fieldRef"
            if not fr.get("apiVersion"):
                errs.append(req(f"{fp}.apiVersion", ""))
            fpath = fr.get("fieldPath")
            if not fpath:
                errs.append(req(f"{fp}.fieldPath", ""))
            else:
                base = str(fpath).split("[", 1)[0]
                if "[" in str(fpath) and base in ("metadata.labels", "metadata.annotations"):
                    pass
                elif fpath not in _FIELD_REF_PATHS or fpath in ("metadata.labels", "metadata.annotations"):
                    errs.append(unsup(f"{fp}.fieldPath", fpath, [*_FIELD_REF_PATHS]))
        elif vf.get("resourceFieldRef") is not None:
            rf = vf["resourceFieldRef"]
            r = rf.get("resource")
            if not r:
                errs.append(req(f"{vp}.resourceFieldRef.resource", ""))
            elif r not in _RESOURCE_FIELD_REFS and not str(r).startswith(("limits.hugepages-",
                                                                            "requests.hugepages-")):
                errs.append(unsup(f"{vp}.resourceFieldRef.resource", r, _RESOURCE_FIELD_REFS))
        else:
            for k in ("configMapKeyRef", "secretKeyRef"):
                ref = vf.get(k)
                if ref is None:
                    continue
                rp = f"{vp}.{k}"
                if ref.get("name"):
                    errs.extend(inv(f"{rp}.name", ref["name"], m) for m in dns_subdomain(str(ref["name"])))
                if not ref.get("key"):
                    errs.append(req(f"{rp}.key", ""))
                else:
                    errs.extend(inv(f"{rp}.key", ref["key"], m) for m in config_map_key(str(ref["key"])))
    return errs


def _env_from(env_from: Any, path: str) -> Errs:
    errs: Errs = []
    for i, ef in enumerate(env_from or ()):
        p = f"{path}[{i}]"
        if not isinstance(ef, dict):
            continue
        if ef.get("prefix"):
            errs.extend(inv(f"{p}.prefix", ef["prefix"], m) for m in relaxed_env_name(str(ef["prefix"])))
        srcs = [k for k in ("configMapRef", "secretRef") if ef.get(k) is not None]
        if not srcs:
            errs.append(inv(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(srcs) > 1:
            errs.append(inv(p, "", "may not have more than one field specified at a time"))
        else:
            ref = ef[srcs[0]]
            if ref.get("name"):
                errs.extend(inv(f"{p}.{srcs[0]}.name", ref["name"], m) for m in dns_subdomain(str(ref["name"])))
    return errs


def _ports(ports: Any, path: str) -> Errs:
    errs: Errs = []
    names: set[str] = set()
    for i, pt in enumerate(ports or ()):
        p = f"{path}[{i}]"
        if not isinstance(pt, dict):
            continue
        if pt.get("name"):
            n = str(pt["name"])
            errs.extend(inv(f"{p}.name", n, m) for m in port_name(n))
            if n in names:
                errs.append(dup(f"{p}.name", n))
            names.add(n)
        cp = pt.get("containerPort")
        if not cp:
            errs.append(req(f"{p}.containerPort", ""))
        elif not (1 <= cp <= 65535):
            errs.append(inv(f"{p}.containerPort", cp, inclusive_range(1, 65535)))
        hp = pt.get("hostPort")
        if hp and not (1 <= hp <= 65535):
            errs.append(inv(f"{p}.hostPort", hp, inclusive_range(1, 65535)))
        proto = pt.get("protocol")
        if not proto:
            errs.append(req(f"{p}.protocol", ""))
        elif proto not in ("SCTP", "TCP", "UDP"):
            errs.append(unsup(f"{p}.protocol", proto, ["SCTP", "TCP", "UDP"]))
    return errs


def _id_range(sc: Obj, field: str, path: str) -> Errs:
    v = sc.get(field)
    if isinstance(v, int) and not (0 <= v <= MAX_INT32):
        return [inv(f"{path}.{field}", v, inclusive_range(0, MAX_INT32))]
    return []


def _container_security_context(sc: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(sc, dict):
        return errs
    errs.extend(_id_range(sc, "runAsUser", path))
    errs.extend(_id_range(sc, "runAsGroup", path))
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged"):
            errs.append(inv(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
        if "CAP_SYS_ADMIN" in ((sc.get("capabilities") or {}).get("add") or ()):
            errs.append(inv(path, sc, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` "
                                      "CAP_SYS_ADMIN"))
    pm = sc.get("procMount")
    if pm is not None and pm not in ("Default", "Unmasked"):
        errs.append(unsup(f"{path}.procMount", pm, ["Default", "Unmasked"]))
    return errs


def _containers(cs: Any, path: str, volumes: set[str], names: set[str], required: bool) -> Errs:
    errs: Errs = []
    if not cs:
        if required:
            errs.append(req(path, ""))
        return errs
    for i, c in enumerate(cs):
        p = f"{path}[{i}]"
        if not isinstance(c, dict):
            continue
        n = c.get("name")
        if not n:
            errs.append(req(f"{p}.name", ""))
        else:
            errs.extend(inv(f"{p}.name", n, m) for m in dns_label(str(n)))
            if n in names:
                errs.append(dup(f"{p}.name", n))
            names.add(str(n))
        img = c.get("image")
        if not img:
            errs.append(req(f"{p}.image", ""))
        elif str(img).strip() != img:
            errs.append(inv(f"{p}.image", img, "must not have leading or trailing whitespace"))
        ipp = c.get("imagePullPolicy")
        if not ipp:
            errs.append(req(f"{p}.imagePullPolicy", ""))
        elif ipp not in ("Always", "IfNotPresent", "Never"):
            errs.append(unsup(f"{p}.imagePullPolicy", ipp, ["Always", "IfNotPresent", "Never"]))
        tmp = c.get("terminationMessagePolicy")
        if not tmp:
            errs.append(req(f"{p}.terminationMessagePolicy", "must be 'File' or 'FallbackToLogsOnError'"))
        elif tmp not in ("File", "FallbackToLogsOnError"):
            errs.append(inv(f"{p}.terminationMessagePolicy", tmp, "must be 'File' or 'FallbackToLogsOnError'"))
        errs.extend(_ports(c.get("ports"), f"{p}.ports"))
        errs.extend(_env(c.get("env"), f"{p}.env"))
        errs.extend(_env_from(c.get("envFrom"), f"{p}.envFrom"))
        mounts: set[str] = set()
        for j, vm in enumerate(c.get("volumeMounts") or ()):
            mp = f"{p}.volumeMounts[{j}]"
            if not isinstance(vm, dict):
                continue
            if not vm.get("name"):
                errs.append(req(f"{mp}.name", ""))
            elif vm["name"] not in volumes:
                errs.append(notfound(f"{mp}.name", vm["name"]))
            if not vm.get("mountPath"):
                errs.append(req(f"{mp}.mountPath", ""))
            elif vm["mountPath"] in mounts:
                errs.append(inv(f"{mp}.mountPath", vm["mountPath"], "must be unique"))
            else:
                mounts.add(vm["mountPath"])
            if vm.get("subPath"):
                errs.extend(_local_path(str(vm["subPath"]), f"{mp}.subPath"))
        errs.extend(validate_resource_requirements(c.get("resources"), f"{p}.resources"))
        errs.extend(_container_security_context(c.get("securityContext"), f"{p}.securityContext"))
    return errs


def _tolerations(tols: Any, path: str) -> Errs:
    errs: Errs = []
    for i, t in enumerate(tols or ()):
        p = f"{path}[{i}]"
        if not isinstance(t, dict):
            continue
        key, op, eff = t.get("key") or "", t.get("operator") or "", t.get("effect") or ""
        if key:
            errs.extend(validate_label_name(key, f"{p}.key"))
        if not key and op != "Exists":
            errs.append(inv(f"{p}.operator", op, 'operator must be Exists when `key` is empty, which means "match '
                                                 'all values and all keys"'))
        if t.get("tolerationSeconds") is not None and eff != "NoExecute":
            errs.append(inv(f"{p}.effect", eff, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op in ("Equal", ""):
            msgs = label_value(str(t.get("value") or ""))
            if msgs:
                errs.append(inv(f"{p}.operator", t.get("value"), ";".join(msgs)))
        elif op == "Exists":
            if t.get("value"):
                errs.append(inv(f"{p}.operator", t, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(unsup(f"{p}.operator", op, ["Equal", "Exists"]))
        if eff and eff not in _TAINT_EFFECTS:
            errs.append(unsup(f"{p}.effect", eff, _TAINT_EFFECTS))
    return errs


def _node_selector_term(term: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(term, dict):
        return errs
    for j, r in enumerate(term.get("matchExpressions") or ()):
        p = f"{path}.matchExpressions[{j}]"
        op, vals = r.get("operator"), r.get("values") or []
        if op in ("In", "NotIn"):
            if not vals:
                errs.append(req(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errs.append(forb(f"{p}.values", "may not be specified when `operator` is 'Exists' or "
                                                "'DoesNotExist'"))
        elif op in ("Gt", "Lt"):
            if len(vals) != 1:
                errs.append(req(f"{p}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        else:
            errs.append(unsup(f"{p}.operator", op, ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]))
        errs.extend(validate_label_name(r.get("key", ""), f"{p}.key"))
        for k, v in enumerate(vals):
            errs.extend(inv(f"{p}.values[{k}]", v, m) for m in label_value(str(v)))
    for j, r in enumerate(term.get("matchFields") or ()):
        p = f"{path}.matchFields[{j}]"
        if r.get("key") != "metadata.name":
            errs.append(inv(f"{p}.key", r.get("key"), "not a valid field selector key"))
        if r.get("operator") not in ("In", "NotIn"):
            errs.append(unsup(f"{p}.operator", r.get("operator"), ["In", "NotIn"]))
        if len(r.get("values") or []) != 1:
            errs.append(req(f"{p}.values", "must be only one value when `operator` is 'In' or 'NotIn' for node "
                                           "field selector"))
    return errs


def _pod_affinity_term(t: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(t, dict):
        return errs
    errs.extend(validate_label_selector(t.get("labelSelector"), f"{path}.labelSelector"))
    errs.extend(validate_label_selector(t.get("namespaceSelector"), f"{path}.namespaceSelector"))
    for i, ns in enumerate(t.get("namespaces") or ()):
        errs.extend(inv(f"{path}.namespaces[{i}]", ns, m) for m in dns_label(str(ns)))
    if not t.get("topologyKey"):
        errs.append(req(f"{path}.topologyKey", "can not be empty"))
    else:
        errs.extend(validate_label_name(t["topologyKey"], f"{path}.topologyKey"))
    return errs


def _affinity(aff: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(aff, dict):
        return errs
    na = aff.get("nodeAffinity")
    if isinstance(na, dict):
        np_ = f"{path}.nodeAffinity"
        rq = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(rq, dict):
            tp = f"{np_}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            terms = rq.get("nodeSelectorTerms") or []
            if not terms:
                errs.append(req(tp, "must have at least one node selector term"))
            for i, term in enumerate(terms):
                errs.extend(_node_selector_term(term, f"{tp}[{i}]"))
        for i, pt in enumerate(na.get("preferredDuringSchedulingIgnoredDuringExecution") or ()):
            pp = f"{np_}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            w = pt.get("weight")
            if not isinstance(w, int) or not (1 <= w <= 100):
                errs.append(inv(f"{pp}.weight", w, "must be in the range 1-100"))
            errs.extend(_node_selector_term(pt.get("preference"), f"{pp}.preference"))
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = aff.get(kind)
        if not isinstance(pa, dict):
            continue
        kp = f"{path}.{kind}"
        for i, t in enumerate(pa.get("requiredDuringSchedulingIgnoredDuringExecution") or ()):
            errs.extend(_pod_affinity_term(t, f"{kp}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"))
        for i, wt in enumerate(pa.get("preferredDuringSchedulingIgnoredDuringExecution") or ()):
            wp = f"{kp}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            w = wt.get("weight")
            if not isinstance(w, int) or not (1 <= w <= 100):
                errs.append(inv(f"{wp}.weight", w, "must be in the range 1-100"))
            errs.extend(_pod_affinity_term(wt.get("podAffinityTerm"), f"{wp}.podAffinityTerm"))
    return errs


def validate_pod_spec(spec: Obj, path: str) -> Errs:
    """``ValidatePodSpec`` (the parts kubetask and its users exercise)."""
    errs: Errs = []
    volumes, verrs = validate_volumes(spec.get("volumes"), f"{path}.volumes")
    errs.extend(verrs)
    names: set[str] = set()
    errs.extend(_containers(spec.get("containers"), f"{path}.containers", volumes, names, True))
    errs.extend(_containers(spec.get("initContainers"), f"{path}.initContainers", volumes, names, False))
    rp = spec.get("restartPolicy")
    if not rp:
        errs.append(req(f"{path}.restartPolicy", ""))
    elif rp not in ("Always", "OnFailure", "Never"):
        errs.append(unsup(f"{path}.restartPolicy", rp, ["Always", "OnFailure", "Never"]))
    dp = spec.get("dnsPolicy")
    if not dp:
        errs.append(req(f"{path}.dnsPolicy", ""))
    elif dp not in ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"):
        errs.append(unsup(f"{path}.dnsPolicy", dp, ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]))
    elif dp == "None" and not spec.get("dnsConfig"):
        errs.append(req(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    sa = spec.get("serviceAccountName")
    if sa:
        errs.extend(inv(f"{path}.serviceAccountName", sa, m) for m in dns_subdomain(str(sa)))
    if spec.get("nodeName"):
        errs.extend(inv(f"{path}.nodeName", spec["nodeName"], m) for m in dns_subdomain(str(spec["nodeName"])))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and isinstance(ads, int) and not (1 <= ads <= MAX_INT32):
        errs.append(inv(f"{path}.activeDeadlineSeconds", ads, inclusive_range(1, MAX_INT32)))
    for f in ("hostname", "subdomain"):
        if spec.get(f):
            errs.extend(inv(f"{path}.{f}", spec[f], m) for m in dns_label(str(spec[f])))
    if spec.get("priorityClassName"):
        errs.extend(inv(f"{path}.priorityClassName", spec["priorityClassName"], m)
                    for m in dns_subdomain(str(spec["priorityClassName"])))
    errs.extend(_tolerations(spec.get("tolerations"), f"{path}.tolerations"))
    errs.extend(_affinity(spec.get("affinity"), f"{path}.affinity"))
    psc = spec.get("securityContext")
    if isinstance(psc, dict):
        scp = f"{path}.securityContext"
        for f in ("runAsUser", "runAsGroup", "fsGroup"):
            errs.extend(_id_range(psc, f, scp))
        for i, g in enumerate(psc.get("supplementalGroups") or ()):
            if isinstance(g, int) and not (0 <= g <= MAX_INT32):
                errs.append(inv(f"{scp}.supplementalGroups[{i}]", g, inclusive_range(0, MAX_INT32)))
        fcp = psc.get("fsGroupChangePolicy")
        if fcp is not None and fcp not in ("OnRootMismatch", "Always"):
            errs.append(unsup(f"{scp}.fsGroupChangePolicy", fcp, ["OnRootMismatch", "Always"]))
    for i, s in enumerate(spec.get("imagePullSecrets") or ()):
        if isinstance(s, dict) and s.get("name"):
            errs.extend(inv(f"{path}.imagePullSecrets[{i}].name", s["name"], m) for m in dns_subdomain(str(s["name"])))
    return errs


def validate_pod_template(tmpl: Obj, path: str) -> Errs:
    """``ValidatePodTemplateSpec`` (labels at ``<path>.labels``, as real)."""
    meta = tmpl.get("metadata") or {}
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    spec = tmpl.get("spec") or {}
    errs.extend(validate_pod_spec(spec, f"{path}.spec"))
    if spec.get("ephemeralContainers"):
        errs.append(forb(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))
    return errs


_POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                   "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                   "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
                   "to 1 if it was previously negative)")


def _strip_images(cs: Any) -> list[Any]:
    out = []
    for c in cs or ():
        if isinstance(c, dict):
            c = {k: v for k, v in c.items() if k != "image"}
        out.append(c)
    return out


def validate_pod_update(new: Obj, old: Obj) -> Errs:
    """``ValidatePodUpdate``: only images, activeDeadlineSeconds, tolerations (additions), gates may change."""
    errs: Errs = []
    spec, ospec = new.get("spec") or {}, old.get("spec") or {}
    for kind in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(kind) or ()):
            if isinstance(c, dict) and not c.get("image"):
                errs.append(req(f"spec.{kind}[{i}].image", ""))
    nads, oads = spec.get("activeDeadlineSeconds"), ospec.get("activeDeadlineSeconds")
    if nads is not None:
        if not (0 <= nads <= MAX_INT32):
            errs.append(inv("spec.activeDeadlineSeconds", nads, inclusive_range(0, MAX_INT32)))
            return errs
        if oads is not None and oads < nads:
            errs.append(inv("spec.activeDeadlineSeconds", nads, "must be less than or equal to previous value"))
            return errs
    elif oads is not None:
        errs.append(inv("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    # Tolerations: existing ones may only change their tolerationSeconds.
    new_tols = [{k: v for k, v in t.items() if k != "tolerationSeconds"} for t in spec.get("tolerations") or ()
                if isinstance(t, dict)]
    for t in ospec.get("tolerations") or ():
        if isinstance(t, dict) and {k: v for k, v in t.items() if k != "tolerationSeconds"} not in new_tols:
            errs.append(forb("spec.tolerations", "existing toleration can not be modified except its "
                                                 "tolerationSeconds"))
            break
    ngates = [g.get("name") for g in spec.get("schedulingGates") or () if isinstance(g, dict)]
    ogates = [g.get("name") for g in ospec.get("schedulingGates") or () if isinstance(g, dict)]
    if any(g not in ogates for g in ngates):
        errs.append(forb("spec.schedulingGates", "only deletion is allowed, but found new scheduling gate '"
                         + str(next(g for g in ngates if g not in ogates)) + "'"))
    skip = {"containers", "initContainers", "activeDeadlineSeconds", "tolerations", "schedulingGates"}
    a = {k: v for k, v in spec.items() if k not in skip}
    b = {k: v for k, v in ospec.items() if k not in skip}
    ntgp, otgp = a.pop("terminationGracePeriodSeconds", None), b.pop("terminationGracePeriodSeconds", None)
    tgp_ok = ntgp == otgp or (otgp is not None and otgp < 0 and ntgp == 1)
    if (a != b or not tgp_ok or _strip_images(spec.get("containers")) != _strip_images(ospec.get("containers"))
            or _strip_images(spec.get("initContainers")) != _strip_images(ospec.get("initContainers"))):
        errs.append(forb("spec", _POD_UPDATE_MSG))
    return errs


# ============================================================== batch/v1 Job

JOB_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


def validate_job(job: Obj, old: Obj | None) -> Errs:
    errs: Errs = []
    meta, spec = job["metadata"], job.get("spec") or {}
    tmpl = spec.get("template") or {}
    tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
    # validateGeneratedSelector
    if not spec.get("manualSelector") and spec.get("selector") is not None:
        uid, name = meta.get("uid", ""), meta.get("name", "")
        if not uid:
            errs.append(req("metadata.uid", ""))
        expected = {"controller-uid": uid, "job-name": name, "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name}
        prefixed = old is None or "batch.kubernetes.io/job-name" in (
            ((old.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels", {})
        for k in JOB_LABELS:
            if not prefixed and k.startswith("batch."):
                continue
            if k not in tlabels:
                errs.append(req(f"spec.template.metadata.labels[{k}]", expected[k]))
            elif tlabels[k] != expected[k]:
                errs.append(inv(f"spec.template.metadata.labels[{k}]", tlabels, f"must be '{expected[k]}'"))
        if not selector_matches(spec["selector"], expected):
            errs.append(inv("spec.selector", spec["selector"], "`selector` not auto-generated"))
    errs.extend(_job_spec(spec, meta))
    if spec.get("completionMode") == "Indexed" and isinstance(spec.get("completions"), int) \
            and spec["completions"] > 0:
        host = f"{meta.get('name', '')}-{spec['completions'] - 1}"
        if dns_label(host):
            errs.append(inv("metadata.name", meta.get("name"), f"will not able to create pod with invalid DNS "
                                                              f"label: {host}"))
    if old is not None:
        errs.extend(_job_update(job, old))
    return errs


def _job_spec(spec: Obj, meta: Obj) -> Errs:
    errs: Errs = []
    for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
              "backoffLimitPerIndex", "maxFailedIndexes"):
        errs.extend(nonneg(spec, f, "spec"))
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(req("spec.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    cm = spec.get("completionMode")
    if cm is not None:
        if cm not in ("NonIndexed", "Indexed"):
            errs.append(unsup("spec.completionMode", cm, ["NonIndexed", "Indexed"]))
        if cm == "Indexed":
            if spec.get("completions") is None:
                errs.append(req("spec.completions", "when completion mode is Indexed"))
            par = spec.get("parallelism")
            if isinstance(par, int) and par > 100000:
                errs.append(inv("spec.parallelism", par, "must be less than or equal to 100000 when completion "
                                                         "mode is Indexed"))
    if cm in (None, "NonIndexed"):
        for f in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(f) is not None:
                errs.append(inv(f"spec.{f}", spec[f], "requires indexed completion mode"))
    if spec.get("managedBy") is not None:
        mb = str(spec["managedBy"])
        if "/" not in mb or not mb.split("/", 1)[0] or not mb.split("/", 1)[1]:
            errs.append(inv("spec.managedBy", mb, 'must be a domain-prefixed path (such as "acme.io/foo")'))
        if len(mb) > 63:
            errs.append(FieldError("spec.managedBy", "Too long", "may not be longer than 63"))
    pfp = spec.get("podFailurePolicy")
    if isinstance(pfp, dict):
        errs.extend(_pod_failure_policy(spec, pfp))
    if spec.get("successPolicy") is not None and cm != "Indexed":
        errs.append(inv("spec.successPolicy", spec["successPolicy"], "requires indexed completion mode"))
    prp = spec.get("podReplacementPolicy")
    if prp is not None:
        if pfp is not None:
            if prp != "Failed":
                errs.append(unsup("spec.podReplacementPolicy", prp, ["Failed"]))
        elif prp not in ("Failed", "TerminatingOrFailed"):
            errs.append(unsup("spec.podReplacementPolicy", prp, ["Failed", "TerminatingOrFailed"]))
    tmpl = spec.get("template") or {}
    errs.extend(validate_pod_template(tmpl, "spec.template"))
    rp = (tmpl.get("spec") or {}).get("restartPolicy")
    if rp in ("Always", "", None):
        errs.append(req("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"'))
    elif rp not in ("OnFailure", "Never"):
        errs.append(unsup("spec.template.spec.restartPolicy", rp, ["OnFailure", "Never"]))
    elif pfp is not None and rp != "Never":
        errs.append(inv("spec.template.spec.restartPolicy", rp, 'only "Never" is supported when podFailurePolicy '
                                                               "is specified"))
    sel = spec.get("selector")
    if sel is None:
        errs.append(req("spec.selector", ""))
    else:
        errs.extend(validate_label_selector(sel, "spec.selector"))
        tl = (tmpl.get("metadata") or {}).get("labels") or {}
        if not selector_matches(sel, tl):
            errs.append(inv("spec.template.metadata.labels", tl, "`selector` does not match template `labels`"))
    return errs


def _pod_failure_policy(spec: Obj, pfp: Obj) -> Errs:
    errs: Errs = []
    tspec = (spec.get("template") or {}).get("spec") or {}
    cnames = {c.get("name") for c in list(tspec.get("containers") or []) + list(tspec.get("initContainers") or [])
              if isinstance(c, dict)}
    rules = pfp.get("rules") or []
    if len(rules) > 20:
        errs.append(FieldError("spec.podFailurePolicy.rules", "Too many", "must have at most 20 items",
                               len(rules), True))
    actions = ["Count", "FailIndex", "FailJob", "Ignore"]
    for i, rule in enumerate(rules):
        rp = f"spec.podFailurePolicy.rules[{i}]"
        act = rule.get("action")
        if not act:
            errs.append(req(f"{rp}.action", "valid values: " + json.dumps(actions).replace(",", "")))
        elif act == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                errs.append(inv(f"{rp}.action", act, "requires the backoffLimitPerIndex to be set"))
        elif act not in actions:
            errs.append(unsup(f"{rp}.action", act, actions))
        oec, opc = rule.get("onExitCodes"), rule.get("onPodConditions") or []
        if isinstance(oec, dict):
            ep = f"{rp}.onExitCodes"
            op = oec.get("operator")
            if not op:
                errs.append(req(f"{ep}.operator", 'valid values: ["In" "NotIn"]'))
            elif op not in ("In", "NotIn"):
                errs.append(unsup(f"{ep}.operator", op, ["In", "NotIn"]))
            if oec.get("containerName") is not None and oec["containerName"] not in cnames:
                errs.append(inv(f"{ep}.containerName", oec["containerName"], "must be one of the container or "
                                                                           "initContainer names in the pod template"))
            vals = oec.get("values") or []
            if not vals:
                errs.append(inv(f"{ep}.values", vals, "at least one value is required"))
            seen: set[int] = set()
            for j, v in enumerate(vals):
                if op == "In" and v == 0:
                    errs.append(inv(f"{ep}.values[{j}]", v, "must not be 0 for the In operator"))
                if v in seen:
                    errs.append(dup(f"{ep}.values[{j}]", v))
                seen.add(v)
            if any(vals[j - 1] > vals[j] for j in range(1, len(vals))):
                errs.append(inv(f"{ep}.values", vals, "must be ordered"))
        for j, pc in enumerate(opc):
            pp = f"{rp}.onPodConditions[{j}]"
            errs.extend(inv(f"{pp}.type", pc.get("type"), m) for m in qualified_name(str(pc.get("type") or "")))
            st = pc.get("status")
            if not st:
                errs.append(req(f"{pp}.status", 'valid values: ["False" "True" "Unknown"]'))
            elif st not in ("False", "True", "Unknown"):
                errs.append(unsup(f"{pp}.status", st, ["False", "True", "Unknown"]))
        if oec is not None and opc:
            errs.append(FieldError(rp, "Invalid value", "specifying both OnExitCodes and OnPodConditions is not "
                                                       "supported"))
        if oec is None and not opc:
            errs.append(FieldError(rp, "Invalid value", "specifying one of OnExitCodes and OnPodConditions is "
                                                       "required"))
    return errs


def _job_update(job: Obj, old: Obj) -> Errs:
    errs: Errs = []
    spec, ospec = job.get("spec") or {}, old.get("spec") or {}
    indexed = spec.get("completionMode") == "Indexed"
    if spec.get("completions") != ospec.get("completions"):
        if not indexed:
            errs.append(inv("spec.completions", spec.get("completions"), "field is immutable"))
        elif spec.get("completions") is not None and spec.get("completions") != spec.get("parallelism"):
            errs.append(inv("spec.completions", spec.get("completions"),
                            "can only be modified in tandem with spec.parallelism"))
    for f in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy",
              "successPolicy"):
        if spec.get(f) != ospec.get(f):
            errs.append(inv(f"spec.{f}", spec.get(f), "field is immutable"))
    tmpl, otmpl = spec.get("template") or {}, ospec.get("template") or {}
    if tmpl != otmpl:
        ost = old.get("status") or {}
        if ospec.get("suspend") and ost.get("startTime") is None:
            # Suspended, never-started Jobs may change their scheduling directives (Kueue's pattern).
            otmpl = json.loads(json.dumps(otmpl))
            ts, ots = tmpl.get("spec") or {}, otmpl.setdefault("spec", {})
            na = (ts.get("affinity") or {}).get("nodeAffinity")
            oaff = ots.get("affinity")
            if ts.get("affinity") is None and oaff is not None:
                oaff.pop("nodeAffinity", None)
                if not oaff:
                    ots.pop("affinity")
            elif ts.get("affinity") is not None:
                oaff = ots.setdefault("affinity", {})
                if na is None:
                    oaff.pop("nodeAffinity", None)
                else:
                    oaff["nodeAffinity"] = na
            for f in ("nodeSelector", "tolerations", "schedulingGates"):
                if f in ts:
                    ots[f] = ts[f]
                else:
                    ots.pop(f, None)
            om = otmpl.setdefault("metadata", {})
            for f in ("labels", "annotations"):
                if f in (tmpl.get("metadata") or {}):
                    om[f] = tmpl["metadata"][f]
                else:
                    om.pop(f, None)
            if not om and not tmpl.get("metadata"):
                otmpl.pop("metadata")
        if _norm(tmpl) != _norm(otmpl):
            errs.append(inv("spec.template", tmpl, "field is immutable"))
    return errs


def _norm(o: Any) -> Any:
    """Drop empty maps/lists (Go's semantic DeepEqual treats nil and empty alike for these)."""
    if isinstance(o, dict):
        return {k: _norm(v) for k, v in o.items() if v not in ({}, [], None)}
    if isinstance(o, list):
        return [_norm(v) for v in o]
    return o


# ============================================================== core/v1 others

MAX_SECRET_SIZE = 1024 * 1024


def _decode_b64(v: Any) -> bytes:
    try:
        return base64.b64decode(str(v), validate=True)
    except (binascii.Error, ValueError) as e:
        raise DecodeError(f"illegal base64 data at input byte {_b64_bad_index(str(v))}") from e


def _b64_bad_index(s: str) -> int:
    ok = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for i, ch in enumerate(s):
        if ch not in ok:
            return i
    return max(0, len(s) - len(s) % 4)


def validate_configmap(obj: Obj, old: Obj | None) -> Errs:
    errs: Errs = []
    size = 0
    data = obj.get("data") or {}
    for k, v in data.items():
        errs.extend(inv(f"data[{k}]", k, m) for m in config_map_key(k))
        size += len(str(v).encode())
    for k, v in (obj.get("binaryData") or {}).items():
        errs.extend(inv(f"binaryData[{k}]", k, m) for m in config_map_key(k))
        if k in data:
            errs.append(inv(f"binaryData[{k}]", k, "duplicate of key present in data"))
        size += len(_decode_b64(v))
    if size > MAX_SECRET_SIZE:
        errs.append(toolong("", MAX_SECRET_SIZE))
    if old is not None and old.get("immutable"):
        if not obj.get("immutable"):
            errs.append(forb("immutable", "field is immutable when `immutable` is set"))
        if (old.get("data") or {}) != (obj.get("data") or {}):
            errs.append(forb("data", "field is immutable when `immutable` is set"))
        if (old.get("binaryData") or {}) != (obj.get("binaryData") or {}):
            errs.append(forb("binaryData", "field is immutable when `immutable` is set"))
    return errs


_SECRET_REQUIRED = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.key", "tls.crt"),
}


def validate_secret(obj: Obj, old: Obj | None) -> Errs:
    errs: Errs = []
    data = obj.get("data") or {}
    size = 0
    decoded: dict[str, bytes] = {}
    for k, v in data.items():
        errs.extend(inv(f"data[{k}]", k, m) for m in config_map_key(k))
        decoded[k] = _decode_b64(v)
        size += len(decoded[k])
    if size > MAX_SECRET_SIZE:
        errs.append(toolong("data", MAX_SECRET_SIZE))
    typ = obj.get("type") or "Opaque"
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    if typ == "kubernetes.io/service-account-token":
        if not ann.get("kubernetes.io/service-account.name"):
            errs.append(req("metadata.annotations[kubernetes.io/service-account.name]", ""))
    elif typ == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(req("data[username]", ""))
            errs.append(req("data[password]", ""))
    elif typ in _SECRET_REQUIRED:
        for k in _SECRET_REQUIRED[typ]:
            if k not in data:
                errs.append(req(f"data[{k}]", ""))
        for k in (".dockercfg", ".dockerconfigjson"):
            if typ.endswith(k.lstrip(".")) and k in decoded:
                try:
                    json.loads(decoded[k] or b"null")
                except ValueError as e:
                    errs.append(inv(f"data[{k}]", "<secret contents redacted>", str(e)))
    elif typ != "Opaque":
        errs.extend(inv("type", typ, m) for m in qualified_name(typ))
    if old is not None:
        if (old.get("type") or "Opaque") != typ:
            errs.append(inv("type", typ, "field is immutable"))
        if old.get("immutable"):
            if not obj.get("immutable"):
                errs.append(forb("immutable", "field is immutable when `immutable` is set"))
            if (old.get("data") or {}) != data:
                errs.append(forb("data", "field is immutable when `immutable` is set"))
    return errs


_STD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_namespace(obj: Obj) -> Errs:
    errs: Errs = []
    for f in (obj.get("spec") or {}).get("finalizers") or ():
        msgs = qualified_name(str(f))
        errs.extend(inv("spec.finalizers", f, m) for m in msgs)
        if not msgs and "/" not in str(f) and f not in _STD_FINALIZERS:
            errs.append(inv("spec.finalizers", f, "name is neither a standard finalizer name nor is it fully "
                                                  "qualified"))
    return errs


def validate_service(obj: Obj) -> Errs:
    errs: Errs = []
    spec = obj.get("spec") or {}
    typ = spec.get("type") or "ClusterIP"
    types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
    if typ not in types:
        errs.append(unsup("spec.type", typ, types))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless and typ != "ExternalName":
        errs.append(req("spec.ports", ""))
    names: set[str] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            continue
        n = p.get("name")
        if len(ports) > 1 and not n:
            errs.append(req(f"{pp}.name", ""))
        elif n:
            errs.extend(inv(f"{pp}.name", n, m) for m in dns_label(str(n)))
            if n in names:
                errs.append(dup(f"{pp}.name", n))
            names.add(str(n))
        port = p.get("port")
        if not isinstance(port, int) or not (1 <= port <= 65535):
            errs.append(inv(f"{pp}.port", port, inclusive_range(1, 65535)))
        proto = p.get("protocol") or "TCP"
        if proto not in ("SCTP", "TCP", "UDP"):
            errs.append(unsup(f"{pp}.protocol", proto, ["SCTP", "TCP", "UDP"]))
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"))
    return errs


_EVENT_V1_MAP = {"regarding": "involvedObject", "note": "message", "deprecatedSource": "source",
                 "deprecatedFirstTimestamp": "firstTimestamp", "deprecatedLastTimestamp": "lastTimestamp",
                 "deprecatedCount": "count"}


def validate_event(obj: Obj, old: Obj | None, strict: bool) -> Errs:
    """``legacyValidateEvent`` (+ the strict events.k8s.io/v1 rules when ``strict``)."""
    errs: Errs = []
    if strict:
        ev = {_EVENT_V1_MAP.get(k, k): v for k, v in obj.items()}
        rc_name = "reportingController"
    else:
        ev = obj
        rc_name = "reportingComponent"
        ev = dict(obj, reportingController=obj.get("reportingComponent"))
    ns = (obj.get("metadata") or {}).get("namespace", "")
    io = ev.get("involvedObject") or {}
    io_ns = io.get("namespace") or ""
    if not ev.get("eventTime"):
        if not io_ns:
            if ns not in ("", "default"):
                errs.append(inv("involvedObject.namespace", io_ns, "does not match event.namespace"))
        elif ns != io_ns:
            errs.append(inv("involvedObject.namespace", io_ns, "does not match event.namespace"))
    else:
        if not io_ns and ns not in ("default", "kube-system"):
            errs.append(inv("involvedObject.namespace", io_ns, "does not match event.namespace"))
        rc = ev.get("reportingController") or ""
        if not rc:
            errs.append(req(rc_name, ""))
        errs.extend(inv(rc_name, rc, m) for m in qualified_name(str(rc)))
        ri = ev.get("reportingInstance") or ""
        if not ri:
            errs.append(req("reportingInstance", ""))
        if len(ri) > 128:
            errs.append(inv("reportingInstance", "", "can have at most 128 characters"))
        act = ev.get("action") or ""
        if not act:
            errs.append(req("action", ""))
        if len(act) > 128:
            errs.append(inv("action", "", "can have at most 128 characters"))
        reason = ev.get("reason") or ""
        if not reason:
            errs.append(req("reason", ""))
        if len(reason) > 128:
            errs.append(inv("reason", "", "can have at most 128 characters"))
        if len(str(ev.get("message") or "")) > 1024:
            errs.append(inv("message", "", "can have at most 1024 characters"))
    errs.extend(inv("namespace", ns, m) for m in dns_subdomain(ns))
    if strict:
        if not ev.get("eventTime"):
            errs.append(req("eventTime", ""))
        if ev.get("type") not in ("Normal", "Warning"):
            errs.append(inv("type", "", f"has invalid value: {ev.get('type') or ''}"))
        for f in ("firstTimestamp", "lastTimestamp", "count", "source"):
            if ev.get(f):
                errs.append(inv(f, "", "needs to be unset"))
        series = ev.get("series")
        if isinstance(series, dict):
            if (series.get("count") or 0) < 2:
                errs.append(inv("series.count", "", "should be at least 2"))
            if not series.get("lastObservedTime"):
                errs.append(req("series.lastObservedTime", ""))
        if old is not None:
            oev = {_EVENT_V1_MAP.get(k, k): v for k, v in old.items()}
            for f in ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
                      "count", "type", "eventTime", "action", "related", "reportingController",
                      "reportingInstance"):
                if ev.get(f) != oev.get(f):
                    errs.append(inv(f, ev.get(f), "field is immutable"))
    return errs


_QUOTA_SCOPES = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
                 "Terminating", "VolumeAttributesClass"]


def validate_resource_quota(obj: Obj) -> Errs:
    errs: Errs = []
    spec = obj.get("spec") or {}
    for k, v in (spec.get("hard") or {}).items():
        p = f"spec.hard[{k}]"
        e = _resource_name(k, p)
        if "/" not in k and not (k in _STD_QUOTA_RES or k.startswith("requests.hugepages-")):
            e.append(inv(p, k, "must be a standard resource for quota"))
        errs.extend(e)
        errs.extend(quantity_value(k, v, p)[1])
    for i, s in enumerate(spec.get("scopes") or ()):
        if s not in _QUOTA_SCOPES:
            errs.append(unsup(f"spec.scopes[{i}]", s, _QUOTA_SCOPES))
    ss = spec.get("scopeSelector")
    if isinstance(ss, dict):
        for i, r in enumerate(ss.get("matchExpressions") or ()):
            p = f"spec.scopeSelector.matchExpressions[{i}]"
            if r.get("scopeName") not in _QUOTA_SCOPES:
                errs.append(unsup(f"{p}.scopeName", r.get("scopeName"), _QUOTA_SCOPES))
            op = r.get("operator")
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                errs.append(unsup(f"{p}.operator", op, ["In", "NotIn", "Exists", "DoesNotExist"]))
    for k, v in ((obj.get("status") or {}).get("hard") or {}).items():
        errs.extend(quantity_value(k, v, f"status.hard[{k}]")[1])
    return errs


def validate_limit_range(obj: Obj) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for i, item in enumerate((obj.get("spec") or {}).get("limits") or ()):
        p = f"spec.limits[{i}]"
        if not isinstance(item, dict):
            continue
        typ = str(item.get("type") or "")
        tmsgs = qualified_name(typ)
        errs.extend(inv(f"{p}.type", typ, m) for m in tmsgs)
        if not tmsgs and "/" not in typ and typ not in ("Pod", "Container", "PersistentVolumeClaim"):
            errs.append(inv(f"{p}.type", typ, "must be a standard limit type or fully qualified"))
        if typ in seen:
            errs.append(dup(f"{p}.type", typ))
        seen.add(typ)
        vals: dict[str, dict[str, Decimal]] = {}
        for f in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            vals[f] = {}
            for r, v in (item.get(f) or {}).items():
                fp = f"{p}.{f}[{r}]"
                if typ in ("Pod", "Container"):
                    errs.extend(container_resource_name(r, fp))
                else:
                    errs.extend(_resource_name(r, fp))
                d, e = quantity_value(r, v, fp)
                errs.extend(e)
                vals[f][r] = d
        if typ == "Pod":
            if item.get("default"):
                errs.append(forb(f"{p}.default", "may not be specified when `type` is 'Pod'"))
            if item.get("defaultRequest"):
                errs.append(forb(f"{p}.defaultRequest", "may not be specified when `type` is 'Pod'"))
        raw = {f: item.get(f) or {} for f in vals}
        keys = sorted(set().union(*[set(v) for v in vals.values()]))
        for k in keys:
            mn, mx = vals["min"].get(k), vals["max"].get(k)
            df, dr = vals["default"].get(k), vals["defaultRequest"].get(k)
            ratio = vals["maxLimitRequestRatio"].get(k)
            s_mn, s_mx = raw["min"].get(k), raw["max"].get(k)
            s_df, s_dr = raw["default"].get(k), raw["defaultRequest"].get(k)
            if mn is not None and mx is not None and mn > mx:
                errs.append(inv(f"{p}.min[{k}]", s_mn, f"min value {s_mn} is greater than max value {s_mx}"))
            if dr is not None and mn is not None and mn > dr:
                errs.append(inv(f"{p}.defaultRequest[{k}]", s_dr,
                                f"min value {s_mn} is greater than default request value {s_dr}"))
            if dr is not None and mx is not None and dr > mx:
                errs.append(inv(f"{p}.defaultRequest[{k}]", s_dr,
                                f"default request value {s_dr} is greater than max value {s_mx}"))
            if dr is not None and df is not None and dr > df:
                errs.append(inv(f"{p}.defaultRequest[{k}]", s_dr,
                                f"default request value {s_dr} is greater than default limit value {s_df}"))
            if df is not None and mn is not None and mn > df:
                errs.append(inv(f"{p}.default[{k}]", s_mn, f"min value {s_mn} is greater than default value {s_df}"))
            if df is not None and mx is not None and df > mx:
                errs.append(inv(f"{p}.default[{k}]", s_mx, f"default value {s_df} is greater than max value {s_mx}"))
            if ratio is not None and ratio < 1:
                errs.append(inv(f"{p}.maxLimitRequestRatio[{k}]", raw["maxLimitRequestRatio"].get(k),
                                f"ratio {raw['maxLimitRequestRatio'].get(k)} is less than 1"))
    return errs


def validate_node(obj: Obj, old: Obj | None) -> Errs:
    errs: Errs = []
    spec = obj.get("spec") or {}
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(spec.get("taints") or ()):
        p = f"spec.taints[{i}]"
        if not isinstance(t, dict):
            continue
        errs.extend(validate_label_name(t.get("key", ""), f"{p}.key"))
        msgs = label_value(str(t.get("value") or ""))
        if msgs:
            errs.append(inv(f"{p}.value", t.get("value"), ";".join(msgs)))
        eff = t.get("effect")
        if not eff:
            errs.append(req(f"{p}.effect", ""))
        elif eff not in _TAINT_EFFECTS:
            errs.append(unsup(f"{p}.effect", eff, _TAINT_EFFECTS))
        k = (str(t.get("key")), str(eff))
        if k in seen:
            errs.append(FieldError(p, "Duplicate value", "taints must be unique by key and effect pair", t, True))
        seen.add(k)
    if old is not None:
        ospec = old.get("spec") or {}
        if ospec.get("podCIDRs") and ospec.get("podCIDRs") != spec.get("podCIDRs"):
            errs.append(forb("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
        if ospec.get("providerID") and ospec.get("providerID") != spec.get("providerID"):
            errs.append(forb("spec.providerID", 'node updates may not change providerID except from "" to valid'))
    return errs


def validate_lease(obj: Obj) -> Errs:
    errs: Errs = []
    spec = obj.get("spec") or {}
    ld = spec.get("leaseDurationSeconds")
    if ld is not None and ld <= 0:
        errs.append(inv("spec.leaseDurationSeconds", ld, "must be greater than 0"))
    lt = spec.get("leaseTransitions")
    if lt is not None and lt < 0:
        errs.append(inv("spec.leaseTransitions", lt, "must be greater than or equal to 0"))
    st = spec.get("strategy")
    if st is not None and st not in ("OldestEmulationVersion",):
        errs.append(unsup("spec.strategy", st, ["OldestEmulationVersion"]))
    if spec.get("preferredHolder") and not st:
        errs.append(forb("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


# ============================================================== RBAC


def _policy_rule(r: Obj, namespaced: bool, p: str) -> Errs:
    errs: Errs = []
    if not r.get("verbs"):
        errs.append(req(f"{p}.verbs", "verbs must contain at least one value"))
    if r.get("nonResourceURLs"):
        if namespaced:
            errs.append(inv(f"{p}.nonResourceURLs", r["nonResourceURLs"],
                            "namespaced rules cannot apply to non-resource URLs"))
        if r.get("apiGroups") or r.get("resources") or r.get("resourceNames"):
            errs.append(inv(f"{p}.nonResourceURLs", r["nonResourceURLs"],
                            "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not r.get("apiGroups"):
        errs.append(req(f"{p}.apiGroups", "resource rules must supply at least one api group"))
    if not r.get("resources"):
        errs.append(req(f"{p}.resources", "resource rules must supply at least one resource"))
    return errs


def validate_rbac(plural: str, obj: Obj, old: Obj | None) -> Errs:
    errs: Errs = []
    if plural in ("roles", "clusterroles"):
        for i, r in enumerate(obj.get("rules") or ()):
            if isinstance(r, dict):
                errs.extend(_policy_rule(r, plural == "roles", f"rules[{i}]"))
        agg = obj.get("aggregationRule")
        if plural == "clusterroles" and isinstance(agg, dict):
            sels = agg.get("clusterRoleSelectors") or []
            if not sels:
                errs.append(req("aggregationRule.clusterRoleSelectors",
                                "at least one clusterRoleSelector required if aggregationRule is non-nil"))
            for i, s in enumerate(sels):
                errs.extend(validate_label_selector(s, f"aggregationRule.clusterRoleSelectors[{i}]"))
        return errs
    rr = obj.get("roleRef") or {}
    if rr.get("apiGroup") != "rbac.authorization.k8s.io":
        errs.append(unsup("roleRef.apiGroup", rr.get("apiGroup", ""), ["rbac.authorization.k8s.io"]))
    kinds = ["Role", "ClusterRole"] if plural == "rolebindings" else ["ClusterRole"]
    if rr.get("kind") not in kinds:
        errs.append(unsup("roleRef.kind", rr.get("kind", ""), kinds))
    if not rr.get("name"):
        errs.append(req("roleRef.name", ""))
    else:
        errs.extend(inv("roleRef.name", rr["name"], m) for m in path_segment(str(rr["name"])))
    for i, s in enumerate(obj.get("subjects") or ()):
        if not isinstance(s, dict):
            continue
        p = f"subjects[{i}]"
        name, kind, group = s.get("name") or "", s.get("kind"), s.get("apiGroup") or ""
        if not name:
            errs.append(req(f"{p}.name", ""))
        if kind == "ServiceAccount":
            if name:
                errs.extend(inv(f"{p}.name", name, m) for m in dns_subdomain(name))
            if group:
                errs.append(unsup(f"{p}.apiGroup", group, [""]))
            if plural == "clusterrolebindings" and not s.get("namespace"):
                errs.append(req(f"{p}.namespace", ""))
        elif kind in ("User", "Group"):
            if group != "rbac.authorization.k8s.io":
                errs.append(unsup(f"{p}.apiGroup", group, ["rbac.authorization.k8s.io"]))
        else:
            errs.append(unsup(f"{p}.kind", kind, ["ServiceAccount", "User", "Group"]))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        errs.append(inv("roleRef", rr, "cannot change roleRef"))
    return errs


# ============================================================== admission webhooks


def _fully_qualified(name: Any, path: str) -> Errs:
    if not name:
        return [req(path, "")]
    msgs = dns_subdomain(str(name))
    if msgs:
        return [inv(path, name, ",".join(msgs))]
    if len(str(name).split(".")) < 3:
        return [inv(path, name, "should be a domain with at least three segments separated by dots")]
    return []


def _webhook_url(url: str, path: str) -> Errs:
    form = "; desired format: https://host[/path]"
    errs: Errs = []
    try:
        u = urlsplit(url)
    except ValueError as e:
        return [req(path, f"url must be a valid URL: {e}{form}")]
    if u.scheme != "https":
        errs.append(inv(path, u.scheme, "'https' is the only allowed URL scheme" + form))
    host = u.netloc.rpartition("@")[2]
    if not host:
        errs.append(inv(path, host, "host must be specified" + form))
    if "@" in u.netloc:
        errs.append(inv(path, u.netloc.rpartition("@")[0], "user information is not permitted in the URL"))
    if u.fragment:
        errs.append(inv(path, u.fragment, "fragments are not permitted in the URL"))
    if u.query:
        errs.append(inv(path, u.query, "query parameters are not permitted in the URL"))
    return errs


def _webhook_service(svc: Obj, path: str) -> Errs:
    errs: Errs = []
    if not svc.get("name"):
        errs.append(req(f"{path}.name", "service name is required"))
    if not svc.get("namespace"):
        errs.append(req(f"{path}.namespace", "service namespace is required"))
    port = svc.get("port", 443)
    if not isinstance(port, int) or not (1 <= port <= 65535):
        errs.append(inv(f"{path}.port", port, "port is not valid: " + inclusive_range(1, 65535)))
    upath = svc.get("path")
    if not upath or upath == "/":
        return errs
    if upath == "//":
        return [*errs, inv(f"{path}.path", upath, "segment[0] may not be empty")]
    if not upath.startswith("/"):
        errs.append(inv(f"{path}.path", upath, "must start with a '/'"))
    check = upath[1:]
    if check.endswith("/"):
        check = check[:-1]
    for i, step in enumerate(check.split("/")):
        if not step:
            errs.append(inv(f"{path}.path", upath, f"segment[{i}] may not be empty"))
            continue
        errs.extend(inv(f"{path}.path", upath, f"segment[{i}]: {m}") for m in dns_subdomain(step))
    return errs


def _rule_with_ops(rule: Obj, p: str) -> Errs:
    errs: Errs = []
    ops = rule.get("operations") or []
    if not ops:
        errs.append(req(f"{p}.operations", ""))
    if len(ops) > 1 and "*" in ops:
        errs.append(inv(f"{p}.operations", ops, "if '*' is present, must not specify other operations"))
    for i, op in enumerate(ops):
        if op not in ("*", "CONNECT", "CREATE", "DELETE", "UPDATE"):
            errs.append(unsup(f"{p}.operations[{i}]", op, ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]))
    groups, versions = rule.get("apiGroups") or [], rule.get("apiVersions") or []
    if not groups:
        errs.append(req(f"{p}.apiGroups", ""))
    if len(groups) > 1 and "*" in groups:
        errs.append(inv(f"{p}.apiGroups", groups, "if '*' is present, must not specify other API groups"))
    if not versions:
        errs.append(req(f"{p}.apiVersions", ""))
    if len(versions) > 1 and "*" in versions:
        errs.append(inv(f"{p}.apiVersions", versions, "if '*' is present, must not specify other API versions"))
    for i, v in enumerate(versions):
        if v == "":
            errs.append(req(f"{p}.apiVersions[{i}]", ""))
    res = rule.get("resources") or []
    rp = f"{p}.resources"
    if not res:
        errs.append(req(rp, ""))
    wild_sub: set[str] = set()
    wild_res: set[str] = set()
    double = single = plain = False
    for i, rs in enumerate(res):
        if rs == "":
            errs.append(req(f"{rp}[{i}]", ""))
            continue
        double = double or rs == "*/*"
        single = single or rs == "*"
        parts = rs.split("/", 1)
        if len(parts) == 1:
            plain = rs != "*"
            continue
        r, s = parts
        if r in wild_sub:
            errs.append(inv(f"{rp}[{i}]", rs, f"if '{r}/*' is present, must not specify {rs}"))
        if s in wild_res:
            errs.append(inv(f"{rp}[{i}]", rs, f"if '*/{s}' is present, must not specify {rs}"))
        if s == "*":
            wild_sub.add(r)
        if r == "*":
            wild_res.add(s)
    if len(res) > 1 and double:
        errs.append(inv(rp, res, "if '*/*' is present, must not specify other resources"))
    if single and plain:
        errs.append(inv(rp, res, "if '*' is present, must not specify other resources without subresources"))
    scope = rule.get("scope")
    if scope is not None and scope not in ("*", "Cluster", "Namespaced"):
        errs.append(unsup(f"{p}.scope", scope, ["*", "Cluster", "Namespaced"]))
    return errs


def validate_webhook_configuration(obj: Obj, old: Obj | None, mutating: bool) -> Errs:
    errs: Errs = []
    ohooks = (old or {}).get("webhooks") or []
    require_no_side_effects = old is None or all(h.get("sideEffects") in ("None", "NoneOnDryRun") for h in ohooks)
    require_unique = old is None or len({h.get("name") for h in ohooks}) == len(ohooks)
    names: set[str] = set()
    for i, wh in enumerate(obj.get("webhooks") or ()):
        p = f"webhooks[{i}]"
        if not isinstance(wh, dict):
            continue
        errs.extend(_fully_qualified(wh.get("name"), f"{p}.name"))
        for j, rule in enumerate(wh.get("rules") or ()):
            errs.extend(_rule_with_ops(rule, f"{p}.rules[{j}]"))
        fp = wh.get("failurePolicy")
        if fp is not None and fp not in ("Fail", "Ignore"):
            errs.append(unsup(f"{p}.failurePolicy", fp, ["Fail", "Ignore"]))
        mp = wh.get("matchPolicy")
        if mp is not None and mp not in ("Equivalent", "Exact"):
            errs.append(unsup(f"{p}.matchPolicy", mp, ["Equivalent", "Exact"]))
        allowed = ["None", "NoneOnDryRun"] if require_no_side_effects else ["None", "NoneOnDryRun", "Some", "Unknown"]
        se = wh.get("sideEffects")
        if se is None:
            errs.append(req(f"{p}.sideEffects", "must specify one of " + ", ".join(allowed)))
        elif se not in allowed:
            errs.append(unsup(f"{p}.sideEffects", se, allowed))
        ts = wh.get("timeoutSeconds")
        if ts is not None and not (1 <= ts <= 30):
            errs.append(inv(f"{p}.timeoutSeconds", ts, "the timeout value must be between 1 and 30 seconds"))
        for sel in ("namespaceSelector", "objectSelector"):
            if wh.get(sel) is not None:
                errs.extend(validate_label_selector(wh[sel], f"{p}.{sel}"))
        if mutating:
            rip = wh.get("reinvocationPolicy")
            if rip is not None and rip not in ("IfNeeded", "Never"):
                errs.append(unsup(f"{p}.reinvocationPolicy", rip, ["IfNeeded", "Never"]))
        cc = wh.get("clientConfig") or {}
        if (cc.get("url") is None) == (cc.get("service") is None):
            errs.append(req(f"{p}.clientConfig", "exactly one of url or service is required"))
        elif cc.get("url") is not None:
            errs.extend(_webhook_url(str(cc["url"]), f"{p}.clientConfig.url"))
        else:
            errs.extend(_webhook_service(cc["service"], f"{p}.clientConfig.service"))
        for j, mc in enumerate(wh.get("matchConditions") or ()):
            mcp = f"{p}.matchConditions[{j}]"
            if not mc.get("name"):
                errs.append(req(f"{mcp}.name", ""))
            else:
                errs.extend(inv(f"{mcp}.name", mc["name"], m) for m in qualified_name(str(mc["name"])))
            if not mc.get("expression"):
                errs.append(req(f"{mcp}.expression", ""))
        arv = wh.get("admissionReviewVersions") or []
        ap = f"{p}.admissionReviewVersions"
        if not arv:
            errs.append(req(ap, "must specify one of v1, v1beta1"))
        else:
            seen: set[str] = set()
            for j, v in enumerate(arv):
                if v in seen:
                    errs.append(inv(f"{ap}[{j}]", v, "duplicate version"))
                    continue
                seen.add(v)
                errs.extend(inv(f"{ap}[{j}]", v, m) for m in dns1035_label(str(v)))
            if not seen & {"v1", "v1beta1"}:
                errs.append(inv(ap, arv, "must include at least one of v1, v1beta1"))
        n = wh.get("name")
        if require_unique and n:
            if n in names:
                errs.append(dup(f"{p}.name", n))
            names.add(n)
    return errs


# ============================================================== entry point



def validate(key: tuple[str, str], obj: Obj, old: Obj | None, sub: str = "") -> Errs:
    """Kind-specific validation of a built-in object (ObjectMeta is validated by the caller).

    ``sub == "status"`` validates what the real status strategies do (metadata only here).
    Raises :class:`DecodeError` for values the real decoder rejects (bad quantities, bad base64).
    """
    if sub == "status":
        return []
    group, plural = key
    if key == K_PODS:
        errs = validate_pod_spec(obj.get("spec") or {}, "spec")
        if old is not None:
            errs.extend(validate_pod_update(obj, old))
        return errs
    if key == K_JOBS:
        return validate_job(obj, old)
    if group == "rbac.authorization.k8s.io":
        return validate_rbac(plural, obj, old)
    if group == "admissionregistration.k8s.io" and plural.endswith("webhookconfigurations"):
        return validate_webhook_configuration(obj, old, plural.startswith("mutating"))
    if group == "":
        fn = {
            "configmaps": lambda: validate_configmap(obj, old),
            "secrets": lambda: validate_secret(obj, old),
            "namespaces": lambda: validate_namespace(obj),
            "services": lambda: validate_service(obj),
            "events": lambda: validate_event(obj, old, False),
            "resourcequotas": lambda: validate_resource_quota(obj),
            "limitranges": lambda: validate_limit_range(obj),
            "nodes": lambda: validate_node(obj, old),
        }.get(plural)
        return fn() if fn is not None else []
    if key == ("events.k8s.io", "events"):
        return validate_event(obj, old, True)
    if key == ("coordination.k8s.io", "leases"):
        return validate_lease(obj)
    if key == ("apps", "deployments"):
        spec = obj.get("spec") or {}
        errs = validate_pod_template(spec.get("template") or {}, "spec.template")
        rp = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if rp not in (None, "Always"):
            errs.append(unsup("spec.template.spec.restartPolicy", rp, ["Always"]))
        errs.extend(nonneg(spec, "replicas", "spec"))
        sel = spec.get("selector")
        if sel is None:
            errs.append(req("spec.selector", ""))
        else:
            errs.extend(validate_label_selector(sel, "spec.selector"))
            tl = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector_matches(sel, tl):
                errs.append(inv("spec.template.metadata.labels", tl, "`selector` does not match template `labels`"))
        return errs
    return []


def decode_error(kind: str, version: str, err: DecodeError) -> ApiError:
    return ApiError(400, f'{kind} in version "{version}" cannot be handled as a {kind}: {err}', "BadRequest")
