"""Serving the app: ``serve_api`` (uvicorn, programmatic) and ``run_api_in_thread`` for tests and ``kubetask dev``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from kubetask.api.app import create_app
from kubetask.kube.memory import small_tls_read_buffers
from kubetask.settings import ApiSettings, KubeSettings

log = logging.getLogger(__name__)


# The API keeps every Task in memory (the watch cache), so CPython's default collector thresholds (700, 10, 10)
# cost it dearly: each young collection promotes the temporaries of the requests in flight, and a full
# collection (which walks the whole cache: 100-450 ms with 10-20k tasks) follows whenever a quarter of the
# long-lived objects is new.  With these, bench/api_latency.py's API process spends ~0.2 s instead of ~2 s of
# a run in the collector, without a full collection.  Only set when the API owns the process (main thread).
SERVER_GC_THRESHOLDS = (20_000, 20, 20)


@contextlib.contextmanager
def server_gc_thresholds() -> Iterator[None]:
    """:data:`SERVER_GC_THRESHOLDS` while serving from the main thread (``kubetask api``); unchanged in a thread
    of another process (``kubetask dev``, tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = gc.get_threshold()
    gc.set_threshold(*SERVER_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every small response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve_api(
    settings: ApiSettings,
    kube: KubeSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: threading.Event | None = None,
    sock: socket.socket | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the API with uvicorn until ``stop`` is set (or the process is told to stop)."""
    small_tls_read_buffers()  # its watches of the apiserver are TLS connections too
    app = create_app(settings, kube)
    # httptools parses HTTP in C; uvicorn's pure-Python h11 cost ~20 % more API CPU per request (bench/api_latency.py).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, http="httptools",
                            lifespan="on", access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    sock = sock or _bind(settings.host, settings.port)

    async def watch_stop() -> None:
        if stop is None:
            return
        await stop.wait()
        server.should_exit = True

    async def signal_ready() -> None:
        while not server.started and not server.should_exit:  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.02)
        if ready is not None:
            ready.set()

    stopper = asyncio.create_task(watch_stop())
    readier = asyncio.create_task(signal_ready())
    try:
        with server_gc_thresholds():
            await server.serve(sockets=[sock])
    finally:
        stopper.cancel()
        readier.cancel()
        for task in (stopper, readier):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


@dataclass
class ApiHandle:
    """A running API server in a background thread."""

    url: str
    thread: threading.Thread
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    error: list[BaseException] = field(default_factory=list)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout)

    def __enter__(self) -> ApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_api_in_thread(
    settings: ApiSettings, kube: KubeSettings, *, timeout: float = 30.0, log_level: str = "warning"
) -> ApiHandle:
    """Start the API in a daemon thread with its own event loop; returns once it accepts requests.

    ``settings.port = 0`` picks a free port; the handle's ``url`` has the real one.
    """
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    ready = threading.Event()
    handle = ApiHandle(url=f"http://{host}:{port}", thread=threading.Thread())

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        handle._loop, handle._stop = loop, stop
        try:
            loop.run_until_complete(serve_api(settings, kube, stop=stop, ready=ready, sock=sock,
                                              log_level=log_level))
        except BaseException as error:
            handle.error.append(error)
            log.exception("kubetask API thread failed")
        finally:
            ready.set()
            loop.close()

    handle.thread = threading.Thread(target=run, name="kubetask-api", daemon=True)
    handle.thread.start()
    if not ready.wait(timeout):
        handle.stop()
        raise TimeoutError(f"the API did not start within {timeout} s")
    if handle.error:
        raise RuntimeError("the API failed to start") from handle.error[0]
    return handle
