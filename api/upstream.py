"""Whether the apiserver answers: a probe loop plus the outcomes of the API's own calls.

While the apiserver is unreachable or hangs (stopped, overloaded, partitioned), the API keeps serving what it
can from its watch caches instead of hanging its clients:

* writes are refused at once with 503 ``SERVICE_UNAVAILABLE`` and ``Retry-After`` (:func:`unavailable`),
  without sending anything: a request sent to a stopped apiserver waits in its socket and is executed when
  it resumes, long after the client gave up;
* reads are answered from the caches and marked stale (:data:`STALE_HEADERS`);
* ``/health`` answers from the last probe, at once.

The probe is ``GET /version`` (readable by any authenticated client) every
``ApiSettings.apiserver_probe_interval_seconds``; a call of the API that times out or cannot connect marks the
apiserver down at once, and the next successful probe (or watch event) marks it up again: recovery needs
nobody.

A busy API is not a down apiserver: under load the probe (and any call) can miss its deadline while it waits
for one of the client's pooled connections or for the event loop. So a failure only counts while the watch
caches have received nothing for :attr:`ApiserverMonitor.grace` seconds; a stopped apiserver sends nothing,
a loaded one keeps streaming events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from kubetask.core.rest.errors import RestError
from kubetask.kube.client import KubeClient

log = logging.getLogger(__name__)

PROBE_TIMEOUT_CAP = 2.0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STALE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"warning", b'110 - "Response is Stale"'),
    (b"x-kubetask-stale", b"true"),
)
"""Headers of a read answered from the watch caches while the apiserver does not answer (RFC 7234 §5.5.1)."""


class ApiserverMonitor:
    """Up or down, why, and since when; see the module docstring."""

    def __init__(self, client: KubeClient, *, interval: float, timeout: float, retry_after: int,
                 activity: Callable[[], int] = lambda: 0) -> None:
        self.client = client
        self.interval = interval
        self.timeout = min(timeout, PROBE_TIMEOUT_CAP)
        self.retry_after = retry_after
        self.activity = activity
        """A counter that grows with every watch event received (the informers')."""
        self.grace = max(2 * interval, self.timeout) + 1.0
        self.down_since: float | None = None
        self.reason = "not checked yet"
        self.checked_at = 0.0
        self.outages = 0
        self._seen = activity()
        self._seen_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def _heard_lately(self) -> bool:
        """Whether a watch event arrived within :attr:`grace` (sampled here and on every probe)."""
        now = time.monotonic()
        count = self.activity()
        if count != self._seen:
            self._seen, self._seen_at = count, now
            if self.down_since is not None and self._seen_at > self.down_since:
                self.succeeded()  # events flow again: it answers
        return now - self._seen_at < self.grace

    def failed(self, reason: str) -> None:
        """A call failed for want of an answer; counts only if the watches have been silent too."""
        if self._heard_lately():
            log.info("a Kubernetes API call failed (%s) while watch events still arrive: busy, not down", reason)
            return
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("the Kubernetes API does not answer (%s): refusing writes, serving stale reads", reason)
        self.reason = reason

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("the Kubernetes API answers again after %.1f s", time.monotonic() - self.down_since)
        self.down_since = None
        self.reason = "healthy"

    async def probe(self) -> bool:
        self._heard_lately()
        try:
            await self.client.request("GET", "/version", request_timeout=self.timeout)
        except Exception as error:  # any failure means: not answering as it should
            self.failed(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        else:
            self.succeeded()
        self.checked_at = time.monotonic()
        return not self.down

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.probe()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="apiserver-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def unavailable(self, detail: str | None = None) -> RestError:
        """The 503 of a write the apiserver cannot take now."""
        return RestError(503, "SERVICE_UNAVAILABLE",
                         detail or f"the Kubernetes API is unreachable ({self.reason}); nothing was changed: "
                                   f"retry in {self.retry_after} s",
                         headers={"Retry-After": str(self.retry_after)})
