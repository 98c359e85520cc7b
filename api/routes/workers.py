"""``/workers``: the Distributed Task Queue System API's Workers API over Kubernetes Nodes.

A worker IS a node (``worker_id`` = node name).  Reads come from watch caches of
Nodes and of kubetask's pods (label ``kubetask.io/task``); pause, resume, drain
and capacity are merge patches on the Node's labels/annotations, which the
operator's admission policy honours.  Mutations need an admin tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response

from kubetask.api.auth import Principal
from kubetask.api.deps import AdminUser, CurrentUser, State
from kubetask.api.errors import problem_from_api_error
from kubetask.api.insights_schemas import CapacityUpdate, WorkerCapacity, WorkerList, WorkerPaused, WorkerPublic
from kubetask.api.routes.common import FastJSON
from kubetask.api.schemas import error_responses
from kubetask.api.state import AppState
from kubetask.core.objects import Obj
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.workers import (
    GpuKeys,
    capacity_of,
    capacity_patch,
    drain_patch,
    is_worker,
    new_worker_node,
    pause_patch,
    pod_node,
    register_patch,
    resume_patch,
    validate_capacity,
    validate_hostname,
    worker_not_found,
    worker_public,
)
from kubetask.core.rest.workers import worker_status as node_worker_status
from kubetask.kube.cache import Informer
from kubetask.kube.client import NODES, PODS, ApiError
from kubetask.settings import GpuSettings

router = APIRouter(prefix="/workers", tags=["workers"])

SYNC_WAIT_SECONDS = 10.0
NODES_INFORMER = "nodes"
PODS_INFORMER = "pods"
TASK_POD_SELECTOR = "kubetask.io/task"

WorkerId = Annotated[str, Path(description="The worker id: the node name.", min_length=1, max_length=253)]


# --------------------------------------------------------------------------- caches (dependencies)


def _informer(state: AppState, name: str) -> Informer:
    """The named informer of the app; created and started on first use if the app did not wire it."""
    informer = state.informers.informers.get(name)
    if informer is None:
        if name == NODES_INFORMER:
            informer = Informer(state.client, NODES)
        else:
            informer = Informer(state.client, PODS, label_selector=TASK_POD_SELECTOR, indexers={"node": pod_node})
        state.informers.add(name, informer)
        informer.start()
    return informer


async def _synced(informer: Informer, what: str) -> Informer:
    if not informer.synced and not await informer.wait_synced(SYNC_WAIT_SECONDS):
        raise RestError(503, "SERVICE_UNAVAILABLE", f"the {what} cache is not synced yet; try again shortly"
                        + (f" ({informer.last_error})" if informer.last_error else ""))
    return informer


async def get_node_cache(state: State) -> Informer:
    return await _synced(_informer(state, NODES_INFORMER), "node")


async def get_pod_cache(state: State) -> Informer:
    return await _synced(_informer(state, PODS_INFORMER), "task pod")


NodeCache = Annotated[Informer, Depends(get_node_cache)]
PodCache = Annotated[Informer, Depends(get_pod_cache)]


def gpu_keys(state: AppState) -> GpuKeys:
    keys = state.extra.get("gpu_keys")
    if not isinstance(keys, GpuKeys):
        gpu = GpuSettings()
        keys = GpuKeys(resource_name=gpu.resource_name, node_label_key=gpu.node_label_key,
                       node_label_value=gpu.node_label_value, product_label_key=gpu.product_label_key)
        state.extra["gpu_keys"] = keys
    return keys


def pods_on(pods: Informer, node: str) -> list[Obj]:
    if "node" in pods.indexers:
        return pods.by_index("node", node)
    return [p for p in pods.list() if (p.get("spec") or {}).get("nodeName") == node]


def visible_namespaces(user: Principal) -> set[str] | None:
    return None if user.is_admin else {user.namespace}


def visible_pods(user: Principal, pods: list[Obj]) -> list[Obj]:
    """The task pods whose use a caller may see: its own namespace's (an admin: all).

    A node's capacity (allocatable GPUs, CPU, memory, task slots) is no tenant's data; what other tenants
    run there is. So every load figure a non-admin reads (``current_load``, ``gpus_allocated``, requested
    CPU and memory, ``capacity_utilization``, running task pods) counts its own tasks only, and only an
    admin sees the totals, as Kubernetes RBAC would show pods of other namespaces to none but an admin."""
    if user.is_admin:
        return pods
    return [p for p in pods if (p.get("metadata") or {}).get("namespace") == user.namespace]


def present_worker(state: AppState, user: Principal, node: Obj, pods: Informer) -> Obj:
    name = str((node.get("metadata") or {}).get("name"))
    return worker_public(node, visible_pods(user, pods_on(pods, name)), gpu=gpu_keys(state),
                         visible_namespaces=visible_namespaces(user))


def find_node(nodes: Informer, worker_id: str) -> Obj:
    node = nodes.get(worker_id) or nodes.get(worker_id.lower())
    if node is None:
        raise worker_not_found(worker_id)
    return node


async def _patch_node(nodes: Informer, worker_id: str, patch: Obj) -> Obj:
    try:
        updated = await nodes.client.patch(NODES, worker_id, patch)
    except ApiError as error:
        if error.status == 404:
            current = nodes.get(worker_id)
            if current is not None:
                nodes.remove(current)
            raise worker_not_found(worker_id) from error
        raise problem_from_api_error(error, what=f"worker {worker_id}") from error
    nodes.upsert(updated)
    return updated


# --------------------------------------------------------------------------- reads

COMMON_ERRORS = (401, 404, 422, 429, 503)


@router.get("", name="list", response_model=WorkerList, responses=error_responses(401, 422, 429, 503),
            summary="List workers (nodes)")
async def list_workers(
    user: CurrentUser, state: State, nodes: NodeCache, pods: PodCache,
    status: Annotated[str | None, Query(description="ACTIVE, PAUSED, DRAINING or OFFLINE (any case)")] = None,
    all_nodes: Annotated[bool, Query(alias="all", description="Also nodes that are not kubetask workers "
                                                              "(control-plane, kubetask.io/worker=false)")] = False,
) -> Response:
    """Every kubetask worker node with its status, capacity, load, heartbeat and GPUs. Capacity is the
    node's; load counts the caller's own tasks (an admin's: everyone's), see ``visible_pods``."""
    wanted = status.strip().upper() if status else None
    if wanted is not None and wanted not in ("ACTIVE", "PAUSED", "DRAINING", "OFFLINE"):
        raise RestError(422, "VALIDATION_ERROR", "status: use ACTIVE, PAUSED, DRAINING or OFFLINE", field="status")
    gpu = gpu_keys(state)
    out = []
    for node in sorted(nodes.list(), key=lambda n: str((n.get("metadata") or {}).get("name"))):
        if not all_nodes and not is_worker(node, gpu):
            continue
        worker = present_worker(state, user, node, pods)
        if wanted is None or worker["status"] == wanted:
            out.append(worker)
    return FastJSON({"total": len(out), "workers": out})


@router.get("/{worker_id}", name="get", response_model=WorkerPublic, responses=error_responses(*COMMON_ERRORS),
            summary="Get a worker")
async def get_worker(worker_id: WorkerId, user: CurrentUser, state: State, nodes: NodeCache,
                     pods: PodCache) -> Response:
    return FastJSON(present_worker(state, user, find_node(nodes, worker_id), pods))


@router.get("/{worker_id}/status", name="status", response_model=WorkerPublic,
            responses=error_responses(*COMMON_ERRORS), summary="Detailed worker status")
async def worker_status(worker_id: WorkerId, user: CurrentUser, state: State, nodes: NodeCache,
                        pods: PodCache) -> Response:
    """The Distributed Task Queue System API: ``{worker_id, hostname, status, capacity, current_load, current_tasks,
    last_heartbeat,
    is_draining}`` plus GPUs and labels."""
    return FastJSON(present_worker(state, user, find_node(nodes, worker_id), pods))


# --------------------------------------------------------------------------- writes (admin)


@router.post("", name="register", status_code=201, response_model=WorkerPublic,
             responses=error_responses(401, 403, 422, 429, 503), summary="Register a worker")
async def register_worker(
    user: AdminUser, state: State, nodes: NodeCache, pods: PodCache,
    hostname: Annotated[str, Query(min_length=1, max_length=253, description="The node name")],
    capacity: Annotated[int, Query(ge=1, le=1000, description="Most kubetask tasks at once")] = 5,
) -> Response:
    """Marks the node ``hostname`` as a kubetask worker (label ``kubetask.io/worker=true``, annotation
    ``kubetask.io/capacity``). If no such node exists, a Node object is created with a ``Ready``
    condition (reason ``KubetaskRegistered``); no kubelet backs it, so the node lifecycle controller
    turns it NotReady (``OFFLINE``) after the node grace period.
    Join real machines with their kubelet first, then register them here."""
    name = validate_hostname(hostname)
    validate_capacity(capacity)
    existing = nodes.get(name)
    if existing is None:
        try:
            created = await state.client.create(NODES, new_worker_node(name, capacity))
        except ApiError as error:
            if not error.already_exists:
                raise problem_from_api_error(error, what=f"node {name}") from error
            created = await _patch_node(nodes, name, register_patch(capacity))
        nodes.upsert(created)
        node, how = created, "created"
    else:
        node, how = await _patch_node(nodes, name, register_patch(capacity)), "existing-node"
    body = present_worker(state, user, node, pods)
    body["registration"] = how
    return FastJSON(body, status_code=201, headers={"Location": f"/api/v1/workers/{name}"})


def _changed(worker_id: str, node: Obj, action: str, message: str) -> Response:
    return FastJSON({"worker_id": worker_id, "status": action, "worker_status": node_worker_status(node),
                     "message": message})


@router.patch("/{worker_id}/pause", name="pause", response_model=WorkerPaused,
              responses=error_responses(401, 403, 404, 429, 503), summary="Pause a worker")
async def pause_worker(worker_id: WorkerId, user: AdminUser, nodes: NodeCache) -> Response:
    """Label ``kubetask.io/paused=true``: the operator places no new tasks there; running ones continue."""
    node = await _patch_node(nodes, find_node(nodes, worker_id)["metadata"]["name"], pause_patch())
    return _changed(node["metadata"]["name"], node, "paused",
                    f"{worker_id} takes no new tasks; running ones continue")


@router.patch("/{worker_id}/resume", name="resume", response_model=WorkerPaused,
              responses=error_responses(401, 403, 404, 429, 503), summary="Resume a worker")
async def resume_worker(worker_id: WorkerId, user: AdminUser, nodes: NodeCache) -> Response:
    """Removes the paused and draining labels: the node is back in kubetask's placement."""
    node = await _patch_node(nodes, find_node(nodes, worker_id)["metadata"]["name"], resume_patch())
    return _changed(node["metadata"]["name"], node, "resumed", f"{worker_id} takes new tasks again")


@router.post("/{worker_id}/drain", name="drain", response_model=WorkerPaused,
             responses=error_responses(401, 403, 404, 429, 503), summary="Drain a worker")
async def drain_worker(worker_id: WorkerId, user: AdminUser, nodes: NodeCache) -> Response:
    """Label ``kubetask.io/draining=true``: running tasks finish, no new ones start there."""
    node = await _patch_node(nodes, find_node(nodes, worker_id)["metadata"]["name"], drain_patch())
    return _changed(node["metadata"]["name"], node, "draining",
                    f"{worker_id} finishes its running tasks and takes no new ones")


@router.patch("/{worker_id}/capacity", name="set-capacity", response_model=WorkerCapacity,
              responses=error_responses(401, 403, 404, 422, 429, 503), summary="Update worker capacity")
async def set_capacity(worker_id: WorkerId, user: AdminUser, nodes: NodeCache,
                       body: Annotated[CapacityUpdate, Body()]) -> Response:
    """Annotation ``kubetask.io/capacity``: the most kubetask tasks at once on this node."""
    current = find_node(nodes, worker_id)
    previous, source = capacity_of(current)
    node = await _patch_node(nodes, current["metadata"]["name"], capacity_patch(body.capacity))
    return FastJSON({"worker_id": node["metadata"]["name"], "capacity": capacity_of(node)[0],
                     "previous_capacity": previous if source == "annotation" else None})
