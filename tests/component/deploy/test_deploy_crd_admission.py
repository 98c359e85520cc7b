"""kubetask's CRDs on the real kube-apiserver (v1.36, the session's LocalCluster).

The session fixture applies crds/*.yaml for real, which has the apiserver check each CRD:
structural schema, defaults valid against their schema, every CEL rule compiled, type-checked
against the schema and cost-estimated. Here: the CRDs are established exactly as written and
pass a fresh creation; deliberately broken variants are refused (so those checks are live);
bad Tasks, Tenants and TaskTemplates are refused with the field and message a client sees
(server-side dry run), good ones and tests/examples/*.yaml are accepted and defaulted;
the transition rules (immutable fields) refuse updates of real Tasks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    API_VERSION,
    CRD_FILES,
    EXAMPLES,
    TEMPLATE_FILES,
    Obj,
    accepted,
    assert_refused,
    causes,
    create,
    dry_run_create,
    load_all,
    renamed_crd,
    unique,
)

from kubetask.cluster import LocalCluster
from kubetask.core import models

CRDS = "apiextensions.k8s.io/v1"


def _crd(kind: str) -> Obj:
    for path in CRD_FILES:
        doc: Obj = yaml.safe_load(path.read_text())
        if doc["spec"]["names"]["kind"] == kind:
            return doc
    raise KeyError(kind)


# --------------------------------------------------------------------------- the CRDs themselves


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_is_established_as_written(cluster: LocalCluster, path: Path) -> None:
    source = yaml.safe_load(path.read_text())
    live = cluster.get(CRDS, "CustomResourceDefinition", source["metadata"]["name"])
    assert live is not None, "the session fixture applies crds/"
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", conditions
    assert "NonStructuralSchema" not in conditions
    assert live["status"]["acceptedNames"]["kind"] == source["spec"]["names"]["kind"]
    assert live["status"]["acceptedNames"]["shortNames"] == source["spec"]["names"]["shortNames"]
    assert live["spec"]["versions"] == source["spec"]["versions"], "the apiserver changed the schema (pruned it?)"


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_passes_a_fresh_creation(cluster: LocalCluster, path: Path) -> None:
    """All of a create's checks (CEL compiled with the creation environment), not only an update's."""
    crd = renamed_crd(yaml.safe_load(path.read_text()))
    body = accepted(dry_run_create(cluster, crd))
    assert body["spec"]["versions"][0]["schema"] == crd["spec"]["versions"][0]["schema"]


def _schema(crd: Obj) -> Obj:
    schema: Obj = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _spec(crd: Obj) -> Obj:
    spec: Obj = _schema(crd)["properties"]["spec"]
    return spec


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """Set a schema node key: ``_set("spec.priority.default", 11)``."""
    *nodes, key = path.split(".")

    def mutate(crd: Obj) -> None:
        node = _schema(crd)
        for name in nodes:
            node = node["items"] if name == "[]" else node["properties"][name]
        node[key] = value

    return mutate


def _rule(path: str, rule: str) -> Callable[[Obj], None]:
    return _set(f"{path}.x-kubernetes-validations", [{"rule": rule, "message": "broken on purpose"}])


def _first_rule(rule: str) -> Callable[[Obj], None]:
    def mutate(crd: Obj) -> None:
        _spec(crd)["x-kubernetes-validations"][0]["rule"] = rule

    return mutate


def _map_list_keyed_by(key: str) -> Callable[[Obj], None]:
    def mutate(crd: Obj) -> None:
        env = _spec(crd)["properties"]["env"]
        env["x-kubernetes-list-type"] = "map"
        env["x-kubernetes-list-map-keys"] = [key]

    return mutate


def _drop_type(crd: Obj) -> None:
    del _spec(crd)["properties"]["displayName"]["type"]


def _printer(key: str, value: str) -> Callable[[Obj], None]:
    def mutate(crd: Obj) -> None:
        crd["spec"]["versions"][0]["additionalPrinterColumns"][1][key] = value

    return mutate


def _no_storage(crd: Obj) -> None:
    crd["spec"]["versions"][0]["storage"] = False


P = "spec.validation.openAPIV3Schema.properties[spec]"
BROKEN_CRDS: list[tuple[str, Callable[[Obj], None], str, str]] = [
    ("cel-syntax", _first_rule("has(self.image) &&"), f"{P}.x-kubernetes-validations[0].rule", "Syntax error"),
    ("cel-unknown-field", _first_rule("self.imagee == 'x'"), f"{P}.x-kubernetes-validations[0].rule",
     "undefined field 'imagee'"),
    ("cel-not-bool", _first_rule("self.priority"), f"{P}.x-kubernetes-validations[0].rule", "must evaluate to a bool"),
    ("cel-type-error", _first_rule("self.priority == 'high'"), f"{P}.x-kubernetes-validations[0].rule",
     "no matching overload"),
    ("cel-too-costly", _rule("spec.command", "self.all(a, self.all(b, self.all(c, a + b + c != '')))"),
     f"{P}.properties[command].x-kubernetes-validations[0].rule", "estimated rule cost exceeds budget"),
    ("cel-oldself-uncorrelatable", _rule("spec.env.[]", "self.name == oldSelf.name"),
     f"{P}.properties[env].items.x-kubernetes-validations[0].rule", "oldSelf cannot be used on the uncorrelatable"),
    ("field-without-type", _drop_type, f"{P}.properties[displayName].type", "must not be empty"),
    ("properties-and-additionalProperties", _set("spec.nodeSelector.properties", {"a": {"type": "string"}}),
     f"{P}.properties[nodeSelector].additionalProperties", "mutual exclusive"),
    ("default-outside-schema", _set("spec.priority.default", 11), f"{P}.properties[priority].default",
     "less than or equal to 10"),
    ("default-wrong-type", _set("spec.queue.default", 7), f"{P}.properties[queue].default", "must be of type string"),
    ("default-in-metadata", _set("metadata.properties", {"name": {"type": "string", "default": "x"}}),
     "spec.validation.openAPIV3Schema.properties[metadata].properties[name].default", "top-level metadata"),
    ("metadata-labels-restricted", _set("metadata.properties", {"labels": {"type": "object"}}),
     "spec.validation.openAPIV3Schema.properties[metadata]", "anything other than name and generateName"),
    ("ref", _set("spec.queue.$ref", "#/definitions/queue"), f"{P}.properties[queue].$ref", "not supported"),
    ("uniqueItems", _set("spec.tags.uniqueItems", True), f"{P}.properties[tags].uniqueItems", "quadratic"),
    ("items-as-list", _set("spec.tags.items", [{"type": "string"}]), f"{P}.properties[tags].items",
     "must be a schema object"),
    ("non-structural-anyOf", _set("spec.queue.anyOf", [{"type": "integer"}]), f"{P}.properties[queue].anyOf[0].type",
     "must be empty to be structural"),
    ("map-list-keys-without-map-type", _set("spec.env.x-kubernetes-list-map-keys", ["name"]),
     f"{P}.properties[env].x-kubernetes-list-type", "x-kubernetes-list-map-keys"),
    ("map-list-key-optional", _map_list_keyed_by("value"), f"{P}.properties[env].items.properties[value].default",
     "must have a default or be a required property"),
    ("set-of-objects", _set("spec.env.x-kubernetes-list-type", "set"),
     f"{P}.properties[env].items.x-kubernetes-map-type",
     "must be atomic"),
    ("printer-json-path", _printer("jsonPath", "spec.priority["), "spec.additionalPrinterColumns[1].JSONPath",
     "must be a simple json path"),
    ("printer-type", _printer("type", "float"), "spec.additionalPrinterColumns[1].type", "must be one of"),
    ("no-storage-version", _no_storage, "spec.versions", "exactly one version marked as storage version"),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), [c[1:] for c in BROKEN_CRDS], ids=[c[0] for c in BROKEN_CRDS])
def test_broken_crd_is_refused(cluster: LocalCluster, mutate: Callable[[Obj], None], field: str,
                               fragment: str) -> None:
    """What the apiserver checks when our CRDs are applied: each check refuses a broken copy of the Task CRD."""
    crd = renamed_crd(_crd("Task"))
    mutate(crd)
    assert_refused(dry_run_create(cluster, crd), field, fragment)


# --------------------------------------------------------------------------- Tasks


def _task(name: str = "t1", **spec: Any) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Task", "metadata": {"name": name}, "spec": spec}


GOOD_TASK = {"displayName": "hello", "image": "busybox:1.36", "command": ["echo", "hi"]}


def test_minimal_task_is_accepted_and_defaulted(cluster: LocalCluster, checks_namespace: str) -> None:
    body = accepted(dry_run_create(cluster, _task(**GOOD_TASK), checks_namespace))
    spec = body["spec"]
    assert spec["priority"] == models.DEFAULT_PRIORITY and spec["queue"] == models.DEFAULT_QUEUE
    assert spec["runtime"] == "job" and spec["cancel"] is False
    assert spec["maxRetries"] == models.TaskSpec.model_fields["max_retries"].default
    assert spec["retryBackoffSeconds"] == models.TaskSpec.model_fields["retry_backoff_seconds"].default
    assert "resources" not in spec, "defaults apply inside objects that are present only"
    with_resources = accepted(dry_run_create(cluster, _task(**GOOD_TASK, resources={"cpu": 2}), checks_namespace))
    assert with_resources["spec"]["resources"] == {"cpu": 2, "gpus": 0}
    parsed = models.TaskSpec.model_validate(with_resources["spec"])
    assert parsed.to_k8s()["priority"] == models.DEFAULT_PRIORITY


GOOD_TASKS: list[tuple[str, Obj]] = [
    ("free-form-json", {"image": "python:3.12-slim", "args": [1, "two", {"three": 3}, [4], None, True],
                        "kwargs": {"a": {"b": [1, 2]}}, "metadata": {"team": "ml", "n": 3}}),
    ("gpu", {"image": "nvidia/cuda:12.4.1-base", "resources": {"gpus": 2, "gpuType": "A100", "cpu": 4,
                                                              "memory": "16Gi"}}),
    ("script", {"script": {"language": "python", "content": "print(1)"}, "timeoutSeconds": 30}),
    ("template", {"template": {"name": "bash-script", "parameters": {"script": "echo hi", "n": [1, {"x": None}]}}}),
    ("scheduling", {**GOOD_TASK, "nodeSelector": {"pool": "batch"}, "scheduledAt": "2030-01-02T03:04:05Z",
                    "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule",
                                     "tolerationSeconds": 30}], "dependsOn": ["a", "b.c"]}),
    ("everything-else", {**GOOD_TASK, "description": "d", "user": "alice", "priority": 10, "queue": "batch-1",
                         "env": [{"name": "A", "value": "1"}, {"name": "T", "valueFrom": {"secretKeyRef": {
                             "name": "s", "key": "k"}}}], "maxRetries": 20, "retryBackoffSeconds": 0,
                         "runtime": "pod", "ttlSecondsAfterFinished": 0, "tags": ["x"], "podLabels": {"a": "b"},
                         "podAnnotations": {"kubetask.dev/sim-exit-code": "0"}, "cancel": True}),
]


@pytest.mark.parametrize("spec", [t[1] for t in GOOD_TASKS], ids=[t[0] for t in GOOD_TASKS])
def test_good_tasks_are_accepted_unchanged(cluster: LocalCluster, checks_namespace: str, spec: Obj) -> None:
    body = accepted(dry_run_create(cluster, _task(**spec), checks_namespace))
    for key, value in spec.items():
        assert body["spec"][key] == value, key
    models.TaskSpec.model_validate(body["spec"])


BAD_TASKS: list[tuple[str, Obj, str, str]] = [
    ("priority-too-high", {**GOOD_TASK, "priority": 11}, "spec.priority", "less than or equal to 10"),
    ("priority-negative", {**GOOD_TASK, "priority": -1}, "spec.priority", "greater than or equal to 0"),
    ("priority-not-int", {**GOOD_TASK, "priority": "high"}, "spec.priority", "must be of type integer"),
    ("empty-display-name", {**GOOD_TASK, "displayName": ""}, "spec.displayName", "at least 1 chars long"),
    ("long-display-name", {**GOOD_TASK, "displayName": "x" * 256}, "spec.displayName",
     "may not be more than 255 bytes"),
    ("queue-not-a-label", {**GOOD_TASK, "queue": "Not_A_Label"}, "spec.queue", "should match"),
    ("queue-too-long", {**GOOD_TASK, "queue": "q" * 64}, "spec.queue", "may not be more than 63 bytes"),
    ("user-too-long", {**GOOD_TASK, "user": "u" * 254}, "spec.user", "may not be more than 253 bytes"),
    ("runtime-unknown", {**GOOD_TASK, "runtime": "vm"}, "spec.runtime", 'supported values: "job", "pod"'),
    ("max-retries", {**GOOD_TASK, "maxRetries": 21}, "spec.maxRetries", "less than or equal to 20"),
    ("negative-backoff", {**GOOD_TASK, "retryBackoffSeconds": -1}, "spec.retryBackoffSeconds",
     "greater than or equal to 0"),
    ("zero-timeout", {**GOOD_TASK, "timeoutSeconds": 0}, "spec.timeoutSeconds", "greater than or equal to 1"),
    ("negative-ttl", {**GOOD_TASK, "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished",
     "greater than or equal to 0"),
    ("negative-gpus", {**GOOD_TASK, "resources": {"gpus": -1}}, "spec.resources.gpus", "greater than or equal to 0"),
    ("too-many-gpus", {**GOOD_TASK, "resources": {"gpus": 65}}, "spec.resources.gpus", "less than or equal to 64"),
    ("memory-not-a-quantity", {**GOOD_TASK, "resources": {"memory": "lots"}}, "spec.resources.memory", "should match"),
    ("cpu-not-a-quantity", {**GOOD_TASK, "resources": {"cpu": "4 cores"}}, "spec.resources.cpu", "should match"),
    ("gpu-type-without-gpus", {**GOOD_TASK, "resources": {"gpuType": "A100"}}, "spec.resources",
     "resources.gpuType requires resources.gpus > 0"),
    ("gpu-type-with-zero-gpus", {**GOOD_TASK, "resources": {"gpus": 0, "gpuType": "A100"}}, "spec.resources",
     "resources.gpuType requires resources.gpus > 0"),
    ("depends-on-not-a-name", {**GOOD_TASK, "dependsOn": ["UPPER"]}, "spec.dependsOn[0]", "should match"),
    ("depends-on-too-many", {**GOOD_TASK, "dependsOn": [f"t{i}" for i in range(65)]}, "spec.dependsOn",
     "must have at most 64 items"),
    ("depends-on-duplicates", {**GOOD_TASK, "dependsOn": ["a", "a"]}, "spec.dependsOn[1]", "Duplicate value"),
    ("scheduled-at-number", {**GOOD_TASK, "scheduledAt": 5}, "spec.scheduledAt", "must be of type date-time"),
    ("scheduled-at-words", {**GOOD_TASK, "scheduledAt": "tomorrow"}, "spec.scheduledAt", "must be of type date-time"),
    ("image-and-script", {"image": "x", "script": {"language": "python", "content": "print(1)"}}, "spec",
     "exactly one of spec.template, spec.image or spec.script must be set"),
    ("image-and-template", {"image": "x", "template": {"name": "bash-script"}}, "spec",
     "exactly one of spec.template, spec.image or spec.script must be set"),
    ("nothing-to-run", {"displayName": "nothing to run"}, "spec",
     "exactly one of spec.template, spec.image or spec.script must be set"),
    ("empty-image", {"image": ""}, "spec.image", "at least 1 chars long"),
    ("long-image", {"image": "i" * 1025}, "spec.image", "may not be more than 1024 bytes"),
    ("script-language", {"script": {"language": "ruby", "content": "puts 1"}}, "spec.script.language",
     'supported values: "python", "bash"'),
    ("script-without-content", {"script": {"language": "bash"}}, "spec.script.content", "Required value"),
    ("script-empty", {"script": {"language": "bash", "content": ""}}, "spec.script.content", "at least 1 chars"),
    ("template-without-name", {"template": {"parameters": {}}}, "spec.template.name", "Required value"),
    ("template-name-upper", {"template": {"name": "Bash"}}, "spec.template.name", "should match"),
    ("toleration-operator", {**GOOD_TASK, "tolerations": [{"operator": "Maybe"}]}, "spec.tolerations[0].operator",
     'supported values: "Exists", "Equal"'),
    ("toleration-effect", {**GOOD_TASK, "tolerations": [{"effect": "Sometimes"}]}, "spec.tolerations[0].effect",
     "supported values"),
    ("env-without-name", {**GOOD_TASK, "env": [{"value": "x"}]}, "spec.env[0].name", "Required value"),
    ("too-many-commands", {**GOOD_TASK, "command": ["x"] * 257}, "spec.command", "must have at most 256 items"),
    ("node-selector-not-string", {**GOOD_TASK, "nodeSelector": {"pool": 1}}, "spec.nodeSelector.pool",
     "must be of type string"),
    ("pod-annotation-not-string", {**GOOD_TASK, "podAnnotations": {"a": True}}, "spec.podAnnotations.a",
     "must be of type string"),
    ("long-tag", {**GOOD_TASK, "tags": ["t" * 254]}, "spec.tags[0]", "may not be more than 253 bytes"),
    ("cancel-not-bool", {**GOOD_TASK, "cancel": "yes"}, "spec.cancel", "must be of type boolean"),
    ("args-not-a-list", {**GOOD_TASK, "args": "a b"}, "spec.args", "must be of type array"),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), [c[1:] for c in BAD_TASKS], ids=[c[0] for c in BAD_TASKS])
def test_bad_tasks_are_refused(cluster: LocalCluster, checks_namespace: str, spec: Obj, field: str,
                               fragment: str) -> None:
    assert_refused(dry_run_create(cluster, _task(**spec), checks_namespace), field, fragment)


def test_task_envelope_is_checked(cluster: LocalCluster, checks_namespace: str) -> None:
    without_spec = {"apiVersion": API_VERSION, "kind": "Task", "metadata": {"name": "no-spec"}}
    assert_refused(dry_run_create(cluster, without_spec, checks_namespace), "spec", "Required value")
    assert_refused(dry_run_create(cluster, _task("Bad_Name", **GOOD_TASK), checks_namespace), "metadata.name",
                   "RFC 1123 subdomain")
    missing = cluster.admin().post(f"/apis/{API_VERSION}/namespaces/{unique('no-such-ns')}/tasks",
                                   params={"dryRun": "All"}, json=_task(**GOOD_TASK))
    assert missing.status_code == 404, missing.text


def test_unknown_fields_are_pruned_or_refused_when_strict(cluster: LocalCluster, checks_namespace: str) -> None:
    """The real apiserver drops unknown fields with a warning, and refuses them with fieldValidation=Strict
    (kubectl's default)."""
    task = _task(**GOOD_TASK, bogus=1)
    task["spec"]["resources"] = {"gpus": 1, "tpus": 2}
    lenient = dry_run_create(cluster, task, checks_namespace)
    body = accepted(lenient)
    assert "bogus" not in body["spec"] and "tpus" not in body["spec"]["resources"]
    warning = lenient.headers.get("warning", "")
    assert "unknown field" in warning and "spec.bogus" in warning and "spec.resources.tpus" in warning, warning
    strict = dry_run_create(cluster, task, checks_namespace, params={"fieldValidation": "Strict"})
    assert_refused(strict, "", 'unknown field "spec.bogus"', status=400)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(cluster: LocalCluster, checks_namespace: str, path: Path) -> None:
    docs = load_all(path.read_text())
    assert docs
    for doc in docs:
        body = accepted(dry_run_create(cluster, doc, checks_namespace))
        spec = body["spec"]
        assert spec["priority"] == doc["spec"].get("priority", models.DEFAULT_PRIORITY)
        parsed = models.TaskSpec.model_validate(spec)
        assert parsed.to_k8s()["priority"] == spec["priority"]


# --------------------------------------------------------------------------- real Tasks: status and transitions


@pytest.fixture
def real_tasks(cluster: LocalCluster, checks_namespace: str) -> Iterator[Callable[[Obj], Obj]]:
    """Create real Tasks in the scratch namespace; deleted afterwards (no operator runs here: no finalizers)."""
    made: list[str] = []

    def make(spec: Obj) -> Obj:
        task = create(cluster, _task(unique("tr"), **spec), checks_namespace)
        made.append(task["metadata"]["name"])
        return task

    yield make
    for name in made:
        cluster.delete(API_VERSION, "Task", name, checks_namespace)


def _update(cluster: LocalCluster, task: Obj, spec: Obj, subresource: str = "") -> Any:
    path = cluster.path(API_VERSION, "Task", task["metadata"]["name"], task["metadata"]["namespace"]) + subresource
    current = cluster.admin().get(path).json()
    if subresource:
        current["status"] = spec
    else:
        current["spec"] = spec
    return cluster.admin().put(path, json=current)


TRANSITIONS: list[tuple[str, Obj, Obj, str | None]] = [
    ("priority-may-change", {"user": "alice"}, {"user": "alice", "priority": 9}, None),
    ("user-may-be-set", {}, {"user": "alice"}, None),
    ("user-immutable", {"user": "alice"}, {"user": "bob"}, "spec.user is immutable once set"),
    ("user-cannot-be-removed", {"user": "alice"}, {}, "spec.user is immutable once set"),
    ("gpus-immutable", {"resources": {"gpus": 1}}, {"resources": {"gpus": 2}}, "spec.resources is immutable"),
    ("resources-cannot-be-added", {}, {"resources": {"gpus": 1}}, "spec.resources and spec.dependsOn are immutable"),
    ("depends-on-immutable", {"dependsOn": ["a"]}, {"dependsOn": ["a", "b"]}, "spec.dependsOn is immutable"),
    ("depends-on-cannot-be-removed", {"dependsOn": ["a"]}, {}, "spec.resources and spec.dependsOn are immutable"),
    ("runtime-immutable", {"runtime": "job"}, {"runtime": "pod"}, "spec.runtime is immutable"),
    ("image-may-change-before-admission", {}, {"image": "busybox:1.37"}, None),
    ("cancel-may-be-set", {}, {"cancel": True}, None),
    ("display-name-may-change", {}, {"displayName": "renamed"}, None),
]


@pytest.mark.parametrize(("old", "new", "refusal"), [t[1:] for t in TRANSITIONS], ids=[t[0] for t in TRANSITIONS])
def test_transition_rules(cluster: LocalCluster, real_tasks: Callable[[Obj], Obj], old: Obj, new: Obj,
                          refusal: str | None) -> None:
    task = real_tasks({**GOOD_TASK, **old})
    response = _update(cluster, task, {**GOOD_TASK, **new})
    if refusal is None:
        body = accepted(response)
        for key, value in new.items():
            assert body["spec"][key] == value
    else:
        assert response.status_code == 422, response.text
        assert any(refusal in message for _, message in causes(response)), response.text


FROZEN = "what runs (spec.template.name, spec.image, spec.script) cannot change once the task has been admitted"
WHAT_RUNS_CHANGES: list[tuple[str, Obj, Obj]] = [
    ("image-to-script", {"image": "busybox:1.36"}, {"script": {"language": "bash", "content": "echo"}}),
    ("script-content", {"script": {"language": "bash", "content": "echo"}},
     {"script": {"language": "bash", "content": "echo 2"}}),
    ("image", {"image": "busybox:1.36"}, {"image": "busybox:1.37"}),
    ("template-name", {"template": {"name": "bash-script", "parameters": {"script": "a"}}},
     {"template": {"name": "python-script", "parameters": {"script": "a"}}}),
]
ADMITTED: list[tuple[str, Obj | None, bool]] = [
    ("no-status", None, False),
    ("pending", {"phase": "Pending"}, False),
    ("queued", {"phase": "Queued"}, False),
    ("running", {"phase": "Running", "executions": [{"id": 1, "jobName": "j-1"}]}, True),
    ("queued-after-a-run", {"phase": "Queued", "executions": [{"id": 1, "jobName": "j-1", "exitCode": 1}]}, True),
    ("succeeded", {"phase": "Succeeded"}, True),
]


@pytest.mark.parametrize(("old", "new"), [c[1:] for c in WHAT_RUNS_CHANGES], ids=[c[0] for c in WHAT_RUNS_CHANGES])
@pytest.mark.parametrize(("status", "frozen"), [a[1:] for a in ADMITTED], ids=[a[0] for a in ADMITTED])
def test_what_runs_changes_only_before_admission(cluster: LocalCluster, real_tasks: Callable[[Obj], Obj], old: Obj,
                                                 new: Obj, status: Obj | None, frozen: bool) -> None:
    """REST PUT may change what a waiting, never-run task runs; the CEL rule freezes it from admission on."""
    task = real_tasks(old)
    if status is not None:
        task = accepted(_update(cluster, task, status, "/status"))
    response = _update(cluster, task, new)
    if frozen:
        assert response.status_code == 422, response.text
        assert any(FROZEN in message for _, message in causes(response)), response.text
    else:
        body = accepted(response)
        for key, value in new.items():
            assert body["spec"][key] == value
        assert not {"template", "image", "script"} - set(new) & set(body["spec"]), body["spec"]


def test_template_parameters_may_always_change(cluster: LocalCluster, real_tasks: Callable[[Obj], Obj]) -> None:
    task = real_tasks({"template": {"name": "bash-script", "parameters": {"script": "a"}}})
    new = {"template": {"name": "bash-script", "parameters": {"script": "b"}}}
    assert accepted(_update(cluster, task, new))["spec"]["template"] == new["template"]


def test_status_is_its_own_subresource(cluster: LocalCluster, checks_namespace: str) -> None:
    """status is dropped on create, free-form where the schema says so, and validated on /status."""
    created = create(cluster, _task(unique("st"), **GOOD_TASK) | {"status": {"phase": "Running"}}, checks_namespace)
    try:
        assert "status" not in created, "the main resource ignores status"
        for result in ("plain string", [1, {"x": None}], {"answer": 42}):
            status = {"phase": "Succeeded", "result": result, "gpuSeconds": 12.5, "retryCount": 1,
                      "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                      "executions": [{"id": 1, "jobName": "j-1", "exitCode": 0}]}
            body = accepted(_update(cluster, created, status, "/status"))
            assert body["status"]["result"] == result and body["status"]["phase"] == "Succeeded"
        for bad, field, fragment in [
            ({"phase": "Bogus"}, "status.phase", "supported values"),
            ({"executions": [{"jobName": "j-1"}]}, "status.executions[0].id", "Required value"),
            ({"conditions": [{"type": "Ready", "status": "Maybe"}]}, "status.conditions[0].status", "supported values"),
            ({"retryCount": -1}, "status.retryCount", "greater than or equal to 0"),
            ({"resultSource": "guess"}, "status.resultSource", "supported values"),
            ({"startedAt": "yesterday"}, "status.startedAt", "must be of type date-time"),
        ]:
            assert_refused(_update(cluster, created, bad, "/status"), field, fragment)
    finally:
        cluster.delete(API_VERSION, "Task", created["metadata"]["name"], checks_namespace)


# --------------------------------------------------------------------------- Tenants


def _tenant(name: str = "x", spec: Obj | None = None) -> Obj:
    tenant: Obj = {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}}
    if spec is not None:
        tenant["spec"] = spec
    return tenant


def test_tenant_is_accepted_and_defaulted(cluster: LocalCluster) -> None:
    spec = {"apiKeys": [{"name": "alice-api-key"}], "displayName": "Alice",
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "ci"},
                         {"kind": "User", "name": "alice@example.com", "apiGroup": "rbac.authorization.k8s.io"}],
            "limits": {"maxRunning": 4, "gpuQuota": 8, "memoryQuota": "64Gi", "cpuQuota": "16",
                       "monthlyGpuHours": 100.5}}
    body = accepted(dry_run_create(cluster, _tenant("deploy-check-tenant", spec)))
    assert body["spec"]["limits"]["maxPending"] == models.DEFAULT_MAX_PENDING
    assert body["spec"]["limits"]["maxTimeoutSeconds"] == models.DEFAULT_MAX_TIMEOUT_SECONDS
    assert body["spec"]["apiKeys"][0]["key"] == "sha256"
    assert body["spec"]["role"] == "user"
    models.TenantSpec.model_validate(body["spec"])
    empty = accepted(dry_run_create(cluster, _tenant("deploy-check-bare")))
    assert empty["spec"] == {"role": "user", "limits": {"maxPending": models.DEFAULT_MAX_PENDING,
                                                         "maxTimeoutSeconds": models.DEFAULT_MAX_TIMEOUT_SECONDS}}


BAD_TENANTS: list[tuple[str, Obj, str, str]] = [
    ("sa-without-namespace", {"subjects": [{"kind": "ServiceAccount", "name": "ci"}]}, "spec.subjects[0]",
     "a ServiceAccount subject needs a namespace"),
    ("subject-kind", {"subjects": [{"kind": "Robot", "name": "r"}]}, "spec.subjects[0].kind", "supported values"),
    ("subject-without-name", {"subjects": [{"kind": "User"}]}, "spec.subjects[0].name", "Required value"),
    ("role", {"role": "root"}, "spec.role", 'supported values: "user", "admin"'),
    ("namespace-not-a-label", {"namespace": "Bad_NS"}, "spec.namespace", "should match"),
    ("long-display-name", {"displayName": "d" * 256}, "spec.displayName", "may not be more than 255 bytes"),
    ("api-key-without-name", {"apiKeys": [{"key": "sha256"}]}, "spec.apiKeys[0].name", "Required value"),
    ("api-key-empty-key", {"apiKeys": [{"name": "k", "key": ""}]}, "spec.apiKeys[0].key", "at least 1 chars"),
    ("too-many-api-keys", {"apiKeys": [{"name": f"k{i}"} for i in range(33)]}, "spec.apiKeys",
     "must have at most 32 items"),
    ("negative-max-pending", {"limits": {"maxPending": -1}}, "spec.limits.maxPending", "greater than or equal to 0"),
    ("negative-gpu-quota", {"limits": {"gpuQuota": -1}}, "spec.limits.gpuQuota", "greater than or equal to 0"),
    ("cpu-quota-not-a-quantity", {"limits": {"cpuQuota": "lots"}}, "spec.limits.cpuQuota", "should match"),
    ("memory-quota-number", {"limits": {"memoryQuota": 64}}, "spec.limits.memoryQuota", "must be of type string"),
    ("zero-max-timeout", {"limits": {"maxTimeoutSeconds": 0}}, "spec.limits.maxTimeoutSeconds",
     "greater than or equal to 1"),
    ("zero-requests-per-minute", {"limits": {"requestsPerMinute": 0}}, "spec.limits.requestsPerMinute",
     "greater than or equal to 1"),
    ("negative-gpu-hours", {"limits": {"monthlyGpuHours": -0.5}}, "spec.limits.monthlyGpuHours",
     "greater than or equal to 0"),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), [c[1:] for c in BAD_TENANTS], ids=[c[0] for c in BAD_TENANTS])
def test_bad_tenants_are_refused(cluster: LocalCluster, spec: Obj, field: str, fragment: str) -> None:
    assert_refused(dry_run_create(cluster, _tenant("x", spec)), field, fragment)


def test_tenant_status_is_validated(cluster: LocalCluster) -> None:
    tenant = create(cluster, _tenant(unique("kd-status"), {}))
    name = tenant["metadata"]["name"]
    path = cluster.path(API_VERSION, "Tenant", name) + "/status"
    try:
        def put(status: Obj) -> Any:
            current = cluster.admin().get(path).json()
            return cluster.admin().put(path, json={**current, "status": status})

        good = {"namespace": f"kubetask-{name}", "running": 1, "pending": 0, "gpusInUse": 2, "month": "2025-08",
                "gpuSecondsThisMonth": 3.5, "usage": [{"month": "2025-08", "gpuSeconds": 3.5}]}
        assert accepted(put(good))["status"] == good
        models.TenantStatus.model_validate(good)
        assert_refused(put({"month": "2025-8"}), "status.month", "should match")
        assert_refused(put({"usage": [{"gpuSeconds": 1}]}), "status.usage[0].month", "Required value")
        assert_refused(put({"running": -1}), "status.running", "greater than or equal to 0")
    finally:
        cluster.delete(API_VERSION, "Tenant", name)


# --------------------------------------------------------------------------- TaskTemplates


def _template(spec: Obj | None, name: str = "tt-check") -> Obj:
    tpl: Obj = {"apiVersion": API_VERSION, "kind": "TaskTemplate", "metadata": {"name": name}}
    if spec is not None:
        tpl["spec"] = spec
    return tpl


GOOD_POD = {"image": "busybox:1.36", "command": ["sh", "-c", "echo $X"], "env": [{"name": "X", "value": "{{x}}"}]}


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.stem)
def test_builtin_template_is_accepted_and_installed(cluster: LocalCluster, path: Path) -> None:
    (doc,) = load_all(path.read_text())
    copy_of = copy.deepcopy(doc)
    copy_of["metadata"]["name"] = unique(doc["metadata"]["name"])[:253]
    body = accepted(dry_run_create(cluster, copy_of))
    models.TaskTemplateSpec.model_validate(body["spec"])
    installed = cluster.get(API_VERSION, "TaskTemplate", doc["metadata"]["name"])
    assert installed is not None and installed["spec"] == body["spec"]


def test_template_defaults(cluster: LocalCluster) -> None:
    spec = {"podTemplate": {**GOOD_POD, "resources": {"limits": {"cpu": "1"}}},
            "parameters": [{"name": "x"}, {"name": "n", "type": "integer", "required": True}]}
    body = accepted(dry_run_create(cluster, _template(spec)))
    assert body["spec"]["parameters"] == [{"name": "x", "type": "string", "required": False},
                                          {"name": "n", "type": "integer", "required": True}]
    assert body["spec"]["podTemplate"]["resources"] == {"limits": {"cpu": "1"}}, "podTemplate keeps unknown fields"


BAD_TEMPLATES: list[tuple[str, Obj | None, str, str]] = [
    ("no-spec", None, "spec", "Required value"),
    ("no-pod-template", {"description": "d"}, "spec.podTemplate", "Required value"),
    ("empty-image", {"podTemplate": {"image": ""}}, "spec.podTemplate.image", "at least 1 chars"),
    ("env-without-name", {"podTemplate": {"image": "x", "env": [{"value": "v"}]}}, "spec.podTemplate.env[0].name",
     "Required value"),
    ("command-not-strings", {"podTemplate": {"image": "x", "command": [1]}}, "spec.podTemplate.command[0]",
     "must be of type string"),
    ("parameter-name", {"podTemplate": GOOD_POD, "parameters": [{"name": "1bad"}]}, "spec.parameters[0].name",
     "should match"),
    ("parameter-type", {"podTemplate": GOOD_POD, "parameters": [{"name": "x", "type": "date"}]},
     "spec.parameters[0].type", "supported values"),
    ("parameter-without-name", {"podTemplate": GOOD_POD, "parameters": [{"type": "string"}]},
     "spec.parameters[0].name", "Required value"),
    ("duplicate-parameters", {"podTemplate": GOOD_POD, "parameters": [{"name": "x"}, {"name": "x"}]},
     "spec.parameters[1]", "Duplicate value"),
    ("required-not-bool", {"podTemplate": GOOD_POD, "parameters": [{"name": "x", "required": "yes"}]},
     "spec.parameters[0].required", "must be of type boolean"),
    ("duplicate-aliases", {"podTemplate": GOOD_POD, "aliases": ["a", "a"]}, "spec.aliases[1]", "Duplicate value"),
    ("duplicate-task-types", {"podTemplate": GOOD_POD, "taskTypes": [{"name": "t"}, {"name": "t"}]},
     "spec.taskTypes[1]", "Duplicate value"),
    ("too-many-gpus", {"podTemplate": GOOD_POD, "defaults": {"resources": {"gpus": 65}}},
     "spec.defaults.resources.gpus", "less than or equal to 64"),
    ("cpu-not-a-quantity", {"podTemplate": GOOD_POD, "defaults": {"resources": {"cpu": "two"}}},
     "spec.defaults.resources.cpu", "should match"),
    ("zero-timeout", {"podTemplate": GOOD_POD, "defaults": {"timeoutSeconds": 0}}, "spec.defaults.timeoutSeconds",
     "greater than or equal to 1"),
    ("long-description", {"podTemplate": GOOD_POD, "description": "d" * 4097}, "spec.description",
     "may not be more than 4096 bytes"),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), [c[1:] for c in BAD_TEMPLATES],
                         ids=[c[0] for c in BAD_TEMPLATES])
def test_bad_templates_are_refused(cluster: LocalCluster, spec: Obj | None, field: str, fragment: str) -> None:
    assert_refused(dry_run_create(cluster, _template(spec)), field, fragment)
