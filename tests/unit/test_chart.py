"""The Helm chart charts/kubetask: lint, render with several value sets, check what it renders.

Needs the real `helm` ($KUBETASK_HELM, ~/.cache/kubetask/bin/helm from `make tools`, or PATH);
fails without it (CI always has it). Whether the apiserver accepts the rendered objects is
checked on the real kube-apiserver: tests/component/deploy/test_deploy_manifests.py.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy"))
import kt_deploy as kt

from kubetask import settings

VALUE_SETS = sorted(p.stem for p in kt.VALUES_DIR.glob("*.yaml"))
NAMESPACE = "kubetask-system"


@cache
def render(values: str) -> list[dict[str, Any]]:
    proc = kt.run(
        [
            kt.require_tool("helm"),
            "template",
            "kubetask",
            str(kt.CHART_DIR),
            "--namespace",
            NAMESPACE,
            "--include-crds",
            "-f",
            str(kt.VALUES_DIR / f"{values}.yaml"),
        ]
    )
    return kt.load_all(proc.stdout)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_value_sets_present() -> None:
    assert {"defaults", "full", "ha"} <= set(VALUE_SETS)


def test_helm_lint() -> None:
    for values in VALUE_SETS:
        values_file = str(kt.VALUES_DIR / f"{values}.yaml")
        proc = kt.run([kt.require_tool("helm"), "lint", "--strict", str(kt.CHART_DIR), "-f", values_file])
        assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_object_is_well_formed_and_unique(values: str) -> None:
    objects = render(values)
    assert len(objects) > 10
    for obj in objects:
        kt.check_envelope(obj)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_crds_included_and_identical(values: str) -> None:
    crds = {o["metadata"]["name"]: o for o in by_kind(render(values), "CustomResourceDefinition")}
    assert set(crds) == {"tasks.kubetask.io", "tasktemplates.kubetask.io", "taskwebhooks.kubetask.io",
                         "tenants.kubetask.io"}
    for crd in crds.values():
        assert crd == kt.crds()[crd["spec"]["names"]["kind"]]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_wildcards_in_rbac(values: str) -> None:
    rules = list(kt.rbac_rules(render(values)))
    assert rules
    for owner, rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(key, []), f"{owner}: {rule}"
            assert not any("*" in item for item in rule.get(key, [])), f"{owner}: {rule}"
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"], f"{owner}: {rule}"
        assert "impersonate" not in rule["verbs"], f"{owner}: {rule}"


def _grants(objects: list[dict[str, Any]], name_suffix: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role") and name_suffix in obj["metadata"]["name"]:
            for rule in obj["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_operator_rbac() -> None:
    grants = _grants(render("defaults"), "-operator")
    assert grants[("kubetask.io", "tasks/status")] == {"get", "patch", "update"}
    assert grants[("kubetask.io", "tasktemplates")] == {"get", "list", "watch"}
    assert grants[("kubetask.io", "tenants/status")] == {"get", "patch"}
    assert grants[("batch", "jobs")] == {"get", "list", "watch", "create", "delete", "patch"}
    assert grants[("coordination.k8s.io", "leases")] == {"get", "create", "update"}
    assert grants[("", "nodes")] == {"get", "list", "watch", "patch"}
    # Webhook signing secrets; watching key Secrets and publishing their digests (docs/rbac.md).
    assert grants[("", "secrets")] == {"get", "list", "watch", "create", "patch"}
    assert grants[("kubetask.io", "taskwebhooks/status")] == {"get", "patch"}
    assert grants[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
    }
    # In cert-manager mode the chart owns the webhook configurations.
    assert ("admissionregistration.k8s.io", "validatingwebhookconfigurations") not in _grants(
        render("full"), "-operator"
    )
    lease_role = one(render("defaults"), "Role", "-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE


def test_operator_can_grant_tenant_role() -> None:
    """The tenant Role the operator writes must be a subset of the operator's own rights
    (no `escalate`): Task CRUD in tenant namespaces."""
    grants = _grants(render("defaults"), "-operator")
    tenant_role = {
        ("kubetask.io", "tasks"): {"get", "list", "watch", "create", "patch", "update", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
        ("batch", "jobs"): {"get", "list", "watch"},
    }
    for key, verbs in tenant_role.items():
        assert verbs <= grants.get(key, set()), key


def test_api_rbac_and_secret_scoping() -> None:
    defaults = render("defaults")
    cluster_api = one(defaults, "ClusterRole", "-api")
    grants = _grants([cluster_api], "-api")
    assert grants[("kubetask.io", "tasks")] == {"get", "list", "watch", "create", "patch", "delete"}
    assert grants[("authentication.k8s.io", "tokenreviews")] == {"create"}
    assert grants[("kubetask.io", "tasks/status")] == {"patch"}
    assert grants[("kubetask.io", "taskwebhooks")] == {"get", "list", "watch", "create", "patch", "delete"}
    assert ("", "secrets") not in grants and ("", "configmaps") not in grants, "tests/unit/deploy/test_rbac_table.py"
    assert ("batch", "jobs") not in grants, "the API never touches Jobs"
    role = one(defaults, "Role", "-api")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kubetask-api-keys"],
            "verbs": ["get", "list", "watch"]} in role["rules"]
    assert _grants([one(defaults, "ClusterRole", "-api-tenant")], "-api") == {
        ("", "configmaps"): {"get", "update", "create"}, ("", "secrets"): {"create", "patch"}}


def test_rbac_rules_are_commented() -> None:
    for name in ("operator-rbac.yaml", "api-rbac.yaml"):
        lines = (kt.CHART_DIR / "templates" / name).read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                previous = next(p for p in reversed(lines[:i]) if not p.strip().startswith("{{"))
                assert previous.strip().startswith("#"), f"{name}:{i + 1}: rule without a comment"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_pods_meet_restricted_profile(values: str) -> None:
    specs = list(kt.pod_specs(render(values)))
    assert len(specs) == 2
    for name, pod in specs:
        assert kt.restricted_violations(pod) == [], name
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        assert container["readinessProbe"] and container["livenessProbe"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])


def test_restricted_check_can_fail() -> None:
    _, pod = next(kt.pod_specs(render("defaults")))
    pod = yaml.safe_load(yaml.safe_dump(pod))
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert kt.restricted_violations(pod)


def test_operator_deployment() -> None:
    objects = render("defaults")
    deployment = one(objects, "Deployment", "-operator")
    assert deployment["spec"]["replicas"] == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["operator"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "healthz": 8080, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # readiness on the webhook port: only the Lease holder opens it, so standbys never get admission traffic
    assert container["readinessProbe"]["tcpSocket"]["port"] == "webhook"
    env = env_of(deployment)
    assert env["KUBETASK_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["KUBETASK_OPERATOR_LEADER_LEASE_NAMESPACE"] == NAMESPACE
    assert env["KUBETASK_OPERATOR_WEBHOOK_SERVICE_NAMESPACE"] == NAMESPACE
    assert env["KUBETASK_OPERATOR_WEBHOOK_MANAGE_CONFIGURATION"] == "true"
    assert "KUBETASK_OPERATOR_WEBHOOK_CERT_DIR" not in env
    assert json.loads(env["KUBETASK_OPERATOR_NAMESPACES"]) == []
    service = one(objects, "Service", env["KUBETASK_OPERATOR_WEBHOOK_SERVICE_NAME"])
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert env["KUBETASK_GPU_NODE_LABEL_KEY"] == "nvidia.com/gpu.present"
    # No chart-managed webhook configurations: the operator manages them.
    assert not by_kind(objects, "ValidatingWebhookConfiguration")
    assert by_kind(objects, "TaskTemplate") and not by_kind(objects, "Tenant")


def test_ha_replicas() -> None:
    objects = render("ha")
    deployment = one(objects, "Deployment", "-operator")
    assert deployment["spec"]["replicas"] == 3
    assert env_of(deployment)["KUBETASK_OPERATOR_LEADER_ELECTION"] == "true"
    assert json.loads(env_of(deployment)["KUBETASK_OPERATOR_NAMESPACES"]) == ["kubetask-alice", "kubetask-bob"]
    assert deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert one(objects, "Deployment", "-api")["spec"]["replicas"] == 4
    assert one(objects, "PodDisruptionBudget", "-api")["spec"]["minAvailable"] == 2
    assert not by_kind(objects, "TaskTemplate")
    assert not by_kind(objects, "Issuer")
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}


def _env_names(model: type[Any]) -> set[str]:
    prefix = model.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in model.model_fields}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_env_vars_exist_in_settings(values: str) -> None:
    known = set().union(
        *(
            _env_names(m)
            for m in (settings.KubeSettings, settings.GpuSettings, settings.OperatorSettings, settings.ApiSettings,
                      settings.LiveSettings, settings.WebhookSettings)
        )
    )
    for deployment in by_kind(render(values), "Deployment"):
        for name in env_of(deployment):
            if name.startswith("KUBETASK_"):
                assert name in known, f"{deployment['metadata']['name']}: {name} is not a setting"
    operator_env = env_of(one(render(values), "Deployment", "-operator"))
    assert _env_names(settings.GpuSettings) <= set(operator_env)


def test_full_features() -> None:
    objects = render("full")
    operator = one(objects, "Deployment", "-operator")
    env = env_of(operator)
    assert env["KUBETASK_OPERATOR_WEBHOOK_MANAGE_CONFIGURATION"] == "false"
    cert_dir = env["KUBETASK_OPERATOR_WEBHOOK_CERT_DIR"]
    container = operator["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == cert_dir)
    cert = one(objects, "Certificate")
    volume = next(v for v in operator["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == cert["spec"]["secretName"]
    assert one(objects, "Issuer")["spec"] == {"selfSigned": {}}
    webhook_service = one(objects, "Service", "-webhook")
    assert f"{webhook_service['metadata']['name']}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    assert env["KUBETASK_GPU_NODE_LABEL_KEY"] == "cloud.example.com/accelerator"
    assert env["KUBETASK_OPERATOR_CALLBACK_SECRET"]["secretKeyRef"]["name"] == "kubetask-callback"
    assert not [o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith("-callback")]
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "kubetask.example.com"
    assert one(objects, "ServiceMonitor")["metadata"]["labels"]["release"] == "prometheus"
    assert len(by_kind(objects, "NetworkPolicy")) == 2
    tenants = {t["metadata"]["name"]: t for t in by_kind(objects, "Tenant")}
    assert set(tenants) == {"alice", "ml-team"}
    assert tenants["alice"]["spec"]["apiKeys"] == [{"name": "alice-api-key", "namespace": "kubetask-alice"}]
    assert "key" not in json.dumps(tenants["alice"]["spec"]["limits"])


def test_live_and_delivery_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's env for live updates and webhook deliveries is what the settings classes parse."""
    objects = render("full")
    for deployment, model, expected in (
        ("-api", settings.LiveSettings, {"client_buffer": 250, "window_events": 4096}),
        ("-operator", settings.WebhookSettings, {"allowed_networks": ["10.20.0.0/16"],
                                                 "retry_horizon_seconds": 86400.0}),
    ):
        for name, value in env_of(one(objects, "Deployment", deployment)).items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)
        parsed = model()
        assert {key: getattr(parsed, key) for key in expected} == expected


def test_grafana_dashboard() -> None:
    configmap = one(render("full"), "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["kubetask.json"])
    assert dashboard == json.loads((kt.CHART_DIR / "files" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "kubetask_queue_depth",
        "kubetask_admission_wait_seconds_bucket",
        "kubetask_tasks{",
        "kubetask_gpus_allocated",
        "kubetask_reconcile_errors_total",
        "kubetask_admission_review_duration_seconds_bucket",
        "histogram_quantile",
    ):
        assert metric in exprs, metric
    assert "tenant" in exprs and 'phase="Failed"' in exprs and 'phase="Running"' in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_builtin_templates_rendered_unchanged() -> None:
    rendered = {t["metadata"]["name"]: t for t in by_kind(render("defaults"), "TaskTemplate")}
    files = {p.stem: kt.load_all(p.read_text())[0] for p in kt.CHART_TEMPLATES_COPY.glob("*.yaml")}
    assert set(rendered) == set(files)
    for name, tpl in rendered.items():
        assert tpl["spec"] == files[name]["spec"], name
        assert tpl["metadata"]["labels"]["kubetask.io/builtin"] == "true"


@pytest.mark.parametrize("values", ["full", "ha"])
def test_webhooks_fail_closed_and_scoped(values: str) -> None:
    objects = render(values)
    configs = by_kind(objects, "ValidatingWebhookConfiguration") + by_kind(objects, "MutatingWebhookConfiguration")
    assert len(configs) == 2
    validated = {hook["name"] for hook in by_kind(objects, "ValidatingWebhookConfiguration")[0]["webhooks"]}
    assert validated == {"validate.tasks.kubetask.io", "validate.tenants.kubetask.io",
                         "validate.tasktemplates.kubetask.io"}
    cert = one(objects, "Certificate")
    service = one(objects, "Service", "-webhook")
    for config in configs:
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/{cert['metadata']['name']}"
        )
        for hook in config["webhooks"]:
            assert hook["failurePolicy"] == "Fail"
            assert hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            assert hook["clientConfig"]["service"]["name"] == service["metadata"]["name"]
            assert hook["clientConfig"]["service"]["namespace"] == NAMESPACE
            resource = hook["name"].split(".")[1]  # validate.<plural>.kubetask.io
            assert hook["rules"] == [
                {
                    "apiGroups": ["kubetask.io"],
                    "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [resource],
                    "scope": "Namespaced" if resource == "tasks" else "Cluster",
                }
            ]
            # The path is the Kopf handler id (operator/handlers.py): any other path runs no handler at all.
            assert hook["clientConfig"]["service"]["path"] in ("/rules", "/defaults", "/tenant-rules",
                                                               "/template-rules")
            excluded = hook["namespaceSelector"]["matchExpressions"]
            assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]} in excluded


BAD_VALUES = [
    {"bogus": 1},
    {"operator": {"replicas": 0}},
    {"api": {"replicas": "two"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"gpu": {"nodeLabelKey": "has spaces"}},
    {"webhook": {"certManager": {"enabled": "yes"}}},
    {"webhook": {"certManager": {"issuerRef": {"name": "x", "kind": "Vault"}}}},
    {"tenants": [{"name": "Bad_Name"}]},
    {"tenants": [{"name": "a", "role": "root"}]},
    {"tenants": [{"name": "a", "apiKeys": [{"name": "k", "value": "plaintext-key"}]}]},
    {"tenants": [{"name": "a", "limits": {"maxPending": -1}}]},
    {"tenants": [{"displayName": "no name"}]},
    {"operator": {"metricsPort": 70000}},
    {"tenantNamespacePrefix": "Bad Prefix"},
]


@pytest.mark.parametrize("values", BAD_VALUES, ids=[json.dumps(v) for v in BAD_VALUES])
def test_bad_values_rejected(values: dict[str, Any], tmp_path: Path) -> None:
    schema = json.loads((kt.CHART_DIR / "values.schema.json").read_text())
    merged = yaml.safe_load((kt.CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(merged)  # defaults pass
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = kt.run([kt.require_tool("helm"), "template", "kubetask", str(kt.CHART_DIR), "-f", str(path)], check=False)
    assert proc.returncode != 0, values
    assert re.search(r"schema|values don't meet|additional properties|want", proc.stderr), proc.stderr


@pytest.mark.parametrize("values", VALUE_SETS)
def test_value_sets_pass_schema(values: str) -> None:
    schema = json.loads((kt.CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((kt.CHART_DIR / "values.yaml").read_text())
    data = _merge(defaults, yaml.safe_load((kt.VALUES_DIR / f"{values}.yaml").read_text()) or {})
    jsonschema.Draft7Validator(schema).validate(data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
