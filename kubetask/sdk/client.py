"""``KubetaskClient`` (sync) and ``AsyncKubetaskClient`` over httpx.

    from kubetask.sdk import KubetaskClient

    with KubetaskClient("http://127.0.0.1:8000", api_key="dev-alice-key") as kt:
        task = kt.submit(template="ollama-inference", parameters={"model": "llama3.1:8b", "prompt": "Hi"})
        done = kt.wait(task.id, on_progress=lambda t: print(t.status))
        print(done.result)

Configuration falls back to ``$KUBETASK_URL`` and ``$KUBETASK_API_KEY`` (or ``$KUBETASK_TOKEN`` for a
Kubernetes bearer token).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from kubetask.sdk.errors import KubetaskError, ServiceUnavailable, WaitTimeout, error_for
from kubetask.sdk.models import (
    Cancellation,
    QueueStatus,
    Task,
    TaskPage,
    Template,
    UserLimits,
    Validation,
)

DEFAULT_URL = "http://127.0.0.1:8000"
ProgressCallback = Callable[[Task], Any]
RECONNECT_SECONDS = 2.0


@dataclass(frozen=True)
class TaskEvent:
    """One message of the live stream: ``kind`` is ``snapshot``, ``created``, ``updated``, ``finished`` or
    ``deleted`` (with ``task``), or ``reset`` (changes were missed: re-list; ``detail`` says why)."""

    kind: str
    id: str | None
    task: Task | None = None
    detail: str | None = None


class _SSEParser:
    """An incremental ``text/event-stream`` parser: :meth:`feed` one line, get ``(event, data, id)`` or None."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, raw: str) -> tuple[str, str, str | None] | None:
        line = raw.rstrip("\r")
        if line == "":
            out = (self.event, "\n".join(self.data), self.id) if self.data or self.event != "message" else None
            self.event, self.data, self.id = "message", [], None
            return out
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self.event = value
            elif name == "data":
                self.data.append(value)
            elif name == "id":
                self.id = value
        return None


def _sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str, str | None]]:
    """``(event, data, id)`` for each event of a ``text/event-stream`` (comments skipped)."""
    parser = _SSEParser()
    for line in lines:
        parsed = parser.feed(line)
        if parsed is not None:
            yield parsed


def _watch_params(status: str | None, tag: str | None, template: str | None, ids: Iterable[str] | None,
                  snapshot: bool) -> dict[str, Any]:
    params = _list_params(status=status, tag=tag, template=template)
    if ids:
        params["id"] = ",".join(ids)
    if snapshot:
        params["snapshot"] = "true"
    return params


def _config(base_url: str | None, api_key: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    url = (base_url or os.environ.get("KUBETASK_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("KUBETASK_API_KEY")
    bearer = token if token is not None else os.environ.get("KUBETASK_TOKEN")
    # The SDK speaks kubetask's own dialect, whatever profile the API key pins.
    headers = {"Accept": "application/json", "User-Agent": "kubetask-sdk", "X-Compat-Profile": "canonical"}
    if key:
        headers["X-API-Key"] = key
    elif bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return url, headers


def _task_body(body: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(body or {})
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def _list_params(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _decode(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        raise error_for(response.status_code, body, dict(response.headers))
    if not response.content:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


class _Base:
    prefix = "/api/v1"

    def _path(self, path: str) -> str:
        return f"{self.prefix}{path}"


class KubetaskClient(_Base):
    """Synchronous client."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, token: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        url, headers = _config(base_url, api_key, token)
        self.base_url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KubetaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, self._path(path), **kwargs)
        except httpx.TransportError as error:
            raise ServiceUnavailable(503, message=f"cannot reach {self.base_url}: {error}") from error
        return _decode(response)

    # ---------------------------------------------------------------- tasks

    def submit(self, body: Mapping[str, Any] | None = None, **fields: Any) -> Task:
        """Create a task; ``body`` and/or keyword fields in any seed dialect."""
        return Task.model_validate(self._call("POST", "/tasks", json=_task_body(body, fields)))

    create_task = submit

    def get(self, task_id: str) -> Task:
        return Task.model_validate(self._call("GET", f"/tasks/{task_id}"))

    get_task = get

    def list(self, *, status: str | None = None, limit: int | None = None, offset: int | None = None,
             **filters: Any) -> TaskPage:
        params = _list_params(status=status, limit=limit, offset=offset, **filters)
        return TaskPage.model_validate(self._call("GET", "/tasks", params=params))

    def iter_tasks(self, page_size: int = 200, **filters: Any) -> Iterator[Task]:
        offset = 0
        while True:
            page = self.list(limit=page_size, offset=offset, **filters)
            yield from page.tasks
            offset += len(page.tasks)
            if not page.tasks or offset >= page.total:
                return

    def cancel(self, task_id: str) -> Cancellation:
        return Cancellation.model_validate(self._call("DELETE", f"/tasks/{task_id}"))

    def set_priority(self, task_id: str, priority: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"/tasks/{task_id}/priority", params={"priority": priority})
        return result

    def update(self, task_id: str, **fields: Any) -> Task:
        return Task.model_validate(self._call("PATCH", f"/tasks/{task_id}", json=fields))

    def replay(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/tasks/{task_id}/replay")
        return result

    def execute(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/tasks/{task_id}/execute")
        return result

    def executions(self, task_id: str) -> builtins.list[dict[str, Any]]:
        return builtins.list(self._call("GET", f"/tasks/{task_id}/executions")["executions"])

    def timeline(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/tasks/{task_id}/timeline")
        return result

    def logs(self, task_id: str, *, tail: int | None = None) -> str:
        return str(self._call("GET", f"/tasks/{task_id}/logs", params=_list_params(tail=tail)) or "")

    def follow_logs(self, task_id: str, *, tail: int | None = None) -> Iterator[str]:
        params = _list_params(tail=tail, follow="true")
        with self._http.stream("GET", self._path(f"/tasks/{task_id}/logs"), params=params,
                               timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                _decode(response)
            yield from response.iter_text()

    def wait(self, task_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
             on_progress: ProgressCallback | None = None) -> Task:
        """Poll until the task is completed, failed or cancelled; ``on_progress(task)`` on every change."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            task = self.get(task_id)
            state = (task.status, task.queue_position, task.waiting_reason, task.started_at)
            if on_progress is not None and state != last:
                on_progress(task)
            last = state
            if task.done:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(408, {"detail": f"task {task_id} still {task.status} after {timeout} s",
                                        "code": "WAIT_TIMEOUT"})
            time.sleep(poll_interval)

    def watch(self, task_id: str | None = None, *, status: str | None = None, tag: str | None = None,
              template: str | None = None, ids: Iterable[str] | None = None, snapshot: bool = True,
              last_event_id: str | None = None, until_done: bool | None = None,
              timeout: float | None = None) -> Iterator[TaskEvent]:
        """Live updates from the server's SSE stream (no polling): one task (``task_id``) or every task of yours
        matching the filters. Reconnects with ``Last-Event-ID`` after a dropped connection or an overflow, so
        nothing is lost inside the server's window; past it a ``reset`` event says so. ``until_done`` (default:
        when following one task) ends the iteration once that task is completed, failed or cancelled."""
        path = f"/tasks/{task_id}/events" if task_id else "/tasks/events"
        params = {} if task_id else _watch_params(status, tag, template, ids, snapshot)
        stop_when_done = bool(task_id) if until_done is None else until_done
        deadline = None if timeout is None else time.monotonic() + timeout
        last = last_event_id
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            read = None if deadline is None else max(0.1, deadline - time.monotonic())
            try:
                with self._http.stream("GET", self._path(path), params=params, headers=headers,
                                       timeout=httpx.Timeout(30.0, read=read)) as response:
                    if response.status_code >= 400:
                        response.read()
                        _decode(response)
                    for kind, data, event_id in _sse_events(response.iter_lines()):
                        last = event_id or last
                        if kind == "ready" or kind == "message":
                            continue
                        if kind == "overflow":
                            break  # read on from where this client was, with Last-Event-ID
                        if kind == "reset":
                            yield TaskEvent(kind, event_id, detail=json.loads(data).get("detail"))
                            continue
                        task = Task.model_validate(json.loads(data))
                        yield TaskEvent(kind, event_id, task)
                        if stop_when_done and task.done:
                            return
                        if task_id and kind == "deleted":
                            return
            except httpx.TimeoutException:
                pass
            except httpx.TransportError as error:
                if deadline is None and not last:
                    raise ServiceUnavailable(503, message=f"cannot reach {self.base_url}: {error}") from error
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(408, {"detail": f"no end of {task_id or 'the stream'} within {timeout} s",
                                        "code": "WAIT_TIMEOUT"})
            time.sleep(RECONNECT_SECONDS if deadline is None else min(RECONNECT_SECONDS,
                                                                       max(0.0, deadline - time.monotonic())))

    def queue_status(self) -> QueueStatus:
        return QueueStatus.model_validate(self._call("GET", "/tasks/queue-status"))

    def limits(self, user: str = "me") -> UserLimits:
        return UserLimits.model_validate(self._call("GET", f"/users/{user}/limits"))

    def set_limits(self, user: str, **limits: Any) -> UserLimits:
        return UserLimits.model_validate(self._call("PATCH", f"/users/{user}/limits", json=limits))

    # ---------------------------------------------------------------- templates

    def templates(self) -> builtins.list[Template]:
        return [Template.model_validate(t) for t in self._call("GET", "/templates")]

    def template(self, name: str) -> Template:
        return Template.model_validate(self._call("GET", f"/templates/{name}"))

    def validate_template(self, name: str, parameters: Mapping[str, Any]) -> Validation:
        return Validation.model_validate(self._call("POST", "/templates/validate",
                                                    params={"template_name": name}, json=dict(parameters)))

    def health(self) -> dict[str, Any]:
        try:
            response = self._http.get(self._path("/health"))
        except httpx.TransportError as error:
            raise ServiceUnavailable(503, message=f"cannot reach {self.base_url}: {error}") from error
        result: dict[str, Any] = response.json()
        return result


class AsyncKubetaskClient(_Base):
    """Asynchronous client (same methods, awaited)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, token: str | None = None,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        url, headers = _config(base_url, api_key, token)
        self.base_url = url
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKubetaskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, self._path(path), **kwargs)
        except httpx.TransportError as error:
            raise ServiceUnavailable(503, message=f"cannot reach {self.base_url}: {error}") from error
        return _decode(response)

    async def submit(self, body: Mapping[str, Any] | None = None, **fields: Any) -> Task:
        return Task.model_validate(await self._call("POST", "/tasks", json=_task_body(body, fields)))

    create_task = submit

    async def get(self, task_id: str) -> Task:
        return Task.model_validate(await self._call("GET", f"/tasks/{task_id}"))

    get_task = get

    async def list(self, *, status: str | None = None, limit: int | None = None, offset: int | None = None,
                   **filters: Any) -> TaskPage:
        params = _list_params(status=status, limit=limit, offset=offset, **filters)
        return TaskPage.model_validate(await self._call("GET", "/tasks", params=params))

    async def cancel(self, task_id: str) -> Cancellation:
        return Cancellation.model_validate(await self._call("DELETE", f"/tasks/{task_id}"))

    async def set_priority(self, task_id: str, priority: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PATCH", f"/tasks/{task_id}/priority",
                                                  params={"priority": priority})
        return result

    async def replay(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/tasks/{task_id}/replay")
        return result

    async def logs(self, task_id: str, *, tail: int | None = None) -> str:
        return str(await self._call("GET", f"/tasks/{task_id}/logs", params=_list_params(tail=tail)) or "")

    async def follow_logs(self, task_id: str, *, tail: int | None = None) -> AsyncIterator[str]:
        params = _list_params(tail=tail, follow="true")
        async with self._http.stream("GET", self._path(f"/tasks/{task_id}/logs"), params=params,
                                     timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                _decode(response)
            async for text in response.aiter_text():
                yield text

    async def wait(self, task_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,  # noqa: ASYNC109
                   on_progress: Callable[[Task], Any | Awaitable[Any]] | None = None) -> Task:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            task = await self.get(task_id)
            state = (task.status, task.queue_position, task.waiting_reason, task.started_at)
            if on_progress is not None and state != last:
                outcome = on_progress(task)
                if asyncio.iscoroutine(outcome):
                    await outcome
            last = state
            if task.done:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(408, {"detail": f"task {task_id} still {task.status} after {timeout} s",
                                        "code": "WAIT_TIMEOUT"})
            await asyncio.sleep(poll_interval)

    async def watch(self, task_id: str | None = None, *, status: str | None = None, tag: str | None = None,
                    template: str | None = None, ids: Iterable[str] | None = None, snapshot: bool = True,
                    last_event_id: str | None = None, until_done: bool | None = None) -> AsyncIterator[TaskEvent]:
        """:meth:`KubetaskClient.watch`, asynchronously (reconnects with ``Last-Event-ID``)."""
        path = f"/tasks/{task_id}/events" if task_id else "/tasks/events"
        params = {} if task_id else _watch_params(status, tag, template, ids, snapshot)
        stop_when_done = bool(task_id) if until_done is None else until_done
        last = last_event_id
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            parser = _SSEParser()
            try:
                async with self._http.stream("GET", self._path(path), params=params, headers=headers,
                                             timeout=httpx.Timeout(30.0, read=None)) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _decode(response)
                    async for line in response.aiter_lines():
                        parsed = parser.feed(line)
                        if parsed is None:
                            continue
                        kind, data, event_id = parsed
                        last = event_id or last
                        if kind in ("ready", "message"):
                            continue
                        if kind == "overflow":
                            break
                        if kind == "reset":
                            yield TaskEvent(kind, event_id, detail=json.loads(data).get("detail"))
                            continue
                        task = Task.model_validate(json.loads(data))
                        yield TaskEvent(kind, event_id, task)
                        if (stop_when_done and task.done) or (task_id and kind == "deleted"):
                            return
            except httpx.TransportError as error:
                if not last:
                    raise ServiceUnavailable(503, message=f"cannot reach {self.base_url}: {error}") from error
            await asyncio.sleep(RECONNECT_SECONDS)

    async def queue_status(self) -> QueueStatus:
        return QueueStatus.model_validate(await self._call("GET", "/tasks/queue-status"))

    async def limits(self, user: str = "me") -> UserLimits:
        return UserLimits.model_validate(await self._call("GET", f"/users/{user}/limits"))

    async def templates(self) -> builtins.list[Template]:
        return [Template.model_validate(t) for t in await self._call("GET", "/templates")]

    async def template(self, name: str) -> Template:
        return Template.model_validate(await self._call("GET", f"/templates/{name}"))


__all__ = ["AsyncKubetaskClient", "KubetaskClient", "KubetaskError", "TaskEvent"]
