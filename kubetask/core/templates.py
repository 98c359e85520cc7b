"""TaskTemplate rendering (pure): parameter checks, defaults and ``{{param}}`` placeholders.

A TaskTemplate's ``podTemplate`` is a container spec (or a pod spec with
``containers``) whose strings may hold ``{{name}}`` placeholders.  A string
that is exactly one placeholder becomes the value's text (JSON for objects,
arrays and booleans); placeholders inside longer strings are substituted in
place.  Placeholders naming no parameter are left untouched, so shell or Go
template syntax in a script survives rendering.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


class TemplateError(ValueError):
    """Parameters that do not fit the template (the message says which and why)."""

    def __init__(self, message: str, check: ParameterCheck | None = None) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class ParameterCheck:
    """The outcome of :func:`validate_parameters`."""

    missing: list[str] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}
    values: dict[str, Any] = field(default_factory=dict)  # normalised values with defaults applied

    @property
    def ok(self) -> bool:
        return not self.missing and not self.invalid

    @property
    def invalid_names(self) -> list[str]:
        """The names of the invalid parameters, in the order found."""
        return [item["name"] for item in self.invalid]

    def reason_of(self, name: str) -> str:
        """Why the parameter ``name`` is invalid (``invalid value`` if it is not)."""
        return next((item["reason"] for item in self.invalid if item["name"] == name), "invalid value")

    def message(self, template_name: str | None = None) -> str:
        """One human-readable sentence naming every problem."""
        problems = [f"missing required parameter '{name}'" for name in self.missing]
        problems += [f"'{item['name']}' {item['reason']}" for item in self.invalid]
        prefix = f"Invalid parameters for template '{template_name}'" if template_name else "Invalid parameters"
        return f"{prefix}: " + "; ".join(problems) if problems else ""


@dataclass
class RenderedTemplate:
    """A template rendered for one Task."""

    container: dict[str, Any]
    pod_spec: dict[str, Any]  # extra pod-level fields (volumes, ...) when podTemplate was a pod spec
    resources: dict[str, Any]
    timeout_seconds: int | None
    parameters: dict[str, Any]


def _spec_get(spec: Mapping[str, Any], camel: str, snake: str) -> Any:
    return spec.get(camel, spec.get(snake))


def _coerce(value: Any, kind: str) -> tuple[bool, Any, str]:
    """(ok, normalised value, reason) for one parameter value against its declared type."""
    if kind == "string":
        if isinstance(value, str):
            return True, value, ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, str(value), ""
        return False, value, "must be a string"
    if kind == "integer":
        if isinstance(value, bool):
            return False, value, "must be an integer"
        if isinstance(value, int):
            return True, value, ""
        if isinstance(value, float) and value.is_integer():
            return True, int(value), ""
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return True, int(value), ""
        return False, value, "must be an integer"
    if kind == "number":
        if isinstance(value, bool):
            return False, value, "must be a number"
        if isinstance(value, int | float):
            return True, value, ""
        if isinstance(value, str):
            try:
                return True, float(value), ""
            except ValueError:
                pass
        return False, value, "must be a number"
    if kind == "boolean":
        if isinstance(value, bool):
            return True, value, ""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return True, value.lower() == "true", ""
        return False, value, "must be true or false"
    if kind == "object":
        return (True, value, "") if isinstance(value, dict) else (False, value, "must be an object")
    if kind == "array":
        return (True, value, "") if isinstance(value, list) else (False, value, "must be an array")
    return True, value, ""


def validate_parameters(template_spec: Mapping[str, Any], params: Mapping[str, Any] | None) -> ParameterCheck:
    """Check ``params`` against the template's declared parameters; fill in defaults.

    Reports required parameters that are absent, values of the wrong type or
    outside the declared ``enum``, and parameters the template does not declare.
    """
    params = dict(params or {})
    check = ParameterCheck()
    declared = list(template_spec.get("parameters") or [])
    known = {str(p.get("name")) for p in declared}
    for param in declared:
        name = str(param.get("name"))
        kind = str(param.get("type") or "string")
        if name not in params or params[name] is None:
            if param.get("default") is not None:
                check.values[name] = copy.deepcopy(param["default"])
            elif param.get("required"):
                check.missing.append(name)
            continue
        ok, value, reason = _coerce(params[name], kind)
        if not ok:
            check.invalid.append({"name": name, "reason": reason})
            continue
        enum = param.get("enum")
        if enum and value not in enum:
            check.invalid.append({"name": name, "reason": "must be one of " + ", ".join(map(str, enum))})
            continue
        check.values[name] = value
    for name in sorted(set(params) - known):
        listing = ", ".join(sorted(known)) or "none"
        check.invalid.append({"name": name, "reason": f"is not a parameter of this template (known: {listing})"})
    return check


def template_spec_problem(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, message)`` of the first rule a TaskTemplate spec breaks that its CRD schema cannot state.

    A parameter both ``required`` and with a ``default`` is contradictory (the default would never be
    used, or the requirement never enforced); the CRD cannot say so in CEL because ``default`` is
    untyped.  A default must also fit the parameter's own ``type`` and ``enum``, or every Task that
    relies on it would be refused."""
    for index, param in enumerate(spec.get("parameters") or []):
        name = str(param.get("name"))
        where = f"spec.parameters[{index}].default"
        if "default" not in param or param.get("default") is None:
            continue
        if param.get("required"):
            return where, (f"parameter '{name}' is required and has a default: drop the default, or set "
                           f"required: false")
        ok, value, reason = _coerce(param["default"], str(param.get("type") or "string"))
        if not ok:
            return where, f"the default of parameter '{name}' {reason}"
        enum = param.get("enum")
        if enum and value not in enum:
            return where, f"the default of parameter '{name}' must be one of " + ", ".join(map(str, enum))
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def substitute(obj: Any, values: Mapping[str, Any]) -> Any:
    """Replace ``{{name}}`` placeholders in every string inside ``obj`` (a copy is returned)."""
    if isinstance(obj, str):
        return PLACEHOLDER.sub(lambda m: _text(values[m.group(1)]) if m.group(1) in values else m.group(0), obj)
    if isinstance(obj, list):
        return [substitute(item, values) for item in obj]
    if isinstance(obj, dict):
        return {key: substitute(item, values) for key, item in obj.items()}
    return obj


def render_template(
    template_spec: Mapping[str, Any], params: Mapping[str, Any] | None, *, template_name: str | None = None
) -> RenderedTemplate:
    """Render a template for the given parameters; raises :class:`TemplateError` if they do not fit."""
    check = validate_parameters(template_spec, params)
    if not check.ok:
        raise TemplateError(check.message(template_name), check)
    pod_template = copy.deepcopy(dict(_spec_get(template_spec, "podTemplate", "pod_template") or {}))
    pod_spec: dict[str, Any] = {}
    if "containers" in pod_template or "spec" in pod_template:
        pod_spec = dict(pod_template.get("spec") or pod_template)
        containers = list(pod_spec.pop("containers", None) or [{}])
        container = dict(containers[0])
    else:
        container = pod_template
    container = substitute(container, check.values)
    pod_spec = substitute(pod_spec, check.values)
    defaults = dict(template_spec.get("defaults") or {})
    resources = dict(defaults.get("resources") or {})
    timeout = _spec_get(defaults, "timeoutSeconds", "timeout_seconds")
    if not container.get("image") and defaults.get("image"):
        container["image"] = defaults["image"]
    return RenderedTemplate(
        container=container,
        pod_spec=pod_spec,
        resources=resources,
        timeout_seconds=int(timeout) if timeout is not None else None,
        parameters=check.values,
    )


def templates_by_name(templates: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """TaskTemplate objects -> ``{name: spec}``, the form :func:`find_template` and admission read."""
    return {str((t.get("metadata") or {}).get("name")): (t.get("spec") or {}) for t in templates}


def template_aliases(spec: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in spec.get("aliases") or []]


def template_task_types(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The seed-004 ``task_type`` entries of a template spec (a bare string counts as ``{name}``)."""
    out: list[Mapping[str, Any]] = []
    for entry in _spec_get(spec, "taskTypes", "task_types") or []:
        if isinstance(entry, str):
            out.append({"name": entry})
        elif isinstance(entry, Mapping) and entry.get("name"):
            out.append(entry)
    return out


def find_template(templates: Mapping[str, Mapping[str, Any]], name: str) -> tuple[str, Mapping[str, Any]] | None:
    """The template called ``name``, or one listing it among its ``aliases``/``taskTypes``."""
    if name in templates:
        return name, templates[name]
    for template_name, spec in templates.items():
        if name in template_aliases(spec):
            return template_name, spec
        if any(alias.get("name") == name for alias in template_task_types(spec)):
            return template_name, spec
    return None


def find_task_type(templates: Mapping[str, Mapping[str, Any]], task_type: str
                   ) -> tuple[str, Mapping[str, Any], Mapping[str, Any]] | None:
    """``(template name, spec, alias entry)`` of the template that serves a seed-004 ``task_type``."""
    for template_name, spec in templates.items():
        for entry in template_task_types(spec):
            if entry.get("name") == task_type:
                return template_name, spec, entry
    return None
