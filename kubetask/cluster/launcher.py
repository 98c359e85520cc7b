"""``LocalCluster``: a real Kubernetes control plane on loopback, with kwok nodes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as child
processes built by :mod:`kubetask.cluster.provision`. The apiserver has RBAC and the
admission plugins of a real cluster (ResourceQuota, LimitRanger, ServiceAccount and the two
webhook plugins among them); the Job controller and the scheduler are the real ones; kwok
plays the kubelets of fake GPU nodes. ``kubetask dev``, the pytest fixtures and the
benchmarks all start their cluster here.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import functools
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from kubetask.cluster.kwok import DEV_NODES, NodeShape, configuration
from kubetask.cluster.pki import CertificateAuthority, KeyPair, service_account_key
from kubetask.cluster.provision import Binaries, provision
from kubetask.core.objects import Obj

log = logging.getLogger("kubetask.cluster")

ADMIN_USER = "kubetask-admin"
SERVICE_CIDR = "10.96.0.0/16"
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kwok")


class ClusterError(RuntimeError):
    """The control plane could not start (the message names the component and its log)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if the launching process dies (even by SIGKILL), so do its components,
    # so a crashed test run leaves no stray apiserver behind. SIGKILL, not SIGTERM: a
    # kube-apiserver whose etcd is going down with it can hang in its graceful shutdown.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kubelet: int

    @classmethod
    def pick(cls, apiserver: int = 0) -> Ports:
        return cls(free_port(), free_port(), apiserver or free_port(), free_port(), free_port(), free_port())


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    health_url: str | None


class LocalCluster:
    """A local real control plane. ``start()``/``stop()``, or use it as a context manager.

    Start it from the main thread: components die with the thread that launched them.
    """

    def __init__(self, workdir: str | Path, nodes: Sequence[NodeShape] = DEV_NODES, *,
                 binaries: Binaries | None = None, apiserver_port: int = 0,
                 progress: Callable[[str], None] | None = None, profiling: bool = False) -> None:
        self.workdir = Path(workdir)
        self.nodes = list(nodes)
        self._binaries = binaries
        self._apiserver_port = apiserver_port
        self.profiling = profiling
        """Whether the kube-apiserver serves ``/debug/pprof`` (off by default: benchmarks turn it on)."""
        self._say = progress or (lambda message: log.info("%s", message))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._components: dict[str, Component] = {}
        self._log_files: list[Any] = []
        self._http: httpx.Client | None = None
        self._discovery: dict[str, list[Obj]] = {}
        self._lock = threading.Lock()
        self.ports: Ports | None = None
        self.admin_token = ""
        self.ca: CertificateAuthority | None = None
        self.kubeconfig = self.workdir / "admin.kubeconfig"

    # ------------------------------------------------------------------ paths
    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    @property
    def url(self) -> str:
        assert self.ports is not None, "the cluster is not started"
        return f"https://127.0.0.1:{self.ports.apiserver}"

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 120) -> LocalCluster:
        started = time.monotonic()
        binaries = self._binaries or provision(progress=self._say)
        self._stop_stale()
        atexit.register(self.stop)
        for sub in ("pki", "logs", "etcd"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.ports = Ports.pick(self._apiserver_port)
        self._write_pki()
        self._components = {c.name: c for c in self._plan(binaries)}
        try:
            for name in START_ORDER:
                self._spawn(name)
                if name in ("etcd", "kube-apiserver"):
                    self._wait_healthy(name, started + timeout)
            for name in START_ORDER[2:]:
                self._wait_healthy(name, started + timeout)
            self.add_nodes(self.nodes, timeout=max(10.0, started + timeout - time.monotonic()))
            self._wait_for(lambda: self._get_json("/api/v1/namespaces/default/serviceaccounts/default") is not None,
                           started + timeout, "the default ServiceAccount (kube-controller-manager)")
        except BaseException:
            self.stop()
            raise
        self._say(f"control plane {binaries.kubernetes_version} ready at {self.url} "
                  f"in {time.monotonic() - started:.1f} s ({sum(s.count for s in self.nodes)} kwok nodes)")
        return self

    def stop(self) -> None:
        """Stop every component (reverse order), SIGTERM then SIGKILL; no process is left behind."""
        if self._http is not None:
            self._http.close()
            self._http = None
        for name in reversed(START_ORDER):
            proc = self.processes.pop(name, None)
            if proc is not None:
                _terminate(proc)
        for handle in self._log_files:
            handle.close()
        self._log_files.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "pids.json").unlink()
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------- fault injection
    def pause(self, name: str) -> None:
        """SIGSTOP one component (e.g. ``kube-apiserver``): it hangs, as an overloaded server does."""
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def kill(self, name: str) -> None:
        """SIGKILL one component; :meth:`restart` brings it back."""
        proc = self.processes.pop(name)
        proc.kill()
        proc.wait()

    def restart(self, name: str, timeout: float = 60) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            _terminate(proc)
        self._spawn(name)
        self._wait_healthy(name, time.monotonic() + timeout)

    # ------------------------------------------------------------------- setup
    def _stop_stale(self) -> None:
        """Kill the components of an earlier run in the same workdir that was never stopped."""
        pids = self.workdir / "pids.json"
        if not pids.exists():
            return
        with contextlib.suppress(ValueError, OSError):
            for pid in json.loads(pids.read_text()).values():
                with contextlib.suppress(ProcessLookupError, PermissionError, FileNotFoundError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if str(self.workdir).encode() in cmdline:
                        os.kill(int(pid), signal.SIGKILL)
        pids.unlink(missing_ok=True)
        # A fresh run starts from an empty store.
        for stale in (self.workdir / "etcd").glob("**/*"):
            if stale.is_file():
                stale.unlink()

    def _write_pki(self) -> None:
        ca = self.ca = CertificateAuthority()
        ca.pair.write(self.pki, "ca")
        ca.server("kube-apiserver", ("127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                                     "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                                     "10.96.0.1")).write(self.pki, "apiserver")
        ca.server("kwok-kubelet", ("127.0.0.1", "localhost")).write(self.pki, "kubelet")
        ca.client("kube-apiserver-kubelet-client", ("system:masters",)).write(self.pki, "apiserver-kubelet-client")
        service_account_key().write(self.pki, "sa")
        self.admin_token = secrets.token_urlsafe(32)
        tokens = self.pki / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        (self.pki / "admin.token").write_text(self.admin_token)
        self.write_kubeconfig(self.kubeconfig)
        for name, user, groups in (("kube-controller-manager", "system:kube-controller-manager", ()),
                                   ("kube-scheduler", "system:kube-scheduler", ()),
                                   ("kwok", "kwok-controller", ("system:masters",))):
            pair = ca.client(user, groups)
            cert, key = pair.write(self.pki, name)
            self._write_cert_kubeconfig(self.workdir / f"{name}.kubeconfig", cert, key)

    def _write_cert_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        user = {"client-certificate": str(cert), "client-key": str(key)}
        path.write_text(yaml.safe_dump(self._kubeconfig_body(user, None), sort_keys=False))

    def _kubeconfig_body(self, user: Obj, namespace: str | None) -> Obj:
        context: Obj = {"cluster": "kubetask-local", "user": "user"}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubetask-local", "cluster": {"server": self.url,
                                                                 "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "kubetask-local", "context": context}],
            "current-context": "kubetask-local",
        }

    def write_kubeconfig(self, path: str | Path, *, token: str | None = None, namespace: str | None = None) -> Path:
        """A kubeconfig (CA embedded) for kubectl, kubernetes(_asyncio) and Kopf: admin unless ``token``."""
        body = self._kubeconfig_body({"token": token or self.admin_token}, namespace)
        body["clusters"][0]["cluster"] = {"server": self.url,
                                          "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(body, sort_keys=False))
        target.chmod(0o600)
        return target

    def user_certificate(self, user: str, groups: Iterable[str] = ()) -> KeyPair:
        """A client certificate for any user and groups (for RBAC tests)."""
        assert self.ca is not None, "the cluster is not started"
        return self.ca.client(user, tuple(groups))

    def _plan(self, binaries: Binaries) -> list[Component]:
        assert self.ports is not None
        p, pki, w = self.ports, self.pki, self.workdir
        scheduler_config = w / "kube-scheduler.yaml"
        scheduler_config.write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(w / "kube-scheduler.kubeconfig"), "qps": 1000, "burst": 2000},
            "leaderElection": {"leaderElect": False},
        }))
        kwok_config = w / "kwok.yaml"
        kwok_config.write_text(configuration(p.kubelet))
        etcd_url = f"http://127.0.0.1:{p.etcd}"
        return [
            Component("etcd", [
                str(binaries.etcd), "--name=kubetask", f"--data-dir={w / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=kubetask=http://127.0.0.1:{p.etcd_peer}",
                # A throwaway store: durability on every write only costs time here.
                "--unsafe-no-fsync", "--quota-backend-bytes=8589934592", "--log-level=warn",
            ], f"{etcd_url}/health"),
            Component("kube-apiserver", [
                str(binaries.kube_apiserver), f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p.apiserver}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,"
                "Priority,PodSecurity,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.crt'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true",
                f"--cert-dir={pki}", f"--profiling={str(self.profiling).lower()}", "--event-ttl=1h",
            ], "/readyz"),
            Component("kube-controller-manager", [
                str(binaries.kube_controller_manager), f"--kubeconfig={w / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={p.controller_manager}", "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true", "--kube-api-qps=1000", "--kube-api-burst=2000",
                "--concurrent-job-syncs=50", "--concurrent-gc-syncs=50", "--concurrent-resource-quota-syncs=20",
            ], f"https://127.0.0.1:{p.controller_manager}/healthz"),
            Component("kube-scheduler", [
                str(binaries.kube_scheduler), f"--config={scheduler_config}",
                "--bind-address=127.0.0.1", f"--secure-port={p.scheduler}",
            ], f"https://127.0.0.1:{p.scheduler}/healthz"),
            Component("kubelet", [
                sys.executable, "-m", "kubetask.cluster.kubelet", f"--port={p.kubelet}",
                f"--cert={pki / 'kubelet.crt'}", f"--key={pki / 'kubelet.key'}",
                f"--apiserver=https://127.0.0.1:{p.apiserver}", f"--ca={pki / 'ca.crt'}",
                f"--token-file={pki / 'admin.token'}",
            ], f"https://127.0.0.1:{p.kubelet}/healthz"),
            Component("kwok", [
                str(binaries.kwok), f"--kubeconfig={w / 'kwok.kubeconfig'}", f"--config={kwok_config}",
                "--manage-all-nodes=false",
            ], None),
        ]

    def _spawn(self, name: str) -> None:
        component = self._components[name]
        handle = (self.logs / f"{name}.log").open("ab")
        self._log_files.append(handle)
        main = threading.current_thread() is threading.main_thread()
        self.processes[name] = subprocess.Popen(
            component.command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True, preexec_fn=_die_with_parent if main else None,
        )
        (self.workdir / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))

    def _wait_healthy(self, name: str, deadline: float) -> None:
        component = self._components[name]
        proc = self.processes[name]
        url = component.health_url
        if url is None:
            if proc.poll() is not None:
                raise ClusterError(self._crash_report(name))
            return
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        while True:
            if proc.poll() is not None:
                raise ClusterError(self._crash_report(name))
            try:
                if url.startswith("/"):
                    if self.admin().get(url, timeout=2).status_code == 200:
                        return
                elif httpx.get(url, verify=insecure, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} did not become healthy at {url}; log: {self.logs / f'{name}.log'}\n"
                                   + self._log_tail(name))
            time.sleep(0.1)

    def _crash_report(self, name: str) -> str:
        return f"{name} exited during start-up; log {self.logs / f'{name}.log'}:\n{self._log_tail(name)}"

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_for(self, predicate: Callable[[], bool], deadline: float, what: str) -> None:
        while not predicate():
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}")
            time.sleep(0.1)

    # ----------------------------------------------------------- admin client
    def admin(self) -> httpx.Client:
        """A thread-safe httpx client authenticated as the cluster admin."""
        with self._lock:
            if self._http is None:
                context = ssl.create_default_context(cadata=self.ca_pem.decode())
                self._http = httpx.Client(base_url=self.url, verify=context, timeout=30,
                                          headers={"Authorization": f"Bearer {self.admin_token}"})
            return self._http

    def _get_json(self, path: str) -> Obj | None:
        response = self.admin().get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: Obj = response.json()
        return body

    def add_nodes(self, shapes: Iterable[NodeShape], timeout: float = 30) -> list[str]:
        """Create fake nodes and wait until kwok reports them Ready."""
        names: list[str] = []
        for shape in shapes:
            for node in shape.objects():
                self.apply(node)
                names.append(node["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            path = f"/api/v1/nodes/{name}"
            self._wait_for(functools.partial(lambda p: _ready(self._get_json(p)), path), deadline,
                           f"node {name} to become Ready (kwok)")
        return names

    def delete_node(self, name: str) -> None:
        self.admin().delete(f"/api/v1/nodes/{name}").raise_for_status()

    def resource(self, api_version: str, kind: str) -> Obj:
        """The discovery entry of ``kind`` in ``api_version`` (refreshed once on a miss)."""
        for attempt in range(2):
            entries = self._discovery.get(api_version)
            if entries is None or attempt:
                path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
                body = self._get_json(path) or {"resources": []}
                entries = self._discovery[api_version] = [r for r in body["resources"] if "/" not in r["name"]]
            for entry in entries:
                if entry["kind"] == kind:
                    return entry
        raise KeyError(f"no resource of kind {kind} in {api_version}")

    def path(self, api_version: str, kind: str, name: str | None = None, namespace: str | None = None) -> str:
        entry = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if entry["namespaced"] and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{entry['name']}"
        return f"{base}/{name}" if name else base

    def apply(self, obj: Obj, *, field_manager: str = "kubetask-launcher") -> Obj:
        """Server-side apply one object as admin (``force``); CRDs are waited for until served."""
        if obj.get("kind", "").endswith("List") and isinstance(obj.get("items"), list):
            return {"items": [self.apply(item, field_manager=field_manager) for item in obj["items"]]}
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ("default" if self.resource(obj["apiVersion"], obj["kind"])["namespaced"]
                                              else None)
        path = self.path(obj["apiVersion"], obj["kind"], meta["name"], namespace)
        response = self.admin().patch(path, content=json.dumps(obj),
                                      params={"fieldManager": field_manager, "force": "true"},
                                      headers={"Content-Type": "application/apply-patch+yaml"})
        if response.status_code >= 400:
            raise ClusterError(f"apply {obj['kind']} {meta.get('name')}: {response.status_code} {response.text}")
        applied: Obj = response.json()
        if obj["kind"] == "CustomResourceDefinition":
            self._wait_established(applied)
        return applied

    def apply_file(self, path: str | Path) -> list[Obj]:
        with open(path) as handle:
            return [self.apply(doc) for doc in yaml.safe_load_all(handle) if doc]

    def _wait_established(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        group = crd["spec"]["group"]
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]

        def served() -> bool:
            current = self._get_json(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
            conditions = {c["type"]: c["status"] for c in (current.get("status") or {}).get("conditions") or ()}
            return conditions.get("Established") == "True"

        self._wait_for(served, time.monotonic() + 30, f"CRD {name} to be established")
        kind = crd["spec"]["names"]["kind"]
        for version in versions:
            self._discovery.pop(f"{group}/{version}", None)
            self._wait_for(functools.partial(self._served, f"{group}/{version}", kind),
                           time.monotonic() + 30, f"{kind} in discovery")

    def _served(self, api_version: str, kind: str) -> bool:
        try:
            self.resource(api_version, kind)
            return True
        except (KeyError, httpx.HTTPError):
            self._discovery.pop(api_version, None)
            return False

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return self._get_json(self.path(api_version, kind, name, namespace))

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]:
        params = {"labelSelector": label_selector} if label_selector else None
        response = self.admin().get(self.path(api_version, kind, None, namespace), params=params)
        response.raise_for_status()
        items: list[Obj] = response.json()["items"]
        return items

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        response = self.admin().delete(self.path(api_version, kind, name, namespace))
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True


def _ready(node: Obj | None) -> bool:
    """Ready, and no longer tainted not-ready by the node-lifecycle controller (pods would wait)."""
    conditions = ((node or {}).get("status") or {}).get("conditions") or ()
    taints = ((node or {}).get("spec") or {}).get("taints") or ()
    return (any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            and not any(t.get("key", "").startswith("node.kubernetes.io/") for t in taints))


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
