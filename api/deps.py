"""FastAPI dependencies as ``Annotated`` aliases: ``State``, ``CurrentUser``, ``Cluster``, ``TaskCache`` …"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kubetask.api.auth import Principal
from kubetask.api.state import AppState
from kubetask.core.rest import RestError, tenant_limits
from kubetask.kube.cache import Informer
from kubetask.kube.client import KubeClient

SYNC_WAIT_SECONDS = 10.0


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def`` dependency in a
# worker thread, a thread hop (and GIL hand-off) on every request.


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kubetask
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_cluster(state: State) -> KubeClient:
    return state.client


async def get_task_cache(state: State) -> Informer:
    if not state.tasks.synced and not await state.tasks.wait_synced(SYNC_WAIT_SECONDS):
        raise RestError(503, "SERVICE_UNAVAILABLE", "the task cache is not synced yet; try again shortly")
    return state.tasks


Cluster = Annotated[KubeClient, Depends(get_cluster)]
TaskCache = Annotated[Informer, Depends(get_task_cache)]


async def queued_as_pending(request: Request) -> bool:
    """True on seed 004's root paths, whose status vocabulary has no ``queued``."""
    return bool(getattr(request.state, "queued_as_pending", False))


Seed004 = Annotated[bool, Depends(queued_as_pending)]

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="kubetask", ApiKey header="X-API-Key"'}


async def authenticate(request: Request, state: AppState) -> Principal | None:
    """The caller from ``X-API-Key`` or ``Authorization: Bearer`` (an API key or a Kubernetes token)."""
    if not state.informers.synced and not await state.informers.wait_synced(SYNC_WAIT_SECONDS):
        raise RestError(503, "SERVICE_UNAVAILABLE", "the API is starting (caches not synced); try again shortly")
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization") or ""
    if api_key:
        principal = await state.auth.by_api_key(api_key.strip())
        if principal is None:
            raise RestError(401, "INVALID_API_KEY", "invalid API key", headers=_UNAUTHORIZED_HEADERS)
        return principal
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token", "apikey", "api-key") and credential.strip():
        credential = credential.strip()
        principal = await state.auth.by_api_key(credential)
        if principal is None and scheme.lower() == "bearer":
            principal = await state.auth.by_token(credential)
        if principal is None:
            raise RestError(401, "INVALID_CREDENTIALS",
                            "the bearer token is not valid or maps to no kubetask tenant",
                            headers=_UNAUTHORIZED_HEADERS)
        return principal
    return None


async def current_user(request: Request, state: State) -> Principal:
    principal = await authenticate(request, state)
    if principal is None:
        raise RestError(401, "UNAUTHORIZED",
                        "authentication required: send X-API-Key or Authorization: Bearer <token>",
                        headers=_UNAUTHORIZED_HEADERS)
    apply_rate_limit(request, state, principal)
    request.state.principal = principal
    return principal


def apply_rate_limit(request: Request, state: AppState, principal: Principal) -> None:
    tenant = state.tenants.get(principal.tenant) or principal.tenant_obj
    limit = tenant_limits(tenant).get("requestsPerMinute") or state.settings.default_rate_limit_per_minute
    decision = state.limiter.hit(principal.tenant, int(limit))
    headers = decision.headers()
    request.state.ratelimit_headers = headers
    if not decision.allowed:
        raise RestError(
            429, "RATE_LIMITED",
            f"rate limit exceeded: {decision.limit} requests per minute for {principal.tenant}; "
            f"retry in {decision.retry_after} s",
            headers={**headers, "Retry-After": str(decision.retry_after)},
        )


CurrentUser = Annotated[Principal, Depends(current_user)]


async def admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise RestError(403, "FORBIDDEN", "this needs an admin tenant")
    return user


AdminUser = Annotated[Principal, Depends(admin_user)]
