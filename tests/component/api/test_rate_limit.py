"""Per-tenant rate limits from the Tenant's ``limits.requestsPerMinute`` (default 600)."""

from __future__ import annotations

import httpx
from kt_api_support import Stack, assert_error_body


def test_over_the_limit_is_429_with_headers(shared: Stack) -> None:
    shared.add_tenant("gina", "gina-key", limits={"requestsPerMinute": 8})
    with shared.client("gina-key") as gina:
        statuses, remaining = [], []
        for _ in range(12):
            response = gina.get("/tasks")
            statuses.append(response.status_code)
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
            assert response.headers["X-RateLimit-Limit"] == "8"
        assert 429 in statuses
        first_refusal = statuses.index(429)
        assert all(s == 200 for s in statuses[:first_refusal])
        assert remaining[first_refusal] == 0
        assert remaining[:3] == sorted(remaining[:3], reverse=True)
        body = assert_error_body(gina.get("/tasks"), 429, "RATE_LIMITED")
        assert "requests per minute" in body["detail"]
        refused = gina.get("/tasks")
        assert int(refused.headers["Retry-After"]) >= 1 and int(refused.headers["X-RateLimit-Reset"]) > 0


def test_limits_are_per_tenant_and_default_600(shared: Stack, a: httpx.Client) -> None:
    shared.add_tenant("hank", "hank-key")
    with shared.client("hank-key") as hank:
        assert hank.get("/tasks").headers["X-RateLimit-Limit"] == "600"
    assert a.get("/tasks").status_code == 200


def test_raising_the_limit_applies_at_once(shared: Stack) -> None:
    shared.add_tenant("ivy", "ivy-key", limits={"requestsPerMinute": 7})
    with shared.client("ivy-key") as ivy:
        while ivy.get("/tasks").status_code != 429:
            pass
        with shared.client("dev-admin-key") as root:
            assert root.patch("/users/ivy/limits", json={"requests_per_minute": 1000}).status_code == 200
        shared.wait_for(lambda: ivy.get("/tasks").status_code == 200, timeout=10)
