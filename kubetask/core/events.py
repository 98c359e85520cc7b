"""Kubernetes Event objects about kubetask resources (pure builders)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it (second precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def submitted_at(now: datetime | None = None) -> str:
    """A submission stamp with microseconds, for ``kubetask.io/submitted-at`` (FIFO within a second)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_event(
    involved: dict[str, Any],
    *,
    reason: str,
    message: str,
    event_type: Literal["Normal", "Warning"] = "Normal",
    component: str = "kubetask",
) -> dict[str, Any]:
    """A core/v1 Event whose ``involvedObject`` is ``involved``."""
    meta = involved.get("metadata", {})
    stamp = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}",
            "namespace": meta.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
