"""Poison tasks (issue 12, part 4): a Task whose Job the apiserver refuses never spins and never hangs.

* With the webhook, such a Task is refused at admission in the apiserver's own words.
* Without it (the honest way in: the webhook is not registered, as after a bad install), the real
  apiserver refuses the Job as 422 Invalid; the operator retries a bounded number of times with
  backoff, then fails the Task as ``JobRejected`` with the apiserver's message and an Event.
* A create refused for a reason that can pass (a ResourceQuota, 403) keeps being retried with a
  growing wait, never in a tight loop, and the Task runs once the quota allows it.

Create attempts are counted by the apiserver itself (``apiserver_request_total`` on ``/metrics``).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from conftest import API, Harness, wait_until

from kubetask.core.jobs import pod_field_errors
from kubetask.core.k8s_names import FieldError

BAD_KEY = "bad key"


def _creates(harness: Harness, resource: str, code: str) -> int:
    """POSTs of ``resource`` the apiserver answered with ``code``, since it started (its own counter)."""
    response = harness.client().get("/metrics")
    assert response.status_code == 200, response.text[:200]
    total = 0
    for line in response.text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("resource") == resource and labels.get("verb") == "POST" and labels.get("code") == code \
                and not labels.get("subresource"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _tenant(harness: Harness) -> str:
    name = f"poison-{uuid.uuid4().hex[:5]}"
    harness.create_tenant(name)
    return f"kubetask-{name}"


def _detail(error: FieldError) -> str:
    """What follows the field path: the part the apiserver words the same for the Job's field."""
    return str(error).split(": ", 1)[1]


def test_the_webhook_refuses_a_task_whose_pod_the_apiserver_would_refuse(harness: Harness) -> None:
    harness.start()
    namespace = _tenant(harness)
    body: dict[str, Any] = {"apiVersion": API, "kind": "Task", "metadata": {"name": "poison", "namespace": namespace},
            "spec": {"image": "busybox", "podAnnotations": {BAD_KEY: "1"}, "nodeSelector": {"disk type": "ssd"}}}
    response = harness.client().post(f"/apis/kubetask.io/v1alpha1/namespaces/{namespace}/tasks", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    for error in pod_field_errors(body["spec"]):
        assert str(error) in message
    assert harness.get(API, "Task", "poison", namespace) is None


def test_a_job_the_apiserver_refuses_fails_the_task_after_bounded_retries(harness: Harness) -> None:
    harness.start(webhook_enabled=False)  # nothing stands between the tenant and the apiserver's Job validation
    namespace = _tenant(harness)
    before = _creates(harness, "jobs", "422")
    harness.create_task("poison", namespace, podAnnotations={BAD_KEY: "1"})
    failed = harness.wait_phase("poison", "Failed", namespace, timeout=60)
    status = failed["status"]

    # The apiserver's message, which kubetask's own rules predicted word for word.
    predicted = pod_field_errors({"podAnnotations": {BAD_KEY: "1"}})
    assert len(predicted) == 1
    assert status["message"] == (f'Job.batch "poison-1" is invalid: spec.template.annotations: '
                                 f'{_detail(predicted[0])}'), status["message"]
    finished = [c for c in status.get("conditions") or [] if c.get("type") == "Finished"]
    assert finished and finished[0]["reason"] == "JobRejected", status
    assert harness.jobs(namespace) == []

    events = [e for e in harness.events(namespace) if e.get("involvedObject", {}).get("name") == "poison"]
    rejected = [e for e in events if e.get("reason") == "JobRejected"]
    assert rejected and rejected[0]["type"] == "Warning" and status["message"] in rejected[0]["message"]
    retried = [e for e in events if e.get("reason") == "JobCreateFailed"]
    assert len(retried) == 3, [e.get("message") for e in events]

    attempts = _creates(harness, "jobs", "422") - before
    print(f"poison task: {attempts} Job creates refused by the apiserver before Failed/JobRejected")
    assert attempts == 4  # the first create and 3 retries (after 1 s, 2 s and 4 s)
    time.sleep(3)  # a failed Task is settled: nothing creates its Job again
    assert _creates(harness, "jobs", "422") - before == attempts
    assert harness.task("poison", namespace)["status"]["phase"] == "Failed"


def test_a_create_refused_for_a_passing_reason_backs_off_and_recovers(harness: Harness) -> None:
    harness.start(webhook_enabled=False)
    namespace = _tenant(harness)
    # The namespace's kube-root-ca.crt is its one ConfigMap: a script task's ConfigMap exceeds this quota (403).
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-more-configmaps"},
             "spec": {"hard": {"count/configmaps": "1"}}}
    response = harness.client().post(f"/api/v1/namespaces/{namespace}/resourcequotas", json=quota)
    assert response.status_code == 201, response.text
    wait_until(lambda: (harness.get("v1", "ResourceQuota", "no-more-configmaps", namespace) or {})
               .get("status", {}).get("used") is not None, 30, "the quota's first usage report")
    before = _creates(harness, "configmaps", "403")
    started = time.monotonic()
    harness.create_task("blocked", namespace, image=None, script={"language": "bash", "content": "echo hi"})
    wait_until(lambda: _creates(harness, "configmaps", "403") - before >= 3, 30, "three refused creates")
    time.sleep(max(0.0, 8 - (time.monotonic() - started)))
    refused = _creates(harness, "configmaps", "403") - before
    elapsed = time.monotonic() - started
    # One Warning per failed attempt of this task (the apiserver's count may include others' ConfigMaps).
    attempts = len([e for e in harness.events(namespace) if e.get("reason") == "JobCreateFailed"
                    and e.get("involvedObject", {}).get("name") == "blocked"])
    print(f"transient refusal: {attempts} attempts ({refused} ConfigMap creates refused in the namespace) in "
          f"{elapsed:.1f} s; a tight loop makes hundreds")
    # A quota refusal: one quick retry after 0.2 s, then 1, 2, 4 s: 5 attempts in the first 8-odd seconds.  The bound
    # says "no tight loop", with one attempt to spare, not the exact schedule (the unit tests pin that).
    assert 3 <= attempts <= 6
    assert refused <= attempts + 3
    phase = (harness.task("blocked", namespace).get("status") or {}).get("phase")
    assert phase in (None, "Pending", "Queued"), phase  # never failed for a refusal that can pass

    assert harness.client().delete(f"/api/v1/namespaces/{namespace}/resourcequotas/no-more-configmaps") \
        .status_code == 200
    harness.wait_phase("blocked", "Succeeded", namespace, timeout=90)
