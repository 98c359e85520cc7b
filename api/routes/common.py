"""Helpers shared by the routes: visibility, presentation, JSON responses, creating Tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse, Response

from kubetask.api.admission import admit
from kubetask.api.auth import Principal
from kubetask.api.errors import problem_from_api_error
from kubetask.api.state import AppState
from kubetask.core.admission import count_pending
from kubetask.core.objects import Obj
from kubetask.core.phases import WAITING_PHASES, task_phase
from kubetask.core.rest.errors import RestError, not_found
from kubetask.core.rest.intake import generate_task_id
from kubetask.core.rest.present import task_public
from kubetask.core.rest.profiles import Profile, uid_in
from kubetask.core.rest.query import TaskQuery, TaskRow, encode_json_bytes, match_rows, query_key
from kubetask.kube.client import TASKS, ApiError


class FastJSON(JSONResponse):
    """Compact JSON with no extra validation pass (bodies are built by the core)."""

    def render(self, content: Any) -> bytes:
        return encode_json_bytes(content)


class RawJSON(Response):
    """A body already encoded with :func:`~kubetask.core.rest.query.encode_json` (e.g. from precomputed rows)."""

    media_type = "application/json"


def visible(user: Principal, obj: Mapping[str, Any]) -> bool:
    if user.is_admin:
        return True
    meta = obj.get("metadata") or {}
    if meta.get("namespace") != user.namespace:
        return False
    owner = (obj.get("spec") or {}).get("user")
    return owner in (None, "", user.tenant)


def _uid_index(state: AppState, user: Principal) -> dict[str, Obj]:
    """``{uid: task}`` of the caller's tasks (every task for an admin), rebuilt only when one of them changes."""
    if user.is_admin:
        version: tuple[Any, ...] = ("uid", "*", state.tasks.generation)
    else:
        version = ("uid", user.namespace, state.tasks.index_stamp("namespace", user.namespace))
    index: dict[str, Obj] = state.task_queries.get(version, lambda: {
        str(uid).lower(): o for o in user_tasks(state, user) if (uid := (o.get("metadata") or {}).get("uid"))})
    return index


def lookup_task(state: AppState, user: Principal, task_id: str) -> Obj | None:
    """The task ``task_id`` names (its uid, ``task_<uid>``, or its Kubernetes name) if the caller may see it,
    from the watch cache."""
    uid = uid_in(task_id)
    if uid is not None:
        found = _uid_index(state, user).get(uid)
        if found is not None and visible(user, found):
            return found
        return None
    obj = state.tasks.get(task_id, user.namespace)
    if obj is not None and visible(user, obj):
        return obj
    if user.is_admin:
        for candidate in state.tasks.by_index("name", task_id):
            return candidate
    return None


def find_task(state: AppState, user: Principal, task_id: str) -> Obj:
    """:func:`lookup_task`, or a 404 (also for other users' tasks: an outsider learns nothing)."""
    obj = lookup_task(state, user, task_id)
    if obj is None:
        raise not_found(task_id)
    return obj


def callback_candidates(state: AppState, task_id: str) -> list[Obj]:
    """Every cached task that ``task_id`` (a name or a uid) may name, in any namespace: the completion callback
    checks each one's token."""
    uid = uid_in(task_id)
    if uid is None:
        return state.tasks.by_index("name", task_id)
    return [o for o in state.tasks.list() if str((o.get("metadata") or {}).get("uid") or "").lower() == uid]


def not_started(obj: Mapping[str, Any]) -> bool:
    """Waiting and never run: what an update may still change (what runs included)."""
    return task_phase(obj) in WAITING_PHASES and not (obj.get("status") or {}).get("executions") \
        and not (obj.get("spec") or {}).get("cancel")


def nodes_of(state: AppState) -> list[Obj]:
    """The cached Nodes (empty until the node cache has synced)."""
    nodes = state.informers.informers.get("nodes")
    return nodes.list() if nodes is not None and nodes.synced else []


def user_tasks(state: AppState, user: Principal, *, all_users: bool | None = None) -> list[Obj]:
    """The caller's tasks (an admin sees every tenant's unless ``all_users`` is False)."""
    if user.is_admin and all_users is not False:
        return state.tasks.list()
    return [o for o in state.tasks.by_index("namespace", user.namespace) if visible(user, o)]


def user_rows(state: AppState, user: Principal) -> list[TaskRow]:
    """:func:`user_tasks` as the cache's precomputed rows (same tasks, same order)."""
    if user.is_admin:
        return state.tasks.derived_list()
    rows: list[TaskRow] = state.tasks.derived_by_index("namespace", user.namespace)
    tenant = user.tenant
    return [r for r in rows if r.namespace == user.namespace and r.owner in (None, "", tenant)]


def matching_rows(state: AppState, user: Principal, q: TaskQuery) -> list[TaskRow]:
    """``match_rows(user_rows(...), q)``: every match in order, cached until one of the caller's tasks changes
    (the namespace bucket's stamp; any task for an admin).  The list is shared: slice it, never change it."""
    if user.is_admin:
        version: tuple[Any, ...] = ("*", state.tasks.generation)
    else:
        version = (user.namespace, user.tenant, state.tasks.index_stamp("namespace", user.namespace))
    result: list[TaskRow] = state.task_queries.get((version, query_key(q)),
                                                    lambda: match_rows(user_rows(state, user), q))
    return result


def tenant_tasks(state: AppState, tenant: str, namespace: str) -> list[Obj]:
    return [o for o in state.tasks.by_index("namespace", namespace)
            if (o.get("spec") or {}).get("user") in (None, "", tenant)]


def pending_count(state: AppState, user: Principal, tenant_name: str) -> int:
    """``count_pending(tenant_tasks(...), tenant_name)``, from counts the task informer keeps current."""
    if tenant_name and tenant_name == user.tenant:
        return state.pending.count(user.namespace, tenant_name)
    return count_pending(tenant_tasks(state, user.tenant, user.namespace), tenant_name)


def tenant_of(state: AppState, user: Principal) -> Mapping[str, Any]:
    return state.tenants.get(user.tenant) or user.tenant_obj


def present(obj: Mapping[str, Any], profile: Profile, *, warnings: list[str] | None = None) -> Obj:
    return task_public(obj, profile, warnings=warnings)


async def create_task_object(
    state: AppState,
    user: Principal,
    obj: Obj,
    *,
    templates: Sequence[Mapping[str, Any]] | None = None,
) -> Obj:
    """Admission check, then create with a generated name (retrying on AlreadyExists); cache the result."""
    _admit(state, user, obj, templates)
    display = (obj.get("spec") or {}).get("displayName")
    last_error: ApiError | None = None
    for _ in range(5):
        obj["metadata"]["name"] = generate_task_id(display)
        try:
            created = await state.client.create(TASKS, obj, user.namespace)
        except ApiError as error:
            if error.already_exists:
                last_error = error
                continue
            raise _create_problem(user, error) from error
        state.tasks.upsert(created)
        return created
    raise problem_from_api_error(last_error) if last_error else RestError(409, "CONFLICT", "name clash")


async def create_named_task_object(
    state: AppState,
    user: Principal,
    obj: Obj,
    *,
    templates: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Obj, bool]:
    """Admission check, then create under the name ``obj`` already carries (an idempotent create):
    ``(task, True)``, or ``(the task of that name, False)`` when the apiserver says it already exists."""
    name = str(obj["metadata"]["name"])
    _admit(state, user, obj, templates)
    try:
        created = await state.client.create(TASKS, obj, user.namespace)
    except ApiError as error:
        if not error.already_exists:
            raise _create_problem(user, error) from error
        try:
            existing = await state.client.get(TASKS, name, user.namespace)
        except ApiError as again:
            raise problem_from_api_error(again) from again
        state.tasks.upsert(existing)
        return existing, False
    state.tasks.upsert(created)
    return created, True


def _admit(state: AppState, user: Principal, obj: Obj, templates: Sequence[Mapping[str, Any]] | None) -> None:
    tenant = tenant_of(state, user)
    admit(obj, tenant, lambda: tenant_tasks(state, user.tenant, user.namespace),
          list(templates) if templates is not None else state.templates.list(),
          pending_count=lambda name: pending_count(state, user, name))


def _create_problem(user: Principal, error: ApiError) -> RestError:
    if error.status == 404:
        return RestError(503, "SERVICE_UNAVAILABLE",
                         f"the namespace {user.namespace} of tenant {user.tenant} is not ready yet "
                         f"(or the Task CRD is not installed)")
    return problem_from_api_error(error)


async def patch_task(state: AppState, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata") or {}
    try:
        updated = await state.client.patch(TASKS, str(meta.get("name")), dict(patch), str(meta.get("namespace")))
    except ApiError as error:
        if error.status == 404:
            state.tasks.remove(obj)
            raise not_found(str(meta.get("name"))) from error
        raise problem_from_api_error(error) from error
    state.tasks.upsert(updated)
    return updated
