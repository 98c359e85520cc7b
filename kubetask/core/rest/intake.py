"""Intake: a request body in ANY seed's dialect -> a ``Task`` object ready to create (DESIGN §4).

:func:`build_task` accepts every compatible API's field names at once (``name``/``task_name``; ``template`` +
``parameters``; ``task_type`` + ``model_name`` + ``input_data``; ``script_content`` + ``script_type``;
``task_args``/``task_kwargs``; ``queue_name``; ``depends_on``; ``scheduled_at`` …) and refuses what it
cannot map with a 422 naming the field.  Priorities, names and queue labels are parsed here too.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetask import API_VERSION
from kubetask.core.events import submitted_at
from kubetask.core.jobs import pod_field_errors
from kubetask.core.models import (
    ANNOTATION_SUBMITTED_AT,
    DEFAULT_MAX_TIMEOUT_SECONDS,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_SCRIPT_BYTES,
)
from kubetask.core.objects import (
    ANNOTATION_DEPENDS_ON_UIDS,
    ANNOTATION_MODEL_NAME,
    ANNOTATION_QUEUE_NAME,
    ANNOTATION_SUBMITTED_VIA,
    ANNOTATION_TASK_TYPE,
    LABEL_USER,
    Obj,
    camel,
    label_value,
)
from kubetask.core.rest.errors import RestError, body_must_be_object, invalid
from kubetask.core.templates import (
    find_task_type,
    find_template,
    template_task_types,
    templates_by_name,
    validate_parameters,
)
from kubetask.core.times import format_time, parse_time

MAX_NAME_LENGTH = 255
MIN_PRIORITY, MAX_PRIORITY = 0, 10
MAX_RETRIES_LIMIT = 20
ID_SLUG_LENGTH = 20
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# --------------------------------------------------------------------------- priority

_PRIORITY_WORDS = {
    "lowest": 0, "min": 0, "minimal": 0,
    "low": 2,
    "normal": 5, "medium": 5, "default": 5, "moderate": 5,
    "high": 8,
    "urgent": 9,
    "critical": 10, "highest": 10, "max": 10, "top": 10,
}


def parse_priority(value: Any, field_name: str = "priority") -> int:
    """An integer 0-10, or a word (``low``, ``normal``, ``high``, ``critical`` ...)."""
    if isinstance(value, bool):
        raise invalid(field_name, "must be an integer between 0 and 10")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[text]
        if re.fullmatch(r"-?\d+", text):
            value = int(text)
        else:
            raise invalid(field_name, f"must be an integer between 0 and 10 or one of "
                                      f"{', '.join(sorted(set(_PRIORITY_WORDS)))}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise invalid(field_name, "must be an integer between 0 and 10")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise invalid(field_name, f"must be between {MIN_PRIORITY} and {MAX_PRIORITY} (got {value})")
    return value



# --------------------------------------------------------------------------- names

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slugify(text: str, length: int = ID_SLUG_LENGTH) -> str:
    slug = _SLUG_RE.sub("-", text.lower()).strip("-")[:length].strip("-")
    return slug or "task"


def generate_task_id(display_name: str | None) -> str:
    """``<slug of the name, ≤20 chars>-<8 random hex>``: Job names ``<task>-<n>`` stay ≤ 63 chars."""
    return f"{slugify(display_name or 'task')}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- idempotent creates

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
ANNOTATION_IDEMPOTENCY_BODY = "kubetask.io/idempotency-body-sha256"
"""The SHA-256 of the request body that created a Task under an ``Idempotency-Key``: a retry with another
body is refused instead of being taken for the same request."""
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")
IDEMPOTENT_NAME_HEX = 20


def validate_idempotency_key(value: str) -> str:
    """A key as clients send it (a UUID, usually): 1-255 printable ASCII characters (422 naming the header)."""
    key = value.strip()
    if not key:
        raise invalid(IDEMPOTENCY_HEADER, "must not be empty")
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not _IDEMPOTENCY_KEY.match(key):
        raise invalid(IDEMPOTENCY_HEADER, f"use 1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters "
                                          f"(a UUID is a good key)")
    return key


def idempotent_task_name(tenant: str, key: str) -> str:
    """The Task's Kubernetes name for ``(tenant, Idempotency-Key)``: the same on every retry, so the apiserver's
    AlreadyExists tells that the first attempt was created, whichever API replica or process made it.

    Not derived from the body (a retry with another body must meet the first task and be refused) and not from
    the display name for the same reason; 80 bits of SHA-256 keep two keys of one tenant apart."""
    digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
    return f"task-{digest[:IDEMPOTENT_NAME_HEX]}"


def body_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of a request body in canonical JSON (sorted keys, no spaces): equal bodies, equal digests."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def mark_idempotent(obj: Obj, name: str, digest: str) -> Obj:
    """Give a built Task its idempotent name and record the body's digest."""
    meta = obj.setdefault("metadata", {})
    meta["name"] = name
    meta.setdefault("annotations", {})[ANNOTATION_IDEMPOTENCY_BODY] = digest
    return obj


def check_replay(existing: Mapping[str, Any], digest: str) -> None:
    """A Task found under the key: the same request again is fine (its answer is the first one's); a
    different body under the same key is a 422 ``IDEMPOTENCY_KEY_REUSED``."""
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ANNOTATION_IDEMPOTENCY_BODY) != digest:
        raise RestError(422, "IDEMPOTENCY_KEY_REUSED",
                        f"{IDEMPOTENCY_HEADER}: this key was already used for a different request body; "
                        f"use a new key for a new task", field=IDEMPOTENCY_HEADER)


def queue_label(value: str) -> str:
    """A queue name as the CRD accepts it (a DNS label): lowercase, ``_`` -> ``-``."""
    label = _SLUG_RE.sub("-", value.strip().lower()).strip("-")[:63].strip("-")
    if not label:
        raise invalid("queue_name", "must contain at least one letter or digit")
    return label



# --------------------------------------------------------------------------- REST body -> Task

_WHAT_RUNS_HINT = (
    "say what runs: 'template' (+ 'parameters'), 'task_type' (+ 'model_name', 'input_data'), "
    "'script_content' (+ 'script_type'), or 'image' (+ 'command'/'args')"
)


def first_of(body: Mapping[str, Any], *keys: str) -> tuple[str | None, Any]:
    for key in keys:
        if key in body and body[key] is not None:
            return key, body[key]
    return None, None


def as_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool):
        raise invalid(field_name, "must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    if not isinstance(value, int):
        raise invalid(field_name, "must be an integer")
    return value


def string_map(value: Any, field_name: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise invalid(field_name, "must be an object of string values")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise invalid(field_name, f"value of {k!r} must be a string, number or boolean")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


TaskLookup = Callable[[str], "tuple[str, str | None] | None"]
"""A task id or name -> ``(name, uid)`` of the caller's Task it names, ``None`` if none."""


@dataclass
class BuildContext:
    """What :func:`build_task` needs to know beyond the body."""

    user: str
    namespace: str
    templates: Sequence[Mapping[str, Any]] = ()
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    now: datetime | None = None
    lookup: TaskLookup | None = None
    """Resolves ``depends_on`` ids (uids) to Task names; without it they are taken as names."""


CREATE_FIELDS = frozenset({
    # names and text
    "name", "task_name", "display_name", "displayName", "title", "description", "metadata", "tags",
    # what runs
    "template", "template_name", "parameters", "task_type", "model_name", "input_data", "script_content",
    "script", "script_type", "language", "image", "command", "args", "env",
    # arguments
    "task_args", "task_kwargs", "kwargs",
    # queueing, timing, retries
    "priority", "queue_name", "queue", "depends_on", "dependsOn", "dependencies", "scheduled_at", "scheduledAt",
    "run_at", "eta", "timeout_seconds", "timeout", "timeoutSeconds", "max_retries", "maxRetries", "retries",
    "retry_backoff_seconds", "retry_delay", "retryBackoffSeconds", "ttl_seconds_after_finished",
    "ttlSecondsAfterFinished",
    # resources and placement
    "resources", "gpus", "gpu_count", "num_gpus", "gpu_type", "gpuType", "node_selector", "nodeSelector",
    "tolerations", "runtime",
    # pods
    "annotations", "pod_annotations", "podAnnotations", "labels", "pod_labels", "podLabels",
})
"""Every field a create body may carry: the union of the compatible APIs' names and kubetask's own."""


def unknown_field(body: Mapping[str, Any], known: Iterable[str] = CREATE_FIELDS) -> RestError | None:
    """A 422 naming the first field of ``body`` no API knows (with the nearest known name), else ``None``.

    Refusing beats guessing: ``"gpuz": 3`` silently ignored would run the task without a GPU."""
    known_set = set(known)
    for key in body:
        if key not in known_set:
            near = difflib.get_close_matches(str(key), sorted(known_set), n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            return RestError(422, "UNKNOWN_FIELD", f"{key}: unknown field{hint}", field=str(key))
    return None


def _resources(body: Mapping[str, Any]) -> Obj:
    resources: Obj = {}
    raw = body.get("resources")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise invalid("resources", "must be an object like {\"gpus\": 1, \"cpu\": \"2\", \"memory\": \"4Gi\"}")
        for key, value in raw.items():
            key_camel = camel(str(key))
            if key_camel in ("gpus", "gpu", "gpuCount", "nvidiaComGpu", "nvidia.com/gpu"):
                resources["gpus"] = as_int(value, "resources.gpus")
            elif key_camel in ("gpuType", "gpuModel", "gpuProduct"):
                resources["gpuType"] = str(value)
            elif key_camel in ("cpu", "memory"):
                resources[key_camel] = value if isinstance(value, int) else str(value)
            else:
                raise invalid(f"resources.{key}", "unknown resource; use gpus, gpu_type, cpu or memory")
    key, gpus = first_of(body, "gpus", "gpu_count", "num_gpus")
    if key:
        resources["gpus"] = as_int(gpus, key)
    key, gpu_type = first_of(body, "gpu_type", "gpuType")
    if key:
        resources["gpuType"] = str(gpu_type)
    if "gpus" in resources and not 0 <= resources["gpus"] <= 64:
        raise invalid("gpus", "must be between 0 and 64")
    if resources.get("gpuType") and not resources.get("gpus"):
        resources["gpus"] = 1
    return resources


def _env(value: Any) -> list[Obj]:
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in value.items()]
    if isinstance(value, list):
        out = []
        for item in value:
            if not isinstance(item, Mapping) or not item.get("name"):
                raise invalid("env", "must be an object or a list of {name, value}")
            entry: Obj = {"name": str(item["name"])}
            if "value" in item and item["value"] is not None:
                entry["value"] = str(item["value"])
            if item.get("valueFrom") or item.get("value_from"):
                entry["valueFrom"] = item.get("valueFrom") or item.get("value_from")
            out.append(entry)
        return out
    raise invalid("env", "must be an object or a list of {name, value}")


def build_task(body: Mapping[str, Any], ctx: BuildContext) -> Obj:
    """A request body in any compatible API's dialect -> a ``Task`` object (no ``metadata.name`` yet).

    Accepted aliases (DESIGN §4): ``name``/``task_name``/``title``; ``template`` +
    ``parameters``; ``task_type`` + ``model_name`` + ``input_data``;
    ``script_content`` + ``script_type``; ``task_args``/``task_kwargs``;
    ``queue_name``; ``depends_on``; ``scheduled_at``; ``timeout_seconds``;
    ``max_retries``; ``metadata`` (with the Voidrunner Task Management API's ``priority: "high"`` and
    ``tags``); ``annotations`` -> ``spec.podAnnotations``; ``gpus``/``resources``.
    """
    if not isinstance(body, Mapping):
        raise body_must_be_object()
    unknown = unknown_field(body)
    if unknown is not None:
        raise unknown
    spec: Obj = {"user": ctx.user}
    annotations: dict[str, str] = {ANNOTATION_SUBMITTED_VIA: "rest", ANNOTATION_SUBMITTED_AT: submitted_at()}

    # -- name, description
    key, name = first_of(body, "name", "task_name", "display_name", "displayName", "title")
    if key is not None:
        if not isinstance(name, str):
            raise invalid(key, "must be a string")
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise invalid(key, f"must be 1-{MAX_NAME_LENGTH} characters (got {len(name)})")
        spec["displayName"] = name
    elif "name" in body or "task_name" in body:
        raise invalid("name", "must be a string of 1-255 characters")
    if body.get("description") is not None:
        if not isinstance(body["description"], str):
            raise invalid("description", "must be a string")
        if len(body["description"]) > 4096:
            raise invalid("description", "must be at most 4096 characters")
        spec["description"] = body["description"]

    # -- metadata (the Voidrunner Task Management API: tags + priority word inside)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise invalid("metadata", "must be an object")
    metadata = dict(metadata or {})
    if metadata:
        spec["metadata"] = metadata
    tags: list[str] = []
    for source, raw_tags in (("metadata.tags", metadata.get("tags")), ("tags", body.get("tags"))):
        if raw_tags is None:
            continue
        if isinstance(raw_tags, str):
            raw_tags = [raw_tags]
        if not isinstance(raw_tags, list) or not all(isinstance(t, str | int | float) for t in raw_tags):
            raise invalid(source, "must be a list of strings")
        tags.extend(str(t) for t in raw_tags if str(t) not in tags)
    if tags:
        spec["tags"] = tags

    # -- priority
    if body.get("priority") is not None:
        spec["priority"] = parse_priority(body["priority"])
    elif metadata.get("priority") is not None:
        spec["priority"] = parse_priority(metadata["priority"], "metadata.priority")
    else:
        spec["priority"] = DEFAULT_PRIORITY

    # -- queue
    key, queue = first_of(body, "queue_name", "queue")
    if key is not None:
        if not isinstance(queue, str):
            raise invalid(key, "must be a string")
        spec["queue"] = queue_label(queue)
        if spec["queue"] != queue:
            annotations[ANNOTATION_QUEUE_NAME] = queue
    else:
        spec["queue"] = DEFAULT_QUEUE

    # -- what runs
    what_runs(body, spec, annotations, ctx)

    # -- arguments
    key, args = first_of(body, "task_args", "args")
    if key is not None and "args" not in spec:
        if not isinstance(args, list):
            args = [args]
        spec["args"] = args
    key, kwargs = first_of(body, "task_kwargs", "kwargs")
    if key is not None:
        if not isinstance(kwargs, Mapping):
            raise invalid(key, "must be an object")
        spec["kwargs"] = dict(kwargs)

    # -- resources and placement
    resources = _resources(body)
    if resources:
        spec["resources"] = resources
    if body.get("node_selector") is not None or body.get("nodeSelector") is not None:
        spec["nodeSelector"] = string_map(body.get("node_selector") or body.get("nodeSelector"), "node_selector")
    if body.get("tolerations") is not None:
        if not isinstance(body["tolerations"], list):
            raise invalid("tolerations", "must be a list")
        spec["tolerations"] = body["tolerations"]
    if body.get("runtime") is not None:
        if body["runtime"] not in ("job", "pod"):
            raise invalid("runtime", "must be 'job' or 'pod'")
        spec["runtime"] = body["runtime"]

    # -- dependencies
    key, deps = first_of(body, "depends_on", "dependsOn", "dependencies")
    if key is not None:
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise invalid(key, "must be a list of task ids")
        names, uids = _resolve_dependencies(deps, ctx)
        if names:
            spec["dependsOn"] = names
            if uids:
                annotations[ANNOTATION_DEPENDS_ON_UIDS] = json.dumps(uids, sort_keys=True, separators=(",", ":"))

    # -- timing and retries
    key, scheduled = first_of(body, "scheduled_at", "scheduledAt", "run_at", "eta")
    if key is not None:
        when = parse_time(scheduled)
        if when is None:
            raise invalid(key, "must be an ISO 8601 date-time such as 2026-01-25T14:30:00Z")
        spec["scheduledAt"] = format_time(when)
    key, timeout = first_of(body, "timeout_seconds", "timeout", "timeoutSeconds")
    if key is not None:
        seconds = as_int(timeout, key)
        if seconds < 1:
            raise invalid(key, f"must be between 1 and {ctx.max_timeout_seconds} seconds (got {seconds})")
        if seconds > ctx.max_timeout_seconds:
            # The admission webhook's words, so REST and kubectl read the same.
            raise RestError(422, "VALIDATION_ERROR", f"timeoutSeconds {seconds} exceeds the maximum of "
                            f"{ctx.max_timeout_seconds} s for {ctx.user}", field=key)
        spec["timeoutSeconds"] = seconds
    key, retries = first_of(body, "max_retries", "maxRetries", "retries")
    if key is not None:
        count = as_int(retries, key)
        if not 0 <= count <= MAX_RETRIES_LIMIT:
            raise invalid(key, f"must be between 0 and {MAX_RETRIES_LIMIT}")
        spec["maxRetries"] = count
    key, backoff = first_of(body, "retry_backoff_seconds", "retry_delay", "retryBackoffSeconds")
    if key is not None:
        delay = as_int(backoff, key)
        if delay < 0:
            raise invalid(key, "must be ≥ 0")
        spec["retryBackoffSeconds"] = delay
    key, ttl = first_of(body, "ttl_seconds_after_finished", "ttlSecondsAfterFinished")
    if key is not None:
        spec["ttlSecondsAfterFinished"] = max(0, as_int(ttl, key))

    # -- pod annotations and labels
    key, pod_annotations = first_of(body, "annotations", "pod_annotations", "podAnnotations")
    if key is not None:
        spec["podAnnotations"] = string_map(pod_annotations, key)
    key, pod_labels = first_of(body, "labels", "pod_labels", "podLabels")
    if key is not None:
        spec["podLabels"] = string_map(pod_labels, key)

    check_pod_fields(body, spec)

    if not spec.get("displayName"):
        spec["displayName"] = _default_display_name(spec, annotations)

    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {
            "namespace": ctx.namespace,
            "labels": {LABEL_USER: label_value(ctx.user)},
            "annotations": annotations,
        },
        "spec": spec,
    }


_POD_FIELD_SOURCES = {
    "spec.podAnnotations": ("annotations", "pod_annotations", "podAnnotations"),
    "spec.podLabels": ("labels", "pod_labels", "podLabels"),
    "spec.nodeSelector": ("node_selector", "nodeSelector"),
    "spec.tolerations": ("tolerations",),
    "spec.env": ("env",),
}


def check_pod_fields(body: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """A 422 naming the request field (``annotations``, ``node_selector``, ``tolerations[0].key`` …) when
    the apiserver would refuse the Job made of ``spec``, in the apiserver's words."""
    errors = pod_field_errors(spec)
    if not errors:
        return

    def sent(path: str) -> str:
        for spec_path, keys in _POD_FIELD_SOURCES.items():
            if path.startswith(spec_path):
                return (first_of(body, *keys)[0] or keys[0]) + path[len(spec_path):]
        return path

    detail = "; ".join(sent(e.field) + ": " + str(e).split(": ", 1)[1] for e in errors)
    raise invalid(sent(errors[0].field), f"Kubernetes would refuse this task's pod: {detail}")


def _resolve_dependencies(deps: Sequence[str], ctx: BuildContext) -> tuple[list[str], dict[str, str]]:
    """``depends_on`` ids or names -> the Task names (``spec.dependsOn``) and ``{name: uid}`` of those known."""
    names: list[str] = []
    uids: dict[str, str] = {}
    for dep in deps:
        found = ctx.lookup(dep) if ctx.lookup is not None else None
        if found is not None:
            name, uid = found
            if uid:
                uids[name] = uid
        elif DNS_SUBDOMAIN.match(dep) and len(dep) <= 253:
            name = dep  # admission says whether it exists
        else:
            raise RestError(422, "DEPENDENCY_NOT_FOUND", f"depends_on: task {dep!r} does not exist",
                            field="depends_on")
        if name not in names:
            names.append(name)
    return names, uids


def _default_display_name(spec: Mapping[str, Any], annotations: Mapping[str, str]) -> str:
    if annotations.get(ANNOTATION_TASK_TYPE):
        return annotations[ANNOTATION_TASK_TYPE]
    if spec.get("template"):
        return str(spec["template"]["name"])
    if spec.get("script"):
        return f"{spec['script']['language']}-script"
    if spec.get("image"):
        return str(spec["image"]).rsplit("/", 1)[-1][:255]
    return "task"


def what_runs(body: Mapping[str, Any], spec: Obj, annotations: dict[str, str], ctx: BuildContext) -> None:
    """Fill ``spec.template`` | ``spec.script`` | ``spec.image`` from whichever the body says."""
    templates = templates_by_name(ctx.templates)
    params_raw = body.get("parameters")
    if params_raw is not None and not isinstance(params_raw, Mapping):
        raise invalid("parameters", "must be an object")
    params: dict[str, Any] = dict(params_raw or {})
    template_field = body.get("template") if body.get("template") is not None else body.get("template_name")
    script_content = body.get("script_content")
    if script_content is None and isinstance(body.get("script"), str):
        script_content = body["script"]
    script_obj = body.get("script") if isinstance(body.get("script"), Mapping) else None
    task_type = body.get("task_type")
    image = body.get("image")

    chosen = [n for n, v in (("template", template_field), ("script_content", script_content or script_obj),
                             ("image", image)) if v]
    if len(chosen) > 1:
        raise RestError(422, "VALIDATION_ERROR",
                        f"give only one of template, script_content and image (got {', '.join(chosen)})",
                        field=chosen[1])

    if template_field is not None:
        if isinstance(template_field, Mapping):
            tname = template_field.get("name")
            params = {**dict(template_field.get("parameters") or {}), **params}
        else:
            tname = template_field
        if not isinstance(tname, str) or not tname:
            raise invalid("template", "must be a template name")
        found = find_template(templates, tname)
        if found is None:
            raise RestError(422, "TEMPLATE_NOT_FOUND", f"Unknown template '{tname}' "
                            f"(available: {', '.join(sorted(templates)) or 'none'})", field="template")
        _set_template(spec, *found, params, body, task_type, annotations)
        return

    if script_content is not None or script_obj is not None:
        if script_obj is not None:
            content = script_obj.get("content")
            language = script_obj.get("language") or script_obj.get("type") or body.get("script_type")
        else:
            content = script_content
            language = body.get("script_type") or body.get("language")
        if not isinstance(content, str) or not content:
            raise invalid("script_content", "must be a non-empty string")
        if len(content.encode()) > MAX_SCRIPT_BYTES:
            raise invalid("script_content", f"must be at most 1 MiB ({MAX_SCRIPT_BYTES} bytes); "
                                            f"got {len(content.encode())} bytes")
        language = "python" if language is None else str(language).strip().lower()
        if language in ("py", "python3"):
            language = "python"
        if language in ("sh", "shell"):
            language = "bash"
        if language not in ("python", "bash"):
            raise invalid("script_type", f"must be 'python' or 'bash' (got {body.get('script_type')!r})")
        spec["script"] = {"language": language, "content": content}
        if task_type is not None:
            annotations[ANNOTATION_TASK_TYPE] = str(task_type)
        return

    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise invalid("image", "must be a container image reference")
        spec["image"] = image.strip()
        if body.get("command") is not None:
            command = body["command"]
            if isinstance(command, str):
                command = ["/bin/sh", "-c", command]
            if not isinstance(command, list):
                raise invalid("command", "must be a list of strings or a shell string")
            spec["command"] = [str(c) for c in command]
        if body.get("args") is not None:
            args = body["args"]
            if not isinstance(args, list):
                raise invalid("args", "must be a list")
            spec["args"] = [a if isinstance(a, str) else str(a) for a in args]
        if body.get("env") is not None:
            spec["env"] = _env(body["env"])
        if task_type is not None:
            annotations[ANNOTATION_TASK_TYPE] = str(task_type)
        return

    if task_type is not None:
        if not isinstance(task_type, str) or not task_type:
            raise invalid("task_type", "must be a string")
        typed = find_task_type(templates, task_type)
        if typed is None:
            known = sorted({str(t.get("name")) for tpl in templates.values() for t in template_task_types(tpl)})
            raise RestError(422, "VALIDATION_ERROR", f"task_type: unknown task type {task_type!r}; "
                            f"available: {', '.join(known) or 'none'}", field="task_type")
        template_name, template_spec, alias = typed
        model_name = body.get("model_name")
        if model_name is None:
            raise invalid("model_name", f"is required with task_type {task_type!r}")
        input_data = body.get("input_data")
        if input_data is None:
            raise invalid("input_data", f"is required with task_type {task_type!r}")
        if not isinstance(input_data, Mapping):
            raise invalid("input_data", f"must be an object (got {type(input_data).__name__})")
        declared = {str(p.get("name")) for p in template_spec.get("parameters") or []}
        model_param = str(alias.get("modelParameter") or alias.get("model_parameter") or "model_name")
        input_param = alias.get("inputParameter") or alias.get("input_parameter")
        # The Task Manager API's ``parameters`` are inference options: the template's own parameters stay
        # parameters, everything else travels inside the input object the model code reads.
        merged = {k: v for k, v in params.items() if k in declared}
        options = {k: v for k, v in params.items() if k not in declared}
        merged[model_param] = model_name
        if isinstance(input_data, Mapping):
            input_value: Any = {**options, **dict(input_data)}
        else:
            input_value = input_data if not options else {"input": input_data, **options}
        if input_param:
            merged[str(input_param)] = input_value
        elif isinstance(input_value, Mapping):
            for k, v in input_value.items():
                if k in declared:
                    merged.setdefault(str(k), v)
        annotations[ANNOTATION_TASK_TYPE] = task_type
        annotations[ANNOTATION_MODEL_NAME] = str(model_name)[:1024]
        _set_template(spec, template_name, template_spec, merged, body, None, annotations)
        return

    task_name = body.get("task_name")
    if isinstance(task_name, str) and task_name:
        named = find_template(templates, task_name)
        if named is not None:
            # DESIGN §4: the template runs with task_args / task_kwargs. Keyword arguments that
            # name a declared parameter fill it; the rest stay the task's kwargs.
            declared = {str(p.get("name")) for p in named[1].get("parameters") or []}
            raw_kwargs = body.get("task_kwargs")
            kwargs: Mapping[str, Any] = raw_kwargs if isinstance(raw_kwargs, Mapping) else {}
            merged = {str(k): v for k, v in kwargs.items() if str(k) in declared}
            merged.update(params)
            _set_template(spec, *named, merged, body, None, annotations)
            return
        raise RestError(
            422, "VALIDATION_ERROR",
            f"task_name {task_name!r} names no TaskTemplate (by name or alias); {_WHAT_RUNS_HINT}",
            field="task_name",
            errors=[{"field": f, "message": "one of these says what runs"}
                    for f in ("template", "task_type", "script_content", "image")],
        )
    raise RestError(
        422, "VALIDATION_ERROR", f"nothing to run: {_WHAT_RUNS_HINT}", field="template",
        errors=[{"field": f, "message": "one of these says what runs"}
                for f in ("template", "task_type", "script_content", "image")],
    )


def _set_template(
    spec: Obj,
    template_name: str,
    template_spec: Mapping[str, Any],
    params: dict[str, Any],
    body: Mapping[str, Any],
    task_type: Any,
    annotations: dict[str, str],
) -> None:
    check = validate_parameters(template_spec, params)
    if not check.ok:
        errors = [{"field": f"parameters.{m}", "message": "required parameter is missing"} for m in check.missing]
        errors += [{"field": f"parameters.{i['name']}", "message": i["reason"]} for i in check.invalid]
        raise RestError(422, "INVALID_PARAMETERS", check.message(template_name), field=errors[0]["field"],
                        errors=errors)
    spec["template"] = {"name": template_name, "parameters": params}
    if task_type is not None:
        annotations[ANNOTATION_TASK_TYPE] = str(task_type)
    if body.get("model_name") is not None and ANNOTATION_MODEL_NAME not in annotations:
        annotations[ANNOTATION_MODEL_NAME] = str(body["model_name"])[:1024]
