"""Shared helpers for the deployment tests (CRDs, templates, chart, manifests).

Loaded by path from tests/unit/test_*.py (see ``load_helpers`` there), so it needs
neither a conftest.py nor ``tests`` being a package.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from packaging.version import Version

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "crds"
CHART_DIR = REPO / "charts" / "kubetask"
VALUES_DIR = Path(__file__).resolve().parent / "values"
CRD_COPIES = (CHART_DIR / "crds", REPO / "kubetask" / "resources" / "crds")
CRD_FILES = ("task.yaml", "tasktemplate.yaml", "tenant.yaml")
TEMPLATES_DIR = REPO / "kubetask" / "resources" / "tasktemplates"
CHART_TEMPLATES_COPY = CHART_DIR / "files" / "tasktemplates"
GROUP = "kubetask.io"
MIN_K8S = Version("1.30")


# --------------------------------------------------------------------------- tools


def _find_tool(name: str, env_var: str) -> str | None:
    explicit = os.environ.get(env_var)
    if explicit and Path(explicit).is_file():
        return explicit
    cached = Path.home() / ".cache" / "kubetask" / "bin" / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(name)


def find_helm() -> str | None:
    """helm from $KUBETASK_HELM, ~/.cache/kubetask/bin (make tools), or PATH."""
    return _find_tool("helm", "KUBETASK_HELM")


def find_kubectl() -> str | None:
    """kubectl from $KUBETASK_KUBECTL, ~/.cache/kubetask/bin (make tools), or PATH."""
    return _find_tool("kubectl", "KUBETASK_KUBECTL")


def run(cmd: list[str], *, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------- schemas


@cache
def k8s_version() -> str:
    """Newest Kubernetes version kubernetes-validate ships (must be >= 1.30)."""
    versions = [v for v in kubernetes_validate.utils.all_versions() if Version(v) >= MIN_K8S]
    assert versions, f"kubernetes-validate ships no schemas >= {MIN_K8S}"
    return max(versions, key=Version)


@cache
def crds() -> dict[str, dict[str, Any]]:
    """Our CRDs by kind."""
    out = {}
    for name in CRD_FILES:
        doc = yaml.safe_load((CRD_DIR / name).read_text())
        out[doc["spec"]["names"]["kind"]] = doc
    return out


def crd_schema(kind: str) -> dict[str, Any]:
    version = crds()[kind]["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the apiserver does it (defaults of absent object fields)."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in schema.get("properties", {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def cel_program(rule: str) -> Any:
    import celpy

    # Kubernetes escapes CEL keywords used as property names as __keyword__.
    source = re.sub(r"__([A-Za-z_]+?)__", r"\1", rule)
    env = celpy.Environment()
    return env.program(env.compile(source))


def cel_errors(schema: dict[str, Any], value: Any, old: Any = None, path: str = "") -> list[str]:
    """Evaluate x-kubernetes-validations on every node present in ``value`` (and ``old``).

    Transition rules (those using ``oldSelf``) run only where an old value exists, like
    the apiserver does.
    """
    import celpy

    errors: list[str] = []
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        transition = "oldSelf" in rule
        if transition and old is None:
            continue
        act = {"self": celpy.json_to_cel(value)}
        if transition:
            act["oldSelf"] = celpy.json_to_cel(old)
        result = cel_program(rule).evaluate(act)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path or '<root>'}: {validation.get('message', rule)} ({result!r})")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                errors += cel_errors(sub, value[name], old_sub, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        # List items are correlated for transition rules only in map lists; skip oldSelf there.
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, None, f"{path}[{i}]")
    return errors


def crd_errors(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Validate a kubetask.io object like the apiserver would: defaults, schema, CEL rules."""
    kind = obj.get("kind", "")
    if kind not in crds():
        return [f"not a kubetask kind: {kind}"]
    crd = crds()[kind]
    if obj.get("apiVersion") != f"{GROUP}/{crd['spec']['versions'][0]['name']}":
        return [f"bad apiVersion {obj.get('apiVersion')}"]
    schema = crd_schema(kind)
    errors = []
    meta = obj.get("metadata") or {}
    if not meta.get("name") and not meta.get("generateName"):
        errors.append("metadata.name missing")
    if crd["spec"]["scope"] == "Cluster" and "namespace" in meta:
        errors.append(f"{kind} is cluster-scoped but has metadata.namespace")
    value = apply_defaults(schema, obj)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]
    if not errors:
        errors += cel_errors(schema, value, apply_defaults(schema, old) if old else None)
    return errors


def validate_object(obj: dict[str, Any]) -> None:
    """Validate any rendered object: Kubernetes kinds strictly, ours against our CRDs,
    other CRD kinds (cert-manager, Prometheus operator, Argo CD) by their envelope."""
    assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], obj
    assert isinstance(obj.get("kind"), str) and obj["kind"], obj
    assert isinstance(obj.get("metadata"), dict) and obj["metadata"].get("name"), obj
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["apiVersion"].split("/")[0] == GROUP:
        errors = crd_errors(obj)
        assert not errors, f"{name}: {errors}"
        return
    try:
        kubernetes_validate.validate(obj, k8s_version(), strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        assert "." in group and not group.endswith(".k8s.io"), f"{name}: no schema for {obj['apiVersion']}"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"]), name
    except kubernetes_validate.utils.ValidationError as exc:
        raise AssertionError(f"{name}: {exc.message} at {list(exc.absolute_path)}") from exc


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
