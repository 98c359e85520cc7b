"""Completion webhooks, the pure part: which events a subscription gets, how deliveries are signed, when they
are retried, and the delivery ledger a ``TaskWebhook``'s status holds.

The operator is the single owner of deliveries (``kubetask.operator.notify``); the REST API manages the
subscriptions (``/api/v1/webhooks``).  Nothing here does I/O.

**Delivery contract** (what a receiver sees):

* ``POST <url>`` with a JSON body ``{"id", "type", "created_at", "webhook", "data": {"task": {...}}}``, the task
  in the REST API's public shape;
* ``X-Kubetask-Delivery: <id>``: the same id for every attempt of one event, so a receiver that keeps the ids
  it has processed sees each event exactly once (deliveries are at least once);
* ``X-Kubetask-Event: task.completed|task.failed|task.cancelled``;
* ``X-Kubetask-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the subscription's
  secret>`` (Stripe's scheme: the timestamp is signed too, so a captured request cannot be replayed later
  than the receiver's tolerance); :func:`verify_signature` checks it;
* any 2xx answer acknowledges; anything else (or no answer within the timeout) is retried with exponential
  backoff (:class:`RetryPolicy`) until the retry horizon (24 h by default) has passed since the event.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from kubetask.core.objects import Obj
from kubetask.core.times import parse_time

WEBHOOK_KIND = "TaskWebhook"
WEBHOOK_PLURAL = "taskwebhooks"
SECRET_LABEL = "kubetask.io/webhook-secret"
SECRET_KEY = "secret"

EVENT_COMPLETED = "task.completed"
EVENT_FAILED = "task.failed"
EVENT_CANCELLED = "task.cancelled"
EVENT_TYPES = (EVENT_COMPLETED, EVENT_FAILED, EVENT_CANCELLED)
ALL_EVENTS = "*"
_EVENT_OF_PHASE = {"Succeeded": EVENT_COMPLETED, "Failed": EVENT_FAILED, "Cancelled": EVENT_CANCELLED}
_EVENT_WORDS = {
    "completed": EVENT_COMPLETED, "succeeded": EVENT_COMPLETED, "success": EVENT_COMPLETED,
    "failed": EVENT_FAILED, "failure": EVENT_FAILED, "error": EVENT_FAILED,
    "cancelled": EVENT_CANCELLED, "canceled": EVENT_CANCELLED,
    "all": ALL_EVENTS, "*": ALL_EVENTS, "task.*": ALL_EVENTS,
}

DELIVERY_HEADER = "X-Kubetask-Delivery"
EVENT_HEADER = "X-Kubetask-Event"
SIGNATURE_HEADER = "X-Kubetask-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300

MAX_URL_LENGTH = 2048


def secret_name(webhook_name: str) -> str:
    """The Secret holding a subscription's signing secret when its spec names none."""
    return f"{webhook_name}-signing"


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- which events


def normalize_events(values: str | Iterable[str] | None) -> list[str]:
    """Event names in any accepted spelling -> the canonical list (``["*"]`` for all); ValueError if unknown."""
    if values is None:
        return [ALL_EVENTS]
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for raw in items:
        for part in str(raw).split(","):
            word = part.strip().lower()
            if not word:
                continue
            name = word if word in EVENT_TYPES else _EVENT_WORDS.get(word.removeprefix("task."))
            if name is None:
                raise ValueError(f"unknown event {part.strip()!r}; use {', '.join(EVENT_TYPES)} or '*' for all")
            if name == ALL_EVENTS:
                return [ALL_EVENTS]
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError(f"name at least one event ({', '.join(EVENT_TYPES)}) or '*' for all")
    return out


def event_for_phase(phase: str | None) -> str | None:
    """``task.completed`` for Succeeded, ``task.failed`` for Failed, ``task.cancelled`` for Cancelled."""
    return _EVENT_OF_PHASE.get(phase or "")


def task_phase(task: Mapping[str, Any]) -> str | None:
    phase = (task.get("status") or {}).get("phase")
    return str(phase) if phase else None


def finished_event(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """The event a change of a Task raises: it reached a terminal phase it was not in before."""
    if new is None:
        return None
    event = event_for_phase(task_phase(new))
    if event is None:
        return None
    if old is not None and task_phase(old) == task_phase(new):
        return None
    return event


def subscribes(spec: Mapping[str, Any], event: str) -> bool:
    """Whether a TaskWebhook spec wants ``event`` (disabled subscriptions want nothing)."""
    if spec.get("enabled") is False:
        return False
    events = spec.get("events") or [ALL_EVENTS]
    return ALL_EVENTS in events or event in events


def delivery_id(webhook_uid: str, task_uid: str, event: str) -> str:
    """Deterministic per (subscription, task, event): every attempt, and a redelivery after a restart, carry it."""
    digest = hashlib.sha256(f"{webhook_uid}\x00{task_uid}\x00{event}".encode()).hexdigest()
    return f"dlv_{digest[:32]}"


def build_payload(delivery: str, event: str, webhook: str, occurred_at: str, task: Mapping[str, Any]) -> Obj:
    return {"id": delivery, "type": event, "created_at": occurred_at, "webhook": webhook,
            "data": {"task": dict(task)}}


# --------------------------------------------------------------------------- signing


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Kubetask-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str | None, *, now: float | None = None,
                     tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """A receiver's check: a ``v1`` signature matches and the timestamp is within ``tolerance`` seconds."""
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts.get("t", [""])[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


# --------------------------------------------------------------------------- where deliveries may go


class UrlRejected(ValueError):
    """A webhook URL that kubetask will not deliver to (the message says why)."""


BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8",
))
"""Internal addresses: loopback, private ranges (where a cluster's pods, services and nodes live), link-local
(cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, reserved.  Deliveries never go there unless
an admin lists the network in ``KUBETASK_WEBHOOK_ALLOWED_NETWORKS``."""


def parse_networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for value in values:
        text = value.strip()
        if text:
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError as error:
                raise ValueError(f"allowed network {text!r} is not a CIDR: {error}") from error
    return tuple(out)


def check_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an acceptable webhook URL; :class:`UrlRejected` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRejected("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise UrlRejected("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected("the URL must not carry credentials (user:password@); the signature authenticates")
    if not parts.hostname:
        raise UrlRejected("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UrlRejected(f"the URL's port is invalid: {error}") from error
    return parts.scheme, parts.hostname, port


def address_problem(address: str, allowed: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> str | None:
    """Why deliveries may not go to ``address`` (None: they may)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed if net.version == ip.version):
        return None
    for net in BLOCKED_NETWORKS:
        if net.version == ip.version and ip in net:
            return (f"{address} is an internal address ({net}); deliveries to internal addresses are blocked "
                    f"unless an admin allows the network (KUBETASK_WEBHOOK_ALLOWED_NETWORKS)")
    return None


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base * factor**(attempt-1)`` seconds after attempt ``attempt``, capped at
    ``max_delay``, until ``horizon`` seconds have passed since the event; then the delivery is abandoned."""

    base_seconds: float = 5.0
    factor: float = 2.0
    max_delay_seconds: float = 600.0
    horizon_seconds: float = 86400.0

    def delay_after(self, attempt: int) -> float:
        return float(min(self.max_delay_seconds, self.base_seconds * self.factor ** max(0, attempt - 1)))

    def schedule(self, limit: int = 1000) -> list[float]:
        """Seconds after the event of every attempt within the horizon (the first is immediate)."""
        out, at, attempt = [0.0], 0.0, 1
        while len(out) < limit:
            at += self.delay_after(attempt)
            if at > self.horizon_seconds:
                break
            out.append(at)
            attempt += 1
        return out


# --------------------------------------------------------------------------- the ledger (TaskWebhook status)


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")




@dataclass
class PendingDelivery:
    """An event not yet acknowledged by the receiver."""

    id: str
    event: str
    task: str
    task_uid: str
    occurred_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None

    def to_status(self) -> Obj:
        out: Obj = {"id": self.id, "event": self.event, "task": self.task, "taskUid": self.task_uid,
                    "occurredAt": format_time(self.occurred_at), "attempts": self.attempts}
        if self.next_attempt_at is not None:
            out["nextAttemptAt"] = format_time(self.next_attempt_at)
        if self.last_error:
            out["lastError"] = self.last_error[:500]
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> PendingDelivery | None:
        occurred = parse_time(raw.get("occurredAt"))
        if not raw.get("id") or not raw.get("event") or occurred is None:
            return None
        return cls(id=str(raw["id"]), event=str(raw["event"]), task=str(raw.get("task") or ""),
                   task_uid=str(raw.get("taskUid") or ""), occurred_at=occurred,
                   attempts=int(raw.get("attempts") or 0), next_attempt_at=parse_time(raw.get("nextAttemptAt")),
                   last_error=raw.get("lastError"))


OUTCOME_DELIVERED = "delivered"
OUTCOME_FAILED = "failed"
OUTCOME_ABANDONED = "abandoned"


@dataclass
class Attempt:
    """One delivery attempt, as the REST API shows it."""

    delivery_id: str
    event: str
    task: str
    attempt: int
    at: datetime
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    task_uid: str | None = None

    def to_status(self) -> Obj:
        out: Obj = {"deliveryId": self.delivery_id, "event": self.event, "task": self.task, "attempt": self.attempt,
                    "at": format_time(self.at), "outcome": self.outcome}
        if self.task_uid:
            out["taskUid"] = self.task_uid
        if self.status_code is not None:
            out["statusCode"] = self.status_code
        if self.error:
            out["error"] = self.error[:500]
        if self.duration_ms is not None:
            out["durationMs"] = self.duration_ms
        return out


@dataclass
class Ledger:
    """A subscription's deliveries: the outbox (``pending``), the last attempts, and what is already done.

    Restart safety: the operator rescans Tasks that finished after ``scanned_through - margin`` and enqueues
    the events it does not know, so ``recent`` keeps the ids finished (delivered or abandoned) for events of
    that window and a rescan never redelivers them.  The ledger lives in the TaskWebhook's status.
    """

    pending: list[PendingDelivery] = field(default_factory=list)
    attempts: list[Obj] = field(default_factory=list)
    recent: dict[str, datetime] = field(default_factory=dict)
    scanned_through: datetime | None = None
    delivered: int = 0
    failed_attempts: int = 0
    abandoned: int = 0
    history_size: int = 20
    max_pending: int = 1000

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None, *, history_size: int = 20,
                    max_pending: int = 1000) -> Ledger:
        status = status or {}
        ledger = cls(history_size=history_size, max_pending=max_pending)
        ledger.pending = [p for p in (PendingDelivery.from_status(r) for r in status.get("pending") or [])
                          if p is not None]
        ledger.attempts = [dict(a) for a in status.get("attempts") or [] if isinstance(a, Mapping)]
        for item in status.get("recent") or []:
            when = parse_time(item.get("occurredAt")) if isinstance(item, Mapping) else None
            if when is not None and item.get("id"):
                ledger.recent[str(item["id"])] = when
        ledger.scanned_through = parse_time(status.get("scannedThrough"))
        ledger.delivered = int(status.get("delivered") or 0)
        ledger.failed_attempts = int(status.get("failedAttempts") or 0)
        ledger.abandoned = int(status.get("abandoned") or 0)
        return ledger

    def to_status(self) -> Obj:
        last = self.attempts[-1] if self.attempts else None
        return {
            "pending": [p.to_status() for p in self.pending],
            "pendingCount": len(self.pending),
            "attempts": list(self.attempts),
            "recent": [{"id": k, "occurredAt": format_time(v)} for k, v in self.recent.items()],
            "scannedThrough": format_time(self.scanned_through) if self.scanned_through else None,
            "delivered": self.delivered,
            "failedAttempts": self.failed_attempts,
            "abandoned": self.abandoned,
            "lastOutcome": last.get("outcome") if last else None,
            "lastAttemptAt": last.get("at") if last else None,
        }

    def knows(self, delivery: str) -> bool:
        return delivery in self.recent or any(p.id == delivery for p in self.pending)

    def enqueue(self, delivery: PendingDelivery, now: datetime) -> list[PendingDelivery]:
        """Add an event (no-op if known); returns what had to be dropped to stay within ``max_pending``."""
        if self.knows(delivery.id):
            return []
        delivery.next_attempt_at = delivery.next_attempt_at or now
        self.pending.append(delivery)
        self.pending.sort(key=lambda p: (p.occurred_at, p.id))
        dropped: list[PendingDelivery] = []
        while len(self.pending) > self.max_pending:
            oldest = self.pending.pop(0)
            dropped.append(oldest)
            self._finish(oldest, Attempt(oldest.id, oldest.event, oldest.task, oldest.attempts, now,
                                         OUTCOME_ABANDONED, error=f"more than {self.max_pending} undelivered events"))
            self.abandoned += 1
        return dropped

    def next_due(self) -> PendingDelivery | None:
        """The pending delivery to try next (the earliest ``next_attempt_at``)."""
        if not self.pending:
            return None
        return min(self.pending, key=lambda p: (p.next_attempt_at or p.occurred_at, p.occurred_at, p.id))

    def record(self, delivery: PendingDelivery, *, now: datetime, policy: RetryPolicy, status_code: int | None,
               error: str | None, duration_ms: int | None) -> Attempt:
        """Book one attempt: success removes it; a failure schedules the next try or, past the horizon, abandons."""
        delivery.attempts += 1
        ok = status_code is not None and 200 <= status_code < 300 and error is None
        if ok:
            attempt = Attempt(delivery.id, delivery.event, delivery.task, delivery.attempts, now, OUTCOME_DELIVERED,
                              status_code, None, duration_ms)
            self.delivered += 1
            self._finish(delivery, attempt)
            return attempt
        self.failed_attempts += 1
        reason = error or f"HTTP {status_code}"
        next_at = now + timedelta(seconds=policy.delay_after(delivery.attempts))
        if next_at > delivery.occurred_at + timedelta(seconds=policy.horizon_seconds):
            attempt = Attempt(delivery.id, delivery.event, delivery.task, delivery.attempts, now, OUTCOME_ABANDONED,
                              status_code, f"{reason}; retry horizon of {int(policy.horizon_seconds)} s passed",
                              duration_ms)
            self.abandoned += 1
            self._finish(delivery, attempt)
            return attempt
        delivery.next_attempt_at = next_at
        delivery.last_error = reason
        attempt = Attempt(delivery.id, delivery.event, delivery.task, delivery.attempts, now, OUTCOME_FAILED,
                          status_code, reason, duration_ms)
        self._remember(attempt)
        return attempt

    def _finish(self, delivery: PendingDelivery, attempt: Attempt) -> None:
        attempt.task_uid = delivery.task_uid
        self.pending = [p for p in self.pending if p.id != delivery.id]
        self.recent[delivery.id] = delivery.occurred_at
        self._remember(attempt)

    def _remember(self, attempt: Attempt) -> None:
        if attempt.task_uid is None:
            attempt.task_uid = next((p.task_uid for p in self.pending if p.id == attempt.delivery_id), None)
        self.attempts.append(attempt.to_status())
        del self.attempts[:-self.history_size]

    def scanned(self, through: datetime, margin: timedelta) -> None:
        """Everything that finished up to ``through`` has been enqueued; forget ids older than the rescan window."""
        self.scanned_through = through
        floor = through - margin
        self.recent = {k: v for k, v in self.recent.items() if v >= floor}

    def rescan_from(self, created: datetime | None, now: datetime, margin: timedelta, horizon: timedelta) -> datetime:
        """Tasks that finished at or after this moment are candidates for (re-)enqueueing."""
        floor = now - horizon
        if self.scanned_through is not None:
            floor = max(floor, self.scanned_through - margin)
        if created is not None:
            floor = max(floor, created)
        return floor


def webhook_public(obj: Mapping[str, Any]) -> Obj:
    """A TaskWebhook as ``/api/v1/webhooks`` shows it: never its secret."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "id": meta.get("name"),
        "name": meta.get("name"),
        "url": spec.get("url"),
        "events": list(spec.get("events") or [ALL_EVENTS]),
        "description": spec.get("description"),
        "enabled": spec.get("enabled", True),
        "created_at": meta.get("creationTimestamp"),
        "secret_ref": (spec.get("secretRef") or {}).get("name") or secret_name(str(meta.get("name"))),
        "pending": int(status.get("pendingCount") or len(status.get("pending") or [])),
        "delivered": int(status.get("delivered") or 0),
        "failed_attempts": int(status.get("failedAttempts") or 0),
        "abandoned": int(status.get("abandoned") or 0),
        "last_outcome": status.get("lastOutcome"),
        "last_attempt_at": status.get("lastAttemptAt"),
    }


def deliveries_public(obj: Mapping[str, Any]) -> Obj:
    """The last attempts (newest first) and the undelivered events of a TaskWebhook."""
    status = obj.get("status") or {}
    attempts = [
        {"delivery_id": a.get("deliveryId"), "event": a.get("event"), "task_id": a.get("taskUid") or a.get("task"),
         "task_name": a.get("task"),
         "attempt": a.get("attempt"), "at": a.get("at"), "outcome": a.get("outcome"),
         "status_code": a.get("statusCode"), "error": a.get("error"), "duration_ms": a.get("durationMs")}
        for a in reversed(status.get("attempts") or [])
    ]
    pending = [
        {"delivery_id": p.get("id"), "event": p.get("event"), "task_id": p.get("taskUid") or p.get("task"),
         "task_name": p.get("task"),
         "occurred_at": p.get("occurredAt"), "attempts": p.get("attempts"),
         "next_attempt_at": p.get("nextAttemptAt"), "last_error": p.get("lastError")}
        for p in status.get("pending") or []
    ]
    return {"webhook_id": (obj.get("metadata") or {}).get("name"), "attempts": attempts, "pending": pending,
            "delivered": int(status.get("delivered") or 0), "abandoned": int(status.get("abandoned") or 0)}
