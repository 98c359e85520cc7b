"""kubetask.core.rest.query: precomputed rows answer exactly like the objects, byte for byte."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from task_samples import QUERIES, ROWS, TASK_OBJS

from kubetask.api.routes.common import FastJSON
from kubetask.core.rest.present import task_public
from kubetask.core.rest.profiles import PROFILES, Profile
from kubetask.core.rest.query import (
    SORT_FIELDS,
    TaskRow,
    encode_json,
    list_envelope,
    list_envelope_json,
    make_query,
    match_rows,
    query_key,
    query_rows,
    query_tasks,
)


@pytest.mark.parametrize("params", [q for q in QUERIES if "queued_as_pending" not in q])  # an API-side flag
def test_rows_query_like_objects(params: dict[str, Any]) -> None:
    q = make_query(**params)
    total, items = query_tasks(TASK_OBJS, q)
    row_total, rows = query_rows(ROWS, q)
    assert row_total == total
    assert [r.obj for r in rows] == items
    assert [r.obj for r in match_rows(list(reversed(ROWS)), q)][q.offset:q.offset + q.limit] == items


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_row_json_and_envelope_are_byte_identical(profile: Profile) -> None:
    q = make_query(status="pending", sort_by="priority", limit=5, offset=2)
    total, items = query_tasks(TASK_OBJS, q)
    public = [task_public(o, profile) for o in items]
    _, rows = query_rows(ROWS, q)
    texts = [r.public_json(profile) for r in rows]
    assert texts == [encode_json(p) for p in public]
    assert texts[0] is rows[0].public_json(profile)  # made once per object version and profile
    expected = FastJSON(list_envelope(total, q, public)).body
    assert list_envelope_json(total, q, texts).encode() == expected
    assert ("[" + ",".join(texts) + "]").encode() == FastJSON(public).body
    for total, offset in itertools.product((0, 1, 7, 50), (0, 5, 60)):
        q = make_query(limit=5, offset=offset)
        assert list_envelope_json(total, q, texts[:2]).encode() == FastJSON(list_envelope(total, q,
                                                                                          public[:2])).body


def test_query_key_ignores_only_the_page() -> None:
    assert query_key(make_query(limit=5, offset=10)) == query_key(make_query(page=4, limit=50))
    assert query_key(make_query(tag="x")) != query_key(make_query(tag="y"))
    assert query_key(make_query(sort_by="created")) == query_key(make_query(sort_by="created_at"))
    assert query_key(make_query(sort_order="asc")) != query_key(make_query(sort_order="desc"))
    assert len(set(SORT_FIELDS.values())) > 5


def test_rows_survive_a_json_round_trip_of_the_object() -> None:
    # The cache holds decoded JSON; a row over an equal object gives the same text.
    o = TASK_OBJS[5]
    assert TaskRow(json.loads(json.dumps(o))).public_json() == TaskRow(o).public_json()
