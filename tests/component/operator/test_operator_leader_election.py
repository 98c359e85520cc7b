"""Several operator replicas are safe: one Lease holder reconciles, a standby only stays alive.

The standby answers its liveness probe but runs no Kopf (so no webhook port: the chart's
readiness probe keeps it out of the webhook Service); when the leader steps down, the
standby takes the Lease and carries on with the same Tasks.
"""

from __future__ import annotations

import socket
import threading

import httpx
from conftest import Harness, wait_until

from kubetask.operator.runner import OperatorHandle, run_operator_in_thread
from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _replica(harness: Harness, liveness_port: int, *, wait: bool) -> OperatorHandle:
    settings = OperatorSettings(metrics_port=0, liveness_port=liveness_port, webhook_port=_free_port(),
                                leader_election=True, leader_lease_namespace=harness.namespace)
    return run_operator_in_thread(settings, GpuSettings(), KubeSettings(kubeconfig=str(harness.kubeconfig)),
                                  clock=harness.clock, wait=wait, timeout=90)


def _healthz(port: int) -> dict[str, object] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def test_a_standby_stays_alive_and_takes_over_when_the_leader_steps_down(harness: Harness) -> None:
    leader_port, standby_port = _free_port(), _free_port()
    leader = _replica(harness, leader_port, wait=True)
    standby = _replica(harness, standby_port, wait=False)
    try:
        wait_until(lambda: _healthz(standby_port) is not None, 30, "the standby's liveness endpoint")
        assert _healthz(standby_port) == {"alive": True, "leader": False}
        lease = harness.get("coordination.k8s.io/v1", "Lease", "kubetask-operator", harness.namespace)
        assert lease is not None
        holder = lease["spec"]["holderIdentity"]

        harness.create_task("under-first-leader")
        harness.wait_phase("under-first-leader", "Succeeded")
        assert not standby.ready.is_set()

        stopper = threading.Thread(target=leader.stop)
        stopper.start()
        assert standby.wait_ready(90), f"standby never took over: {standby.error!r}"
        stopper.join(30)
        new_lease = harness.get("coordination.k8s.io/v1", "Lease", "kubetask-operator", harness.namespace)
        assert new_lease is not None and new_lease["spec"]["holderIdentity"] != holder

        harness.create_task("under-second-leader")
        harness.wait_phase("under-second-leader", "Succeeded")
        jobs = [j["metadata"]["name"] for j in harness.jobs()]
        assert sorted(jobs) == ["under-first-leader-1", "under-second-leader-1"]
    finally:
        standby.stop()
        leader.stop()
