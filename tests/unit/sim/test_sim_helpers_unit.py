"""Unit tests of the sim's pure helpers: selectors, patches, schema checks, tables."""

from __future__ import annotations

import pytest

from kubetask.sim import builtin_schemas as bs
from kubetask.sim.errors import ApiError
from kubetask.sim.patch import merge_patch, strategic_merge_patch
from kubetask.sim.schema import apply_defaults, prune, validate_cr, validate_crd
from kubetask.sim.selectors import labels_match, parse_field_selector, parse_label_selector
from kubetask.sim.tables import eval_jsonpath, human_duration


@pytest.mark.parametrize(("sel", "labels", "ok"), [
    ("a=b", {"a": "b"}, True),
    ("a==b", {"a": "c"}, False),
    ("a!=b", {}, True),
    ("a in (x, y)", {"a": "y"}, True),
    ("a notin (x,y)", {"a": "x"}, False),
    ("a", {"a": ""}, True),
    ("!a", {"a": "1"}, False),
    ("a=b,c", {"a": "b"}, False),
])
def test_label_selectors(sel: str, labels: dict[str, str], ok: bool) -> None:
    assert labels_match(parse_label_selector(sel), labels) is ok


def test_bad_label_selector_is_400() -> None:
    with pytest.raises(ApiError) as e:
        parse_label_selector("a in x")
    assert e.value.code == 400


def test_field_selector_support_per_resource() -> None:
    m = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", ("", "pods"))
    assert m is not None
    assert m({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    assert not m({"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}, "status": {}})
    with pytest.raises(ApiError) as e:
        parse_field_selector("spec.nodeName=x", ("", "configmaps"))
    assert e.value.message == "field label not supported: spec.nodeName"


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == \
        {"a": {"c": 2, "e": 3}, "d": [2]}


def test_strategic_merge_patch_keyed_lists() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
                                   {"name": "b", "image": "y"}]}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]},
                                     {"name": "b", "$patch": "delete"}]}}
    out = strategic_merge_patch(pod, patch, bs.schema_for("", "v1", "Pod"))
    assert out["spec"]["containers"] == [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"},
                                                                            {"name": "F", "value": "2"}]}]


SCHEMA = {"type": "object", "properties": {"spec": {"type": "object", "required": ["n"], "properties": {
    "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": True, "maximum": 5},
    "s": {"type": "string", "pattern": "^[a-z]+$", "default": "abc"},
    "when": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
    "ios": {"x-kubernetes-int-or-string": True},
}}}}


def test_cr_validation_messages() -> None:
    errs = validate_cr({"spec": {"n": 5, "s": "ABC", "when": "yesterday", "tags": ["a", "a"], "ios": 1.5}},
                       SCHEMA)
    msgs = [str(e) for e in errs]
    assert "spec.n: Invalid value: 5: spec.n in body should be less than 5" in msgs
    assert "spec.s: Invalid value: \"ABC\": spec.s in body should match '^[a-z]+$'" in msgs
    assert 'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"' in msgs
    assert 'spec.tags[1]: Duplicate value: "a"' in msgs
    assert any(m.startswith("spec.ios: Invalid value") for m in msgs)
    assert [str(e) for e in validate_cr({"spec": {}}, SCHEMA)] == ["spec.n: Required value"]


def test_defaults_and_pruning() -> None:
    obj = prune({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"n": 1, "zzz": 1}},
                SCHEMA, root=True)
    assert obj["spec"] == {"n": 1}
    assert apply_defaults(obj, SCHEMA)["spec"] == {"n": 1, "s": "abc"}


def test_crd_structural_rules() -> None:
    props = {"a": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
             "b": {"type": "object", "properties": {"c": {"type": "string"}},
                   "additionalProperties": {"type": "string"}}}
    version = {"name": "v1", "served": True, "storage": True,
               "schema": {"openAPIV3Schema": {"type": "object", "properties": props}}}
    crd = {"metadata": {"name": "xs.g.io"}, "spec": {"group": "g.io", "scope": "Namespaced",
                                                     "names": {"plural": "xs", "kind": "X"},
                                                     "versions": [version]}}
    msgs = [str(e) for e in validate_crd(crd)]
    assert any("uniqueItems: Forbidden" in m for m in msgs)
    assert any("additionalProperties and properties are mutual exclusive" in m for m in msgs)


def test_table_helpers() -> None:
    assert eval_jsonpath({"status": {"conditions": [{"type": "x"}]}}, ".status.conditions[0].type") == "x"
    assert human_duration(30) == "30s" and human_duration(150) == "2m30s" and human_duration(3 * 3600) == "3h"
