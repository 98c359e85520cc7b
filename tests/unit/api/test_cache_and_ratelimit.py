"""The informer cache (indexes, read-your-writes guard, relist, watch events) and the rate limiter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kubetask.api.errors import problem_from_api_error, strip_webhook_prefix
from kubetask.api.ratelimit import RateLimiter
from kubetask.kube.cache import Informer, is_newer
from kubetask.kube.client import TASKS, ApiError


def obj(name: str, rv: str, ns: str = "ns", user: str = "alice") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                         "labels": {"kubetask.io/user": user}}, "spec": {"user": user}}


class FakeClient:
    """LIST returns ``items``; WATCH replays ``events`` once, then 410 Gone, then hangs."""

    def __init__(self, items: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.items = items
        self.events = events
        self.lists = 0
        self.watches = 0

    async def list(self, resource: Any, namespace: Any = None, **_: Any) -> dict[str, Any]:
        self.lists += 1
        return {"metadata": {"resourceVersion": "10"}, "items": [dict(i) for i in self.items]}

    async def watch(self, resource: Any, namespace: Any = None, **_: Any) -> AsyncIterator[dict[str, Any]]:
        self.watches += 1
        if self.watches == 1:
            for event in self.events:
                yield event
            yield {"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}
        await asyncio.sleep(3600)


def test_is_newer() -> None:
    assert is_newer(obj("a", "5"), None)
    assert is_newer(obj("a", "5"), obj("a", "4")) and is_newer(obj("a", "5"), obj("a", "5"))
    assert not is_newer(obj("a", "4"), obj("a", "5"))
    assert is_newer(obj("a", "x"), obj("a", "5"))


def test_informer_lists_watches_indexes_and_relists() -> None:
    async def run() -> None:
        client = FakeClient([obj("a", "1"), obj("b", "2", user="bob", ns="other")], [
            {"type": "ADDED", "object": obj("c", "11")},
            {"type": "MODIFIED", "object": obj("a", "12")},
            {"type": "DELETED", "object": obj("b", "13", user="bob", ns="other")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "14"}}},
        ])
        informer = Informer(client, TASKS)  # type: ignore[arg-type]
        informer.start()
        assert await informer.wait_synced(2)
        for _ in range(100):
            if client.lists >= 2:
                break
            await asyncio.sleep(0.01)
        assert client.lists == 2  # relisted after 410 Gone
        assert {o["metadata"]["name"] for o in informer.list()} == {"a", "b"}  # the relist is the truth
        assert [o["metadata"]["name"] for o in informer.by_index("user", "bob")] == ["b"]
        assert [o["metadata"]["name"] for o in informer.by_index("namespace", "ns")] == ["a"]
        assert informer.upsert(obj("a", "50")) is True
        assert informer.upsert(obj("a", "40")) is False  # older than the cached one
        assert informer.get("a", "ns")["metadata"]["resourceVersion"] == "50"
        informer.remove(obj("a", "51"))
        assert informer.get("a", "ns") is None and informer.by_index("name", "a") == []
        await informer.stop()
    asyncio.run(run())


def test_rate_limiter_fixed_window() -> None:
    limiter = RateLimiter()
    decisions = [limiter.hit("alice", 3, now=120.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].reset == 180
    assert limiter.hit("bob", 3, now=120.0).allowed
    assert limiter.hit("alice", 3, now=180.0).allowed  # new window
    assert decisions[0].headers()["X-RateLimit-Limit"] == "3"


def test_rate_limiter_replicas_each_count_their_share() -> None:
    # Two replicas behind one Service: each lets a tenant through for half of 5 (rounded up), so two
    # together let through 6 at most, never 10.
    replicas = [RateLimiter(replicas=2), RateLimiter(replicas=2)]
    decisions = [replicas[i % 2].hit("alice", 5, now=120.0) for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False] * 2
    assert decisions[0].limit == 5 and decisions[0].headers()["X-RateLimit-Limit"] == "5"
    assert [d.remaining for d in decisions[:6:2]] == [4, 2, 0]  # this replica's remainder, scaled to both
    assert RateLimiter(replicas=0).replicas == 1


def test_apiserver_errors_map_to_rest_errors() -> None:
    denied = ApiError(400, {"reason": "BadRequest", "message":
                            'admission webhook "validate.kubetask.io" denied the request: Too many pending tasks '
                            '(max 50)'})
    problem = problem_from_api_error(denied)
    assert problem.status == 400 and problem.detail == "Too many pending tasks (max 50)"
    assert problem.code == "TOO_MANY_PENDING"
    down = problem_from_api_error(ApiError(500, {"message": 'Internal error occurred: failed calling webhook '
                                                            '"x": connection refused'}))
    assert down.status == 503
    assert problem_from_api_error(ApiError(403, {"message": "exceeded quota: gpu"})).code == "QUOTA_EXCEEDED"
    assert problem_from_api_error(ApiError(422, {"reason": "Invalid", "message": "bad", "details": {
        "causes": [{"field": "spec.priority"}]}})).field == "spec.priority"
    assert strip_webhook_prefix("plain") == "plain"
