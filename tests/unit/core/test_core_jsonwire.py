"""JSON on the wire (kubetask.core.jsonwire): the same values as the standard library, where orjson is strict too."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubetask.core import jsonwire

DOCUMENTS: list[Any] = [
    {"kind": "Task", "metadata": {"name": "t", "labels": {"kubetask.io/tenant": "alice"}},
     "spec": {"parameters": {"prompt": "héllo ✓", "temperature": 0.7, "n": -3, "stop": None, "ok": True}}},
    [1, 2.5, "x", [], {}],
    "plain text",
    9223372036854775807,
]


@pytest.mark.parametrize("value", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_decoding_gives_the_standard_librarys_value(value: Any) -> None:
    wire = json.dumps(value).encode()
    assert jsonwire.loads(wire) == json.loads(wire)
    assert jsonwire.loads(bytearray(wire)) == value
    assert jsonwire.loads(wire.decode()) == value


def test_documents_orjson_refuses_are_read_by_the_standard_library() -> None:
    assert jsonwire.loads('{"x": NaN}')["x"] != jsonwire.loads('{"x": NaN}')["x"]  # NaN, as json reads it
    assert jsonwire.loads(b'{"t": Infinity}') == {"t": float("inf")}
    assert jsonwire.loads('{"a": 1}'.encode("utf-16")) == {"a": 1}  # json detects UTF-16


def test_an_integer_beyond_64_bits_reads_as_a_float_as_the_apiserver_stores_it() -> None:
    assert jsonwire.loads(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


def test_bad_json_raises_the_standard_librarys_error() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonwire.loads(b'{"metadata": ')
    assert caught.value.pos == 13


def test_encoding_is_compact_utf8_and_round_trips() -> None:
    value = DOCUMENTS[0]
    wire = jsonwire.dumps(value)
    assert wire == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert "héllo ✓".encode() in wire


def test_encoding_hands_datetimes_and_dataclasses_to_default_like_json_dumps() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert jsonwire.dumps({"at": when, "p": Point(1)}, default=str) == json.dumps(
        {"at": when, "p": Point(1)}, default=str, separators=(",", ":")).encode()


def test_what_orjson_cannot_encode_follows_json_dumps_rules() -> None:
    assert json.loads(jsonwire.dumps({1: "a", "big": 2**70})) == {"1": "a", "big": 2**70}
    with pytest.raises(TypeError, match="set"):
        jsonwire.dumps({"s": {1, 2}})
    assert jsonwire.dumps({"s": {1}}, default=sorted) == b'{"s":[1]}'
