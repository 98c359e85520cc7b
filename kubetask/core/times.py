"""Time: the one parser and the one format for every timestamp kubetask reads or writes.

Kubernetes writes RFC 3339 with a ``Z`` and second precision; clients of the REST API send
ISO 8601 with or without an offset, bare dates, or Unix timestamps.  :func:`parse_time` reads
all of them (naive values are taken as UTC); :func:`format_time` writes the Kubernetes form.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

_NUMBER = re.compile(r"\d+(\.\d+)?")
_SPACE_SEPARATED = re.compile(r"\d{4}-\d{2}-\d{2} \d")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 / RFC 3339 (``Z`` or an offset), a bare date, or a Unix timestamp -> an aware UTC-or-offset
    datetime; ``None`` for anything else (``None``, ``""``, unparseable text, other types)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        return None
    return _parse_text(value)


@functools.lru_cache(maxsize=16_384)
def _parse_text(value: str) -> datetime | None:
    # Cached: a scheduling pass reads the same few thousand timestamps (queuedAt, estimatedStartTime,
    # creationTimestamp) of every waiting Task again; datetimes are immutable, so sharing one is safe.
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return datetime.fromtimestamp(float(text), UTC)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if _SPACE_SEPARATED.match(text):
        text = text.replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime | str | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, second precision (as Kubernetes writes it); ``None`` stays ``None``.

    A string is parsed first; one that is not a time is returned as it is."""
    if value is None or value == "":
        return None
    parsed = parse_time(value) if isinstance(value, str) else value
    if parsed is None:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    """The current time in :func:`format_time`'s form."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: Any, end: Any) -> float | None:
    """``end - start`` in seconds (3 decimals), ``None`` unless both are times."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def plus_seconds(stamp: Any, seconds: float) -> str | None:
    """``stamp + seconds`` in :func:`format_time`'s form (``None`` if ``stamp`` is no time)."""
    start = parse_time(stamp)
    if start is None:
        return None
    return format_time(start + timedelta(seconds=float(seconds)))
