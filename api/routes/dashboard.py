"""``/dashboard``: the Distributed Task Queue System API's system statistics and worker grid, from the watch caches."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kubetask.api.deps import CurrentUser, State, TaskCache
from kubetask.api.insights_schemas import DashboardStats, WorkerGrid
from kubetask.api.routes.common import FastJSON, user_tasks
from kubetask.api.routes.workers import NodeCache, PodCache, gpu_keys, visible_pods
from kubetask.api.schemas import error_responses
from kubetask.core.rest.insights import dashboard_stats, worker_grid

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/stats", name="stats", response_model=DashboardStats, responses=error_responses(401, 429, 503),
            summary="System statistics")
async def stats(user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache) -> Response:
    """Queue depth, workers, CPU and memory usage (kubetask pods' requests over the Ready worker nodes'
    allocatable), GPUs, and task counts.

    Scoped to the caller (``scope``): task counts, ``running_task_pods``, ``gpus_allocated`` and the CPU,
    memory and GPU usage count the caller's own tasks and pods only; an admin's count everyone's. Worker
    counts and capacity (``total_workers``, ``gpus_total``) are the cluster's: capacity is no tenant's data,
    what other tenants run on it is."""
    body = dashboard_stats(user_tasks(state, user), nodes.list(), visible_pods(user, pods.list()),
                           gpu=gpu_keys(state))
    body["scope"] = "all" if user.is_admin else user.tenant
    return FastJSON(body)


@router.get("/workers", name="workers", response_model=WorkerGrid, responses=error_responses(401, 429, 503),
            summary="Worker grid")
async def workers(user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache) -> Response:
    """Per worker node: status, uptime (since the Node was created), ``task_rate`` (executions finished
    there per hour, last hour), ``error_rate`` (% of those failed), ``capacity_utilization`` (0..1).

    Scoped to the caller: the rates, ``tasks_finished``/``tasks_failed``, ``current_load``,
    ``gpus_allocated`` and ``capacity_utilization`` count the caller's own tasks only (an admin's:
    everyone's); ``capacity`` and ``gpus`` are the node's."""
    return FastJSON(worker_grid(nodes.list(), visible_pods(user, pods.list()), user_tasks(state, user),
                                gpu=gpu_keys(state)))
