"""OpenAPI v2 and v3 documents, enough for kubectl's field-validation probe and ``explain``."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kubetask.sim import builtin_schemas as bs
from kubetask.sim.registry import Registry
from kubetask.sim.resources import ResourceType

Obj = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LISTMETA = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


def _convert(s: Any, prefix: str) -> Any:
    """kubernetes_validate's JSON-Schema dialect → OpenAPI (single types, component refs)."""
    if isinstance(s, list):
        return [_convert(x, prefix) for x in s]
    if not isinstance(s, dict):
        return s
    out: Obj = {}
    for k, v in s.items():
        if k == "$ref":
            out["$ref"] = prefix + v.rsplit("/", 1)[-1]
        elif k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            if types:
                out["type"] = types[0]
        elif k == "oneOf" and all(isinstance(x, dict) and "type" in x for x in v):
            kinds = {t for x in v for t in (x["type"] if isinstance(x["type"], list) else [x["type"]])}
            if "string" in kinds and ("integer" in kinds or "number" in kinds):
                out["x-kubernetes-int-or-string"] = True
            else:
                out[k] = _convert(v, prefix)
        elif k == "additionalProperties" and v is False:
            continue
        elif k == "properties" and isinstance(v, dict):
            out[k] = {pk: _convert(pv, prefix) for pk, pv in v.items()}
        elif k == "enum" and isinstance(v, list):
            out[k] = [x for x in v if x is not None]
        else:
            out[k] = _convert(v, prefix)
    return out


def _closure(names: list[str]) -> list[str]:
    defs = bs.definitions()
    seen: list[str] = []
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in seen or n not in defs:
            continue
        seen.append(n)
        for ref in _refs(defs[n]):
            stack.append(ref)
    return seen


def _refs(s: Any) -> list[str]:
    out: list[str] = []
    if isinstance(s, dict):
        for k, v in s.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v.rsplit("/", 1)[-1])
            else:
                out.extend(_refs(v))
    elif isinstance(s, list):
        for x in s:
            out.extend(_refs(x))
    return out


def cr_component_name(rt: ResourceType) -> str:
    rev = ".".join(reversed(rt.group.split(".")))
    return f"{rev}.{rt.version}.{rt.kind}"


def cr_schema(rt: ResourceType, prefix: str) -> Obj:
    s = copy.deepcopy(((rt.crd_version or {}).get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
    props = s.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                           "representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource "
                     "this object represents."}
    props["metadata"] = {"$ref": prefix + META, "description": "Standard object's metadata."}
    s["x-kubernetes-group-version-kind"] = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    return s


def _params(v3: bool) -> list[Obj]:
    def p(name: str, desc: str) -> Obj:
        if v3:
            return {"name": name, "in": "query", "description": desc, "schema": {"type": "string"},
                    "uniqueItems": True}
        return {"name": name, "in": "query", "description": desc, "type": "string", "uniqueItems": True}

    return [p("dryRun", "When present, indicates that modifications should not be persisted."),
            p("fieldManager", "fieldManager is a name associated with the actor or entity that is making these "
                              "changes."),
            p("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                                 "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: "
                                 "Ignore, Warn, Strict.")]


def _paths(rt: ResourceType, comp: str, v3: bool) -> dict[str, Obj]:
    base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    coll = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ref = ("#/components/schemas/" if v3 else "#/definitions/") + comp

    def body() -> Obj:
        if v3:
            return {"requestBody": {"content": {"*/*": {"schema": {"$ref": ref}}}, "required": True}}
        return {}

    def resp() -> Obj:
        if v3:
            return {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
        return {"200": {"description": "OK", "schema": {"$ref": ref}}}

    def op(action: str, opid: str, extra: Obj | None = None) -> Obj:
        o: Obj = {"operationId": opid, "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                  "responses": resp()}
        if action in ("post", "put", "patch"):
            o["parameters"] = _params(v3)
            o.update(body())
        o.update(extra or {})
        return o

    k = rt.kind
    paths: dict[str, Obj] = {
        coll: {"get": op("list", f"list{k}"), "post": op("post", f"create{k}"),
               "delete": op("deletecollection", f"deletecollection{k}")},
        f"{coll}/{{name}}": {"get": op("get", f"read{k}"), "put": op("put", f"replace{k}"),
                             "patch": op("patch", f"patch{k}"), "delete": op("delete", f"delete{k}")},
    }
    if rt.has_status:
        paths[f"{coll}/{{name}}/status"] = {"get": op("get", f"read{k}Status"),
                                             "put": op("put", f"replace{k}Status"),
                                             "patch": op("patch", f"patch{k}Status")}
    return paths


def gv_doc(registry: Registry, group: str, version: str, v3: bool = True) -> Obj:
    """The OpenAPI v3 document of one group/version (or, with ``v3=False``, its v2 fragments)."""
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    schemas: Obj = {}
    paths: Obj = {}
    want: list[str] = [META, LISTMETA]
    for rt in registry.in_group_version(group, version):
        if rt.virtual:
            continue
        if rt.crd_version is not None:
            comp = cr_component_name(rt)
            schemas[comp] = cr_schema(rt, prefix)
        else:
            comp = bs.definition_name(rt.group, rt.version, rt.kind) or ""
            if not comp:
                continue
            want.append(comp)
        paths.update(_paths(rt, comp, v3))
    defs = bs.definitions()
    for n in _closure(want):
        schemas[n] = _convert(defs[n], prefix)
    if v3:
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.0"}, "paths": paths,
                "components": {"schemas": schemas}}
    return {"paths": paths, "definitions": schemas}


def doc_hash(doc: Obj) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def v2_doc(registry: Registry) -> Obj:
    paths: Obj = {}
    defs: Obj = {}
    for g, vs in registry.groups().items():
        for v in vs:
            d = gv_doc(registry, g, v, v3=False)
            paths.update(d["paths"])
            defs.update(d["definitions"])
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.36.0"}, "paths": paths,
            "definitions": defs}
