"""Helpers shared by every test tier (importable as ``kt_support``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetask.cluster import LocalCluster
from kubetask.cluster.kwok import NodeShape

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


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str | Callable[[], str] = "condition",
               interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what} "
                         f"(last: {last!r})")


@contextmanager
def running_cluster(workdir: Path, nodes: Sequence[NodeShape]) -> Iterator[LocalCluster]:
    """A started control plane with kubetask's CRDs and templates installed, stopped on exit."""
    cluster = LocalCluster(workdir, nodes, progress=print)
    cluster.start()
    try:
        install_kubetask_resources(cluster)
        yield cluster
    finally:
        cluster.stop()


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


class Recorder:
    """Watches one collection from now on and records its events (``events``; ``added``: the creates).

    A watch delivers events in etcd revision order, so ``names`` is the order of creation:
    the real apiserver's own record of creates (what the simulator's ``stats()`` used to give).
    """

    def __init__(self, cluster: LocalCluster, path: str) -> None:
        self.cluster, self.path = cluster, path
        self.added: list[dict[str, Any]] = []
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        """``(resourceVersion, type, object)``: the etcd revision orders events across recorders."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        listed = cluster.admin().get(path)
        listed.raise_for_status()
        self._rv = str(listed.json()["metadata"]["resourceVersion"])
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"recorder {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        with httpx.Client(base_url=self.cluster.url, verify=context, timeout=httpx.Timeout(30, read=30),
                          headers={"Authorization": f"Bearer {self.cluster.admin_token}"}) as http:
            failures = 0
            while not self._stop.is_set() and self.error is None:
                try:
                    params = {"watch": "true", "resourceVersion": self._rv, "allowWatchBookmarks": "true",
                              "timeoutSeconds": "1"}
                    with http.stream("GET", self.path, params=params) as response:
                        response.raise_for_status()
                        for line in response.iter_lines():
                            if line:
                                self._event(json.loads(line))
                    failures = 0
                except httpx.HTTPError as error:  # the apiserver is busy: watch again from the last revision
                    failures += 1
                    if failures > 20:
                        self.error = error
                    time.sleep(0.2)

    def _event(self, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":  # e.g. 410 Gone: events were lost, the record is incomplete
            self.error = RuntimeError(f"watch {self.path}: {obj}")
            return
        self._rv = str((obj.get("metadata") or {}).get("resourceVersion") or self._rv)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            with self._lock:
                self.events.append((int(self._rv), str(event["type"]), obj))
                if event["type"] == "ADDED":
                    self.added.append(obj)

    def _checked(self) -> None:
        assert self.error is None, f"the recorder of {self.path} failed: {self.error!r}"

    @property
    def names(self) -> list[str]:
        self._checked()
        with self._lock:
            return [o["metadata"]["name"] for o in self.added]

    def rank(self) -> dict[str, int]:
        """Name -> its creation rank."""
        return {name: i for i, name in enumerate(self.names)}

    def duplicates(self) -> dict[str, int]:
        """Names created more than once (a Job deleted and made again, say)."""
        names = self.names
        return {n: names.count(n) for n in set(names) if names.count(n) > 1}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
