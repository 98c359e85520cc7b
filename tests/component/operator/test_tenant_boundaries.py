"""Tenant boundaries on the real control plane (issue 12): each finding's reproducer, now refused.

Every rule holds twice: the operator's webhook refuses the Tenant (or Task, or TaskTemplate), and
the operator's own reconcile and scheduler refuse to act on one that slipped in while the webhook
was down (these tests start the operator with ``webhook_enabled=False`` for that).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import API, Harness, create_namespace, wait_until

from kubetask.core.times import parse_time

TENANTS = "/apis/kubetask.io/v1alpha1/tenants"
Made = list[tuple[str | None, str | None]]


@pytest.fixture
def extra(harness: Harness) -> Iterator[Made]:
    """``(tenant, namespace)`` pairs (either may be ``None``) this test made beyond the harness's own:
    deleted at teardown (never a system namespace)."""
    made: Made = []
    yield made
    harness.stop()
    tenants = [tenant for tenant, _ in made if tenant]
    for tenant in tenants:
        harness.cluster.delete(API, "Tenant", tenant)
    for tenant in tenants:
        wait_until(lambda t=tenant: harness.get(API, "Tenant", t) is None, 30, f"tenant {tenant} gone")
    for _, namespace in made:
        if namespace and not namespace.startswith("kube-") and namespace != "default":
            harness.cluster.admin().delete(f"/api/v1/namespaces/{namespace}")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _post_tenant(kt: Harness, name: str, namespace: str | None, subjects: list[dict[str, Any]] | None = None
                 ) -> Any:
    spec: dict[str, Any] = {}
    if namespace:
        spec["namespace"] = namespace
    if subjects:
        spec["subjects"] = subjects
    return kt.client().post(TENANTS, json={"apiVersion": API, "kind": "Tenant", "metadata": {"name": name},
                                           "spec": spec})


def _ready(kt: Harness, name: str) -> dict[str, Any]:
    tenant = kt.get(API, "Tenant", name) or {}
    return next((c for c in (tenant.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def _wait_ready(kt: Harness, name: str, value: str) -> dict[str, Any]:
    wait_until(lambda: _ready(kt, name).get("status") == value, 30, lambda: f"{name} Ready={value}: {_ready(kt, name)}")
    return _ready(kt, name)


def _user(name: str) -> list[dict[str, Any]]:
    return [{"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}]


def _subjects(kt: Harness, namespace: str) -> list[str]:
    binding = kt.get("rbac.authorization.k8s.io/v1", "RoleBinding", "kubetask-tenant", namespace) or {}
    return sorted(s["name"] for s in binding.get("subjects") or [])


# ---------------------------------------------------------------------- namespace takeover


def test_the_webhook_refuses_a_second_claim_without_naming_the_owner(kt: Harness, extra: Made) -> None:
    victim, intruder = _name("victim"), _name("intruder")
    namespace = f"kubetask-{victim}"
    extra.append((victim, namespace))
    assert _post_tenant(kt, victim, None, _user("victim@example.com")).status_code == 201
    kt.wait_tenant_namespace(victim)
    _wait_ready(kt, victim, "True")  # the RoleBinding comes after the quota the line above waits for
    # by its default name and by an explicit one, the namespace is taken
    for asked in (namespace, None):
        response = _post_tenant(kt, intruder, asked, _user("mallory@example.com"))
        if asked is None:  # its own default namespace is free: that is fine
            assert response.status_code == 201, response.text
            extra.append((intruder, f"kubetask-{intruder}"))
            continue
        assert response.status_code == 409, response.text
        message = response.json()["message"]
        assert "spec.namespace" in message and namespace in message and "another tenant" in message
        assert victim not in message.replace(namespace, "")  # who owns it stays unsaid
    # changing spec.namespace onto the victim's later is refused too (CEL and webhook: immutable)
    response = kt.client().patch(f"{TENANTS}/{intruder}", json={"spec": {"namespace": namespace}},
                                 headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 422, response.text
    assert "spec.namespace is immutable" in response.json()["message"]
    assert _subjects(kt, namespace) == ["victim@example.com"]


def test_a_claim_that_slipped_past_the_webhook_takes_nothing_over(harness: Harness, extra: Made) -> None:
    victim, intruder = _name("victim"), _name("intruder")
    namespace = f"kubetask-{victim}"
    extra.extend([(victim, namespace), (intruder, None)])
    harness.start(webhook_enabled=False)  # the webhook is down: only the operator's own check stands
    assert _post_tenant(harness, victim, None, _user("victim@example.com")).status_code == 201
    harness.wait_tenant_namespace(victim)
    _wait_ready(harness, victim, "True")
    # Claims are ordered by creationTimestamp (whole seconds), then name: the intruder comes a second later.
    created = parse_time((harness.get(API, "Tenant", victim) or {})["metadata"]["creationTimestamp"])
    assert created is not None
    wait_until(lambda: datetime.now(UTC) >= created + timedelta(seconds=1), 5, "the next second")
    assert _post_tenant(harness, intruder, namespace, _user("mallory@example.com")).status_code == 201
    refused = _wait_ready(harness, intruder, "False")
    assert refused["reason"] == "NAMESPACE_TAKEN" and "spec.namespace" in refused["message"]
    assert victim not in refused["message"].replace(namespace, "")
    assert _subjects(harness, namespace) == ["victim@example.com"]  # the RoleBinding is still the victim's
    # With the webhook back, a new Task in the namespace is the victim's, not the intruder's.
    harness.stop()
    harness.start()
    harness.create_task("mine", namespace)
    task = harness.task("mine", namespace)
    assert task["spec"]["user"] == victim
    harness.wait_phase("mine", "Succeeded", namespace)
    # and the intruder's usage report claims no namespace
    wait_until(lambda: ((harness.get(API, "Tenant", intruder) or {}).get("status") or {}).get("namespace") == "",
               30, "the intruder's status to name no namespace")
    assert ((harness.get(API, "Tenant", victim) or {}).get("status") or {}).get("namespace") == namespace


def test_when_the_owner_goes_the_refused_claimant_takes_the_namespace_over(harness: Harness, extra: Made) -> None:
    first, second = _name("first"), _name("second")
    namespace = f"kubetask-{first}"
    extra.extend([(second, namespace)])
    harness.start(webhook_enabled=False)
    assert _post_tenant(harness, first, None, _user("first@example.com")).status_code == 201
    harness.wait_tenant_namespace(first)
    _wait_ready(harness, first, "True")
    created = parse_time((harness.get(API, "Tenant", first) or {})["metadata"]["creationTimestamp"])
    assert created is not None
    wait_until(lambda: datetime.now(UTC) >= created + timedelta(seconds=1), 5, "the next second")
    assert _post_tenant(harness, second, namespace, _user("second@example.com")).status_code == 201
    assert _wait_ready(harness, second, "False")["reason"] == "NAMESPACE_TAKEN"
    assert _subjects(harness, namespace) == ["first@example.com"]
    harness.cluster.delete(API, "Tenant", first)
    # no spec change and no restart: the operator hands the namespace on when it sees the owner go
    assert _wait_ready(harness, second, "True")["reason"] == "Reconciled"
    wait_until(lambda: _subjects(harness, namespace) == ["second@example.com"], 30, "the successor's RoleBinding")


# ---------------------------------------------------------------------- system namespaces


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "default"])
def test_the_webhook_refuses_system_namespaces(kt: Harness, namespace: str) -> None:
    response = _post_tenant(kt, _name("evil"), namespace)
    assert response.status_code == 403, response.text
    message = response.json()["message"]
    assert "spec.namespace" in message and namespace in message and "system namespace" in message


def test_the_release_namespace_is_refused_unless_allowlisted(harness: Harness, extra: Made) -> None:
    release = _name("kt-release")
    create_namespace(harness.cluster, release, tenant=False)
    extra.append((None, release))
    harness.start(release_namespace=release, tenant_namespace_allowlist=["default"])
    response = _post_tenant(harness, _name("evil"), release)
    assert response.status_code == 403 and "system namespace" in response.json()["message"], response.text
    # an allowlisted system namespace may be claimed (dry run: nothing is written into "default")
    response = harness.client().post(TENANTS, params={"dryRun": "All"}, json={
        "apiVersion": API, "kind": "Tenant", "metadata": {"name": _name("dev")}, "spec": {"namespace": "default"}})
    assert response.status_code == 201, response.text
    assert _post_tenant(harness, _name("evil"), "kube-system").status_code == 403  # only what the list names


def test_a_system_namespace_that_slipped_in_is_left_alone_and_kept(harness: Harness, extra: Made) -> None:
    evil = _name("evil")
    extra.append((evil, "kube-system"))
    harness.start(webhook_enabled=False, delete_namespace_with_tenant=True)
    assert _post_tenant(harness, evil, "kube-system", _user("mallory@example.com")).status_code == 201
    refused = _wait_ready(harness, evil, "False")
    assert refused["reason"] == "SYSTEM_NAMESPACE"
    for kind, name in (("ResourceQuota", "kubetask-quota"), ("LimitRange", "kubetask-limits")):
        assert harness.get("v1", kind, name, "kube-system") is None, kind
    for kind in ("Role", "RoleBinding"):
        assert harness.get("rbac.authorization.k8s.io/v1", kind, "kubetask-tenant", "kube-system") is None, kind
    labels = (harness.get("v1", "Namespace", "kube-system") or {})["metadata"].get("labels") or {}
    assert "kubetask.io/tenant" not in labels
    harness.cluster.delete(API, "Tenant", evil)
    wait_until(lambda: harness.get(API, "Tenant", evil) is None, 30, "the Tenant deleted (its finalizer ran)")
    kube_system = harness.get("v1", "Namespace", "kube-system")
    assert kube_system is not None and kube_system["status"]["phase"] == "Active"
    assert not kube_system["metadata"].get("deletionTimestamp")


# ---------------------------------------------------------------------- namespace deletion


def test_only_a_namespace_kubetask_created_is_deleted_with_its_tenant(harness: Harness, extra: Made) -> None:
    made, adopted = _name("made"), _name("adopted")
    existing = _name("existing")
    create_namespace(harness.cluster, existing, tenant=False)
    extra.extend([(made, f"kubetask-{made}"), (adopted, existing)])
    harness.start(delete_namespace_with_tenant=True)
    assert _post_tenant(harness, made, None).status_code == 201
    assert _post_tenant(harness, adopted, existing).status_code == 201
    harness.wait_tenant_namespace(made)
    _wait_ready(harness, adopted, "True")
    created = harness.get("v1", "Namespace", f"kubetask-{made}") or {}
    assert created["metadata"]["annotations"]["kubetask.io/created-for-tenant"] == made
    assert created["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubetask"
    before = harness.get("v1", "Namespace", existing) or {}
    assert before["metadata"]["labels"]["kubetask.io/tenant"] == adopted  # labelled with its tenant, no more
    assert "kubetask.io/created-for-tenant" not in (before["metadata"].get("annotations") or {})
    assert "app.kubernetes.io/managed-by" not in before["metadata"]["labels"]
    for tenant in (made, adopted):
        harness.cluster.delete(API, "Tenant", tenant)
        wait_until(lambda t=tenant: harness.get(API, "Tenant", t) is None, 30, f"tenant {tenant} deleted")

    def gone_or_going(name: str) -> bool:
        ns = harness.get("v1", "Namespace", name)
        return ns is None or bool(ns["metadata"].get("deletionTimestamp"))

    wait_until(lambda: gone_or_going(f"kubetask-{made}"), 30, "the created namespace to be deleted")
    kept = harness.get("v1", "Namespace", existing)
    assert kept is not None and not kept["metadata"].get("deletionTimestamp")


# ---------------------------------------------------------------------- Tasks outside tenant namespaces


def test_a_task_outside_any_tenant_namespace_is_refused(kt: Harness, extra: Made) -> None:
    stray = _name("stray")
    create_namespace(kt.cluster, stray, tenant=False)
    extra.append((None, stray))
    body = {"apiVersion": API, "kind": "Task", "metadata": {"name": "t", "namespace": stray},
            "spec": {"image": "busybox"}}
    response = kt.client().post(f"/apis/kubetask.io/v1alpha1/namespaces/{stray}/tasks", json=body)
    assert response.status_code == 403, response.text
    message = response.json()["message"]
    assert f"namespace {stray} belongs to no kubetask Tenant" in message
    assert "your tenant's namespace" in message
    assert kt.namespace not in message  # other tenants' namespaces are not listed


def test_a_task_that_slipped_in_outside_a_tenant_waits_and_never_runs(harness: Harness, extra: Made) -> None:
    stray, owner = _name("stray"), _name("owner")
    create_namespace(harness.cluster, stray, tenant=False)
    extra.extend([(owner, stray)])
    harness.start(webhook_enabled=False)
    harness.create_task("orphan", stray)

    def held() -> bool:
        status = harness.task("orphan", stray).get("status") or {}
        return any(c.get("reason") == "NoTenant" and c.get("status") == "False" for c in status.get("conditions") or [])

    wait_until(held, 30, lambda: f"the orphan held: {harness.task('orphan', stray).get('status')}")
    status = harness.task("orphan", stray)["status"]
    assert status["phase"] in ("Pending", "Queued") and "belongs to no kubetask Tenant" in status["message"]
    assert harness.jobs(stray) == []
    # once a Tenant claims the namespace, the task runs (as that tenant)
    assert _post_tenant(harness, owner, stray).status_code == 201
    harness.wait_phase("orphan", "Succeeded", stray)
    assert [j["metadata"]["name"] for j in harness.jobs(stray)] == ["orphan-1"]


# ---------------------------------------------------------------------- immutability (CRD, no webhook)


def test_spec_namespace_is_immutable_in_the_crd_itself(harness: Harness, extra: Made) -> None:
    name = _name("fixed")
    extra.append((name, None))
    # No operator at all: the apiserver's CEL transition rules alone refuse the change.
    assert _post_tenant(harness, name, f"ns-{name}").status_code == 201
    for patch, words in (({"spec": {"namespace": "elsewhere"}}, "spec.namespace is immutable"),
                         ({"spec": {"namespace": None}}, "spec.namespace cannot be removed")):
        response = harness.client().patch(f"{TENANTS}/{name}", json=patch,
                                          headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 422, response.text
        assert words in response.json()["message"]
    # other fields still change
    response = harness.client().patch(f"{TENANTS}/{name}", json={"spec": {"displayName": "Fixed"}},
                                      headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------- TaskTemplates


def test_a_template_parameter_both_required_and_defaulted_is_refused(kt: Harness) -> None:
    name = _name("contradiction")
    body = {"apiVersion": API, "kind": "TaskTemplate", "metadata": {"name": name},
            "spec": {"podTemplate": {"image": "busybox"},
                     "parameters": [{"name": "ok"}, {"name": "model", "required": True, "default": "gpt"}]}}
    response = kt.client().post("/apis/kubetask.io/v1alpha1/tasktemplates", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "parameter 'model' is required and has a default" in message
    # a sound template passes; making it contradictory by an update is refused too
    body["spec"]["parameters"][1].pop("default")
    response = kt.client().post("/apis/kubetask.io/v1alpha1/tasktemplates", json=body)
    assert response.status_code == 201, response.text
    try:
        response = kt.client().patch(f"/apis/kubetask.io/v1alpha1/tasktemplates/{name}",
                                     json={"spec": {"parameters": [{"name": "ok"}, {"name": "model", "required": True,
                                                                                    "default": "x"}]}},
                                     headers={"Content-Type": "application/merge-patch+json"})
        assert response.status_code == 422 and "required and has a default" in response.json()["message"]
    finally:
        kt.cluster.delete(API, "TaskTemplate", name)


def test_the_operator_registers_tenant_and_template_webhooks_failing_closed(kt: Harness) -> None:
    config = kt.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "kubetask.io")
    assert config is not None
    hooks = {hook["name"]: hook for hook in config["webhooks"]}
    for name, resource in (("tenant-rules.kubetask.io", "tenants"), ("template-rules.kubetask.io", "tasktemplates"),
                           ("rules.kubetask.io", "tasks")):
        hook = hooks[name]
        assert hook["failurePolicy"] == "Fail", name
        assert [r["resources"] for r in hook["rules"]] == [[resource]], name
        assert sorted(hook["rules"][0]["operations"]) == ["CREATE", "UPDATE"], name
