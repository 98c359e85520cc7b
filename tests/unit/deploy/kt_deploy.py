"""Shared helpers for the deployment unit tests (CRDs, templates, chart, manifests).

Pure file checks only: whether the apiserver accepts an object is asked of the real
kube-apiserver in tests/component/deploy/. Loaded by path from tests/unit/test_*.py
(``sys.path.insert``), so it needs neither a conftest.py nor ``tests`` being a package.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from kt_support import find_tool

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "crds"
CHART_DIR = REPO / "charts" / "kubetask"
VALUES_DIR = Path(__file__).resolve().parent / "values"
CRD_COPIES = (CHART_DIR / "crds", REPO / "kubetask" / "resources" / "crds")
CRD_FILES = tuple(sorted(p.name for p in CRD_DIR.glob("*.yaml")))
BASE_MANIFEST = REPO / "manifests" / "base" / "kubetask.yaml"
TEMPLATES_DIR = REPO / "kubetask" / "resources" / "tasktemplates"
CHART_TEMPLATES_COPY = CHART_DIR / "files" / "tasktemplates"
GROUP = "kubetask.io"


# --------------------------------------------------------------------------- tools


def require_tool(name: str) -> str:
    """helm/kubectl (``$KUBETASK_<NAME>``, ~/.cache/kubetask/bin, PATH): CI always has them, so fail if missing."""
    binary = find_tool(name)
    if binary is None:
        pytest.fail(f"{name} not found: run `make tools` (CI runs hack/fetch-tools.sh) or set KUBETASK_{name.upper()}")
    return binary


def run(cmd: list[str], *, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------- CRDs


@cache
def crds() -> dict[str, dict[str, Any]]:
    """Our CRDs (from the one source, crds/) by kind."""
    out = {}
    for name in CRD_FILES:
        doc = yaml.safe_load((CRD_DIR / name).read_text())
        out[doc["spec"]["names"]["kind"]] = doc
    return out


def crd_schema(kind: str) -> dict[str, Any]:
    version = crds()[kind]["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def check_envelope(obj: dict[str, Any]) -> None:
    """apiVersion, kind and a DNS-subdomain name: all we check of kinds no cluster here serves."""
    assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], obj
    assert isinstance(obj.get("kind"), str) and obj["kind"], obj
    assert isinstance(obj.get("metadata"), dict) and obj["metadata"].get("name"), obj
    name = obj["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 253, f"{obj['kind']}/{name}"


# --------------------------------------------------------------------------- walking


def walk_schema(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a dotted path (``[]`` for items, ``{}`` for map values)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk_schema(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk_schema(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_schema(schema["additionalProperties"], f"{path}{{}}")
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(schema.get(key, [])):
            yield from walk_schema(sub, f"{path}<{key}{i}>")
    if isinstance(schema.get("not"), dict):
        yield from walk_schema(schema["not"], f"{path}<not>")


def rbac_rules(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj.get("kind") in ("Role", "ClusterRole"):
            for rule in obj.get("rules") or []:
                yield f"{obj['kind']}/{obj['metadata']['name']}", rule


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        kind = obj.get("kind")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{kind}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{obj['metadata']['name']}", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f"{kind}/{obj['metadata']['name']}", obj["spec"]


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Pod Security Standard "restricted" checks (plus our read-only-root rule)."""
    problems = []
    psc = pod.get("securityContext") or {}
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    for vol in pod.get("volumes") or []:
        allowed = {
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
            "name",
        }
        if set(vol) - allowed:
            problems.append(f"volume {vol['name']} type {set(vol) - allowed}")
    containers = (pod.get("initContainers") or []) + pod["containers"]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation not false")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities not dropping ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem not true")
        for port in c.get("ports") or []:
            if "hostPort" in port:
                problems.append(f"{name}: hostPort")
        if not (c.get("resources") or {}).get("requests"):
            problems.append(f"{name}: no resource requests")
    return problems
