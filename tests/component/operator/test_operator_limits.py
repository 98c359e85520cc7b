"""Tenants, fair and quota-aware admission, the admission webhook (issue 5), and restarts (issue 3)."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import API, Harness, wait_until

from kubetask.sim import SimCluster


def job_order(kt: Harness, namespace: str) -> list[str]:
    prefix = f"jobs/{namespace}/"
    return [k[len(prefix):] for k in kt.cluster.stats()["created_names"] if k.startswith(prefix)]


def phases(kt: Harness, namespace: str) -> dict[str, str | None]:
    return {t["metadata"]["name"]: (t.get("status") or {}).get("phase")
            for t in kt.cluster.list_objects(API, "Task", namespace)}


def all_done(kt: Harness, namespace: str, count: int) -> bool:
    current = phases(kt, namespace)
    return len(current) == count and all(p in ("Succeeded", "Failed", "Cancelled") for p in current.values())


def test_tenant_is_reconciled_into_namespace_quota_limits_and_rbac(kt: Harness) -> None:
    body = {"apiVersion": API, "kind": "Tenant", "metadata": {"name": "carol"},
            "spec": {"limits": {"maxRunning": 2, "gpuQuota": 4, "maxGpusPerTask": 2},
                     "subjects": [{"kind": "User", "name": "carol@example.com"}]}}
    assert kt.client().post("/apis/kubetask.io/v1alpha1/tenants", json=body).status_code == 201
    wait_until(lambda: kt.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-tenant", "kubetask-carol")
               is not None, 10, "tenant objects")
    ns = kt.get("v1", "Namespace", "kubetask-carol")
    assert ns is not None and ns["metadata"]["labels"]["kubetask.io/tenant"] == "carol"
    quota = kt.get("v1", "ResourceQuota", "kubetask-quota", "kubetask-carol") or {}
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "4" and quota["spec"]["hard"]["pods"] == "2"
    assert kt.get("v1", "LimitRange", "kubetask-limits", "kubetask-carol") is not None
    # changes propagate
    kt.patch("/apis/kubetask.io/v1alpha1/tenants/carol", {"spec": {"limits": {"gpuQuota": 6}}})
    wait_until(lambda: (kt.get("v1", "ResourceQuota", "kubetask-quota", "kubetask-carol") or {})
               ["spec"]["hard"]["requests.nvidia.com/gpu"] == "6", 10, "quota update")
    # usage is accounted in the tenant's status and survives the deletion of the task
    kt.create_task("work", "kubetask-carol", resources={"gpus": 2}, fast=False,
                   annotations={"kubetask.dev/sim-duration-seconds": "1.2"})
    task = kt.wait_phase("work", "Succeeded", "kubetask-carol", timeout=15)
    assert task["spec"]["user"] == "carol"
    assert task["status"]["gpuSeconds"] > 0
    wait_until(lambda: ((kt.get(API, "Tenant", "carol") or {}).get("status") or {}).get("gpuSecondsThisMonth", 0)
               >= task["status"]["gpuSeconds"], 10, "usage accounted")
    kt.client().delete("/apis/kubetask.io/v1alpha1/namespaces/kubetask-carol/tasks/work")
    time.sleep(0.5)
    status = (kt.get(API, "Tenant", "carol") or {})["status"]
    assert status["gpuSecondsThisMonth"] == task["status"]["gpuSeconds"]
    assert status["usage"][0]["gpuSeconds"] == task["status"]["gpuSeconds"]


def test_max_running_under_a_burst_of_200(kt: Harness) -> None:
    kt.create_tenant("burst", maxRunning=3, maxPending=1000)
    ns = "kubetask-burst"
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            live = [p for p in kt.cluster.list_objects("v1", "Pod", ns)
                    if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            peak = max(peak, len(live))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kt.create_many([(f"b{i:03d}", ns, {"resources": {"cpu": "100m", "memory": "64Mi"},
                                       "annotations": {"kubetask.dev/sim-duration-seconds": "0.05"}})
                    for i in range(200)])
    try:
        wait_until(lambda: all_done(kt, ns, 200), 120, "the burst to finish")
    finally:
        stop.set()
        sampler.join()
    assert 1 <= peak <= 3
    assert set(phases(kt, ns).values()) == {"Succeeded"}
    assert kt.cluster.stats()["quota_rejections"] == []


def test_fairness_bob_overtakes_alices_backlog(kt: Harness) -> None:
    kt.create_tenant("alice", maxPending=200)
    kt.create_tenant("bob")
    kt.create_many([(f"a{i:03d}", "kubetask-alice", {"resources": {"gpus": 1}, "fast": False,
                                                     "annotations": {"kubetask.dev/sim-duration-seconds": "1"}})
                    for i in range(100)])
    wait_until(lambda: len(job_order(kt, "kubetask-alice")) >= 8, 20, "alice to fill the GPUs")
    kt.create_many([(f"b{i}", "kubetask-bob", {"resources": {"gpus": 1}, "fast": False,
                                               "annotations": {"kubetask.dev/sim-duration-seconds": "1"}})
                    for i in range(5)])
    alice_before = len(job_order(kt, "kubetask-alice"))
    wait_until(lambda: len(job_order(kt, "kubetask-bob")) == 5, 30, "bob's tasks to start")
    alice_after = len(job_order(kt, "kubetask-alice"))
    # DRF: once bob queued, he got the next free GPUs until his share matched alice's (half of the 8),
    # and all five of his tasks started while most of alice's backlog was still waiting.
    assert alice_after - alice_before <= 12, (alice_before, alice_after)
    assert alice_after < 70, alice_after
    # and the start order shows bob ahead of the rest of alice's queue
    queued_alice = [t for t in kt.cluster.list_objects(API, "Task", "kubetask-alice")
                    if (t.get("status") or {}).get("phase") == "Queued"]
    assert len(queued_alice) >= 30


def test_quota_consistency_in_a_mixed_burst(kt: Harness) -> None:
    kt.create_tenant("t1", gpuQuota=3, cpuQuota="4", memoryQuota="16Gi", maxPending=500)
    kt.create_tenant("t2", gpuQuota=2, cpuQuota="3", memoryQuota="8Gi", maxRunning=5, maxPending=500)
    rng = random.Random(7)
    kt.create_many([(f"m{i:02d}", f"kubetask-{'t1' if i % 2 else 't2'}",
                     {"resources": {"gpus": rng.choice([0, 1, 2]), "cpu": rng.choice(["500m", "1"]),
                                    "memory": rng.choice(["512Mi", "2Gi"])},
                      "annotations": {"kubetask.dev/sim-duration-seconds": str(rng.choice([0.05, 0.2, 0.4]))}})
                    for i in range(40)])
    wait_until(lambda: all_done(kt, "kubetask-t1", 20) and all_done(kt, "kubetask-t2", 20), 90, "burst done")
    stats = kt.cluster.stats()
    assert stats["quota_rejections"] == []
    assert stats["duplicate_names"] == {}
    assert set(phases(kt, "kubetask-t1").values()) | set(phases(kt, "kubetask-t2").values()) == {"Succeeded"}


def test_raising_a_tenant_limit_lets_waiting_tasks_start(kt: Harness) -> None:
    kt.create_tenant("dave", maxRunning=1)
    for i in range(3):
        kt.create_task(f"d{i}", "kubetask-dave", fast=False, annotations={"kubetask.dev/sim-duration-seconds": "20"})
    wait_until(lambda: "dave has 1 of 1 running tasks" in str(kt.task("d2", "kubetask-dave").get("status")), 10,
               "why-pending message")
    kt.patch("/apis/kubetask.io/v1alpha1/tenants/dave", {"spec": {"limits": {"maxRunning": 3}}})
    wait_until(lambda: all(p == "Running" for p in phases(kt, "kubetask-dave").values()), 10, "all running")


def test_operator_restart_while_100_tasks_flow(harness: Harness) -> None:
    harness.start(webhook_enabled=False)
    for i in range(100):
        harness.create_task(f"r{i:03d}", resources={"gpus": i % 3 and 1, "cpu": "250m"},
                            annotations={"kubetask.dev/sim-duration-seconds": "0.1"})
        if i == 40:
            harness.stop()  # killed mid-flow; creates keep coming while it is down
        if i == 70:
            harness.start(webhook_enabled=False)
    harness.stop()
    harness.start(webhook_enabled=False)
    wait_until(lambda: all_done(harness, "default", 100), 90, "all 100 tasks")
    stats = harness.cluster.stats()
    assert stats["duplicate_names"] == {}
    assert set(phases(harness, "default").values()) == {"Succeeded"}
    jobs = [k for k in stats["created_names"] if k.startswith("jobs/default/")]
    assert len(jobs) == 100
    assert all(count == 1 for count in stats["pods_per_job"].values())
    for task in harness.cluster.list_objects(API, "Task", "default"):
        assert [e["id"] for e in task["status"]["executions"]] == [1]


def test_monthly_hours_then_new_month(kt: Harness) -> None:
    kt.clock.fixed = datetime(2025, 1, 20, 12, tzinfo=UTC)
    kt.create_tenant("erin", monthlyGpuHours=1)
    kt.patch("/apis/kubetask.io/v1alpha1/tenants/erin/status",
             {"status": {"usage": [{"month": "2025-01", "gpuSeconds": 3600.0}]}})
    wait_until(lambda: ((kt.get(API, "Tenant", "erin") or {}).get("status") or {}).get("usage"), 5, "usage set")
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "g1", "namespace": "kubetask-erin"},
            "spec": {"image": "x", "resources": {"gpus": 1}}}
    response = kt.client().post("/apis/kubetask.io/v1alpha1/namespaces/kubetask-erin/tasks", json=body)
    assert response.status_code == 403, response.text
    assert "Monthly GPU-hours used up: 1.0 of 1 h in 2025-01 for erin" in response.json()["message"]
    kt.clock.fixed = datetime(2025, 2, 1, 0, 5, tzinfo=UTC)
    response = kt.client().post("/apis/kubetask.io/v1alpha1/namespaces/kubetask-erin/tasks", json=body)
    assert response.status_code == 201, response.text


def test_webhook_rejections_through_kubectl(kt: Harness, kubectl: Any) -> None:
    kt.create_tenant("frank", maxPending=2, maxGpusPerTask=1, maxTimeoutSeconds=600)
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def manifest(name: str, **spec: Any) -> str:
        import json
        return json.dumps({"apiVersion": API, "kind": "Task", "metadata": {"name": name,
                                                                           "namespace": "kubetask-frank"},
                           "spec": {"image": "busybox", **spec}})

    cases = [
        (manifest("g", resources={"gpus": 2}), "Too many GPUs requested: 2 (max 1 per task for frank)"),
        (manifest("t", timeoutSeconds=7200), "timeoutSeconds 7200 exceeds the maximum of 600 s for frank"),
        (manifest("u", image=None, template={"name": "no-such-template"}), "Unknown template 'no-such-template'"),
        (manifest("v", image=None, template={"name": "ollama-inference", "parameters": {"model": "m"}}),
         "missing required parameter 'prompt'"),
        (manifest("w", dependsOn=["ghost"]), "Dependency 'ghost' does not exist in namespace kubetask-frank"),
    ]
    for text, message in cases:
        proc = kubectl("create", "-f", "-", input=text, check=False)
        assert proc.returncode != 0, text
        assert message in proc.stderr, proc.stderr
    # the pending limit: two waiting tasks fill it, the third is refused; a deletion makes room again
    for name in ("p1", "p2"):
        kubectl("create", "-f", "-", input=manifest(name, scheduledAt=later))
    proc = kubectl("create", "-f", "-", input=manifest("p3", scheduledAt=later), check=False)
    assert proc.returncode != 0 and "Too many pending tasks (max 2)" in proc.stderr, proc.stderr
    kubectl("delete", "task", "p1", "-n", "kubetask-frank")
    wait_until(lambda: kt.get(API, "Task", "p1", "kubetask-frank") is None, 5, "p1 gone")
    kubectl("create", "-f", "-", input=manifest("p3", scheduledAt=later))
    kubectl("delete", "task", "p2", "p3", "-n", "kubetask-frank")
    wait_until(lambda: kt.get(API, "Task", "p3", "kubetask-frank") is None, 5, "p3 gone")
    # immutable once admitted; user never changes
    kubectl("create", "-f", "-", input=manifest("run", podAnnotations={"kubetask.dev/sim-duration-seconds": "0.1"}))
    kt.wait_phase("run", "Succeeded", "kubetask-frank")
    proc = kubectl("patch", "task", "run", "-n", "kubetask-frank", "--type=merge", "-p",
                   '{"spec": {"image": "other"}}', check=False)
    # refused by the CRD's own CEL rule or by the webhook, whichever the apiserver runs first
    assert proc.returncode != 0 and ("immutable" in proc.stderr or "cannot change" in proc.stderr), proc.stderr
    out = kubectl("get", "tasks", "-n", "kubetask-frank").stdout
    assert "run" in out


def test_cycle_is_rejected(kt: Harness) -> None:
    kt.create_task("c1", scheduledAt="2099-01-01T00:00:00Z")
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "c1x", "namespace": "default"},
            "spec": {"image": "x", "dependsOn": ["c1x"]}}
    response = kt.client().post("/apis/kubetask.io/v1alpha1/namespaces/default/tasks", json=body)
    assert response.status_code == 400 and "cannot depend on itself" in response.json()["message"]


def test_node_pause_label_holds_new_work(sim_cluster: SimCluster, harness: Harness) -> None:
    harness.start()
    for node in ("gpu-node-1", "gpu-node-2"):
        harness.patch(f"/api/v1/nodes/{node}", {"metadata": {"labels": {"kubetask.io/paused": "true"}}})
    harness.create_task("held", resources={"gpus": 1})
    wait_until(lambda: "paused" in str((harness.task("held").get("status") or {}).get("message")), 10,
               "paused message")
    harness.patch("/api/v1/nodes/gpu-node-1", {"metadata": {"labels": {"kubetask.io/paused": None}}})
    assert harness.wait_phase("held", "Succeeded")["status"]["nodeName"] == "gpu-node-1"
