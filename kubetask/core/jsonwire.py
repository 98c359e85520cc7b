"""JSON on the wire: orjson where it can, the standard library where orjson refuses.

Every watch event, list page and apiserver answer the operator and the API read is decoded here:
each Task's life is ~20 watch events of whole Tasks, Jobs and Pods (3-7 KB each) in each process,
and a restart lists every one of them.  orjson decodes them 2-2.5 times faster than ``json`` and
straight from the bytes received (no text copy of a 50 MB list first); its cache of object keys
also keeps one copy of ``"metadata"`` where ``json`` allocates one per object.

orjson is strict where JSON is loose: it refuses ``NaN`` and text that is not UTF-8, and cannot
encode keys that are not strings or integers beyond 64 bits.  Those few documents go through the
standard library instead, so they give the same result (or the same ``json.JSONDecodeError``) as
before.  It reads an integer beyond 64 bits as a float, as the apiserver itself stores one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""Types orjson would encode its own way are handed to ``default``, as ``json.dumps`` does."""


def loads(data: bytes | bytearray | str) -> Any:
    """The value of one JSON document (``json.JSONDecodeError``, a ``ValueError``, when it is none)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact UTF-8 JSON of ``value``; ``default`` converts what JSON has no type for (as in ``json.dumps``)."""
    try:
        return orjson.dumps(value, default=default, option=_PASSTHROUGH)
    except orjson.JSONEncodeError:
        # Keys that are not strings, integers beyond 64 bits, NaN: json.dumps's own rules (or its TypeError).
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default).encode()
