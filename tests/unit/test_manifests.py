"""GitOps manifests: the kustomize base is in sync with the chart, overlays render as intended.

Needs helm (sync check) and kubectl (kustomize); fails without them (CI always has both).
The real kube-apiserver's verdict on the overlays: tests/component/deploy/test_deploy_manifests.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

MANIFESTS = kt.REPO / "manifests"
OVERLAYS = ("dev", "prod")


@cache
def kustomize(overlay: str) -> list[dict[str, Any]]:
    return kt.load_all(kt.run([kt.require_tool("kubectl"), "kustomize", str(MANIFESTS / "overlays" / overlay)]).stdout)


def deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_base_in_sync_with_chart() -> None:
    helm = kt.require_tool("helm")
    proc = subprocess.run(["bash", str(kt.REPO / "hack" / "render-manifests.sh")], capture_output=True, text=True,
                          cwd=kt.REPO, timeout=300, env={**os.environ, "HELM": helm})
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    committed = (MANIFESTS / "base" / "kubetask.yaml").read_text()
    assert proc.stdout == committed, "manifests/base/kubetask.yaml is stale: run `make manifests`"


def test_base_has_no_secret_values() -> None:
    objects = kt.load_all((MANIFESTS / "base" / "kubetask.yaml").read_text())
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets must not be committed to the base"
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "TaskTemplate"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_scoped_and_restricted(overlay: str) -> None:
    objects = kustomize(overlay)
    assert len(objects) > 10
    for obj in objects:
        kt.check_envelope(obj)
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "TaskTemplate", "Tenant") and not obj[
            "kind"
        ].startswith("Cluster"):
            assert obj["metadata"].get("namespace") in (None, "kubetask-system") or obj["kind"] in (
                "Role",
                "RoleBinding",
            ), obj["metadata"]
    for name, pod in kt.pod_specs(objects):
        assert kt.restricted_violations(pod) == [], name
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_dev_overlay() -> None:
    objects = kustomize("dev")
    for name in ("kubetask-operator", "kubetask-api"):
        dep = deployment(objects, name)
        assert dep["spec"]["replicas"] == 1
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "ghcr.io/kubetask/kubetask:dev"
        assert container["imagePullPolicy"] == "Never"
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["metadata"]["name"] == "kubetask-callback"


def test_prod_overlay() -> None:
    objects = kustomize("prod")
    assert deployment(objects, "kubetask-operator")["spec"]["replicas"] == 2
    api = deployment(objects, "kubetask-api")
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"
    pdbs = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert pdbs["kubetask-api"]["minAvailable"] == 2 and "kubetask-operator" in pdbs
    assert not [o for o in objects if o["kind"] == "Secret"]
    image = api["spec"]["template"]["spec"]["containers"][0]["image"]
    assert not image.endswith((":dev", ":latest"))


def test_argocd_application() -> None:
    app = yaml.safe_load((MANIFESTS / "argocd" / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    kt.check_envelope(app)  # Argo CD's kind: no cluster in the tests serves it
    path = app["spec"]["source"]["path"]
    assert path == "manifests/overlays/prod"
    assert (kt.REPO / path / "kustomization.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "kubetask-system"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
