"""REST body <-> Task mapping, the public representation, and list queries (DESIGN §4).

Framework-free: no FastAPI, Starlette or Kubernetes client imports.  The API's
routes are thin adapters over these functions, and the unit tests exercise them
directly.

* :func:`build_task` turns a request body in ANY of the seed dialects into a
  ``Task`` object (``metadata`` + ``spec``) ready to create.
* :func:`task_public` turns a ``Task`` object into the public JSON shape that
  carries every seed's field names at once (``id`` and ``task_id``, ``name``
  and ``task_name``, ...).
* :class:`TaskQuery` with :func:`query_tasks` filters, sorts and pages cached
  objects; :class:`TaskRow` precomputes the same keys (and the public JSON) once
  per object version, for :func:`query_rows` over a watch cache.

Every refusal is a :class:`RestError` carrying the HTTP status, a stable
machine code and, for 422s, the offending field.
"""

from __future__ import annotations

import calendar
import copy
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetask import API_VERSION
from kubetask.core.events import submitted_at
from kubetask.core.models import (
    ANNOTATION_SUBMITTED_AT,
    DEFAULT_MAX_TIMEOUT_SECONDS,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_SCRIPT_BYTES,
)

Obj = dict[str, Any]

LABEL_USER = "kubetask.io/user"
LABEL_TENANT = "kubetask.io/tenant"
LABEL_TASK = "kubetask.io/task"
ANNOTATION_TASK_TYPE = "kubetask.io/task-type"
ANNOTATION_MODEL_NAME = "kubetask.io/model-name"
ANNOTATION_QUEUE_NAME = "kubetask.io/queue-name"
ANNOTATION_RERUN = "kubetask.io/rerun"
ANNOTATION_REPLAY_OF = "kubetask.io/replay-of"
ANNOTATION_CANCELLED_AT = "kubetask.io/cancelled-at"
ANNOTATION_SUBMITTED_VIA = "kubetask.io/submitted-via"

MAX_NAME_LENGTH = 255
MIN_PRIORITY, MAX_PRIORITY = 0, 10
MAX_RETRIES_LIMIT = 20
ID_SLUG_LENGTH = 20

# --------------------------------------------------------------------------- errors


class RestError(Exception):
    """A refusal with its HTTP status, a stable ``code`` and a human ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.errors = errors if errors is not None else (
            [{"field": field, "message": detail}] if field else None
        )
        self.headers = dict(headers or {})


def invalid(field_name: str, message: str, code: str = "VALIDATION_ERROR") -> RestError:
    """A 422 naming the field."""
    return RestError(422, code, f"{field_name}: {message}", field=field_name)


def not_found(task_id: str) -> RestError:
    return RestError(404, "TASK_NOT_FOUND", f"Task {task_id} not found")


# --------------------------------------------------------------------------- time


def format_time(value: datetime | str | None) -> str | None:
    """RFC 3339 with a ``Z``, second precision (as Kubernetes writes it)."""
    if value is None or value == "":
        return None
    parsed = parse_time(value) if isinstance(value, str) else value
    if parsed is None:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """Parse ISO 8601 / RFC 3339 (``Z`` or offset), a bare date, or a Unix timestamp; ``None`` if not."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = text.replace(" ", "T", 1) if re.match(r"\d{4}-\d{2}-\d{2} \d", text) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- status vocabulary

PHASE_TO_STATUS: dict[str, str] = {
    "Pending": "pending",
    "Queued": "queued",
    "Running": "running",
    "Succeeded": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
}
STATUS_TO_PHASE: dict[str, str] = {v: k for k, v in PHASE_TO_STATUS.items()}
PUBLIC_STATUSES: tuple[str, ...] = ("pending", "queued", "running", "completed", "failed", "cancelled")
TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})

_STATUS_SYNONYMS: dict[str, str] = {}
for _status, _words in {
    "pending": ["pending", "waiting", "created", "submitted", "new", "scheduled", "deferred", "blocked"],
    "queued": ["queued", "enqueued", "ready", "claimed", "admitted"],
    "running": ["running", "in_progress", "inprogress", "started", "active", "processing", "executing",
                "assigned", "run"],
    "completed": ["completed", "complete", "success", "successful", "succeeded", "succeed", "done",
                  "finished", "ok", "passed"],
    "failed": ["failed", "failure", "fail", "error", "errored", "errors", "timeout", "timed_out", "crashed"],
    "cancelled": ["cancelled", "canceled", "cancel", "aborted", "revoked", "killed", "stopped", "terminated"],
}.items():
    for _word in _words:
        _STATUS_SYNONYMS[_word] = _status


def normalize_status(value: str) -> str:
    """Any case or seed synonym (``PENDING``, ``success``, ``in-progress``, ``canceled``) -> public status."""
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _STATUS_SYNONYMS:
        return _STATUS_SYNONYMS[key]
    raise invalid(
        "status", f"unknown status {value!r}; use one of {', '.join(PUBLIC_STATUSES)} (any case)",
    )


def parse_status_filter(value: str | Sequence[str] | None, *, queued_as_pending: bool = False) -> set[str]:
    """A status filter (comma-separated and/or repeated) -> the set of ``status.phase`` values."""
    if value is None:
        return set()
    parts = [value] if isinstance(value, str) else list(value)
    phases: set[str] = set()
    for part in parts:
        for word in part.split(","):
            if not word.strip():
                continue
            status = normalize_status(word)
            phases.add(STATUS_TO_PHASE[status])
            if queued_as_pending and status == "pending":
                phases.add("Queued")
    return phases


def task_phase(obj: Mapping[str, Any]) -> str:
    """The effective phase: ``status.phase``, ``Pending`` before the operator has looked at it."""
    phase = (obj.get("status") or {}).get("phase")
    return str(phase) if phase else "Pending"


def is_terminal(obj: Mapping[str, Any]) -> bool:
    return task_phase(obj) in TERMINAL_PHASES


def public_status(obj: Mapping[str, Any], *, queued_as_pending: bool = False) -> str:
    """The lowercase public status; a requested cancel shows as ``cancelled`` at once."""
    phase = task_phase(obj)
    if phase not in TERMINAL_PHASES and (obj.get("spec") or {}).get("cancel"):
        return "cancelled"
    status = PHASE_TO_STATUS.get(phase, phase.lower())
    if queued_as_pending and status == "queued":
        return "pending"
    return status


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
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def slugify(text: str, length: int = ID_SLUG_LENGTH) -> str:
    slug = _SLUG_RE.sub("-", text.lower()).strip("-")[:length].strip("-")
    return slug or "task"


def generate_task_id(display_name: str | None) -> str:
    """``<slug of the name, ≤20 chars>-<8 random hex>``: Job names ``<task>-<n>`` stay ≤ 63 chars."""
    return f"{slugify(display_name or 'task')}-{secrets.token_hex(4)}"


def queue_label(value: str) -> str:
    """A queue name as the CRD accepts it (a DNS label): lowercase, ``_`` -> ``-``."""
    label = _SLUG_RE.sub("-", value.strip().lower()).strip("-")[:63].strip("-")
    if not label:
        raise invalid("queue_name", "must contain at least one letter or digit")
    return label


# --------------------------------------------------------------------------- templates


def template_aliases(template: Mapping[str, Any]) -> list[str]:
    spec = template.get("spec") or {}
    return [str(a) for a in spec.get("aliases") or []]


def template_task_types(template: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = template.get("spec") or {}
    out: list[Mapping[str, Any]] = []
    for entry in spec.get("taskTypes") or []:
        if isinstance(entry, str):
            out.append({"name": entry})
        elif isinstance(entry, Mapping) and entry.get("name"):
            out.append(entry)
    return out


def find_template(templates: Iterable[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    """The TaskTemplate called ``name``, else one listing ``name`` among its aliases."""
    candidates = list(templates)
    for template in candidates:
        if (template.get("metadata") or {}).get("name") == name:
            return template
    for template in candidates:
        if name in template_aliases(template):
            return template
    return None


def find_task_type(
    templates: Iterable[Mapping[str, Any]], task_type: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The template (and its alias entry) that serves a seed-004 ``task_type``."""
    for template in templates:
        for entry in template_task_types(template):
            if entry.get("name") == task_type:
                return template, entry
    return None


@dataclass
class ParameterCheck:
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    message: str = ""

    @property
    def valid(self) -> bool:
        return not self.missing and not self.invalid


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def check_parameters(template_spec: Mapping[str, Any], params: Mapping[str, Any]) -> ParameterCheck:
    """Missing and invalid template parameters.

    Delegates to ``kubetask.core.templates.validate_parameters`` (the operator's
    and the webhook's own check) when it is present, so REST and kubectl agree.
    """
    try:
        from kubetask.core.templates import validate_parameters
    except ImportError:  # pragma: no cover - the module ships with the core
        validate_parameters = None  # type: ignore[assignment]
    if validate_parameters is not None:
        result = validate_parameters(dict(template_spec), dict(params))
        check = ParameterCheck(missing=[str(m) for m in result.missing])
        for item in result.invalid:
            name = str(item.get("name")) if isinstance(item, Mapping) else str(item)
            check.invalid.append(name)
            if isinstance(item, Mapping):
                check.reasons[name] = str(item.get("reason") or "invalid value")
        check.message = result.message() if hasattr(result, "message") else ""
        return check
    check = ParameterCheck()
    for param in template_spec.get("parameters") or []:
        name = param.get("name")
        if not name:
            continue
        if name not in params or params[name] is None:
            if param.get("required") and param.get("default") is None:
                check.missing.append(name)
            continue
        type_check = _TYPE_CHECKS.get(str(param.get("type") or "string"))
        value = params[name]
        if (type_check is not None and not type_check(value)) or (param.get("enum") and value not in param["enum"]):
            check.invalid.append(name)
    return check


def template_public(template: Mapping[str, Any], *, detail: bool = False) -> Obj:
    """A TaskTemplate in seed 002's shape (``name``, ``description``, ``parameters[]``, ``steps``)."""
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    params = []
    for p in spec.get("parameters") or []:
        entry: Obj = {
            "name": p.get("name"),
            "type": p.get("type", "string"),
            "required": bool(p.get("required", False)),
            "description": p.get("description"),
        }
        if p.get("default") is not None:
            entry["default"] = p["default"]
        if p.get("enum"):
            entry["enum"] = p["enum"]
        params.append(entry)
    out: Obj = {
        "name": meta.get("name"),
        "description": spec.get("description"),
        "parameters": params,
        "task_types": [t.get("name") for t in template_task_types(template)],
        "aliases": template_aliases(template),
    }
    defaults = spec.get("defaults") or {}
    if defaults:
        out["defaults"] = _snake_keys(defaults)
    if detail:
        out["steps"] = spec.get("steps") or [
            {"type": "container", **{k: v for k, v in (spec.get("podTemplate") or {}).items()
                                     if k in ("image", "command", "args")}}
        ]
        out["created_at"] = format_time(meta.get("creationTimestamp"))
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_snake(str(k)): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# --------------------------------------------------------------------------- tenants


def tenant_namespace(tenant: Mapping[str, Any], prefix: str = "kubetask-") -> str:
    """``status.namespace``, else ``spec.namespace``, else ``<prefix><tenant>``."""
    status = tenant.get("status") or {}
    spec = tenant.get("spec") or {}
    return str(status.get("namespace") or spec.get("namespace")
               or f"{prefix}{(tenant.get('metadata') or {}).get('name')}")


def tenant_limits(tenant: Mapping[str, Any]) -> Obj:
    limits: Obj = {"maxPending": 50, "maxTimeoutSeconds": DEFAULT_MAX_TIMEOUT_SECONDS}
    limits.update((tenant.get("spec") or {}).get("limits") or {})
    return limits


def current_month(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


def tenant_gpu_seconds_this_month(tenant: Mapping[str, Any], now: datetime | None = None) -> float:
    status = tenant.get("status") or {}
    month = current_month(now)
    if status.get("month") in (None, month) and status.get("gpuSecondsThisMonth") is not None:
        return float(status.get("gpuSecondsThisMonth") or 0.0)
    for entry in status.get("usage") or []:
        if entry.get("month") == month:
            return float(entry.get("gpuSeconds") or 0.0)
    return 0.0


def next_month_start(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    days = calendar.monthrange(now.year, now.month)[1]
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first + timedelta(days=days)


# --------------------------------------------------------------------------- REST body -> Task

_WHAT_RUNS_HINT = (
    "say what runs: 'template' (+ 'parameters'), 'task_type' (+ 'model_name', 'input_data'), "
    "'script_content' (+ 'script_type'), or 'image' (+ 'command'/'args')"
)


def _first(body: Mapping[str, Any], *keys: str) -> tuple[str | None, Any]:
    for key in keys:
        if key in body and body[key] is not None:
            return key, body[key]
    return None, None


def _as_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool):
        raise invalid(field_name, "must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    if not isinstance(value, int):
        raise invalid(field_name, "must be an integer")
    return value


def _string_map(value: Any, field_name: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise invalid(field_name, "must be an object of string values")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise invalid(field_name, f"value of {k!r} must be a string, number or boolean")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


@dataclass
class BuildContext:
    """What :func:`build_task` needs to know beyond the body."""

    user: str
    namespace: str
    templates: Sequence[Mapping[str, Any]] = ()
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    now: datetime | None = None


def _resources(body: Mapping[str, Any]) -> Obj:
    resources: Obj = {}
    raw = body.get("resources")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise invalid("resources", "must be an object like {\"gpus\": 1, \"cpu\": \"2\", \"memory\": \"4Gi\"}")
        for key, value in raw.items():
            camel = _camel(str(key))
            if camel in ("gpus", "gpu", "gpuCount", "nvidiaComGpu", "nvidia.com/gpu"):
                resources["gpus"] = _as_int(value, "resources.gpus")
            elif camel in ("gpuType", "gpuModel", "gpuProduct"):
                resources["gpuType"] = str(value)
            elif camel in ("cpu", "memory"):
                resources[camel] = value if isinstance(value, int) else str(value)
            else:
                raise invalid(f"resources.{key}", "unknown resource; use gpus, gpu_type, cpu or memory")
    key, gpus = _first(body, "gpus", "gpu_count", "num_gpus")
    if key:
        resources["gpus"] = _as_int(gpus, key)
    key, gpu_type = _first(body, "gpu_type", "gpuType")
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
    """A request body in any seed dialect -> a ``Task`` object (no ``metadata.name`` yet).

    Accepted aliases (DESIGN §4): ``name``/``task_name``/``title``; ``template`` +
    ``parameters``; ``task_type`` + ``model_name`` + ``input_data``;
    ``script_content`` + ``script_type``; ``task_args``/``task_kwargs``;
    ``queue_name``; ``depends_on``; ``scheduled_at``; ``timeout_seconds``;
    ``max_retries``; ``metadata`` (with seed 001's ``priority: "high"`` and
    ``tags``); ``annotations`` -> ``spec.podAnnotations``; ``gpus``/``resources``.
    """
    if not isinstance(body, Mapping):
        raise RestError(422, "VALIDATION_ERROR", "the request body must be a JSON object", field="body")
    spec: Obj = {"user": ctx.user}
    annotations: dict[str, str] = {ANNOTATION_SUBMITTED_VIA: "rest", ANNOTATION_SUBMITTED_AT: submitted_at()}

    # -- name, description
    key, name = _first(body, "name", "task_name", "display_name", "displayName", "title")
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

    # -- metadata (seed 001: tags + priority word inside)
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
    key, queue = _first(body, "queue_name", "queue")
    if key is not None:
        if not isinstance(queue, str):
            raise invalid(key, "must be a string")
        spec["queue"] = queue_label(queue)
        if spec["queue"] != queue:
            annotations[ANNOTATION_QUEUE_NAME] = queue
    else:
        spec["queue"] = DEFAULT_QUEUE

    # -- what runs
    _what_runs(body, spec, annotations, ctx)

    # -- arguments
    key, args = _first(body, "task_args", "args")
    if key is not None and "args" not in spec:
        if not isinstance(args, list):
            args = [args]
        spec["args"] = args
    key, kwargs = _first(body, "task_kwargs", "kwargs")
    if key is not None:
        if not isinstance(kwargs, Mapping):
            raise invalid(key, "must be an object")
        spec["kwargs"] = dict(kwargs)

    # -- resources and placement
    resources = _resources(body)
    if resources:
        spec["resources"] = resources
    if body.get("node_selector") is not None or body.get("nodeSelector") is not None:
        spec["nodeSelector"] = _string_map(body.get("node_selector") or body.get("nodeSelector"), "node_selector")
    if body.get("tolerations") is not None:
        if not isinstance(body["tolerations"], list):
            raise invalid("tolerations", "must be a list")
        spec["tolerations"] = body["tolerations"]
    if body.get("runtime") is not None:
        if body["runtime"] not in ("job", "pod"):
            raise invalid("runtime", "must be 'job' or 'pod'")
        spec["runtime"] = body["runtime"]

    # -- dependencies
    key, deps = _first(body, "depends_on", "dependsOn", "dependencies")
    if key is not None:
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise invalid(key, "must be a list of task ids")
        for dep in deps:
            if not _DNS_SUBDOMAIN.match(dep) or len(dep) > 253:
                raise RestError(422, "DEPENDENCY_NOT_FOUND",
                                f"depends_on: task {dep!r} does not exist", field="depends_on")
        if deps:
            spec["dependsOn"] = list(dict.fromkeys(deps))

    # -- timing and retries
    key, scheduled = _first(body, "scheduled_at", "scheduledAt", "run_at", "eta")
    if key is not None:
        when = parse_time(scheduled)
        if when is None:
            raise invalid(key, "must be an ISO 8601 date-time such as 2026-01-25T14:30:00Z")
        spec["scheduledAt"] = format_time(when)
    key, timeout = _first(body, "timeout_seconds", "timeout", "timeoutSeconds")
    if key is not None:
        seconds = _as_int(timeout, key)
        if seconds < 1:
            raise invalid(key, f"must be between 1 and {ctx.max_timeout_seconds} seconds (got {seconds})")
        if seconds > ctx.max_timeout_seconds:
            # The admission webhook's words, so REST and kubectl read the same.
            raise RestError(422, "VALIDATION_ERROR", f"timeoutSeconds {seconds} exceeds the maximum of "
                            f"{ctx.max_timeout_seconds} s for {ctx.user}", field=key)
        spec["timeoutSeconds"] = seconds
    key, retries = _first(body, "max_retries", "maxRetries", "retries")
    if key is not None:
        count = _as_int(retries, key)
        if not 0 <= count <= MAX_RETRIES_LIMIT:
            raise invalid(key, f"must be between 0 and {MAX_RETRIES_LIMIT}")
        spec["maxRetries"] = count
    key, backoff = _first(body, "retry_backoff_seconds", "retry_delay", "retryBackoffSeconds")
    if key is not None:
        delay = _as_int(backoff, key)
        if delay < 0:
            raise invalid(key, "must be ≥ 0")
        spec["retryBackoffSeconds"] = delay
    key, ttl = _first(body, "ttl_seconds_after_finished", "ttlSecondsAfterFinished")
    if key is not None:
        spec["ttlSecondsAfterFinished"] = max(0, _as_int(ttl, key))

    # -- pod annotations and labels
    key, pod_annotations = _first(body, "annotations", "pod_annotations", "podAnnotations")
    if key is not None:
        spec["podAnnotations"] = _string_map(pod_annotations, key)
    key, pod_labels = _first(body, "labels", "pod_labels", "podLabels")
    if key is not None:
        spec["podLabels"] = _string_map(pod_labels, key)

    if not spec.get("displayName"):
        spec["displayName"] = _default_display_name(spec, annotations)

    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {
            "namespace": ctx.namespace,
            "labels": {LABEL_USER: _label_value(ctx.user)},
            "annotations": annotations,
        },
        "spec": spec,
    }


def _label_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-._") or "unknown"


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


def _what_runs(body: Mapping[str, Any], spec: Obj, annotations: dict[str, str], ctx: BuildContext) -> None:
    """Fill ``spec.template`` | ``spec.script`` | ``spec.image`` from whichever the body says."""
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
        template = find_template(ctx.templates, tname)
        if template is None:
            raise RestError(422, "TEMPLATE_NOT_FOUND", f"Unknown template '{tname}' "
                            f"(available: {', '.join(_names(ctx.templates)) or 'none'})", field="template")
        _set_template(spec, template, params, body, task_type, annotations)
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
        found = find_task_type(ctx.templates, task_type)
        if found is None:
            known = sorted({str(t.get("name")) for tpl in ctx.templates for t in template_task_types(tpl)})
            raise RestError(422, "VALIDATION_ERROR", f"task_type: unknown task type {task_type!r}; "
                            f"available: {', '.join(known) or 'none'}", field="task_type")
        template, alias = found
        model_name = body.get("model_name")
        if model_name is None:
            raise invalid("model_name", f"is required with task_type {task_type!r}")
        input_data = body.get("input_data")
        if input_data is None:
            raise invalid("input_data", f"is required with task_type {task_type!r}")
        if not isinstance(input_data, Mapping):
            raise invalid("input_data", f"must be an object (got {type(input_data).__name__})")
        declared = {str(p.get("name")) for p in (template.get("spec") or {}).get("parameters") or []}
        model_param = str(alias.get("modelParameter") or alias.get("model_parameter") or "model_name")
        input_param = alias.get("inputParameter") or alias.get("input_parameter")
        # Seed 004's ``parameters`` are inference options: the template's own parameters stay
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
        _set_template(spec, template, merged, body, None, annotations, field_prefix="parameters")
        return

    task_name = body.get("task_name")
    if isinstance(task_name, str) and task_name:
        template = find_template(ctx.templates, task_name)
        if template is not None:
            # DESIGN §4: the template runs with task_args / task_kwargs. Keyword arguments that
            # name a declared parameter fill it; the rest stay the task's kwargs.
            declared = {str(p.get("name")) for p in (template.get("spec") or {}).get("parameters") or []}
            raw_kwargs = body.get("task_kwargs")
            kwargs: Mapping[str, Any] = raw_kwargs if isinstance(raw_kwargs, Mapping) else {}
            merged = {str(k): v for k, v in kwargs.items() if str(k) in declared}
            merged.update(params)
            _set_template(spec, template, merged, body, None, annotations)
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


def _names(templates: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(str((t.get("metadata") or {}).get("name")) for t in templates)


def _set_template(
    spec: Obj,
    template: Mapping[str, Any],
    params: dict[str, Any],
    body: Mapping[str, Any],
    task_type: Any,
    annotations: dict[str, str],
    field_prefix: str = "parameters",
) -> None:
    tspec = template.get("spec") or {}
    check = check_parameters(tspec, params)
    if not check.valid:
        errors = [{"field": f"{field_prefix}.{m}", "message": "required parameter is missing"}
                  for m in check.missing]
        errors += [{"field": f"{field_prefix}.{i}", "message": check.reasons.get(i, "invalid value")}
                   for i in check.invalid]
        tname = (template.get("metadata") or {}).get("name")
        detail = check.message
        if not detail:
            parts = [f"missing required parameter '{m}'" for m in check.missing]
            parts += [f"'{i}' {check.reasons.get(i, 'is invalid')}" for i in check.invalid]
            detail = f"Invalid parameters for template '{tname}': " + "; ".join(parts)
        raise RestError(422, "INVALID_PARAMETERS", detail, field=errors[0]["field"], errors=errors)
    spec["template"] = {"name": (template.get("metadata") or {}).get("name"), "parameters": params}
    if task_type is not None:
        annotations[ANNOTATION_TASK_TYPE] = str(task_type)
    if body.get("model_name") is not None and ANNOTATION_MODEL_NAME not in annotations:
        annotations[ANNOTATION_MODEL_NAME] = str(body["model_name"])[:1024]


# --------------------------------------------------------------------------- updates

UPDATABLE_FIELDS = (
    "name", "task_name", "title", "description", "priority", "queue_name", "queue", "timeout_seconds",
    "max_retries", "retry_backoff_seconds", "scheduled_at", "metadata", "tags", "parameters",
    "task_args", "task_kwargs", "annotations",
)
IMMUTABLE_FIELDS = (
    "template", "task_type", "model_name", "script_content", "script_type", "image", "command",
    "resources", "gpus", "gpu_type", "depends_on", "runtime", "input_data",
)


def build_update_patch(body: Mapping[str, Any], task: Mapping[str, Any], *, max_timeout_seconds: int) -> Obj:
    """A merge patch of ``spec`` for ``PUT``/``PATCH /tasks/{id}`` (a task that has not started)."""
    if not isinstance(body, Mapping):
        raise RestError(422, "VALIDATION_ERROR", "the request body must be a JSON object", field="body")
    old = task.get("spec") or {}
    for frozen in IMMUTABLE_FIELDS:
        if frozen in body and body[frozen] is not None and not _same_as_current(frozen, body[frozen], task):
            raise RestError(422, "IMMUTABLE_FIELD", f"{frozen}: cannot be changed after creation", field=frozen)
    patch: Obj = {}
    key, name = _first(body, "name", "task_name", "title")
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
    key, queue = _first(body, "queue_name", "queue")
    if key is not None:
        patch["queue"] = queue_label(str(queue))
    key, timeout = _first(body, "timeout_seconds", "timeout")
    if key is not None:
        seconds = _as_int(timeout, key)
        if not 1 <= seconds <= max_timeout_seconds:
            raise invalid(key, f"must be between 1 and {max_timeout_seconds} seconds (got {seconds})")
        patch["timeoutSeconds"] = seconds
    key, retries = _first(body, "max_retries", "retries")
    if key is not None:
        count = _as_int(retries, key)
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
    if body.get("parameters") is not None:
        if not old.get("template"):
            raise RestError(422, "IMMUTABLE_FIELD", "parameters: only template tasks have parameters",
                            field="parameters")
        if not isinstance(body["parameters"], Mapping):
            raise invalid("parameters", "must be an object")
        params = dict(body["parameters"])
        patch["template"] = {"name": old["template"]["name"], "parameters": params}
    key, args = _first(body, "task_args")
    if key is not None:
        patch["args"] = args if isinstance(args, list) else [args]
    key, kwargs = _first(body, "task_kwargs")
    if key is not None:
        if not isinstance(kwargs, Mapping):
            raise invalid(key, "must be an object")
        patch["kwargs"] = dict(kwargs)
    key, annotations = _first(body, "annotations", "pod_annotations")
    if key is not None:
        patch["podAnnotations"] = _string_map(annotations, key)
    return patch


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
        "runtime": spec.get("runtime", "job"),
        "gpus": (spec.get("resources") or {}).get("gpus", 0),
        "gpu_type": (spec.get("resources") or {}).get("gpuType"),
    }.get(key, object())
    if key == "template" and isinstance(value, Mapping):
        value = value.get("name")
    return bool(value == current)


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
    annotations[ANNOTATION_SUBMITTED_VIA] = "rest"
    annotations[ANNOTATION_SUBMITTED_AT] = submitted_at()
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"namespace": namespace, "labels": {LABEL_USER: _label_value(user)},
                     "annotations": annotations},
        "spec": spec,
    }


# --------------------------------------------------------------------------- public representation


def _seconds_between(start: Any, end: Any) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def execution_status(execution: Mapping[str, Any], task: Mapping[str, Any], latest: bool) -> str:
    phase = execution.get("phase")
    if isinstance(phase, str) and phase:
        key = phase.lower()
        return _STATUS_SYNONYMS.get(key, key)
    if execution.get("finishedAt"):
        if execution.get("exitCode") == 0:
            return "completed"
        if latest and task_phase(task) == "Cancelled":
            return "cancelled"
        return "failed"
    if latest and task_phase(task) == "Cancelled":
        return "cancelled"
    return "running" if execution.get("startedAt") else "pending"


def execution_public(execution: Mapping[str, Any], task: Mapping[str, Any], *, latest: bool) -> Obj:
    exec_id = execution.get("id")
    return {
        "id": str(exec_id),
        "execution_id": str(exec_id),
        "task_id": (task.get("metadata") or {}).get("name"),
        "status": execution_status(execution, task, latest),
        "started_at": format_time(execution.get("startedAt")),
        "completed_at": format_time(execution.get("finishedAt")),
        "finished_at": format_time(execution.get("finishedAt")),
        "duration_seconds": _seconds_between(execution.get("startedAt"), execution.get("finishedAt")),
        "exit_code": execution.get("exitCode"),
        "reason": execution.get("reason"),
        "message": execution.get("message"),
        "worker_id": execution.get("nodeName"),
        "node_name": execution.get("nodeName"),
        "job_name": execution.get("jobName"),
        "pod_name": execution.get("podName"),
    }


def waiting_reason(obj: Mapping[str, Any]) -> str | None:
    """The plain-words condition message that explains why a task is not running (if any)."""
    status = obj.get("status") or {}
    if task_phase(obj) in ("Running", *TERMINAL_PHASES):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("message") and cond.get("type") in (
            "Admitted", "Ready", "Scheduled", "Runnable", "Started"
        ):
            return str(cond["message"])
    for cond in status.get("conditions") or []:
        if cond.get("message") and cond.get("type") in ("Waiting", "Pending", "Blocked", "Queued"):
            return str(cond["message"])
    return status.get("message")


def task_public(obj: Mapping[str, Any], *, queued_as_pending: bool = False) -> Obj:
    """A Task object -> its public JSON (every seed's field names at once)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ann = meta.get("annotations") or {}
    task_id = meta.get("name")
    phase = task_phase(obj)
    public_state = public_status(obj, queued_as_pending=queued_as_pending)
    template = spec.get("template") or {}
    executions = status.get("executions") or []
    latest = executions[-1] if executions else {}
    created = format_time(status.get("createdAt") or meta.get("creationTimestamp"))
    started = format_time(status.get("startedAt") or latest.get("startedAt"))
    completed = format_time(status.get("completedAt")) if phase in TERMINAL_PHASES else None
    resources = spec.get("resources") or {}
    timeout = spec.get("timeoutSeconds")
    node = status.get("nodeName") or latest.get("nodeName")
    duration = _seconds_between(started, completed) if started and completed else None
    result = status.get("result")
    error = None
    if phase == "Failed":
        error = status.get("message") or latest.get("message") or latest.get("reason")
    cancelled_at = ann.get(ANNOTATION_CANCELLED_AT) if public_state == "cancelled" else None
    if public_state == "cancelled" and cancelled_at is None:
        cancelled_at = completed
    metadata = spec.get("metadata") or {}
    task_type = ann.get(ANNOTATION_TASK_TYPE)
    model_name = ann.get(ANNOTATION_MODEL_NAME) or (template.get("parameters") or {}).get("model")

    estimated_start = format_time(status.get("estimatedStartTime"))
    estimated_completion = None
    if phase == "Running" and started and timeout:
        estimated_completion = _plus_seconds(started, timeout)
    elif phase in ("Pending", "Queued") and estimated_start and timeout:
        estimated_completion = _plus_seconds(estimated_start, timeout)
    elif phase in TERMINAL_PHASES:
        estimated_completion = completed

    gpu_seconds = status.get("gpuSeconds")
    resource_usage: Obj = {
        "gpus": resources.get("gpus", 0),
        "gpu_type": resources.get("gpuType"),
        "cpu": resources.get("cpu"),
        "memory": resources.get("memory"),
        "gpu_seconds": gpu_seconds,
        "gpu_hours": round(gpu_seconds / 3600, 6) if isinstance(gpu_seconds, int | float) else None,
        "duration_seconds": duration,
        "node_name": node,
    }
    if model_name:
        resource_usage["model_name"] = model_name
    if duration is not None:
        resource_usage["inference_time_seconds"] = duration

    out: Obj = {
        "id": task_id,
        "task_id": task_id,
        "name": spec.get("displayName") or task_id,
        "task_name": spec.get("displayName") or task_id,
        "description": spec.get("description"),
        "status": public_state,
        "phase": phase,
        "priority": spec.get("priority", DEFAULT_PRIORITY),
        "queue_name": ann.get(ANNOTATION_QUEUE_NAME) or spec.get("queue", DEFAULT_QUEUE),
        "user_id": spec.get("user") or (meta.get("labels") or {}).get(LABEL_USER),
        "namespace": meta.get("namespace"),
        "template": template.get("name"),
        "parameters": template.get("parameters") if template else None,
        "task_type": task_type,
        "model_name": model_name,
        "script_type": (spec.get("script") or {}).get("language"),
        "image": spec.get("image"),
        "task_args": spec.get("args") or [],
        "task_kwargs": spec.get("kwargs") or {},
        "depends_on": spec.get("dependsOn") or [],
        "tags": spec.get("tags") or [],
        "metadata": metadata,
        "annotations": spec.get("podAnnotations") or {},
        "gpus": resources.get("gpus", 0),
        "resources": _snake_keys(resources),
        "timeout_seconds": timeout,
        "max_retries": spec.get("maxRetries", 0),
        "retry_count": status.get("retryCount") if status.get("retryCount") is not None
        else max(0, len(executions) - 1),
        "scheduled_at": format_time(spec.get("scheduledAt")),
        "created_at": created,
        "updated_at": _updated_at(obj) or created,
        "queued_at": format_time(status.get("queuedAt")),
        "started_at": started,
        "completed_at": completed,
        "cancelled_at": cancelled_at,
        "duration_seconds": duration,
        "worker_id": node,
        "node_name": node,
        "queue_position": status.get("queuePosition") if phase in ("Pending", "Queued") else None,
        "estimated_start_time": estimated_start,
        "estimated_completion": estimated_completion,
        "waiting_reason": waiting_reason(obj),
        "result": result,
        "result_source": status.get("resultSource"),
        "error": error,
        "resource_usage": resource_usage,
        "execution_count": len(executions),
        "replay_of": ann.get(ANNOTATION_REPLAY_OF),
        "conditions": [
            {"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "last_transition_time": format_time(c.get("lastTransitionTime"))}
            for c in status.get("conditions") or []
        ],
    }
    return out


def _plus_seconds(stamp: str, seconds: Any) -> str | None:
    start = parse_time(stamp)
    if start is None:
        return None
    return format_time(start + timedelta(seconds=int(seconds)))


def _updated_at(obj: Mapping[str, Any]) -> str | None:
    stamps = [parse_time(v) for v in _update_stamps(obj)]
    valid = [s for s in stamps if s is not None]
    return format_time(max(valid)) if valid else None


def _update_stamps(obj: Mapping[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    stamps = [status.get(k) for k in ("createdAt", "queuedAt", "startedAt", "completedAt")]
    stamps += [c.get("lastTransitionTime") for c in status.get("conditions") or []]
    return [s for s in stamps if s]


# --------------------------------------------------------------------------- list queries

SORT_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {}


def _sort_created(o: Mapping[str, Any]) -> str:
    """Creation order: ``creationTimestamp`` (seconds), then the REST submission time (microseconds)."""
    meta = o.get("metadata") or {}
    return f"{meta.get('creationTimestamp') or ''}|{(meta.get('annotations') or {}).get(ANNOTATION_SUBMITTED_AT, '')}"


def _register_sorts() -> None:
    SORT_FIELDS.update({
        "created_at": _sort_created,
        "priority": lambda o: (o.get("spec") or {}).get("priority", DEFAULT_PRIORITY),
        # Alphabetical, like every other string field (what a client comparing with sorted() expects).
        "status": lambda o: public_status(o),
        "name": lambda o: str((o.get("spec") or {}).get("displayName") or (o.get("metadata") or {}).get("name")),
        "id": lambda o: str((o.get("metadata") or {}).get("name")),
        "task_type": lambda o: str(((o.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_TASK_TYPE) or ""),
        "template": lambda o: str(((o.get("spec") or {}).get("template") or {}).get("name") or ""),
        "started_at": lambda o: str((o.get("status") or {}).get("startedAt") or ""),
        "completed_at": lambda o: str((o.get("status") or {}).get("completedAt") or ""),
        "queue_position": lambda o: (o.get("status") or {}).get("queuePosition") or 1 << 30,
        "queue_name": lambda o: str((o.get("spec") or {}).get("queue") or ""),
        "user_id": lambda o: str((o.get("spec") or {}).get("user") or ""),
        "scheduled_at": lambda o: str((o.get("spec") or {}).get("scheduledAt") or ""),
    })
    for alias, target in (("created", "created_at"), ("createdAt", "created_at"), ("task_name", "name"),
                          ("task_id", "id"), ("started", "started_at"), ("completed", "completed_at"),
                          ("updated_at", "created_at"), ("queue", "queue_name"), ("user", "user_id"),
                          ("startedAt", "started_at"), ("completedAt", "completed_at")):
        SORT_FIELDS[alias] = SORT_FIELDS[target]


_register_sorts()

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass
class TaskQuery:
    """Filters, sort and page for ``GET /tasks`` (and search)."""

    phases: set[str] = field(default_factory=set)
    priority: int | None = None
    min_priority: int | None = None
    max_priority: int | None = None
    template: str | None = None
    task_type: str | None = None
    model_name: str | None = None
    queue_name: str | None = None
    tags: list[str] = field(default_factory=list)
    user: str | None = None
    worker_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    sort_by: str = "created_at"
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    queued_as_pending: bool = False


def make_query(
    *,
    status: str | Sequence[str] | None = None,
    priority: int | str | None = None,
    min_priority: int | None = None,
    max_priority: int | None = None,
    template: str | None = None,
    task_type: str | None = None,
    model_name: str | None = None,
    queue_name: str | None = None,
    tag: str | Sequence[str] | None = None,
    user: str | None = None,
    worker_id: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    search: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    page: int | None = None,
    queued_as_pending: bool = False,
) -> TaskQuery:
    """Validate raw query parameters into a :class:`TaskQuery` (422 naming the parameter)."""
    q = TaskQuery(queued_as_pending=queued_as_pending)
    q.phases = parse_status_filter(status, queued_as_pending=queued_as_pending)
    if priority is not None and priority != "":
        q.priority = parse_priority(priority)
    q.min_priority, q.max_priority = min_priority, max_priority
    q.template, q.task_type, q.model_name = template or None, task_type or None, model_name or None
    q.queue_name = queue_label(queue_name) if queue_name else None
    if tag:
        q.tags = [t for part in ([tag] if isinstance(tag, str) else tag) for t in part.split(",") if t]
    q.user, q.worker_id = user or None, worker_id or None
    for name, raw in (("created_after", created_after), ("created_before", created_before)):
        if raw:
            when = parse_time(raw)
            if when is None:
                raise invalid(name, "must be an ISO 8601 date or date-time")
            setattr(q, name, when)
    q.search = search.strip().lower() if search and search.strip() else None
    sort_key = (sort_by or "created_at").strip()
    descending_prefix = sort_key.startswith("-")
    sort_key = sort_key.lstrip("-+")
    if sort_key not in SORT_FIELDS:
        raise invalid("sort_by", f"unknown sort field {sort_key!r}; use one of "
                                 f"{', '.join(k for k in SORT_FIELDS if '_' in k or k.islower())}")
    q.sort_by = sort_key
    order = (sort_order or "").strip().lower()
    if order in ("", None):
        q.descending = sort_key in ("created_at", "created", "createdAt", "priority") or descending_prefix
    elif order in ("desc", "descending", "-1", "dsc"):
        q.descending = True
    elif order in ("asc", "ascending", "1"):
        q.descending = False
    else:
        raise invalid("sort_order", "must be 'asc' or 'desc'")
    q.limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= q.limit <= MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MAX_LIMIT}")
    if page is not None:
        if page < 1:
            raise invalid("page", "must be ≥ 1")
        q.offset = (page - 1) * q.limit
    else:
        q.offset = offset or 0
    if q.offset < 0:
        raise invalid("offset", "must be ≥ 0")
    return q


def task_matches(obj: Mapping[str, Any], q: TaskQuery) -> bool:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    if q.phases:
        phase = task_phase(obj)
        if spec.get("cancel") and phase not in TERMINAL_PHASES:
            phase = "Cancelled"
        if phase not in q.phases:
            return False
    priority = spec.get("priority", DEFAULT_PRIORITY)
    if q.priority is not None and priority != q.priority:
        return False
    if q.min_priority is not None and priority < q.min_priority:
        return False
    if q.max_priority is not None and priority > q.max_priority:
        return False
    ann = meta.get("annotations") or {}
    if q.template is not None and (spec.get("template") or {}).get("name") != q.template:
        return False
    if q.task_type is not None and ann.get(ANNOTATION_TASK_TYPE) != q.task_type:
        return False
    if q.model_name is not None and ann.get(ANNOTATION_MODEL_NAME) != q.model_name and (
        (spec.get("template") or {}).get("parameters") or {}
    ).get("model") != q.model_name:
        return False
    if q.queue_name is not None and spec.get("queue", DEFAULT_QUEUE) != q.queue_name:
        return False
    if q.tags and not set(q.tags).issubset(set(spec.get("tags") or [])):
        return False
    if q.user is not None and spec.get("user") != q.user:
        return False
    if q.worker_id is not None and (obj.get("status") or {}).get("nodeName") != q.worker_id:
        return False
    if q.created_after or q.created_before:
        created = parse_time(meta.get("creationTimestamp"))
        if created is None:
            return False
        if q.created_after and created < q.created_after:
            return False
        if q.created_before and created > q.created_before:
            return False
    if q.search:
        haystack = " ".join(str(x) for x in (
            meta.get("name"), spec.get("displayName"), spec.get("description"),
            (spec.get("template") or {}).get("name"), ann.get(ANNOTATION_TASK_TYPE),
            ann.get(ANNOTATION_MODEL_NAME), spec.get("queue"), spec.get("image"),
            " ".join(spec.get("tags") or []), (obj.get("status") or {}).get("message"),
        ) if x).lower()
        if q.search not in haystack:
            return False
    return True


def query_tasks(objs: Iterable[Mapping[str, Any]], q: TaskQuery) -> tuple[int, list[Mapping[str, Any]]]:
    """Filter, sort (stable, ties by creation then name) and page: ``(total, page)``."""
    matched = [o for o in objs if task_matches(o, q)]
    key = SORT_FIELDS[q.sort_by]
    matched.sort(key=lambda o: (key(o), _sort_created(o), str((o.get("metadata") or {}).get("name"))),
                 reverse=q.descending)
    return len(matched), matched[q.offset:q.offset + q.limit]


def list_envelope(total: int, q: TaskQuery, items: list[Obj]) -> Obj:
    """``{total, limit, offset, page, pages, has_more, tasks, data}``."""
    pages = (total + q.limit - 1) // q.limit if q.limit else 0
    return {
        "total": total,
        "limit": q.limit,
        "offset": q.offset,
        "page": q.offset // q.limit + 1 if q.limit else 1,
        "pages": pages,
        "has_more": q.offset + len(items) < total,
        "tasks": items,
        "data": items,
    }


# --------------------------------------------------------------------------- precomputed rows


def encode_json(value: Any) -> str:
    """The API's JSON encoding (compact, UTF-8 as is): every response body is made with it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_UNSET: Any = object()


class TaskRow:
    """One Task object version, with the keys :func:`task_matches` and :func:`query_tasks` read precomputed,
    and its public JSON (:func:`task_public` through :func:`encode_json`) made on first use and kept.

    Built once per object version (the watch cache builds it when it stores the object); the object must not
    be changed in place afterwards (cached objects never are).
    """

    __slots__ = ("_created_at", "_haystack", "_json", "_json_seed004", "_sort", "created_key", "filter_phase",
                 "model_name", "name", "namespace", "node", "obj", "owner", "param_model", "priority", "queue", "tags",
                 "task_type", "template")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        ann = meta.get("annotations") or {}
        template = spec.get("template") or {}
        self.obj = obj
        self.name = str(meta.get("name"))
        self.namespace = meta.get("namespace")
        self.owner = spec.get("user")
        self.created_key = _sort_created(obj)
        phase = task_phase(obj)
        if spec.get("cancel") and phase not in TERMINAL_PHASES:
            phase = "Cancelled"
        self.filter_phase = phase
        self.priority = spec.get("priority", DEFAULT_PRIORITY)
        self.template = template.get("name")
        self.param_model = (template.get("parameters") or {}).get("model")
        self.task_type = ann.get(ANNOTATION_TASK_TYPE)
        self.model_name = ann.get(ANNOTATION_MODEL_NAME)
        self.queue = spec.get("queue", DEFAULT_QUEUE)
        self.tags = frozenset(spec.get("tags") or [])
        self.node = (obj.get("status") or {}).get("nodeName")
        self._created_at: datetime | None = _UNSET
        self._haystack: str | None = None
        self._sort: dict[Callable[[Mapping[str, Any]], Any], tuple[Any, str, str]] = {}
        self._json: str | None = None
        self._json_seed004: str | None = None

    @property
    def created_at(self) -> datetime | None:
        if self._created_at is _UNSET:
            self._created_at = parse_time((self.obj.get("metadata") or {}).get("creationTimestamp"))
        return self._created_at

    @property
    def haystack(self) -> str:
        """What ``search=`` looks in (lowercase), as :func:`task_matches` builds it."""
        if self._haystack is None:
            obj = self.obj
            spec = obj.get("spec") or {}
            meta = obj.get("metadata") or {}
            ann = meta.get("annotations") or {}
            self._haystack = " ".join(str(x) for x in (
                meta.get("name"), spec.get("displayName"), spec.get("description"),
                (spec.get("template") or {}).get("name"), ann.get(ANNOTATION_TASK_TYPE),
                ann.get(ANNOTATION_MODEL_NAME), spec.get("queue"), spec.get("image"),
                " ".join(spec.get("tags") or []), (obj.get("status") or {}).get("message"),
            ) if x).lower()
        return self._haystack

    def sort_key(self, key: Callable[[Mapping[str, Any]], Any]) -> tuple[Any, str, str]:
        """``(key(obj), creation order, name)``: the sort key of :func:`query_tasks` for ``key``."""
        found = self._sort.get(key)
        if found is None:
            found = self._sort[key] = (key(self.obj), self.created_key, self.name)
        return found

    def public_json(self, queued_as_pending: bool = False) -> str:
        """``encode_json(task_public(obj, queued_as_pending=...))``, made once."""
        if queued_as_pending:
            if self._json_seed004 is None:
                self._json_seed004 = encode_json(task_public(self.obj, queued_as_pending=True))
            return self._json_seed004
        if self._json is None:
            self._json = encode_json(task_public(self.obj))
        return self._json


def task_row(obj: Mapping[str, Any]) -> TaskRow:
    return TaskRow(obj)


RowCheck = Callable[[TaskRow], bool]


def row_filter(q: TaskQuery) -> RowCheck | None:
    """:func:`task_matches` for rows, with only the checks ``q`` asks for (``None``: every row matches)."""
    checks: list[RowCheck] = []
    if q.phases:
        phases = frozenset(q.phases)
        checks.append(lambda r: r.filter_phase in phases)
    if q.priority is not None:
        priority = q.priority
        checks.append(lambda r: r.priority == priority)
    if q.min_priority is not None:
        low = q.min_priority
        checks.append(lambda r: not r.priority < low)
    if q.max_priority is not None:
        high = q.max_priority
        checks.append(lambda r: not r.priority > high)
    if q.template is not None:
        template = q.template
        checks.append(lambda r: r.template == template)
    if q.task_type is not None:
        task_type = q.task_type
        checks.append(lambda r: r.task_type == task_type)
    if q.model_name is not None:
        model = q.model_name
        checks.append(lambda r: r.model_name == model or r.param_model == model)
    if q.queue_name is not None:
        queue = q.queue_name
        checks.append(lambda r: r.queue == queue)
    if q.tags:
        tags = frozenset(q.tags)
        checks.append(lambda r: tags <= r.tags)
    if q.user is not None:
        user = q.user
        checks.append(lambda r: r.owner == user)
    if q.worker_id is not None:
        worker = q.worker_id
        checks.append(lambda r: r.node == worker)
    if q.created_after or q.created_before:
        after, before = q.created_after, q.created_before

        def created_in_range(r: TaskRow) -> bool:
            created = r.created_at
            if created is None:
                return False
            return not ((after and created < after) or (before and created > before))

        checks.append(created_in_range)
    if q.search:
        needle = q.search
        checks.append(lambda r: needle in r.haystack)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda r: first(r) and second(r)
    return lambda r: all(check(r) for check in checks)


def match_rows(rows: Iterable[TaskRow], q: TaskQuery) -> list[TaskRow]:
    """Every row matching ``q``, in ``q``'s order (:func:`query_tasks` before paging)."""
    check = row_filter(q)
    matched = list(rows) if check is None else [r for r in rows if check(r)]
    key = SORT_FIELDS[q.sort_by]
    matched.sort(key=lambda r: r.sort_key(key), reverse=q.descending)
    return matched


def query_rows(rows: Iterable[TaskRow], q: TaskQuery) -> tuple[int, list[TaskRow]]:
    """:func:`query_tasks` over precomputed rows: the same matches, order and page."""
    matched = match_rows(rows, q)
    return len(matched), matched[q.offset:q.offset + q.limit]


def query_key(q: TaskQuery) -> tuple[Any, ...]:
    """What decides :func:`match_rows`'s result besides the rows (everything but the page): a cache key."""
    return (frozenset(q.phases), q.priority, q.min_priority, q.max_priority, q.template, q.task_type, q.model_name,
            q.queue_name, tuple(q.tags), q.user, q.worker_id, q.created_after, q.created_before, q.search,
            SORT_FIELDS[q.sort_by], q.descending)


def list_envelope_json(total: int, q: TaskQuery, items_json: Sequence[str]) -> str:
    """``encode_json(list_envelope(total, q, items))`` from the items' own JSON texts."""
    items = "[" + ",".join(items_json) + "]"
    pages = (total + q.limit - 1) // q.limit if q.limit else 0
    page = q.offset // q.limit + 1 if q.limit else 1
    has_more = "true" if q.offset + len(items_json) < total else "false"
    return (f'{{"total":{total},"limit":{q.limit},"offset":{q.offset},"page":{page},"pages":{pages},'
            f'"has_more":{has_more},"tasks":{items},"data":{items}}}')


def group_by_status(objs: Iterable[Mapping[str, Any]], *, queued_as_pending: bool = False) -> dict[str, list[Obj]]:
    """Seed 002's ``GET /tasks/status``: every status key present, newest first."""
    groups: dict[str, list[Obj]] = {s: [] for s in PUBLIC_STATUSES}
    ordered = sorted(objs, key=_sort_created, reverse=True)
    for obj in ordered:
        public = task_public(obj, queued_as_pending=queued_as_pending)
        groups.setdefault(public["status"], []).append(public)
    return groups


# --------------------------------------------------------------------------- compare, timeline


def compare_tasks(a: Mapping[str, Any], b: Mapping[str, Any]) -> Obj:
    """Seed 003's ``GET /tasks/{id1}/compare/{id2}``."""
    pa, pb = task_public(a), task_public(b)

    def what(p: Mapping[str, Any], o: Mapping[str, Any]) -> Any:
        spec = o.get("spec") or {}
        return (p["template"], p["task_type"], spec.get("image"), (spec.get("script") or {}).get("content"),
                spec.get("command"))

    def arguments(p: Mapping[str, Any]) -> Any:
        return (p["task_args"], p["task_kwargs"], p["parameters"])

    return {
        "task_id1": pa["task_id"],
        "task_id2": pb["task_id"],
        "same_function": what(pa, a) == what(pb, b) and pa["task_name"] == pb["task_name"]
        if pa["template"] is None and pa["task_type"] is None else what(pa, a) == what(pb, b),
        "same_args": arguments(pa) == arguments(pb),
        "same_priority": pa["priority"] == pb["priority"],
        "same_status": pa["status"] == pb["status"],
        "timing": {
            "task1_duration": pa["duration_seconds"],
            "task2_duration": pb["duration_seconds"],
            "difference_seconds": (pb["duration_seconds"] - pa["duration_seconds"])
            if pa["duration_seconds"] is not None and pb["duration_seconds"] is not None else None,
        },
        "task1": {k: pa[k] for k in ("task_id", "task_name", "status", "priority", "created_at",
                                     "started_at", "completed_at", "worker_id")},
        "task2": {k: pb[k] for k in ("task_id", "task_name", "status", "priority", "created_at",
                                     "started_at", "completed_at", "worker_id")},
    }


def timeline(obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> Obj:
    """Seed 003's ``GET /tasks/{id}/timeline``: status milestones plus Kubernetes Events, in time order."""
    public = task_public(obj)
    status = obj.get("status") or {}
    entries: list[Obj] = []

    def add(stamp: Any, event_type: str, details: Mapping[str, Any], source: str = "status") -> None:
        when = format_time(stamp)
        if when:
            entries.append({"timestamp": when, "event_type": event_type, "details": dict(details),
                            "source": source})

    add(public["created_at"], "created", {"priority": public["priority"], "queue_name": public["queue_name"]})
    add(status.get("queuedAt"), "queued", {"queue_position": status.get("queuePosition")})
    executions = status.get("executions") or []
    for i, ex in enumerate(executions):
        add(ex.get("startedAt"), "started" if i == 0 else "retried",
            {"execution_id": str(ex.get("id")), "worker_id": ex.get("nodeName"), "pod_name": ex.get("podName")})
        if ex.get("finishedAt"):
            add(ex.get("finishedAt"), "execution_finished",
                {"execution_id": str(ex.get("id")), "exit_code": ex.get("exitCode"),
                 "reason": ex.get("reason"), "message": ex.get("message")})
    for cond in status.get("conditions") or []:
        add(cond.get("lastTransitionTime"), "condition",
            {"type": cond.get("type"), "status": cond.get("status"), "reason": cond.get("reason"),
             "message": cond.get("message")})
    if public["completed_at"]:
        add(public["completed_at"], public["status"], {"result": public["result"], "error": public["error"]})
    for ev in events:
        stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or (
            ev.get("metadata") or {}).get("creationTimestamp")
        add(stamp, _snake(str(ev.get("reason") or "event")),
            {"reason": ev.get("reason"), "message": ev.get("message"), "type": ev.get("type"),
             "count": ev.get("count")}, source="event")
    entries.sort(key=lambda e: e["timestamp"])
    return {
        "task_id": public["task_id"],
        "id": public["task_id"],
        "task_name": public["task_name"],
        "status": public["status"],
        "created_at": public["created_at"],
        "started_at": public["started_at"],
        "completed_at": public["completed_at"],
        "duration_seconds": public["duration_seconds"],
        "events": entries,
    }


# --------------------------------------------------------------------------- limits


def limits_public(tenant: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]], *, now: datetime | None = None) -> Obj:
    """Seed 000's ``UserLimits`` (plus kubetask's own limit names)."""
    now = now or utcnow()
    name = (tenant.get("metadata") or {}).get("name")
    spec = tenant.get("spec") or {}
    limits = tenant_limits(tenant)
    running, pending = count_running_pending(tasks)
    hours_used = round(tenant_gpu_seconds_this_month(tenant, now) / 3600, 4)
    monthly = limits.get("monthlyGpuHours")
    return {
        "user_id": name,
        "plan": spec.get("plan") or ("admin" if spec.get("role") == "admin" else "custom"),
        "role": spec.get("role", "user"),
        "max_concurrent_agents": limits.get("maxRunning"),
        "max_concurrent": limits.get("maxRunning"),
        "max_task_duration_minutes": int(limits["maxTimeoutSeconds"]) // 60,
        "monthly_agent_hours_limit": monthly,
        "monthly_agent_hours_used": hours_used,
        "monthly_hours_limit": monthly,
        "monthly_hours_used": hours_used,
        "monthly_hours_remaining": max(0.0, round(float(monthly) - hours_used, 4)) if monthly is not None else None,
        "billing_cycle_resets_at": format_time(next_month_start(now)),
        "limits": {
            "max_running": limits.get("maxRunning"),
            "max_pending": limits.get("maxPending"),
            "max_gpus_per_task": limits.get("maxGpusPerTask"),
            "gpu_quota": limits.get("gpuQuota"),
            "cpu_quota": limits.get("cpuQuota"),
            "memory_quota": limits.get("memoryQuota"),
            "monthly_gpu_hours": monthly,
            "max_timeout_seconds": limits.get("maxTimeoutSeconds"),
            "requests_per_minute": limits.get("requestsPerMinute"),
        },
        "usage": {
            "running": running,
            "pending": pending,
            "gpus_in_use": (tenant.get("status") or {}).get("gpusInUse", 0),
            "gpu_hours_this_month": hours_used,
        },
    }


def count_running_pending(tasks: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    running = pending = 0
    for task in tasks:
        if (task.get("spec") or {}).get("cancel") and not is_terminal(task):
            continue
        phase = task_phase(task)
        if phase == "Running":
            running += 1
        elif phase in ("Pending", "Queued"):
            pending += 1
    return running, pending


def queue_status_public(tenant: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], *,
                        now: datetime | None = None) -> Obj:
    """Seed 000's ``QueueStatus``: counts, limits, hours, and each waiting task's position and start."""
    limits = limits_public(tenant, tasks, now=now)
    running, pending = limits["usage"]["running"], limits["usage"]["pending"]
    max_running = limits["max_concurrent"]
    monthly = limits["monthly_hours_limit"]
    hours_left = limits["monthly_hours_remaining"]
    max_pending = limits["limits"]["max_pending"]
    waiting = [t for t in tasks if task_phase(t) in ("Pending", "Queued")
               and not (t.get("spec") or {}).get("cancel")]
    waiting.sort(key=lambda t: (
        (t.get("status") or {}).get("queuePosition") or 1 << 30,
        -int((t.get("spec") or {}).get("priority", DEFAULT_PRIORITY)), _sort_created(t),
    ))
    entries = []
    for t in waiting:
        p = task_public(t)
        entries.append({
            "task_id": p["task_id"], "id": p["task_id"], "name": p["name"], "status": p["status"],
            "priority": p["priority"], "queue_name": p["queue_name"], "position": p["queue_position"],
            "queue_position": p["queue_position"], "estimated_start_time": p["estimated_start_time"],
            "estimated_start": p["estimated_start_time"], "waiting_reason": p["waiting_reason"],
            "created_at": p["created_at"],
        })
    running_tasks = [
        {"task_id": p["task_id"], "name": p["name"], "started_at": p["started_at"],
         "worker_id": p["worker_id"], "estimated_completion": p["estimated_completion"]}
        for p in (task_public(t) for t in tasks if task_phase(t) == "Running")
    ]
    can_start_more = (max_running is None or running < int(max_running)) and (hours_left is None or hours_left > 0)
    return {
        "user_id": limits["user_id"],
        "running": running,
        "pending": pending,
        "max_concurrent": max_running,
        "max_pending": max_pending,
        "can_start_more": can_start_more,
        "can_submit": pending < int(max_pending) and (hours_left is None or hours_left > 0),
        "monthly_hours_used": limits["monthly_hours_used"],
        "monthly_hours_limit": monthly,
        "monthly_hours_remaining": hours_left,
        "billing_cycle_resets_at": limits["billing_cycle_resets_at"],
        "limits": limits["limits"],
        "pending_tasks": entries,
        "running_tasks": running_tasks,
    }


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
        raise RestError(422, "VALIDATION_ERROR", "the request body must be a JSON object", field="body")
    nested = body.get("limits")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else body
    camel_names = set(LIMIT_FIELDS.values())
    patch: Obj = {}
    for key, value in source.items():
        target = LIMIT_FIELDS.get(key) or (key if key in camel_names else None)
        if key == "max_task_duration_minutes" and value is not None:
            target, value = "maxTimeoutSeconds", _as_int(value, key) * 60
        if target is None:
            raise invalid(key, f"unknown limit; use one of {', '.join(sorted(set(LIMIT_FIELDS)))}")
        if value is not None:
            if target in _INT_LIMITS:
                value = _as_int(value, key)
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


def time_now_iso() -> str:
    return format_time(utcnow()) or ""
