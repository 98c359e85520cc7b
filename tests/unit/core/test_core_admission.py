"""Admission rules shared by the webhook and the REST API: messages and HTTP codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetask.core.admission import count_pending, default_spec, find_cycle, validate_task

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
