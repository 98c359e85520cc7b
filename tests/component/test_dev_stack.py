"""`kubetask dev` as a user runs it: one process, then curl- and kubectl-style use.

This is the README's promise: the run command brings up a real local control plane (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok GPU nodes), the operator and the
API; real kubectl with the printed kubeconfig talks to that apiserver, applies the CRDs server-side,
creates a Task from an example YAML and lists it with the printer columns; Ctrl-C/SIGTERM stops
everything and leaves no process behind.  The run keeps its state (``--workdir``) in pytest's
temporary directory, so it never stops a developer's own ``kubetask dev``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kt_support import find_tool

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubectl() -> str:
    binary = find_tool("kubectl")
    if binary is None:
        pytest.fail("real kubectl not found: run `bash hack/fetch-tools.sh` (CI does) or set KUBETASK_KUBECTL")
    return binary


def _runs_in(pid: int, workdir: Path) -> bool:
    """Is ``pid`` still a process of this run (not gone, not a zombie, not a reused pid)?"""
    try:
        return str(workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class DevStack:
    def __init__(self, proc: subprocess.Popen[str], url: str, kubeconfig: Path, log: Path, workdir: Path,
                 pids: dict[str, int]) -> None:
        self.proc, self.url, self.kubeconfig, self.log = proc, url, kubeconfig, log
        self.workdir, self.pids = workdir, pids

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_kubectl(), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60, input=input)

    def http(self, key: str = "dev-alice-key") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=30)

    def alive(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids.items() if _runs_in(pid, self.workdir)}


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    base = tmp_path_factory.mktemp("dev")
    workdir = base / "state"
    port = _free_port()
    kubeconfig = base / "kubeconfig.yaml"
    log = base / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubetask.cli", "dev", "--port", str(port), "--workdir", str(workdir),
             "--kubeconfig-out", str(kubeconfig)],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"kubetask dev exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        proc.wait()
        pytest.fail(f"kubetask dev did not become healthy:\n{log.read_text()}")
    # The launcher names its components' pids while they run (it removes the file when it stops them).
    pids: dict[str, int] = json.loads((workdir / "pids.json").read_text())
    stack = DevStack(proc, url, kubeconfig, log, workdir, pids)
    try:
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # its components die with it (PR_SET_PDEATHSIG)
                proc.wait()


def _task_phase(stack: DevStack, name: str) -> str:
    out = stack.kubectl("-n", "kubetask-alice", "get", "task", name, "-o", "jsonpath={.status.phase}")
    return out.stdout.strip()


def _wait_finished(stack: DevStack, name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while _task_phase(stack, name) not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    return _task_phase(stack, name)


def test_banner_names_the_kubeconfig_the_logs_and_the_dev_keys(dev_stack: DevStack) -> None:
    text = dev_stack.log.read_text()
    assert str(dev_stack.kubeconfig) in text
    assert str(dev_stack.workdir / "logs") in text
    assert "dev-alice-key" in text and "dev-bob-key" in text
    assert dev_stack.kubeconfig.exists()
    assert set(CONTROL_PLANE) <= set(dev_stack.pids), dev_stack.pids
    assert set(dev_stack.alive()) == set(dev_stack.pids), "a component is not running"
    for name in CONTROL_PLANE:
        assert (dev_stack.workdir / "logs" / f"{name}.log").exists(), name


def test_the_apiserver_is_real_and_backed_by_etcd(dev_stack: DevStack) -> None:
    ready = dev_stack.kubectl("get", "--raw", "/readyz?verbose")
    assert ready.returncode == 0, ready.stderr
    checks = ready.stdout.splitlines()
    assert "[+]etcd ok" in checks, ready.stdout
    assert "readyz check passed" in ready.stdout
    version = json.loads(dev_stack.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    nodes = json.loads(dev_stack.kubectl("get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "json").stdout)
    assert len(nodes["items"]) == 2
    assert {n["status"]["allocatable"]["nvidia.com/gpu"] for n in nodes["items"]} == {"8"}


def test_kubectl_applies_the_crds_server_side(dev_stack: DevStack) -> None:
    applied = dev_stack.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    assert applied.returncode == 0, applied.stderr
    for crd in ("tasks.kubetask.io", "tasktemplates.kubetask.io", "tenants.kubetask.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd} serverside-applied" in applied.stdout, crd
        established = dev_stack.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        assert established.returncode == 0, established.stderr


def _table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """kubectl's table: the header, and each row's cells cut at the header's column starts (a cell may be blank)."""
    lines = text.splitlines()
    header = lines[0].split()
    starts = [lines[0].index(f" {name}") + 1 if i else 0 for i, name in enumerate(header)]
    ends = [*starts[1:], None]
    return header, [{name: line[start:end].strip() for name, start, end in zip(header, starts, ends, strict=True)}
                    for line in lines[1:]]


def test_kubectl_applies_an_example_and_lists_it_with_printer_columns(dev_stack: DevStack) -> None:
    applied = dev_stack.kubectl("-n", "kubetask-alice", "apply", "-f", str(REPO / "tests/examples/gpu-task.yaml"))
    assert applied.returncode == 0, applied.stderr
    listed = dev_stack.kubectl("-n", "kubetask-alice", "get", "tasks")
    assert listed.returncode == 0, listed.stderr
    header, rows = _table(listed.stdout)
    assert header == ["NAME", "STATUS", "PRIORITY", "USER", "GPUS", "NODE", "AGE"]
    row = next(row for row in rows if row["NAME"] == "nvidia-smi")
    # STATUS is blank until the operator first writes the Task's status, which may come after this listing.
    assert row["USER"] == "alice"  # spec.user set by admission from the namespace's tenant
    assert (row["PRIORITY"], row["GPUS"]) == ("7", "1")

    assert _wait_finished(dev_stack, "nvidia-smi") == "Succeeded"
    task: dict[str, Any] = json.loads(dev_stack.kubectl("-n", "kubetask-alice", "get", "task", "nvidia-smi",
                                                        "-o", "json").stdout)
    # the mutating webhook stamps kubectl-created tasks for FIFO order, as the REST API does
    assert task["metadata"]["annotations"]["kubetask.io/submitted-at"].endswith("Z")
    node_name = task["status"]["executions"][0]["nodeName"]
    node = json.loads(dev_stack.kubectl("get", "node", node_name, "-o", "json").stdout)
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"  # the real scheduler put it on a GPU node

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
        deadline = time.monotonic() + 90
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
    created = dev_stack.kubectl("-n", "kubetask-alice", "create", "-f", "-", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    assert _wait_finished(dev_stack, "always-fails", timeout=120) == "Failed"
    task = json.loads(dev_stack.kubectl("-n", "kubetask-alice", "get", "task", "always-fails", "-o", "json").stdout)
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
    assert str(uuid.UUID(task_id)) == task_id  # the REST id is the Task's uid
    with dev_stack.http() as http:
        assert http.get(f"/api/v1/tasks/{task_id}").json()["object_name"].startswith("cli-demo-")
    waited = subprocess.run([*cli, "wait", task_id], capture_output=True, text=True, env=env, timeout=120)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"answer": 42}
    assert f"{task_id}: completed" in waited.stderr  # progress goes to stderr


def test_sigterm_stops_everything_and_leaves_no_process(dev_stack: DevStack) -> None:
    running = dev_stack.alive()
    assert set(CONTROL_PLANE) <= set(running), running
    apiserver = dev_stack.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert apiserver.stdout.startswith("https://127.0.0.1:"), apiserver.stdout

    dev_stack.proc.send_signal(signal.SIGTERM)
    assert dev_stack.proc.wait(timeout=60) == 0, dev_stack.log.read_text()[-3000:]
    # kubetask dev waits for its components before it exits: none may be left, not even briefly.
    assert dev_stack.alive() == {}, f"still running after kubetask dev exited: {dev_stack.alive()}"
    assert not (dev_stack.workdir / "pids.json").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{dev_stack.url}/health", timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{apiserver.stdout}/readyz", verify=False, timeout=2)
