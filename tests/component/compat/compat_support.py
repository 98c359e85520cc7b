"""Helpers of the compat suite: the dev server handle, polling and error-body checks."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kt_support import find_tool
from schema_check import SchemaCheck

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


REPO = Path(__file__).resolve().parents[3]
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""The components ``kubetask dev`` starts (``WORKDIR/pids.json`` names them while it runs)."""


def kubectl_binary() -> str:
    binary = find_tool("kubectl")
    if binary is None:
        pytest.fail("real kubectl not found: run `bash hack/fetch-tools.sh` (CI does) or set KUBETASK_KUBECTL")
    return binary


class DevServer:
    """A running ``kubetask dev``: its process, REST URL, kubeconfig, log and state folder."""

    def __init__(self, proc: subprocess.Popen[str], url: str, kubeconfig: Path, log: Path, workdir: Path,
                 pids: dict[str, int]) -> None:
        self.proc, self.url, self.kubeconfig, self.log = proc, url, kubeconfig, log
        self.workdir, self.pids = workdir, pids
        self._schema: SchemaCheck | None = None

    def client(self, key: str | None, *, prefix: str = "/api/v1", **headers: str) -> httpx.Client:
        """A client as ``key``; every JSON response must match the API's documented schema (tests/schema_check)."""
        all_headers = dict(headers)
        if key is not None:
            all_headers["X-API-Key"] = key
        return httpx.Client(base_url=self.url + prefix, headers=all_headers, timeout=30,
                            event_hooks={"response": [self._check_response]})

    @property
    def schema(self) -> SchemaCheck:
        if self._schema is None:
            self._schema = SchemaCheck.fetch(self.url)
        return self._schema

    def _check_response(self, response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
            self.schema.check(response)

    def kubectl_json(self, *args: str) -> Any:
        done = subprocess.run([kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args, "-o", "json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def alive(self) -> dict[str, int]:
        """The control-plane processes of this run that still exist (a zombie or a reused pid does not count)."""
        return {name: pid for name, pid in self.pids.items() if _runs_in(pid, self.workdir)}


def _runs_in(pid: int, workdir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(workdir).encode() in cmdline


def start_dev(base: Path, *extra: str, timeout: float = 180) -> DevServer:
    """``kubetask dev`` on a free port with its ``--workdir`` and kubeconfig under ``base``; returns once
    the REST API is healthy and the launcher has written every control-plane pid."""
    workdir = base / "cluster"
    port = free_port()
    kubeconfig = base / "kubeconfig.yaml"
    log = base / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubetask.cli", "dev", "--port", str(port), "--workdir", str(workdir),
             "--kubeconfig-out", str(kubeconfig), *extra],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"kubetask dev exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _kill(proc)
            pytest.fail(f"kubetask dev did not become healthy:\n{log.read_text()}")
        time.sleep(0.2)
    pids: dict[str, int] = json.loads((workdir / "pids.json").read_text())
    if not set(CONTROL_PLANE) <= set(pids):
        _kill(proc)
        pytest.fail(f"{workdir / 'pids.json'} names {sorted(pids)}, not every one of {CONTROL_PLANE}")
    return DevServer(proc, url, kubeconfig, log, workdir, pids)


def stop_dev(server: DevServer, timeout: float = 60) -> None:
    """SIGTERM, as Ctrl-C would: ``kubetask dev`` stops its control plane before it exits, so no
    component of it may be left running."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(server.proc)
            deadline = time.monotonic() + 10
            while server.alive() and time.monotonic() < deadline:
                time.sleep(0.1)  # the components die of PR_SET_PDEATHSIG with their parent
            raise AssertionError(f"kubetask dev ignored SIGTERM for {timeout} s (left: {server.alive()}):\n"
                                 + server.log.read_text()[-3000:]) from None
    assert not server.alive(), f"stray control-plane processes after kubetask dev stopped: {server.alive()}"


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


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


def wait_status(client: httpx.Client, task_id: str, wanted: set[str], *, timeout: float = 90,
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


def wait_started(client: httpx.Client, task_id: str, *, timeout: float = 90, path: str = "/tasks/",
                 status: str = "running") -> dict[str, Any]:
    """Poll until the task is ``running``, which means its pod has started on a node (``started_at`` and
    ``worker_id`` set); see test_seed_003_dtq's ``test_running_means_started_on_a_worker``."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"{path}{task_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == status and body.get("started_at"):
            return body
        assert body["status"].lower() not in TERMINAL, f"task {task_id} ended before it was seen running: {body}"
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} never started on a worker; last: {body}")


def sim(duration: float = 0.3, exit_code: int | None = None, result: Any = None) -> dict[str, str]:
    """Pod annotations kwok's Stages honour on the fake nodes (run time, exit code, termination message)."""
    ann = {"kubetask.dev/sim-duration-seconds": str(duration)}
    if exit_code is not None:
        ann["kubetask.dev/sim-exit-code"] = str(exit_code)
    if result is not None:
        ann["kubetask.dev/sim-termination-message"] = json.dumps(result)
    return ann


def job_env(dev: DevServer, namespace: str, task_id: str) -> dict[str, str]:
    """The env of the first container of the Job created for the Task named ``task_id`` (its ``object_name``,
    read with real kubectl)."""
    deadline = time.monotonic() + 60
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


def add_tenant(dev: DevServer, name: str, key: str, *, limits: dict[str, Any] | None = None,
               profile: str | None = None, timeout: float = 60) -> None:
    """Create (or update) the tenant ``name`` with the API key ``key`` (pinned to ``profile`` if given) and
    its exact ``limits``, on the dev cluster, and wait until the API accepts the key."""
    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import TENANTS, KubeClient

    async def run() -> None:
        client = await KubeClient.connect(str(dev.kubeconfig))
        try:
            if await client.get_or_none(TENANTS, name) is not None:
                await client.patch(TENANTS, name, {"spec": {"limits": None}})
            tenant = await ensure_tenant(client, name, api_key=key, limits=limits)
            keys = [{**ref, "profile": profile} if profile else {k: v for k, v in ref.items() if k != "profile"}
                    for ref in tenant["spec"]["apiKeys"]]
            await client.patch(TENANTS, name, {"spec": {"apiKeys": keys}})
        finally:
            await client.close()

    asyncio.run(run())
    deadline = time.monotonic() + timeout
    with dev.client(key) as client:
        while client.get("/users/me/limits").status_code != 200:
            assert time.monotonic() < deadline, f"the API never accepted the key of tenant {name}"
            time.sleep(0.2)


def assert_task_manager_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The Task Manager API's error body ``{"error": {code, message, details}, timestamp, request_id}``."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "timestamp", "request_id"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert is_iso(body["timestamp"]) and body["request_id"] == response.headers["x-request-id"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_uuid(value: Any, prefix: str = "") -> bool:
    """``value`` is ``<prefix><UUID>`` (seed 001 and 003 show UUID ids; seed 004 prefixes ``task_``)."""
    return isinstance(value, str) and value.startswith(prefix) and bool(UUID.match(value[len(prefix):]))
