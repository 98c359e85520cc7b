"""Admission rules shared by the webhook and the REST API: messages and HTTP codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetask.core.admission import (
    ADMISSION_PROBE_LABEL,
    HTTP_STATUS,
    Reason,
    admission_probe,
    count_pending,
    default_spec,
    find_cycle,
    placement_warnings,
    require_tenant,
    validate_task,
)

NOW = datetime(2025, 3, 15, tzinfo=UTC)
TEMPLATES = {"llm": {"parameters": [{"name": "prompt", "required": True}, {"name": "n", "type": "integer"}],
                     "defaults": {"resources": {"gpus": 1}, "timeoutSeconds": 600}}}
TENANT = {"limits": {"maxPending": 50, "maxGpusPerTask": 2, "gpuQuota": 4, "monthlyGpuHours": 10,
                     "maxTimeoutSeconds": 3600}}


def check(spec: dict[str, Any], **kw: Any) -> tuple[bool, int, str]:
    args: dict[str, Any] = {"name": "t", "namespace": "kubetask-alice", "tenant_name": "alice",
                            "tenant_spec": TENANT, "templates": TEMPLATES, "existing": {"a": [], "b": ["a"]},
                            "now": NOW}
    args.update(kw)
    verdict = validate_task(spec, **args)
    return verdict.allowed, verdict.code, verdict.message


@pytest.mark.parametrize(("spec", "kw", "code", "message"), [
    ({"image": "x"}, {}, 200, ""),
    ({"image": "x"}, {"pending_count": 50}, 400, "Too many pending tasks (max 50)"),
    ({"image": "x", "resources": {"gpus": 3}}, {}, 403, "Too many GPUs requested: 3 (max 2 per task for alice)"),
    ({"image": "x", "resources": {"gpus": 2}},
     {"tenant_spec": {"limits": {"gpuQuota": 1}}}, 403, "Task needs 2 GPUs but alice's GPU quota is 1"),
    ({"image": "x", "timeoutSeconds": 7200}, {}, 403, "timeoutSeconds 7200 exceeds the maximum of 3600 s for alice"),
    ({"image": "x", "resources": {"gpus": 1}},
     {"tenant_status": {"usage": [{"month": "2025-03", "gpuSeconds": 36000}]}}, 403,
     "Monthly GPU-hours used up: 10.0 of 10 h in 2025-03 for alice; the allowance resets on 2025-04-01"),
    ({"image": "x", "resources": {"gpus": 0}},
     {"tenant_status": {"usage": [{"month": "2025-03", "gpuSeconds": 36000}]}}, 200, ""),
    ({"image": "x", "resources": {"gpus": 1}},
     {"tenant_status": {"usage": [{"month": "2025-02", "gpuSeconds": 36000}]}}, 200, ""),
    ({"template": {"name": "nope"}}, {}, 400, "Unknown template 'nope' (available: llm)"),
    ({"template": {"name": "llm", "parameters": {"n": "x"}}}, {}, 422,
     "Invalid parameters for template 'llm': missing required parameter 'prompt'; 'n' must be an integer"),
    ({"template": {"name": "llm", "parameters": {"prompt": "hi"}}}, {}, 200, ""),
    ({}, {}, 400, "The task says nothing to run"),
    ({"image": "x", "dependsOn": ["zzz"]}, {}, 400,
     "Dependency 'zzz' does not exist in namespace kubetask-alice: create it first"),
    ({"image": "x", "dependsOn": ["t"]}, {}, 400, "Task 't' cannot depend on itself"),
    ({"image": "x", "dependsOn": ["b"]}, {"name": "a", "existing": {"a": [], "b": ["a"]}}, 400,
     "Dependency cycle: a → b → a"),
    ({"image": "x", "priority": 11}, {}, 400, "Priority must be an integer from 0 to 10"),
    ({"script": {"language": "ruby", "content": "x"}}, {}, 400, "Unknown script language 'ruby'"),
])
def test_rules(spec: dict[str, Any], kw: dict[str, Any], code: int, message: str) -> None:
    allowed, got_code, got_message = check(spec, **kw)
    assert allowed is (code == 200)
    assert got_code == code
    assert got_message.startswith(message)


def test_immutable_after_admission() -> None:
    old = {"spec": {"image": "x", "user": "alice", "priority": 5}, "status": {"phase": "Running"}}
    allowed, code, message = check({"image": "y", "user": "alice"}, operation="UPDATE", old=old)
    assert (allowed, code) == (False, 422) and "spec.image cannot change once the task has been admitted" in message
    assert check({"image": "x", "user": "alice", "cancel": True, "priority": 9}, operation="UPDATE", old=old)[0]
    assert not check({"image": "x", "user": "bob"}, operation="UPDATE", old=old)[0]
    queued = {"spec": {"image": "x", "user": "alice"}, "status": {"phase": "Queued"}}
    assert check({"image": "y", "user": "alice"}, operation="UPDATE", old=queued)[0]


def test_defaults() -> None:
    spec = default_spec({"template": {"name": "llm"}}, tenant_name="alice", tenant_spec=TENANT, templates=TEMPLATES)
    assert spec["user"] == "alice" and spec["priority"] == 5 and spec["queue"] == "default"
    assert spec["resources"]["gpus"] == 1 and spec["timeoutSeconds"] == 600
    plain = default_spec({"image": "x", "user": "mallory"}, tenant_name="alice", tenant_spec=TENANT)
    assert plain["user"] == "alice" and plain["timeoutSeconds"] == 3600
    assert default_spec({"image": "x"}, fallback_user="ns")["user"] == "ns"


def test_find_cycle_and_count_pending() -> None:
    assert find_cycle("c", ["a"], {"a": ["b"], "b": ["c"]}) == ["c", "a", "b", "c"]
    assert find_cycle("c", ["a"], {"a": ["b"], "b": []}) is None
    tasks = [{"spec": {"user": "a"}, "status": {"phase": "Queued"}}, {"spec": {"user": "a"}, "status": {}},
             {"spec": {"user": "a"}, "status": {"phase": "Running"}}, {"spec": {"user": "b"}}]
    assert count_pending(tasks, "a") == 2


@pytest.mark.parametrize(("userinfo", "expected"), [
    ({"username": "system:serviceaccount:kubetask-alice:runner"}, "runner"),
    ({"username": "system:admin"}, ""),
    ({"username": "kubernetes-admin"}, ""),
    ({"username": "carol@example.com"}, "carol@example.com"),
    (None, ""),
])
def test_requesting_user(userinfo: dict[str, str] | None, expected: str) -> None:
    from kubetask.core.admission import requesting_user

    assert requesting_user(userinfo) == expected


@pytest.mark.parametrize(("spec", "kw", "reason"), [
    ({}, {}, "NOTHING_TO_RUN"),
    ({"image": "x"}, {"pending_count": 50}, "TOO_MANY_PENDING"),
    ({"image": "x", "resources": {"gpus": 3}}, {}, "QUOTA_EXCEEDED"),
    ({"image": "x", "resources": {"gpus": 1}},
     {"tenant_status": {"usage": [{"month": "2025-03", "gpuSeconds": 36000}]}}, "MONTHLY_LIMIT_REACHED"),
    ({"template": {"name": "nope"}}, {}, "TEMPLATE_NOT_FOUND"),
    ({"template": {"name": "llm", "parameters": {}}}, {}, "INVALID_PARAMETERS"),
    ({"image": "x", "dependsOn": ["missing"]}, {}, "DEPENDENCY_NOT_FOUND"),
    ({"image": "x", "dependsOn": ["t"]}, {}, "DEPENDENCY_CYCLE"),
])
def test_every_refusal_carries_a_reason_code(spec: dict[str, Any], kw: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"name": "t", "namespace": "kubetask-alice", "tenant_name": "alice",
                            "tenant_spec": TENANT, "templates": TEMPLATES, "existing": {"a": []}, "now": NOW, **kw}
    verdict = validate_task(spec, **args)
    assert not verdict.allowed and verdict.reason is not None and verdict.reason.value == reason
    assert verdict.code == HTTP_STATUS[verdict.reason]


def _old(phase: str | None, executions: int = 0, **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if executions:
        status["executions"] = [{"id": i + 1} for i in range(executions)]
    return {"metadata": {"name": "t"}, "spec": {"user": "alice", "image": "busybox", **spec}, "status": status}


@pytest.mark.parametrize(("old", "allowed"), [
    (_old(None), True), (_old("Pending"), True), (_old("Queued"), True),
    (_old("Running", 1), False), (_old("Queued", 1), False), (_old("Succeeded", 1), False),
])
def test_what_runs_changes_only_before_admission(old: dict[str, Any], allowed: bool) -> None:
    new = {"user": "alice", "script": {"language": "bash", "content": "echo"}}
    verdict = validate_task(new, name="t", namespace="ns", operation="UPDATE", old=old, tenant_name="alice",
                            tenant_spec=TENANT, templates=TEMPLATES, now=NOW)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is Reason.IMMUTABLE_FIELD and verdict.code == 422


def test_a_changed_what_runs_is_revalidated_like_a_create() -> None:
    for new, reason in (({"user": "alice", "template": {"name": "llm", "parameters": {}}}, "INVALID_PARAMETERS"),
                        ({"user": "alice", "template": {"name": "nope"}}, "TEMPLATE_NOT_FOUND"),
                        ({"user": "alice", "script": {"language": "ruby", "content": "x"}}, "INVALID_SPEC"),
                        ({"user": "alice", "image": "x", "resources": {"gpus": 3}}, "QUOTA_EXCEEDED")):
        verdict = validate_task(new, name="t", namespace="ns", operation="UPDATE", old=_old("Pending"),
                                tenant_name="alice", tenant_spec=TENANT, templates=TEMPLATES, now=NOW)
        assert verdict.reason is not None and verdict.reason.value == reason, (new, verdict)
    # An unchanged template is not re-checked (it may have been removed since the task was created).
    old = _old("Pending", template={"name": "gone"})
    del old["spec"]["image"]
    assert validate_task({**old["spec"], "priority": 3}, name="t", namespace="ns", operation="UPDATE", old=old,
                         tenant_name="alice", templates=TEMPLATES, now=NOW).allowed


def test_a_task_needs_a_tenant_namespace() -> None:
    assert require_tenant("kubetask-alice", "alice").allowed
    verdict = require_tenant("default", None)
    assert not verdict.allowed and verdict.reason is Reason.NO_TENANT and verdict.code == 403
    assert verdict.field == "metadata.namespace"
    assert "namespace default belongs to no kubetask Tenant" in verdict.message
    assert "your tenant's namespace" in verdict.message and "kubetask-" not in verdict.message  # names no other


NODES = [
    {"metadata": {"name": "a100", "labels": {"nvidia.com/gpu.product": "A100"}},
     "status": {"allocatable": {"nvidia.com/gpu": "8"}}},
    {"metadata": {"name": "h100", "labels": {"nvidia.com/gpu.product": "H100"}},
     "status": {"allocatable": {"nvidia.com/gpu": "4"}}},
    {"metadata": {"name": "cpu"}, "status": {"allocatable": {"cpu": "8"}}},
]


@pytest.mark.parametrize(("resources", "fragments"), [
    ({"gpus": 8}, []),
    ({"gpus": 0}, []),
    ({"gpus": 4, "gpuType": "H100"}, []),
    ({"gpus": 9}, ["no node has 9 GPUs", "the most on one node is 8"]),
    ({"gpus": 6, "gpuType": "H100"}, ["no node has 6 GPUs of type H100", "the most on one node is 4"]),
    ({"gpus": 1, "gpuType": "B200"}, ["no node has GPU type 'B200'", "A100, H100"]),
])
def test_placement_warnings(resources: dict[str, Any], fragments: list[str]) -> None:
    warnings = placement_warnings({"resources": resources}, NODES, "nvidia.com/gpu", "nvidia.com/gpu.product")
    assert len(warnings) == (1 if fragments else 0), warnings
    for fragment in fragments:
        assert fragment in warnings[0]
    assert placement_warnings({"resources": resources}, [], "nvidia.com/gpu", "nvidia.com/gpu.product") == []


def test_admission_probe_answers_only_a_labelled_dry_run() -> None:
    labelled = {"metadata": {"labels": {ADMISSION_PROBE_LABEL: "true"}}}
    stamped = {"metadata": {"labels": {ADMISSION_PROBE_LABEL: "true"},
                            "annotations": {"kubetask.io/submitted-at": "2025-03-15T00:00:00.000000Z"}}}
    assert admission_probe(labelled, dry_run=True) == "kubetask admission probe: mutated=no"
    assert admission_probe(stamped, dry_run=True) == "kubetask admission probe: mutated=yes"
    assert admission_probe(stamped, dry_run=False) is None
    assert admission_probe({"metadata": {"labels": {"app": "x"}}}, dry_run=True) is None
