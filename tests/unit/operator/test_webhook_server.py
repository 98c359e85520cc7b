"""The admission server on its own thread and loop (kubetask.operator.webhooks), with Kopf's review function
replaced by a recorder: which thread answered each review, over real HTTPS with the generated certificate."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kubetask.operator.webhooks import ReviewRouter, ServiceWebhookServer, UnknownResourceError, WebhookServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """Stands in for Kopf's ``serve_admission_request``: answers with where it ran."""

    def __init__(self, *, unknown_off_loop: bool = False) -> None:
        self.calls: list[tuple[str | None, str]] = []
        self.unknown_off_loop = unknown_off_loop
        self.main = threading.current_thread().name

    async def __call__(self, request: Any, *, webhook: str | None = None, headers: Any = None,
                       sslpeer: Any = None) -> dict[str, Any]:
        here = threading.current_thread().name
        self.calls.append((webhook, here))
        if self.unknown_off_loop and here != self.main:
            raise UnknownResourceError("re-discovering")
        await asyncio.sleep(0)  # a review awaits; the answer must survive the loop's turn
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": request["request"]["uid"], "allowed": True, "thread": here}}


def _client_context(config: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
    context.check_hostname = False  # the certificate names 127.0.0.1 as an IP SAN; the CA check is what counts
    return context


async def _review(session: aiohttp.ClientSession, url: str, uid: str, context: ssl.SSLContext) -> dict[str, Any]:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": uid}}
    async with session.post(url, json=body, ssl=context) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


@pytest.fixture
async def served() -> AsyncIterator[tuple[WebhookServer, Recorder, AsyncIterator[Any], dict[str, Any]]]:
    server = WebhookServer(addr="127.0.0.1", host="127.0.0.1", port=_free_port(), off_loop={"rules", "defaults"})
    recorder = Recorder()
    async with server:  # as Kopf uses it: leaving closes what ``server(fn)`` started
        configs = server(recorder)
        config = await asyncio.wait_for(configs.__anext__(), 30)
        yield server, recorder, configs, config


async def test_task_reviews_are_answered_on_the_admission_thread_and_others_on_the_operators_loop(
        served: tuple[WebhookServer, Recorder, AsyncIterator[Any], dict[str, Any]]) -> None:
    _, recorder, _, config = served
    context = _client_context(config)
    async with aiohttp.ClientSession() as session:
        rules = await _review(session, config["url"] + "/rules", "u1", context)
        defaults = await _review(session, config["url"] + "/defaults", "u2", context)
        tenant = await _review(session, config["url"] + "/tenant-rules", "u3", context)
    assert rules["response"] == {"uid": "u1", "allowed": True, "thread": "kubetask-admission"}
    assert defaults["response"]["thread"] == "kubetask-admission"
    assert tenant["response"] == {"uid": "u3", "allowed": True, "thread": recorder.main}
    assert recorder.calls == [("rules", "kubetask-admission"), ("defaults", "kubetask-admission"),
                              ("tenant-rules", recorder.main)]


async def test_concurrent_reviews_all_get_their_own_answer(
        served: tuple[WebhookServer, Recorder, AsyncIterator[Any], dict[str, Any]]) -> None:
    _, recorder, _, config = served
    context = _client_context(config)
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(
            _review(session, config["url"] + ("/rules" if i % 2 else "/tenant-rules"), f"u{i}", context)
            for i in range(40)))
    assert [a["response"]["uid"] for a in answers] == [f"u{i}" for i in range(40)]
    assert {a["response"]["thread"] for a in answers[1::2]} == {"kubetask-admission"}
    assert {a["response"]["thread"] for a in answers[0::2]} == {recorder.main}


async def test_closing_the_server_stops_its_thread_and_frees_the_port() -> None:
    port = _free_port()
    server = WebhookServer(addr="127.0.0.1", host="127.0.0.1", port=port, off_loop={"rules"})
    async with server:
        await asyncio.wait_for(server(Recorder()).__anext__(), 30)
        assert any(t.name == "kubetask-admission" and t.is_alive() for t in threading.enumerate())
    assert not any(t.name == "kubetask-admission" and t.is_alive() for t in threading.enumerate())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing listens there any more


async def test_a_server_that_cannot_listen_fails_its_caller() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        server = WebhookServer(addr="127.0.0.1", host="127.0.0.1", port=port, off_loop={"rules"})
        async with server:
            with pytest.raises(OSError):
                # Kopf binds with SO_REUSEPORT, which a listening socket without it still refuses
                await asyncio.wait_for(server(Recorder()).__anext__(), 30)
    assert not any(t.name == "kubetask-admission" and t.is_alive() for t in threading.enumerate())


async def test_a_review_kopf_cannot_place_off_loop_is_asked_again_on_the_operators_loop() -> None:
    recorder = Recorder(unknown_off_loop=True)
    router = ReviewRouter(recorder, asyncio.get_running_loop(), {"rules"})
    answered: dict[str, Any] = {}

    def admission_thread() -> None:
        answered.update(asyncio.run(router({"request": {"uid": "u9"}}, webhook="rules")))

    await asyncio.to_thread(admission_thread)
    assert answered["response"]["thread"] == recorder.main
    assert [call[0] for call in recorder.calls] == ["rules", "rules"]
    assert recorder.calls[0][1] != recorder.main


async def test_the_in_cluster_server_advertises_its_service_and_stops_cleanly() -> None:
    server = ServiceWebhookServer(service_name="kubetask-webhook", service_namespace="kubetask-system",
                                  addr="127.0.0.1", host="kubetask-webhook.kubetask-system.svc", port=_free_port(),
                                  off_loop={"rules"})
    async with server:
        config = await asyncio.wait_for(server(Recorder()).__anext__(), 30)
        assert "url" not in config
        assert config["service"] == {"name": "kubetask-webhook", "namespace": "kubetask-system", "port": 443,
                                     "path": ""}
        assert base64.b64decode(config["caBundle"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert not any(t.name == "kubetask-admission" and t.is_alive() for t in threading.enumerate())


def test_review_times_are_labelled_only_with_the_handlers_own_ids() -> None:
    from kubetask.operator.metrics import Metrics
    from kubetask.operator.runner import webhook_server
    from kubetask.settings import OperatorSettings

    metrics = Metrics()
    server = webhook_server(OperatorSettings(metrics_port=0, liveness_port=0, webhook_port=0), _free_port(), metrics)
    assert server.observe is not None and server.off_loop == {"defaults", "rules", "template-rules"}
    server.observe("rules", 0.002)
    server.observe("tenant-rules", 0.004)
    for path in ("probe-123", "../../etc", "rules/extra"):  # a caller picks any path: no label per path
        server.observe(path, 0.001)

    def count(webhook: str) -> float | None:
        return metrics.registry.get_sample_value("kubetask_admission_review_duration_seconds_count",
                                                 {"webhook": webhook})

    assert (count("rules"), count("tenant-rules"), count("other")) == (1.0, 1.0, 3.0)
    assert count("probe-123") is None
