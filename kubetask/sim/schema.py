"""CRD handling: structural-schema checks, custom-resource validation, defaulting, pruning, CEL.

Messages follow apiextensions-apiserver / kube-openapi so error bodies match the real thing.
"""

from __future__ import annotations

import base64
import copy
import functools
import ipaddress
import json
import re
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from kubetask.sim.errors import FieldError

Obj = dict[str, Any]

_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def is_dns_subdomain(s: str) -> bool:
    return len(s) <= 253 and bool(_DNS1123_SUB.match(s))


def is_dns_label(s: str) -> bool:
    return len(s) <= 63 and bool(_DNS1123_LABEL.match(s))


DNS_SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
               "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
               "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                 "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                 "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


# =========================================================================== CEL

@functools.cache
def _cel_env() -> Any:
    import celpy

    return celpy.Environment()


@functools.cache
def compile_cel(expr: str) -> Any:
    """Compile a CEL expression once (raises on syntax errors)."""
    env = _cel_env()
    return env.program(env.compile(expr))


# Kubernetes exposes object properties to CEL under escaped names: reserved words
# become ``__word__`` and ``__ . - /`` become ``__underscores__ __dot__ __dash__
# __slash__`` (apiextensions "Escaping" rules), so ``namespace`` is ``__namespace__``.
_CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
})


def _cel_property_name(name: str) -> str:
    if name in _CEL_RESERVED:
        return f"__{name}__"
    return (name.replace("__", "__underscores__").replace(".", "__dot__")
            .replace("-", "__dash__").replace("/", "__slash__"))


def _cel_escaped(v: Any) -> Any:
    if isinstance(v, dict):
        return {_cel_property_name(k): _cel_escaped(item) for k, item in v.items()}
    if isinstance(v, list):
        return [_cel_escaped(item) for item in v]
    return v


def _cel_value(v: Any) -> Any:
    from celpy import adapter

    return adapter.json_to_cel(_cel_escaped(v))


#: Results of CEL rules by (rule, self, oldSelf) as canonical JSON. Rules are pure functions of
#: ``self``/``oldSelf``, and an object's unchanged parts are re-validated on every update (e.g. a
#: Task's spec on each status patch), so this spares re-interpreting the same rule on the same data.
_CEL_MEMO: OrderedDict[tuple[str, str, str | None], Any] = OrderedDict()
_CEL_MEMO_MAX = 8192


def _canonical(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def eval_cel(expr: str, self_v: Any, old_v: Any = None, has_old: bool = False) -> Any:
    try:
        key: tuple[str, str, str | None] | None = (expr, _canonical(self_v), _canonical(old_v) if has_old else None)
    except (TypeError, ValueError):
        key = None
    if key is not None:
        try:
            _CEL_MEMO.move_to_end(key)
            return _CEL_MEMO[key]
        except KeyError:
            pass
    prog = compile_cel(expr)
    act: Obj = {"self": _cel_value(self_v)}
    if has_old:
        act["oldSelf"] = _cel_value(old_v)
    result = prog.evaluate(act)
    if key is not None:
        _CEL_MEMO[key] = result
        if len(_CEL_MEMO) > _CEL_MEMO_MAX:
            _CEL_MEMO.popitem(last=False)
    return result


@functools.lru_cache(maxsize=4096)
def _references_old(expr: str) -> bool:
    return re.search(r"\boldSelf\b", expr) is not None


# ================================================================ CR validation

def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_ok(t: str, v: Any) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return True


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _format_ok(fmt: str, v: Any) -> bool:
    try:
        if fmt == "int32":
            return isinstance(v, int | float) and -(2**31) <= v < 2**31
        if fmt == "int64":
            return isinstance(v, int | float) and -(2**63) <= v < 2**63
        if not isinstance(v, str):
            return True
        if fmt == "date-time":
            if not _RFC3339.match(v):
                return False
            datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
            return True
        if fmt == "date":
            datetime.strptime(v, "%Y-%m-%d")
            return True
        if fmt == "byte":
            base64.b64decode(v, validate=True)
            return True
        if fmt == "uuid":
            uuid.UUID(v)
            return True
        if fmt == "ipv4":
            ipaddress.IPv4Address(v)
            return True
        if fmt == "ipv6":
            ipaddress.IPv6Address(v)
            return True
        if fmt == "hostname":
            return is_dns_subdomain(v)
    except (ValueError, TypeError):
        return False
    return True


class CRValidator:
    """Validates a value against a structural schema, producing apiextensions-style errors."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def invalid(self, path: str, value: Any, msg: str) -> None:
        self.errors.append(FieldError(path, "Invalid value", msg, value, True))

    def validate(self, v: Any, s: Obj, path: str, old: Any = None, has_old: bool = False) -> None:
        if v is None:
            if s.get("nullable"):
                return
            t = s.get("type")
            if t:
                self.errors.append(FieldError(path, "Invalid value", f"{path} in body must be of type {t}: "
                                              '"null"', "null", True))
            return
        if s.get("x-kubernetes-int-or-string") and not (isinstance(v, str) or _type_ok("integer", v)):
            self.errors.append(FieldError(path, "Invalid value", f"{path} in body must be of type "
                                          f"integer,string: \"{_type_name(v)}\"", _type_name(v), True))
            return
        t = s.get("type")
        if t and not _type_ok(t, v):
            self.errors.append(FieldError(path, "Invalid value", f"{path} in body must be of type {t}: "
                                          f'"{_type_name(v)}"', _type_name(v), True))
            return
        if "enum" in s and v not in s["enum"]:
            vals = ", ".join(_go_quote(x) for x in s["enum"])
            self.errors.append(FieldError(path, "Unsupported value", f"supported values: {vals}", v, True))
        if isinstance(v, int | float) and not isinstance(v, bool):
            self._numeric(v, s, path)
        if isinstance(v, str):
            self._string(v, s, path)
        if "format" in s and not _format_ok(s["format"], v):
            self.invalid(path, v, f"{path} in body must be of type {s['format']}: {_go_quote(v)}")
        if isinstance(v, list):
            self._array(v, s, path, old if has_old and isinstance(old, list) else None)
        if isinstance(v, dict):
            self._object(v, s, path, old if has_old and isinstance(old, dict) else None,
                         has_old and isinstance(old, dict))
        for combinator in ("allOf",):
            for sub in s.get(combinator) or ():
                self.validate(v, sub, path)
        for sub_k in ("anyOf", "oneOf"):
            subs = s.get(sub_k)
            if subs:
                ok = 0
                for sub in subs:
                    probe = CRValidator()
                    probe.validate(v, sub, path)
                    ok += not probe.errors
                if (sub_k == "anyOf" and ok == 0) or (sub_k == "oneOf" and ok != 1):
                    self.invalid(path, v, f'"{path}" must validate {"at least" if sub_k == "anyOf" else "one and only"} one schema ({sub_k})')  # noqa: E501
        if "not" in s:
            probe = CRValidator()
            probe.validate(v, s["not"], path)
            if not probe.errors:
                self.invalid(path, v, f"{path} in body should not be valid against the schema")
        self._cel(v, s, path, old, has_old)

    def _numeric(self, v: float, s: Obj, path: str) -> None:
        if "maximum" in s:
            m = s["maximum"]
            if s.get("exclusiveMaximum") and v >= m:
                self.invalid(path, v, f"{path} in body should be less than {_num(m)}")
            elif v > m:
                self.invalid(path, v, f"{path} in body should be less than or equal to {_num(m)}")
        if "minimum" in s:
            m = s["minimum"]
            if s.get("exclusiveMinimum") and v <= m:
                self.invalid(path, v, f"{path} in body should be greater than {_num(m)}")
            elif v < m:
                self.invalid(path, v, f"{path} in body should be greater than or equal to {_num(m)}")
        if "multipleOf" in s and s["multipleOf"] and (v / s["multipleOf"]) % 1 != 0:
            self.invalid(path, v, f"{path} in body should be a multiple of {_num(s['multipleOf'])}")

    def _string(self, v: str, s: Obj, path: str) -> None:
        if "maxLength" in s and len(v) > s["maxLength"]:
            self.errors.append(FieldError(path, "Too long", f"may not be more than {s['maxLength']} bytes"))
        if "minLength" in s and len(v) < s["minLength"]:
            self.invalid(path, v, f"{path} in body should be at least {s['minLength']} chars long")
        if "pattern" in s and not re.search(s["pattern"], v):
            self.invalid(path, v, f"{path} in body should match '{s['pattern']}'")

    def _array(self, v: list[Any], s: Obj, path: str, old: list[Any] | None) -> None:
        if "maxItems" in s and len(v) > s["maxItems"]:
            self.errors.append(FieldError(path, "Too many", f"must have at most {s['maxItems']} items",
                                          len(v), True))
        if "minItems" in s and len(v) < s["minItems"]:
            self.invalid(path, v, f"{path} in body should have at least {s['minItems']} items")
        lt = s.get("x-kubernetes-list-type")
        if lt == "set":
            seen: list[Any] = []
            for i, x in enumerate(v):
                if x in seen:
                    self.errors.append(FieldError(f"{path}[{i}]", "Duplicate value", "", x, True))
                seen.append(x)
        elif lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            seen_k: list[tuple[Any, ...]] = []
            for i, x in enumerate(v):
                if isinstance(x, dict):
                    k = tuple(x.get(kk) for kk in keys)
                    if k in seen_k:
                        dv = {kk: x.get(kk) for kk in keys}
                        self.errors.append(FieldError(f"{path}[{i}]", "Duplicate value", "", dv, True))
                    seen_k.append(k)
        it = s.get("items")
        if isinstance(it, dict):
            old_by_key: dict[tuple[Any, ...], Any] = {}
            if old is not None and lt == "map":
                keys = s.get("x-kubernetes-list-map-keys") or []
                old_by_key = {tuple(o.get(kk) for kk in keys): o for o in old if isinstance(o, dict)}
            for i, x in enumerate(v):
                if lt == "map" and isinstance(x, dict):
                    k = tuple(x.get(kk) for kk in (s.get("x-kubernetes-list-map-keys") or []))
                    self.validate(x, it, f"{path}[{i}]", old_by_key.get(k), k in old_by_key)
                else:
                    self.validate(x, it, f"{path}[{i}]")

    def _object(self, v: Obj, s: Obj, path: str, old: Obj | None, has_old: bool) -> None:
        props = s.get("properties") or {}
        for r in s.get("required") or ():
            if r not in v:
                self.errors.append(FieldError(f"{path}.{r}" if path else r, "Required value", ""))
        if "maxProperties" in s and len(v) > s["maxProperties"]:
            self.errors.append(FieldError(path, "Too many", f"must have at most {s['maxProperties']} items",
                                          len(v), True))
        if "minProperties" in s and len(v) < s["minProperties"]:
            self.invalid(path, v, f"{path} in body should have at least {s['minProperties']} properties")
        ap = s.get("additionalProperties")
        if s.get("x-kubernetes-embedded-resource"):
            for f in ("apiVersion", "kind"):
                if not v.get(f):
                    self.errors.append(FieldError(f"{path}.{f}" if path else f, "Required value",
                                                  "must not be empty"))
        for k, x in v.items():
            sub_path = f"{path}.{k}" if path else k
            if k in props:
                self.validate(x, props[k], sub_path, (old or {}).get(k), has_old and k in (old or {}))
            elif isinstance(ap, dict):
                self.validate(x, ap, sub_path, (old or {}).get(k), has_old and k in (old or {}))

    def _cel(self, v: Any, s: Obj, path: str, old: Any, has_old: bool) -> None:
        from celpy.evaluation import CELEvalError

        for rule in s.get("x-kubernetes-validations") or ():
            expr = rule.get("rule", "")
            transition = _references_old(expr)
            if transition and not has_old:
                continue  # transition rules only run on update with an old value
            try:
                res = eval_cel(expr, v, old, has_old)
            except CELEvalError as e:
                self.invalid(_rule_path(path, rule), s.get("type", "object"),
                             f"{e.args[0] if e.args else e} evaluating rule: {expr}")
                continue
            except Exception as e:  # celpy raises assorted errors on bad input
                self.invalid(_rule_path(path, rule), s.get("type", "object"),
                             f"{e} evaluating rule: {expr}")
                continue
            if isinstance(res, CELEvalError):
                self.invalid(_rule_path(path, rule), s.get("type", "object"),
                             f"{res.args[0] if res.args else res} evaluating rule: {expr}")
                continue
            if bool(res):
                continue
            msg = rule.get("message") or f"failed rule: {expr}"
            if rule.get("messageExpression"):
                try:
                    m = eval_cel(rule["messageExpression"], v, old, has_old)
                    if isinstance(m, str) and m.strip():
                        msg = str(m)
                except Exception:  # a failing messageExpression falls back to message, as real
                    pass
            reason = rule.get("reason")
            err = FieldError(_rule_path(path, rule), "Invalid value", msg, s.get("type", "object"), True)
            if reason:
                err.type = {"FieldValueRequired": "Required value", "FieldValueForbidden": "Forbidden",
                            "FieldValueDuplicate": "Duplicate value"}.get(reason, "Invalid value")
                if err.type != "Invalid value":
                    err.has_value = False
            self.errors.append(err)


def _rule_path(path: str, rule: Obj) -> str:
    fp = rule.get("fieldPath")
    if fp:
        return (path + fp) if fp.startswith(".") else f"{path}.{fp}"
    return path


def _num(m: Any) -> str:
    if isinstance(m, float) and m.is_integer():
        return str(int(m))
    return str(m)


def _go_quote(v: Any) -> str:
    import json

    return json.dumps(v) if isinstance(v, str) else str(v)


def validate_cr(obj: Obj, schema: Obj, old: Obj | None = None) -> list[FieldError]:
    """Validate a custom resource (without metadata) against ``openAPIV3Schema``."""
    v = CRValidator()
    body = {k: x for k, x in obj.items() if k != "metadata"}
    s = dict(schema)
    props = dict(s.get("properties") or {})
    props.pop("metadata", None)
    s["properties"] = props
    oldbody = {k: x for k, x in old.items() if k != "metadata"} if old is not None else None
    v.validate(body, s, "", oldbody, old is not None)
    # A structural schema may constrain metadata.name/generateName (and nothing else in metadata);
    # the apiserver enforces those constraints like any other field's.
    meta_schema = ((schema.get("properties") or {}).get("metadata") or {}).get("properties") or {}
    meta = obj.get("metadata") or {}
    for field in ("name", "generateName"):
        if field in meta_schema and isinstance(meta.get(field), str):
            v.validate(meta[field], meta_schema[field], f"metadata.{field}", None, False)
    # root-level paths: "" + ".spec" rendered as "spec"
    return v.errors


# ========================================================== pruning & defaulting

_META_KEEP = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
              "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
              "annotations", "ownerReferences", "finalizers", "managedFields")


def prune(v: Any, s: Obj | None, root: bool = False, path: str = "", dropped: list[str] | None = None) -> Any:
    """Remove fields the schema does not specify (unless preserve-unknown-fields)."""
    if s is None:
        return v
    if isinstance(v, dict):
        props = s.get("properties")
        ap = s.get("additionalProperties")
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        out: Obj = {}
        for k, x in v.items():
            p = f"{path}.{k}" if path else k
            if (root or embedded) and k in ("apiVersion", "kind"):
                out[k] = x
            elif (root or embedded) and k == "metadata":
                out[k] = {mk: mv for mk, mv in x.items() if mk in _META_KEEP} if isinstance(x, dict) else x
            elif props is not None and k in props:
                out[k] = prune(x, props[k], False, p, dropped)
            elif isinstance(ap, dict):
                out[k] = prune(x, ap, False, p, dropped)
            elif preserve or ap is True or (props is None and ap is None and not s.get("type")):
                out[k] = x
            elif dropped is not None:
                dropped.append(p)
        return out
    if isinstance(v, list):
        it = s.get("items")
        if isinstance(it, dict):
            return [prune(x, it, False, f"{path}[{i}]", dropped) for i, x in enumerate(v)]
    return v


def unknown_fields(v: Any, s: Obj) -> list[str]:
    dropped: list[str] = []
    prune(v, s, True, "", dropped)
    return dropped


def apply_defaults(v: Any, s: Obj | None) -> Any:
    """Set schema ``default``s for absent (or null, non-nullable) properties, recursively."""
    if s is None:
        return v
    if isinstance(v, dict):
        out = dict(v)
        props = s.get("properties") or {}
        for k, ps in props.items():
            if "default" in ps and (k not in out or (out[k] is None and not ps.get("nullable"))):
                out[k] = copy.deepcopy(ps["default"])
            elif k in out and out[k] is None and not ps.get("nullable"):
                del out[k]
        for k, x in list(out.items()):
            if k in props:
                out[k] = apply_defaults(x, props[k])
            elif isinstance(s.get("additionalProperties"), dict):
                out[k] = apply_defaults(x, s["additionalProperties"])
        return out
    if isinstance(v, list):
        it = s.get("items")
        if isinstance(it, dict):
            return [apply_defaults(x, it) for x in v]
    return v


# =================================================================== CRD checks

_FMT_TYPES = ("integer", "number", "string", "boolean", "date")


def validate_crd(crd: Obj, old: Obj | None = None) -> list[FieldError]:
    """Validate a ``CustomResourceDefinition`` like apiextensions-apiserver (the common rules)."""
    errs: list[FieldError] = []
    spec = crd.get("spec") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    group = spec.get("group", "")
    names = spec.get("names") or {}
    plural, singular, kind = names.get("plural", ""), names.get("singular", ""), names.get("kind", "")
    if name != f"{plural}.{group}":
        errs.append(FieldError("metadata.name", "Invalid value", 'must be spec.names.plural+"."+spec.group',
                               name, True))
    if not group:
        errs.append(FieldError("spec.group", "Required value", ""))
    elif not is_dns_subdomain(group) or "." not in group:
        errs.append(FieldError("spec.group", "Invalid value", "should be a domain with at least one dot",
                               group, True))
    if not plural:
        errs.append(FieldError("spec.names.plural", "Required value", ""))
    elif not is_dns_label(plural):
        errs.append(FieldError("spec.names.plural", "Invalid value", DNS_LABEL_MSG, plural, True))
    if singular and not is_dns_label(singular):
        errs.append(FieldError("spec.names.singular", "Invalid value", DNS_LABEL_MSG, singular, True))
    if not kind:
        errs.append(FieldError("spec.names.kind", "Required value", ""))
    elif not _KIND.match(kind):
        errs.append(FieldError("spec.names.kind", "Invalid value",
                               "may have mixed case, but should otherwise match: [a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
                               .replace("[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", "[a-z0-9]([-a-z0-9]*[a-z0-9])?"),
                               kind, True))
    lk = names.get("listKind", "")
    if lk and lk == kind:
        errs.append(FieldError("spec.names.listKind", "Invalid value", "kind and listKind may not be the same",
                               lk, True))
    for i, sn in enumerate(names.get("shortNames") or ()):
        if not is_dns_label(str(sn)):
            errs.append(FieldError(f"spec.names.shortNames[{i}]", "Invalid value", DNS_LABEL_MSG, sn, True))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        if scope is None:
            errs.append(FieldError("spec.scope", "Required value", ""))
        else:
            errs.append(FieldError("spec.scope", "Unsupported value", 'supported values: "Cluster", "Namespaced"',
                                   scope, True))
    if old is not None:
        oscope = (old.get("spec") or {}).get("scope")
        if oscope != scope:
            errs.append(FieldError("spec.scope", "Invalid value", "field is immutable", scope, True))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(FieldError("spec.versions", "Invalid value", "must have exactly one version marked as storage "
                               "version", "null", True))
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        errs.append(FieldError("spec.versions", "Invalid value",
                               "must have exactly one version marked as storage version", "array", True))
    seen: set[str] = set()
    for i, v in enumerate(versions):
        vp = f"spec.versions[{i}]"
        vn = v.get("name", "")
        if not vn:
            errs.append(FieldError(f"{vp}.name", "Required value", ""))
        elif not is_dns_label(vn):
            errs.append(FieldError(f"{vp}.name", "Invalid value", DNS_LABEL_MSG, vn, True))
        if vn in seen:
            errs.append(FieldError(f"{vp}.name", "Duplicate value", "", vn, True))
        seen.add(vn)
        schema = ((v.get("schema") or {}).get("openAPIV3Schema"))
        sp = f"{vp}.schema.openAPIV3Schema"
        if schema is None:
            errs.append(FieldError(sp, "Required value", "schemas are required"))
        else:
            errs.extend(_structural(schema, sp, root=True))
        for j, col in enumerate(v.get("additionalPrinterColumns") or ()):
            cp = f"{vp}.additionalPrinterColumns[{j}]"
            if not col.get("name"):
                errs.append(FieldError(f"{cp}.name", "Required value", ""))
            if col.get("type") not in _FMT_TYPES:
                errs.append(FieldError(f"{cp}.type", "Unsupported value",
                                       'supported values: "boolean", "date", "integer", "number", "string"',
                                       col.get("type", ""), True))
            jp = col.get("jsonPath", "")
            if not jp:
                errs.append(FieldError(f"{cp}.jsonPath", "Required value", ""))
            elif not _simple_jsonpath(jp):
                errs.append(FieldError(f"{cp}.jsonPath", "Invalid value", "must be a simple json path", jp, True))
        sub = v.get("subresources") or {}
        scale = sub.get("scale")
        if scale is not None and not scale.get("specReplicasPath"):
            errs.append(FieldError(f"{vp}.subresources.scale.specReplicasPath", "Required value", ""))
    return errs


def _simple_jsonpath(jp: str) -> bool:
    if not jp.startswith("."):
        return False
    return re.match(r"^(\.[A-Za-z0-9_\-/]+|\[\d+\]|\['[^']+'\]|\[\"[^\"]+\"\])+$", jp) is not None


def _structural(s: Any, path: str, root: bool = False, under_preserve: bool = False,
                in_metadata: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(s, dict):
        return [FieldError(path, "Invalid value", "must be an object", _type_name(s), True)]
    t = s.get("type")
    ios = bool(s.get("x-kubernetes-int-or-string"))
    pres = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    if root and t != "object":
        if not t:
            errs.append(FieldError(f"{path}.type", "Required value", "must not be empty at the root"))
        else:
            errs.append(FieldError(f"{path}.type", "Invalid value", "must be object at the root", t, True))
    if t is not None and t not in _TYPES:
        errs.append(FieldError(f"{path}.type", "Unsupported value",
                               'supported values: "array", "boolean", "integer", "number", "object", "string"',
                               t, True))
    if not t and not ios and not pres and not root:
        errs.append(FieldError(f"{path}.type", "Required value", "must not be empty for specified "
                               + ("array items" if path.endswith(".items") else "object fields")))
    if ios and t:
        errs.append(FieldError(f"{path}.type", "Invalid value",
                               "must be empty to be structural when x-kubernetes-int-or-string is true", t, True))
    if s.get("uniqueItems"):
        errs.append(FieldError(f"{path}.uniqueItems", "Forbidden",
                               "uniqueItems cannot be set to true since the runtime complexity becomes "
                               "quadratic"))
    if "properties" in s and s.get("additionalProperties") not in (None, False):
        errs.append(FieldError(f"{path}.additionalProperties", "Forbidden",
                               "additionalProperties and properties are mutual exclusive"))
    if s.get("additionalProperties") is False:
        errs.append(FieldError(f"{path}.additionalProperties", "Forbidden",
                               "additionalProperties cannot be set to false"))
    if "$ref" in s:
        errs.append(FieldError(f"{path}.$ref", "Forbidden", "$ref is not supported"))
    for bad in ("patternProperties", "dependencies", "definitions", "id", "$schema"):
        if bad in s:
            errs.append(FieldError(f"{path}.{bad}", "Forbidden", f"{bad} is not supported"))
    if t == "array" and not isinstance(s.get("items"), dict):
        errs.append(FieldError(f"{path}.items", "Required value", "must be specified"))
    lt = s.get("x-kubernetes-list-type")
    if lt is not None:
        if lt not in ("atomic", "set", "map"):
            errs.append(FieldError(f"{path}.x-kubernetes-list-type", "Unsupported value",
                                   'supported values: "atomic", "map", "set"', lt, True))
        if t != "array":
            errs.append(FieldError(f"{path}.type", "Invalid value",
                                   "must be array if x-kubernetes-list-type is specified", t, True))
        if lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            if not keys:
                errs.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "Required value",
                                       "must not be empty if x-kubernetes-list-type is map"))
            it = s.get("items") or {}
            if it.get("type") != "object":
                errs.append(FieldError(f"{path}.items.type", "Invalid value",
                                       "must be object when x-kubernetes-list-type is map", it.get("type"), True))
            else:
                for k in keys:
                    ks = (it.get("properties") or {}).get(k)
                    if ks is None:
                        errs.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "Invalid value",
                                               "entries must all be names of item properties", keys, True))
                    elif k not in (it.get("required") or []) and "default" not in ks:
                        errs.append(FieldError(f"{path}.items.properties[{k}]", "Required value",
                                               "all map keys must be required or have a default value"))
    if "x-kubernetes-list-map-keys" in s and lt != "map":
        errs.append(FieldError(f"{path}.x-kubernetes-list-type", "Invalid value",
                               "must be map if x-kubernetes-list-map-keys is non-empty", lt, True))
    for i, rule in enumerate(s.get("x-kubernetes-validations") or ()):
        rp = f"{path}.x-kubernetes-validations[{i}]"
        expr = rule.get("rule") if isinstance(rule, dict) else None
        if not expr:
            errs.append(FieldError(f"{rp}.rule", "Required value", ""))
            continue
        for k in ("rule", "messageExpression"):
            e = rule.get(k)
            if not e:
                continue
            try:
                compile_cel(e)
            except Exception as ex:  # celpy parse errors
                msg = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
                errs.append(FieldError(f"{rp}.{k}", "Invalid value", f"compilation failed: ERROR: <input>: {msg}",
                                       e, True))
        reason = rule.get("reason")
        if reason and reason not in ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired",
                                     "FieldValueDuplicate"):
            errs.append(FieldError(f"{rp}.reason", "Unsupported value",
                                   'supported values: "FieldValueDuplicate", "FieldValueForbidden", '
                                   '"FieldValueInvalid", "FieldValueRequired"', reason, True))
    if "default" in s:
        if root or in_metadata:
            errs.append(FieldError(f"{path}.default", "Forbidden", "must not be set at the root"
                                   if root else "must not be set inside metadata"))
        else:
            probe = CRValidator()
            d = s["default"]
            pruned = prune(d, s)
            probe.validate(pruned, {k: x for k, x in s.items() if k != "x-kubernetes-validations"}, "")
            if pruned != d:
                errs.append(FieldError(f"{path}.default", "Invalid value", "must not have unknown fields",
                                       _type_name(d), True))
            for e in probe.errors:
                errs.append(FieldError(f"{path}.default{('.' + e.field) if e.field else ''}", e.type, e.detail,
                                       e.value, e.has_value))
    props = s.get("properties") or {}
    for k, ps in props.items():
        pp = f"{path}.properties[{k}]"
        if root and k == "metadata":
            errs.extend(_metadata_schema(ps, pp))
            continue
        if root and k in ("apiVersion", "kind") and isinstance(ps, dict) and ps.get("type") not in (None, "string"):
            errs.append(FieldError(f"{pp}.type", "Invalid value", "must be string", ps.get("type"), True))
        errs.extend(_structural(ps, pp, under_preserve=under_preserve or pres))
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        errs.extend(_structural(ap, f"{path}.additionalProperties", under_preserve=under_preserve or pres))
    it = s.get("items")
    if isinstance(it, dict):
        errs.extend(_structural(it, f"{path}.items", under_preserve=under_preserve or pres))
    elif isinstance(it, list):
        errs.append(FieldError(f"{path}.items", "Forbidden", "items must be a schema object and not an array"))
    for comb in ("allOf", "anyOf", "oneOf"):
        for j, sub in enumerate(s.get(comb) or ()):
            if ios and isinstance(sub, dict) and sub.get("type") in ("integer", "string"):
                continue  # the int-or-string idiom: anyOf [{type: integer}, {type: string}]
            if isinstance(sub, dict) and "type" in sub and sub.get("type") != t:
                errs.append(FieldError(f"{path}.{comb}[{j}].type", "Forbidden",
                                       "must be empty to be structural"))
    return errs


def _metadata_schema(ps: Any, path: str) -> list[FieldError]:
    if not isinstance(ps, dict):
        return []
    errs: list[FieldError] = []
    allowed_top = {"type", "properties", "description"}
    extra = set(ps) - allowed_top
    if ps.get("type") not in (None, "object"):
        errs.append(FieldError(f"{path}.type", "Invalid value", "must be object", ps.get("type"), True))
    if extra:
        errs.append(FieldError(path, "Forbidden", "must not specify anything other than name and "
                               "generateName, but metadata is implicitly specified"))
    for k, sub in (ps.get("properties") or {}).items():
        if k not in ("name", "generateName"):
            errs.append(FieldError(path, "Forbidden", "must not specify anything other than name and "
                                   "generateName, but metadata is implicitly specified"))
            break
        if isinstance(sub, dict) and sub.get("type") not in (None, "string"):
            errs.append(FieldError(f"{path}.properties[{k}].type", "Invalid value", "must be string",
                                   sub.get("type"), True))
    return errs


def default_crd(crd: Obj) -> Obj:
    """Apply the apiextensions v1 defaults the real apiserver sets on a CRD."""
    crd = copy.deepcopy(crd)
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or ():
        v.setdefault("served", True)
        v.setdefault("storage", False)
    return crd
