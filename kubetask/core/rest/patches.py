"""Patches: what ``PUT``/``PATCH /tasks/{id}``, replay and ``PATCH /users/{id}/limits`` write.

Each function turns a request body into the object (or merge patch) the API sends to the apiserver,
refusing with a 422 naming the field what it cannot map.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubetask import API_VERSION
from kubetask.core.events import submitted_at
from kubetask.core.models import ANNOTATION_SUBMITTED_AT
from kubetask.core.objects import (
    ANNOTATION_DEPENDS_ON_UIDS,
    ANNOTATION_MODEL_NAME,
    ANNOTATION_QUEUE_NAME,
    ANNOTATION_REPLAY_OF,
    ANNOTATION_REPLAY_OF_UID,
    ANNOTATION_SUBMITTED_VIA,
    ANNOTATION_TASK_TYPE,
    LABEL_USER,
    Obj,
    label_value,
    snake_keys,
)
from kubetask.core.rest.errors import RestError, body_must_be_object, invalid
from kubetask.core.rest.intake import (
    CREATE_FIELDS,
    MAX_NAME_LENGTH,
    MAX_RETRIES_LIMIT,
    BuildContext,
    as_int,
    first_of,
    parse_priority,
    queue_label,
    string_map,
    unknown_field,
    what_runs,
)
from kubetask.core.rest.present import task_model
from kubetask.core.rest.profiles import PROFILES, Profile
from kubetask.core.rest.shapes import TaskPublic
from kubetask.core.times import format_time, parse_time

# --------------------------------------------------------------------------- updates

WHAT_RUNS_FIELDS = frozenset({
    "template", "template_name", "parameters", "task_type", "model_name", "input_data", "script_content",
    "script", "script_type", "language", "image", "command", "args", "env",
})
"""What runs: these may change while the task has not started (re-validated like a create)."""
KIND_FIELDS = ("template", "template_name", "task_type", "script_content", "script", "image")
"""A body naming one of these says anew what runs; the others modify what runs now."""
IMMUTABLE_FIELDS = ("resources", "gpus", "gpu_count", "num_gpus", "gpu_type", "depends_on", "dependsOn",
                    "dependencies", "runtime")
READ_ONLY_FIELDS = frozenset(TaskPublic.model_fields) - CREATE_FIELDS
"""Fields of a task's representation that a client PUTting the whole object back may repeat: ignored."""


def build_update_patch(body: Mapping[str, Any], task: Mapping[str, Any], ctx: BuildContext) -> Obj:
    """The merge patch of the Task (``spec``, and ``metadata.annotations`` when what runs changes) for
    ``PUT``/``PATCH /tasks/{id}`` of a task that has not started; ``{}`` when nothing changes."""
    if not isinstance(body, Mapping):
        raise body_must_be_object()
    unknown = unknown_field(body, CREATE_FIELDS | READ_ONLY_FIELDS)
    if unknown is not None:
        raise unknown
    body = {k: v for k, v in body.items() if k not in READ_ONLY_FIELDS}
    max_timeout_seconds = ctx.max_timeout_seconds
    for frozen in IMMUTABLE_FIELDS:
        if frozen in body and body[frozen] is not None and not _same_as_current(frozen, body[frozen], task):
            raise RestError(422, "IMMUTABLE_FIELD", f"{frozen}: cannot be changed after creation", field=frozen)
    what_runs_patch, annotation_patch = _what_runs_patch(body, task, ctx)
    patch: Obj = {}
    key, name = first_of(body, "name", "task_name", "title")
    if key is not None:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise invalid(key, f"must be 1-{MAX_NAME_LENGTH} characters")
        patch["displayName"] = name
    if "description" in body:
        if body["description"] is not None and not isinstance(body["description"], str):
            raise invalid("description", "must be a string")
        patch["description"] = body["description"]
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise invalid("metadata", "must be an object")
        patch["metadata"] = dict(metadata)
        if metadata.get("tags") is not None:
            patch["tags"] = [str(t) for t in metadata["tags"]]
        if metadata.get("priority") is not None and body.get("priority") is None:
            patch["priority"] = parse_priority(metadata["priority"], "metadata.priority")
    if body.get("tags") is not None:
        if not isinstance(body["tags"], list):
            raise invalid("tags", "must be a list of strings")
        patch["tags"] = [str(t) for t in body["tags"]]
    if body.get("priority") is not None:
        patch["priority"] = parse_priority(body["priority"])
    key, queue = first_of(body, "queue_name", "queue")
    if key is not None:
        patch["queue"] = queue_label(str(queue))
    key, timeout = first_of(body, "timeout_seconds", "timeout")
    if key is not None:
        seconds = as_int(timeout, key)
        if not 1 <= seconds <= max_timeout_seconds:
            raise invalid(key, f"must be between 1 and {max_timeout_seconds} seconds (got {seconds})")
        patch["timeoutSeconds"] = seconds
    key, retries = first_of(body, "max_retries", "retries")
    if key is not None:
        count = as_int(retries, key)
        if not 0 <= count <= MAX_RETRIES_LIMIT:
            raise invalid(key, f"must be between 0 and {MAX_RETRIES_LIMIT}")
        patch["maxRetries"] = count
    if "scheduled_at" in body:
        if body["scheduled_at"] is None:
            patch["scheduledAt"] = None
        else:
            when = parse_time(body["scheduled_at"])
            if when is None:
                raise invalid("scheduled_at", "must be an ISO 8601 date-time")
            patch["scheduledAt"] = format_time(when)
    patch.update(what_runs_patch)
    key, args = first_of(body, "task_args")
    if key is not None:
        patch["args"] = args if isinstance(args, list) else [args]
    key, kwargs = first_of(body, "task_kwargs")
    if key is not None:
        if not isinstance(kwargs, Mapping):
            raise invalid(key, "must be an object")
        patch["kwargs"] = dict(kwargs)
    key, annotations = first_of(body, "annotations", "pod_annotations")
    if key is not None:
        patch["podAnnotations"] = string_map(annotations, key)
    out: Obj = {}
    if patch:
        out["spec"] = patch
    if annotation_patch:
        out["metadata"] = {"annotations": annotation_patch}
    return out


def _current_what_runs(task: Mapping[str, Any]) -> Obj:
    """What runs now, in the REST fields a create body would use."""
    spec = task.get("spec") or {}
    if spec.get("script"):
        return {"script_content": spec["script"].get("content"), "script_type": spec["script"].get("language")}
    if spec.get("image"):
        return {k: v for k, v in (("image", spec["image"]), ("command", spec.get("command")),
                                  ("args", spec.get("args")), ("env", spec.get("env"))) if v is not None}
    template = spec.get("template") or {}
    return {"template": template.get("name"), "parameters": dict(template.get("parameters") or {})}


def _what_runs_patch(body: Mapping[str, Any], task: Mapping[str, Any], ctx: BuildContext) -> tuple[Obj, Obj]:
    """``(spec patch, annotations patch)`` for the what-runs fields of an update body (both empty if it
    changes nothing that runs)."""
    given = {k: v for k, v in body.items() if k in WHAT_RUNS_FIELDS and v is not None}
    if not given or all(_same_as_current(k, v, task) for k, v in given.items()):
        return {}, {}
    old = task.get("spec") or {}
    same_kind = ("script_content" in given and old.get("script")) or ("image" in given and old.get("image"))
    if same_kind:
        new_body = {**_current_what_runs(task), **given}  # a new script keeps its language, an image its command
    elif any(k in given for k in KIND_FIELDS):
        new_body = dict(given)
    else:
        if "parameters" in given and not old.get("template"):
            raise RestError(422, "IMMUTABLE_FIELD", "parameters: only template tasks have parameters; send "
                            "'template' (+ 'parameters') to make it one", field="parameters")
        new_body = {**_current_what_runs(task), **given}
    new_spec: Obj = {}
    new_annotations: dict[str, str] = {}
    what_runs(new_body, new_spec, new_annotations, ctx)
    patch: Obj = {"template": None, "script": None, "image": None, "command": None, "env": None}
    if old.get("image") and "args" in old:
        patch["args"] = None  # an image task's args go with its image; a template's task_args stay
    patch.update({k: v for k, v in new_spec.items() if k in ("template", "script", "image", "command", "args",
                                                              "env")})
    patch = {k: v for k, v in patch.items() if v is not None or k in old}
    ann = (task.get("metadata") or {}).get("annotations") or {}
    annotation_patch: Obj = {}
    for key in (ANNOTATION_TASK_TYPE, ANNOTATION_MODEL_NAME):
        if new_annotations.get(key) != ann.get(key):
            annotation_patch[key] = new_annotations.get(key)
    return patch, annotation_patch


def _same_as_current(key: str, value: Any, task: Mapping[str, Any]) -> bool:
    """Clients that PUT the whole object back may repeat immutable fields unchanged."""
    spec = task.get("spec") or {}
    ann = (task.get("metadata") or {}).get("annotations") or {}
    current: Any = {
        "template": (spec.get("template") or {}).get("name"),
        "task_type": ann.get(ANNOTATION_TASK_TYPE),
        "model_name": ann.get(ANNOTATION_MODEL_NAME),
        "script_content": (spec.get("script") or {}).get("content"),
        "script_type": (spec.get("script") or {}).get("language"),
        "image": spec.get("image"),
        "command": spec.get("command"),
        "depends_on": spec.get("dependsOn") or [],
        "dependsOn": spec.get("dependsOn") or [],
        "dependencies": spec.get("dependsOn") or [],
        "runtime": spec.get("runtime", "job"),
        "gpus": (spec.get("resources") or {}).get("gpus", 0),
        "gpu_count": (spec.get("resources") or {}).get("gpus", 0),
        "num_gpus": (spec.get("resources") or {}).get("gpus", 0),
        "resources": snake_keys(spec.get("resources") or {}),
        "args": spec.get("args"),
        "env": spec.get("env"),
        "parameters": (spec.get("template") or {}).get("parameters"),
        "template_name": (spec.get("template") or {}).get("name"),
        "gpu_type": (spec.get("resources") or {}).get("gpuType"),
    }.get(key, object())
    if key == "template" and isinstance(value, Mapping):
        value = value.get("name")
    if key in ("depends_on", "dependsOn", "dependencies") and isinstance(value, list):
        # A client PUTting the object back repeats the ids it was shown (uids, maybe task_-prefixed).
        return value == current or any(value == _depends_ids(task, profile) for profile in PROFILES.values())
    return bool(value == current)


def _depends_ids(task: Mapping[str, Any], profile: Profile) -> list[str]:
    return task_model(task, profile).depends_on


# --------------------------------------------------------------------------- replay


def clone_for_replay(original: Mapping[str, Any], *, user: str, namespace: str) -> Obj:
    """A new Task cloned from ``original``'s spec, pointing back at it."""
    spec = copy.deepcopy(dict(original.get("spec") or {}))
    spec.pop("cancel", None)
    spec["user"] = user
    meta = original.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k in (ANNOTATION_TASK_TYPE, ANNOTATION_MODEL_NAME, ANNOTATION_QUEUE_NAME)}
    annotations[ANNOTATION_REPLAY_OF] = str(meta.get("name"))
    if meta.get("uid"):
        annotations[ANNOTATION_REPLAY_OF_UID] = str(meta["uid"])
    if (meta.get("annotations") or {}).get(ANNOTATION_DEPENDS_ON_UIDS):
        annotations[ANNOTATION_DEPENDS_ON_UIDS] = meta["annotations"][ANNOTATION_DEPENDS_ON_UIDS]
    annotations[ANNOTATION_SUBMITTED_VIA] = "rest"
    annotations[ANNOTATION_SUBMITTED_AT] = submitted_at()
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"namespace": namespace, "labels": {LABEL_USER: label_value(user)},
                     "annotations": annotations},
        "spec": spec,
    }




# --------------------------------------------------------------------------- limits

LIMIT_FIELDS = {
    "max_running": "maxRunning", "max_concurrent": "maxRunning", "max_concurrent_agents": "maxRunning",
    "max_pending": "maxPending", "max_gpus_per_task": "maxGpusPerTask", "gpu_quota": "gpuQuota",
    "cpu_quota": "cpuQuota", "memory_quota": "memoryQuota", "monthly_gpu_hours": "monthlyGpuHours",
    "monthly_hours_limit": "monthlyGpuHours", "monthly_agent_hours_limit": "monthlyGpuHours",
    "max_timeout_seconds": "maxTimeoutSeconds", "requests_per_minute": "requestsPerMinute",
}
_INT_LIMITS = {"maxRunning", "maxPending", "maxGpusPerTask", "gpuQuota", "maxTimeoutSeconds", "requestsPerMinute"}


def limits_patch(body: Mapping[str, Any]) -> Obj:
    """``PATCH /users/{user}/limits`` body (snake_case or camelCase; null unsets) -> ``spec.limits`` patch."""
    if not isinstance(body, Mapping):
        raise body_must_be_object()
    nested = body.get("limits")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else body
    camel_names = set(LIMIT_FIELDS.values())
    patch: Obj = {}
    for key, value in source.items():
        target = LIMIT_FIELDS.get(key) or (key if key in camel_names else None)
        if key == "max_task_duration_minutes" and value is not None:
            target, value = "maxTimeoutSeconds", as_int(value, key) * 60
        if target is None:
            raise invalid(key, f"unknown limit; use one of {', '.join(sorted(set(LIMIT_FIELDS)))}")
        if value is not None:
            if target in _INT_LIMITS:
                value = as_int(value, key)
                if value < 0:
                    raise invalid(key, "must be ≥ 0")
            elif target == "monthlyGpuHours":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise invalid(key, "must be a number")
            else:
                value = str(value)
        patch[target] = value
    if not patch:
        raise RestError(422, "VALIDATION_ERROR", "no limits given", field="body")
    return patch


def replace_by_merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) value that turns ``old`` into exactly ``new``.

    A merge patch merges objects key by key, so writing a new ``result`` over an old one
    would keep the old keys; this nulls out every key of ``old`` that ``new`` lacks.
    """
    if not isinstance(new, Mapping):
        return new
    if not isinstance(old, Mapping):
        return _no_nulls(new)
    patch: dict[str, Any] = {k: None for k in old if k not in new or new[k] is None}
    for key, value in new.items():
        if value is None:
            continue
        patch[key] = replace_by_merge_patch(old.get(key), value) if isinstance(value, Mapping) else value
    return patch


def _no_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return value

