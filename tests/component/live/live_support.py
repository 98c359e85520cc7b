"""Helpers of the live-update and webhook tests: an SSE reader on a thread, and the stack with webhook settings.

The stack is kt_api_support's (tests/component/api): the session's real control plane, the tenants alice, bob
and root, the real API over HTTP and, with ``with_operator``, the real operator, which delivers webhooks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from kt_api_support import ADMIN_KEY, ALICE_KEY, BOB_KEY, ROOMY, Stack, _start_stack
from kt_support import wait_until

__all__ = ["ADMIN_KEY", "ALICE_KEY", "BOB_KEY", "ROOMY", "SSEReader", "Stack", "sim", "start_stack", "wait_until"]

WEBHOOK_ENV = {
    "KUBETASK_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',  # the test receivers listen on loopback
    "KUBETASK_WEBHOOK_BACKOFF_BASE_SECONDS": "0.5",
    "KUBETASK_WEBHOOK_BACKOFF_MAX_SECONDS": "2",
    "KUBETASK_WEBHOOK_RETRY_HORIZON_SECONDS": "600",
}


def start_stack(cluster: Any, tmp_path: Path, *, with_operator: bool, env: dict[str, str] | None = None,
                ) -> Iterator[Stack]:
    """kt_api_support's stack with ``env`` set while it runs (settings are read from the environment)."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        yield from _start_stack(cluster, tmp_path, with_operator=with_operator, tenant_limits=ROOMY)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sim(seconds: float = 1, exit_code: int = 0, **extra: str) -> dict[str, str]:
    """Pod annotations the kwok nodes act on (README: What the fake GPU nodes do)."""
    out = {"kubetask.dev/sim-duration-seconds": str(seconds), "kubetask.dev/sim-exit-code": str(exit_code)}
    out.update(extra)
    return out




@dataclass
class Event:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEReader:
    """Reads ``text/event-stream`` from ``url`` on a thread; events land in a queue (no polling of anything)."""

    url: str
    headers: dict[str, str]
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    comments: int = 0
    error: BaseException | None = None
    body: str = ""

    def __post_init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise AssertionError(f"no answer from {self.url}")

    def _run(self) -> None:
        try:
            parts = urlsplit(self.url)
            self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
            self._conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                               headers={"Accept": "text/event-stream", **self.headers})
            response = self._conn.getresponse()
            if response.status != 200:
                self.body = response.read().decode()
            self.status = response.status
            self._started.set()
            if response.status != 200:
                return
            event, data, event_id = "message", [], None
            while True:
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.put(Event(event, "\n".join(data), event_id))
                    event, data, event_id = "message", [], None
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
        except BaseException as error:  # closed by the test, or the server ended the stream
            self.error = error
        finally:
            self._started.set()
            self.ended.set()

    def next(self, timeout: float = 60.0) -> Event:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s from {self.url}") from None

    def until(self, predicate: Callable[[Event], bool], timeout: float = 90.0) -> list[Event]:
        """Every event up to and including the first that satisfies ``predicate``."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                summary = [(e.event, e.data[:80]) for e in seen]
                raise AssertionError(f"no matching event within {timeout} s; saw {summary}")
            event = self.next(left)
            seen.append(event)
            if predicate(event):
                return seen

    def drain(self, quiet: float = 0.5) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                out.append(self.events.get(timeout=quiet))
            except queue.Empty:
                return out

    def close(self) -> None:
        """Hang up for real (the server must see the client go)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(5)

    def __enter__(self) -> SSEReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class OwnApi:
    """The real app served by uvicorn on this process's own thread, keeping the app at hand (its live hub)."""

    app: Any
    url: str
    loop: Any
    stop: Any
    thread: threading.Thread
    restore: Callable[[], None]

    def hub(self) -> Any:
        return self.app.state.kubetask.extra["live"]

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's event loop (as the watch cache's own callbacks run) and wait for it."""
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()
        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        self.restore()


def serve_own_api(kubeconfig: Path, env: dict[str, str]) -> OwnApi:
    import asyncio

    import uvicorn

    from kubetask.api.app import create_app
    from kubetask.api.server import _bind
    from kubetask.settings import ApiSettings, KubeSettings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # read by the lifespan; restored by close()

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    app = create_app(ApiSettings(host="127.0.0.1", port=0), KubeSettings(kubeconfig=str(kubeconfig)))
    sock = _bind("127.0.0.1", 0)
    holder: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
        stop = asyncio.Event()
        holder.update(loop=loop, stop=stop)

        async def main() -> None:
            async def stopper() -> None:
                await stop.wait()
                server.should_exit = True
            task = asyncio.create_task(stopper())
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
                await asyncio.sleep(0.02)
            started.set()
            await serving
            task.cancel()
        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    # the env was read when the app was created; the hub exists once the lifespan ran
    return OwnApi(app, f"http://127.0.0.1:{sock.getsockname()[1]}", holder["loop"], holder["stop"], thread, restore)
