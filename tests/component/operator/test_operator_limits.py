"""Tenants, fair and quota-aware admission, the admission webhook (issue 5), and restarts (issue 3).

On the real control plane the ResourceQuota admission plugin and the quota controller are the
real ones. The controller refreshes ``status.used`` a moment after pods end (and from its own
informer's view), so the apiserver can, rarely, refuse a pod the operator rightly started (the
Job controller retries it): the tests check the operator against the record of what happened
(``over_admissions``) rather than against the refresh latency of ``status.used``.
Tenants here are named ``op-*`` (their namespaces ``kubetask-op-*``) so they never meet the
tenants of other test folders on the shared cluster; the harness deletes them at teardown.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import API, GPU_NODES, GPUS_PER_NODE, Harness, over_admissions, wait_until
from kt_support import KubectlRunner


def phases(kt: Harness, namespace: str) -> dict[str, str | None]:
    return {t["metadata"]["name"]: (t.get("status") or {}).get("phase") for t in kt.objects(API, "Task", namespace)}


def all_done(kt: Harness, namespace: str, count: int) -> bool:
    current = phases(kt, namespace)
    return len(current) == count and all(p in ("Succeeded", "Failed", "Cancelled") for p in current.values())


def tenant_status(kt: Harness, name: str) -> dict[str, Any]:
    return dict((kt.get(API, "Tenant", name) or {}).get("status") or {})


def test_tenant_is_reconciled_into_namespace_quota_limits_and_rbac(kt: Harness) -> None:
    tenant, ns = "op-carol", "kubetask-op-carol"
    body = {"apiVersion": API, "kind": "Tenant", "metadata": {"name": tenant},
            "spec": {"limits": {"maxRunning": 2, "gpuQuota": 4, "maxGpusPerTask": 2},
                     "subjects": [{"kind": "User", "name": "carol@example.com"}]}}
    kt.tenants.append(tenant)
    response = kt.client().post("/apis/kubetask.io/v1alpha1/tenants", json=body)
    assert response.status_code == 201, response.text
    wait_until(lambda: kt.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-tenant", ns) is not None, 30,
               "tenant objects")
    namespace = kt.get("v1", "Namespace", ns)
    assert namespace is not None and namespace["metadata"]["labels"]["kubetask.io/tenant"] == tenant
    quota = kt.get("v1", "ResourceQuota", "kubetask-quota", ns) or {}
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "4" and quota["spec"]["hard"]["pods"] == "2"
    assert kt.get("v1", "LimitRange", "kubetask-limits", ns) is not None
    binding = kt.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-tenant", ns) or {}
    assert {"kind": "User", "name": "carol@example.com"} in [
        {k: s[k] for k in ("kind", "name")} for s in binding["subjects"]]
    # the binding is real RBAC now: carol may create Tasks in her namespace and nowhere else
    def review(namespace: str) -> dict[str, Any]:
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": "carol@example.com", "resourceAttributes": {
                    "group": "kubetask.io", "resource": "tasks", "verb": "create", "namespace": namespace}}}

    allowed = kt.client().post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review(ns))
    assert allowed.status_code == 201 and allowed.json()["status"]["allowed"] is True, allowed.text
    denied = kt.client().post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review(kt.namespace))
    assert denied.status_code == 201 and not denied.json()["status"].get("allowed"), denied.text
    # changes propagate
    kt.patch(f"/apis/kubetask.io/v1alpha1/tenants/{tenant}", {"spec": {"limits": {"gpuQuota": 6}}})
    wait_until(lambda: (kt.get("v1", "ResourceQuota", "kubetask-quota", ns) or {})
               ["spec"]["hard"]["requests.nvidia.com/gpu"] == "6", 30, "quota update")
    # usage is accounted in the tenant's status and survives the deletion of the task
    kt.wait_tenant_namespace(tenant)
    kt.create_task("work", ns, resources={"gpus": 2}, fast=False,
                   annotations={"kubetask.dev/sim-duration-seconds": "1.2"})
    # A Task's editor may write its annotations: a mark there saying "already paid for" must count for nothing.
    kt.patch(f"/apis/kubetask.io/v1alpha1/namespaces/{ns}/tasks/work",
             {"metadata": {"annotations": {"kubetask.io/accounted-gpu-seconds": "1000000"}}})
    task = kt.wait_phase("work", "Succeeded", ns)
    assert task["spec"]["user"] == tenant
    assert task["status"]["gpuSeconds"] > 0
    # The tenant is charged before the final status is written, and that status carries the operator's mark
    # (in the status, which tenants cannot write): no separate write, and never a mark without the charge.
    assert task["status"]["accountedGpuSeconds"] == task["status"]["gpuSeconds"]
    assert tenant_status(kt, tenant).get("gpuSecondsThisMonth", 0) >= task["status"]["gpuSeconds"]
    kt.client().delete(f"/apis/kubetask.io/v1alpha1/namespaces/{ns}/tasks/work")
    wait_until(lambda: kt.get(API, "Task", "work", ns) is None, 30, "the task deleted")
    time.sleep(1)  # nothing to wait for: the deletion must not change the accounted usage
    status = tenant_status(kt, tenant)
    assert status["gpuSecondsThisMonth"] == task["status"]["gpuSeconds"]
    assert status["usage"][0]["gpuSeconds"] == task["status"]["gpuSeconds"]


def test_max_running_under_a_burst_of_200(kt: Harness) -> None:
    kt.create_tenant("op-burst", maxRunning=3, maxPending=1000)
    ns = "kubetask-op-burst"
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            live = [p for p in kt.objects("v1", "Pod", ns) if (p.get("status") or {}).get("phase") not in
                    ("Succeeded", "Failed") and not p["metadata"].get("deletionTimestamp")]
            peak = max(peak, len(live))
            time.sleep(0.1)

    jobs, pods = kt.record("batch/v1", "Job", ns), kt.record("v1", "Pod", ns)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        kt.create_many([(f"b{i:03d}", ns, {"resources": {"cpu": "100m", "memory": "64Mi"},
                                           "annotations": {"kubetask.dev/sim-duration-seconds": "0.05"}})
                        for i in range(200)])
        wait_until(lambda: all_done(kt, ns, 200), 600, lambda: f"the burst to finish: {phases(kt, ns)}", interval=1)
    finally:
        stop.set()
        sampler.join()
    assert 1 <= peak <= 3
    assert set(phases(kt, ns).values()) == {"Succeeded"}
    wait_until(lambda: len(jobs.names) == 200, 30, "the recorder to see every Job")
    assert jobs.duplicates() == {}
    # never more than maxRunning admitted at once (the quota's "pods: 3" would refuse the fourth pod)
    assert over_admissions(jobs, pods, {"pods": "3"}) == []


def test_fairness_bob_overtakes_alices_backlog(kt: Harness) -> None:
    kt.create_tenant("op-alice", maxPending=200)
    kt.create_tenant("op-bob")
    alice_ns, bob_ns = "kubetask-op-alice", "kubetask-op-bob"
    gpus = len(GPU_NODES) * GPUS_PER_NODE
    alice_jobs, bob_jobs = kt.record("batch/v1", "Job", alice_ns), kt.record("batch/v1", "Job", bob_ns)
    kt.create_many([(f"a{i:03d}", alice_ns, {"resources": {"gpus": 1}, "fast": False,
                                             "annotations": {"kubetask.dev/sim-duration-seconds": "3"}})
                    for i in range(100)])
    wait_until(lambda: len(alice_jobs.names) >= gpus, 60, "alice to fill the GPUs")
    kt.create_many([(f"b{i}", bob_ns, {"resources": {"gpus": 1}, "fast": False,
                                       "annotations": {"kubetask.dev/sim-duration-seconds": "3"}})
                    for i in range(5)])
    alice_before = len(alice_jobs.names)
    wait_until(lambda: len(bob_jobs.names) == 5, 120, "bob's tasks to start")
    alice_after = len(alice_jobs.names)
    # DRF: once bob queued, he got the next free GPUs until his share matched alice's (half of them),
    # so all five of his tasks started within one round of GPUs, while most of alice's backlog waited
    # (first come, first served would have run all of alice's hundred first).
    assert alice_after - alice_before <= gpus, (alice_before, alice_after)
    assert alice_after < 70, alice_after
    queued_alice = [t for t in kt.objects(API, "Task", alice_ns) if (t.get("status") or {}).get("phase") == "Queued"]
    assert len(queued_alice) >= 30


def test_quota_consistency_in_a_mixed_burst(kt: Harness) -> None:
    kt.create_tenant("op-t1", gpuQuota=3, cpuQuota="4", memoryQuota="16Gi", maxPending=500)
    kt.create_tenant("op-t2", gpuQuota=2, cpuQuota="3", memoryQuota="8Gi", maxRunning=5, maxPending=500)
    namespaces = ("kubetask-op-t1", "kubetask-op-t2")
    jobs = {ns: kt.record("batch/v1", "Job", ns) for ns in namespaces}
    pods = {ns: kt.record("v1", "Pod", ns) for ns in namespaces}
    rng = random.Random(7)
    kt.create_many([(f"m{i:02d}", f"kubetask-op-{'t1' if i % 2 else 't2'}",
                     {"resources": {"gpus": rng.choice([0, 1, 2]), "cpu": rng.choice(["500m", "1"]),
                                    "memory": rng.choice(["512Mi", "2Gi"])},
                      "annotations": {"kubetask.dev/sim-duration-seconds": str(rng.choice([0.05, 0.2, 0.4]))}})
                    for i in range(40)])
    # below pytest's own timeout, so a stuck burst fails naming the phases and the quota's refusals
    wait_until(lambda: all_done(kt, "kubetask-op-t1", 20) and all_done(kt, "kubetask-op-t2", 20), 240,
               lambda: f"burst done: {[phases(kt, ns) for ns in namespaces]} "
                       f"refused: {[kt.quota_rejections(ns) for ns in namespaces]}", interval=0.5)
    wait_until(lambda: all(len(recorder.names) == 20 for recorder in jobs.values()), 30,
               "the recorders to see every Job")
    for ns in namespaces:
        assert jobs[ns].duplicates() == {}, ns
        quota = kt.get("v1", "ResourceQuota", "kubetask-quota", ns) or {}
        assert over_admissions(jobs[ns], pods[ns], quota["spec"]["hard"]) == [], (ns, kt.quota_rejections(ns))
    assert set(phases(kt, "kubetask-op-t1").values()) | set(phases(kt, "kubetask-op-t2").values()) == {"Succeeded"}


@pytest.mark.parametrize(("gpus", "runtime"), [(1, "job"), (2, "job"), (1, "pod")])
def test_a_task_that_fits_beside_a_long_running_one_starts(kt: Harness, gpus: int, runtime: str) -> None:
    # The quota admission counts a pod in the quota's status before the pod is stored, and nothing rewrites
    # the quota while the pod runs (the quota controller recounts on a pod's end, not its start): so the
    # report older than the pod counts it already, and counting it again would hold half the quota idle.
    tenant, ns = f"op-tight{gpus}{runtime}", f"kubetask-op-tight{gpus}{runtime}"
    kt.create_tenant(tenant, gpuQuota=2 * gpus)
    long_run = {"kubetask.dev/sim-duration-seconds": "300"}
    kt.create_task("first", ns, fast=False, annotations=long_run, resources={"gpus": gpus}, runtime=runtime)
    kt.wait_phase("first", "Running", ns)
    wait_until(lambda: any((p.get("status") or {}).get("phase") == "Running" for p in kt.objects("v1", "Pod", ns)),
               30, "the first pod running")
    kt.create_task("second", ns, fast=False, annotations=long_run, resources={"gpus": gpus}, runtime=runtime)
    wait_until(lambda: phases(kt, ns).get("second") == "Running", 20,
               lambda: f"the second task running beside the first: {kt.task('second', ns).get('status')}")
    quota = kt.get("v1", "ResourceQuota", "kubetask-quota", ns) or {}
    assert quota["status"]["used"]["requests.nvidia.com/gpu"] == str(2 * gpus)
    assert kt.quota_rejections(ns) == []


def test_raising_a_tenant_limit_lets_waiting_tasks_start(kt: Harness) -> None:
    kt.create_tenant("op-dave", maxRunning=1)
    ns = "kubetask-op-dave"
    for i in range(3):
        kt.create_task(f"d{i}", ns, fast=False, annotations={"kubetask.dev/sim-duration-seconds": "120"})
    wait_until(lambda: "op-dave has 1 of 1 running tasks" in str(kt.task("d2", ns).get("status")), 30,
               "why-pending message")
    kt.patch("/apis/kubetask.io/v1alpha1/tenants/op-dave", {"spec": {"limits": {"maxRunning": 3}}})
    wait_until(lambda: all(p == "Running" for p in phases(kt, ns).values()), 60,
               lambda: f"all running: {phases(kt, ns)}")


def test_operator_restart_while_100_tasks_flow(harness: Harness) -> None:
    jobs, pods = harness.record("batch/v1", "Job"), harness.record("v1", "Pod")
    harness.start(webhook_enabled=False)
    for i in range(100):
        harness.create_task(f"r{i:03d}", resources={"gpus": i % 3 and 1, "cpu": "250m"},
                            annotations={"kubetask.dev/sim-duration-seconds": "0.1"})
        if i == 40:
            harness.stop()  # stopped mid-flow; creates keep coming while it is down
        if i == 70:
            harness.start(webhook_enabled=False)
    harness.stop()
    harness.start(webhook_enabled=False)
    wait_until(lambda: all_done(harness, harness.namespace, 100), 300, "all 100 tasks", interval=0.5)
    assert set(phases(harness, harness.namespace).values()) == {"Succeeded"}
    wait_until(lambda: len(jobs.names) == 100 and len(pods.names) >= 100, 30, "the recorders to catch up")
    assert jobs.duplicates() == {}
    assert sorted(jobs.names) == sorted(f"r{i:03d}-1" for i in range(100))
    pods_per_job: dict[str, int] = {}
    for pod in pods.added:
        job = pod["metadata"]["labels"]["job-name"]
        pods_per_job[job] = pods_per_job.get(job, 0) + 1
    assert pods_per_job == {name: 1 for name in jobs.names}
    for task in harness.objects(API, "Task", harness.namespace):
        assert [e["id"] for e in task["status"]["executions"]] == [1]


def test_monthly_hours_then_new_month(kt: Harness) -> None:
    kt.clock.fixed = datetime(2025, 1, 20, 12, tzinfo=UTC)
    kt.create_tenant("op-erin", monthlyGpuHours=1)
    kt.patch("/apis/kubetask.io/v1alpha1/tenants/op-erin/status",
             {"status": {"usage": [{"month": "2025-01", "gpuSeconds": 3600.0}]}})
    wait_until(lambda: tenant_status(kt, "op-erin").get("usage"), 30, "usage set")
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "g1", "namespace": "kubetask-op-erin"},
            "spec": {"image": "x", "resources": {"gpus": 1}}}
    path = "/apis/kubetask.io/v1alpha1/namespaces/kubetask-op-erin/tasks"

    def refused() -> bool:  # the operator's view of the Tenant's status follows its watch
        response = kt.client().post(path, json=body, params={"dryRun": "All"})
        return response.status_code == 403
    wait_until(refused, 30, "the webhook to see the used-up hours")
    response = kt.client().post(path, json=body)
    assert response.status_code == 403, response.text
    assert "Monthly GPU-hours used up: 1.0 of 1 h in 2025-01 for op-erin" in response.json()["message"]
    kt.clock.fixed = datetime(2025, 2, 1, 0, 5, tzinfo=UTC)
    response = kt.client().post(path, json=body)
    assert response.status_code == 201, response.text


def test_the_start_up_probe_is_answered_and_the_probe_label_changes_nothing_for_a_real_task(kt: Harness) -> None:
    # The operator said ready only after the apiserver called both webhooks for its dry-run probe.
    kt.create_tenant("op-pia")
    path = "/apis/kubetask.io/v1alpha1/namespaces/kubetask-op-pia/tasks"
    body = {"apiVersion": API, "kind": "Task",
            "metadata": {"name": "probe-like", "namespace": "kubetask-op-pia",
                         "labels": {"kubetask.io/admission-probe": "true"}},
            "spec": {"image": "x"}}
    dry = kt.client().post(path, json=body, params={"dryRun": "All"})
    assert dry.status_code == 400, dry.text
    assert "kubetask admission probe: mutated=yes" in dry.json()["message"]
    real = kt.client().post(path, json=body)
    assert real.status_code == 201, real.text
    assert real.json()["spec"]["user"] == "op-pia"  # defaulted by the mutating webhook as for any Task
    assert "kubetask.io/submitted-at" in real.json()["metadata"]["annotations"]


def test_webhook_rejections_through_kubectl(kt: Harness, kubectl: KubectlRunner) -> None:
    kt.create_tenant("op-frank", maxPending=2, maxGpusPerTask=1, maxTimeoutSeconds=600)
    ns = "kubetask-op-frank"
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def manifest(name: str, **spec: Any) -> str:
        body = {"image": "busybox", **spec}
        return json.dumps({"apiVersion": API, "kind": "Task", "metadata": {"name": name, "namespace": ns},
                           "spec": {k: v for k, v in body.items() if v is not None}})

    cases = [
        (manifest("g", resources={"gpus": 2}), "Too many GPUs requested: 2 (max 1 per task for op-frank)"),
        (manifest("t", timeoutSeconds=7200), "timeoutSeconds 7200 exceeds the maximum of 600 s for op-frank"),
        (manifest("u", image=None, template={"name": "no-such-template"}), "Unknown template 'no-such-template'"),
        (manifest("v", image=None, template={"name": "ollama-inference", "parameters": {"model": "m"}}),
         "missing required parameter 'prompt'"),
        (manifest("w", dependsOn=["ghost"]), f"Dependency 'ghost' does not exist in namespace {ns}"),
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
    kubectl("delete", "task", "p1", "-n", ns)
    wait_until(lambda: kt.get(API, "Task", "p1", ns) is None, 30, "p1 gone")
    kubectl("create", "-f", "-", input=manifest("p3", scheduledAt=later))
    kubectl("delete", "task", "p2", "p3", "-n", ns)
    wait_until(lambda: kt.get(API, "Task", "p3", ns) is None, 30, "p3 gone")
    # immutable once admitted; user never changes
    kubectl("create", "-f", "-", input=manifest("run", podAnnotations={"kubetask.dev/sim-duration-seconds": "0.1"}))
    kt.wait_phase("run", "Succeeded", ns)
    proc = kubectl("patch", "task", "run", "-n", ns, "--type=merge", "-p", '{"spec": {"image": "other"}}',
                   check=False)
    # refused by the CRD's own CEL rule or by the webhook, whichever the apiserver runs first
    assert proc.returncode != 0 and ("immutable" in proc.stderr or "cannot change" in proc.stderr), proc.stderr
    proc = kubectl("patch", "task", "run", "-n", ns, "--type=merge", "-p", '{"spec": {"user": "mallory"}}',
                   check=False)
    assert proc.returncode != 0 and "immutable" in proc.stderr, proc.stderr
    out = kubectl("get", "tasks", "-n", ns).stdout
    assert "run" in out


def test_cycle_is_rejected(kt: Harness) -> None:
    kt.create_task("c1", scheduledAt="2099-01-01T00:00:00Z")
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "c1x", "namespace": kt.namespace},
            "spec": {"image": "x", "dependsOn": ["c1x"]}}
    response = kt.client().post(f"/apis/kubetask.io/v1alpha1/namespaces/{kt.namespace}/tasks", json=body)
    assert response.status_code == 400 and "cannot depend on itself" in response.json()["message"], response.text


def test_node_pause_label_holds_new_work(kt: Harness) -> None:
    nodes = list(GPU_NODES.values())
    try:
        for node in nodes:
            kt.patch(f"/api/v1/nodes/{node}", {"metadata": {"labels": {"kubetask.io/paused": "true"}}})
        kt.create_task("held", resources={"gpus": 1})
        wait_until(lambda: "paused" in str((kt.task("held").get("status") or {}).get("message")), 30,
                   "paused message")
        assert kt.get("batch/v1", "Job", "held-1", kt.namespace) is None
        kt.patch(f"/api/v1/nodes/{GPU_NODES['A100']}", {"metadata": {"labels": {"kubetask.io/paused": None}}})
        assert kt.wait_phase("held", "Succeeded")["status"]["nodeName"] == GPU_NODES["A100"]
    finally:  # the nodes are the whole session's
        for node in nodes:
            kt.patch(f"/api/v1/nodes/{node}", {"metadata": {"labels": {"kubetask.io/paused": None}}})


def _reviews(kt: Harness, webhook: str) -> float:
    """How many reviews of ``webhook`` the running operator answered (its review-duration histogram's count)."""
    assert kt.handle is not None
    count = kt.handle.metrics.registry.get_sample_value("kubetask_admission_review_duration_seconds_count",
                                                        {"webhook": webhook})
    return count or 0.0


def test_reviews_are_answered_and_timed_by_webhook_on_the_admission_thread(kt: Harness) -> None:
    threads = {thread.name for thread in threading.enumerate()}
    assert "kubetask-admission" in threads  # the HTTPS server of the reviews runs on its own thread and loop
    before = {hook: _reviews(kt, hook) for hook in ("defaults", "rules", "tenant-rules")}
    kt.create_tenant("op-grace", maxPending=1)  # a Tenant's review goes to the operator's loop, and back
    ns = "kubetask-op-grace"
    kt.create_task("first", ns, scheduledAt="2099-01-01T00:00:00Z")
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "second", "namespace": ns},
            "spec": {"image": "busybox", "scheduledAt": "2099-01-01T00:00:00Z"}}
    refused = kt.client().post(f"/apis/kubetask.io/v1alpha1/namespaces/{ns}/tasks", json=body)
    # the pending limit is counted from the admission thread: the watch event of "first" or its memory of it
    assert refused.status_code == 400 and "Too many pending tasks (max 1)" in refused.json()["message"], refused.text
    created = kt.get(API, "Task", "first", ns)
    assert created is not None and created["spec"]["user"] == "op-grace"  # defaulted by the mutating review
    after = {hook: _reviews(kt, hook) for hook in before}
    assert after["defaults"] - before["defaults"] >= 2  # both creates were defaulted before the rules ran
    assert after["rules"] - before["rules"] >= 2
    assert after["tenant-rules"] - before["tenant-rules"] >= 1
