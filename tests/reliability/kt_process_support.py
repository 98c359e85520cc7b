"""Helpers of the crash-safety and load tests: operators as separate processes, and a record of Job creates.

An :class:`OperatorProcess` is ``python -m kubetask.cli operator`` (what ``kubetask operator`` runs), so a
SIGKILL kills it the way the kernel kills a pod's container: no ``finally``, no Lease released, half-written
work left behind.  :class:`JobRecorder` watches Jobs from a resourceVersion on and keeps every ADDED event,
the apiserver's own record of what was created (a Job deleted and made again shows twice).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kt_support import Recorder, wait_until

from kubetask.cluster import LocalCluster

FAST_SECONDS = "1"
"""How long each simulated container runs (kwok's ``kubetask.dev/sim-duration-seconds``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])




class OperatorProcess:
    """One operator replica in a process of its own (webhook off: the tests create Tasks as admin)."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, leader_election: bool, lease_namespace: str) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.leader_election, self.lease_namespace = leader_election, lease_namespace
        self.liveness_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ,
               "KUBETASK_OPERATOR_METRICS_PORT": str(free_port()),
               "KUBETASK_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
               "KUBETASK_OPERATOR_LEADER_LEASE_NAMESPACE": self.lease_namespace}
        command = [sys.executable, "-m", "kubetask.cli", "--log-level", "WARNING", "operator",
                   "--kubeconfig", str(self.kubeconfig), "--no-webhook"]
        if not self.leader_election:
            command.append("--no-leader-election")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2)
        except httpx.HTTPError:
            return None
        return dict(response.json()) if response.status_code == 200 else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_leader(self) -> bool:
        """A standby answers ``{"alive": true, "leader": false}``; the leader's probe is Kopf's own."""
        health = self.health()
        return self.alive and health is not None and health.get("leader", True) is not False

    def wait_alive(self, timeout: float = 60) -> None:
        wait_until(lambda: self.health() is not None or not self.alive, timeout, "the operator's liveness endpoint")
        assert self.alive, f"the operator exited: {self.log_path.read_text()[-3000:]}"

    def kill(self) -> None:
        """SIGKILL: nothing of the operator runs after this."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class CrashRig:
    """A tenant namespace of its own on the session cluster, and the operator processes started in it."""

    cluster: LocalCluster
    kubeconfig: Path
    namespace: str
    logs: Path
    started: list[OperatorProcess]

    def operator(self, *, leader_election: bool = False) -> OperatorProcess:
        """Start one more operator process (the Lease, if any, lives in this rig's namespace)."""
        process = OperatorProcess(self.kubeconfig, self.logs / f"operator-{len(self.started)}.log",
                                  leader_election=leader_election, lease_namespace=self.namespace).start()
        self.started.append(process)
        return process


@dataclass
class LiveApi:
    """``kubetask api``'s server in a process of its own on loopback, with the operator running (another process)."""

    url: str
    keys: list[str]
    namespaces: list[str]


class JobRecorder(Recorder):
    """Every Job created in ``namespace`` from now on (watch ADDED events, in etcd order)."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        super().__init__(cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs")

    def per_task(self) -> Counter[str]:
        """Jobs created per Task (the ``kubetask.io/task-name`` annotation)."""
        self._checked()
        with self._lock:
            return Counter(str((j["metadata"].get("annotations") or {}).get("kubetask.io/task-name"))
                           for j in self.added)

    def names_created_twice(self) -> list[str]:
        with self._lock:
            names = Counter(j["metadata"]["name"] for j in self.added)
        return sorted(name for name, count in names.items() if count > 1)


def task_body(name: str, namespace: str) -> dict[str, Any]:
    """A short CPU task (about a second on a kwok node) that asks for little, so hundreds run at once."""
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "busybox", "command": ["true"], "resources": {"cpu": "10m", "memory": "16Mi"},
                     "podAnnotations": {"kubetask.dev/sim-duration-seconds": FAST_SECONDS}}}


def phases(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    """Every Task of ``namespace`` by name → its status."""
    response = cluster.admin().get(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace}/tasks")
    response.raise_for_status()
    return {t["metadata"]["name"]: t.get("status") or {} for t in response.json().get("items") or []}
