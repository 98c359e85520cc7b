"""Task → Job / Pod / ConfigMap builders (pure, DESIGN §3.4).

``build_workload`` turns one execution of a Task into the objects the operator
creates: a ``batch/v1`` Job with ``backoffLimit: 0`` (or a bare Pod for
``runtime: pod``) named ``<task>-<execution>``, plus — for script tasks — the
ConfigMap holding the script, owned by the Task.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetask import API_VERSION
from kubetask.core.k8s_names import (
    FieldError,
    is_relaxed_env_var_name,
    validate_annotations,
    validate_labels,
    validate_tolerations,
)
from kubetask.core.objects import LABEL_TASK, LABEL_USER
from kubetask.core.scheduling import DRAINING_LABEL, MILLI, PAUSED_LABEL, Demand, QuantityError, to_milli
from kubetask.core.templates import RenderedTemplate, render_template
from kubetask.settings import GpuSettings

TASK_LABEL = LABEL_TASK
USER_LABEL = LABEL_USER
EXECUTION_LABEL = "kubetask.io/execution"
QUEUE_LABEL = "kubetask.io/queue"
TASK_NAME_ANNOTATION = "kubetask.io/task-name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubetask"}

DEFAULT_CPU = "1"
DEFAULT_MEMORY = "2Gi"
DEFAULT_PYTHON_IMAGE = "python:3.11-slim"
DEFAULT_BASH_IMAGE = "bash:5.2"
SCRIPT_MOUNT = "/kubetask/script"
SCRIPT_FILES = {"python": ("script.py", "python"), "bash": ("script.sh", "bash")}
CONTAINER_NAME = "task"

_MAX_NAME = 63


class BuildError(ValueError):
    """A Task that cannot be turned into a workload (the message says why)."""


def _short(value: str, limit: int = _MAX_NAME) -> str:
    """``value`` if it fits ``limit``; else a deterministic, hash-suffixed prefix that does."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return value[: limit - 9].rstrip("-.") + "-" + digest


def _with_node_rules(affinity: Mapping[str, Any] | None, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """``affinity`` (a template's, say) with ``rules`` added to every required node-selector term."""
    merged = copy.deepcopy(dict(affinity or {}))
    required = merged.setdefault("nodeAffinity", {}).setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = [{**term, "matchExpressions": [*rules, *(term.get("matchExpressions") or [])]}
                                     for term in terms]
    return merged


def job_name(task_name: str, execution: int) -> str:
    """The deterministic name of execution ``execution`` of ``task_name`` (``<task>-<n>``, ≤ 63 chars)."""
    suffix = f"-{execution}"
    if len(task_name) + len(suffix) <= _MAX_NAME:
        return task_name + suffix
    return _short(task_name, _MAX_NAME - len(suffix)) + suffix


def script_configmap_name(task_name: str) -> str:
    return _short(f"{task_name}-script", 253)


def label_value(value: str) -> str:
    """A label-safe rendering of ``value`` (≤ 63 chars, alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value).strip("-._")
    return _short(cleaned).strip("-._") if cleaned else "unknown"


def owner_reference(task: Mapping[str, Any]) -> dict[str, Any]:
    meta = task.get("metadata") or {}
    return {
        "apiVersion": API_VERSION, "kind": "Task", "name": meta.get("name"), "uid": meta.get("uid"),
        "controller": True, "blockOwnerDeletion": False,
    }


@dataclass
class Workload:
    """The objects to create for one execution."""

    kind: str  # "Job" or "Pod"
    body: dict[str, Any]
    configmap: dict[str, Any] | None
    demand: Demand


def _spec(task: Mapping[str, Any]) -> Mapping[str, Any]:
    return task.get("spec") or {}


def task_resources(spec: Mapping[str, Any], rendered: RenderedTemplate | None = None) -> dict[str, Any]:
    """``spec.resources`` with template defaults and kubetask defaults filled in."""
    merged: dict[str, Any] = {}
    if rendered is not None:
        merged.update({k: v for k, v in rendered.resources.items() if v is not None})
    merged.update({k: v for k, v in (spec.get("resources") or {}).items() if v is not None})
    merged.setdefault("gpus", 0)
    if not merged.get("cpu"):
        merged["cpu"] = DEFAULT_CPU
    if not merged.get("memory"):
        merged["memory"] = DEFAULT_MEMORY
    return merged


def task_demand(spec: Mapping[str, Any], template_spec: Mapping[str, Any] | None = None) -> Demand:
    """What one execution of the task will request (before rendering its template fully)."""
    defaults = (template_spec or {}).get("defaults") or {}
    merged: dict[str, Any] = {k: v for k, v in (defaults.get("resources") or {}).items() if v is not None}
    merged.update({k: v for k, v in (spec.get("resources") or {}).items() if v is not None})
    try:
        cpu = to_milli(merged.get("cpu") or DEFAULT_CPU)
        memory = to_milli(merged.get("memory") or DEFAULT_MEMORY)
    except QuantityError as error:
        raise BuildError(str(error)) from error
    gpus = int(merged.get("gpus") or 0)
    return Demand(cpu=cpu, memory=memory, gpus=gpus * MILLI, gpu_type=merged.get("gpuType") or None,
                  job=(spec.get("runtime") or "job") != "pod")


def _env_list(env: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    for item in env or []:
        if isinstance(item, Mapping) and item.get("name"):
            entry: dict[str, Any] = {"name": str(item["name"])}
            if item.get("valueFrom") is not None:
                entry["valueFrom"] = item["valueFrom"]
            else:
                entry["value"] = "" if item.get("value") is None else str(item["value"])
            out.append(entry)
    return out


def _merge_env(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {e["name"] for e in extra}
    return [e for e in base if e["name"] not in names] + extra


def pod_field_errors(spec: Mapping[str, Any], name: str | None = None) -> list[FieldError]:
    """What of a Task ``spec`` the apiserver would refuse in the Job :func:`build_workload` makes of it.

    The Task fields copied into the pod template, checked with the apiserver's rules
    (:mod:`kubetask.core.k8s_names`) and named by their Task path: ``spec.podLabels``,
    ``spec.podAnnotations`` (with the task-name annotation kubetask adds, when ``name`` is known, for
    the size limit), ``spec.nodeSelector``, ``spec.tolerations`` and the names of ``spec.env``.
    """
    errors: list[FieldError] = []
    labels = spec.get("podLabels") or {}
    if isinstance(labels, Mapping):
        errors += validate_labels(labels, "spec.podLabels")
    annotations = spec.get("podAnnotations") or {}
    if isinstance(annotations, Mapping):
        errors += validate_annotations({**annotations, **({TASK_NAME_ANNOTATION: name} if name else {})},
                                       "spec.podAnnotations")
    selector = spec.get("nodeSelector") or {}
    if isinstance(selector, Mapping):
        errors += validate_labels(selector, "spec.nodeSelector")
    tolerations = spec.get("tolerations") or []
    if isinstance(tolerations, list):
        errors += validate_tolerations([t for t in tolerations if isinstance(t, Mapping)], "spec.tolerations")
    env = spec.get("env") or []
    names = ([(f"spec.env.{key}", str(key)) for key in env] if isinstance(env, Mapping) else
             [(f"spec.env[{i}].name", str(item.get("name") or ""))
              for i, item in enumerate(env) if isinstance(item, Mapping) and "name" in item]
             if isinstance(env, list) else [])
    for path, env_name in names:
        errors += [FieldError(path, env_name, msg) for msg in is_relaxed_env_var_name(env_name)]
    return errors


def build_workload(
    task: Mapping[str, Any],
    *,
    execution: int,
    gpu: GpuSettings,
    token: str | None = None,
    callback_url: str | None = None,
    template_spec: Mapping[str, Any] | None = None,
) -> Workload:
    """The Job (or Pod) and ConfigMap for execution ``execution`` of ``task``.

    Raises :class:`BuildError` for a Task that says nothing runnable, or whose
    template parameters do not fit (a :class:`~kubetask.core.templates.TemplateError`
    is a ``ValueError`` too).
    """
    meta = task.get("metadata") or {}
    spec = _spec(task)
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    user = str(spec.get("user") or namespace)

    rendered: RenderedTemplate | None = None
    configmap: dict[str, Any] | None = None
    template = spec.get("template") or None
    script = spec.get("script") or None
    pod_extra: dict[str, Any] = {}
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []

    if template:
        if template_spec is None:
            raise BuildError(f"TaskTemplate '{template.get('name')}' not found")
        rendered = render_template(template_spec, template.get("parameters") or {},
                                   template_name=template.get("name"))
        container = copy.deepcopy(rendered.container)
        pod_extra = copy.deepcopy(rendered.pod_spec)
        if spec.get("image"):
            container["image"] = spec["image"]
        if spec.get("command"):
            container["command"] = list(spec["command"])
    elif script:
        language = str(script.get("language") or "python")
        if language not in SCRIPT_FILES:
            raise BuildError(f"unknown script language '{language}' (use python or bash)")
        filename, interpreter = SCRIPT_FILES[language]
        cm_name = script_configmap_name(name)
        configmap = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": namespace,
                         "labels": {TASK_LABEL: label_value(name), **MANAGED_BY},
                         "ownerReferences": [owner_reference(task)]},
            "data": {filename: str(script.get("content") or "")},
        }
        image = spec.get("image") or (DEFAULT_PYTHON_IMAGE if language == "python" else DEFAULT_BASH_IMAGE)
        container = {"image": image, "command": [interpreter, f"{SCRIPT_MOUNT}/{filename}"]}
        volumes.append({"name": "script", "configMap": {"name": cm_name}})
        mounts.append({"name": "script", "mountPath": SCRIPT_MOUNT, "readOnly": True})
    elif spec.get("image"):
        container = {"image": spec["image"]}
        if spec.get("command"):
            container["command"] = [str(c) for c in spec["command"]]
        if spec.get("args"):
            container["args"] = [a if isinstance(a, str) else json.dumps(a) for a in spec["args"]]
    else:
        raise BuildError("the Task says nothing to run: set spec.template, spec.image or spec.script")

    resources = task_resources(spec, rendered)
    gpus = int(resources.get("gpus") or 0)
    requests: dict[str, Any] = {"cpu": str(resources["cpu"]), "memory": str(resources["memory"])}
    limits: dict[str, Any] = dict(requests)
    if gpus > 0:
        requests[gpu.resource_name] = str(gpus)
        limits[gpu.resource_name] = str(gpus)

    kubetask_env = [
        {"name": "KUBETASK_TASK_NAME", "value": name},
        {"name": "KUBETASK_TASK_NAMESPACE", "value": namespace},
        {"name": "KUBETASK_EXECUTION", "value": str(execution)},
        {"name": "KUBETASK_ARGS", "value": json.dumps(spec.get("args") or [])},
        {"name": "KUBETASK_KWARGS", "value": json.dumps(spec.get("kwargs") or {})},
    ]
    if token:
        kubetask_env.append({"name": "KUBETASK_TASK_TOKEN", "value": token})
    if callback_url:
        kubetask_env.append({"name": "KUBETASK_CALLBACK_URL",
                             "value": callback_url.rstrip("/") + f"/api/v1/tasks/{name}/complete"})
    env = _merge_env(_env_list(container.get("env")), _env_list(spec.get("env")))
    container["env"] = _merge_env(env, kubetask_env)
    container["name"] = CONTAINER_NAME
    container["resources"] = {"requests": requests, "limits": limits}
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    if mounts:
        container["volumeMounts"] = list(container.get("volumeMounts") or []) + mounts

    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    node_rules: list[dict[str, Any]] = []
    if gpus > 0:
        node_selector[gpu.node_label_key] = gpu.node_label_value
        if resources.get("gpuType"):
            node_selector[gpu.product_label_key] = str(resources["gpuType"])
        tolerations.append({"key": gpu.taint_key, "operator": "Exists", "effect": "NoSchedule"})
    elif not gpu.cpu_tasks_on_gpu_nodes:
        node_rules.append({"key": gpu.node_label_key, "operator": "NotIn", "values": [gpu.node_label_value]})
    # The kube-scheduler, not kubetask, binds the pod: keep it off nodes paused or draining for kubetask
    # (only when it is scheduled; pods already running there carry on).
    node_rules += [{"key": label, "operator": "NotIn", "values": ["true"]} for label in (PAUSED_LABEL, DRAINING_LABEL)]
    node_selector.update({str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()})
    tolerations += [dict(t) for t in spec.get("tolerations") or []]

    labels = {
        **{str(k): str(v) for k, v in (spec.get("podLabels") or {}).items()},
        TASK_LABEL: label_value(name),
        USER_LABEL: label_value(user),
        EXECUTION_LABEL: str(execution),
        QUEUE_LABEL: label_value(str(spec.get("queue") or "default")),
        **MANAGED_BY,
    }
    annotations = {str(k): str(v) for k, v in (spec.get("podAnnotations") or {}).items()}
    annotations[TASK_NAME_ANNOTATION] = name

    pod_spec: dict[str, Any] = {k: v for k, v in pod_extra.items() if k not in ("restartPolicy",)}
    pod_spec.update({
        "restartPolicy": "Never",
        "containers": [container],
    })
    if volumes:
        pod_spec["volumes"] = list(pod_spec.get("volumes") or []) + volumes
    if node_selector:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **node_selector}
    if tolerations:
        pod_spec["tolerations"] = list(pod_spec.get("tolerations") or []) + tolerations
    pod_spec["affinity"] = _with_node_rules(pod_spec.get("affinity"), node_rules)
    timeout = spec.get("timeoutSeconds")
    if timeout is None and rendered is not None:
        timeout = rendered.timeout_seconds

    workload_name = job_name(name, execution)
    object_meta: dict[str, Any] = {
        "name": workload_name, "namespace": namespace,
        "labels": {TASK_LABEL: labels[TASK_LABEL], USER_LABEL: labels[USER_LABEL],
                   EXECUTION_LABEL: str(execution), **MANAGED_BY},
        "annotations": {TASK_NAME_ANNOTATION: name},
        "ownerReferences": [owner_reference(task)],
    }
    demand = Demand(cpu=to_milli(resources["cpu"]), memory=to_milli(resources["memory"]),
                    gpus=gpus * MILLI, gpu_type=resources.get("gpuType") or None,
                    job=(spec.get("runtime") or "job") != "pod")

    if (spec.get("runtime") or "job") == "pod":
        if timeout:
            pod_spec["activeDeadlineSeconds"] = int(timeout)
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {**object_meta, "labels": labels,
                         "annotations": {**annotations, **object_meta["annotations"]}},
            "spec": pod_spec,
        }
        return Workload("Pod", body, configmap, demand)

    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    if timeout:
        job_spec["activeDeadlineSeconds"] = int(timeout)
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": object_meta, "spec": job_spec}
    return Workload("Job", body, configmap, demand)
