"""``SimCluster``: the public facade that runs the simulated apiserver in a background thread."""

from __future__ import annotations

import asyncio
import base64
import copy
import secrets
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml
from aiohttp import web

from kubetask.sim.api import Ctx, Sim
from kubetask.sim.auth import SYSTEM, bootstrap_rbac
from kubetask.sim.controllers import Controllers
from kubetask.sim.errors import ApiError
from kubetask.sim.server import Server
from kubetask.sim.tls import self_signed, server_context

Obj = dict[str, Any]
T = TypeVar("T")

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class SimNode:
    """A simulated node. GPU nodes get the NVIDIA labels, allocatable and (by default) taint."""

    name: str
    gpus: int = 0
    gpu_product: str | None = None
    cpu: str = "32"
    memory: str = "256Gi"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] | None = None
    unschedulable: bool = False
    pods: str = "110"

    def to_object(self) -> Obj:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                  "type": "kwok-sim"}
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, "ephemeral-storage": "100Gi"}
        taints = self.taints
        if self.gpus:
            labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(self.gpus)})
            if self.gpu_product:
                labels["nvidia.com/gpu.product"] = self.gpu_product
            cap[GPU_RESOURCE] = str(self.gpus)
            if taints is None:
                taints = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
        labels.update(self.labels)
        spec: Obj = {"podCIDR": "10.244.0.0/24"}
        if taints:
            spec["taints"] = copy.deepcopy(taints)
        if self.unschedulable:
            spec["unschedulable"] = True
        cond = [{"type": t, "status": "False", "reason": f"Kubelet Has Sufficient {t}"} for t in
                ("MemoryPressure", "DiskPressure", "PIDPressure")]
        cond.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status"})
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": spec,
            "status": {
                "capacity": dict(cap), "allocatable": dict(cap), "conditions": cond,
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": self.name}],
                "nodeInfo": {"kubeletVersion": "v1.36.0", "kubeProxyVersion": "v1.36.0",
                             "containerRuntimeVersion": "containerd://2.0.0", "operatingSystem": "linux",
                             "architecture": "amd64", "osImage": "kubetask-sim", "kernelVersion": "6.0.0",
                             "machineID": "", "systemUUID": "", "bootID": ""},
            },
        }


class SimCluster:
    """A simulated Kubernetes cluster speaking real HTTP on 127.0.0.1.

    The apiserver, its controllers, the scheduler and a kubelet run in a background
    thread with their own event loop; all methods here are thread-safe. From inside a
    running event loop prefer the ``*_async`` variants so the caller's loop keeps serving
    (e.g. an admission webhook hosted in that loop).
    """

    def __init__(self, nodes: Iterable[SimNode] | None = None, port: int = 0, admin_token: str | None = None,
                 host: str = "127.0.0.1", https_port: int = 0) -> None:
        self.nodes = list(nodes) if nodes is not None else self.dev_nodes()
        self.port = port
        self.https_port = https_port
        # kubectl (client-go's clientcmd) never sends a bearer token over plain http, so the
        # sim also listens on HTTPS with a self-signed CA that kubeconfigs embed.
        self.ca_pem, self._key_pem = self_signed((host, "localhost"))
        self.host = host
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sim: Sim | None = None
        self.controllers: Controllers | None = None
        self.server: Server | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    @staticmethod
    def dev_nodes() -> list[SimNode]:
        """The default topology: two 4-GPU nodes (A100, H100) and a CPU node."""
        return [SimNode("gpu-node-1", gpus=4, gpu_product="A100"), SimNode("gpu-node-2", gpus=4, gpu_product="H100"),
                SimNode("cpu-node-1")]

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Plain-HTTP endpoint (bearer tokens work here for Python clients, not for kubectl)."""
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        """HTTPS endpoint, certificate in ``ca_pem``; what kubeconfigs use by default."""
        return f"https://{self.host}:{self.https_port}"

    def start(self) -> SimCluster:
        """Start the server and controllers; returns once the port is listening."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="kubetask-sim", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("sim cluster failed to start") from self._error
        return self

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced to start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        sim = self.sim = Sim()
        sim.authn.add_token(self.admin_token, "admin", ["system:masters"])
        self.controllers = Controllers(sim)
        self._bootstrap(sim)
        self.server = Server(sim, self.controllers)
        self._runner = web.AppRunner(self.server.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        tls_site = web.TCPSite(self._runner, self.host, self.https_port, reuse_address=True,
                               ssl_context=server_context(self.ca_pem, self._key_pem))
        await tls_site.start()
        sockets = getattr(tls_site._server, "sockets", None) or []
        if sockets:
            self.https_port = sockets[0].getsockname()[1]
        self.controllers.start()
        self._ready.set()
        await self._stopped.wait()
        sim.store.close_watchers()
        await self.controllers.stop()
        await sim.admission.close()
        await self._runner.cleanup()

    def _bootstrap(self, sim: Sim) -> None:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            sim.seed(("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for key, obj in bootstrap_rbac():
            sim.seed(key, obj)
        for n in self.nodes:
            sim.seed(("", "nodes"), n.to_object())
        sim.seed(("", "services"), {"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "kubernetes", "namespace": "default",
                                                 "labels": {"component": "apiserver", "provider": "kubernetes"}},
                                    "spec": {"clusterIP": "10.96.0.1", "ports": [
                                        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})

    def stop(self) -> None:
        """Shut down cleanly (idempotent)."""
        if self._thread is None or self.loop is None:
            return
        stopped = self._stopped
        if stopped is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(stopped.set)
        self._thread.join(15)
        self._thread = None

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ plumbing
    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("SimCluster is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("blocking SimCluster call from the sim's own loop; use the *_async variant")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _submit_async(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is None:
            coro.close()
            raise RuntimeError("SimCluster is not started")
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # ------------------------------------------------------------ public API
    def write_kubeconfig(self, path: str | Path, user: str = "admin", token: str | None = None,
                         namespace: str | None = None, tls: bool = True) -> Path:
        """Write a kubeconfig for kubectl / kubernetes / kubernetes_asyncio / kopf.

        ``tls=True`` (default) points at the HTTPS listener with the sim's CA embedded, which
        every client (kubectl included) authenticates against; ``tls=False`` uses plain http.
        """
        if token is None:
            if user == "admin":
                token = self.admin_token
            else:
                token = secrets.token_urlsafe(24)
                self.add_token(token, user, [])
        ctx: Obj = {"cluster": "kubetask-sim", "user": user}
        cluster: Obj = {"server": self.url}
        if tls:
            cluster = {"server": self.https_url,
                       "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
        if namespace:
            ctx["namespace"] = namespace
        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubetask-sim", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "kubetask-sim", "context": ctx}],
            "current-context": "kubetask-sim",
        }
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return p

    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> None:
        """Register a static bearer token (e.g. a "real user" for RBAC tests)."""
        if self.sim is None:
            raise RuntimeError("SimCluster is not started")
        # A single dict assignment: atomic under the GIL, so safe from any thread.
        self.sim.authn.add_token(token, user, list(groups))

    def apply_manifest(self, objs: Obj | list[Obj]) -> list[Obj]:
        """Create-or-replace objects as admin (CRDs first become served immediately)."""
        return self._submit(self._apply(objs))

    async def apply_manifest_async(self, objs: Obj | list[Obj]) -> list[Obj]:
        return await self._submit_async(self._apply(objs))

    def apply_file(self, path: str | Path) -> list[Obj]:
        """Apply every document of a (multi-document) YAML file."""
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        return self.apply_manifest(docs)

    async def _apply(self, objs: Obj | list[Obj]) -> list[Obj]:
        assert self.sim is not None
        sim = self.sim
        items = objs if isinstance(objs, list) else [objs]
        out = []
        for obj in items:
            if obj.get("kind", "").endswith("List") and isinstance(obj.get("items"), list):
                out.extend(await self._apply(obj["items"]))
                continue
            av = obj.get("apiVersion", "")
            g, _, v = av.rpartition("/")
            rt = sim.registry.by_gvk.get((g, v, obj.get("kind", "")))
            if rt is None:
                raise ApiError(404, f'no matches for kind "{obj.get("kind")}" in version "{av}"', "NotFound")
            ns = (obj.get("metadata") or {}).get("namespace") or ("default" if rt.namespaced else "")
            ctx = Ctx(user=SYSTEM, field_validation="Strict")
            try:
                out.append(await sim.create(rt, ns, obj, ctx))
            except ApiError as e:
                if e.code != 409 or e.reason != "AlreadyExists":
                    raise
                cur = sim.store.get(rt.key, ns, obj["metadata"]["name"])
                body = copy.deepcopy(obj)
                body["metadata"]["resourceVersion"] = (cur or {}).get("metadata", {}).get("resourceVersion", "")
                if rt.has_status and cur is not None and "status" in cur:
                    body["status"] = cur["status"]
                out.append(await sim.update(rt, ns, obj["metadata"]["name"], body, ctx))
        return out

    def get_object(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        """Thread-safe read of one stored object (``None`` when absent)."""
        async def run() -> Obj | None:
            assert self.sim is not None
            g, _, v = api_version.rpartition("/")
            rt = self.sim.registry.by_gvk.get((g, v, kind))
            if rt is None:
                return None
            o = self.sim.store.get(rt.key, namespace if rt.namespaced else "", name)
            return copy.deepcopy(o) if o is not None else None

        return self._submit(run())

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        async def run() -> list[Obj]:
            assert self.sim is not None
            g, _, v = api_version.rpartition("/")
            rt = self.sim.registry.by_gvk.get((g, v, kind))
            if rt is None:
                return []
            return copy.deepcopy(self.sim.store.list_sorted(rt.key, namespace))

        return self._submit(run())

    def stats(self) -> Obj:
        """A snapshot of the sim's own records (see ``Stats``) plus current object counts."""
        return self._submit(self._stats())

    async def stats_async(self) -> Obj:
        return await self._submit_async(self._stats())

    async def _stats(self) -> Obj:
        assert self.sim is not None
        s = self.sim.stats
        counts = {}
        for key in self.sim.registry.keys():  # noqa: SIM118
            rt = self.sim.registry.for_key(key)
            if rt is not None:
                counts[rt.plural if not rt.group else rt.qualified] = self.sim.store.count(key)
        return copy.deepcopy({
            "create_calls": dict(s.create_calls),
            "creates": dict(s.creates),
            "created_names": dict(s.created_names),
            "duplicate_names": {k: v for k, v in s.created_names.items() if v > 1},
            "quota_rejections": list(s.quota_rejections),
            "failed_creates": list(s.failed_creates),
            "pods_per_job": dict(s.pods_per_job),
            "webhook_calls": list(s.webhook_calls),
            "object_counts": counts,
            "requests": dict(s.requests),
            "request_kinds": dict(s.request_kinds),
            "forbidden": list(s.forbidden),
            "resource_version": self.sim.store.rv,
        })


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
