"""Tenant boundaries (issue 12): namespace claims, system namespaces, created-by-kubetask deletion,
Tasks outside tenant namespaces, and TaskTemplate parameter rules — the pure rules, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetask.core.admission import Reason, namespace_claim, require_tenant, validate_template
from kubetask.core.cycle import NO_TENANT, CycleSettings, Snapshot, TaskView, plan_pass
from kubetask.core.scheduling import MILLI, NodeInfo, to_milli
from kubetask.core.templates import template_spec_problem
from kubetask.core.tenants import (
    ANNOTATION_CREATED_FOR,
    build_namespace,
    build_tenant_objects,
    claim_order,
    created_for,
    deletes_namespace_with_tenant,
    existing_namespace_patch,
    namespace_owners,
    system_namespace,
)


def tenant(name: str, namespace: str | None = None, created: str | None = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if created:
        meta["creationTimestamp"] = created
    return {"metadata": meta, "spec": {"namespace": namespace} if namespace else {}}


ALICE = tenant("alice", "team-a", "2026-01-01T00:00:00Z")
BOB = tenant("bob", None, "2026-01-02T00:00:00Z")  # kubetask-bob


CLAIMS = [
    # (case, the tenant, others, kwargs, expected reason or None)
    ("a free namespace", tenant("carol", "team-c"), [ALICE, BOB], {}, None),
    ("the default name", tenant("carol"), [ALICE, BOB], {}, None),
    ("another's explicit namespace", tenant("mallory", "team-a"), [ALICE, BOB], {"creating": True},
     Reason.NAMESPACE_TAKEN),
    ("another's derived namespace", tenant("mallory", "kubetask-bob"), [ALICE, BOB], {"creating": True},
     Reason.NAMESPACE_TAKEN),
    ("a newcomer in the same second, earlier name", tenant("aaa", "team-a", "2026-01-01T00:00:00Z"), [ALICE],
     {"creating": True}, Reason.NAMESPACE_TAKEN),
    ("an existing later claimant (slipped in)", tenant("mallory", "team-a", "2026-03-01T00:00:00Z"), [ALICE], {},
     Reason.NAMESPACE_TAKEN),
    ("the first claimant itself", ALICE, [ALICE, tenant("mallory", "team-a", "2026-03-01T00:00:00Z")], {}, None),
    ("same second: the name decides", tenant("aaa", "team-a", "2026-01-01T00:00:00Z"), [ALICE], {}, None),
    ("kube-system", tenant("evil", "kube-system"), [], {}, Reason.SYSTEM_NAMESPACE),
    ("kube-public", tenant("evil", "kube-public"), [], {}, Reason.SYSTEM_NAMESPACE),
    ("kube-node-lease", tenant("evil", "kube-node-lease"), [], {}, Reason.SYSTEM_NAMESPACE),
    ("default", tenant("evil", "default"), [], {}, Reason.SYSTEM_NAMESPACE),
    ("the release namespace", tenant("evil", "kubetask-system"), [], {"release_namespaces": {"kubetask-system"}},
     Reason.SYSTEM_NAMESPACE),
    ("an allowlisted system namespace", tenant("dev", "default"), [], {"allowlist": {"default"}}, None),
    ("allowlisting one leaves the others", tenant("dev", "kube-system"), [], {"allowlist": {"default"}},
     Reason.SYSTEM_NAMESPACE),
    ("kube-ish but not kube-", tenant("ok", "kubeflow"), [], {}, None),
    ("namespace changed", tenant("alice", "team-z"), [ALICE], {"old": ALICE}, Reason.IMMUTABLE_FIELD),
    ("namespace set to what it was derived as", tenant("bob", "kubetask-bob"), [BOB], {"old": BOB}, None),
    ("namespace removed (derived differs)", tenant("alice"), [ALICE], {"old": ALICE}, Reason.IMMUTABLE_FIELD),
    ("a loser's other changes stay possible", tenant("mallory", "team-a", "2026-03-01T00:00:00Z"), [ALICE],
     {"old": tenant("mallory", "team-a", "2026-03-01T00:00:00Z")}, None),
]


@pytest.mark.parametrize(("case", "subject", "others", "kwargs", "expected"), CLAIMS, ids=[c[0] for c in CLAIMS])
def test_namespace_claims(case: str, subject: dict[str, Any], others: list[dict[str, Any]], kwargs: dict[str, Any],
                          expected: Reason | None) -> None:
    verdict = namespace_claim(subject, others, **kwargs)
    assert verdict.reason is expected, (case, verdict)
    if expected is not None:
        assert not verdict.allowed and verdict.field == "spec.namespace" and "spec.namespace" in verdict.message
        for other in others:  # never who owns it
            other_name = other["metadata"]["name"]
            asked = str((subject.get("spec") or {}).get("namespace") or "")
            if other_name != subject["metadata"]["name"] and other_name not in asked:
                assert other_name not in verdict.message, verdict.message
    else:
        assert verdict.allowed


def test_claim_status_codes() -> None:
    assert namespace_claim(tenant("m", "team-a"), [ALICE], creating=True).code == 409
    assert namespace_claim(tenant("m", "kube-system"), []).code == 403
    assert namespace_claim(tenant("alice", "x"), [], old=ALICE).code == 422


def test_first_claimant_owns_the_namespace() -> None:
    late = tenant("mallory", "team-a", "2026-05-01T00:00:00Z")
    same_second = tenant("aaron", "team-a", "2026-01-01T00:00:00Z")
    assert namespace_owners([late, ALICE, BOB]) == {"team-a": "alice", "kubetask-bob": "bob"}
    assert namespace_owners([ALICE, same_second])["team-a"] == "aaron"  # same second: name order
    # a Tenant being created (no timestamp yet) comes after every existing one
    assert claim_order(tenant("a", created=None)) > claim_order(late)
    # system namespaces belong to nobody, whoever names them
    owners = namespace_owners([tenant("evil", "kube-system"), tenant("dev", "default"), BOB],
                              release_namespaces={"kubetask-system"})
    assert owners == {"kubetask-bob": "bob"}
    assert namespace_owners([tenant("dev", "default")], allowlist={"default"}) == {"default": "dev"}


@pytest.mark.parametrize(("namespace", "system"), [
    ("kube-system", True), ("kube-public", True), ("kube-anything", True), ("default", True),
    ("kubetask-system", True), ("kubernetes", False), ("kubetask-alice", False), ("team-a", False),
])
def test_system_namespaces(namespace: str, system: bool) -> None:
    assert system_namespace(namespace, release_namespaces={"kubetask-system"}) is system


NAMESPACES = [
    # (namespace object, tenant being deleted, deleted with it?)
    (build_namespace("alice", "kubetask-alice"), "alice", True),
    (build_namespace("alice", "kubetask-alice"), "mallory", False),
    ({"metadata": {"name": "team-a", "labels": {"kubetask.io/tenant": "alice"}}}, "alice", False),
    ({"metadata": {"name": "kube-system"}}, "evil", False),
    (None, "alice", False),
]


@pytest.mark.parametrize(("namespace", "deleted_tenant", "deleted"), NAMESPACES)
def test_only_namespaces_kubetask_created_go_with_their_tenant(namespace: dict[str, Any] | None,
                                                                deleted_tenant: str, deleted: bool) -> None:
    assert deletes_namespace_with_tenant(namespace, deleted_tenant) is deleted


def test_created_and_existing_namespaces_are_marked_differently() -> None:
    made = build_tenant_objects(tenant("alice"))[0]
    assert made["kind"] == "Namespace"
    assert made["metadata"]["annotations"] == {ANNOTATION_CREATED_FOR: "alice"}
    assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubetask"
    assert created_for(made) == "alice"
    existing = existing_namespace_patch("alice")
    assert existing == {"metadata": {"labels": {"kubetask.io/tenant": "alice"}}}  # not "created", not "managed"
    assert created_for({"metadata": {"name": "team-a"}}) is None


def test_tasks_outside_tenant_namespaces_are_refused_without_naming_others() -> None:
    verdict = require_tenant("scratch", None)
    assert verdict.reason is Reason.NO_TENANT and verdict.field == "metadata.namespace"
    assert "scratch" in verdict.message and "your tenant's namespace" in verdict.message
    assert require_tenant("team-a", "alice").allowed


TEMPLATES = [
    # (parameters, expected field or None, message substring)
    ([{"name": "a", "required": True}], None, ""),
    ([{"name": "a", "default": "x"}], None, ""),
    ([{"name": "a", "required": False, "default": "x"}], None, ""),
    ([{"name": "a"}, {"name": "b", "required": True, "default": "x"}], "spec.parameters[1].default",
     "parameter 'b' is required and has a default"),
    ([{"name": "a", "required": True, "default": 0, "type": "integer"}], "spec.parameters[0].default",
     "drop the default, or set required: false"),
    ([{"name": "n", "type": "integer", "default": "many"}], "spec.parameters[0].default", "must be an integer"),
    ([{"name": "c", "enum": ["red", "blue"], "default": "green"}], "spec.parameters[0].default",
     "must be one of red, blue"),
    ([{"name": "c", "enum": ["red", "blue"], "default": "red"}], None, ""),
    ([{"name": "o", "type": "object", "default": {"k": 1}}], None, ""),
    ([], None, ""),
]


@pytest.mark.parametrize(("parameters", "field", "words"), TEMPLATES)
def test_template_parameter_rules(parameters: list[dict[str, Any]], field: str | None, words: str) -> None:
    spec = {"podTemplate": {"image": "busybox"}, "parameters": parameters}
    problem = template_spec_problem(spec)
    verdict = validate_template(spec)
    if field is None:
        assert problem is None and verdict.allowed
    else:
        assert problem is not None and problem[0] == field and words in problem[1]
        assert verdict.reason is Reason.INVALID_TEMPLATE and verdict.field == field and verdict.code == 422
        assert verdict.message == f"{field}: {problem[1]}"  # kubectl shows the message only: it names the field


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _node() -> NodeInfo:
    return NodeInfo(name="cpu-1", labels={}, taints=[], allocatable={"gpus": 0, "cpu": 64 * MILLI,
                                                                      "memory": to_milli("512Gi")},
                    used={"gpus": 0, "cpu": 0, "memory": 0}, gpu_product="", is_gpu_node=False)


@pytest.mark.parametrize("has_tenant", [True, False])
def test_the_scheduler_holds_a_task_outside_any_tenant_namespace(has_tenant: bool) -> None:
    """A Task that slipped past the webhook into a namespace of no Tenant waits, with a reason; never runs."""
    stored = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
              "metadata": {"name": "orphan", "namespace": "scratch", "uid": "u", "generation": 1,
                           "creationTimestamp": "2025-03-01T11:00:00Z"},
              "spec": {"image": "busybox", "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"}}}
    view = TaskView(task=stored, tenant="scratch", has_tenant=has_tenant)
    snapshot = Snapshot(changed=[view], tasks={view.key: stored}, queued={}, running={}, nodes=[_node()])
    plan = plan_pass(snapshot, NOW, CycleSettings(callback_secret="s"))
    status = plan.actions[view.key].plan.status
    if has_tenant:
        assert plan.admitted == [view.key] and status["phase"] == "Running"
        return
    assert plan.admitted == [] and plan.queued.get(view.key) is None
    assert status["phase"] in ("Pending", "Queued") and not status.get("executions")
    held = [c for c in status["conditions"] if c["type"] == "Admitted"]
    assert held and held[0]["status"] == "False" and held[0]["reason"] == NO_TENANT
    assert "namespace scratch belongs to no kubetask Tenant" in status["message"]
