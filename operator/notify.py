"""Completion-webhook delivery: the operator is the single owner (it runs only while it holds the Lease).

* It watches ``TaskWebhook`` resources and hears every Task change of the operator's own store; a Task that
  reaches Succeeded, Failed or Cancelled enqueues one delivery per subscription of its namespace that wants
  that event (``kubetask.core.notifications`` decides, ids are deterministic).
* Each subscription's ledger (outbox, last attempts, recently finished ids, scan mark) lives in the
  TaskWebhook's status, so a restart loses nothing: the outbox is reloaded and Tasks that finished since
  the last scan (minus a margin for late status writes) are enqueued again unless already known.
* One worker per subscription posts its due deliveries in order, signed with the subscription's secret,
  and books each attempt: 2xx acknowledges, anything else is retried with exponential backoff until the
  retry horizon; then the delivery is abandoned and recorded as such.
* SSRF guard: the URL's host is resolved by a resolver that refuses internal addresses (loopback,
  private, link-local, …) unless an admin allowed the network; the connection goes to the address that
  was checked, redirects are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from kubetask import GROUP, VERSION, __version__
from kubetask.core.notifications import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SECRET_KEY,
    SECRET_LABEL,
    SIGNATURE_HEADER,
    WEBHOOK_KIND,
    WEBHOOK_PLURAL,
    Ledger,
    PendingDelivery,
    RetryPolicy,
    UrlRejected,
    address_problem,
    build_payload,
    check_url,
    delivery_id,
    event_for_phase,
    finished_event,
    format_time,
    new_signing_secret,
    parse_networks,
    secret_name,
    signature,
    subscribes,
)
from kubetask.core.objects import Key, Obj
from kubetask.core.rest.present import task_public
from kubetask.core.rest.query import encode_json
from kubetask.core.times import parse_time
from kubetask.kube.cache import Informer
from kubetask.kube.client import SECRETS, ApiError, Resource
from kubetask.operator.state import State
from kubetask.settings import WebhookSettings

log = logging.getLogger("kubetask.operator.notify")

TASK_WEBHOOKS = Resource(GROUP, VERSION, WEBHOOK_PLURAL, WEBHOOK_KIND)
TaskListener = Callable[[Key, Obj | None, Obj | None], None]

SECRET_TTL_SECONDS = 10.0
FLUSH_DELAY_SECONDS = 0.3
_STATUS_OF_EVENT = {"task.completed": "completed", "task.failed": "failed", "task.cancelled": "cancelled"}


def follow_operator_tasks(state: State, listener: TaskListener) -> None:
    """Call ``listener(key, old, new)`` after every change of the operator's Task store (the one place that
    knows how that store reports changes)."""

    def changed(_: str, old: Obj | None, new: Obj | None) -> None:
        meta = (new if new is not None else old or {}).get("metadata") or {}
        listener((str(meta.get("namespace") or ""), str(meta.get("name") or "")), old, new)

    state.tasks.subscribe(changed)


class BlockedAddress(OSError):
    """The webhook host resolves only to addresses deliveries may not reach."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, minus the addresses :func:`address_problem` refuses (checked, then connected to)."""

    def __init__(self, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> None:
        self.allowed = allowed
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if address_problem(str(r["host"]), self.allowed) is None]
        if not allowed:
            problem = address_problem(str(results[0]["host"]), self.allowed) if results else "no address"
            raise BlockedAddress(f"{host} resolves to {problem}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class Subscription:
    """One TaskWebhook as the notifier keeps it: its latest object, its ledger and its worker."""

    obj: Obj
    ledger: Ledger
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: bool = False
    worker: asyncio.Task[None] | None = None

    @property
    def key(self) -> Key:
        meta = self.obj.get("metadata") or {}
        return str(meta.get("namespace")), str(meta.get("name"))

    @property
    def uid(self) -> str:
        return str((self.obj.get("metadata") or {}).get("uid") or "")

    @property
    def created(self) -> datetime | None:
        return parse_time((self.obj.get("metadata") or {}).get("creationTimestamp"))


class Notifier:
    def __init__(self, state: State, settings: WebhookSettings | None = None) -> None:
        self.state = state
        self.settings = settings or WebhookSettings()
        self.policy = RetryPolicy(base_seconds=self.settings.backoff_base_seconds,
                                  max_delay_seconds=self.settings.backoff_max_seconds,
                                  horizon_seconds=self.settings.retry_horizon_seconds)
        self.margin = timedelta(seconds=self.settings.rescan_margin_seconds)
        self.horizon = timedelta(seconds=self.settings.retry_horizon_seconds)
        self.allowed = parse_networks(self.settings.allowed_networks)
        self.hooks = Informer(state.client, TASK_WEBHOOKS)
        self.subs: dict[Key, Subscription] = {}
        self._secrets: dict[Key, tuple[float, str | None]] = {}
        self._live = False
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        follow_operator_tasks(self.state, self._task_changed)
        self.hooks.add_listener(self._hook_changed)
        self.hooks.start()
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allowed), limit=64, force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds))
        try:
            await self.state.synced.wait()
            await self.hooks.wait_synced()
            self._live = True
            for obj in self.hooks.list():
                self._hook_changed("ADDED", obj)
            await stop.wait()
        finally:
            self._live = False
            for sub in list(self.subs.values()):
                await self._stop_worker(sub)
            await self.hooks.stop()
            await self._session.close()

    async def _stop_worker(self, sub: Subscription) -> None:
        if sub.worker is not None:
            sub.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sub.worker
            sub.worker = None
        if sub.dirty:
            with contextlib.suppress(Exception):
                await self._flush(sub)

    # ------------------------------------------------------------------ what happens

    def _hook_changed(self, event_type: str, obj: Obj) -> None:
        if not self._live:
            return
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        sub = self.subs.get(key)
        if event_type == "DELETED":
            if sub is not None:
                del self.subs[key]
                if sub.worker is not None:
                    sub.worker.cancel()
            return
        if sub is not None and sub.uid == str(meta.get("uid") or ""):
            sub.obj = obj  # spec changes (URL, events, enabled) apply from the next attempt on
            sub.wake.set()
            return
        if sub is not None and sub.worker is not None:
            sub.worker.cancel()
        sub = Subscription(obj, Ledger.from_status(obj.get("status"), history_size=self.settings.history_size,
                                                   max_pending=self.settings.max_pending))
        self.subs[key] = sub
        self._scan(sub)
        sub.worker = asyncio.create_task(self._work(sub), name=f"kubetask-webhook-{key[0]}-{key[1]}")

    def _scan(self, sub: Subscription) -> None:
        """Enqueue what finished since the ledger's last scan (minus the margin) and is not known yet."""
        now = self.state.clock()
        floor = sub.ledger.rescan_from(sub.created, now, self.margin, self.horizon)
        namespace = sub.key[0]
        for (ns, _), task in list(self.state.tasks.items()):
            if ns != namespace:
                continue
            event = event_for_phase((task.get("status") or {}).get("phase"))
            occurred = self._occurred_at(task)
            if event is not None and occurred >= floor:
                self._enqueue(sub, task, event, occurred, now)
        sub.ledger.scanned(now, self.margin)
        sub.dirty = True

    def _task_changed(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        if not self._live or new is None:
            return
        event = finished_event(old, new)
        if event is None:
            return
        now = self.state.clock()
        occurred = self._occurred_at(new, default=now)
        for sub in self.subs.values():
            if sub.key[0] == key[0]:
                created = sub.created
                if created is None or occurred >= created - timedelta(seconds=1):
                    self._enqueue(sub, new, event, occurred, now)
                    sub.wake.set()

    def _occurred_at(self, task: Mapping[str, Any], default: datetime | None = None) -> datetime:
        status = task.get("status") or {}
        when = parse_time(status.get("completedAt"))
        if when is None:
            conditions = status.get("conditions") or []
            stamps = [parse_time(c.get("lastTransitionTime")) for c in conditions]
            found = [s for s in stamps if s is not None]
            when = max(found) if found else None
        return when or default or self.state.clock()

    def _enqueue(self, sub: Subscription, task: Mapping[str, Any], event: str, occurred: datetime,
                 now: datetime) -> None:
        if not subscribes(sub.obj.get("spec") or {}, event):
            return
        meta = task.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        # The execution count tells a re-run's completion from the first one: each is its own event.
        run = len((task.get("status") or {}).get("executions") or [])
        item = PendingDelivery(id=delivery_id(sub.uid, uid, f"{event}#{run}"), event=event, task=str(meta.get("name")),
                               task_uid=uid, occurred_at=occurred)
        if sub.ledger.knows(item.id):
            return
        dropped = sub.ledger.enqueue(item, now)
        for lost in dropped:
            log.warning("webhook %s/%s: abandoned %s (more than %d undelivered events)", *sub.key, lost.id,
                        self.settings.max_pending)
        sub.dirty = True

    # ------------------------------------------------------------------ the worker

    async def _work(self, sub: Subscription) -> None:
        with contextlib.suppress(Exception):
            await self._signing_secret(sub)  # a kubectl-made subscription gets its default secret at once
        while True:
            try:
                if sub.dirty:
                    await asyncio.sleep(FLUSH_DELAY_SECONDS)  # coalesce a burst of finishes into one write
                    await self._flush(sub)
                item = sub.ledger.next_due()
                enabled = (sub.obj.get("spec") or {}).get("enabled", True) is not False
                now = self.state.clock()
                if item is None or not enabled:
                    await self._sleep(sub, None)
                    continue
                due = item.next_attempt_at or now
                if due > now:
                    await self._sleep(sub, (due - now).total_seconds())
                    continue
                await self._attempt(sub, item)
                await self._flush(sub)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s/%s: worker error", *sub.key)
                await asyncio.sleep(1.0)

    async def _sleep(self, sub: Subscription, seconds: float | None) -> None:
        sub.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wake.wait(), seconds)

    async def _attempt(self, sub: Subscription, item: PendingDelivery) -> None:
        spec = sub.obj.get("spec") or {}
        url = str(spec.get("url") or "")
        secret = await self._signing_secret(sub)
        status_code: int | None = None
        error: str | None = None
        started = time.monotonic()
        if secret is None:
            ref = (spec.get("secretRef") or {}).get("name") or secret_name(sub.key[1])
            error = f"signing secret {ref} not found in {sub.key[0]}"
        else:
            body = encode_json(self._payload(sub, item)).encode()
            try:
                status_code = await self._post(url, body, secret, item)
            except UrlRejected as rejected:
                error = str(rejected)
            except BlockedAddress as blocked:
                error = str(blocked)
            except aiohttp.ClientConnectorError as failed:
                error = f"cannot connect: {failed.os_error or failed}"
            except (aiohttp.ClientError, TimeoutError, OSError) as failed:
                error = f"{type(failed).__name__}: {failed}" if str(failed) else type(failed).__name__
        duration = int((time.monotonic() - started) * 1000)
        attempt = sub.ledger.record(item, now=self.state.clock(), policy=self.policy, status_code=status_code,
                                    error=error, duration_ms=duration)
        sub.dirty = True
        metrics = self.state.metrics
        metrics.webhook_deliveries.labels(outcome=attempt.outcome).inc()
        metrics.webhook_delivery_seconds.observe(duration / 1000)
        metrics.webhook_pending.set(sum(len(s.ledger.pending) for s in self.subs.values()))
        log.info("webhook %s/%s: %s %s attempt %d -> %s%s", *sub.key, item.event, item.id, attempt.attempt,
                 attempt.outcome, f" ({attempt.error})" if attempt.error else "")

    def _payload(self, sub: Subscription, item: PendingDelivery) -> Obj:
        task = self.state.tasks.get_key((sub.key[0], item.task))
        if task is not None and str((task.get("metadata") or {}).get("uid") or task["metadata"].get("name")) \
                == item.task_uid:
            public: Mapping[str, Any] = task_public(task)
        else:  # deleted since (ttlSecondsAfterFinished): what the event itself says
            public = {"id": item.task, "task_id": item.task, "status": _STATUS_OF_EVENT.get(item.event)}
        return build_payload(item.id, item.event, sub.key[1], format_time(item.occurred_at), public)

    async def _post(self, url: str, body: bytes, secret: str, item: PendingDelivery) -> int:
        _, host, _ = check_url(url)
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)  # a literal address skips the resolver: check it here
            problem = address_problem(host, self.allowed)
            if problem is not None:
                raise UrlRejected(problem)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"kubetask-webhooks/{__version__}",
            DELIVERY_HEADER: item.id,
            EVENT_HEADER: item.event,
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
            "X-Kubetask-Attempt": str(item.attempts + 1),
        }
        assert self._session is not None
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            await response.content.read(4096)  # the answer's body is not needed; do not read a huge one
            return response.status

    async def _signing_secret(self, sub: Subscription) -> str | None:
        spec = sub.obj.get("spec") or {}
        ref = spec.get("secretRef") or {}
        name = str(ref.get("name") or secret_name(sub.key[1]))
        data_key = str(ref.get("key") or SECRET_KEY)
        cache_key = (sub.key[0], name)
        cached = self._secrets.get(cache_key)
        if cached is not None and cached[0] > time.monotonic() and cached[1] is not None:
            return cached[1]
        value: str | None = None
        try:
            secret = await self.state.client.get_or_none(SECRETS, name, sub.key[0])
            if secret is None and not ref.get("name"):
                # Only a subscription that names no secret gets one made here.  One made through the API names
                # its own, which the API stores just after the TaskWebhook: making it here first would sign
                # with a secret nobody was given.
                secret = await self._create_secret(sub, name)
            raw = ((secret or {}).get("data") or {}).get(data_key)
            value = base64.b64decode(raw).decode() if raw else None
        except (ApiError, ValueError, UnicodeDecodeError) as error:
            log.warning("webhook %s/%s: cannot read signing secret %s: %s", *sub.key, name, error)
        self._secrets[cache_key] = (time.monotonic() + SECRET_TTL_SECONDS, value)
        return value

    async def _create_secret(self, sub: Subscription, name: str) -> Obj | None:
        """A kubectl-made subscription names no secret: generate its default one (read it back by rotating it
        through ``PATCH /api/v1/webhooks/{id}`` with ``rotate_secret``)."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": sub.key[0], "labels": {SECRET_LABEL: "true"},
                             "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": WEBHOOK_KIND,
                                                  "name": sub.key[1], "uid": sub.uid, "controller": True}]},
                "data": {SECRET_KEY: base64.b64encode(new_signing_secret().encode()).decode()}}
        try:
            return await self.state.client.create(SECRETS, body, sub.key[0])
        except ApiError as error:
            if error.already_exists:
                return await self.state.client.get_or_none(SECRETS, name, sub.key[0])
            raise

    async def _flush(self, sub: Subscription) -> None:
        # Every change up to now has reached _task_changed, so a restart need only rescan from here (minus
        # the margin for status writes that were still on their way).
        sub.ledger.scanned(self.state.clock(), self.margin)
        sub.dirty = False
        try:
            await self.state.client.patch_status(TASK_WEBHOOKS, sub.key[1], {"status": sub.ledger.to_status()},
                                                 sub.key[0])
        except ApiError as error:
            if error.status == 404:
                return  # deleted: its DELETED event stops the worker
            sub.dirty = True
            log.warning("webhook %s/%s: cannot record deliveries: %s", *sub.key, error)
            await asyncio.sleep(1.0)
        except Exception:
            sub.dirty = True
            raise
