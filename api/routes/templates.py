"""``/templates``: the TaskTemplates (cluster-scoped), from the watch cache."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from kubetask.api.deps import CurrentUser, State
from kubetask.api.routes.common import FastJSON
from kubetask.api.schemas import TemplatePublic, TemplateValidation, error_responses
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.present import template_public
from kubetask.core.templates import find_template, templates_by_name, validate_parameters

router = APIRouter(prefix="/templates", tags=["templates"])


def _get(state: Any, name: str) -> dict[str, Any]:
    """The TaskTemplate called ``name`` (or listing it among its aliases / task types); 404 otherwise."""
    templates = state.templates.list()
    found = find_template(templates_by_name(templates), name)
    if found is None:
        raise RestError(404, "TEMPLATE_NOT_FOUND", f"Template {name} not found")
    return dict(next(t for t in templates if (t.get("metadata") or {}).get("name") == found[0]))


@router.get("", name="list", response_model=list[TemplatePublic],
            responses=error_responses(401, 429, 503), summary="List templates")
async def list_templates(user: CurrentUser, state: State) -> Response:
    """The AI Task Orchestra API: a bare array of ``{name, description, parameters[]}``."""
    items = sorted(state.templates.list(), key=lambda t: str((t.get("metadata") or {}).get("name")))
    return FastJSON([template_public(t) for t in items])


@router.post("/validate", name="validate", response_model=TemplateValidation,
             responses=error_responses(401, 404, 422, 429, 503), summary="Validate template parameters")
async def validate_template(
    user: CurrentUser, state: State,
    template_name: Annotated[str | None, Query(description="The template to validate against")] = None,
    body: Annotated[dict[str, Any] | None, Body(examples=[
        {"template_name": "ollama-inference", "model": "llama3.1:8b", "prompt": "Hi"}])] = None,
) -> Response:
    """The AI Task Orchestra API: the body is the parameters object. ``{valid, missing_parameters,
    invalid_parameters}``."""
    params = dict(body or {})
    if template_name is None:
        name = params.pop("template_name", None) or params.pop("template", None)
        if isinstance(params.get("parameters"), dict):
            params = dict(params["parameters"])
        if not isinstance(name, str):
            raise RestError(422, "VALIDATION_ERROR", "template_name: is required", field="template_name")
        template_name = name
    template = _get(state, template_name)
    check = validate_parameters(template.get("spec") or {}, params)
    return FastJSON({"valid": check.ok, "missing_parameters": check.missing,
                     "invalid_parameters": check.invalid_names, "template": template["metadata"]["name"]})


@router.get("/{template_name}", name="get", response_model=TemplatePublic,
            responses=error_responses(401, 404, 429, 503), summary="Get a template")
async def get_template(template_name: str, user: CurrentUser, state: State) -> Response:
    return FastJSON(template_public(_get(state, template_name), detail=True))
