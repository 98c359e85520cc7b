"""The ``kubetask`` console script.

``dev`` runs the whole product on one machine (a real control plane with kwok GPU nodes,
the operator, the API); ``cluster`` provisions or runs only that control plane;
``operator`` and ``api`` run one part against any cluster; ``tasks``/``templates``/``queue``
are the client CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _add_kube_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig path (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context")


def _add_cluster_args(parser: argparse.ArgumentParser, default_workdir: str) -> None:
    parser.add_argument("--workdir", type=Path, default=None,
                        help=f"state folder: certificates, etcd data, component logs (default: {default_workdir}); "
                             "a new run wipes it")
    parser.add_argument("--apiserver-port", type=int, default=0, help="port of kube-apiserver (default: any free)")
    parser.add_argument("--nodes", default=None, metavar="SHAPES",
                        help="kwok nodes as PREFIX=COUNTxGPUS[:PRODUCT],... e.g. gpu=25x24:H100,cpu=2x0 "
                             "(default: gpu-a100=1x8:A100,gpu-h100=1x8:H100,cpu=1x0)")


def _build_parser() -> argparse.ArgumentParser:
    from kubetask import __version__

    parser = argparse.ArgumentParser(prog="kubetask", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kubetask {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("KUBETASK_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="log level of dev/cluster/operator/api (default $KUBETASK_LOG_LEVEL or INFO)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        default=os.environ.get("KUBETASK_LOG_FORMAT", "text"),
                        help="log format (default $KUBETASK_LOG_FORMAT or text)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="local real control plane with kwok GPU nodes + operator + REST API")
    dev.add_argument("--host", default="127.0.0.1", help="address of the REST API")
    dev.add_argument("--port", type=int, default=8000, help="port of the REST API, 1-65535 (default 8000)")
    _add_cluster_args(dev, "~/.cache/kubetask/dev-cluster")
    dev.add_argument("--kubeconfig-out", type=Path, default=None,
                     help="where to write the cluster's admin kubeconfig "
                          "(default: ~/.cache/kubetask/dev-kubeconfig.yaml)")
    dev.add_argument("--alice-key", default=os.environ.get("KUBETASK_DEV_ALICE_KEY", "dev-alice-key"),
                     help="API key of the tenant alice (default $KUBETASK_DEV_ALICE_KEY or dev-alice-key)")
    dev.add_argument("--bob-key", default=os.environ.get("KUBETASK_DEV_BOB_KEY", "dev-bob-key"),
                     help="API key of the tenant bob (default $KUBETASK_DEV_BOB_KEY or dev-bob-key)")
    dev.add_argument("--admin-key", default=os.environ.get("KUBETASK_DEV_ADMIN_KEY", "dev-admin-key"),
                     help="API key of the admin tenant (default $KUBETASK_DEV_ADMIN_KEY or dev-admin-key)")
    dev.add_argument("--no-webhook", action="store_true", help="run without the admission webhook")

    cluster = commands.add_parser("cluster", help="the local real control plane (kube-apiserver, etcd, kwok)")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    cluster_commands.add_parser("provision", help="build the pinned control-plane binaries into "
                                                  "~/.cache/kubetask/control-plane (cached: a second run does nothing)")
    up = cluster_commands.add_parser("up", help="run only the control plane until Ctrl-C (for `kubetask operator`, "
                                                "`kubetask api` or the e2e suite against it)")
    _add_cluster_args(up, "~/.cache/kubetask/cluster")
    up.add_argument("--kubeconfig-out", type=Path, default=None,
                    help="where to write the admin kubeconfig (default: WORKDIR/kubeconfig.yaml)")

    op = commands.add_parser("operator", help="run the Kopf operator against a cluster")
    _add_kube_args(op)
    op.add_argument("--namespace", "-n", action="append", default=None,
                    help="watch only this namespace (repeatable; default: cluster-wide)")
    op.add_argument("--webhook-host", default=None,
                    help="host the apiserver uses to reach the webhook (out-of-cluster: 127.0.0.1)")
    op.add_argument("--webhook-port", type=int, default=None,
                    help="port of the admission webhook server, 1-65535 (default from the settings)")
    op.add_argument("--no-webhook", action="store_true", help="do not serve the admission webhook")
    op.add_argument("--no-leader-election", action="store_true",
                    help="run without a leader lease (one replica only)")

    api = commands.add_parser("api", help="run the REST API against a cluster")
    _add_kube_args(api)
    api.add_argument("--host", default=None, help="address to listen on (default $KUBETASK_API_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port to listen on, 1-65535 (default 8000)")

    try:
        from kubetask.sdk.cli import register
    except ImportError:  # the client CLI is optional in slim builds
        pass
    else:
        register(commands)
    return parser


def _configure_logging(level: str, fmt: str) -> None:
    from kubetask.logs import configure_logging

    configure_logging(level, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command in ("dev", "cluster", "operator", "api"):
        _configure_logging(args.log_level, args.log_format)
    if args.command == "dev":
        from kubetask.dev import run_dev

        return run_dev(args)
    if args.command == "cluster":
        from kubetask.dev import run_cluster_provision, run_cluster_up

        return run_cluster_provision(args) if args.cluster_command == "provision" else run_cluster_up(args)
    if args.command == "operator":
        from kubetask.dev import run_operator_command

        return run_operator_command(args)
    if args.command == "api":
        from kubetask.dev import run_api_command

        return run_api_command(args)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
