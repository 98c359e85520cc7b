"""kubetask.core.objects, phases and times: the one vocabulary of labels, phases and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kubetask.core.objects import annotations_of, camel, creation_order, label_value, labels_of, name, snake_keys
from kubetask.core.phases import filter_state, public_status, queue_state, started, status_word
from kubetask.core.times import format_time, parse_time, plus_seconds, seconds_between


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-25T14:30:00Z", datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
    ("2026-01-25T16:30:00+02:00", datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
    ("2026-01-25T14:30:00", datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
    ("2026-01-25 14:30:00", datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
    ("2026-01-25", datetime(2026, 1, 25, tzinfo=UTC)),
    ("1769351400", datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
    (1769351400, datetime(2026, 1, 25, 14, 30, tzinfo=UTC)),
])
def test_one_parser_reads_every_form(text: object, expected: datetime) -> None:
    assert parse_time(text) == expected
    assert format_time(parse_time(text)) == "2026-01-25T14:30:00Z" or text == "2026-01-25"


@pytest.mark.parametrize("bad", [None, "", "tomorrow", True, [], "2026-13-01"])
def test_what_is_no_time(bad: object) -> None:
    assert parse_time(bad) is None


def test_format_and_arithmetic() -> None:
    assert format_time(datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01T00:00:00Z"
    assert format_time(None) is None and format_time("not a time") == "not a time"
    assert seconds_between("2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z") == 300
    assert seconds_between(None, "2026-01-01T00:05:00Z") is None
    assert plus_seconds("2026-01-01T00:00:00Z", 90) == "2026-01-01T00:01:30Z"


def test_accessors_never_raise_on_partial_objects() -> None:
    assert name({}) == "" and annotations_of({"metadata": None}) == {} and labels_of({"metadata": {}}) == {}
    assert creation_order({"metadata": {"creationTimestamp": "t", "annotations": {"kubetask.io/submitted-at": "s"}}}) \
        == "t|s"
    assert label_value("Alice Smith/@x") == "Alice-Smith--x" and label_value("...") == "unknown"
    assert camel("gpu_type") == "gpuType" and snake_keys({"gpuType": [{"maxRetries": 1}]}) == {
        "gpu_type": [{"max_retries": 1}]}


def _task(phase: str | None, *, executions: list[dict[str, object]] | None = None, cancel: bool = False,
          reason: str | None = None) -> dict[str, object]:
    status: dict[str, object] = {}
    if phase:
        status["phase"] = phase
    if executions is not None:
        status["executions"] = executions
    if reason:
        status["conditions"] = [{"type": "Admitted", "status": "False", "reason": reason}]
    return {"spec": {"cancel": cancel}, "status": status}


def test_running_means_started_on_a_node() -> None:
    admitted = _task("Running", executions=[{"id": 1}])
    assert not started(admitted) and public_status(admitted) == "queued" and queue_state(admitted) == "starting"
    begun = _task("Running", executions=[{"id": 1, "startedAt": "2026-01-01T00:00:00Z"}])
    assert started(begun) and public_status(begun) == "running" and queue_state(begun) == "running"
    retry = _task("Running", executions=[{"id": 1, "startedAt": "x", "finishedAt": "y"}, {"id": 2}])
    assert public_status(retry) == "queued"  # the second execution has not started


def test_filter_states_and_words() -> None:
    assert {filter_state(_task(p)) for p in (None, "Pending", "Queued")} == {"waiting"}
    assert filter_state(_task("Running", executions=[{"id": 1}])) == "waiting"
    assert filter_state(_task("Queued", cancel=True)) == "cancelled"
    assert queue_state(_task("Pending", reason="RetryBackoff")) == "retry_backoff"
    assert queue_state(_task("Queued", cancel=True)) == "cancelling"
    assert status_word("In-Progress") == "running" and status_word("CANCELED") == "cancelled"
    assert status_word("sleeping") is None
