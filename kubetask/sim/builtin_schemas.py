"""Schemas of built-in kinds, taken from ``kubernetes_validate``'s bundled 1.36 definitions.

They drive strict field validation (unknown fields), strategic-merge-patch keys and the
OpenAPI documents served for built-in kinds.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

Obj = dict[str, Any]

_VERSION_DIR = "v1.36.0-local-strict"


@functools.cache
def definitions() -> dict[str, Obj]:
    """All ``$defs`` (empty when kubernetes_validate is not installed)."""
    try:
        import kubernetes_validate
    except ImportError:  # pragma: no cover - dev dependency
        return {}
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    path = os.path.join(base, _VERSION_DIR, "_definitions.json")
    if not os.path.exists(path):  # pragma: no cover - other kubernetes_validate versions
        dirs = sorted(d for d in os.listdir(base) if d.endswith("-local-strict"))
        path = os.path.join(base, dirs[-1], "_definitions.json")
    with open(path) as f:
        defs: dict[str, Obj] = json.load(f)["$defs"]
    return defs


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind") or ():
            out[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    return _gvk_index().get((group, version, kind))


def schema_for(group: str, version: str, kind: str) -> Obj | None:
    name = definition_name(group, version, kind)
    return definitions().get(name) if name else None


def resolve(s: Obj | None) -> Obj:
    """Follow ``$ref`` chains (sibling keys of ``$ref`` are descriptions only)."""
    seen = 0
    while s is not None and "$ref" in s and seen < 20:
        s = definitions().get(s["$ref"].rsplit("/", 1)[-1])
        seen += 1
    return s or {}


def child(s: Obj, key: str) -> Obj | None:
    """The schema of property ``key`` of object schema ``s`` (``None`` when unknown)."""
    s = resolve(s)
    props = s.get("properties")
    if props is not None and key in props:
        return resolve(props[key])
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        return resolve(ap)
    return None


def items(s: Obj) -> Obj | None:
    s = resolve(s)
    it = s.get("items")
    return resolve(it) if isinstance(it, dict) else None


def unknown_fields(obj: Any, s: Obj | None, path: str = "") -> list[str]:
    """Paths of fields the schema does not know (``strict decoding error`` material)."""
    out: list[str] = []
    if s is None:
        return out
    s = resolve(s)
    if isinstance(obj, dict):
        props = s.get("properties")
        ap = s.get("additionalProperties")
        for k, v in obj.items():
            p = f"{path}.{k}" if path else k
            if props is not None and k in props:
                out.extend(unknown_fields(v, resolve(props[k]), p))
            elif isinstance(ap, dict):
                out.extend(unknown_fields(v, resolve(ap), p))
            elif props is not None and ap is False:
                out.append(p)
    elif isinstance(obj, list):
        it = items(s)
        if it is not None:
            for i, v in enumerate(obj):
                out.extend(unknown_fields(v, it, f"{path}[{i}]"))
    return out
