"""kubetask's apiserver client on the wire, against a small HTTP server standing in for the apiserver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kubetask.kube.client import PODS, ApiError, KubeClient
from kubetask.kube.config import ClusterAccess


@pytest.fixture
async def apiserver() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, str]]]:
    """An http endpoint that accepts only the token in ``valid["token"]`` and records every request."""
    seen: list[dict[str, Any]] = []
    valid = {"token": "fresh"}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append({"method": request.method, "path": request.path, "query": dict(request.query),
                     "auth": request.headers.get("Authorization"), "type": request.headers.get("Content-Type"),
                     "groups": request.headers.getall("Impersonate-Group", []), "body": body})
        if request.headers.get("Authorization") != f"Bearer {valid['token']}":
            return web.json_response({"kind": "Status", "reason": "Unauthorized", "message": "bad token"},
                                     status=401)
        if request.path.endswith("/missing"):
            return web.json_response({"kind": "Status", "reason": "NotFound", "message": "pods \"missing\""
                                      " not found"}, status=404)
        return web.json_response({"kind": "Pod", "metadata": {"name": "p"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, valid
    await runner.cleanup()


async def test_a_rotated_token_file_is_reread_once_after_401(
        apiserver: tuple[str, list[dict[str, Any]], dict[str, str]], tmp_path: Path) -> None:
    url, seen, valid = apiserver
    token = tmp_path / "token"
    token.write_text("first")
    valid["token"] = "first"
    async with KubeClient(ClusterAccess(url, token_file=str(token))) as client:
        assert (await client.get(PODS, "p", "ns"))["kind"] == "Pod"
        token.write_text("second")  # the kubelet rotated the token; the old one is no longer accepted
        valid["token"] = "second"
        assert (await client.get(PODS, "p", "ns"))["kind"] == "Pod"
    assert [r["auth"] for r in seen] == ["Bearer first", "Bearer first", "Bearer second"]


async def test_requests_carry_credentials_json_and_impersonation(
        apiserver: tuple[str, list[dict[str, Any]], dict[str, str]]) -> None:
    url, seen, _ = apiserver
    access = ClusterAccess(url, token="fresh", impersonate_groups=("ml", "gpu"))
    async with KubeClient(access) as client:
        created = await client.create(PODS, {"metadata": {"name": "p"}, "spec": {"n": 1}}, "ns")
        await client.list(PODS, "ns", label_selector="a=b")
        with pytest.raises(ApiError) as missing:
            await client.get(PODS, "missing", "ns")
    assert created["metadata"]["name"] == "p"
    post, listing, get = seen
    assert get["path"] == "/api/v1/namespaces/ns/pods/missing"
    assert post["method"] == "POST" and post["path"] == "/api/v1/namespaces/ns/pods"
    assert post["type"] == "application/json" and post["body"] == b'{"metadata":{"name":"p"},"spec":{"n":1}}'
    assert post["auth"] == "Bearer fresh" and post["groups"] == ["ml", "gpu"]
    assert listing["query"] == {"labelSelector": "a=b", "limit": "500"} and listing["type"] is None
    assert missing.value.not_found and missing.value.reason == "NotFound"


async def test_a_static_token_401_is_not_retried(apiserver: tuple[str, list[dict[str, Any]], dict[str, str]]) -> None:
    url, seen, _ = apiserver
    async with KubeClient(ClusterAccess(url, token="wrong")) as client:
        with pytest.raises(ApiError) as failed:
            await client.get(PODS, "p", "ns")
    assert failed.value.status == 401 and len(seen) == 1
