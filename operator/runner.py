"""Run the kubetask operator: Kopf + the scheduler loop + metrics + (optionally) leader election.

``run_operator`` is the async entry point (the CLI and ``kubetask dev`` use
it); ``run_operator_in_thread`` runs the same thing on its own event loop in
a background thread, for tests and the dev stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from aiohttp import web

from kubetask.core.admission import admission_probe_task, probe_passed_both_webhooks
from kubetask.core.times import parse_time
from kubetask.kube.client import LEASES, TASKS, ApiError, KubeClient, Resource
from kubetask.kube.memory import small_tls_read_buffers
from kubetask.logs import quiet_admission_refusals
from kubetask.operator.handlers import ADMISSION_REVIEWS, OFF_LOOP_REVIEWS, build_registry
from kubetask.operator.metrics import Metrics, serve_metrics
from kubetask.operator.notify import Notifier
from kubetask.operator.scheduler import Scheduler
from kubetask.operator.state import State
from kubetask.operator.webhooks import ServiceWebhookServer, WebhookServer
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

log = logging.getLogger("kubetask.operator")

WEBHOOK_NAME = "kubetask.io"
VALIDATING = Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                      "ValidatingWebhookConfiguration", namespaced=False)
MUTATING = Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                    "MutatingWebhookConfiguration", namespaced=False)


class LeadershipLost(RuntimeError):
    """The Lease was taken over or could not be renewed: this replica must stop."""


# ---------------------------------------------------------------------- connection


# ---------------------------------------------------------------------- leader election


def _micro(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")




@dataclass
class LeaderElector:
    """Leader election on a coordination.k8s.io/v1 Lease (the client-go protocol, simplified)."""

    client: KubeClient
    name: str
    namespace: str
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    lease_seconds: int = 15
    renew_seconds: float = 3.0
    lost: bool = False

    async def _try(self) -> bool:
        now = datetime.now(UTC)
        lease = await self.client.get_or_none(LEASES, self.name, self.namespace)
        spec_new = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                    "renewTime": _micro(now)}
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec_new, "acquireTime": _micro(now), "leaseTransitions": 0}}
            try:
                await self.client.create(LEASES, body, self.namespace)
                return True
            except ApiError as error:
                if error.conflict:
                    return False
                raise
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        renew = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renew is None or renew + timedelta(seconds=duration) < now
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec_new["acquireTime"] = _micro(now)
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**spec, **spec_new}
        try:
            await self.client.replace(LEASES, lease, self.namespace)
            return True
        except ApiError as error:
            if error.conflict:
                return False
            raise

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Block until this replica holds the Lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            try:
                if await self._try():
                    log.info("leader election: acquired lease %s/%s as %s", self.namespace, self.name,
                             self.identity)
                    return True
            except Exception as error:
                log.warning("leader election: %s", error)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.renew_seconds)
        return False

    async def keep(self, on_loss: asyncio.Event) -> None:
        """Renew until stopped; if renewal fails past the lease duration, flag the loss."""
        last_ok = asyncio.get_running_loop().time()
        while not on_loss.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(on_loss.wait(), timeout=self.renew_seconds)
            if on_loss.is_set():
                return
            try:
                if await self._try():
                    last_ok = asyncio.get_running_loop().time()
                    continue
                log.error("leader election: lease %s/%s taken over; stopping", self.namespace, self.name)
                self.lost = True
            except Exception as error:
                log.warning("leader election: renew failed: %s", error)
                if asyncio.get_running_loop().time() - last_ok < self.lease_seconds - self.renew_seconds:
                    continue
                self.lost = True
            on_loss.set()
            return

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            lease = await self.client.get_or_none(LEASES, self.name, self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                await self.client.replace(LEASES, lease, self.namespace)


# ---------------------------------------------------------------------- webhook server


async def serve_standby_liveness(port: int) -> web.AppRunner:
    """Answer the liveness probe while waiting for the Lease: a standby is alive, just not leading.

    Readiness stays false meanwhile (the chart probes readiness on the webhook port, which only
    the leader opens), so webhook traffic never reaches a standby.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True, "leader": False})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port, reuse_address=True).start()
    return runner


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_server(settings: OperatorSettings, port: int, metrics: Metrics | None = None) -> WebhookServer:
    cert_dir = settings.webhook_cert_dir
    tls: dict[str, Any] = {}
    if cert_dir:
        tls = {"certfile": os.path.join(cert_dir, "tls.crt"), "pkeyfile": os.path.join(cert_dir, "tls.key")}
        ca = os.path.join(cert_dir, "ca.crt")
        if os.path.exists(ca):
            tls["cafile"] = ca
    options: dict[str, Any] = {**tls, "off_loop": OFF_LOOP_REVIEWS}
    if metrics is not None:
        def observe(webhook: str, seconds: float) -> None:
            # Anyone who reaches the port picks the path: only the handlers' own ids become label values.
            label = webhook if webhook in ADMISSION_REVIEWS else "other"
            metrics.admission_review_seconds.labels(webhook=label).observe(seconds)

        options["observe"] = observe
    if settings.webhook_service_name:
        namespace = settings.webhook_service_namespace or "default"
        sans = [settings.webhook_service_name, f"{settings.webhook_service_name}.{namespace}",
                f"{settings.webhook_service_name}.{namespace}.svc",
                f"{settings.webhook_service_name}.{namespace}.svc.cluster.local"]
        return ServiceWebhookServer(service_name=settings.webhook_service_name, service_namespace=namespace,
                                    addr="0.0.0.0", port=port, host=sans[2], extra_sans=sans, **options)
    host = settings.webhook_host or "127.0.0.1"
    return WebhookServer(addr="127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0",
                         host=host, port=port, **options)


def _webhook_only_memories() -> Any:
    """Kopf's per-object memories, kept only for the kinds Kopf watches (Tenants).

    Kopf remembers every object an UPDATE admission review shows it, and forgets it when its
    watch sees the deletion; Kopf does not watch Tasks here, so each reviewed Task would stay
    remembered for the life of the process.  Reviews of Tasks get a throw-away memory instead
    (the handlers use no memo).  The class is Kopf's own (not exported, hence the guard).
    """
    try:
        from kopf._core.reactor import inventory
    except ImportError:  # another Kopf layout: its default memories, and their growth
        return None

    class WebhookOnlyMemories(inventory.ResourceMemories):
        async def recall(self, raw_body: Any, *, memobase: Any = None, noticed_by_listing: bool = False,
                         ephemeral: bool = False) -> Any:
            ephemeral = ephemeral or raw_body.get("kind") in ("Task", "TaskTemplate")  # webhook-only kinds
            return await super().recall(raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing,
                                        ephemeral=ephemeral)

    return WebhookOnlyMemories()


def kopf_settings(settings: OperatorSettings, webhook_port: int, metrics: Metrics | None = None
                  ) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.posting.level = logging.WARNING
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubetask.io")
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubetask.io",
                                                                     key="last-handled-configuration")
    ks.persistence.finalizer = "kubetask.io/finalizer"
    ks.process.ultimate_exiting_timeout = None
    ks.watching.server_timeout = 300
    ks.watching.reconnect_backoff = 0.5
    ks.networking.request_timeout = 60
    if settings.webhook_enabled:
        ks.admission.server = webhook_server(settings, webhook_port, metrics)
        if settings.webhook_manage_configuration:
            ks.admission.managed = WEBHOOK_NAME
    return ks


async def _poll(check: Callable[[], Awaitable[bool]], stop: asyncio.Event, wait_seconds: float = 30) -> bool:
    """Ask ``check`` every 0.1 s until it says yes (True), ``stop`` is set or ``wait_seconds`` pass (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while loop.time() < deadline and not stop.is_set():
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def _webhook_configured(client: KubeClient, port: int, stop: asyncio.Event) -> bool:
    """Wait until both webhook configurations point at this instance's server."""
    async def configured() -> bool:
        for resource in (VALIDATING, MUTATING):
            try:
                config = await client.get_or_none(resource, WEBHOOK_NAME)
            except ApiError:
                config = None
            hooks = (config or {}).get("webhooks") or []
            if not hooks or not all(f":{port}/" in str((h.get("clientConfig") or {}).get("url", ""))
                                    or (h.get("clientConfig") or {}).get("service") for h in hooks):
                return False
        return True
    return await _poll(configured, stop)


async def _webhooks_answer(client: KubeClient, namespace: str, stop: asyncio.Event) -> bool:
    """Wait until the apiserver calls both Task webhooks (see :func:`kubetask.core.admission.admission_probe`)."""
    probe = admission_probe_task(namespace)

    async def answered() -> bool:
        try:
            await client.request("POST", TASKS.path(namespace), query={"dryRun": "All"}, body=probe)
        except ApiError as error:
            if probe_passed_both_webhooks(error.message):
                return True
            log.debug("admission probe: %s", error)
        return False
    return await _poll(answered, stop)


# ---------------------------------------------------------------------- entry points


async def run_operator(
    settings: OperatorSettings,
    gpu: GpuSettings,
    kube: KubeSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: threading.Event | None = None,
    clock: Callable[[], datetime] | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Run the operator until ``stop`` is set.

    Raises :class:`LeadershipLost` if the Lease is lost, so the process exits
    and its pod restarts.  ``ready`` is set once the views are synced, the
    scheduler runs and (if enabled) the webhook configuration points here.
    ``clock`` replaces "now" (tests: month boundaries, scheduledAt).
    """
    stop = stop or asyncio.Event()
    small_tls_read_buffers()
    kopf_objects = logging.getLogger("kopf.objects")
    kopf_objects.setLevel(logging.WARNING)  # one line per handled event is too much
    quiet_admission_refusals(kopf_objects)
    client = await KubeClient.connect(kube.kubeconfig, kube.context)
    metrics = metrics or Metrics()
    state = State(settings, gpu, kube, client, clock=clock, metrics=metrics)
    runners: list[web.AppRunner] = []
    elector: LeaderElector | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        if settings.metrics_port:
            runners.append(await serve_metrics(metrics, settings.metrics_port))
        if settings.leader_election:
            elector = LeaderElector(client, settings.leader_lease_name, settings.leader_lease_namespace)
            standby = await serve_standby_liveness(settings.liveness_port) if settings.liveness_port else None
            try:
                acquired = await elector.acquire(stop)
            finally:
                if standby is not None:
                    await standby.cleanup()  # frees the port for Kopf's own liveness endpoint
            if not acquired:
                return
        state.start()  # the lean list+watch streams of Tasks, Jobs, Pods, Nodes, quotas, Tenants, templates
        webhook_port = settings.webhook_port or _free_port()
        inner_stop = asyncio.Event()
        kopf_ready = asyncio.Event()
        registry = build_registry(state)
        liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        kopf_task = asyncio.create_task(kopf.operator(
            registry=registry,
            settings=kopf_settings(settings, webhook_port, metrics),
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            stop_flag=inner_stop,
            ready_flag=kopf_ready,
            liveness_endpoint=liveness,
            memo=kopf.Memo(state=state),
            memories=_webhook_only_memories(),
        ), name="kubetask-kopf")
        scheduler = Scheduler(state)
        tasks.append(asyncio.create_task(scheduler.run(inner_stop), name="kubetask-scheduler"))
        tasks.append(asyncio.create_task(Notifier(state).run(inner_stop), name="kubetask-webhooks"))  # issue 13
        if elector is not None:
            tasks.append(asyncio.create_task(elector.keep(inner_stop), name="kubetask-lease"))

        async def signal_ready() -> None:
            if not await state.wait_synced(within=120):
                log.warning("the watch caches did not sync within 120 s; still waiting")
                await state.wait_synced()
            log.info("stores synced: %d tasks, %d jobs, %d pods, %d nodes", len(state.tasks), len(state.jobs),
                     len(state.pods), len(state.nodes))
            await kopf_ready.wait()
            if settings.webhook_enabled and settings.webhook_manage_configuration:
                await _webhook_configured(client, webhook_port, inner_stop)
                probe_namespace = settings.namespaces[0] if settings.namespaces else "default"
                if not await _webhooks_answer(client, probe_namespace, inner_stop):
                    log.warning("the apiserver did not call both admission webhooks within 30 s of their "
                                "configuration; Tasks created now may skip them")
            log.info("kubetask operator ready")
            if ready is not None:
                ready.set()

        tasks.append(asyncio.create_task(signal_ready(), name="kubetask-ready"))
        stop_waiter = asyncio.create_task(stop.wait())
        inner_waiter = asyncio.create_task(inner_stop.wait())
        await asyncio.wait({stop_waiter, inner_waiter, kopf_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
        inner_waiter.cancel()
        inner_stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(kopf_task), timeout=20)
        except TimeoutError:
            log.warning("kopf did not stop in time")
        except Exception:
            log.exception("kopf exited with an error")
        if elector is not None and elector.lost:
            raise LeadershipLost(f"lost the lease {settings.leader_lease_namespace}/{settings.leader_lease_name}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if elector is not None and not elector.lost:
            await elector.release()
        for runner in runners:
            await runner.cleanup()
        await state.stop()
        await client.close()


class OperatorHandle:
    """An operator running on its own loop in a background thread."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.metrics = Metrics()
        """The running operator's metrics (what its ``/metrics`` would serve)."""

    def wait_ready(self, timeout: float = 60) -> bool:
        """Block until ready (True), or the operator died / the timeout passed (False)."""
        waited = 0.0
        while waited < timeout:
            if self.ready.wait(0.1):
                return True
            if self.done.is_set():
                return False
            waited += 0.1
        return False

    def stop(self, timeout: float = 30) -> None:
        """Stop gracefully and wait for the thread (idempotent)."""
        if self.loop is not None and self.stop_event is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.stop_event.set)
        if self.thread is not None:
            self.thread.join(timeout)

    def __enter__(self) -> OperatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_operator_in_thread(
    settings: OperatorSettings,
    gpu: GpuSettings,
    kube: KubeSettings,
    *,
    clock: Callable[[], datetime] | None = None,
    wait: bool = True,
    timeout: float = 60,
) -> OperatorHandle:
    """Start the operator in a daemon thread; with ``wait``, return once it is ready (or raise)."""
    handle = OperatorHandle()
    started = threading.Event()

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handle.loop = loop

        async def body() -> None:
            handle.stop_event = asyncio.Event()
            started.set()
            await run_operator(settings, gpu, kube, stop=handle.stop_event, ready=handle.ready, clock=clock,
                               metrics=handle.metrics)

        try:
            loop.run_until_complete(body())
        except BaseException as error:
            handle.error = error
            log.exception("operator thread failed")
        finally:
            started.set()
            handle.done.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    handle.thread = threading.Thread(target=main, name="kubetask-operator", daemon=True)
    handle.thread.start()
    started.wait(10)
    if wait and not handle.wait_ready(timeout):
        handle.stop()
        raise RuntimeError(f"operator did not become ready: {handle.error!r}")
    return handle
