"""The deploy manifests on the real kube-apiserver: ``kubectl apply --dry-run=server``.

What is checked: the Helm chart rendered with --include-crds for every value set in
tests/unit/deploy/values/ and with the tenant values docs/deploy.md shows, and both kustomize
overlays (``kubectl kustomize manifests/overlays/<name>``). The CRDs they carry are applied for
real first (custom resources need them served), and so are the namespaces they write into
(kubetask-system as manifests/base/namespace.yaml declares it: Pod Security "restricted",
so the apiserver warns about any pod template that would be refused). Kinds this cluster
does not serve (cert-manager, Prometheus operator) are listed explicitly and only envelope-checked.
Real kubectl and helm from ~/.cache/kubetask/bin (or $KUBETASK_KUBECTL / $KUBETASK_HELM).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import yaml
from deploy_support import REPO, Obj, ensure_namespace, load_all, require_tool, run
from kt_support import KubectlRunner

from kubetask.cluster import LocalCluster
from kubetask.core import tenants

NAMESPACE = "kubetask-system"
VALUES_DIR = REPO / "tests" / "unit" / "deploy" / "values"
VALUE_SETS = sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))
OVERLAYS = sorted(p.name for p in (REPO / "manifests" / "overlays").iterdir() if p.is_dir())
NOT_SERVED_HERE = {("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer"),
                   ("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Third-party kinds the chart may render; their CRDs are not kubetask's to install."""
LAST_APPLIED = re.compile(r"^Warning: resource \S+ is missing the kubectl.kubernetes.io/last-applied-configuration")


def docs_tenant_values() -> str:
    """The ``tenants:`` values block of docs/deploy.md ("Configuring tenants")."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "deploy.md").read_text(), re.S)
    tenants = [b for b in blocks if "tenants" in (yaml.safe_load(b) or {})]
    assert len(tenants) == 1, "docs/deploy.md should show one tenants: values block"
    return tenants[0]


@cache
def helm_template(values: str) -> list[Obj]:
    """The chart rendered as docs/deploy.md installs it, with a value set (or the docs' tenants block)."""
    text = docs_tenant_values() if values == "docs-tenants" else (VALUES_DIR / f"{values}.yaml").read_text()
    proc = run([require_tool("helm"), "template", "kubetask", str(REPO / "charts" / "kubetask"),
                "--namespace", NAMESPACE, "--include-crds", "-f", "-"], input=text)
    return load_all(proc.stdout)


@cache
def kustomize(overlay: str) -> list[Obj]:
    return load_all(run([require_tool("kubectl"), "kustomize", str(REPO / "manifests" / "overlays" / overlay)]).stdout)


@pytest.fixture(scope="module")
def system_namespace(local_cluster: LocalCluster) -> str:
    """kubetask-system, created for real from manifests/base/namespace.yaml (Pod Security: restricted)."""
    (namespace,) = load_all((REPO / "manifests" / "base" / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == NAMESPACE
    local_cluster.apply(namespace)
    ensure_namespace(local_cluster, NAMESPACE)
    return NAMESPACE


def _served(cluster: LocalCluster, obj: Obj) -> bool:
    try:
        cluster.resource(obj["apiVersion"], obj["kind"])
        return True
    except KeyError:
        return False


def prepare(cluster: LocalCluster, objects: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Apply the CRDs and Namespaces for real, create the other namespaces written into if missing
    (a declared Tenant's namespace as the operator would: labelled with its tenant; left in place,
    as other tests of the session may use those tenants); return (objects this cluster serves,
    objects of third-party kinds)."""
    for obj in objects:
        if obj["kind"] in ("CustomResourceDefinition", "Namespace"):
            cluster.apply(obj)
    tenant_of = {tenants.tenant_namespace(o["metadata"]["name"], o.get("spec")): o["metadata"]["name"]
                 for o in objects if o["kind"] == "Tenant"}
    for namespace in sorted({o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}):
        labels = tenants.build_namespace(tenant_of[namespace], namespace)["metadata"]["labels"] \
            if namespace in tenant_of else None
        ensure_namespace(cluster, namespace, labels=labels)
    served = [o for o in objects if _served(cluster, o)]
    others = [o for o in objects if not _served(cluster, o)]
    return served, others


def server_dry_run(kubectl: KubectlRunner, objects: list[Obj], check: bool = True) -> Any:
    stream = yaml.safe_dump_all(objects, sort_keys=False)
    return kubectl("apply", "--dry-run=server", "-f", "-", input=stream, check=check, timeout=120)


def assert_all_accepted(proc: Any, objects: list[Obj]) -> None:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert all(line.endswith("(server dry run)") for line in lines), proc.stdout
    assert len(lines) == len(objects), f"{len(objects)} objects, kubectl reported:\n{proc.stdout}"
    for obj in objects:
        assert any(f"/{obj['metadata']['name']} " in line and obj["kind"].lower() in line for line in lines), (
            f"{obj['kind']}/{obj['metadata']['name']} not in kubectl's output:\n{proc.stdout}")
    # kubectl's own notice for objects the session fixture created with server-side apply is expected;
    # any other warning (Pod Security, unknown fields, deprecations) comes from the apiserver and fails.
    warnings = [line for line in proc.stderr.splitlines() if line.strip() and not LAST_APPLIED.search(line)]
    assert not warnings, "\n".join(warnings)


def check_third_party(objects: list[Obj]) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert kinds <= NOT_SERVED_HERE, f"kinds the cluster does not serve: {kinds - NOT_SERVED_HERE}"
    for obj in objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"]
        assert isinstance(obj.get("spec"), dict) and obj["spec"], obj


@pytest.mark.parametrize("values", [*VALUE_SETS, "docs-tenants"])
def test_chart_passes_server_dry_run(cluster: LocalCluster, kubectl: KubectlRunner, system_namespace: str,
                                     values: str) -> None:
    objects = helm_template(values)
    assert {o["kind"] for o in objects} >= {"CustomResourceDefinition", "Deployment", "ClusterRole"}
    served, others = prepare(cluster, objects)
    check_third_party(others)
    assert_all_accepted(server_dry_run(kubectl, served), served)
    if values == "docs-tenants":
        tenants = [o for o in served if o["kind"] == "Tenant"]
        assert [t["metadata"]["name"] for t in tenants] == ["alice"]


def test_docs_tenant_values_render_the_tenant_as_written() -> None:
    declared = yaml.safe_load(docs_tenant_values())["tenants"][0]
    (tenant,) = [o for o in helm_template("docs-tenants") if o["kind"] == "Tenant"]
    assert tenant["spec"]["limits"] == declared["limits"]
    assert tenant["spec"]["subjects"] == declared["subjects"]
    assert tenant["spec"]["apiKeys"] == declared["apiKeys"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_server_dry_run(cluster: LocalCluster, kubectl: KubectlRunner, system_namespace: str,
                                       overlay: str) -> None:
    objects = kustomize(overlay)
    assert any(o["kind"] == "Namespace" for o in objects)
    served, others = prepare(cluster, objects)
    assert not others, "the overlays only render kinds a plain cluster serves"
    assert_all_accepted(server_dry_run(kubectl, served), served)


def test_overlays_present() -> None:
    assert OVERLAYS == ["dev", "prod"]


# --------------------------------------------------------------------------- the check can fail


def _find(objects: list[Obj], kind: str, suffix: str = "") -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def _privileged(objects: list[Obj]) -> None:
    container = _find(objects, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["privileged"] = True
    container["securityContext"]["allowPrivilegeEscalation"] = True


def _bad_port(objects: list[Obj]) -> None:
    _find(objects, "Service")["spec"]["ports"][0]["port"] = 70000


def _bad_tenant(objects: list[Obj]) -> None:
    objects.append({"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "broken"},
                    "spec": {"role": "root"}})


def _bad_template(objects: list[Obj]) -> None:
    # a new one: kubectl apply's patch of an existing object (no last-applied annotation) would not drop the field
    template = copy.deepcopy(_find(objects, "TaskTemplate"))
    template["metadata"]["name"] = "broken-template"
    del template["spec"]["podTemplate"]
    objects.append(template)


def _bad_selector(objects: list[Obj]) -> None:
    deployment = _find(objects, "Deployment", "-api")
    deployment["spec"]["selector"]["matchLabels"] = {"app": "something-else"}


def _bad_binding(objects: list[Obj]) -> None:
    _find(objects, "ClusterRoleBinding")["roleRef"]["kind"] = "Role"


def _wrong_namespace(objects: list[Obj]) -> None:
    _find(objects, "ServiceAccount")["metadata"]["namespace"] = "no-such-namespace"


BROKEN: list[tuple[str, Callable[[list[Obj]], None], bool, str]] = [
    ("privileged-pod", _privileged, True, 'would violate PodSecurity "restricted:latest"'),
    ("service-port", _bad_port, False, "must be between 1 and 65535"),
    ("tenant-role", _bad_tenant, False, 'supported values: "user", "admin"'),
    ("template-without-pod", _bad_template, False, "spec.podTemplate: Required value"),
    ("selector-mismatch", _bad_selector, False, "`selector` does not match template `labels`"),
    ("cluster-binding-to-role", _bad_binding, False, "roleRef.kind"),
    ("missing-namespace", _wrong_namespace, False, 'namespaces "no-such-namespace" not found'),
]


@pytest.mark.parametrize(("mutate", "succeeds", "fragment"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_server_dry_run_catches_broken_manifests(cluster: LocalCluster, kubectl: KubectlRunner,
                                                 system_namespace: str, mutate: Callable[[list[Obj]], None],
                                                 succeeds: bool, fragment: str) -> None:
    """A refusal fails kubectl; a pod template the namespace's Pod Security level forbids is a warning."""
    objects = copy.deepcopy(kustomize("prod"))
    served, _ = prepare(cluster, objects)
    mutate(served)
    proc = server_dry_run(kubectl, served, check=False)
    assert (proc.returncode == 0) is succeeds, proc.stdout + proc.stderr
    assert fragment in proc.stderr, proc.stderr
