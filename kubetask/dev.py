"""Process composition for the CLI: ``kubetask dev``, ``cluster``, ``operator`` and ``api``.

``kubetask dev`` is the whole product on one machine: a real control plane with kwok
GPU nodes (child processes, see :mod:`kubetask.cluster`), the operator (its own thread)
and the REST API (the main thread), wired together through a kubeconfig exactly as they
would be against any other cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings

if TYPE_CHECKING:
    from kubetask.cluster import LocalCluster

log = logging.getLogger("kubetask.dev")

DEFAULT_DEV_KUBECONFIG = Path.home() / ".cache" / "kubetask" / "dev-kubeconfig.yaml"
DEV_WORKDIR = Path.home() / ".cache" / "kubetask" / "dev-cluster"
DEFAULT_CLUSTER_WORKDIR = Path.home() / ".cache" / "kubetask" / "cluster"


def packaged_manifests(folder: str) -> list[Path]:
    """The YAML files shipped inside the package under ``kubetask/resources/<folder>``."""
    root = resources.files("kubetask") / "resources" / folder
    return sorted(Path(str(entry)) for entry in root.iterdir() if entry.name.endswith(".yaml"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM, so Ctrl-C and ``kill`` both stop cleanly."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handler(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, _handler)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_cluster(args: argparse.Namespace, default_workdir: Path) -> LocalCluster:
    """Start the local real control plane (building it first if needed) with the CRDs and templates.

    A second run in the same workdir stops the first one's leftovers and starts from an empty store.
    """
    from kubetask.cluster import DEV_NODES, LocalCluster, parse_node_shapes

    nodes = parse_node_shapes(args.nodes) if args.nodes else DEV_NODES
    cluster = LocalCluster(args.workdir or default_workdir, nodes, apiserver_port=args.apiserver_port,
                           progress=lambda message: print(message, flush=True))
    cluster.start()
    try:
        for path in packaged_manifests("crds"):
            cluster.apply_file(path)
        for path in packaged_manifests("tasktemplates"):
            cluster.apply_file(path)
    except BaseException:
        cluster.stop()
        raise
    return cluster


async def _bootstrap_tenants(kubeconfig: Path, keys: dict[str, tuple[str, str]]) -> None:
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient

    async with await KubeClient.connect(str(kubeconfig)) as client:
        for tenant, (key, role) in keys.items():
            await ensure_tenant(client, tenant, api_key=key, role=role)


def run_dev(args: argparse.Namespace) -> int:
    from kubetask.api.server import run_api_in_thread
    from kubetask.operator.runner import run_operator_in_thread

    taken = _port_in_use(args.host, args.port)
    if taken:
        print(f"kubetask dev: port {args.port} on {args.host} is in use; choose another with --port", file=sys.stderr)
        return 2
    cluster = start_cluster(args, DEV_WORKDIR)
    # With its own --workdir a dev run keeps its kubeconfig there too, so it never overwrites the default one.
    default_kubeconfig = cluster.workdir / "kubeconfig.yaml" if args.workdir else DEFAULT_DEV_KUBECONFIG
    kubeconfig = cluster.write_kubeconfig(args.kubeconfig_out or default_kubeconfig)
    operator = api = None
    try:
        keys = {"alice": (args.alice_key, "user"), "bob": (args.bob_key, "user"),
                "admin": (args.admin_key, "admin")}
        asyncio.run(_bootstrap_tenants(kubeconfig, keys))
        kube = KubeSettings(kubeconfig=str(kubeconfig))
        api_url = f"http://{args.host}:{args.port}"
        operator_settings = OperatorSettings(
            webhook_enabled=not args.no_webhook, webhook_host="127.0.0.1", webhook_port=free_port(),
            metrics_port=free_port(), liveness_port=free_port(), leader_election=False,
            callback_url=api_url,
        )
        operator = run_operator_in_thread(operator_settings, GpuSettings(), kube)
        api = run_api_in_thread(ApiSettings(host=args.host, port=args.port), kube)
        _print_banner(cluster, kubeconfig, api_url, keys, operator_settings)
        with _stop_on_signals() as stop:
            while not stop.wait(0.5):
                if not api.thread.is_alive() or operator.done.is_set():
                    log.error("a component stopped unexpectedly (api alive=%s, operator alive=%s)",
                              api.thread.is_alive(), not operator.done.is_set())
                    return 1
        return 0
    finally:
        if api is not None:
            api.stop()
        if operator is not None:
            operator.stop()
        cluster.stop()


def _print_banner(cluster: LocalCluster, kubeconfig: Path, api_url: str, keys: dict[str, tuple[str, str]],
                  operator: OperatorSettings) -> None:
    from kubetask.core.rest.profiles import PROFILES

    key_lines = "\n".join(f"    {tenant:<6} X-API-Key: {key}   ({role})" for tenant, (key, role) in keys.items())
    nodes = ", ".join(shape.describe() for shape in cluster.nodes)
    print(f"""
kubetask dev is up.

  REST API     {api_url}/api/v1   (docs: {api_url}/docs)
  apiserver    {cluster.url}   (real kube-apiserver; kwok nodes: {nodes})
  logs         {cluster.logs}/   (etcd, kube-apiserver, controller-manager, scheduler, kwok)
  kubeconfig   {kubeconfig}
  metrics      http://127.0.0.1:{operator.metrics_port}/metrics (operator), {api_url}/metrics (API)
  API keys
{key_lines}

Try:
  curl -s -H 'X-API-Key: {keys['alice'][0]}' {api_url}/api/v1/tasks
  kubectl --kubeconfig {kubeconfig} -n kubetask-alice get tasks

Compatibility profiles (the other task-queue APIs' words and shapes): send
  -H 'X-Compat-Profile: NAME'  with NAME one of {", ".join(PROFILES)},
  or pin one to an API key (Tenant spec.apiKeys[].profile). The Task Manager API's root paths
  ({api_url}/tasks, no /api/v1) use taskmanager unless told otherwise.

Ctrl-C stops everything.
""", flush=True)


def run_cluster_up(args: argparse.Namespace) -> int:
    """``kubetask cluster up``: only the control plane, until Ctrl-C (run the operator/API/e2e against it)."""
    cluster = start_cluster(args, DEFAULT_CLUSTER_WORKDIR)
    try:
        kubeconfig = cluster.write_kubeconfig(args.kubeconfig_out or cluster.workdir / "kubeconfig.yaml")
        print(f"control plane at {cluster.url}\nkubeconfig: {kubeconfig}\nCtrl-C stops it.", flush=True)
        with _stop_on_signals() as stop:
            while not stop.wait(0.5):
                dead = [name for name, proc in cluster.processes.items() if proc.poll() is not None]
                if dead:
                    print(f"{', '.join(dead)} exited; see {cluster.logs}", file=sys.stderr)
                    return 1
    finally:
        cluster.stop()
    return 0


def run_cluster_provision(args: argparse.Namespace) -> int:
    """``kubetask cluster provision``: build (or find cached) the control-plane binaries."""
    from kubetask.cluster import ProvisionError, provision

    try:
        binaries = provision(progress=lambda message: print(message, flush=True))
    except ProvisionError as error:
        print(f"kubetask cluster provision: {error}", file=sys.stderr)
        return 1
    for name in ("etcd", "kube_apiserver", "kube_controller_manager", "kube_scheduler", "kwok"):
        print(f"  {name.replace('_', '-'):<24} {getattr(binaries, name)}")
    return 0


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def run_operator_command(args: argparse.Namespace) -> int:
    from kubetask.kube.memory import forgo_unused_clients

    forgo_unused_clients()  # before Kopf is imported: this process runs only the operator
    from kubetask.operator.runner import run_operator

    kube = KubeSettings(kubeconfig=args.kubeconfig, context=args.context)
    settings = OperatorSettings(**_given_flags(
        namespaces=args.namespace, webhook_host=args.webhook_host, webhook_port=args.webhook_port,
        webhook_enabled=False if args.no_webhook else None,
        leader_election=False if args.no_leader_election else None))
    return _run_until_signal(lambda stop: run_operator(settings, GpuSettings(), kube, stop=stop))


def run_api_command(args: argparse.Namespace) -> int:
    from kubetask.api.server import serve_api

    kube = KubeSettings(kubeconfig=args.kubeconfig, context=args.context)
    settings = ApiSettings(**_given_flags(host=args.host, port=args.port))
    return _run_until_signal(lambda stop: serve_api(settings, kube, stop=stop))


def _given_flags(**flags: Any) -> dict[str, Any]:
    """The settings the command line names; the rest come from ``KUBETASK_*`` variables or defaults."""
    return {name: value for name, value in flags.items() if value not in (None, [])}


def _run_until_signal(start: Any) -> int:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await start(stop)

    asyncio.run(_main())
    return 0
