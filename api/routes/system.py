"""``/health`` and ``/metrics`` (no auth)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubetask import __version__
from kubetask.api.deps import State
from kubetask.api.routes.common import FastJSON
from kubetask.api.schemas import Health
from kubetask.api.state import AppState
from kubetask.core.phases import public_status
from kubetask.core.times import now_iso

router = APIRouter(tags=["system"])

PROBE_TTL = 2.0


async def _apiserver_ok(state: AppState) -> tuple[bool, str]:
    now = time.monotonic()
    if now - state.health.checked_at < PROBE_TTL:
        return state.health.ok, state.health.detail
    ok, detail = True, "healthy"
    try:
        await state.client.request("GET", "/version", request_timeout=3.0)
    except Exception as first:
        try:
            await state.client.request("GET", "/api", request_timeout=3.0)
        except Exception as error:
            ok, detail = False, f"unreachable: {type(error).__name__}: {error or first}"
    state.health.checked_at, state.health.ok, state.health.detail = now, ok, detail
    return ok, detail


@router.get("/health", name="health", response_model=Health,
            responses={503: {"model": Health, "description": "Unhealthy"}}, summary="Health check")
async def health(state: State) -> Response:
    """Healthy when the apiserver answers and every watch cache has synced; 503 otherwise."""
    api_ok, api_detail = await _apiserver_ok(state)
    synced = {name: inf.synced for name, inf in state.informers.informers.items()}
    cache_ok = all(synced.values())
    counts = {"running": 0, "pending": 0, "queued": 0, "completed": 0, "failed": 0, "cancelled": 0}
    for task in state.tasks.list():
        status = public_status(task)
        counts[status] = counts.get(status, 0) + 1
    healthy = api_ok and cache_ok
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": now_iso(),
        "version": __version__,
        "uptime": round(time.time() - state.started_at, 3),
        "checks": {
            "apiserver": api_detail,
            "cache": "healthy" if cache_ok else "syncing: " + ", ".join(k for k, v in synced.items() if not v),
        },
        "active_tasks": counts["running"],
        "pending_tasks": counts["pending"] + counts["queued"],
        "completed_tasks": counts["completed"],
        "failed_tasks": counts["failed"],
        "cancelled_tasks": counts["cancelled"],
    }
    return FastJSON(body, status_code=200 if healthy else 503)


@router.get("/metrics", name="metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus metrics"}},
            summary="Prometheus metrics")
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
