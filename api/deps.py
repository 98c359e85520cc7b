"""FastAPI dependencies as ``Annotated`` aliases: ``State``, ``CurrentUser``, ``Compat``, ``TaskCache`` …"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kubetask.api.auth import Principal
from kubetask.api.state import AppState
from kubetask.api.upstream import WRITE_METHODS
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.profiles import CANONICAL, PROFILE_HEADER, PROFILES, ROOT_PATH_PROFILE, Profile, profile_named
from kubetask.core.tenants import tenant_limits
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


async def writes_need_apiserver(request: Request) -> None:
    """Router dependency: while the apiserver does not answer, a write is refused at once (503, Retry-After)
    instead of waiting for its deadline, and nothing is sent that a resumed apiserver would still execute."""
    if request.method in WRITE_METHODS:
        state: AppState = request.app.state.kubetask
        if state.upstream.down:
            raise state.upstream.unavailable()


Cluster = Annotated[KubeClient, Depends(get_cluster)]
TaskCache = Annotated[Informer, Depends(get_task_cache)]


def chosen_profile(request: Request, principal: Principal | None = None) -> Profile:
    """The request's compatibility profile: ``X-Compat-Profile``, else the API key's pinned profile, else the
    path's (the Task Manager API's root paths), else canonical.  An unknown header value is a 422."""
    header = request.headers.get(PROFILE_HEADER.lower())
    if header is not None and header.strip():
        profile = profile_named(header)
        if profile is None:
            raise RestError(422, "UNKNOWN_PROFILE", f"{PROFILE_HEADER}: unknown profile {header.strip()!r}; use "
                            f"one of {', '.join(PROFILES)}", field=PROFILE_HEADER)
    else:
        profile = (profile_named(principal.profile) if principal is not None else None) or path_profile(request)
    request.state.profile = profile  # the error handlers answer in its error style
    return profile


def path_profile(request: Request) -> Profile:
    """The profile a path implies: the Task Manager API's on the root paths (no ``/api/v1``)."""
    return CANONICAL if request.url.path.startswith("/api/") else ROOT_PATH_PROFILE


async def request_profile(request: Request, user: CurrentUser) -> Profile:
    return chosen_profile(request, user)


async def anonymous_profile(request: Request) -> Profile:
    """:func:`chosen_profile` for endpoints that need no credentials."""
    return chosen_profile(request)

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
    chosen_profile(request, principal)
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
            f"rate limit exceeded: {decision.limit} requests per minute for {principal.tenant}"
            + (f" ({state.limiter.replicas} API replicas, each counting its share)" if state.limiter.replicas > 1
               else "") + f"; retry in {decision.retry_after} s",
            headers={**headers, "Retry-After": str(decision.retry_after)},
        )


CurrentUser = Annotated[Principal, Depends(current_user)]
Compat = Annotated[Profile, Depends(request_profile)]
"""The compatibility profile of an authenticated request (see :func:`chosen_profile`)."""
AnonymousCompat = Annotated[Profile, Depends(anonymous_profile)]


async def admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise RestError(403, "FORBIDDEN", "this needs an admin tenant")
    return user


AdminUser = Annotated[Principal, Depends(admin_user)]
