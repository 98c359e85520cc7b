"""`kubetask dev` as a user runs it: one process, then curl- and kubectl-style use.

This is the README's promise: the run command brings up the simulated cluster,
the operator and the API; real kubectl with the printed kubeconfig creates a
Task from an example YAML and lists it with the printer columns; Ctrl-C/SIGTERM
stops everything cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubectl() -> str:
    for candidate in (os.environ.get("KUBETASK_KUBECTL"), str(Path.home() / ".cache/kubetask/bin/kubectl"),
                      shutil.which("kubectl")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("real kubectl not found (run hack/fetch-tools.sh or set KUBETASK_KUBECTL)")


class DevStack:
    def __init__(self, proc: subprocess.Popen[str], url: str, kubeconfig: Path, log: Path) -> None:
        self.proc, self.url, self.kubeconfig, self.log = proc, url, kubeconfig, log

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_kubectl(), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60)

    def http(self, key: str = "dev-alice-key") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=30)


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    workdir = tmp_path_factory.mktemp("dev")
    port = _free_port()
    kubeconfig = workdir / "kubeconfig.yaml"
    log = workdir / "dev.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetask.cli", "dev", "--port", str(port), "--kubeconfig-out", str(kubeconfig)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"kubetask dev exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"kubetask dev did not become healthy:\n{log.read_text()}")
    stack = DevStack(proc, url, kubeconfig, log)
    yield stack
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _task_phase(stack: DevStack, name: str) -> str:
    out = stack.kubectl("-n", "kubetask-alice", "get", "task", name, "-o", "jsonpath={.status.phase}")
    return out.stdout.strip()


def test_banner_names_the_kubeconfig_and_the_dev_keys(dev_stack: DevStack) -> None:
    text = dev_stack.log.read_text()
    assert str(dev_stack.kubeconfig) in text
    assert "dev-alice-key" in text and "dev-bob-key" in text
    assert dev_stack.kubeconfig.exists()


def test_kubectl_applies_an_example_and_lists_it_with_printer_columns(dev_stack: DevStack) -> None:
    applied = dev_stack.kubectl("-n", "kubetask-alice", "apply", "-f", str(REPO / "tests/examples/gpu-task.yaml"))
    assert applied.returncode == 0, applied.stderr
    listed = dev_stack.kubectl("-n", "kubetask-alice", "get", "tasks")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "PRIORITY", "USER", "GPUS", "NODE", "AGE"]
    row = next(line.split() for line in listed.stdout.splitlines()[1:] if line.startswith("nvidia-smi"))
    assert row[3] == "alice"  # spec.user set by admission from the namespace's tenant

    deadline = time.monotonic() + 60
    while _task_phase(dev_stack, "nvidia-smi") not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _task_phase(dev_stack, "nvidia-smi") == "Succeeded"
    task: dict[str, Any] = json.loads(dev_stack.kubectl("-n", "kubetask-alice", "get", "task", "nvidia-smi",
                                                        "-o", "json").stdout)
    # the mutating webhook stamps kubectl-created tasks for FIFO order, as the REST API does
    assert task["metadata"]["annotations"]["kubetask.io/submitted-at"].endswith("Z")
    node = task["status"]["executions"][0]["nodeName"]
    assert node.startswith("gpu-node-")

    patched = dev_stack.kubectl("-n", "kubetask-alice", "patch", "task", "nvidia-smi", "--type=merge",
                                "-p", '{"spec":{"description":"patched by kubectl"}}')
    assert patched.returncode == 0, patched.stderr
    deleted = dev_stack.kubectl("-n", "kubetask-alice", "delete", "task", "nvidia-smi")
    assert deleted.returncode == 0, deleted.stderr
    assert dev_stack.kubectl("-n", "kubetask-alice", "get", "task", "nvidia-smi").returncode != 0


def test_rest_submission_runs_to_completion_with_its_result(dev_stack: DevStack) -> None:
    with dev_stack.http() as http:
        created = http.post("/api/v1/tasks", json={
            "name": "dev smoke", "image": "busybox", "command": ["sh", "-c", "echo hi"],
            "resources": {"gpus": 1},
            "annotations": {"kubetask.dev/sim-duration-seconds": "0.3",
                            "kubetask.dev/sim-termination-message": '{"answer": 42}'},
        })
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        deadline = time.monotonic() + 60
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = http.get(f"/api/v1/tasks/{task_id}").json()
            if body["status"] in ("completed", "failed"):
                break
            time.sleep(0.3)
        assert body["status"] == "completed", body
        assert body["result"] == {"answer": 42}
        assert http.get(f"/api/v1/tasks/{task_id}", headers={"X-API-Key": "dev-bob-key"}).status_code == 404


def test_kubectl_task_that_exits_1_with_two_retries_fails_after_three_executions(dev_stack: DevStack) -> None:
    manifest = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": "always-fails"},
                "spec": {"image": "busybox", "maxRetries": 2, "retryBackoffSeconds": 0,
                         "podAnnotations": {"kubetask.dev/sim-exit-code": "1",
                                            "kubetask.dev/sim-duration-seconds": "0.2"}}}
    created = subprocess.run([_kubectl(), "--kubeconfig", str(dev_stack.kubeconfig), "-n", "kubetask-alice",
                              "create", "-f", "-"], input=json.dumps(manifest), capture_output=True, text=True,
                             timeout=60)
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 60
    while _task_phase(dev_stack, "always-fails") not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    task = json.loads(dev_stack.kubectl("-n", "kubetask-alice", "get", "task", "always-fails", "-o", "json").stdout)
    assert task["status"]["phase"] == "Failed"
    executions = task["status"]["executions"]
    assert [e["id"] for e in executions] == [1, 2, 3]
    assert {e["exitCode"] for e in executions} == {1}
    assert [e["jobName"] for e in executions] == ["always-fails-1", "always-fails-2", "always-fails-3"]


def test_cli_submits_waits_and_prints_the_result(dev_stack: DevStack) -> None:
    env = {**os.environ, "KUBETASK_URL": dev_stack.url, "KUBETASK_API_KEY": "dev-alice-key"}
    cli = [sys.executable, "-m", "kubetask.cli", "tasks"]
    submitted = subprocess.run([*cli, "submit", "--name", "cli demo", "--image", "busybox", "--gpus", "1",
                                "--annotation", "kubetask.dev/sim-duration-seconds=0.3",
                                "--annotation", 'kubetask.dev/sim-termination-message={"answer": 42}', "-q"],
                               capture_output=True, text=True, env=env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert task_id.startswith("cli-demo-")
    waited = subprocess.run([*cli, "wait", task_id], capture_output=True, text=True, env=env, timeout=90)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"answer": 42}
    assert f"{task_id}: completed" in waited.stderr  # progress goes to stderr


def test_sigterm_stops_everything_cleanly(dev_stack: DevStack) -> None:
    dev_stack.proc.send_signal(signal.SIGTERM)
    assert dev_stack.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{dev_stack.url}/health", timeout=2)
