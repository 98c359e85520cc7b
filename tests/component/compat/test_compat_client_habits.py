"""Habits of real clients that no seed spells out: trailing slashes, charset in Content-Type, unknown
fields, string priorities, dates with and without ``Z``, out-of-range paging."""

from __future__ import annotations

import json

import httpx
from compat_support import FAR_FUTURE, assert_error

BODY = {"name": "habits", "image": "busybox", "scheduled_at": FAR_FUTURE}


def test_trailing_slash_on_collection(alice: httpx.Client, root_alice: httpx.Client) -> None:
    created = alice.post("/tasks/", json=BODY)
    assert created.status_code == 201, created.text
    listed = alice.get("/tasks/")
    assert listed.status_code == 200 and "tasks" in listed.json()
    assert root_alice.get("/tasks/").status_code == 200
    assert alice.get("/templates/").status_code == 200
    assert alice.get("/workers/").status_code == 200
    alice.delete(f"/tasks/{created.json()['id']}")


def test_trailing_slash_on_item(alice: httpx.Client) -> None:
    task = alice.post("/tasks", json=BODY).json()
    got = alice.get(f"/tasks/{task['id']}/")
    assert got.status_code == 200 and got.json()["id"] == task["id"]
    assert alice.delete(f"/tasks/{task['id']}/").status_code == 200


def test_content_type_variants(alice: httpx.Client) -> None:
    for content_type in ("application/json; charset=utf-8", "application/json;charset=UTF-8", "text/plain",
                         None, "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = alice.post("/tasks", content=json.dumps(BODY).encode(), headers=headers)
        assert response.status_code == 201, (content_type, response.text)
        alice.delete(f"/tasks/{response.json()['id']}")


def test_unknown_fields_are_refused_naming_them(alice: httpx.Client) -> None:
    """Issue 9: a silently ignored field (``gpuz``) would run the task other than asked."""
    body = assert_error(alice.post("/tasks", json={**BODY, "client_version": "1.2.3"}), 422, "UNKNOWN_FIELD")
    assert body["field"] == "client_version"


def test_string_priorities(alice: httpx.Client) -> None:
    for raw, expected in (("high", 8), ("7", 7), ("low", 2), (3, 3), ("HIGH", 8)):
        response = alice.post("/tasks", json={**BODY, "priority": raw})
        assert response.status_code == 201, (raw, response.text)
        assert response.json()["priority"] == expected, raw
        alice.delete(f"/tasks/{response.json()['id']}")
    assert_error(alice.post("/tasks", json={**BODY, "priority": 5.5}), 422)
    assert_error(alice.post("/tasks", json={**BODY, "priority": True}), 422)


def test_dates_with_and_without_z(alice: httpx.Client) -> None:
    for raw in ("2099-01-01T00:00:00Z", "2099-01-01T00:00:00", "2099-01-01T02:00:00+02:00",
                "2099-01-01T00:00:00.000Z"):
        response = alice.post("/tasks", json={**BODY, "scheduled_at": raw})
        assert response.status_code == 201, (raw, response.text)
        assert response.json()["scheduled_at"] == "2099-01-01T00:00:00Z", raw
        alice.delete(f"/tasks/{response.json()['id']}")
    assert_error(alice.post("/tasks", json={**BODY, "scheduled_at": "tomorrow"}), 422)
    assert alice.get("/tasks", params={"created_after": "2020-01-01T00:00:00+00:00"}).status_code == 200
    assert alice.get("/tasks", params={"created_after": "2020-01-01T00:00:00"}).status_code == 200


def test_paging_bounds(alice: httpx.Client) -> None:
    assert_error(alice.get("/tasks", params={"offset": -1}), 422)
    assert_error(alice.get("/tasks", params={"limit": 100000}), 422)
    assert alice.get("/tasks", params={"limit": 1000}).status_code == 200
    assert_error(alice.get("/search/tasks", params={"offset": -1}), 422)


def test_method_not_allowed_uses_the_error_body(alice: httpx.Client) -> None:
    assert_error(alice.put("/tasks", json={}), 405)
    assert_error(alice.get("/no/such/endpoint"), 404)


def test_id_header_echo_and_bearer_api_key(dev_url_client: httpx.Client) -> None:
    response = dev_url_client.get("/api/v1/tasks", headers={"Authorization": "Bearer dev-alice-key"})
    assert response.status_code == 200
