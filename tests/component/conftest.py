"""Shared fixtures for component tests: the simulated cluster, a kubeconfig and real kubectl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubetask.sim import SimCluster


def _find_kubectl() -> str | None:
    env = os.environ.get("KUBETASK_KUBECTL")
    if env and Path(env).exists():
        return env
    cached = Path.home() / ".cache" / "kubetask" / "bin" / "kubectl"
    if cached.exists():
        return str(cached)
    return shutil.which("kubectl")


KUBECTL = _find_kubectl()


@pytest.fixture
def sim_cluster() -> Iterator[SimCluster]:
    """A fresh simulated cluster (own thread + loop), usable from sync and async tests."""
    cluster = SimCluster(nodes=SimCluster.dev_nodes())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kubeconfig_path(sim_cluster: SimCluster, tmp_path: Path) -> Path:
    """An admin kubeconfig for ``sim_cluster``."""
    return sim_cluster.write_kubeconfig(tmp_path / "kubeconfig")


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubeconfig_path: Path, tmp_path: Path) -> KubectlRunner:
    """Run the real kubectl against the sim: ``kubectl("get", "pods", check=True, input=None)``."""
    if KUBECTL is None:
        pytest.skip("kubectl binary not found (set KUBETASK_KUBECTL or put it in ~/.cache/kubetask/bin/kubectl)")
    binary = KUBECTL
    cache = tmp_path / "kube-cache"

    def run(*args: str, check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = [binary, f"--kubeconfig={kubeconfig_path}", f"--cache-dir={cache}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout,
                              env={**os.environ, "HOME": str(tmp_path)})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    return run
