"""Label and field selectors with apimachinery's grammar and error messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetask.sim.errors import ApiError

Obj = dict[str, Any]


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``key op values``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            if not has or v is None:
                return False
            try:
                iv, bound = int(v), int(self.values[0])
            except ValueError:
                return False
            return iv > bound if self.op == "gt" else iv < bound
        return False


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|>|<|[^\s(),!=<>]+)")
_KEY = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?$")


def _tokens(s: str) -> list[str]:
    out: list[str] = []
    pos = 0
    s = s.strip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise ApiError(400, f"unable to parse requirement: invalid selector: {s!r}", "BadRequest")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    return out


def parse_label_selector(s: str | None) -> list[Requirement]:
    """Parse ``a=b,c in (x,y),!d`` into requirements (400 BadRequest on syntax errors)."""
    if not s or not s.strip():
        return []
    toks = _tokens(s)
    reqs: list[Requirement] = []
    i = 0

    def err(msg: str) -> ApiError:
        return ApiError(400, f"unable to parse requirement: {msg}", "BadRequest")

    while i < len(toks):
        if toks[i] == "!":
            if i + 1 >= len(toks):
                raise err("found '', expected: identifier")
            key = toks[i + 1]
            _check_key(key)
            reqs.append(Requirement(key, "!"))
            i += 2
        else:
            key = toks[i]
            _check_key(key)
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = toks[i]
                i += 1
                if op in ("=", "==", "!="):
                    val = ""
                    if i < len(toks) and toks[i] not in (",",):
                        val = toks[i]
                        i += 1
                    _check_value(val)
                    reqs.append(Requirement(key, "!=" if op == "!=" else "=", (val,)))
                elif op in ("in", "notin"):
                    if i >= len(toks) or toks[i] != "(":
                        raise err(f"found '{toks[i] if i < len(toks) else ''}', expected: '('")
                    i += 1
                    vals: list[str] = []
                    while i < len(toks) and toks[i] != ")":
                        if toks[i] != ",":
                            _check_value(toks[i])
                            vals.append(toks[i])
                        i += 1
                    if i >= len(toks):
                        raise err("found '', expected: ')'")
                    i += 1
                    reqs.append(Requirement(key, op, tuple(vals)))
                elif op in (">", "<"):
                    if i >= len(toks):
                        raise err("found '', expected: integer")
                    reqs.append(Requirement(key, "gt" if op == ">" else "lt", (toks[i],)))
                    i += 1
                else:
                    raise err(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise err(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def _check_key(key: str) -> None:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise ApiError(400, f"unable to parse requirement: invalid label key \"{key}\": name part must "
                       "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                       "with an alphanumeric character", "BadRequest")


_VAL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_value(v: str) -> None:
    if len(v) > 63 or not _VAL.match(v):
        raise ApiError(400, f"unable to parse requirement: invalid label value: \"{v}\": at key: a valid "
                       "label must be an empty string or consist of alphanumeric characters, '-', '_' "
                       "or '.', and must start and end with an alphanumeric character", "BadRequest")


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    lab = labels or {}
    return all(r.matches(lab) for r in reqs)


def selector_from_object(sel: Obj | None) -> list[Requirement] | None:
    """A ``metav1.LabelSelector`` as requirements; ``None`` selector matches nothing."""
    if sel is None:
        return None
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or ():
        op = str(e.get("operator", ""))
        vals = tuple(str(v) for v in e.get("values") or ())
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op)
        if mapped is None:
            raise ValueError(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(str(e.get("key", "")), mapped, vals))
    return reqs


def object_selector_matches(sel: Obj | None, labels: dict[str, str] | None) -> bool:
    """``metav1.LabelSelector`` semantics: empty selector matches everything."""
    if sel is None:
        return True
    reqs = selector_from_object(sel)
    return reqs is None or labels_match(reqs, labels)


# ----------------------------------------------------------------- field selectors

_COMMON = ("metadata.name", "metadata.namespace")
FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                   "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                   "status.nominatedNodeName"),
    ("", "events"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                     "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ("events.k8s.io", "events"): ("regarding.kind", "regarding.namespace", "regarding.name",
                                  "regarding.uid", "regarding.apiVersion", "reason", "type",
                                  "reportingController", "deprecatedSource"),
    ("batch", "jobs"): ("status.successful",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("", "replicationcontrollers"): ("status.replicas",),
}


def _field_value(obj: Obj, path: str) -> str:
    if path == "source" and "source" in obj:
        return str((obj.get("source") or {}).get("component", ""))
    if path == "deprecatedSource":
        return str((obj.get("deprecatedSource") or {}).get("component", ""))
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        if path == "metadata.namespace":
            return ""
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(
    s: str | None, key: tuple[str, str], extra: tuple[str, ...] = ()
) -> Callable[[Obj], bool] | None:
    """Compile a field selector for resource ``key`` (400 on unsupported fields, like real)."""
    if not s or not s.strip():
        return None
    allowed = set(_COMMON) | set(FIELDS.get(key, ())) | set(extra)
    terms: list[tuple[str, bool, str]] = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^!=]+?)\s*(!=|==|=)\s*(.*)$", part)
        if not m:
            raise ApiError(400, f"invalid selector: '{s}'; can't understand '{part}'", "BadRequest")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in allowed:
            raise ApiError(400, f'field label not supported: {field}', "BadRequest")
        terms.append((field, op == "!=", value))

    def match(obj: Obj) -> bool:
        for field, neg, value in terms:
            eq = _field_value(obj, field) == value
            if eq == neg:
                return False
        return True

    return match
