"""Kopf's webhook server, on an event loop of its own, with self-signed certificates built by ``cryptography``.

* **Its own loop.** The apiserver waits on every Task create for two reviews (defaults, then rules).
  :class:`WebhookServer` serves HTTPS in a thread with its own event loop, so a review never waits for
  the operator's loop to finish a scheduling pass or a batch of watch events: the reviews named in
  ``off_loop`` (the Task and TaskTemplate ones, which read only thread-safe lookups: see
  :class:`kubetask.operator.indexes.AdmissionIndex`) are answered there, and every other review
  (Tenants: Kopf's per-object memories live on its loop) is handed to the operator's loop.  The GIL
  still serialises Python, but it changes hands every few milliseconds, where the loop ran each
  callback to its end.  Measured under a burst of 1,000 creates (``bench/operator_throughput.py``): the
  operator answers a review in 1-3 ms at any load (``kubetask_admission_review_duration_seconds``);
  what the apiserver measures beyond that is the way there and back on a machine whose CPU is full.
* **Certificates.** Kopf builds self-signed certificates with the optional ``certbuilder`` package;
  kubetask already depends on ``cryptography``, so :meth:`WebhookServer.build_certificate` uses it.
* ``ServiceWebhookServer`` advertises the server through a Service (in-cluster) instead of a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import aiohttp.web
import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:  # Kopf's own (not exported): a review for a resource Kopf is re-discovering at that moment
    from kopf._core.engines.admission import UnknownResourceError
except ImportError:  # another Kopf layout: such a review is simply answered on the operator's loop
    class UnknownResourceError(Exception):  # type: ignore[no-redef]
        """Never raised."""

log = logging.getLogger("kubetask.operator")

STOP_SECONDS = 10.0
"""How long stopping waits for the admission thread to close its server."""


def self_signed_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA-capable server certificate for ``hostnames`` (PEM cert, PEM key)."""
    names: list[x509.GeneralName] = []
    common_name: str | None = None
    for host in hostnames:
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            common_name = common_name or host
            continue
        if not ip.is_unspecified:
            names.append(x509.IPAddress(ip))
            common_name = common_name or str(ip)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or "kubetask-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# An AdmissionReview carries the object and, on UPDATE, its old version too: a Task with a
# 1 MiB script (the seeds' limit) makes a review of 2+ MiB, past aiohttp's default 1 MiB body
# limit, which would fail closed. The apiserver's own request limit is 3 MiB per object.
MAX_REVIEW_BYTES = 8 * 1024 * 1024


class ReviewRouter:
    """Kopf's review function, called where each review may run: on the admission loop, or the operator's."""

    def __init__(self, fn: Any, operator_loop: asyncio.AbstractEventLoop, off_loop: Collection[str]) -> None:
        self.fn, self.operator_loop, self.off_loop = fn, operator_loop, frozenset(off_loop)

    async def __call__(self, request: Any, *, webhook: str | None = None, headers: Any = None,
                       sslpeer: Any = None) -> Any:
        if webhook in self.off_loop:
            try:
                return await self.fn(request, webhook=webhook, headers=headers, sslpeer=sslpeer)
            except UnknownResourceError:
                # Kopf empties and refills its resource set on its own loop when it re-discovers the
                # CRDs; a review that fell into that moment is asked again there, where it cannot.
                pass
        answered = asyncio.run_coroutine_threadsafe(
            self.fn(request, webhook=webhook, headers=headers, sslpeer=sslpeer), self.operator_loop)
        return await asyncio.wrap_future(answered)


class AdmissionThread(threading.Thread):
    """Runs ``serve()`` (an async iterator of client configs) on a loop of its own; hands each to ``deliver``."""

    def __init__(self, serve: Callable[[], AsyncIterator[Any]], deliver: Callable[[Any], None]) -> None:
        super().__init__(name="kubetask-admission", daemon=True)
        self.serve, self.deliver = serve, deliver
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._task = self.loop.create_task(self._drive())
            self._started.set()
            self.loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._started.set()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _drive(self) -> None:
        try:
            async for config in self.serve():
                self.deliver(config)
        except Exception as error:  # the server could not start (a port in use, bad certificates)
            self.deliver(error)
            return
        self.deliver(StopAsyncIteration())

    def cancel(self) -> None:
        """Stop serving (from any thread); :meth:`join` then waits for the server to close."""
        self._started.wait()
        task = self._task
        if task is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to stop
                self.loop.call_soon_threadsafe(task.cancel)


class WebhookServer(kopf.WebhookServer):
    """Kopf's local HTTPS webhook server, on its own thread and loop; certificates from ``cryptography``.

    ``off_loop``: the handler ids (the last part of the review's URL path) whose reviews are answered on
    the admission loop; every other review runs on the loop that started the server (Kopf's).
    ``observe(webhook, seconds)``: called (on the admission thread) with how long each review took.
    """

    def __init__(self, *, off_loop: Collection[str] = (), observe: Callable[[str, float], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.off_loop = frozenset(off_loop)
        self.observe = observe

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        operator_loop = asyncio.get_running_loop()
        configs: asyncio.Queue[Any] = asyncio.Queue()

        def deliver(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the operator's loop is closed: nobody waits any more
                operator_loop.call_soon_threadsafe(configs.put_nowait, item)

        router = ReviewRouter(fn, operator_loop, self.off_loop)
        # Kopf's metaclass wraps every ``__call__`` to remember its generator for ``__aexit__``, which closes it
        # on the operator's loop; the base server's generator runs on the admission loop, so it is called
        # unwrapped, and cancelling the thread's task closes it there.
        serve = getattr(kopf.WebhookServer.__call__, "__wrapped__", kopf.WebhookServer.__call__)
        thread = AdmissionThread(lambda: serve(self, router), deliver)
        thread.start()
        try:
            while True:
                item = await configs.get()
                if isinstance(item, StopAsyncIteration):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            thread.cancel()
            await asyncio.to_thread(thread.join, STOP_SECONDS)
            if thread.is_alive():
                log.warning("the admission server did not stop within %.0f s", STOP_SECONDS)

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return self_signed_certificate(hostnames, password)

    # Kopf's is a staticmethod, but it calls it as ``self._serve(fn, request)``: this one needs ``self.observe``.
    async def _serve(self, fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:  # type: ignore[override]
        began = time.perf_counter()
        try:
            # Kopf builds its aiohttp app with the default body limit; a clone of the request may
            # read more (aiohttp's public ``clone(client_max_size=...)``).
            larger = request.clone(client_max_size=MAX_REVIEW_BYTES)
            response: aiohttp.web.Response = await kopf.WebhookServer._serve(fn, larger)
            return response
        finally:
            if self.observe is not None:
                self.observe(str(request.match_info.get("id") or ""), time.perf_counter() - began)


class ServiceWebhookServer(WebhookServer):
    """The same server, advertised to the apiserver through a Service (in-cluster)."""

    def __init__(self, *, service_name: str, service_namespace: str, service_port: int = 443,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = {"name": service_name, "namespace": service_namespace, "port": service_port}

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for config in super().__call__(fn):
            advertised: dict[str, Any] = dict(config)
            advertised.pop("url", None)
            advertised["service"] = {**self.service, "path": ""}
            yield advertised
