"""docs/rbac.md is the chart's RBAC, rule for rule, and the API holds no Secret or ConfigMap verb cluster-wide.

Renders the chart with the real ``helm`` (fails without it; CI always has it).  Every rule of every
(Cluster)Role the chart renders must be a row of the table, and every row must be a rendered rule, so
the table cannot go stale in either direction.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kt_deploy as kt

RELEASE, NAMESPACE = "kt", "kt-system"
OPERATOR, API = f"{RELEASE}-kubetask-operator", f"{RELEASE}-kubetask-api"
DOC = kt.REPO / "docs" / "rbac.md"
COLUMNS = ["component", "role", "API group", "resources", "resourceNames", "verbs", "scope", "why needed"]

Row = tuple[str, str, str, frozenset[str], frozenset[str], frozenset[str], str]
"""(component, role, API group, resources, resourceNames, verbs, scope)"""


@cache
def render(values: str | None = None) -> list[dict[str, Any]]:
    cmd = [kt.require_tool("helm"), "template", RELEASE, str(kt.CHART_DIR), "--namespace", NAMESPACE]
    if values:
        cmd += ["-f", str(kt.VALUES_DIR / f"{values}.yaml")]
    return kt.load_all(kt.run(cmd).stdout)


def _role_label(obj: dict[str, Any]) -> str:
    name = str(obj["metadata"]["name"])
    for real, placeholder in ((OPERATOR, "<operator>"), (API, "<api>")):  # longest first: -api-tenant too
        if name.startswith(real):
            name = placeholder + name[len(real):]
            break
    return f"{obj['kind']} `{name}`"


def _scope(obj: dict[str, Any]) -> str:
    if obj["kind"] == "Role":
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        return "release namespace"
    return "tenant namespaces" if obj["metadata"]["name"].endswith("-tenant") else "cluster"


def rendered_rows(objects: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        for rule in obj["rules"]:
            for group in rule["apiGroups"]:
                rows.append((component, _role_label(obj), group or "core", frozenset(rule["resources"]),
                             frozenset(rule.get("resourceNames") or ()), frozenset(rule["verbs"]), _scope(obj)))
    return rows


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _items(cell: str, sep: str) -> frozenset[str]:
    return frozenset() if cell in ("-", "") else frozenset(i.strip() for i in cell.split(sep) if i.strip())


@cache
def documented_rows() -> list[Row]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and _cells(line)[0] == "component")
    assert _cells(lines[start]) == COLUMNS, lines[start]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(COLUMNS), line
        component, role, group, resources, names, verbs, scope, why = cells
        assert why, f"a row without its reason: {line}"
        rows.append((component, role, group, _items(resources, ","), _items(names, ","), _items(verbs, " "), scope))
    return rows


def test_the_table_parses_and_has_both_components() -> None:
    rows = documented_rows()
    assert {r[0] for r in rows} == {"operator", "api"}
    assert len(rows) == len(set(rows)), "a duplicated row"


def test_every_rendered_rule_is_in_the_table_and_every_row_is_rendered() -> None:
    rendered, documented = rendered_rows(render()), documented_rows()
    missing = [r for r in rendered if r not in documented]
    assert not missing, f"rules missing from docs/rbac.md: {missing}"
    stale = [r for r in documented if r not in rendered]
    assert not stale, f"rows of docs/rbac.md the chart does not render: {stale}"


@pytest.mark.parametrize("values", sorted(p.stem for p in kt.VALUES_DIR.glob("*.yaml")))
def test_other_value_sets_render_only_documented_rules(values: str) -> None:
    documented = documented_rows()
    # The API's Role names the configured digest Secret; the table shows the default name.
    keys_secret = next(r["resourceNames"][0] for o in render(values) if o["kind"] == "Role"
                       and o["metadata"]["name"] == API for r in o["rules"] if "secrets" in r["resources"])
    for row in rendered_rows(render(values)):
        if row[4] == frozenset({keys_secret}):
            row = (*row[:4], frozenset({"kubetask-api-keys"}), *row[5:])
        assert row in documented, row


def _rules(name: str, kind: str = "ClusterRole", objects: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    found = [o for o in objects or render() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return list(found[0]["rules"])


def test_the_api_cluster_role_has_no_secret_or_configmap_verb() -> None:
    for values in [None, *sorted(p.stem for p in kt.VALUES_DIR.glob("*.yaml"))]:
        for rule in _rules(API, objects=render(values)):
            assert not {"secrets", "configmaps"} & set(rule["resources"]), (values, rule)
    bindings = [o for o in render() if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == f"{API}-tenant"]
    assert bindings == [], "the tenant ClusterRole is bound per namespace by the operator, never cluster-wide"


def test_the_api_reads_one_secret_by_name_in_the_release_namespace() -> None:
    secret_rules = [r for r in _rules(API, "Role") if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kubetask-api-keys"],
                             "verbs": ["get", "list", "watch"]}]
    tenant_secrets = [r for r in _rules(f"{API}-tenant") if "secrets" in r["resources"]]
    assert tenant_secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]}], \
        "no Secret read in tenant namespaces"
    full = render("full")
    assert [r["resourceNames"] for r in _rules(API, "Role", full) if "secrets" in r["resources"]] == [["team-api-keys"]]


def test_components_are_told_where_the_digests_are() -> None:
    def env(deployment: str) -> dict[str, Any]:
        found = next(o for o in render() if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment)
        return {e["name"]: e.get("value") for e in found["spec"]["template"]["spec"]["containers"][0]["env"]}

    api, operator = env(API), env(OPERATOR)
    assert api["KUBETASK_API_KEYS_SECRET_NAMESPACE"] == NAMESPACE
    assert api["KUBETASK_API_KEYS_SECRET_NAME"] == "kubetask-api-keys"
    assert operator["KUBETASK_OPERATOR_API_KEYS_SECRET_NAMESPACE"] == NAMESPACE
    assert operator["KUBETASK_OPERATOR_API_KEYS_SECRET_NAME"] == "kubetask-api-keys"
    assert operator["KUBETASK_OPERATOR_API_SERVICE_ACCOUNT_NAME"] == API
    assert operator["KUBETASK_OPERATOR_API_SERVICE_ACCOUNT_NAMESPACE"] == NAMESPACE
    assert operator["KUBETASK_OPERATOR_API_TENANT_CLUSTER_ROLE"] == f"{API}-tenant"


def _covers(grants: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in grants)


def test_the_operator_holds_everything_it_grants_the_api() -> None:
    """RBAC lets the operator create the RoleBinding to <api>-tenant only if it holds every rule of it
    (the chart gives it no `bind`)."""
    operator = _rules(OPERATOR)
    for rule in _rules(f"{API}-tenant"):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [None]:
                        assert _covers(operator, group, resource, verb, name), (resource, verb, name)


def test_the_table_check_can_fail() -> None:
    rendered = rendered_rows(render())
    widened = [(*r[:5], r[5] | {"list"}, r[6]) if r[3] == frozenset({"secrets"}) and r[0] == "api" else r
               for r in rendered]
    assert [r for r in widened if r not in documented_rows()], "a widened secrets rule must be caught"
