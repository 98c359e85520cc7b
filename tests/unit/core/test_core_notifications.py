"""Completion webhooks, the pure part: event selection, signing, the backoff schedule, the delivery ledger
and the SSRF address policy (kubetask.core.notifications)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetask.core import notifications as n

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def task(phase: str | None, name: str = "t1") -> dict[str, object]:
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize(("given", "expected"), [
    (None, ["*"]), ("all", ["*"]), (["completed", "failed"], ["task.completed", "task.failed"]),
    ("task.cancelled,canceled", ["task.cancelled"]), (["task.failed", "*"], ["*"]),
])
def test_events_are_normalized(given: object, expected: list[str]) -> None:
    assert n.normalize_events(given) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["task.started", ["done"], "", [" "]])
def test_unknown_events_are_refused_with_the_choices(bad: object) -> None:
    with pytest.raises(ValueError, match=r"task\.completed"):
        n.normalize_events(bad)  # type: ignore[arg-type]


def test_finished_event_only_on_reaching_a_terminal_phase() -> None:
    assert n.finished_event(task("Running"), task("Succeeded")) == "task.completed"
    assert n.finished_event(task("Queued"), task("Failed")) == "task.failed"
    assert n.finished_event(None, task("Cancelled")) == "task.cancelled"
    assert n.finished_event(task("Succeeded"), task("Succeeded")) is None
    assert n.finished_event(task("Pending"), task("Running")) is None
    assert n.finished_event(task("Running"), None) is None


def test_subscription_filter() -> None:
    assert n.subscribes({"events": ["*"]}, "task.failed")
    assert n.subscribes({}, "task.failed")
    assert n.subscribes({"events": ["task.failed"]}, "task.failed")
    assert not n.subscribes({"events": ["task.completed"]}, "task.failed")
    assert not n.subscribes({"events": ["*"], "enabled": False}, "task.failed")


def test_delivery_ids_are_deterministic_and_distinct() -> None:
    a = n.delivery_id("hook", "task", "task.completed")
    assert a == n.delivery_id("hook", "task", "task.completed")
    assert a != n.delivery_id("hook2", "task", "task.completed")
    assert a != n.delivery_id("hook", "task", "task.failed")
    assert a.startswith("dlv_")


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"id":"dlv_1"}'
    header = n.signature("s3cret", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert n.verify_signature("s3cret", body, header, now=1_700_000_010)
    assert not n.verify_signature("other", body, header, now=1_700_000_010)
    assert not n.verify_signature("s3cret", body + b" ", header, now=1_700_000_010)
    assert not n.verify_signature("s3cret", body, header, now=1_700_000_000 + 301)  # replayed too late
    assert not n.verify_signature("s3cret", body, None)
    assert not n.verify_signature("s3cret", body, "t=x,v1=00")
    # the timestamp is part of what is signed: moving it breaks the signature
    moved = header.replace("t=1700000000", "t=1700000005")
    assert not n.verify_signature("s3cret", body, moved, now=1_700_000_010)


def test_backoff_schedule_grows_caps_and_stops_at_the_horizon() -> None:
    policy = n.RetryPolicy(base_seconds=5, factor=2, max_delay_seconds=60, horizon_seconds=300)
    assert [policy.delay_after(i) for i in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    schedule = policy.schedule()
    assert schedule[:5] == [0, 5, 15, 35, 75]
    assert schedule[-1] <= 300 and schedule[-1] + 60 > 300


def pending(name: str, at: datetime = NOW) -> n.PendingDelivery:
    return n.PendingDelivery(id=n.delivery_id("h", name, "task.completed"), event="task.completed", task=name,
                             task_uid=f"uid-{name}", occurred_at=at)


def test_ledger_retries_then_delivers_and_remembers() -> None:
    policy = n.RetryPolicy(base_seconds=1, horizon_seconds=3600)
    ledger = n.Ledger(history_size=3)
    first = pending("a")
    ledger.enqueue(first, NOW)
    assert ledger.enqueue(pending("a"), NOW) == [] and len(ledger.pending) == 1  # known: not twice
    for i in range(3):
        attempt = ledger.record(ledger.next_due(), now=NOW + timedelta(seconds=i), policy=policy,  # type: ignore[arg-type]
                                status_code=503, error=None, duration_ms=3)
        assert attempt.outcome == "failed"
    assert first.attempts == 3 and first.next_attempt_at == NOW + timedelta(seconds=2 + 4)
    done = ledger.record(first, now=NOW + timedelta(seconds=10), policy=policy, status_code=204, error=None,
                         duration_ms=2)
    assert done.outcome == "delivered" and done.attempt == 4
    assert not ledger.pending and ledger.knows(first.id) and ledger.delivered == 1
    assert len(ledger.attempts) == 3 and ledger.attempts[-1]["outcome"] == "delivered"  # last N only
    status = ledger.to_status()
    again = n.Ledger.from_status(status)
    assert again.knows(first.id) and again.delivered == 1 and again.failed_attempts == 3
    assert again.enqueue(pending("a"), NOW) == [] and not again.pending


def test_ledger_abandons_past_the_horizon() -> None:
    policy = n.RetryPolicy(base_seconds=10, horizon_seconds=15)
    ledger = n.Ledger()
    item = pending("a")
    ledger.enqueue(item, NOW)
    assert ledger.record(item, now=NOW, policy=policy, status_code=None, error="refused",
                         duration_ms=None).outcome == "failed"
    final = ledger.record(item, now=NOW + timedelta(seconds=10), policy=policy, status_code=500, error=None,
                          duration_ms=1)
    assert final.outcome == "abandoned" and "horizon" in (final.error or "")
    assert not ledger.pending and ledger.abandoned == 1


def test_ledger_keeps_pending_bounded() -> None:
    ledger = n.Ledger(max_pending=2)
    for i in range(3):
        ledger.enqueue(pending(f"t{i}", NOW + timedelta(seconds=i)), NOW)
    assert [p.task for p in ledger.pending] == ["t1", "t2"]
    assert ledger.abandoned == 1 and ledger.attempts[-1]["outcome"] == "abandoned"


def test_rescan_window_and_forgetting() -> None:
    ledger = n.Ledger()
    margin, horizon = timedelta(minutes=10), timedelta(hours=24)
    assert ledger.rescan_from(None, NOW, margin, horizon) == NOW - horizon
    created = NOW - timedelta(hours=1)
    assert ledger.rescan_from(created, NOW, margin, horizon) == created
    old, fresh = pending("old", NOW - timedelta(hours=2)), pending("fresh", NOW - timedelta(minutes=1))
    ledger.recent = {old.id: old.occurred_at, fresh.id: fresh.occurred_at}
    ledger.scanned(NOW, margin)
    assert ledger.rescan_from(created, NOW + timedelta(minutes=1), margin, horizon) == NOW - margin
    assert ledger.knows(fresh.id) and not ledger.knows(old.id)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1",
                                     "224.0.0.1"])
def test_internal_addresses_are_blocked(address: str) -> None:
    problem = n.address_problem(address)
    assert problem is not None and "KUBETASK_WEBHOOK_ALLOWED_NETWORKS" in problem


def test_public_addresses_pass_and_admins_can_allow_networks() -> None:
    assert n.address_problem("93.184.216.34") is None
    assert n.address_problem("2606:4700::1111") is None
    allowed = n.parse_networks(["127.0.0.0/8", " "])
    assert n.address_problem("127.0.0.1", allowed) is None
    assert n.address_problem("10.0.0.1", allowed) is not None
    with pytest.raises(ValueError, match="not a CIDR"):
        n.parse_networks(["bogus"])


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/x", "http"), ("http://user:pw@example.com/", "credentials"), ("https:///path", "no host"),
    ("", "empty"), ("http://example.com:99999/", "port"), ("https://e.com/" + "x" * 2100, "longer"),
])
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(n.UrlRejected, match=message):
        n.check_url(url)


def test_good_url_parts() -> None:
    assert n.check_url("https://hooks.example.com/k") == ("https", "hooks.example.com", 443)
    assert n.check_url("http://127.0.0.1:8081/in") == ("http", "127.0.0.1", 8081)


def test_public_views_never_hold_the_secret() -> None:
    obj = {"metadata": {"name": "wh-1", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"url": "https://e.com/h", "events": ["task.failed"], "secretRef": {"name": "s", "key": "secret"}},
           "status": n.Ledger().to_status()}
    public = n.webhook_public(obj)
    assert public["id"] == "wh-1" and public["events"] == ["task.failed"] and public["secret_ref"] == "s"
    assert "secret" not in public
    assert n.deliveries_public(obj) == {"webhook_id": "wh-1", "attempts": [], "pending": [], "delivered": 0,
                                        "abandoned": 0}
