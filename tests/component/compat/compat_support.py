"""Helpers of the compat suite: the dev server handle, polling and error-body checks."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

ALICE_KEY = "dev-alice-key"
BOB_KEY = "dev-bob-key"
ADMIN_KEY = "dev-admin-key"
ALICE_NS = "kubetask-alice"

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ERROR_KEYS = {"detail", "code", "request_id", "timestamp"}
TERMINAL = {"completed", "failed", "cancelled"}
PUBLIC_STATUSES = {"pending", "queued", "running", "completed", "failed", "cancelled"}
FAR_FUTURE = "2099-01-01T00:00:00Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubectl_binary() -> str:
    for candidate in (os.environ.get("KUBETASK_KUBECTL"), str(Path.home() / ".cache/kubetask/bin/kubectl"),
                      shutil.which("kubectl")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("real kubectl not found (run hack/fetch-tools.sh or set KUBETASK_KUBECTL)")


class DevServer:
    def __init__(self, proc: subprocess.Popen[str], url: str, kubeconfig: Path, log: Path) -> None:
        self.proc, self.url, self.kubeconfig, self.log = proc, url, kubeconfig, log

    def client(self, key: str | None, *, prefix: str = "/api/v1", **headers: str) -> httpx.Client:
        all_headers = dict(headers)
        if key is not None:
            all_headers["X-API-Key"] = key
        return httpx.Client(base_url=self.url + prefix, headers=all_headers, timeout=30)

    def kubectl_json(self, *args: str) -> Any:
        done = subprocess.run([kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args, "-o", "json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def is_iso(value: Any) -> bool:
    return isinstance(value, str) and bool(ISO_Z.match(value))


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The DESIGN §4 error body ``{detail, code, request_id, timestamp}`` with the right status."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    assert set(body) >= ERROR_KEYS, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["request_id"], str) and body["request_id"], body
    assert is_iso(body["timestamp"]), body
    if code is not None:
        assert body["code"] == code, body
    return body


def wait_status(client: httpx.Client, task_id: str, wanted: set[str], *, timeout: float = 30,
                path: str = "/tasks/") -> dict[str, Any]:
    """Poll ``GET /tasks/{id}`` until its status is one of ``wanted`` (fails with the last body)."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"{path}{task_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in wanted:
            return body
        time.sleep(0.25)
    raise AssertionError(f"task {task_id} never reached {wanted}; last: {body}")


def sim(duration: float = 0.3, exit_code: int | None = None, result: Any = None) -> dict[str, str]:
    """Pod annotations the simulated kubelet honours."""
    ann = {"kubetask.dev/sim-duration-seconds": str(duration)}
    if exit_code is not None:
        ann["kubetask.dev/sim-exit-code"] = str(exit_code)
    if result is not None:
        ann["kubetask.dev/sim-termination-message"] = json.dumps(result)
    return ann


def job_env(dev: DevServer, namespace: str, task_id: str) -> dict[str, str]:
    """The env of the first container of the Job created for ``task_id`` (read with real kubectl)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        jobs = dev.kubectl_json("-n", namespace, "get", "jobs", "-l", f"kubetask.io/task={task_id}")["items"]
        if jobs:
            container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
            env: dict[str, str] = {}
            for item in container.get("env") or []:
                if "value" in item:
                    env[item["name"]] = item["value"]
                elif "valueFrom" in item:
                    ref = item["valueFrom"].get("secretKeyRef")
                    if ref:
                        secret = dev.kubectl_json("-n", namespace, "get", "secret", ref["name"])
                        env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            return env
        time.sleep(0.25)
    raise AssertionError(f"no Job for task {task_id}")
