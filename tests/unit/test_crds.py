"""The CRDs in crds/ as files: conventions, in step with kubetask.core.models, one source.

Pure and fast: nothing here asks whether the apiserver would accept something. The real
kube-apiserver checks the CRDs themselves (structural schema, defaults, CEL rules) and
every good and bad Task, Tenant and TaskTemplate in tests/component/deploy/.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

from kubetask.core import models

KINDS = ("Task", "TaskTemplate", "TaskWebhook", "Tenant")
EXAMPLES = sorted((kt.REPO / "tests" / "examples").glob("*.yaml"))


def _nodes(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return list(kt.walk_schema(kt.crd_schema(kind)))


def test_every_kind_has_a_crd() -> None:
    assert set(kt.crds()) == set(KINDS)
    assert kt.CRD_FILES == ("task.yaml", "tasktemplate.yaml", "taskwebhook.yaml", "tenant.yaml")


@pytest.mark.parametrize("kind", KINDS)
def test_crd_names_and_versions(kind: str) -> None:
    crd = kt.crds()[kind]
    spec = crd["spec"]
    assert spec["group"] == kt.GROUP
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{kt.GROUP}"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == kind.lower() + "s"
    assert spec["names"]["categories"] == ["kubetask"]
    expected_short = {"Task": ["kt"], "TaskTemplate": ["ktt"], "TaskWebhook": ["ktw"], "Tenant": ["ktn"]}[kind]
    assert spec["names"]["shortNames"] == expected_short
    assert spec["scope"] == ("Namespaced" if kind in ("Task", "TaskWebhook") else "Cluster")
    versions = spec["versions"]
    assert [(v["name"], v["served"], v["storage"]) for v in versions] == [("v1alpha1", True, True)]
    if kind != "TaskTemplate":
        assert versions[0]["subresources"] == {"status": {}}


def convention_problems(schema: dict[str, Any]) -> list[str]:
    """kubetask's own schema conventions, beyond what the apiserver enforces (it accepts all of these)."""
    problems = []
    for path, node in kt.walk_schema(schema):
        for validation in node.get("x-kubernetes-validations", []):
            if not validation.get("message"):
                problems.append(f"{path}: CEL rule without a message: {validation.get('rule')}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false (unknown fields are pruned instead)")
        if node.get("x-kubernetes-int-or-string"):
            if "type" in node:
                problems.append(f"{path}: int-or-string with a type")
            if node.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
                problems.append(f"{path}: int-or-string anyOf must be [integer, string]")
        elif any(k in node for k in ("anyOf", "oneOf", "allOf", "not")):
            problems.append(f"{path}: junctors are only used for int-or-string here")
    if schema.get("properties", {}).get("apiVersion") != {"type": "string"}:
        problems.append("apiVersion is not a plain string")
    if schema.get("properties", {}).get("kind") != {"type": "string"}:
        problems.append("kind is not a plain string")
    return problems


@pytest.mark.parametrize("kind", KINDS)
def test_schema_conventions(kind: str) -> None:
    assert kt.crd_schema(kind)["type"] == "object"
    problems = convention_problems(kt.crd_schema(kind))
    assert not problems, "\n".join(problems)


def test_convention_check_can_fail() -> None:
    schema = copy.deepcopy(kt.crd_schema("Task"))
    spec = schema["properties"]["spec"]
    spec["x-kubernetes-validations"][0].pop("message")
    spec["properties"]["resources"]["properties"]["cpu"]["type"] = "string"
    spec["properties"]["queue"]["oneOf"] = [{"maxLength": 3}]
    problems = convention_problems(schema)
    assert len(problems) == 3, problems


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_point_at_schema_fields(kind: str) -> None:
    version = kt.crds()[kind]["spec"]["versions"][0]
    columns = version["additionalPrinterColumns"]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    nodes = dict(_nodes(kind))
    for col in columns[:-1]:
        assert re.fullmatch(r"(\.[A-Za-z0-9_]+)+", col["jsonPath"]), col
        node = nodes.get(col["jsonPath"])
        assert node is not None, f"{col['name']}: {col['jsonPath']} is not in the schema"
        assert node.get("type") == {"date": "string"}.get(col["type"], col["type"]), col
    if kind == "Task":
        assert [c["name"] for c in columns] == ["Status", "Priority", "User", "GPUs", "Node", "Age"]
        assert {c["name"]: c["jsonPath"] for c in columns}["GPUs"] == ".spec.resources.gpus"
    if kind == "Tenant":
        assert [c["name"] for c in columns] == ["Namespace", "Running", "Pending", "GPUs", "Age"]


# --------------------------------------------------------------------------- one source


@pytest.mark.parametrize("directory", kt.CRD_COPIES, ids=lambda d: str(d.relative_to(kt.REPO)))
def test_copies_hold_exactly_the_source_files(directory: Path) -> None:
    assert tuple(sorted(p.name for p in directory.glob("*.yaml"))) == kt.CRD_FILES, "run make sync-crds"


@pytest.mark.parametrize("name", kt.CRD_FILES)
def test_copies_are_byte_identical(name: str) -> None:
    canonical = (kt.CRD_DIR / name).read_bytes()
    for directory in kt.CRD_COPIES:
        assert (directory / name).read_bytes() == canonical, f"{directory / name} differs; run make sync-crds"


def test_base_manifest_holds_the_source_crds() -> None:
    """manifests/base/kubetask.yaml embeds the CRDs: the same documents as crds/, compared parsed."""
    base = [d for d in kt.load_all(kt.BASE_MANIFEST.read_text()) if d["kind"] == "CustomResourceDefinition"]
    by_name = {d["metadata"]["name"]: d for d in base}
    assert len(by_name) == len(base), "a CRD appears twice in the base"
    source = {c["metadata"]["name"]: c for c in kt.crds().values()}
    assert set(by_name) == set(source), "run make sync-crds"
    for name, crd in source.items():
        assert by_name[name] == crd, f"{name} in {kt.BASE_MANIFEST.relative_to(kt.REPO)} is stale: run make sync-crds"


def test_sync_is_one_command() -> None:
    """`make sync-crds` and `make manifests` both run hack/sync-crds.sh, which copies and re-renders."""
    makefile = (kt.REPO / "Makefile").read_text()
    recipe = re.search(r"^sync-crds:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "hack/sync-crds.sh" in recipe.group(1)
    assert re.search(r"^manifests: sync-crds\b", makefile, re.M)
    script = (kt.REPO / "hack" / "sync-crds.sh").read_text()
    for copy_dir in kt.CRD_COPIES:
        assert str(copy_dir.relative_to(kt.REPO)) in script
    assert "render-manifests.sh --write" in script


def test_sync_script_regenerates_every_copy(tmp_path: Path) -> None:
    """hack/sync-crds.sh, run on a scratch copy of the repo after a CRD change: every copy follows."""
    for part in ("crds", "charts/kubetask", "kubetask/resources/crds", "manifests/base"):
        shutil.copytree(kt.REPO / part, tmp_path / part)
    (tmp_path / "hack").mkdir()
    for script in ("sync-crds.sh", "render-manifests.sh"):
        shutil.copy2(kt.REPO / "hack" / script, tmp_path / "hack" / script)
    source = tmp_path / "crds" / "task.yaml"
    source.write_text(source.read_text().replace("A task queued by kubetask", "A task queued by kubetask (changed)"))
    (tmp_path / "kubetask/resources/crds/removed.yaml").write_text("stale: true\n")
    env = {**os.environ, "HELM": kt.require_tool("helm")}
    proc = subprocess.run(["bash", str(tmp_path / "hack" / "sync-crds.sh")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for directory in ("charts/kubetask/crds", "kubetask/resources/crds"):
        assert sorted(p.name for p in (tmp_path / directory).glob("*.yaml")) == list(kt.CRD_FILES)
        assert (tmp_path / directory / "task.yaml").read_bytes() == source.read_bytes()
    base = kt.load_all((tmp_path / "manifests/base/kubetask.yaml").read_text())
    (task,) = [d for d in base if d.get("metadata", {}).get("name") == "tasks.kubetask.io"]
    assert task == yaml.safe_load(source.read_text())


# --------------------------------------------------------------------------- models


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(pydantic model inside the annotation, whether it is a list of them)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin is list and args:
        inner, _ = _model_of(args[0])
        return inner, True
    for arg in args:
        inner, is_list = _model_of(arg)
        if inner is not None:
            return inner, is_list
    return None, False


def _compare(model: type[BaseModel], node: dict[str, Any], path: str, problems: list[str]) -> None:
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    props = node.get("properties", {})
    for missing in sorted(set(fields) - set(props)):
        problems.append(f"{path}.{missing}: in {model.__name__} but not in the CRD")
    for extra in sorted(set(props) - set(fields)):
        problems.append(f"{path}.{extra}: in the CRD but not in {model.__name__}")
    for alias, field in fields.items():
        if alias not in props:
            continue
        inner, is_list = _model_of(field.annotation)
        if inner is None:
            continue
        sub = props[alias]["items"] if is_list else props[alias]
        _compare(inner, sub, f"{path}.{alias}", problems)


@pytest.mark.parametrize(
    ("kind", "spec_model", "status_model"),
    [
        ("Task", models.TaskSpec, models.TaskStatus),
        ("TaskTemplate", models.TaskTemplateSpec, None),
        ("Tenant", models.TenantSpec, models.TenantStatus),
    ],
)
def test_schema_fields_match_models(kind: str, spec_model: Any, status_model: Any) -> None:
    props = kt.crd_schema(kind)["properties"]
    problems: list[str] = []
    _compare(spec_model, props["spec"], ".spec", problems)
    if status_model is not None:
        _compare(status_model, props["status"], ".status", problems)
    else:
        assert "status" not in props
    assert not problems, "\n".join(problems)


def test_model_comparison_can_fail() -> None:
    spec = copy.deepcopy(kt.crd_schema("Task")["properties"]["spec"])
    spec["properties"]["bogus"] = {"type": "string"}
    del spec["properties"]["resources"]["properties"]["gpus"]
    problems: list[str] = []
    _compare(models.TaskSpec, spec, ".spec", problems)
    assert len(problems) == 2, problems


DEFAULTS = [
    ("Task", ".spec.priority", models.DEFAULT_PRIORITY),
    ("Task", ".spec.queue", models.DEFAULT_QUEUE),
    ("Task", ".spec.maxRetries", models.TaskSpec.model_fields["max_retries"].default),
    ("Task", ".spec.retryBackoffSeconds", models.TaskSpec.model_fields["retry_backoff_seconds"].default),
    ("Task", ".spec.runtime", "job"),
    ("Task", ".spec.cancel", False),
    ("Task", ".spec.resources.gpus", 0),
    ("Tenant", ".spec.limits.maxPending", models.DEFAULT_MAX_PENDING),
    ("Tenant", ".spec.limits.maxTimeoutSeconds", models.DEFAULT_MAX_TIMEOUT_SECONDS),
    ("Tenant", ".spec.apiKeys[].key", "sha256"),
    ("Tenant", ".spec.role", "user"),
]
"""Schema defaults the models rely on; tests/component/deploy checks the apiserver applies them."""


@pytest.mark.parametrize(("kind", "path", "expected"), DEFAULTS)
def test_defaults_match_models(kind: str, path: str, expected: Any) -> None:
    assert dict(_nodes(kind))[path]["default"] == expected


def test_every_default_is_listed() -> None:
    found = {(kind, path) for kind in ("Task", "Tenant") for path, node in _nodes(kind) if "default" in node}
    found -= {("Tenant", ".spec"), ("Tenant", ".spec.limits")}  # {}: containers for the defaults below
    assert found == {(kind, path) for kind, path, _ in DEFAULTS}


def test_script_content_limit_matches_model() -> None:
    assert dict(_nodes("Task"))[".spec.script.content"]["maxLength"] == models.MAX_SCRIPT_BYTES


def test_phase_enum_matches_model() -> None:
    nodes = dict(_nodes("Task"))
    assert nodes[".status.phase"]["enum"] == [p.value for p in models.Phase]
    assert nodes[".spec.runtime"]["enum"] == [r.value for r in models.Runtime]
    assert nodes[".spec.script.language"]["enum"] == [s.value for s in models.ScriptLanguage]


# --------------------------------------------------------------------------- examples


def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"gpu-task", "script-task", "template-task", "dependency-chain", "retrying-task"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path: Path) -> None:
    """Each example is a Task the models read (the apiserver's verdict: tests/component/deploy)."""
    docs = kt.load_all(path.read_text())
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == f"{kt.GROUP}/v1alpha1"
        assert doc["kind"] == "Task"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert "namespace" not in doc["metadata"], "examples go in the tenant's namespace (kubectl -n)"
        parsed = models.TaskSpec.model_validate(doc["spec"])
        assert parsed.to_k8s()["priority"] == doc["spec"].get("priority", models.DEFAULT_PRIORITY)
        assert sum(k in doc["spec"] for k in ("template", "image", "script")) == 1, doc["metadata"]["name"]


def test_dependency_chain_refers_to_its_own_tasks() -> None:
    docs = kt.load_all((kt.REPO / "tests" / "examples" / "dependency-chain.yaml").read_text())
    names = {d["metadata"]["name"] for d in docs}
    deps = {dep for d in docs for dep in d["spec"].get("dependsOn", [])}
    assert len(docs) >= 3 and deps and deps <= names

