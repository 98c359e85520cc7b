"""TaskTemplate parameter checks and rendering."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.core.templates import TemplateError, find_template, render_template, validate_parameters

TEMPLATE = {
    "parameters": [
        {"name": "prompt", "type": "string", "required": True},
        {"name": "max_tokens", "type": "integer", "default": 128},
        {"name": "temperature", "type": "number"},
        {"name": "stream", "type": "boolean"},
        {"name": "size", "type": "string", "enum": ["s", "m"]},
        {"name": "extra", "type": "object"},
    ],
    "podTemplate": {"image": "img", "command": ["run", "{{prompt}}", "--n={{ max_tokens }}", "${{keep}}"],
                    "env": [{"name": "EXTRA", "value": "{{extra}}"}]},
}


@pytest.mark.parametrize(("params", "missing", "invalid_names"), [
    ({"prompt": "hi"}, [], []),
    ({}, ["prompt"], []),
    ({"prompt": "hi", "max_tokens": "12"}, [], []),
    ({"prompt": "hi", "max_tokens": "many"}, [], ["max_tokens"]),
    ({"prompt": "hi", "max_tokens": True}, [], ["max_tokens"]),
    ({"prompt": "hi", "temperature": "0.5"}, [], []),
    ({"prompt": "hi", "stream": "yes"}, [], ["stream"]),
    ({"prompt": "hi", "size": "xl"}, [], ["size"]),
    ({"prompt": "hi", "extra": [1]}, [], ["extra"]),
    ({"prompt": "hi", "bogus": 1}, [], ["bogus"]),
    ({"prompt": ["x"]}, [], ["prompt"]),
])
def test_validate_parameters(params: dict[str, Any], missing: list[str], invalid_names: list[str]) -> None:
    check = validate_parameters(TEMPLATE, params)
    assert check.missing == missing
    assert [i["name"] for i in check.invalid] == invalid_names
    assert check.ok is (not missing and not invalid_names)


def test_defaults_and_coercion() -> None:
    check = validate_parameters(TEMPLATE, {"prompt": "hi", "max_tokens": "7"})
    assert check.values == {"prompt": "hi", "max_tokens": 7}
    assert validate_parameters(TEMPLATE, {"prompt": "hi"}).values["max_tokens"] == 128


def test_render() -> None:
    rendered = render_template(TEMPLATE, {"prompt": "hello", "extra": {"a": 1}})
    assert rendered.container["command"] == ["run", "hello", "--n=128", "${{keep}}"]
    assert rendered.container["env"][0]["value"] == '{"a": 1}'


def test_render_rejects_bad_parameters_with_message() -> None:
    with pytest.raises(TemplateError) as info:
        render_template(TEMPLATE, {"max_tokens": "x"}, template_name="llm")
    assert "missing required parameter 'prompt'" in str(info.value)
    assert "'max_tokens' must be an integer" in str(info.value)
    assert str(info.value).startswith("Invalid parameters for template 'llm'")


def test_pod_spec_template() -> None:
    spec = {"podTemplate": {"containers": [{"image": "x", "args": ["{{a}}"]}], "volumes": [{"name": "v"}]},
            "parameters": [{"name": "a", "required": True}]}
    rendered = render_template(spec, {"a": "1"})
    assert rendered.container["args"] == ["1"]
    assert rendered.pod_spec["volumes"] == [{"name": "v"}]


def test_find_template_by_alias() -> None:
    templates = {"ollama-inference": {"taskTypes": [{"name": "text_generation"}]},
                 "python-script": {"aliases": ["py"]}}
    assert find_template(templates, "text_generation")[0] == "ollama-inference"  # type: ignore[index]
    assert find_template(templates, "py")[0] == "python-script"  # type: ignore[index]
    assert find_template(templates, "nope") is None
