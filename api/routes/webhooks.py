"""``/webhooks``: a tenant's completion-webhook subscriptions (``TaskWebhook`` resources in its namespace).

The API manages them; the operator delivers (see :mod:`kubetask.core.notifications` for the contract).
The signing secret is generated here, kept in a Secret owned by the TaskWebhook, and shown once: in the
answer to ``POST`` (and to ``PATCH`` with ``rotate_secret``), never by a read.  A tenant sees and changes
only the subscriptions of its own namespace; another tenant's are answered 404.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kubetask import GROUP, VERSION
from kubetask.api.auth import Principal
from kubetask.api.deps import CurrentUser, State
from kubetask.api.errors import problem_from_api_error
from kubetask.api.routes.common import FastJSON
from kubetask.api.schemas import error_responses
from kubetask.api.state import AppState
from kubetask.core.notifications import (
    SECRET_KEY,
    SECRET_LABEL,
    WEBHOOK_KIND,
    WEBHOOK_PLURAL,
    UrlRejected,
    address_problem,
    check_url,
    deliveries_public,
    new_signing_secret,
    normalize_events,
    parse_networks,
    secret_name,
    webhook_public,
)
from kubetask.core.objects import Obj
from kubetask.core.rest.errors import RestError, invalid
from kubetask.kube.cache import Informer
from kubetask.kube.client import SECRETS, ApiError, Resource
from kubetask.settings import WebhookSettings

TASK_WEBHOOKS = Resource(GROUP, VERSION, WEBHOOK_PLURAL, WEBHOOK_KIND)
CACHE_KEY = "webhooks"
SETTINGS_KEY = "webhook_settings"
SYNC_WAIT_SECONDS = 10.0
RESOLVE_TIMEOUT_SECONDS = 5.0

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(description="The subscription id (its TaskWebhook name).", max_length=253)]


# --------------------------------------------------------------------------- models


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s) URL that receives a signed POST per event", max_length=2048)
    events: list[str] | str | None = Field(
        default=None, description="task.completed, task.failed, task.cancelled, or '*'/'all' (the default)")
    description: str | None = Field(default=None, max_length=1024)
    enabled: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | str | None = None
    description: str | None = Field(default=None, max_length=1024)
    enabled: bool | None = None
    rotate_secret: bool = Field(default=False, description="Generate a new signing secret and return it once")


class WebhookPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    url: str
    events: list[str]
    description: str | None = None
    enabled: bool
    created_at: str | None = None
    secret_ref: str
    pending: int
    delivered: int
    failed_attempts: int
    abandoned: int
    last_outcome: str | None = None
    last_attempt_at: str | None = None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret: shown only in this answer")


class WebhookList(BaseModel):
    total: int
    webhooks: list[WebhookPublic]


class DeliveryAttempt(BaseModel):
    delivery_id: str | None = None
    event: str | None = None
    task_id: str | None = None
    task_name: str | None = None
    attempt: int | None = None
    at: str | None = None
    outcome: str | None = None
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class PendingDeliveryPublic(BaseModel):
    delivery_id: str | None = None
    event: str | None = None
    task_id: str | None = None
    task_name: str | None = None
    occurred_at: str | None = None
    attempts: int | None = None
    next_attempt_at: str | None = None
    last_error: str | None = None


class DeliveryList(BaseModel):
    webhook_id: str
    attempts: list[DeliveryAttempt]
    pending: list[PendingDeliveryPublic]
    delivered: int
    abandoned: int


# --------------------------------------------------------------------------- cache and checks


def start_webhook_cache(state: AppState) -> Informer:
    """The TaskWebhook watch cache (kept out of the auth gate: a cluster without the CRD still serves tasks)."""
    informer = Informer(state.client, TASK_WEBHOOKS)
    state.extra[CACHE_KEY] = informer
    state.extra[SETTINGS_KEY] = WebhookSettings()
    informer.start()
    return informer


async def _cache(state: AppState) -> Informer:
    informer = state.extra.get(CACHE_KEY)
    if not isinstance(informer, Informer):
        raise RestError(503, "SERVICE_UNAVAILABLE", "webhooks are not available in this server")
    if not informer.synced and not await informer.wait_synced(SYNC_WAIT_SECONDS):
        raise RestError(503, "SERVICE_UNAVAILABLE", "the webhook cache is not synced yet (is the TaskWebhook CRD "
                        f"installed?){f' ({informer.last_error})' if informer.last_error else ''}")
    return informer


def _settings(state: AppState) -> WebhookSettings:
    found = state.extra.get(SETTINGS_KEY)
    return found if isinstance(found, WebhookSettings) else WebhookSettings()


def _events(value: list[str] | str | None) -> list[str]:
    try:
        return normalize_events(value)
    except ValueError as error:
        raise invalid("events", str(error)) from error


async def _checked_url(state: AppState, url: str) -> str:
    """The URL, if deliveries may go there: a sane http(s) URL whose host resolves to no blocked address."""
    try:
        _, host, port = check_url(url)
    except UrlRejected as error:
        raise invalid("url", str(error)) from error
    allowed = parse_networks(_settings(state).allowed_networks)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as error:
        raise invalid("url", f"the host {host} does not resolve: {error}") from error
    for info in infos:
        problem = address_problem(str(info[4][0]), allowed)
        if problem is not None:
            raise invalid("url", f"{host} resolves to {problem}")
    return url.strip()


def _mine(user: Principal, informer: Informer, webhook_id: str) -> Obj:
    obj = informer.get(webhook_id, user.namespace)
    if obj is None:
        raise RestError(404, "WEBHOOK_NOT_FOUND", f"Webhook {webhook_id} not found")
    return obj


def _secret_object(name: str, namespace: str, value: str, owner: Obj) -> Obj:
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name(name), "namespace": namespace, "labels": {SECRET_LABEL: "true"},
                     "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": WEBHOOK_KIND,
                                          "name": name, "uid": meta.get("uid"), "controller": True,
                                          "blockOwnerDeletion": False}]},
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(value.encode()).decode()},
    }


async def _store_secret(state: AppState, obj: Obj, value: str) -> None:
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace"))
    ref = (obj.get("spec") or {}).get("secretRef") or {}
    secret = _secret_object(name, namespace, value, obj)
    if ref.get("name") and ref["name"] != secret_name(name):
        secret["metadata"]["name"] = ref["name"]
        secret["data"] = {str(ref.get("key") or SECRET_KEY): secret["data"][SECRET_KEY]}
    try:
        await state.client.create(SECRETS, secret, namespace)
    except ApiError as error:
        if not error.already_exists:
            raise
        await state.client.patch(SECRETS, secret["metadata"]["name"], {"data": secret["data"]}, namespace)


# --------------------------------------------------------------------------- routes


@router.post("", name="create", status_code=201, response_model=WebhookCreated,
             responses=error_responses(401, 422, 429, 503), summary="Subscribe a URL to task events")
async def create_webhook(body: WebhookCreate, user: CurrentUser, state: State) -> Response:
    """Deliveries are POSTs signed with the returned ``secret`` (``X-Kubetask-Signature: t=…,v1=…``, an
    HMAC-SHA256 of ``"<t>.<body>"``), with ``X-Kubetask-Delivery`` as the id to deduplicate on. The secret is
    shown only here. URLs that resolve to internal addresses are refused unless an admin allowed them."""
    informer = await _cache(state)
    url = await _checked_url(state, body.url)
    name = f"wh-{secrets.token_hex(5)}"
    spec: dict[str, Any] = {"url": url, "events": _events(body.events), "enabled": body.enabled,
                            "secretRef": {"name": secret_name(name), "key": SECRET_KEY}}
    if body.description is not None:
        spec["description"] = body.description
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": WEBHOOK_KIND,
                "metadata": {"name": name, "namespace": user.namespace,
                             "labels": {"kubetask.io/tenant": user.tenant}},
                "spec": spec}
    try:
        created = await state.client.create(TASK_WEBHOOKS, manifest, user.namespace)
    except ApiError as error:
        if error.status == 404:
            raise RestError(503, "SERVICE_UNAVAILABLE", f"the namespace {user.namespace} is not ready yet (or the "
                            f"TaskWebhook CRD is not installed)") from error
        raise problem_from_api_error(error) from error
    value = new_signing_secret()
    try:
        await _store_secret(state, created, value)
    except ApiError as error:
        await state.client.delete(TASK_WEBHOOKS, name, user.namespace)
        raise problem_from_api_error(error) from error
    informer.upsert(created)
    return FastJSON({**webhook_public(created), "secret": value}, status_code=201,
                    headers={"Location": f"/api/v1/webhooks/{name}"})


@router.get("", name="list", response_model=WebhookList, responses=error_responses(401, 429, 503),
            summary="Your webhook subscriptions")
async def list_webhooks(user: CurrentUser, state: State) -> Response:
    informer = await _cache(state)
    items = sorted((webhook_public(o) for o in informer.by_index("namespace", user.namespace)),
                   key=lambda w: (str(w.get("created_at") or ""), str(w["id"])))
    return FastJSON({"total": len(items), "webhooks": items})


@router.get("/{webhook_id}", name="get", response_model=WebhookPublic, responses=error_responses(401, 404, 429, 503),
            summary="One webhook subscription (never its secret)")
async def get_webhook(webhook_id: WebhookId, user: CurrentUser, state: State) -> Response:
    return FastJSON(webhook_public(_mine(user, await _cache(state), webhook_id)))


@router.patch("/{webhook_id}", name="update", response_model=WebhookPublic | WebhookCreated,
              responses=error_responses(401, 404, 422, 429, 503), summary="Change a subscription")
async def update_webhook(webhook_id: WebhookId, body: WebhookUpdate, user: CurrentUser, state: State) -> Response:
    """Change the URL, events, description or ``enabled``; ``rotate_secret: true`` answers the new secret once
    (deliveries sign with it from the operator's next attempt on)."""
    informer = await _cache(state)
    obj = _mine(user, informer, webhook_id)
    spec: dict[str, Any] = {}
    if body.url is not None:
        spec["url"] = await _checked_url(state, body.url)
    if body.events is not None:
        spec["events"] = _events(body.events)
    if body.description is not None:
        spec["description"] = body.description
    if body.enabled is not None:
        spec["enabled"] = body.enabled
    updated = obj
    if spec:
        try:
            updated = await state.client.patch(TASK_WEBHOOKS, webhook_id, {"spec": spec}, user.namespace)
        except ApiError as error:
            if error.status == 404:
                raise RestError(404, "WEBHOOK_NOT_FOUND", f"Webhook {webhook_id} not found") from error
            raise problem_from_api_error(error) from error
        informer.upsert(updated)
    out: dict[str, Any] = webhook_public(updated)
    if body.rotate_secret:
        value = new_signing_secret()
        try:
            await _store_secret(state, updated, value)
        except ApiError as error:
            raise problem_from_api_error(error) from error
        out["secret"] = value
    return FastJSON(out)


@router.delete("/{webhook_id}", name="delete", status_code=204, responses=error_responses(401, 404, 429, 503),
               summary="Unsubscribe")
async def delete_webhook(webhook_id: WebhookId, user: CurrentUser, state: State) -> Response:
    """Deletes the TaskWebhook; its signing Secret goes with it. Undelivered events are dropped."""
    informer = await _cache(state)
    obj = _mine(user, informer, webhook_id)
    try:
        await state.client.delete(TASK_WEBHOOKS, webhook_id, user.namespace)
    except ApiError as error:
        if error.status != 404:
            raise problem_from_api_error(error) from error
    informer.remove(obj)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", name="deliveries", response_model=DeliveryList,
            responses=error_responses(401, 404, 429, 503), summary="Recent delivery attempts and pending events")
async def webhook_deliveries(webhook_id: WebhookId, user: CurrentUser, state: State) -> Response:
    """The last attempts (newest first: outcome, HTTP status, error, duration) and the events still to deliver
    (attempts so far, next attempt)."""
    return FastJSON(deliveries_public(_mine(user, await _cache(state), webhook_id)))
