"""A minimal decoder for Kubernetes' protobuf request bodies.

kubectl's typed clients (``create configmap``, ``create namespace``, ``create secret``,
``auth can-i``) send ``application/vnd.kubernetes.protobuf``. Only those few kinds are
mapped here; anything else answers 415 as before.
"""

from __future__ import annotations

import base64
from typing import Any

from kubetask.sim.errors import ApiError

Obj = dict[str, Any]
MAGIC = b"k8s\x00"


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7


def fields(b: bytes) -> list[tuple[int, int, Any]]:
    """Raw (field number, wire type, value) triples of one message."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        fno, wt = key >> 3, key & 7
        v: Any
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v = b[i:i + n]
            i += n
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        out.append((fno, wt, v))
    return out


# Schemas: field number -> (name, type); type is "s" string, "b" bytes, "i" int, "bool",
# "map:s"/"map:b" (map<string, string|bytes>), "list:s", or a nested schema name.
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 11: ("labels", "map:s"),
                   12: ("annotations", "map:s"), 14: ("finalizers", "list:s")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:s"), 3: ("binaryData", "map:b"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:b"), 3: ("type", "s"), 4: ("stringData", "map:s"),
               5: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "ObjectMeta")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSARSpec")},
    "SSARSpec": {1: ("resourceAttributes", "ResourceAttributes"), 2: ("nonResourceAttributes", "NonResAttrs")},
    "ResourceAttributes": {1: ("namespace", "s"), 2: ("verb", "s"), 3: ("group", "s"), 4: ("version", "s"),
                           5: ("resource", "s"), 6: ("subresource", "s"), 7: ("name", "s")},
    "NonResAttrs": {1: ("path", "s"), 2: ("verb", "s")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSRRSpec")},
    "SSRRSpec": {1: ("namespace", "s")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    "TokenRequestSpec": {1: ("audiences", "list:s"), 4: ("expirationSeconds", "i")},
}


def _decode(b: bytes, schema: str) -> Obj:
    sch = SCHEMAS[schema]
    out: Obj = {}
    for fno, _wt, v in fields(b):
        if fno not in sch:
            continue
        name, typ = sch[fno]
        if typ == "s":
            if v:  # proto2 optional strings arrive even when empty; Go's JSON omits them
                out[name] = bytes(v).decode()
        elif typ == "b":
            out[name] = base64.b64encode(bytes(v)).decode()
        elif typ == "i":
            out[name] = int(v)
        elif typ == "bool":
            out[name] = bool(v)
        elif typ.startswith("list:"):
            out.setdefault(name, []).append(bytes(v).decode())
        elif typ.startswith("map:"):
            kv = {f: val for f, _w, val in fields(bytes(v))}
            key = bytes(kv.get(1, b"")).decode()
            raw = bytes(kv.get(2, b""))
            out.setdefault(name, {})[key] = raw.decode() if typ == "map:s" else base64.b64encode(raw).decode()
        else:
            out[name] = _decode(bytes(v), typ)
    return out


def decode(body: bytes) -> Obj:
    """Decode a ``runtime.Unknown``-wrapped object of one of the supported kinds."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "provided data does not appear to be a protobuf message, expected prefix "
                            "[107 56 115 0]", "BadRequest")
    unknown = {f: v for f, _w, v in fields(body[4:])}
    tm = {f: bytes(v).decode() for f, _w, v in fields(bytes(unknown.get(1, b"")))}
    api_version, kind = tm.get(1, ""), tm.get(2, "")
    if kind not in SCHEMAS:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                            f"application/json, application/yaml (protobuf is supported for a few kinds only, "
                            f"not {kind})", "UnsupportedMediaType")
    obj = _decode(bytes(unknown.get(2, b"")), kind)
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj
