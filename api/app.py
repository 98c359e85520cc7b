"""The FastAPI application: ``create_app(settings, kube, client=None)``.

The lifespan connects to the apiserver (unless a client is given), starts the
watch caches (Tasks, TaskTemplates, Tenants, API-key Secrets) and waits briefly
for them to sync; ``/health`` reports 503 until they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from kubetask import __version__
from kubetask.api.deps import writes_need_apiserver
from kubetask.api.docs import install_docs, install_openapi
from kubetask.api.errors import install_error_handlers
from kubetask.api.live import LiveService
from kubetask.api.metrics import ApiMetrics
from kubetask.api.middleware import RequestContextMiddleware
from kubetask.api.routes import (
    dashboard,
    events,
    monitoring,
    search,
    system,
    tasks,
    templates,
    users,
    webhooks,
    workers,
)
from kubetask.api.state import AppState
from kubetask.api.ui import router as ui_router
from kubetask.kube.client import KubeClient
from kubetask.kube.memory import HeapSettler
from kubetask.settings import ApiSettings, KubeSettings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SYNC_TIMEOUT_SECONDS = 15.0
HEAP_CHECK_SECONDS = 30.0
"""How often the API looks whether its caches grew enough to settle the heap again."""

DESCRIPTION = """
kubetask's REST facade: a Kubernetes-native GPU task queue. Every task is a `Task` custom resource;
writes go to the Kubernetes API, reads come from a watch-backed cache.

**Auth:** `X-API-Key: <key>` or `Authorization: Bearer <Kubernetes token>` (TokenReview). Everything except
`/health` and `/metrics` needs it. Rate limits per user come back as `X-RateLimit-Limit/Remaining/Reset`.

**Compatibility:** clients of the AI Task Orchestra, Distributed Task Queue System, Task Manager (BitingLip),
Voidrunner Task Management and OmoiOS task-queue APIs work unchanged. Request bodies accept every one of those
APIs' field names (`name`/`task_name`, `template`+`parameters`, `task_type`+`model_name`+`input_data`,
`script_content`+`script_type`, `task_args`/`task_kwargs`, `queue_name`, `depends_on`, `scheduled_at`…); an
unknown field is a 422 naming it. Responses carry `id` and `task_id` (the Task's uid) and `object_name` (its
Kubernetes name); paths accept either. The Task Manager API's paths are also served without the `/api/v1`
prefix (not listed here).

**Compatibility profiles:** where those APIs disagree (status words and case, bare array or envelope,
DELETE's 204 or 200, id format, error body), a profile decides: `canonical` (default), `omoios`, `voidrunner`,
`orchestra` (AI Task Orchestra: `queued`, bare arrays, DELETE 204), `dtq` (Distributed Task Queue: upper-case
statuses), `taskmanager` (Task Manager: `task_<uid>` ids, `{"error": {...}}` bodies; the root paths' default).
Choose one per request with the header `X-Compat-Profile: <name>`, or pin it to an API key
(`Tenant.spec.apiKeys[].profile`). Filters accept every API's status words in any case; `pending` and `queued`
both select every waiting task, and `queue_state` tells what it waits for.

**Errors:** `{"detail", "code", "request_id", "timestamp"}` (+ `field`/`errors` on 422).
"""

TAGS = [
    {"name": "tasks", "description": "Create, list, inspect, update, cancel and re-run tasks."},
    {"name": "webhooks", "description": "Completion webhooks: signed, retried deliveries of task events."},
    {"name": "templates", "description": "TaskTemplates: what a task can run, and parameter checks."},
    {"name": "users", "description": "Per-user limits and usage (the OmoiOS task-queue API's UserLimits)."},
    {"name": "workers", "description": "GPU/compute nodes as workers: status, pause, resume, drain, capacity."},
    {"name": "search", "description": "Advanced task search, filter presets and CSV export."},
    {"name": "dashboard", "description": "System statistics and the worker grid."},
    {"name": "analytics", "description": "Task execution trends."},
    {"name": "alerts", "description": "Active alerts computed from cluster state, and acknowledgements."},
    {"name": "resilience", "description": "Component health and declared degradations."},
    {"name": "system", "description": "Health and Prometheus metrics (no auth)."},
]


def operation_id(route: APIRoute) -> str:
    """``<tag>-<route name>``, e.g. ``tasks-create``, ``tasks-list``, ``templates-validate``."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


async def _settle_heap(state: AppState) -> None:
    """Freeze the caches' objects out of the garbage collector's walks once listed, then as they grow
    (see :class:`kubetask.kube.memory.HeapSettler`): a full collection over 10,000 cached tasks is a
    pause that every request in flight waits out."""
    heap = HeapSettler()
    while True:
        heap.maybe_settle(state.informers.events)
        await asyncio.sleep(HEAP_CHECK_SECONDS)


def create_app(settings: ApiSettings, kube: KubeSettings, *, client: KubeClient | None = None) -> FastAPI:
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kube_client = client
        owns = kube_client is None
        if kube_client is None:
            kube_client = await KubeClient.connect(kube.kubeconfig, kube.context,
                                                   request_timeout=settings.apiserver_timeout_seconds)
        state = AppState.build(settings, kube, kube_client, owns_client=owns, metrics=metrics)
        app.state.kubetask = state
        state.upstream.start()
        state.informers.start()
        live, webhook_cache = LiveService(state), webhooks.start_webhook_cache(state)  # issue 13
        if not await state.informers.wait_synced(SYNC_TIMEOUT_SECONDS):
            log.warning("kubetask API caches not synced after %.0f s; serving 503 until they are",
                        SYNC_TIMEOUT_SECONDS)
        settler = asyncio.create_task(_settle_heap(state), name="kubetask-heap")
        try:
            yield
        finally:
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
            await live.stop()
            await webhook_cache.stop()
            await state.informers.stop()
            await state.upstream.stop()
            if owns:
                await kube_client.close()

    app = FastAPI(
        title="kubetask API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served from the package by install_docs: no CDN
        redoc_url=None,
    )
    install_docs(app)
    install_openapi(app)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    outage_guard = [Depends(writes_need_apiserver)]
    v1 = APIRouter(prefix=API_PREFIX, dependencies=outage_guard)
    v1.include_router(events.router)  # before tasks: /tasks/events is not a task id
    v1.include_router(tasks.router)
    v1.include_router(webhooks.router)
    v1.include_router(templates.router)
    v1.include_router(users.router)
    v1.include_router(workers.router)
    v1.include_router(search.router)
    v1.include_router(dashboard.router)
    v1.include_router(monitoring.router)
    v1.include_router(system.router)
    app.include_router(v1)
    # The Task Manager API speaks without a prefix: the same routes at the root, left out of the schema.
    app.include_router(tasks.router, include_in_schema=False, dependencies=outage_guard)
    app.include_router(system.router, include_in_schema=False, dependencies=outage_guard)
    app.include_router(events.ws_router)  # seed 004's /ws/tasks
    app.include_router(ui_router)  # the dashboard at /ui
    return app
