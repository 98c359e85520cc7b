"""The one Kubernetes client layer shared by the operator and the API.

It speaks plain dicts over one aiohttp session: kubetask's objects are custom
resources, and a generated client's model classes would only add conversions
(and, for kubernetes_asyncio, ~60 MB of imported code per process; see
:mod:`kubetask.kube.config` for where the connection comes from).
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, cast

import aiohttp
from multidict import CIMultiDict

from kubetask import GROUP, VERSION
from kubetask.core import jsonwire
from kubetask.core.objects import Obj
from kubetask.kube.config import ClusterAccess, Credentials, load_access
from kubetask.kube.wire import Shape

log = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True)
class Resource:
    """An API resource: where its objects live in the REST path space."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


TASKS = Resource(GROUP, VERSION, "tasks", "Task")
TASK_TEMPLATES = Resource(GROUP, VERSION, "tasktemplates", "TaskTemplate", namespaced=False)
TENANTS = Resource(GROUP, VERSION, "tenants", "Tenant", namespaced=False)
JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
EVENTS = Resource("", "v1", "events", "Event")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
RESOURCE_QUOTAS = Resource("", "v1", "resourcequotas", "ResourceQuota")
LIMIT_RANGES = Resource("", "v1", "limitranges", "LimitRange")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)


class ApiError(Exception):
    """A non-2xx answer from the apiserver, carrying its ``Status`` object."""

    def __init__(self, status: int, body: Mapping[str, Any] | str) -> None:
        self.status = status
        self.body: Mapping[str, Any] = body if isinstance(body, Mapping) else {"message": body}
        self.reason: str = str(self.body.get("reason", ""))
        self.message: str = str(self.body.get("message", body))
        super().__init__(f"{status} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        return self.status in (409, 429, 500, 502, 503, 504) and not self.already_exists


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Turn a non-2xx answer into :class:`ApiError`, carrying the apiserver's ``Status`` when it sent one."""
    if response.status < 400:
        return
    data = await response.read()
    try:
        payload: Any = jsonwire.loads(data)
    except ValueError:
        payload = data.decode("utf-8", errors="replace")
    raise ApiError(response.status, payload)


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The non-empty lines of a stream, however long.

    A watch sends one object per line, and a Task may carry a 1 MiB script: longer than
    aiohttp's line limit (its ``readline`` raises "Line is too long"), so lines are cut here.
    """
    pending = bytearray()
    async for chunk in stream.iter_any():
        start = 0
        end = chunk.find(b"\n")
        if end >= 0 and pending:
            pending += chunk[:end]
            if pending.strip():
                yield bytes(pending)
            pending.clear()
            start = end + 1
            end = chunk.find(b"\n", start)
        while end >= 0:
            line = chunk[start:end]
            if line.strip():
                yield line
            start = end + 1
            end = chunk.find(b"\n", start)
        pending += chunk[start:]
    if pending.strip():
        yield bytes(pending)


def needs_env_lookups() -> bool:
    """Whether aiohttp's per-request proxy/netrc lookups (``trust_env``) could find anything here.

    With ``trust_env`` every apiserver call first reads ``~/.netrc`` and the proxy variables in worker
    threads: two thread hops per call, and in a busy process each hop waits for the GIL (it was the main cost
    of ``POST /tasks`` in ``bench/api_latency.py``). With no proxy variable and no netrc file both lookups
    return nothing, so they are switched on only when one exists.
    """
    if urllib.request.getproxies() or os.environ.get("NETRC"):
        return True
    home = Path.home()
    return (home / ".netrc").exists() or (home / "_netrc").exists()


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_body(body: Any) -> bytes | None:
    """A request body on the wire: JSON unless it is bytes or text already."""
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return jsonwire.dumps(body, default=_json_default)


DEFAULT_REQUEST_TIMEOUT = 30.0
"""How long (seconds) one apiserver request that names no timeout may go without hearing from the apiserver:
connecting, and then between two reads of the answer. No call waits forever on an apiserver that accepts
connections but does not answer (stopped, overloaded, a half-open connection). Time spent waiting for a free
pooled connection does not count (a busy client is not a dead server); the whole request is still capped at
:data:`TOTAL_TIMEOUT_FACTOR` times it."""

TOTAL_TIMEOUT_FACTOR = 6

CONNECT_TIMEOUT = 10.0
"""Deadline of connecting (TCP and TLS) for the long-lived requests (watches, followed logs), which have no
total deadline."""

MAX_CONNECTIONS = 32
"""Connections of one client to the apiserver.  Each TLS connection holds a 256 KiB read buffer
(asyncio's), so a pool of 100 (aiohttp's default) would cost 25 MB per process once a burst has
opened them all, for no gain: the apiserver serializes the writes of one client well before that."""


class KubeClient:
    """Async dict-in/dict-out access to the apiserver."""

    def __init__(self, access: ClusterAccess, *, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.access = access
        self.credentials = Credentials(access)
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        """The silence deadline of every request that names none; see :data:`DEFAULT_REQUEST_TIMEOUT`."""
        self._session: aiohttp.ClientSession | None = None
        self._ssl = access.ssl_context()
        self._fixed_headers = access.fixed_headers()

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None, *,
                      max_connections: int = MAX_CONNECTIONS,
                      request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> KubeClient:
        """A client for the cluster :func:`~kubetask.kube.config.load_access` finds, with at most
        ``max_connections`` connections to it (watches included; requests beyond it wait for a free one) and
        ``request_timeout`` seconds as the deadline of each request."""
        return cls(load_access(kubeconfig, context), max_connections=max_connections,
                   request_timeout=request_timeout)

    @property
    def host(self) -> str:
        return self.access.server

    def _open_session(self) -> aiohttp.ClientSession:
        # Opened on first use, inside the event loop that will run the requests.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections,
                                             ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=needs_env_lookups())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: float | aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        params = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items()
                  if v is not None]
        if request_timeout is None:
            request_timeout = aiohttp.ClientTimeout(total=self.request_timeout * TOTAL_TIMEOUT_FACTOR,
                                                    sock_connect=min(self.request_timeout, CONNECT_TIMEOUT),
                                                    sock_read=self.request_timeout)
        elif not isinstance(request_timeout, aiohttp.ClientTimeout):
            request_timeout = aiohttp.ClientTimeout(total=request_timeout)  # a named deadline caps the whole call
        data = encode_body(body)
        session = self._open_session()
        async def attempt() -> aiohttp.ClientResponse:
            headers: CIMultiDict[str] = CIMultiDict(self._fixed_headers)
            headers["Accept"] = "application/json"
            if data is not None:
                headers["Content-Type"] = content_type
            authorization = await self.credentials.authorization()
            if authorization:
                headers["Authorization"] = authorization
            return await session.request(
                method, self.access.server + path, params=params, data=data, headers=headers,
                timeout=request_timeout, proxy=self.access.proxy_url,
                server_hostname=self.access.tls_server_name)

        response = await attempt()
        if response.status == 401 and self.credentials.renewable:
            # A rotated token file or an expired exec credential: ask once more, then let the 401 through.
            response.release()
            self.credentials.invalidate()
            response = await attempt()
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: float | None = None,
        decode: Callable[[bytes], Any] = jsonwire.loads,
    ) -> Any:
        """One request; returns the decoded JSON body (``decode``: of a body that is not empty) or raises
        :class:`ApiError`."""
        response = await self._send(method, path, query=query, body=body, content_type=content_type,
                                    request_timeout=request_timeout)
        async with response:
            await _raise_for_status(response)
            data = await response.read()
            return decode(data) if data else None

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> Obj:
        return cast(Obj, await self.request("GET", resource.path(namespace, name)))

    async def get_or_none(self, resource: Resource, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.get(resource, name, namespace)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Obj:
        """One LIST (all pages), returned as a List object with ``items``."""
        items: list[Obj] = []
        async for page in self.list_pages(resource, namespace, label_selector=label_selector,
                                          field_selector=field_selector):
            items.extend(page.get("items") or [])
            last = page
        last["items"] = items
        return last

    async def list_pages(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
        shape: Shape | None = None,
    ) -> AsyncIterator[Obj]:
        """One LIST, page by page (one consistent snapshot): a reader that keeps little of each object
        holds only one page of whole objects at a time (``shape``: only the fields it names)."""
        cont: str | None = None
        while True:
            page = await self.request("GET", resource.path(namespace), query={
                "labelSelector": label_selector, "fieldSelector": field_selector,
                "limit": limit, "continue": cont,
            }, decode=shape.page if shape is not None else jsonwire.loads)
            cont = (page.get("metadata") or {}).get("continue")
            yield cast(Obj, page)
            if not cont:
                return

    async def create(self, resource: Resource, body: Obj, namespace: str | None = None) -> Obj:
        return cast(Obj, await self.request("POST", resource.path(namespace), body=body))

    async def replace(self, resource: Resource, body: Obj, namespace: str | None = None) -> Obj:
        name = body["metadata"]["name"]
        return cast(Obj, await self.request("PUT", resource.path(namespace, name), body=body))

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> Obj:
        return cast(Obj, await self.request(
            "PATCH", resource.path(namespace, name, subresource), body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        ))

    async def patch_status(self, resource: Resource, name: str, patch: Any, namespace: str | None = None) -> Obj:
        return await self.patch(resource, name, patch, namespace, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
        missing_ok: bool = True,
    ) -> Obj | None:
        try:
            return cast(Obj, await self.request(
                "DELETE", resource.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            ))
        except ApiError as error:
            if missing_ok and error.not_found:
                return None
            raise

    async def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
        field_selector: str | None = None,
        shape: Shape | None = None,
    ) -> AsyncIterator[Obj]:
        """Yield raw watch events (``{"type", "object"}``) until the server closes the stream (``shape``: with
        only the fields it names)."""
        decode = shape.event if shape is not None else jsonwire.loads
        response = await self._send("GET", resource.path(namespace), query={
            "watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds, "labelSelector": label_selector, "fieldSelector": field_selector,
        }, request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                              sock_read=timeout_seconds + 30))
        async with response:
            await _raise_for_status(response)
            async for line in _lines(response.content):
                yield cast(Obj, decode(line))

    async def pod_logs(
        self, name: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None
    ) -> str:
        response = await self._send("GET", PODS.path(namespace, name, "log"), query={
            "container": container, "tailLines": tail_lines,
        })
        async with response:
            await _raise_for_status(response)
            return await response.text()

    async def stream_pod_logs(
        self, name: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None
    ) -> AsyncIterator[bytes]:
        """Follow a pod's log (``follow=true``) chunk by chunk until the container ends."""
        response = await self._send("GET", PODS.path(namespace, name, "log"), query={
            "container": container, "tailLines": tail_lines, "follow": "true",
        }, request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        async with response:
            await _raise_for_status(response)
            async for chunk in response.content.iter_any():
                yield chunk

    async def create_event(
        self,
        involved: Obj,
        *,
        reason: str,
        message: str,
        event_type: Literal["Normal", "Warning"] = "Normal",
        component: str = "kubetask",
    ) -> None:
        """Post a core/v1 Event about ``involved``; a failure to record it never fails the caller."""
        from kubetask.core.events import build_event

        meta = involved.get("metadata", {})
        body = build_event(involved, reason=reason, message=message, event_type=event_type, component=component)
        try:
            await self.create(EVENTS, body, namespace=meta.get("namespace") or "default")
        except (ApiError, aiohttp.ClientError) as error:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), error)
