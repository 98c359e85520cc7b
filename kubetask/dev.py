"""Process composition for the CLI: ``kubetask dev``, ``sim``, ``operator`` and ``api``.

``kubetask dev`` is the whole product on one machine: the simulated cluster
(its own thread), the operator (its own thread) and the REST API (the main
thread), wired together through a kubeconfig exactly as they would be against
a real cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from kubetask.settings import ApiSettings, GpuSettings, KubeSettings, OperatorSettings

log = logging.getLogger("kubetask.dev")

DEFAULT_DEV_KUBECONFIG = Path.home() / ".cache" / "kubetask" / "dev-kubeconfig.yaml"


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


def start_sim(port: int, kubeconfig_out: Path | None) -> tuple[Any, Path]:
    """Start the simulated cluster with the CRDs and built-in templates applied."""
    from kubetask.sim import SimCluster

    cluster = SimCluster(nodes=SimCluster.dev_nodes(), port=port)
    cluster.start()
    for path in packaged_manifests("crds"):
        cluster.apply_file(path)
    for path in packaged_manifests("tasktemplates"):
        cluster.apply_file(path)
    kubeconfig = kubeconfig_out or DEFAULT_DEV_KUBECONFIG
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    cluster.write_kubeconfig(kubeconfig)
    return cluster, kubeconfig


async def _bootstrap_tenants(kubeconfig: Path, keys: dict[str, tuple[str, str]]) -> None:
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient

    async with await KubeClient.connect(str(kubeconfig)) as client:
        for tenant, (key, role) in keys.items():
            await ensure_tenant(client, tenant, api_key=key, role=role)


def run_dev(args: argparse.Namespace) -> int:
    from kubetask.api.server import run_api_in_thread
    from kubetask.operator.runner import run_operator_in_thread

    cluster, kubeconfig = start_sim(args.sim_port, args.kubeconfig_out)
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
        _print_banner(cluster.https_url, kubeconfig, api_url, keys, operator_settings)
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


def _print_banner(sim_url: str, kubeconfig: Path, api_url: str, keys: dict[str, tuple[str, str]],
                  operator: OperatorSettings) -> None:
    key_lines = "\n".join(f"    {tenant:<6} X-API-Key: {key}   ({role})" for tenant, (key, role) in keys.items())
    print(f"""
kubetask dev is up.

  REST API     {api_url}/api/v1   (docs: {api_url}/docs)
  apiserver    {sim_url}   (simulated: 2 GPU nodes x 4 GPUs (A100, H100) + 1 CPU node)
  kubeconfig   {kubeconfig}
  metrics      http://127.0.0.1:{operator.metrics_port}/metrics (operator), {api_url}/metrics (API)
  API keys
{key_lines}

Try:
  curl -s -H 'X-API-Key: {keys['alice'][0]}' {api_url}/api/v1/tasks
  kubectl --kubeconfig {kubeconfig} -n kubetask-alice get tasks

Ctrl-C stops everything.
""", flush=True)


def run_sim(args: argparse.Namespace) -> int:
    cluster, kubeconfig = start_sim(args.port, args.kubeconfig_out)
    print(f"simulated cluster at {cluster.url}\nkubeconfig: {kubeconfig}", flush=True)
    try:
        with _stop_on_signals() as stop:
            stop.wait()
    finally:
        cluster.stop()
    return 0


def run_operator_command(args: argparse.Namespace) -> int:
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
