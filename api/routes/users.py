"""``/users``: the caller's limits (the OmoiOS task-queue API), and admins' view and change of any tenant's limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from kubetask.api.deps import CurrentUser, State, TaskCache
from kubetask.api.errors import problem_from_api_error
from kubetask.api.routes.common import FastJSON, tenant_of, tenant_tasks
from kubetask.api.schemas import LimitsPatch, UserLimits, error_responses
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.patches import limits_patch
from kubetask.core.rest.present import limits_public
from kubetask.core.tenants import namespace_of
from kubetask.kube.client import TENANTS, ApiError

router = APIRouter(prefix="/users", tags=["users"])


def _tenant(state: Any, user_id: str) -> dict[str, Any]:
    tenant = state.tenants.get(user_id)
    if tenant is None:
        raise RestError(404, "USER_NOT_FOUND", f"User {user_id} not found")
    return dict(tenant)


def _limits(state: Any, tenant: dict[str, Any]) -> dict[str, Any]:
    name = str(tenant["metadata"]["name"])
    ns = namespace_of(tenant, state.settings.tenant_namespace_prefix)
    return limits_public(tenant, tenant_tasks(state, name, ns))


@router.get("/me/limits", name="my-limits", response_model=UserLimits,
            responses=error_responses(401, 429, 503), summary="The caller's limits and usage")
async def my_limits(user: CurrentUser, state: State, tasks: TaskCache) -> Response:
    """The OmoiOS task-queue API's UserLimits: plan, concurrency, task duration and monthly GPU-hours (limit and
    used)."""
    return FastJSON(_limits(state, dict(tenant_of(state, user))))


@router.get("/{user_id}/limits", name="get-limits", response_model=UserLimits,
            responses=error_responses(401, 403, 404, 429, 503), summary="A user's limits (admin)")
async def get_limits(user_id: str, user: CurrentUser, state: State, tasks: TaskCache) -> Response:
    if user_id in ("me", user.tenant):
        return FastJSON(_limits(state, dict(tenant_of(state, user))))
    if not user.is_admin:
        raise RestError(403, "FORBIDDEN", "only admins may read other users' limits")
    return FastJSON(_limits(state, _tenant(state, user_id)))


@router.patch("/{user_id}/limits", name="update-limits", response_model=UserLimits,
              responses=error_responses(401, 403, 404, 422, 429, 503), summary="Change a user's limits (admin)")
async def update_limits(user_id: str, body: LimitsPatch, user: CurrentUser, state: State,
                        tasks: TaskCache) -> Response:
    """Merge-patches the Tenant's ``spec.limits``; ``null`` removes a limit. Admins only."""
    if not user.is_admin:
        raise RestError(403, "FORBIDDEN", "only admins may change limits")
    target = user.tenant if user_id == "me" else user_id
    _tenant(state, target)
    patch = limits_patch(body.model_dump(exclude_unset=True))
    try:
        updated = await state.client.patch(TENANTS, target, {"spec": {"limits": patch}})
    except ApiError as error:
        raise problem_from_api_error(error) from error
    state.tenants.upsert(updated)
    return FastJSON(_limits(state, updated))
