"""GitOps manifests: the kustomize base is in sync with the chart, overlays render and validate.

Needs helm (sync check) and kubectl (kustomize); each is skipped with a message if missing.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

MANIFESTS = kt.REPO / "manifests"
HELM = kt.find_helm()
KUBECTL = kt.find_kubectl()
needs_helm = pytest.mark.skipif(HELM is None, reason="helm not found; run `make tools` (or set KUBETASK_HELM)")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl not found; run `make tools` (or set KUBETASK_KUBECTL)"
)
OVERLAYS = ("dev", "prod")


@cache
def kustomize(overlay: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    return kt.load_all(kt.run([KUBECTL, "kustomize", str(MANIFESTS / "overlays" / overlay)]).stdout)


def deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


@needs_helm
def test_base_in_sync_with_chart() -> None:
    assert HELM is not None
    proc = kt.run(["bash", str(kt.REPO / "hack" / "render-manifests.sh")], check=False)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    committed = (MANIFESTS / "base" / "kubetask.yaml").read_text()
    assert proc.stdout == committed, "manifests/base/kubetask.yaml is stale: run `make manifests`"


def test_base_has_no_secret_values() -> None:
    objects = kt.load_all((MANIFESTS / "base" / "kubetask.yaml").read_text())
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets must not be committed to the base"
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "TaskTemplate"} <= kinds


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    objects = kustomize(overlay)
    assert len(objects) > 10
    for obj in objects:
        kt.validate_object(obj)
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


@needs_kubectl
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


@needs_kubectl
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
    kt.validate_object(app)
    path = app["spec"]["source"]["path"]
    assert path == "manifests/overlays/prod"
    assert (kt.REPO / path / "kustomization.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "kubetask-system"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
