"""Component tests of the sim's API semantics with the real ``kubernetes`` client."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from sim_helpers import WIDGET_CRD, api_client, wait_for

from kubetask.sim import SimCluster

G, V, P = "test.kubetask.io", "v1", "widgets"


@pytest.fixture
def k8s(sim_cluster: SimCluster, tmp_path: Path) -> client.ApiClient:
    return api_client(sim_cluster, tmp_path)


@pytest.fixture
def widgets(sim_cluster: SimCluster, k8s: client.ApiClient) -> client.CustomObjectsApi:
    sim_cluster.apply_manifest(WIDGET_CRD)
    return client.CustomObjectsApi(k8s)


def body_of(e: ApiException) -> dict[str, Any]:
    return dict(json.loads(e.body))


def test_watch_sees_create_patch_delete_in_order(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    start_rv = core.list_namespaced_config_map("default").metadata.resource_version
    seen: list[tuple[str, str, str]] = []

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=start_rv,
                           timeout_seconds=3):
            seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "w1"}, "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("w1", "default", {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w1", "default")
    t.join(5)
    assert [s[0] for s in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert seen[0][2] == created.metadata.resource_version
    assert seen[1][2] == patched.metadata.resource_version
    assert int(seen[2][2]) > int(seen[1][2]) > int(seen[0][2]) > int(start_rv)


def test_watch_from_zero_starts_with_synthetic_added_and_old_rv_is_gone(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map("default", {"metadata": {"name": "pre"}})
    events = [e for e in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version="0",
                                              timeout_seconds=1)]
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "pre")]


def test_crud_errors_match_apiserver(widgets: client.CustomObjectsApi) -> None:
    w = {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": "a"}, "spec": {"color": "red"}}
    created = widgets.create_namespaced_custom_object(G, V, "default", P, w)
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "default", P, w)
    assert e.value.status == 409
    assert body_of(e.value)["message"] == 'widgets.test.kubetask.io "a" already exists'
    with pytest.raises(ApiException) as e:
        widgets.get_namespaced_custom_object(G, V, "default", P, "nope")
    assert e.value.status == 404
    assert body_of(e.value)["message"] == 'widgets.test.kubetask.io "nope" not found'
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "missing-ns", P, w)
    assert e.value.status == 404 and body_of(e.value)["message"] == 'namespaces "missing-ns" not found'
    stale = dict(created, spec={"color": "red", "size": 3})
    widgets.replace_namespaced_custom_object(G, V, "default", P, "a", stale)
    with pytest.raises(ApiException) as e:
        widgets.replace_namespaced_custom_object(G, V, "default", P, "a", stale)
    assert e.value.status == 409 and "the object has been modified" in body_of(e.value)["message"]
    gen = widgets.create_namespaced_custom_object(
        G, V, "default", P, {**w, "metadata": {"generateName": "gen-"}})
    assert gen["metadata"]["name"].startswith("gen-") and len(gen["metadata"]["name"]) == 9


def test_status_subresource_isolation(widgets: client.CustomObjectsApi) -> None:
    w = {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"color": "red"},
         "status": {"phase": "Ignored"}}
    created = widgets.create_namespaced_custom_object(G, V, "default", P, w)
    assert "status" not in created
    after = widgets.patch_namespaced_custom_object(G, V, "default", P, "s",
                                                   {"spec": {"size": 7}, "status": {"phase": "Nope"}})
    assert after["spec"]["size"] == 7 and "status" not in after
    assert after["metadata"]["generation"] == 2
    st = widgets.patch_namespaced_custom_object_status(G, V, "default", P, "s",
                                                       {"spec": {"size": 1}, "status": {"phase": "Done"}})
    assert st["status"] == {"phase": "Done"} and st["spec"]["size"] == 7
    assert st["metadata"]["generation"] == 2  # status writes never bump generation


def test_schema_validation_defaulting_pruning_and_cel(widgets: client.CustomObjectsApi) -> None:
    base = {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": "v"}}
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "default", P, {**base, "spec": {"color": "red", "size": 11}})
    b = body_of(e.value)
    assert e.value.status == 422 and b["reason"] == "Invalid"
    assert b["message"] == ('Widget.test.kubetask.io "v" is invalid: spec.size: Invalid value: 11: spec.size in '
                            'body should be less than or equal to 10')
    assert b["details"]["causes"][0]["field"] == "spec.size"
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "default", P, {**base, "spec": {"color": "pink"}})
    assert 'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"' in body_of(
        e.value)["message"]
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "default", P, {**base, "spec": {}})
    assert "spec.color: Required value" in body_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        widgets.create_namespaced_custom_object(G, V, "default", P,
                                                {**base, "spec": {"color": "red", "minSize": 9, "size": 2}})
    assert 'spec: Invalid value: "object": minSize must not exceed size' in body_of(e.value)["message"]
    ok = widgets.create_namespaced_custom_object(
        G, V, "default", P, {**base, "spec": {"color": "red", "bogus": 1, "extra": {"keep": True}}})
    assert ok["spec"] == {"color": "red", "size": 5, "minSize": 0, "extra": {"keep": True}}
    with pytest.raises(ApiException) as e:  # transition rule runs on update only
        widgets.patch_namespaced_custom_object(G, V, "default", P, "v", {"spec": {"color": "blue"}})
    assert "color is immutable" in body_of(e.value)["message"]


def test_invalid_crd_is_refused(sim_cluster: SimCluster, k8s: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    bad = json.loads(json.dumps(WIDGET_CRD))
    bad["metadata"]["name"] = "gadgets.test.kubetask.io"
    bad["spec"]["names"] = {"kind": "Gadget", "plural": "gadgets"}
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] = {}
    with pytest.raises(ApiException) as e:
        ext.create_custom_resource_definition(bad)
    b = body_of(e.value)
    assert e.value.status == 422
    assert ("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type: Required value: "
            "must not be empty for specified object fields") in b["message"]


def test_finalizers_and_owner_cascade(widgets: client.CustomObjectsApi, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    w = widgets.create_namespaced_custom_object(G, V, "default", P, {
        "apiVersion": f"{G}/{V}", "kind": "Widget",
        "metadata": {"name": "f", "finalizers": ["test/hold"]}, "spec": {"color": "red"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "child", "ownerReferences": [
        {"apiVersion": f"{G}/{V}", "kind": "Widget", "name": "f", "uid": w["metadata"]["uid"]}]}})
    widgets.delete_namespaced_custom_object(G, V, "default", P, "f")
    held = widgets.get_namespaced_custom_object(G, V, "default", P, "f")
    assert held["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as e:
        widgets.patch_namespaced_custom_object(G, V, "default", P, "f",
                                               {"metadata": {"finalizers": ["test/hold", "new"]}})
    assert e.value.status == 422
    assert core.read_namespaced_config_map("child", "default")  # owner still exists
    widgets.patch_namespaced_custom_object(G, V, "default", P, "f", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException):
        widgets.get_namespaced_custom_object(G, V, "default", P, "f")

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", "default")
            return False
        except ApiException as ex:
            return ex.status == 404

    wait_for(child_gone, what="garbage collection of the dependent")


def test_namespace_deletion(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "doomed"}})
    assert [s.metadata.name for s in core.list_namespaced_service_account("doomed").items] == ["default"]
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    core.delete_namespace("doomed")
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "y"}})
    assert e.value.status in (403, 404)

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
            return False
        except ApiException as ex:
            return ex.status == 404

    wait_for(gone, what="namespace removal")


def test_quota_rejection_and_status_used(sim_cluster: SimCluster, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "q"}})
    core.create_namespaced_resource_quota("q", {"metadata": {"name": "gpu"}, "spec": {
        "hard": {"requests.nvidia.com/gpu": "2", "pods": "5"}}})

    def pod(name: str, gpus: int) -> dict[str, Any]:
        return {"metadata": {"name": name, "annotations": {"kubetask.dev/sim-duration-seconds": "30"}},
                "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                         "containers": [{"name": "c", "image": "busybox",
                                         "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}

    core.create_namespaced_pod("q", pod("p1", 2))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("q", pod("p2", 1))
    assert e.value.status == 403
    assert body_of(e.value)["message"] == (
        'pods "p2" is forbidden: exceeded quota: gpu, requested: requests.nvidia.com/gpu=1, '
        "used: requests.nvidia.com/gpu=2, limited: requests.nvidia.com/gpu=2")
    wait_for(lambda: (core.read_namespaced_resource_quota("gpu", "q").status.used or {}).get(
        "requests.nvidia.com/gpu") == "2", what="quota status")
    assert core.read_namespaced_resource_quota("gpu", "q").status.used["pods"] == "1"
    stats = sim_cluster.stats()
    assert stats["quota_rejections"][0]["name"] == "p2"
    core.delete_namespaced_pod("p1", "q")
    wait_for(lambda: (core.read_namespaced_resource_quota("gpu", "q").status.used or {}).get(
        "requests.nvidia.com/gpu") == "0", what="quota release")


def test_rbac_sa_token_allowed_in_one_namespace_and_tokenreview(sim_cluster: SimCluster, k8s: client.ApiClient,
                                                                widgets: client.CustomObjectsApi,
                                                                tmp_path: Path) -> None:
    core = client.CoreV1Api(k8s)
    rbac = client.RbacAuthorizationV1Api(k8s)
    for ns in ("alice", "bob"):
        core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service_account("bob", {"metadata": {"name": "runner"}})
    rbac.create_namespaced_role("bob", {"metadata": {"name": "w"}, "rules": [
        {"apiGroups": [G], "resources": ["widgets"], "verbs": ["create", "get", "list"]}]})
    rbac.create_namespaced_role_binding("bob", {"metadata": {"name": "w"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "w"},
        "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "bob"}]})
    tok = core.create_namespaced_service_account_token("runner", "bob", {"spec": {"expirationSeconds": 3600}})
    token = tok.status.token
    sa = client.CustomObjectsApi(api_client(sim_cluster, tmp_path, user="runner", token=token))
    w = {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": "x"}, "spec": {"color": "red"}}
    assert sa.create_namespaced_custom_object(G, V, "bob", P, w)["metadata"]["name"] == "x"
    with pytest.raises(ApiException) as e:
        sa.create_namespaced_custom_object(G, V, "alice", P, w)
    assert e.value.status == 403
    assert body_of(e.value)["message"] == (
        'widgets.test.kubetask.io is forbidden: User "system:serviceaccount:bob:runner" cannot create resource '
        '"widgets" in API group "test.kubetask.io" in the namespace "alice"')
    with pytest.raises(ApiException) as e:  # escalation: cannot grant what it does not hold
        client.RbacAuthorizationV1Api(api_client(sim_cluster, tmp_path, user="runner2", token=token)
                                      ).create_namespaced_role("bob", {"metadata": {"name": "esc"}, "rules": [
                                          {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})
    assert e.value.status == 403
    review = client.AuthenticationV1Api(k8s).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated is True
    assert review.status.user.username == "system:serviceaccount:bob:runner"
    assert "system:serviceaccounts:bob" in review.status.user.groups
    bad = client.AuthenticationV1Api(k8s).create_token_review({"spec": {"token": "garbage"}})
    assert bad.status.authenticated is not True


def test_field_selector_label_selector_and_pagination(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}",
                                                                   "labels": {"tier": "a" if i % 2 else "b"}}})
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "default", label_selector="tier in (a)").items] == ["cm1", "cm3"]
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "default", field_selector="metadata.name!=cm0", label_selector="tier=b").items] == ["cm2", "cm4"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("default", field_selector="spec.foo=bar")
    assert e.value.status == 400
    page = core.list_namespaced_config_map("default", limit=2)
    names = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map("default", limit=2, _continue=page.metadata._continue)
        names += [c.metadata.name for c in page.items]
    assert [n for n in names if n.startswith("cm")] == [f"cm{i}" for i in range(5)]
