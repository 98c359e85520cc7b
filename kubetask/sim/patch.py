"""JSON merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from kubetask.sim import builtin_schemas as bs
from kubetask.sim.errors import ApiError

Obj = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(target: Obj, ops: Any) -> Obj:
    """RFC 6902 via ``jsonpatch``; failures are 422 like the real apiserver (``jsonpatch`` errors)."""
    if not isinstance(ops, list):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                       "BadRequest")
    try:
        out: Obj = jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchConflict as e:
        raise ApiError(422, str(e), "Invalid") from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError,
            TypeError) as e:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {e}",
                       "Invalid") from e
    return out


def strategic_merge_patch(target: Obj, patch: Obj, schema: Obj | None) -> Obj:
    """Strategic merge patch guided by the built-in schema's ``x-kubernetes-patch-*`` keys.

    Supports keyed list merge (containers/env/volumes/... by their merge key), ``$patch:
    delete|replace``, ``$retainKeys``, ``$setElementOrder/<f>`` (used for ordering only, so
    dropped) and ``$deleteFromPrimitiveList/<f>``.
    """
    out = _smp_obj(target, patch, schema)
    return out if isinstance(out, dict) else {}


def _smp_obj(target: Any, patch: Obj, schema: Obj | None) -> Any:
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: Obj = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            cur = result.get(f)
            if isinstance(cur, list) and isinstance(v, list):
                result[f] = [x for x in cur if x not in v]
            continue
        sub = bs.child(schema, k) if schema is not None else None
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = _smp_obj(result.get(k), v, sub)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _smp_list(result.get(k), v, schema, k)
        else:
            result[k] = v
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(current: Any, patch: list[Any], parent: Obj | None, field: str) -> list[Any]:
    prop: Obj = {}
    if parent is not None:
        props = bs.resolve(parent).get("properties") or {}
        prop = props.get(field) or {}
    strategy = str(prop.get("x-kubernetes-patch-strategy", ""))
    key = prop.get("x-kubernetes-patch-merge-key")
    item_schema = bs.items(prop) if prop else None
    cur = list(current) if isinstance(current, list) else []
    if "merge" not in strategy.split(","):
        return [x for x in copy.deepcopy(patch) if not (isinstance(x, dict) and x.get("$patch"))]
    if not key:
        # merge strategy on a primitive list: union, keeping order.
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and len(item) == 1:
            out = []
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item.get(key)),
                   None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[idx] = _smp_obj(out[idx], item, item_schema)
    return out
