"""Publish every Tenant's API-key digests into one Secret in the release namespace (see :mod:`kubetask.core.access`).

The API reads that Secret only, so it needs no Secret grant anywhere else.  Inputs:

* Tenants: the operator's Tenant store (``spec.apiKeys`` and ``role``);
* key Secrets labelled ``kubetask.io/api-key=true``: a watch of their own, so rotating a key (a new
  digest in its Secret) or deleting it is republished within one event;
* key Secrets without the label: read by name when a Tenant references them, and re-read every
  ``api_keys_resync_seconds`` (nothing watches them).

Changes are coalesced: a burst of events is one write, and a write happens only if the published
data differs.  Only the leader runs this (the whole operator waits for the Lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import kopf

from kubetask.core.access import API_KEY_SELECTOR, build_key_secret, collect_keys, key_refs, key_secret_patch
from kubetask.core.objects import Obj
from kubetask.kube.cache import Informer
from kubetask.kube.client import SECRETS, ApiError
from kubetask.kube.lean import without_managed_fields
from kubetask.operator.state import State

log = logging.getLogger("kubetask.operator.access")

COALESCE_SECONDS = 0.05
RETRY_SECONDS = 2.0


class KeyPublisher:
    def __init__(self, state: State) -> None:
        self.state = state
        settings = state.settings
        if not settings.api_keys_secret_namespace:
            raise ValueError("publishing API-key digests needs api_keys_secret_namespace")
        self.namespace: str = settings.api_keys_secret_namespace
        self.name = settings.api_keys_secret_name
        self.secrets = Informer(state.client, SECRETS, label_selector=API_KEY_SELECTOR,
                                transform=without_managed_fields, stamps=False)
        self._unlabelled: dict[tuple[str, str], Obj | None] = {}
        self._dirty = asyncio.Event()
        self._unsubscribe = [state.tenants.subscribe(self._changed), self.secrets.subscribe(self._changed)]
        self.published: dict[str, Any] | None = None
        """The data last written (or found already right)."""
        self.writes = 0

    def _changed(self, *_: Any) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        self.secrets.start()
        try:
            await self.secrets.wait_synced()
            await self.state.tenants.wait_synced()
            next_resync = time.monotonic() + self.state.settings.api_keys_resync_seconds
            self._dirty.set()
            while not stop.is_set():
                timeout = max(0.0, next_resync - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), timeout=timeout)
                resync = time.monotonic() >= next_resync
                if resync:
                    self._unlabelled.clear()
                    next_resync = time.monotonic() + self.state.settings.api_keys_resync_seconds
                await asyncio.sleep(COALESCE_SECONDS)
                self._dirty.clear()
                try:
                    await self.publish(check=resync)
                except ApiError as error:
                    log.warning("cannot publish API-key digests to %s/%s: %s", self.namespace, self.name, error)
                    await asyncio.sleep(RETRY_SECONDS)
                    self._dirty.set()
        finally:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            await self.secrets.stop()

    async def _fetch_unlabelled(self) -> None:
        """GET each referenced key Secret the watch does not hold (once per resync period)."""
        for tenant in self.state.tenants.list():
            for ref in key_refs(tenant, self.state.settings.tenant_namespace_prefix):
                key = (ref.namespace, ref.name)
                if self.secrets.get(ref.name, ref.namespace) is not None or key in self._unlabelled:
                    continue
                try:
                    self._unlabelled[key] = await self.state.client.get_or_none(SECRETS, ref.name, ref.namespace)
                except ApiError as error:
                    log.warning("cannot read the API-key Secret %s/%s of tenant %s: %s", ref.namespace, ref.name,
                                ref.tenant, error)

    def _secret(self, namespace: str, name: str) -> Obj | None:
        return self.secrets.get(name, namespace) or self._unlabelled.get((namespace, name))

    async def publish(self, *, check: bool = True) -> bool:
        """Write the digests if they changed; returns whether it wrote.

        Without ``check``, data equal to what this publisher last wrote is not re-read from the apiserver:
        Tenant status updates (usage, many a second) wake it up too, and must not each cost a GET.
        """
        await self._fetch_unlabelled()
        keys = collect_keys(self.state.tenants.list(), self._secret, prefix=self.state.settings.tenant_namespace_prefix)
        if keys.ambiguous:
            log.warning("API-key digests shared by several tenants are not published: %s", ", ".join(keys.ambiguous))
        desired = build_key_secret(keys.entries, name=self.name, namespace=self.namespace)
        if not check and desired["data"] == self.published:
            return False
        client = self.state.client
        current = await client.get_or_none(SECRETS, self.name, self.namespace)
        if current is None:
            try:
                await client.create(SECRETS, desired, self.namespace)
                self._wrote(desired)
                return True
            except ApiError as error:
                if not error.already_exists:
                    raise
                current = await client.get(SECRETS, self.name, self.namespace)
        patch = key_secret_patch(desired, current)
        if patch is None:
            self.published = desired["data"]
            return False
        await client.patch(SECRETS, self.name, patch, self.namespace)
        self._wrote(desired)
        return True

    def _wrote(self, desired: Obj) -> None:
        self.writes += 1
        self.published = desired["data"]
        log.info("published %d API-key digests to %s/%s", len(desired["data"]), self.namespace, self.name)


def register_key_publisher(registry: kopf.OperatorRegistry, state: State) -> None:
    """Run a :class:`KeyPublisher` for as long as Kopf runs (if the operator is told where to publish)."""
    if not state.settings.api_keys_secret_namespace:
        return
    running: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    @kopf.on.startup(registry=registry, id="publish-api-keys")
    async def start_key_publisher(**_: Any) -> None:
        running.append(asyncio.create_task(KeyPublisher(state).run(stop), name="kubetask-api-keys"))

    @kopf.on.cleanup(registry=registry, id="publish-api-keys")
    async def stop_key_publisher(**_: Any) -> None:
        stop.set()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
