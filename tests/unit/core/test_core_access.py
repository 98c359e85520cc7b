"""kubetask.core.access: the published API-key digest Secret and the API's per-tenant RoleBinding."""

from __future__ import annotations

import base64
import json
from typing import Any

from kubetask.core.access import (
    API_ROLE_BINDING,
    KeyEntry,
    build_api_role_binding,
    build_key_secret,
    collect_keys,
    key_refs,
    key_secret_patch,
    parse_key_secret,
    secret_value,
)
from kubetask.core.tokens import hash_api_key

ALICE, BOB = hash_api_key("alice-key"), hash_api_key("bob-key")


def tenant(name: str, keys: list[dict[str, Any]], *, role: str = "user", namespace: str | None = None,
           uid: str | None = "u-1") -> dict[str, Any]:
    spec: dict[str, Any] = {"role": role, "apiKeys": keys}
    if namespace:
        spec["namespace"] = namespace
    return {"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name, "uid": uid},
            "spec": spec}


def secret(value: str, key: str = "sha256", *, string: bool = False) -> dict[str, Any]:
    if string:
        return {"stringData": {key: value}}
    return {"data": {key: base64.b64encode(value.encode()).decode()}}


def lookup(store: dict[tuple[str, str], dict[str, Any]]) -> Any:
    return lambda namespace, name: store.get((namespace, name))


def test_key_refs_default_to_the_tenants_namespace() -> None:
    refs = key_refs(tenant("alice", [{"name": "k1"}, {"name": "k2", "namespace": "keys", "key": "d",
                                                      "profile": "omoios"}, {"nope": 1}, "junk"]))
    assert [(r.namespace, r.name, r.key, r.profile) for r in refs] == [
        ("kubetask-alice", "k1", "sha256", None), ("keys", "k2", "d", "omoios")]
    assert key_refs(tenant("bob", [{"name": "k"}], namespace="team-b"))[0].namespace == "team-b"


def test_secret_value_reads_data_or_string_data_and_rejects_bad_base64() -> None:
    assert secret_value(secret(ALICE.upper() + "\n"), "sha256") == ALICE
    assert secret_value(secret(ALICE, string=True), "sha256") == ALICE
    assert secret_value({"data": {"sha256": "%%%not-base64"}}, "sha256") is None
    assert secret_value(secret(ALICE), "other") is None


def test_collect_keys_maps_digests_to_tenants_and_reports_the_rest() -> None:
    tenants = [tenant("alice", [{"name": "a", "profile": "omoios"}]),
               tenant("root", [{"name": "r"}], role="admin"),
               tenant("ghost", [{"name": "missing"}, {"name": "bad"}])]
    store = {("kubetask-alice", "a"): secret(ALICE), ("kubetask-root", "r"): secret(BOB),
             ("kubetask-ghost", "bad"): secret("not-a-digest")}
    keys = collect_keys(tenants, lookup(store))
    assert keys.entries == {ALICE: KeyEntry("alice", "omoios", "user"), BOB: KeyEntry("root", None, "admin")}
    assert sorted(r.name for r in keys.missing) == ["bad", "missing"]
    assert keys.ambiguous == []


def test_a_digest_two_tenants_reference_is_published_for_neither() -> None:
    tenants = [tenant("alice", [{"name": "a"}]), tenant("mallory", [{"name": "a", "namespace": "kubetask-alice"}]),
               tenant("bob", [{"name": "b"}])]
    store = {("kubetask-alice", "a"): secret(ALICE), ("kubetask-bob", "b"): secret(BOB)}
    keys = collect_keys(tenants, lookup(store))
    assert keys.entries == {BOB: KeyEntry("bob")}
    assert keys.ambiguous == ["alice", "mallory"]


def test_the_published_secret_round_trips_and_holds_digests_only() -> None:
    entries = {ALICE: KeyEntry("alice", "omoios", "user"), BOB: KeyEntry("root", None, "admin")}
    published = build_key_secret(entries, name="kubetask-api-keys", namespace="kubetask-system")
    assert published["metadata"] == {"name": "kubetask-api-keys", "namespace": "kubetask-system", "labels": {
        "app.kubernetes.io/managed-by": "kubetask", "app.kubernetes.io/component": "api-keys"}}
    assert sorted(published["data"]) == sorted([ALICE, BOB])
    assert json.loads(base64.b64decode(published["data"][ALICE])) == {"tenant": "alice", "profile": "omoios",
                                                                      "role": "user"}
    assert "alice-key" not in json.dumps(published)
    assert parse_key_secret(published) == entries


def test_parse_skips_what_is_not_a_digest_with_a_record() -> None:
    good = base64.b64encode(b'{"tenant": "alice"}').decode()
    data = {ALICE: good, "not-a-digest": good, BOB: base64.b64encode(b'{"tenant": ""}').decode(),
            hash_api_key("x"): "%%%", hash_api_key("y"): base64.b64encode(b"[1]").decode()}
    assert parse_key_secret({"data": data}) == {ALICE: KeyEntry("alice")}
    assert parse_key_secret(None) == {}
    assert parse_key_secret({}) == {}


def test_the_patch_removes_revoked_digests_and_is_none_when_equal() -> None:
    before = build_key_secret({ALICE: KeyEntry("alice"), BOB: KeyEntry("bob")}, name="s", namespace="n")
    after = build_key_secret({ALICE: KeyEntry("alice", "omoios")}, name="s", namespace="n")
    patch = key_secret_patch(after, before)
    assert patch == {"data": {ALICE: after["data"][ALICE], BOB: None}}
    assert key_secret_patch(after, after) is None
    unlabelled = {**after, "metadata": {"name": "s", "namespace": "n"}}
    assert key_secret_patch(after, unlabelled) == {"data": {}, "metadata": {"labels": after["metadata"]["labels"]}}


def test_the_api_role_binding_is_namespaced_owned_and_names_only_the_api() -> None:
    binding = build_api_role_binding(tenant("alice", []), "kubetask-alice", cluster_role="kt-kubetask-api-tenant",
                                     service_account="kt-kubetask-api", service_account_namespace="kubetask-system")
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"]["name"] == API_ROLE_BINDING
    assert binding["metadata"]["namespace"] == "kubetask-alice"
    assert binding["metadata"]["labels"]["kubetask.io/tenant"] == "alice"
    assert binding["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "name": "alice", "uid": "u-1", "controller": True,
        "blockOwnerDeletion": False}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kt-kubetask-api-tenant"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kt-kubetask-api",
                                    "namespace": "kubetask-system"}]
    assert build_api_role_binding(tenant("x", [], uid=None), "ns", cluster_role="c", service_account="s",
                                  service_account_namespace="n")["metadata"]["ownerReferences"] == []
