"""``/tasks``: the union of the task endpoints of every compatible API, over Task custom resources."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from kubetask.api.admission import admit_update
from kubetask.api.auth import Principal
from kubetask.api.deps import Compat, CurrentUser, State, TaskCache, authenticate, chosen_profile
from kubetask.api.errors import problem_from_api_error
from kubetask.api.routes.common import (
    FastJSON,
    RawJSON,
    callback_candidates,
    create_named_task_object,
    create_task_object,
    find_task,
    lookup_task,
    matching_rows,
    nodes_of,
    not_started,
    patch_task,
    present,
    tenant_of,
    tenant_tasks,
    user_tasks,
)
from kubetask.api.routes.workers import gpu_keys
from kubetask.api.schemas import (
    CompletionAccepted,
    CompletionReport,
    ExecutionList,
    ExecutionPublic,
    PriorityUpdate,
    QueueStatus,
    StatusGroups,
    TaskCancelled,
    TaskComparison,
    TaskCreate,
    TaskExecuteAccepted,
    TaskList,
    TaskPriorityChanged,
    TaskPublic,
    TaskReplayed,
    TaskTimeline,
    TaskUpdate,
    error_responses,
)
from kubetask.api.state import AppState
from kubetask.core.admission import placement_warnings
from kubetask.core.objects import ANNOTATION_CANCELLED_AT, ANNOTATION_RERUN, LABEL_TASK, Obj
from kubetask.core.phases import TERMINAL_PHASES, public_status, task_phase
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.intake import (
    IDEMPOTENCY_HEADER,
    BuildContext,
    body_digest,
    build_task,
    check_replay,
    idempotent_task_name,
    mark_idempotent,
    parse_priority,
    validate_idempotency_key,
)
from kubetask.core.rest.patches import build_update_patch, clone_for_replay, replace_by_merge_patch
from kubetask.core.rest.present import (
    compare_tasks,
    execution_public,
    group_by_status,
    public_id,
    queue_status_public,
    status_of,
    timeline,
)
from kubetask.core.rest.profiles import Profile
from kubetask.core.rest.query import list_envelope_json, make_query
from kubetask.core.tenants import tenant_limits
from kubetask.core.times import now_iso
from kubetask.core.tokens import verify_task_token
from kubetask.kube.client import EVENTS, PODS, TASKS, ApiError

router = APIRouter(prefix="/tasks", tags=["tasks"])

TaskId = Annotated[str, Path(description="The task id (its uid; task_<uid> works too) or its Kubernetes name.",
                              max_length=253)]
COMMON_ERRORS = (401, 404, 429, 503)


def _already_finished(task_id: str, obj: Obj, action: str) -> RestError:
    status = public_status(obj)
    return RestError(409, "TASK_ALREADY_FINISHED", f"Task {task_id} is already {status}; it cannot be {action}")


def _build_context(state: AppState, user: Principal, templates: list[Obj]) -> BuildContext:
    limits = tenant_limits(tenant_of(state, user))
    return BuildContext(user=user.tenant, namespace=user.namespace, templates=templates,
                        max_timeout_seconds=int(limits.get("maxTimeoutSeconds") or 3600),
                        lookup=lambda task_id: _lookup(state, user, task_id))


def _lookup(state: AppState, user: Principal, task_id: str) -> tuple[str, str | None] | None:
    obj = lookup_task(state, user, task_id)
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    return str(meta.get("name")), meta.get("uid")


# --------------------------------------------------------------------------- create / list


@router.post(
    "", name="create", status_code=201, response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 409, 422, 429, 503),
    summary="Create a task",
)
async def create_task(
    body: TaskCreate, user: CurrentUser, state: State, profile: Compat, tasks: TaskCache,
    idempotency_key: Annotated[str | None, Header(
        alias=IDEMPOTENCY_HEADER, description="Makes retries safe: a retry with the same key and body answers "
        "with the task the first attempt created (same status code and body, plus ``Idempotent-Replayed: "
        "true``) instead of creating another; the same key with a different body is a 422 "
        "IDEMPOTENCY_KEY_REUSED. Keys are per tenant; 1-255 printable ASCII characters (a UUID).")] = None,
) -> Response:
    """Create a Task in the caller's namespace. The admission rules (pending limit, GPU limits, monthly
    hours, templates, dependencies) are checked first with the same messages kubectl users get; a field
    no API knows is a 422 naming it. A task no node could ever run as asked (more GPUs than any node
    has, an unknown GPU type) is accepted, and the answer's ``warnings`` say why it may wait forever.

    With an ``Idempotency-Key`` the Task's Kubernetes name is derived from (tenant, key), so a retry (after
    a timeout or a 503, from any API replica) meets the first attempt's Task at the apiserver instead of
    making a second one."""
    raw = body.model_dump(exclude_unset=True)
    replayed = False
    if idempotency_key is None:
        templates = state.templates.list()
        obj = build_task(raw, _build_context(state, user, templates))
        created = await create_task_object(state, user, obj, templates=templates)
    else:
        key = validate_idempotency_key(idempotency_key)
        digest = body_digest(raw)
        name = idempotent_task_name(user.tenant, key)
        cached = state.tasks.get(name, user.namespace)
        if cached is not None:
            check_replay(cached, digest)
            created, replayed = cached, True
        else:
            templates = state.templates.list()
            obj = mark_idempotent(build_task(raw, _build_context(state, user, templates)), name, digest)
            created, made = await create_named_task_object(state, user, obj, templates=templates)
            if not made:
                check_replay(created, digest)
                replayed = True
    keys = gpu_keys(state)
    warnings = placement_warnings(created.get("spec") or {}, nodes_of(state), keys.resource_name,
                                  keys.product_label_key)
    public = present(created, profile, warnings=warnings)
    headers = {"Location": f"/api/v1/tasks/{public['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return FastJSON(public, status_code=201, headers=headers)


@router.get(
    "", name="list", response_model=TaskList | list[TaskPublic],
    responses=error_responses(401, 422, 429, 503), summary="List tasks",
)
async def list_tasks(
    user: CurrentUser,
    state: State,
    tasks: TaskCache,
    profile: Compat,
    status: Annotated[list[str] | None, Query(description="Any case or synonym; comma-separated or repeated")]
    = None,
    priority: Annotated[str | None, Query(description="Exact priority 0-10")] = None,
    min_priority: Annotated[int | None, Query(ge=0, le=10)] = None,
    max_priority: Annotated[int | None, Query(ge=0, le=10)] = None,
    template: str | None = None,
    task_type: str | None = None,
    model_name: str | None = None,
    queue_name: str | None = None,
    tag: Annotated[list[str] | None, Query(description="Tasks carrying all these tags")] = None,
    user_id: Annotated[str | None, Query(description="Admins: only this user's tasks")] = None,
    worker_id: Annotated[str | None, Query(description="Node the task ran on")] = None,
    created_after: str | None = None,
    created_before: str | None = None,
    start_date: Annotated[str | None, Query(description="Alias of created_after")] = None,
    end_date: Annotated[str | None, Query(description="Alias of created_before")] = None,
    date_from: Annotated[str | None, Query(include_in_schema=False)] = None,
    date_to: Annotated[str | None, Query(include_in_schema=False)] = None,
    created_from: Annotated[str | None, Query(include_in_schema=False)] = None,
    created_to: Annotated[str | None, Query(include_in_schema=False)] = None,
    search: Annotated[str | None, Query(description="Free text over name, id, description, template …")] = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    sort: Annotated[str | None, Query(description="Alias of sort_by")] = None,
    order: Annotated[str | None, Query(description="Alias of sort_order")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    page: Annotated[int | None, Query(ge=1)] = None,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
    per_page: Annotated[int | None, Query(ge=1, le=1000, include_in_schema=False)] = None,
    format: Annotated[str | None, Query(description="'array': a bare array; 'envelope': the envelope (the "
                                                    "orchestra profile answers an array by default)")] = None,
) -> Response:
    """Filter, sort and page the caller's tasks, served from the watch cache. Returns
    ``{total, limit, offset, tasks}`` (``?format=array``, or the orchestra profile: a bare array).
    ``status=pending`` and ``status=queued`` both select every waiting task (``queue_state`` says for what)."""
    q = make_query(
        status=status, priority=priority, min_priority=min_priority, max_priority=max_priority,
        template=template, task_type=task_type, model_name=model_name, queue_name=queue_name, tag=tag,
        user=user_id, worker_id=worker_id,
        created_after=created_after or start_date or date_from or created_from,
        created_before=created_before or end_date or date_to or created_to,
        search=search, sort_by=sort_by or sort, sort_order=sort_order or order,
        limit=next((v for v in (limit, page_size, per_page) if v is not None), None),
        offset=offset, page=page,
    )
    if format is not None and format.lower() not in ("array", "list", "envelope", "json"):
        raise RestError(422, "VALIDATION_ERROR", "format: use 'array' or 'envelope'", field="format")
    # Precomputed rows: filter/sort keys and each task's public JSON are made once per object version.
    matched = matching_rows(state, user, q)
    public = [r.public_json(profile) for r in matched[q.offset:q.offset + q.limit]]
    total = len(matched)
    bare = profile.bare_list if format is None else format.lower() in ("array", "list")
    if bare:
        return RawJSON("[" + ",".join(public) + "]")
    return RawJSON(list_envelope_json(total, q, public))


@router.get("/status", name="grouped-by-status", response_model=StatusGroups,
            responses=error_responses(*COMMON_ERRORS), summary="Tasks grouped by status")
async def tasks_by_status(user: CurrentUser, state: State, tasks: TaskCache, profile: Compat) -> Response:
    """The AI Task Orchestra API: every status word of the profile (canonical: ``pending, queued, running,
    completed, failed, cancelled``), each a list of tasks."""
    return FastJSON(group_by_status(user_tasks(state, user), profile))


@router.get("/queue-status", name="queue-status", response_model=QueueStatus,
            responses=error_responses(*COMMON_ERRORS), summary="The caller's queue status and limits")
async def queue_status(user: CurrentUser, state: State, tasks: TaskCache, profile: Compat) -> Response:
    """The OmoiOS task-queue API's QueueStatus: running and pending counts, limits, GPU-hours used and left, and each
    waiting task's queue position and estimated start."""
    tenant = tenant_of(state, user)
    return FastJSON(queue_status_public(tenant, tenant_tasks(state, user.tenant, user.namespace), profile=profile))


# --------------------------------------------------------------------------- one task


@router.get("/{task_id}", name="get", response_model=TaskPublic,
            responses=error_responses(*COMMON_ERRORS), summary="Get a task")
async def get_task(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                   profile: Compat) -> Response:
    """The task with its status, ``result`` and ``resource_usage``; another user's task is 404."""
    return FastJSON(present(find_task(state, user, task_id), profile))


async def _update(task_id: str, body: TaskUpdate, user: Principal, state: AppState, profile: Profile) -> Response:
    obj = find_task(state, user, task_id)
    if not not_started(obj):
        raise RestError(409, "TASK_ALREADY_STARTED",
                        f"Task {task_id} is {public_status(obj)}; only a task that has not started can be "
                        f"updated (create a new task, or replay this one)")
    templates = state.templates.list()
    patch = build_update_patch(body.model_dump(exclude_unset=True), obj, _build_context(state, user, templates))
    if not patch:
        return FastJSON(present(obj, profile))
    admit_update(obj, patch, tenant_of(state, user), templates)
    updated = await patch_task(state, obj, patch)
    return FastJSON(present(updated, profile))


@router.put("/{task_id}", name="replace", response_model=TaskPublic,
            responses=error_responses(401, 404, 409, 422, 429, 503), summary="Update a task (not started)")
async def put_task(task_id: TaskId, body: TaskUpdate, user: CurrentUser, state: State, tasks: TaskCache,
                   profile: Compat) -> Response:
    """Change name, description, priority, queue, timeout, retries, schedule, parameters or metadata of
    a task that has not started; 409 once it has."""
    return await _update(task_id, body, user, state, profile)


@router.patch("/{task_id}", name="update", response_model=TaskPublic,
              responses=error_responses(401, 404, 409, 422, 429, 503), summary="Patch a task (not started)")
async def patch_task_route(task_id: TaskId, body: TaskUpdate, user: CurrentUser, state: State,
                           tasks: TaskCache, profile: Compat) -> Response:
    """Same as PUT: only the fields given change."""
    return await _update(task_id, body, user, state, profile)


@router.patch("/{task_id}/priority", name="set-priority", response_model=TaskPriorityChanged,
              responses=error_responses(401, 404, 409, 422, 429, 503), summary="Change a task's priority")
async def set_priority(
    task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache, profile: Compat,
    priority: Annotated[str | None, Query(description="New priority 0-10 (the AI Task Orchestra API sends it "
                                                      "here)")] = None,
    body: Annotated[PriorityUpdate | None, Body()] = None,
) -> Response:
    """The AI Task Orchestra API: ``?priority=8`` (or a body ``{"priority": 8}``); 409 on a finished task."""
    raw: Any = priority if priority is not None else (body.priority if body is not None else None)
    if raw is None:
        raise RestError(422, "VALIDATION_ERROR", "priority: is required (query or body)", field="priority")
    value = parse_priority(raw)
    obj = find_task(state, user, task_id)
    if task_phase(obj) in TERMINAL_PHASES or (obj.get("spec") or {}).get("cancel"):
        raise _already_finished(task_id, obj, "re-prioritised")
    updated = await patch_task(state, obj, {"spec": {"priority": value}})
    p = present(updated, profile)
    return FastJSON({"id": p["id"], "task_id": p["task_id"], "priority": p["priority"], "status": p["status"]})


async def _cancel(task_id: str, user: Principal, state: AppState, profile: Profile) -> Obj:
    obj = find_task(state, user, task_id)
    if task_phase(obj) in TERMINAL_PHASES or (obj.get("spec") or {}).get("cancel"):
        if public_status(obj) == "cancelled":
            raise RestError(409, "TASK_ALREADY_FINISHED", f"Task {task_id} is already cancelled")
        raise _already_finished(task_id, obj, "cancelled")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    cancelled_at = annotations.get(ANNOTATION_CANCELLED_AT) or now_iso()
    if not (obj.get("spec") or {}).get("cancel"):
        obj = await patch_task(state, obj, {
            "metadata": {"annotations": {ANNOTATION_CANCELLED_AT: cancelled_at}},
            "spec": {"cancel": True},
        })
    pid = public_id(obj, profile)
    return {"task_id": pid, "id": pid, "status": profile.status("cancelled"), "cancelled_at": cancelled_at,
            "cancelled": True, "message": "Task cancelled successfully"}


@router.delete("/{task_id}", name="delete", response_model=TaskCancelled,
               responses={**error_responses(401, 404, 409, 429, 503),
                          204: {"description": "Cancelled (the orchestra profile answers with no body)"}},
               summary="Cancel a task")
async def delete_task(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                      profile: Compat) -> Response:
    """Cancels (``spec.cancel: true``); the Task stays as a record. 409 if it already finished. 200 with
    ``{task_id, status, cancelled_at}``, or 204 with no body under the orchestra profile."""
    cancelled = await _cancel(task_id, user, state, profile)
    if profile.delete_no_content:
        return Response(status_code=204)
    return FastJSON(cancelled)


@router.post("/{task_id}/cancel", name="cancel", response_model=TaskCancelled,
             responses=error_responses(401, 404, 409, 429, 503), summary="Cancel a task")
async def cancel_task(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                      profile: Compat) -> Response:
    """The Distributed Task Queue System API's cancel; same as ``DELETE /tasks/{id}`` (always 200 with a body)."""
    return FastJSON(await _cancel(task_id, user, state, profile))


@router.post("/{task_id}/execute", name="execute", response_model=TaskExecuteAccepted,
             responses=error_responses(401, 404, 409, 429, 503), summary="Run a task (again)")
async def execute_task(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                       profile: Compat) -> Response:
    """On a finished task, starts a new execution (annotation ``kubetask.io/rerun``). A task that has
    not started yet is already going to run: the answer says so. 409 while it is running."""
    obj = find_task(state, user, task_id)
    phase = task_phase(obj)
    if (obj.get("spec") or {}).get("cancel") and phase not in TERMINAL_PHASES:
        raise RestError(409, "TASK_CANCELLED", f"Task {task_id} is being cancelled")
    pid = public_id(obj, profile)
    if public_status(obj) == "running":
        raise RestError(409, "TASK_RUNNING", f"Task {task_id} is already running")
    if phase not in TERMINAL_PHASES:
        p = present(obj, profile)
        return FastJSON({"task_id": pid, "id": pid, "status": p["status"], "execution_requested": False,
                         "message": f"Task {task_id} is {p['status']}; it runs once admitted"})
    updated = await patch_task(state, obj, {"metadata": {"annotations": {ANNOTATION_RERUN: str(uuid.uuid4())}}})
    return FastJSON({"task_id": pid, "id": pid, "status": profile.status("queued"),
                     "execution_requested": True, "previous_status": profile.status(public_status(updated)),
                     "message": "a new execution was requested"})


@router.post("/{task_id}/replay", name="replay", response_model=TaskReplayed,
             responses=error_responses(400, 401, 403, 404, 422, 429, 503), summary="Replay a task")
async def replay_task(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                      profile: Compat) -> Response:
    """The Distributed Task Queue System API: a NEW task cloned from this one's spec, pointing at the original."""
    original = find_task(state, user, task_id)
    owner = (original.get("spec") or {}).get("user") or user.tenant
    if owner != user.tenant:
        # An admin replaying someone's task: the clone belongs to that task's owner and namespace.
        tenant = state.tenants.get(owner)
        if tenant is None:
            raise RestError(409, "CONFLICT", f"the owner {owner} of task {task_id} no longer exists")
        target = state.auth.principal_for(tenant, via=user.via)
    else:
        target = user
    clone = clone_for_replay(original, user=target.tenant, namespace=target.namespace)
    created = await create_task_object(state, target, clone)
    p = present(created, profile)
    return FastJSON({"task_id": p["task_id"], "id": p["id"], "status": p["status"],
                     "original_task_id": public_id(original, profile)}, status_code=200)


# --------------------------------------------------------------------------- executions


@router.get("/{task_id}/executions", name="list-executions", response_model=ExecutionList,
            responses=error_responses(*COMMON_ERRORS), summary="Execution history")
async def list_executions(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                          profile: Compat) -> Response:
    obj = find_task(state, user, task_id)
    executions = (obj.get("status") or {}).get("executions") or []
    items = [execution_public(e, obj, latest=i == len(executions) - 1, profile=profile)
             for i, e in enumerate(executions)]
    return FastJSON({"task_id": public_id(obj, profile), "total": len(items), "executions": items})


def _find_execution(obj: Obj, exec_id: str) -> tuple[Obj, bool]:
    executions = (obj.get("status") or {}).get("executions") or []
    for i, execution in enumerate(executions):
        if str(execution.get("id")) == exec_id or execution.get("jobName") == exec_id:
            return execution, i == len(executions) - 1
    raise RestError(404, "EXECUTION_NOT_FOUND",
                    f"Task {obj['metadata']['name']} has no execution {exec_id}")


@router.get("/{task_id}/executions/{exec_id}", name="get-execution", response_model=ExecutionPublic,
            responses=error_responses(*COMMON_ERRORS), summary="One execution")
async def get_execution(task_id: TaskId, exec_id: str, user: CurrentUser, state: State,
                        tasks: TaskCache, profile: Compat) -> Response:
    obj = find_task(state, user, task_id)
    execution, latest = _find_execution(obj, exec_id)
    return FastJSON(execution_public(execution, obj, latest=latest, profile=profile))


@router.delete("/{task_id}/executions/{exec_id}", name="cancel-execution", response_model=TaskCancelled,
               responses=error_responses(401, 404, 409, 429, 503), summary="Cancel the running execution")
async def cancel_execution(task_id: TaskId, exec_id: str, user: CurrentUser, state: State,
                           tasks: TaskCache, profile: Compat) -> Response:
    """Cancels the task if ``exec_id`` is its running execution; 409 if that execution is not running."""
    obj = find_task(state, user, task_id)
    execution, latest = _find_execution(obj, exec_id)
    if execution_public(execution, obj, latest=latest)["status"] != "running" or task_phase(obj) != "Running":
        raise RestError(409, "EXECUTION_NOT_RUNNING", f"execution {exec_id} of task {task_id} is not running")
    return FastJSON(await _cancel(task_id, user, state, profile))


# --------------------------------------------------------------------------- timeline, compare, logs


@router.get("/{task_id}/timeline", name="timeline", response_model=TaskTimeline,
            responses=error_responses(*COMMON_ERRORS), summary="Execution timeline")
async def task_timeline(task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
                        profile: Compat) -> Response:
    """Status milestones plus the Kubernetes Events recorded about the task (one Event LIST)."""
    obj = find_task(state, user, task_id)
    meta = obj["metadata"]
    name = str(meta.get("name"))
    events: list[Obj] = []
    if not state.upstream.down:  # else: the milestones alone (the answer is marked stale)
        try:
            listed = await state.client.list(EVENTS, meta.get("namespace"),
                                             field_selector=f"involvedObject.name={name}")
            events = listed.get("items") or []
        except ApiError:
            try:
                events = (await state.client.list(EVENTS, meta.get("namespace"))).get("items") or []
            except ApiError:
                events = []
    uid = meta.get("uid")
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name") == name
            and (e.get("involvedObject") or {}).get("kind") in (None, "Task")
            and (not uid or (e.get("involvedObject") or {}).get("uid") in (None, uid))]
    return FastJSON(timeline(obj, mine, profile))


@router.get("/{task_id}/compare/{other_id}", name="compare", response_model=TaskComparison,
            responses=error_responses(*COMMON_ERRORS), summary="Compare two tasks")
async def compare(task_id: TaskId, other_id: str, user: CurrentUser, state: State, tasks: TaskCache,
                  profile: Compat) -> Response:
    return FastJSON(compare_tasks(find_task(state, user, task_id), find_task(state, user, other_id), profile))


@router.get(
    "/{task_id}/logs", name="logs", response_class=PlainTextResponse,
    responses={**error_responses(401, 404, 409, 429, 503),
               200: {"content": {"text/plain": {"example": "Processing...\ndone\n"}}}},
    summary="The task's pod log",
)
async def task_logs(
    task_id: TaskId, user: CurrentUser, state: State, tasks: TaskCache,
    tail: Annotated[int | None, Query(ge=0, le=100_000, description="Only the last N lines")] = None,
    follow: Annotated[bool, Query(description="Stream until the container ends")] = False,
    execution: Annotated[str | None, Query(description="Execution id (default: the latest)")] = None,
) -> Response:
    """Proxies the pod log through the apiserver. 409 before the task has started; 404 when the
    cluster has no log for it (the pod is gone, or its nodes serve none)."""
    obj = find_task(state, user, task_id)
    namespace = obj["metadata"]["namespace"]
    executions = (obj.get("status") or {}).get("executions") or []
    chosen = _find_execution(obj, execution)[0] if execution else (executions[-1] if executions else None)
    pod = (chosen or {}).get("podName")
    if not pod:
        if task_phase(obj) in ("Pending", "Queued"):
            raise RestError(409, "LOGS_NOT_AVAILABLE",
                            f"Task {task_id} has not started yet; there are no logs")
        try:
            pods = (await state.client.list(PODS, namespace,
                                            label_selector=f"{LABEL_TASK}={obj['metadata']['name']}"))
        except ApiError as error:
            raise problem_from_api_error(error) from error
        items = sorted(pods.get("items") or [],
                       key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        if not items:
            raise RestError(404, "LOGS_NOT_AVAILABLE", f"Task {task_id} has no pod (any more); no logs")
        pod = items[-1]["metadata"]["name"]
    if follow:
        stream = state.client.stream_pod_logs(pod, namespace, tail_lines=tail)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = b""
        except ApiError as error:
            raise _log_problem(task_id, error) from error

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in stream:
                yield chunk

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8",
                                 headers={"X-Pod-Name": pod})
    try:
        text = await state.client.pod_logs(pod, namespace, tail_lines=tail)
    except ApiError as error:
        raise _log_problem(task_id, error) from error
    return PlainTextResponse(text, headers={"X-Pod-Name": pod})


def _log_problem(task_id: str, error: ApiError) -> RestError:
    if error.status == 400:
        return RestError(409, "LOGS_NOT_AVAILABLE", f"the pod of task {task_id} has no logs yet: {error.message}")
    if error.status in (404, 405, 501):
        return RestError(404, "LOGS_NOT_AVAILABLE",
                         f"no logs for task {task_id}: the pod is gone or this cluster serves no pod logs")
    return problem_from_api_error(error)


# --------------------------------------------------------------------------- completion callback


_CALLBACK_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="kubetask", ApiKey header="X-API-Key"'}


def _callback_token(request: Request) -> str | None:
    token = request.headers.get("x-task-token")
    authorization = request.headers.get("authorization") or ""
    if not token and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    return token.strip() if token and token.strip() else None


async def callback_credentials(request: Request) -> None:
    """A caller without any credential learns nothing: 401 before the id (or the body) is looked at."""
    if _callback_token(request) is None and not request.headers.get("x-api-key") \
            and not request.headers.get("authorization"):
        raise RestError(401, "UNAUTHORIZED", "authentication required: send X-Task-Token (or your API key)",
                        headers=_CALLBACK_UNAUTHORIZED)


@router.post(
    "/{task_id}/complete", name="complete", response_model=CompletionAccepted,
    responses=error_responses(401, 404, 409, 422, 503), summary="Report a task's result (callback)",
    dependencies=[Depends(callback_credentials)],
)
async def complete_task(
    task_id: TaskId, request: Request, state: State, tasks: TaskCache, report: CompletionReport,
    x_task_token: Annotated[str | None, Header(description="The per-task token handed to the pod")] = None,
) -> Response:
    """Called by the running task with its per-task token (``X-Task-Token`` or ``Authorization: Bearer``).
    Records ``status.result`` (source ``callback``). The task's owner may also call it with their key.

    No oracle: without credentials the answer is 401 before any lookup; a token or key that is not valid
    for the task is the same 401 whether the id exists (in any tenant) or not; a tenant naming another
    tenant's task gets the same 404 as for an id that does not exist."""
    token = _callback_token(request)
    target = None
    if token:
        # The token is an HMAC over the task's namespace, name and uid: only the task it was made for matches.
        for obj in callback_candidates(state, task_id):
            meta = obj.get("metadata") or {}
            if verify_task_token(state.settings.callback_secret, str(meta.get("namespace")), str(meta.get("name")),
                                 str(meta.get("uid")), token):
                target = obj
                break
    if target is None:
        principal = None
        if request.headers.get("x-api-key") or request.headers.get("authorization"):
            try:
                principal = await authenticate(request, state)
            except RestError:
                principal = None
        if principal is None:
            raise RestError(401, "INVALID_CREDENTIALS",
                            "the task token or the credentials are not valid for this task",
                            headers=_CALLBACK_UNAUTHORIZED)
        target = find_task(state, principal, task_id)
    if task_phase(target) == "Cancelled":
        raise RestError(409, "TASK_ALREADY_FINISHED", f"Task {task_id} was cancelled")
    data = report.model_dump(exclude_unset=True)
    # ``{"result": ...}`` (with or without a ``status``) reports that result; a body without one (the OmoiOS
    # task-queue API's TaskResult: status, summary, files_changed, error) is itself the result.
    result = data["result"] if data.get("result") is not None else data
    meta = target["metadata"]
    name = str(meta["name"])
    try:
        # A merge patch merges objects: null out what the previous result had, so it is replaced.
        target = await state.client.get(TASKS, name, meta["namespace"])
        updated = await state.client.patch_status(
            TASKS, name,
            {"status": {"result": replace_by_merge_patch((target.get("status") or {}).get("result"), result),
                        "resultSource": "callback"}},
            meta["namespace"])
    except ApiError as error:
        raise problem_from_api_error(error) from error
    state.tasks.upsert(updated)
    profile = chosen_profile(request)
    return FastJSON({"ok": True, "task_id": public_id(updated, profile), "status": status_of(updated, profile)})
