"""``/dashboard``: the Distributed Task Queue System API's system statistics and worker grid, from the watch caches."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kubetask.api.deps import CurrentUser, State, TaskCache
from kubetask.api.insights_schemas import DashboardStats, WorkerGrid
from kubetask.api.routes.common import FastJSON, user_tasks
from kubetask.api.routes.workers import NodeCache, PodCache, gpu_keys
from kubetask.api.schemas import error_responses
from kubetask.core.rest.insights import dashboard_stats, worker_grid

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/stats", name="stats", response_model=DashboardStats, responses=error_responses(401, 429, 503),
            summary="System statistics")
async def stats(user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache) -> Response:
    """Queue depth, workers, CPU and memory usage (kubetask pods' requests over the Ready worker nodes'
    allocatable), GPUs, and task counts. Task counts cover the caller's tasks (an admin: everyone's)."""
    body = dashboard_stats(user_tasks(state, user), nodes.list(), pods.list(), gpu=gpu_keys(state))
    body["scope"] = "all" if user.is_admin else user.tenant
    return FastJSON(body)


@router.get("/workers", name="workers", response_model=WorkerGrid, responses=error_responses(401, 429, 503),
            summary="Worker grid")
async def workers(user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache) -> Response:
    """Per worker node: status, uptime (since the Node was created), ``task_rate`` (executions finished
    there per hour, last hour), ``error_rate`` (% of those failed), ``capacity_utilization`` (0..1)."""
    return FastJSON(worker_grid(nodes.list(), pods.list(), tasks.list(), gpu=gpu_keys(state)))
