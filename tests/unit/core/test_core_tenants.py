"""Tenant builders and monthly usage accounting."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetask.core.tenants import (
    add_usage,
    build_tenant_objects,
    gpu_seconds_in_month,
    month_key,
    next_month_start,
    quota_hard,
    tenant_namespace,
    usage_status,
)

TENANT = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "alice", "uid": "u1"},
          "spec": {"limits": {"maxRunning": 4, "gpuQuota": 8, "cpuQuota": "16", "memoryQuota": "64Gi",
                              "maxGpusPerTask": 2},
                   "subjects": [{"kind": "User", "name": "alice@example.com"},
                                {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}]}}


def test_namespace_name() -> None:
    assert tenant_namespace("alice", {}, "kubetask-") == "kubetask-alice"
    assert tenant_namespace("alice", {"namespace": "team-a"}) == "team-a"


def test_objects() -> None:
    ns, quota, limits, role, binding = build_tenant_objects(TENANT)
    assert ns["metadata"] == {"name": "kubetask-alice", "labels": {"kubetask.io/tenant": "alice",
                                                                   "app.kubernetes.io/managed-by": "kubetask"},
                              "annotations": {"kubetask.io/created-for-tenant": "alice"}}
    assert "ownerReferences" not in ns["metadata"]  # the namespace outlives the tenant
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "8", "requests.cpu": "16",
                                     "requests.memory": "64Gi", "pods": "4", "count/jobs.batch": "1000"}
    assert quota["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert "max" not in limits["spec"]["limits"][0]  # a max would become every pod's default GPU limit
    assert limits["spec"]["limits"][0]["defaultRequest"] == {"cpu": "1", "memory": "2Gi"}
    assert any("tasks" in rule["resources"] and "create" in rule["verbs"] for rule in role["rules"])
    assert binding["subjects"][0] == {"kind": "User", "name": "alice@example.com",
                                      "apiGroup": "rbac.authorization.k8s.io"}
    assert binding["subjects"][1] == {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_quota_defaults() -> None:
    hard = quota_hard({}, "example.com/gpu")
    assert hard == {"pods": "500", "count/jobs.batch": "1000"}
    assert quota_hard({"gpuQuota": 2}, "example.com/gpu")["requests.example.com/gpu"] == "2"


def test_usage_accumulates_per_month_and_resets() -> None:
    usage = add_usage(None, "2025-01", 100)
    usage = add_usage(usage, "2025-01", 50.5)
    usage = add_usage(usage, "2025-02", 10)
    assert usage == [{"month": "2025-02", "gpuSeconds": 10.0}, {"month": "2025-01", "gpuSeconds": 150.5}]
    assert gpu_seconds_in_month({"usage": usage}, "2025-01") == 150.5
    status = usage_status({"usage": usage}, now=datetime(2025, 3, 2, tzinfo=UTC), running=1, pending=2,
                          gpus_in_use=3, namespace="ns")
    assert status["gpuSecondsThisMonth"] == 0.0 and status["month"] == "2025-03"
    many = None
    for month in range(1, 13):
        many = add_usage(many, f"2024-{month:02d}", 1)
    assert len(add_usage(many, "2025-01", 1)) == 12


def test_months() -> None:
    assert month_key(datetime(2025, 12, 31, 23, tzinfo=UTC)) == "2025-12"
    assert next_month_start(datetime(2025, 12, 5, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)


def test_tenant_object_patch_removes_quota_keys_the_tenant_dropped() -> None:
    from kubetask.core.tenants import tenant_object_patch

    desired = {"kind": "ResourceQuota", "metadata": {"labels": {"kubetask.io/tenant": "alice"}},
               "spec": {"hard": {"pods": "10"}}}
    current = {"spec": {"hard": {"pods": "5", "requests.nvidia.com/gpu": "8"}}}
    patch = tenant_object_patch(desired, current)
    assert patch["spec"]["hard"] == {"pods": "10", "requests.nvidia.com/gpu": None}
    assert patch["metadata"]["labels"] == {"kubetask.io/tenant": "alice"}
    role = tenant_object_patch({"kind": "Role", "metadata": {}, "rules": [{"verbs": ["get"]}]}, {})
    assert role == {"metadata": {"labels": {}}, "rules": [{"verbs": ["get"]}]}
