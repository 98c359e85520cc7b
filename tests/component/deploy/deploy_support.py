"""Helpers for tests/component/deploy: ask the session's real kube-apiserver whether it accepts an object.

Creates go through ``?dryRun=All`` (server-side dry run: every admission and validation step,
nothing stored) unless a test needs a real object, e.g. the old side of a transition rule.
"""

from __future__ import annotations

import copy
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kt_support import find_tool

from kubetask.cluster import LocalCluster

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[3]
API_VERSION = "kubetask.io/v1alpha1"
DRY_RUN = {"dryRun": "All"}
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
EXAMPLES = sorted((REPO / "tests" / "examples").glob("*.yaml"))
TEMPLATE_FILES = sorted((REPO / "kubetask" / "resources" / "tasktemplates").glob("*.yaml"))


def load_all(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def require_tool(name: str) -> str:
    """helm/kubectl: CI always has them (hack/fetch-tools.sh), so a missing one fails the test."""
    binary = find_tool(name)
    if binary is None:
        pytest.fail(f"{name} not found: run `make tools` (CI runs hack/fetch-tools.sh) or set KUBETASK_{name.upper()}")
    return binary


def run(cmd: list[str], *, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, input=input)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- requests


def collection(cluster: LocalCluster, obj: Obj, namespace: str | None = None) -> str:
    meta = obj.get("metadata") or {}
    return cluster.path(obj["apiVersion"], obj["kind"], None, namespace or meta.get("namespace"))


def dry_run_create(cluster: LocalCluster, obj: Obj, namespace: str | None = None,
                   params: dict[str, str] | None = None) -> httpx.Response:
    """POST ``obj`` with ``dryRun=All``: the apiserver's full verdict, nothing stored."""
    return cluster.admin().post(collection(cluster, obj, namespace), params={**DRY_RUN, **(params or {})}, json=obj)


def create(cluster: LocalCluster, obj: Obj, namespace: str | None = None) -> Obj:
    """Create ``obj`` for real (it must be accepted)."""
    response = cluster.admin().post(collection(cluster, obj, namespace), json=obj)
    assert response.status_code == 201, f"{obj['kind']} {obj['metadata'].get('name')}: {response.text}"
    body: Obj = response.json()
    return body


def causes(response: httpx.Response) -> list[tuple[str, str]]:
    """(field, message) of each cause of a refusal (``details.causes`` of the Status)."""
    body = response.json()
    return [(c.get("field", ""), c.get("message", "")) for c in (body.get("details") or {}).get("causes") or ()]


def accepted(response: httpx.Response) -> Obj:
    assert response.status_code in (200, 201), f"refused ({response.status_code}): {response.text}"
    body: Obj = response.json()
    return body


def assert_refused(response: httpx.Response, field: str, fragment: str, status: int = 422) -> None:
    """Refused with ``status``; for 422 a cause on ``field`` whose message contains ``fragment``."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:2000]}"
    body = response.json()
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    if status == 422:
        assert body["reason"] == "Invalid", body
        found = causes(response)
        assert any(f == field and fragment in m for f, m in found), f"no cause on {field!r} with {fragment!r}: {found}"
    else:
        assert fragment in body["message"], body["message"]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def ensure_namespace(cluster: LocalCluster, name: str, labels: dict[str, str] | None = None,
                     service_account: bool = False) -> None:
    """Create the namespace if it does not exist (for real); optionally wait for its default ServiceAccount,
    which the ServiceAccount admission plugin requires before any Pod (even a dry-run one) is admitted."""
    http = cluster.admin()
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    response = http.post("/api/v1/namespaces", json=body)
    assert response.status_code in (201, 409), response.text
    wait_for(lambda: (http.get(f"/api/v1/namespaces/{name}").json().get("status") or {}).get("phase") == "Active",
             f"namespace {name} to be Active")
    if service_account:
        wait_for(lambda: http.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
                 f"the default ServiceAccount in {name}")


def renamed_crd(crd: Obj, group: str = "deploy-check.kubetask.dev") -> Obj:
    """``crd`` in another API group: its dry-run create is a fresh creation, never an update of ours."""
    crd = copy.deepcopy(crd)
    crd["spec"]["group"] = group
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
    return crd
