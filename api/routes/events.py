"""Live task updates: Server-Sent Events (``/tasks/events``, ``/tasks/{id}/events``) and seed 004's WebSocket
(``/ws/tasks``), fed by :mod:`kubetask.api.live` from the watch cache.

SSE stream, in order:

* ``retry: 2000`` and an ``event: ready`` whose ``id`` is the server's latest event id (a client that
  reconnects with it misses nothing), data ``{"last_event_id", "window", "buffer"}``;
* ``event: reset`` when a ``Last-Event-ID`` could not be honoured (another process's id, or older than the
  window): the changes in between are unknown, so list again; the stream then goes on live;
* ``event: snapshot`` for the current state (the one-task stream always; the collection with ``snapshot=true``);
* ``event: created|updated|finished|deleted``, ``id: <event id>``, data = the task in the public REST shape;
* ``event: overflow`` when the client read too slowly and more than the per-client buffer piled up; the
  stream then ends; reconnect with the ``last_event_id`` it names.

A filter (``status``, ``tag``, ``template`` …) lets an event through when the task matches it before *or*
after the change, so a client watching ``status=running`` also sees the change that ends a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.sse import format_sse_event
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from kubetask.api.auth import Principal
from kubetask.api.deps import CurrentUser, State, TaskCache, apply_rate_limit, authenticate
from kubetask.api.live import DELETED, HUB_KEY, LiveEvent, LiveHub, Resume, Subscriber, Viewer
from kubetask.api.routes.common import find_task, user_tasks
from kubetask.api.schemas import error_responses
from kubetask.api.state import AppState
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.present import task_public
from kubetask.core.rest.query import TaskQuery, encode_json, make_query, row_filter, task_matches

router = APIRouter(prefix="/tasks", tags=["tasks"])
ws_router = APIRouter()

READY_WAIT_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
MAX_WS_SUBSCRIPTIONS = 1000
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "An event stream (text/event-stream)"},
    **error_responses(401, 404, 422, 429, 503),
}


def hub_of(state: AppState) -> LiveHub:
    hub = state.extra.get(HUB_KEY)
    if not isinstance(hub, LiveHub):
        raise RestError(503, "SERVICE_UNAVAILABLE", "live updates are not running in this server")
    return hub


async def ready_hub(state: AppState) -> LiveHub:
    hub = hub_of(state)
    if not hub.ready.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.ready.wait(), READY_WAIT_SECONDS)
    if not hub.ready.is_set():
        raise RestError(503, "SERVICE_UNAVAILABLE", "live updates are starting (task cache not synced yet)")
    return hub


def viewer_of(user: Principal) -> Viewer:
    return Viewer(namespace=user.namespace, tenant=user.tenant, admin=user.is_admin)


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    return format_sse_event(data_str=data if isinstance(data, str) else encode_json(data), event=event, id=event_id)


def _open(hub: LiveHub, user: Principal) -> None:
    if not hub.open_stream(user.tenant):
        raise RestError(429, "TOO_MANY_STREAMS",
                        f"{user.tenant} already has {hub.settings.max_streams_per_tenant} live streams open; "
                        f"close one first")


def _closer(hub: LiveHub, sub: Subscriber, tenant: str) -> Callable[[], None]:
    def close() -> None:
        hub.unsubscribe(sub)
        hub.close_stream(tenant)
    return close


async def event_stream(hub: LiveHub, sub: Subscriber, resume: Resume, first: list[bytes],
                       *, end_on_delete: bool = False) -> AsyncIterator[bytes]:
    yield format_sse_event(event="ready", id=hub.last_id, retry=RETRY_MILLISECONDS, data_str=encode_json({
        "last_event_id": hub.last_id, "window": hub.ring.maxlen, "buffer": sub.buffer}))
    if not resume.complete:
        yield _sse("reset", {"detail": resume.detail, "last_event_id": hub.last_id})
    for chunk in first:
        yield chunk
    while True:
        try:
            async with asyncio.timeout(KEEPALIVE_SECONDS):
                event = await sub.next()
        except TimeoutError:
            yield b": keepalive\n\n"
            continue
        if event is None:
            yield _sse("overflow", {
                "detail": f"this client fell more than {sub.buffer} events behind, so the stream ends; "
                          f"reconnect with Last-Event-ID: {sub.last_id or hub.last_id} to resume",
                "last_event_id": sub.last_id})
            return
        yield format_sse_event(data_str=event.data, event=event.kind, id=event.id)
        if end_on_delete and event.kind == DELETED:
            return


def _streaming(stream: AsyncIterator[bytes], close: Callable[[], None]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", background=BackgroundTask(close),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _matcher(q: TaskQuery, ids: set[str] | None) -> Callable[[LiveEvent], bool]:
    plain = row_filter(q) is None  # no filter at all: skip the per-event check

    def match(event: LiveEvent) -> bool:
        if ids is not None and event.name not in ids and (event.obj.get("metadata") or {}).get("uid") not in ids:
            return False
        if plain:
            return True
        return task_matches(event.obj, q) or (event.previous is not None and task_matches(event.previous, q))
    return match


@router.get("/events", name="events", response_class=StreamingResponse, responses=SSE_RESPONSES,
            summary="Live updates of your tasks (Server-Sent Events)")
async def task_events(
    user: CurrentUser,
    state: State,
    tasks: TaskCache,
    status: Annotated[list[str] | None, Query(description="As for the list: any case or synonym")] = None,
    tag: Annotated[list[str] | None, Query(description="Tasks carrying all these tags")] = None,
    template: str | None = None,
    task_type: str | None = None,
    model_name: str | None = None,
    queue_name: str | None = None,
    priority: Annotated[str | None, Query(description="Exact priority 0-10")] = None,
    ids: Annotated[list[str] | None, Query(alias="id", description="Only these task ids (repeat or comma-separate)")]
    = None,
    snapshot: Annotated[bool, Query(description="Start with the current state of every matching task")] = False,
    last_event_id: Annotated[str | None, Query(description="Resume after this event (as the header)")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> StreamingResponse:
    """Every change of the caller's tasks that match the filters, as they happen (admins: every tenant's).
    Send ``Last-Event-ID`` (browsers' EventSource does on reconnect) to resume without loss inside the
    server's window; past it the stream starts with ``event: reset``."""
    q = make_query(status=status, tag=tag, template=template, task_type=task_type, model_name=model_name,
                   queue_name=queue_name, priority=priority)
    wanted = {i for raw in ids for i in raw.split(",") if i} if ids else None
    hub = await ready_hub(state)
    _open(hub, user)
    sub, resume = hub.subscribe(viewer_of(user), _matcher(q, wanted), last_event_id_header or last_event_id)
    first: list[bytes] = []
    if snapshot:
        for obj in user_tasks(state, user):
            meta = obj.get("metadata") or {}
            if (wanted is None or meta.get("name") in wanted or meta.get("uid") in wanted) and task_matches(obj, q):
                first.append(_sse("snapshot", task_public(obj), hub.last_id))
    return _streaming(event_stream(hub, sub, resume, first), _closer(hub, sub, user.tenant))


@router.get("/{task_id}/events", name="task-events", response_class=StreamingResponse, responses=SSE_RESPONSES,
            summary="Live updates of one task (Server-Sent Events)")
async def one_task_events(
    task_id: Annotated[str, Path(description="The task id.", max_length=253)],
    user: CurrentUser,
    state: State,
    tasks: TaskCache,
    last_event_id: Annotated[str | None, Query(description="Resume after this event (as the header)")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> StreamingResponse:
    """``event: snapshot`` with the task as it is now, then one event per change; ends after ``deleted``."""
    obj = find_task(state, user, task_id)
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    hub = await ready_hub(state)
    _open(hub, user)
    resumed = last_event_id_header or last_event_id
    sub, resume = hub.subscribe(viewer_of(user), lambda e: e.name == name and e.namespace == namespace, resumed)
    first = [] if resumed and resume.complete else [_sse("snapshot", task_public(obj), hub.last_id)]
    return _streaming(event_stream(hub, sub, resume, first, end_on_delete=True), _closer(hub, sub, user.tenant))


# --------------------------------------------------------------------------- WebSocket (seed 004)


class _Socket:
    """One WebSocket client: the task ids it follows (``*``: all of its tasks)."""

    def __init__(self) -> None:
        self.task_ids: set[tuple[str, str]] = set()
        self.everything = False

    def match(self, event: LiveEvent) -> bool:
        return self.everything or (event.namespace, event.name) in self.task_ids


def _update_message(event_kind: str, data: str, event_id: str | None) -> str:
    body = json.loads(data)
    return encode_json({"type": "task_update", "event": event_kind, "event_id": event_id, **body})


async def _ws_principal(websocket: WebSocket, state: AppState) -> Principal | None:
    """Credentials from the handshake's headers, else from a first ``{"action": "auth"}`` message."""
    try:
        principal = await authenticate(cast(Request, websocket), state)
    except RestError:
        principal = None
        await websocket.send_text(encode_json({"type": "error", "code": "INVALID_CREDENTIALS",
                                               "detail": "the credentials of the handshake are not valid"}))
        return None
    if principal is not None:
        return principal
    await websocket.send_text(encode_json({
        "type": "auth_required",
        "detail": 'send {"action": "auth", "api_key": "..."} (or "token": a Kubernetes bearer token) first'}))
    hub = hub_of(state)
    try:
        async with asyncio.timeout(hub.settings.websocket_auth_seconds):
            message = json.loads(await websocket.receive_text())
    except (TimeoutError, ValueError):
        return None
    if not isinstance(message, dict) or message.get("action") not in ("auth", "authenticate"):
        return None
    key, token = message.get("api_key"), message.get("token")
    if isinstance(key, str) and key.strip():
        return await state.auth.by_api_key(key.strip())
    if isinstance(token, str) and token.strip():
        return await state.auth.by_api_key(token.strip()) or await state.auth.by_token(token.strip())
    return None


@ws_router.websocket("/ws/tasks")
async def tasks_websocket(websocket: WebSocket) -> None:
    """Seed 004's planned protocol: ``{"action": "subscribe", "task_id": ...}`` / ``unsubscribe``; one
    ``{"type": "task_update", "event", "event_id", ...task}`` message per change.  ``task_id: "*"`` follows
    every task of the caller.  Credentials: ``X-API-Key`` / ``Authorization`` on the handshake, or a first
    ``{"action": "auth", "api_key": ...}`` message (browsers cannot set headers on a WebSocket)."""
    state: AppState = websocket.app.state.kubetask
    await websocket.accept()
    principal = await _ws_principal(websocket, state)
    if principal is None:
        await websocket.close(code=4401, reason="authentication required")
        return
    try:
        apply_rate_limit(cast(Request, websocket), state, principal)
        hub = await ready_hub(state)
        _open(hub, principal)
    except RestError as error:
        await websocket.send_text(encode_json({"type": "error", "code": error.code, "detail": error.detail}))
        await websocket.close(code=4429 if error.status == 429 else 1013, reason=error.code)
        return
    follow = _Socket()
    sub, _ = hub.subscribe(viewer_of(principal), follow.match)
    await websocket.send_text(encode_json({"type": "connected", "user_id": principal.tenant,
                                           "last_event_id": hub.last_id}))
    sender = asyncio.create_task(_ws_send(websocket, sub))
    try:
        while True:
            try:
                raw = await websocket.receive_text()
            except WebSocketDisconnect:
                return
            for reply in _ws_handle(state, principal, follow, raw):
                await websocket.send_text(reply)
            if sender.done():
                return
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        hub.unsubscribe(sub)
        hub.close_stream(principal.tenant)


def _error(code: str, detail: str, task_id: str | None = None) -> list[str]:
    body: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if task_id is not None:
        body["task_id"] = task_id
    return [encode_json(body)]


def _ws_handle(state: AppState, principal: Principal, follow: _Socket, raw: str) -> list[str]:
    """The replies to one client message (``subscribe`` also sends the task's current state)."""
    try:
        message = json.loads(raw)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return _error("BAD_MESSAGE", "messages are JSON objects")
    action, task_id = message.get("action"), message.get("task_id")
    if action == "ping":
        return [encode_json({"type": "pong"})]
    if action in ("auth", "authenticate"):
        return _error("ALREADY_AUTHENTICATED", "this connection is authenticated")
    if action not in ("subscribe", "unsubscribe"):
        return _error("UNKNOWN_ACTION", "actions: subscribe, unsubscribe, ping")
    if task_id in (None, "*"):
        follow.everything = action == "subscribe"
        if not follow.everything:
            follow.task_ids.clear()
        return [encode_json({"type": f"{action}d", "task_id": "*"})]
    if not isinstance(task_id, str) or not task_id or len(task_id) > 253:
        return _error("BAD_MESSAGE", "task_id must be a task id (or '*' for all of your tasks)")
    try:
        obj = find_task(state, principal, task_id)
    except RestError as error:
        return _error(error.code, error.detail, task_id)
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    if action == "unsubscribe":
        follow.task_ids.discard(key)
        return [encode_json({"type": "unsubscribed", "task_id": task_id})]
    if key not in follow.task_ids and len(follow.task_ids) >= MAX_WS_SUBSCRIPTIONS:
        return _error("TOO_MANY_SUBSCRIPTIONS", f"at most {MAX_WS_SUBSCRIPTIONS} task subscriptions per connection",
                      task_id)
    follow.task_ids.add(key)
    return [encode_json({"type": "subscribed", "task_id": task_id}),
            _update_message("snapshot", encode_json(task_public(obj)), None)]


async def _ws_send(websocket: WebSocket, sub: Subscriber) -> None:
    while True:
        event = await sub.next()
        if event is None:
            await websocket.send_text(encode_json({
                "type": "error", "code": "SLOW_CONSUMER",
                "detail": f"this connection fell more than {sub.buffer} updates behind and is closed; reconnect "
                          f"and subscribe again"}))
            await websocket.close(code=1008, reason="slow consumer")
            return
        await websocket.send_text(_update_message(event.kind, event.data, event.id))
