"""Helpers shared by every test tier (importable as ``kt_support``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kubetask.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
CRDS = sorted((REPO / "crds").glob("*.yaml"))
TEMPLATES = sorted((REPO / "kubetask" / "resources" / "tasktemplates").glob("*.yaml"))



def find_tool(name: str) -> str | None:
    """helm/kubectl: ``$KUBETASK_<NAME>``, then ``~/.cache/kubetask/bin``, then ``PATH``."""
    for candidate in (os.environ.get(f"KUBETASK_{name.upper()}"), str(Path.home() / ".cache/kubetask/bin" / name),
                      shutil.which(name)):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def install_kubetask_resources(cluster: LocalCluster) -> None:
    """The CRDs (from the one source, ``crds/``) and the built-in TaskTemplates."""
    for path in CRDS:
        cluster.apply_file(path)
    for path in TEMPLATES:
        cluster.apply_file(path)


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_runner(kubeconfig: Path, home: Path) -> KubectlRunner:
    """``run("get", "pods", check=True, input=None)`` with real kubectl against ``kubeconfig``."""
    binary = find_tool("kubectl")
    if binary is None:
        pytest.fail("kubectl not found: run `bash hack/fetch-tools.sh` (CI does) or set KUBETASK_KUBECTL")

    def run(*args: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [binary, f"--kubeconfig={kubeconfig}", f"--cache-dir={home / 'kube-cache'}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout,
                              env={**os.environ, "HOME": str(home)})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    return run


WEBHOOK_CONFIGURATION = "kubetask.io"
"""The name under which the operator registers its validating and mutating webhooks (Kopf-managed)."""


def remove_webhook_configurations(cluster: LocalCluster) -> None:
    """Drop the operator's webhook registrations: with the operator stopped they would fail every Task write."""
    for plural in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        cluster.admin().delete(f"/apis/admissionregistration.k8s.io/v1/{plural}/{WEBHOOK_CONFIGURATION}")


def reset_namespaces(cluster: LocalCluster, namespaces: list[str], timeout: float = 60) -> None:
    """Delete every Task, Job, Pod and kubetask ConfigMap in ``namespaces`` and wait until they are gone.

    The session shares one control plane; this gives the next test empty tenant namespaces
    without deleting the namespaces themselves (namespace deletion is slow on a real cluster).
    """
    import time

    http = cluster.admin()
    collections = ("/apis/kubetask.io/v1alpha1/namespaces/{ns}/tasks", "/apis/batch/v1/namespaces/{ns}/jobs",
                   "/api/v1/namespaces/{ns}/pods")
    for namespace in namespaces:
        tasks = http.get(collections[0].format(ns=namespace))
        for task in tasks.json().get("items", []) if tasks.status_code == 200 else []:
            if task["metadata"].get("finalizers"):
                http.patch(f"{collections[0].format(ns=namespace)}/{task['metadata']['name']}",
                           json={"metadata": {"finalizers": None}},
                           headers={"Content-Type": "application/merge-patch+json"})
        for path in collections:
            http.delete(path.format(ns=namespace),
                        params={"propagationPolicy": "Background", "gracePeriodSeconds": "0"})
        http.delete(f"/api/v1/namespaces/{namespace}/configmaps", params={"labelSelector": "kubetask.io/task"})
    deadline = time.monotonic() + timeout
    for namespace in namespaces:
        for path in collections:
            while True:
                response = http.get(path.format(ns=namespace))
                if response.status_code == 404 or not response.json().get("items"):
                    break
                if time.monotonic() > deadline:
                    left = [i["metadata"]["name"] for i in response.json()["items"]]
                    raise AssertionError(f"{path.format(ns=namespace)} still holds {left}")
                time.sleep(0.1)
