"""Completion webhooks end to end on the real control plane: REST CRUD (own subscriptions only, the secret
shown once), the SSRF guard, and delivery by the real operator to a real receiver process that verifies
signatures, refuses the first 3 attempts, is killed and restarted (and the operator too): it gets exactly
the events, signed, and every repeat carries a delivery id it has seen."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kt_api_support import _start_operator
from live_support import ALICE_KEY, BOB_KEY, Stack, sim, wait_until

RECEIVER = Path(__file__).with_name("webhook_receiver.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self, port: int, secret: str, state: Path, fail_first: int) -> None:
        self.port, self.secret, self.state, self.fail_first = port, secret, state, fail_first
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.state / "ready").unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(RECEIVER), str(self.port), self.secret, str(self.state),
                                      str(self.fail_first)], env={**os.environ, "PYTHONSAFEPATH": "1"})
        wait_until(lambda: (self.state / "ready").exists(), timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def requests(self) -> int:
        path = self.state / "requests"
        return int(path.read_text()) if path.exists() else 0

    def accepted(self) -> list[dict[str, Any]]:
        path = self.state / "accepted.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def rejected(self) -> int:
        path = self.state / "rejected.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0


def submit(client: httpx.Client, name: str, seconds: float = 1, exit_code: int = 0) -> str:
    response = client.post("/tasks", json={"name": name, "image": "busybox", "annotations": sim(seconds, exit_code)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def status_of(client: httpx.Client, task_id: str) -> str:
    return str(client.get(f"/tasks/{task_id}").json()["status"])


def test_crud_is_per_tenant_and_the_secret_is_shown_once(live_stack: Stack) -> None:
    with live_stack.client(ALICE_KEY) as alice, live_stack.client(BOB_KEY) as bob:
        created = alice.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["completed", "failed"],
                                                "description": "ci"})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["task.completed", "task.failed"]
        assert created.headers["location"] == f"/api/v1/webhooks/{hook['id']}"
        got = alice.get(f"/webhooks/{hook['id']}").json()
        assert "secret" not in got and got["url"] == "http://127.0.0.1:9/hook" and got["enabled"] is True
        assert hook["id"] in [w["id"] for w in alice.get("/webhooks").json()["webhooks"]]
        assert all("secret" not in w for w in alice.get("/webhooks").json()["webhooks"])
        # bob: no hint that alice's exists
        assert bob.get(f"/webhooks/{hook['id']}").status_code == 404
        assert bob.patch(f"/webhooks/{hook['id']}", json={"enabled": False}).status_code == 404
        assert bob.delete(f"/webhooks/{hook['id']}").status_code == 404
        assert bob.get(f"/webhooks/{hook['id']}/deliveries").status_code == 404
        assert hook["id"] not in [w["id"] for w in bob.get("/webhooks").json()["webhooks"]]
        changed = alice.patch(f"/webhooks/{hook['id']}", json={"events": "all", "enabled": False})
        assert changed.status_code == 200 and changed.json()["events"] == ["*"] and changed.json()["enabled"] is False
        assert "secret" not in changed.json()
        rotated = alice.patch(f"/webhooks/{hook['id']}", json={"rotate_secret": True}).json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
        bad = alice.post("/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["task.started"]})
        assert bad.status_code == 422 and bad.json()["field"] == "events" and "task.completed" in bad.json()["detail"]
        assert alice.delete(f"/webhooks/{hook['id']}").status_code == 204
        assert alice.get(f"/webhooks/{hook['id']}").status_code == 404


@pytest.mark.parametrize(("url", "words"), [
    ("http://10.1.2.3/hook", "internal address"),
    ("http://169.254.169.254/latest/meta-data", "internal address"),
    ("http://[::ffff:192.168.0.1]/x", "internal address"),
    ("ftp://example.com/x", "http:// or https://"),
    ("http://user:pw@127.0.0.1/x", "credentials"),
    ("http://no-such-host.invalid/x", "does not resolve"),
])
def test_urls_to_internal_or_bad_targets_are_refused(live_stack: Stack, url: str, words: str) -> None:
    with live_stack.client(ALICE_KEY) as alice:
        response = alice.post("/webhooks", json={"url": url})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "url" and words in response.json()["detail"]


def test_kubectl_manages_subscriptions_too(live_stack: Stack, kubectl: Any) -> None:
    manifest = {"apiVersion": "kubetask.io/v1alpha1", "kind": "TaskWebhook",
                "metadata": {"name": "from-kubectl", "namespace": "kubetask-alice"},
                "spec": {"url": "https://hooks.example.com/in", "events": ["task.failed"]}}
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    try:
        with live_stack.client(ALICE_KEY) as alice:
            got = wait_until(lambda: alice.get("/webhooks/from-kubectl").json()
                             if alice.get("/webhooks/from-kubectl").status_code == 200 else None)
            assert got["events"] == ["task.failed"] and got["enabled"] is True  # the schema's default
            # the operator made its signing secret; the owner gets one by rotating
            wait_until(lambda: kubectl("-n", "kubetask-alice", "get", "secret", "from-kubectl-signing",
                                       check=False).returncode == 0)
            assert alice.patch("/webhooks/from-kubectl", json={"rotate_secret": True}).json()["secret"]
        listed = kubectl("-n", "kubetask-alice", "get", "taskwebhooks").stdout
        assert "from-kubectl" in listed and "https://hooks.example.com/in" in listed
        refused = kubectl("apply", "-f", "-", check=False, input=json.dumps(
            {**manifest, "spec": {"url": "https://h.example.com", "events": ["task.started"]}}))
        assert refused.returncode != 0 and "task.started" in refused.stderr
    finally:
        kubectl("-n", "kubetask-alice", "delete", "taskwebhook", "from-kubectl", "--ignore-not-found")


def test_a_receiver_that_refuses_then_dies_gets_exactly_the_events_signed(live_stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    with live_stack.client(ALICE_KEY) as alice, live_stack.client(BOB_KEY) as bob:
        created = alice.post("/webhooks", json={"url": f"http://localhost:{port}/hook", "events": "*"})
        assert created.status_code == 201, created.text
        hook = created.json()
        receiver = Receiver(port, hook["secret"], tmp_path, fail_first=3)
        receiver.start()
        try:
            done = submit(alice, "wh-ok", seconds=1)
            failed = submit(alice, "wh-bad", seconds=1, exit_code=3)
            submit(bob, "wh-bobs", seconds=1)  # bob's task: never delivered to alice's hook
            # the first three attempts are refused (503), then the two events are accepted
            wait_until(lambda: len({r["delivery_id"] for r in receiver.accepted()}) == 2, timeout=120)
            assert receiver.requests() >= 5
            receiver.kill()

            long_one = submit(alice, "wh-cancel", seconds=300)
            wait_until(lambda: status_of(alice, long_one) in ("running", "queued", "pending"))
            assert alice.delete(f"/tasks/{long_one}").status_code == 200
            wait_until(lambda: status_of(alice, long_one) == "cancelled")
            # receiver down: attempts fail and are recorded, the event stays pending
            wait_until(lambda: any(p["task_id"] == long_one and p["attempts"] >= 1
                                   for p in alice.get(f"/webhooks/{hook['id']}/deliveries").json()["pending"]),
                       timeout=60)
            # the operator goes too; its successor finds the undelivered event in the TaskWebhook's status
            assert live_stack.operator is not None
            live_stack.operator.stop()
            receiver.start()
            live_stack.operator = _start_operator(live_stack.kubeconfig)
            wait_until(lambda: len({r["delivery_id"] for r in receiver.accepted()}) == 3, timeout=120)
            time.sleep(3)  # would a duplicate or a stray event follow?
            accepted = receiver.accepted()
        finally:
            if receiver.proc is not None and receiver.proc.poll() is None:
                receiver.kill()
        assert receiver.rejected() == 0  # every request carried a valid signature
        events = {(r["task_id"], r["type"]) for r in accepted}
        assert events == {(done, "task.completed"), (failed, "task.failed"), (long_one, "task.cancelled")}
        assert {r["status"] for r in accepted} == {"completed", "failed", "cancelled"}
        assert all(r["payload_id"] == r["delivery_id"] and r["event"] == r["type"] for r in accepted)
        by_id: dict[str, set[tuple[str, str]]] = {}
        for r in accepted:
            by_id.setdefault(r["delivery_id"], set()).add((r["task_id"], r["type"]))
        assert len(by_id) == 3 and all(len(v) == 1 for v in by_id.values())  # one id per event, one event per id
        assert all(r["new"] for r in accepted if r is accepted[[x["delivery_id"] for x in accepted].index(
            r["delivery_id"])])  # any repeat came after a first delivery with the same id
        ledger = alice.get(f"/webhooks/{hook['id']}/deliveries").json()
        assert ledger["pending"] == [] and ledger["delivered"] >= 3
        outcomes = [a["outcome"] for a in ledger["attempts"]]
        assert "delivered" in outcomes and "failed" in outcomes
        refusals = [a for a in ledger["attempts"] if a["outcome"] == "failed"]
        assert any(a["status_code"] == 503 for a in refusals) or any("connect" in (a["error"] or "") for a in refusals)
        assert alice.get(f"/webhooks/{hook['id']}").json()["pending"] == 0
        assert bob.get(f"/webhooks/{hook['id']}/deliveries").status_code == 404
        # the successor operator's metrics count what it delivered (the cancelled task's event at least)
        exposition = live_stack.operator.metrics.exposition().decode()
        assert _sample(exposition, 'kubetask_webhook_delivery_attempts_total{outcome="delivered"}') >= 1
        assert _sample(exposition, "kubetask_webhook_deliveries_pending") == 0
        assert alice.delete(f"/webhooks/{hook['id']}").status_code == 204


def _sample(exposition: str, name: str) -> float:
    """One sample's value from a Prometheus text exposition (the metric must be there)."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the operator's metrics")
