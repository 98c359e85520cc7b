"""The CRDs in crds/: Kubernetes-valid, structural, in step with kubetask.core.models.

Checks what the apiserver would check when the CRDs are applied (we have no cluster
here): the CRD object against the Kubernetes OpenAPI schema, the structural-schema
rules, defaults, printer columns and CEL rules; plus that the copies in the chart and
the package are byte-identical and that the example Tasks validate.
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

from kubetask.core import models

KINDS = ("Task", "TaskTemplate", "Tenant")
EXAMPLES = sorted((kt.REPO / "tests" / "examples").glob("*.yaml"))


def _nodes(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return list(kt.walk_schema(kt.crd_schema(kind)))


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_valid_kubernetes_object(kind: str) -> None:
    crd = kt.crds()[kind]
    version = kt.k8s_version()
    assert kubernetes_validate.validate(crd, version, strict=True) == ".".join(version.split(".")[:2])


@pytest.mark.parametrize("kind", KINDS)
def test_crd_names_and_versions(kind: str) -> None:
    crd = kt.crds()[kind]
    spec = crd["spec"]
    assert spec["group"] == kt.GROUP
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{kt.GROUP}"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == kind.lower() + "s"
    assert spec["names"]["categories"] == ["kubetask"]
    expected_short = {"Task": ["kt"], "TaskTemplate": ["ktt"], "Tenant": ["ktn"]}[kind]
    assert spec["names"]["shortNames"] == expected_short
    assert spec["scope"] == ("Namespaced" if kind == "Task" else "Cluster")
    versions = spec["versions"]
    assert [(v["name"], v["served"], v["storage"]) for v in versions] == [("v1alpha1", True, True)]
    if kind != "TaskTemplate":
        assert versions[0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    root = kt.crd_schema(kind)
    assert root["type"] == "object"
    problems = []
    for path, node in _nodes(kind):
        in_junctor = "<" in path
        free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        if not in_junctor and not node.get("type") and not free:
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        for banned in ("$ref", "definitions", "id", "patternProperties", "dependencies", "uniqueItems"):
            if banned in node:
                problems.append(f"{path}: {banned} is not allowed")
        if "items" in node and not isinstance(node["items"], dict):
            problems.append(f"{path}: items must be one schema")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        if node.get("x-kubernetes-int-or-string"):
            if "type" in node:
                problems.append(f"{path}: int-or-string with a type")
            if node.get("anyOf", [{"type": "integer"}, {"type": "string"}]) != [
                {"type": "integer"},
                {"type": "string"},
            ]:
                problems.append(f"{path}: int-or-string anyOf must be [integer, string]")
        elif any(k in node for k in ("anyOf", "oneOf", "allOf", "not")):
            problems.append(f"{path}: junctors are only used for int-or-string here")
        if in_junctor and set(node) - {"type"} and node.get("type") not in ("integer", "string"):
            problems.append(f"{path}: junctor branch {node}")
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "set" and node["items"].get("type") not in ("string", "integer", "number", "boolean"):
            problems.append(f"{path}: set list with non-scalar items")
        if list_type == "map":
            keys = node.get("x-kubernetes-list-map-keys") or []
            items = node["items"]
            if not keys or any(k not in items.get("properties", {}) for k in keys):
                problems.append(f"{path}: map list keys {keys} not properties of the items")
            if any(k not in items.get("required", []) and "default" not in items["properties"][k] for k in keys):
                problems.append(f"{path}: map list keys must be required or defaulted")
        for req in node.get("required", []):
            if req not in node.get("properties", {}):
                problems.append(f"{path}: required {req} is not a property")
    # metadata: only name/generateName may be restricted at the root.
    meta = root["properties"]["metadata"]
    assert set(meta) <= {"type", "properties"} and meta["type"] == "object"
    assert set(meta.get("properties", {})) <= {"name", "generateName"}
    assert root["properties"]["apiVersion"] == {"type": "string"}
    assert root["properties"]["kind"] == {"type": "string"}
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_valid_against_own_schema(kind: str) -> None:
    count = 0
    for path, node in _nodes(kind):
        if "default" not in node:
            continue
        count += 1
        assert not path.startswith(".metadata"), f"{path}: defaults are not allowed in metadata"
        sub = {k: v for k, v in node.items() if k != "default"}
        jsonschema.Draft7Validator(sub).validate(kt.apply_defaults(sub, node["default"]))
    assert count > 0


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


@pytest.mark.parametrize("kind", KINDS)
def test_cel_rules_compile_and_reference_real_fields(kind: str) -> None:
    rules = 0
    for path, node in _nodes(kind):
        for validation in node.get("x-kubernetes-validations", []):
            rules += 1
            assert validation.get("message"), f"{path}: rule without a message"
            kt.cel_program(validation["rule"])  # raises on a syntax error
            props = set(node.get("properties", {}))
            for ref in re.findall(r"(?:self|oldSelf)\.([A-Za-z_]\w*)", validation["rule"]):
                name = re.sub(r"^__(\w+)__$", r"\1", ref)
                assert name in props, f"{path}: rule refers to unknown field {ref}"
    assert rules > 0 or kind == "TaskTemplate"


def test_broken_cel_rule_fails_compilation() -> None:
    """The compile check above is able to fail."""
    import celpy
    with pytest.raises(celpy.CELParseError):
        kt.cel_program("has(self.image) &&")


@pytest.mark.parametrize("name", kt.CRD_FILES)
def test_copies_are_byte_identical(name: str) -> None:
    canonical = (kt.CRD_DIR / name).read_bytes()
    for directory in kt.CRD_COPIES:
        assert (directory / name).read_bytes() == canonical, f"{directory / name} differs; run make sync-crds"


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


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
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
    ],
)
def test_defaults_match_models(kind: str, path: str, expected: Any) -> None:
    assert dict(_nodes(kind))[path]["default"] == expected


def test_script_content_limit_matches_model() -> None:
    assert dict(_nodes("Task"))[".spec.script.content"]["maxLength"] == models.MAX_SCRIPT_BYTES


def test_phase_enum_matches_model() -> None:
    nodes = dict(_nodes("Task"))
    assert nodes[".status.phase"]["enum"] == [p.value for p in models.Phase]
    assert nodes[".spec.runtime"]["enum"] == [r.value for r in models.Runtime]
    assert nodes[".spec.script.language"]["enum"] == [s.value for s in models.ScriptLanguage]


# --------------------------------------------------------------------------- instances


def _task(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": "t1"}, "spec": spec}


GOOD_TASK = {"displayName": "hello", "image": "busybox:1.36", "command": ["echo", "hi"]}


def test_minimal_task_is_valid_and_defaulted() -> None:
    assert kt.crd_errors(_task(**GOOD_TASK)) == []
    spec = kt.apply_defaults(kt.crd_schema("Task"), _task(**GOOD_TASK))["spec"]
    assert spec["priority"] == 5 and spec["queue"] == "default" and spec["runtime"] == "job"
    assert spec["maxRetries"] == 0 and spec["retryBackoffSeconds"] == 10 and spec["cancel"] is False


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({**GOOD_TASK, "priority": 11}, "maximum"),
        ({**GOOD_TASK, "displayName": ""}, "non-empty"),
        ({**GOOD_TASK, "queue": "Not_A_Label"}, "match"),
        ({**GOOD_TASK, "runtime": "vm"}, "not one of"),
        ({**GOOD_TASK, "maxRetries": 21}, "maximum"),
        ({**GOOD_TASK, "resources": {"gpus": -1}}, "minimum"),
        ({**GOOD_TASK, "resources": {"memory": "lots"}}, "match"),
        ({**GOOD_TASK, "dependsOn": ["UPPER"]}, "match"),
        ({**GOOD_TASK, "dependsOn": [f"t{i}" for i in range(65)]}, "too long"),
        ({**GOOD_TASK, "scheduledAt": 5}, "not of type"),
        ({**GOOD_TASK, "scheduledAt": "tomorrow"}, "date-time"),
        ({"image": "x", "script": {"language": "python", "content": "print(1)"}}, "exactly one"),
        ({"displayName": "nothing to run"}, "exactly one"),
        ({"script": {"language": "ruby", "content": "puts 1"}}, "not one of"),
        ({**GOOD_TASK, "resources": {"gpuType": "A100"}}, "gpuType requires"),
        ({**GOOD_TASK, "tolerations": [{"operator": "Maybe"}]}, "not one of"),
    ],
)
def test_bad_tasks_are_rejected(spec: dict[str, Any], fragment: str) -> None:
    errors = kt.crd_errors(_task(**spec))
    assert errors, spec
    assert any(fragment in e for e in errors), errors


def test_any_json_values_accepted_where_free_form() -> None:
    task = _task(
        image="python:3.12-slim",
        args=[1, "two", {"three": 3}, [4], None, True],
        kwargs={"a": {"b": [1, 2]}},
        metadata={"team": "ml"},
        resources={"gpus": 2, "gpuType": "A100", "cpu": 4, "memory": "16Gi"},
    )
    task["status"] = {"phase": "Succeeded", "result": "plain string", "gpuSeconds": 12.5}
    assert kt.crd_errors(task) == []
    task["status"]["result"] = [1, {"x": None}]
    assert kt.crd_errors(task) == []


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ({"user": "alice"}, {"user": "alice", "priority": 9}, True),
        ({}, {"user": "alice"}, True),
        ({"user": "alice"}, {"user": "bob"}, False),
        ({"user": "alice"}, {}, False),
        ({"resources": {"gpus": 1}}, {"resources": {"gpus": 2}}, False),
        ({"dependsOn": ["a"]}, {"dependsOn": ["a", "b"]}, False),
        ({"runtime": "job"}, {"runtime": "pod"}, False),
        ({}, {"cancel": True}, True),
    ],
)
def test_transition_rules(old: dict[str, Any], new: dict[str, Any], ok: bool) -> None:
    errors = kt.crd_errors(_task(**GOOD_TASK, **new), old=_task(**GOOD_TASK, **old))
    assert (errors == []) is ok, errors


def test_image_cannot_be_swapped_for_script() -> None:
    new = _task(script={"language": "bash", "content": "echo"})
    assert kt.crd_errors(new, old=_task(**GOOD_TASK))


def test_tenant_examples() -> None:
    tenant = {
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "alice"},
        "spec": {
            "apiKeys": [{"name": "alice-api-key"}],
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}],
            "limits": {"maxRunning": 4, "gpuQuota": 8, "memoryQuota": "64Gi", "monthlyGpuHours": 100.5},
        },
        "status": {"running": 1, "month": "2025-08", "usage": [{"month": "2025-08", "gpuSeconds": 3.0}]},
    }
    assert kt.crd_errors(tenant) == []
    defaulted = kt.apply_defaults(kt.crd_schema("Tenant"), tenant)
    assert defaulted["spec"]["limits"]["maxPending"] == 50
    assert defaulted["spec"]["apiKeys"][0]["key"] == "sha256"
    models.TenantSpec.model_validate(defaulted["spec"])
    bad = yaml.safe_load(yaml.safe_dump(tenant))
    bad["spec"]["subjects"] = [{"kind": "ServiceAccount", "name": "ci"}]
    assert any("namespace" in e for e in kt.crd_errors(bad))
    bad["spec"]["subjects"] = [{"kind": "Robot", "name": "r"}]
    assert kt.crd_errors(bad)
    bad["spec"] = {"role": "root"}
    assert kt.crd_errors(bad)


# --------------------------------------------------------------------------- examples


def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"gpu-task", "script-task", "template-task", "dependency-chain", "retrying-task"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    docs = kt.load_all(path.read_text())
    assert docs
    for doc in docs:
        assert doc["kind"] == "Task"
        assert kt.crd_errors(doc) == [], f"{path.name}: {doc['metadata']['name']}"
        spec = kt.apply_defaults(kt.crd_schema("Task"), doc)["spec"]
        parsed = models.TaskSpec.model_validate(spec)
        assert parsed.to_k8s()["priority"] == spec["priority"]


def test_dependency_chain_refers_to_its_own_tasks() -> None:
    docs = kt.load_all((kt.REPO / "tests" / "examples" / "dependency-chain.yaml").read_text())
    names = {d["metadata"]["name"] for d in docs}
    deps = {dep for d in docs for dep in d["spec"].get("dependsOn", [])}
    assert len(docs) >= 3 and deps and deps <= names
