"""``/health`` and ``/metrics``: open to anonymous callers, who learn nothing about what tenants run."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from kubetask import __version__
from kubetask.api.auth import Principal
from kubetask.api.deps import State, authenticate
from kubetask.api.routes.common import FastJSON, user_tasks
from kubetask.api.schemas import Health
from kubetask.api.state import AppState
from kubetask.core.phases import public_status
from kubetask.core.rest.errors import RestError
from kubetask.core.times import now_iso

router = APIRouter(tags=["system"])

async def apiserver_status(state: AppState) -> tuple[bool, str]:
    """``(answers, detail)`` from the apiserver monitor (probing once if it has not yet)."""
    monitor = state.upstream
    if monitor.checked_at == 0.0:
        await monitor.probe()
    return (False, f"unreachable: {monitor.reason}") if monitor.down else (True, "healthy")


@router.get("/health", name="health", response_model=Health,
            responses={503: {"model": Health, "description": "Unhealthy"}}, summary="Health check")
async def health(request: Request, state: State) -> Response:
    """Healthy when the apiserver answers and every watch cache has synced; 503 otherwise. Answers at once
    from the last apiserver probe (every ``apiserver_probe_interval_seconds``), also during an outage.

    Anonymous callers (probes, load balancers) get the verdict and the version only: nothing that depends
    on what tenants run.  A caller with credentials also gets the reasons, the uptime and the counts of
    its own tasks (an admin: everyone's)."""
    monitor = state.upstream
    if monitor.checked_at == 0.0:
        await monitor.probe()
    synced = {name: inf.synced for name, inf in state.informers.informers.items()}
    cache_ok = all(synced.values())
    healthy = not monitor.down and cache_ok
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": now_iso(),
        "version": __version__,
        "checks": {"apiserver": "unreachable" if monitor.down else "healthy",
                   "cache": "healthy" if cache_ok else "syncing"},
    }
    principal = await _caller(request, state) if cache_ok else None
    if principal is not None:
        counts = {"running": 0, "pending": 0, "queued": 0, "completed": 0, "failed": 0, "cancelled": 0}
        for task in user_tasks(state, principal):
            status = public_status(task)
            counts[status] = counts.get(status, 0) + 1
        body["checks"] = {
            "apiserver": f"unreachable: {monitor.reason}" if monitor.down else "healthy",
            "cache": "healthy" if cache_ok else "syncing: " + ", ".join(k for k, v in synced.items() if not v),
        }
        body.update({
            "uptime": round(time.time() - state.started_at, 3),
            "scope": "all" if principal.is_admin else principal.tenant,
            "active_tasks": counts["running"],
            "pending_tasks": counts["pending"] + counts["queued"],
            "completed_tasks": counts["completed"],
            "failed_tasks": counts["failed"],
            "cancelled_tasks": counts["cancelled"],
        })
    return FastJSON(body, status_code=200 if healthy else 503)


async def _caller(request: Request, state: AppState) -> Principal | None:
    """The caller if it sent valid credentials; a health check never fails over them (anonymous instead)."""
    try:
        return await authenticate(request, state)
    except RestError:
        return None


@router.get("/metrics", name="metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus metrics"}},
            summary="Prometheus metrics")
async def metrics(request: Request, state: State) -> Response:
    """The API's request, latency and live-update metrics for anyone (a Prometheus scrape); the task
    metrics (``kubetask_api_tasks``, seed 004's ``task_manager_*``) only to a caller with credentials, over
    its own tasks (an admin: everyone's), as ``/health`` scopes its counts."""
    principal = await _caller(request, state)
    tasks = list(user_tasks(state, principal)) if principal is not None else None
    return Response(state.metrics.exposition(tasks), media_type=CONTENT_TYPE_LATEST)
