"""Isolation (another user's task is 404 everywhere; admins see all) and the two ways to authenticate."""

from __future__ import annotations

import uuid

import httpx
from kt_api_support import Stack, assert_error_body

BODY = {"name": "private", "script_content": "print('secret')"}


def test_bob_cannot_touch_alices_task(shared: Stack, a: httpx.Client, b: httpx.Client) -> None:
    task = a.post("/tasks", json=BODY).json()
    tid = task["id"]
    for method, path in (
        ("GET", f"/tasks/{tid}"), ("PUT", f"/tasks/{tid}"), ("PATCH", f"/tasks/{tid}"),
        ("DELETE", f"/tasks/{tid}"), ("POST", f"/tasks/{tid}/cancel"), ("POST", f"/tasks/{tid}/replay"),
        ("POST", f"/tasks/{tid}/execute"), ("GET", f"/tasks/{tid}/logs"), ("GET", f"/tasks/{tid}/timeline"),
        ("GET", f"/tasks/{tid}/executions"), ("PATCH", f"/tasks/{tid}/priority?priority=1"),
        ("GET", f"/tasks/{tid}/compare/{tid}"),
    ):
        response = b.request(method, path, json={"name": "x"} if method in ("PUT", "PATCH") else None)
        assert_error_body(response, 404)
    assert tid not in {t["id"] for t in b.get("/tasks", params={"limit": 1000}).json()["tasks"]}
    assert all(tid != t["id"] for group in b.get("/tasks/status").json().values() for t in group)
    assert b.get("/tasks", params={"search": "private", "limit": 1000}).json()["total"] == 0
    assert a.get(f"/tasks/{tid}").status_code == 200


def test_admin_sees_everyone(a: httpx.Client, b: httpx.Client, root: httpx.Client) -> None:
    mine = a.post("/tasks", json=BODY).json()["id"]
    theirs = b.post("/tasks", json=BODY).json()["id"]
    listed = {t["id"] for t in root.get("/tasks", params={"limit": 1000}).json()["tasks"]}
    assert {mine, theirs} <= listed
    only_bob = root.get("/tasks", params={"user_id": "bob", "limit": 1000}).json()["tasks"]
    assert theirs in {t["id"] for t in only_bob} and all(t["user_id"] == "bob" for t in only_bob)
    assert root.get(f"/tasks/{mine}").json()["user_id"] == "alice"


def _service_account_token(shared: Stack, namespace: str, name: str) -> str:
    """A real ServiceAccount token (TokenRequest API): what a pod or ``kubectl create token`` presents."""
    http = shared.cluster.admin()
    created = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", json={
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    assert created.status_code in (201, 409), created.text
    request = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    assert request.status_code == 201, request.text
    return str(request.json()["status"]["token"])


def test_bearer_kubernetes_token_via_tokenreview(shared: Stack) -> None:
    # frank is the tenant whose subjects name the user the apiserver's TokenReview reports for this token.
    shared.add_tenant("frank", None, subjects=[{"kind": "User", "name": "system:serviceaccount:kubetask-frank:frank"}])
    token = _service_account_token(shared, "kubetask-frank", "frank")
    with shared.client(Authorization=f"Bearer {token}") as frank:
        shared.wait_for(lambda: frank.get("/users/me/limits").status_code == 200, timeout=15)
        assert frank.get("/users/me/limits").json()["user_id"] == "frank"
        created = frank.post("/tasks", json=BODY)
        assert created.status_code == 201 and created.json()["user_id"] == "frank"
    with shared.client(Authorization="Bearer not-a-token") as nobody:
        assert_error_body(nobody.get("/tasks"), 401, "INVALID_CREDENTIALS")
    # A valid token of someone no tenant names.
    name = f"stranger-{uuid.uuid4().hex[:6]}"
    try:
        stranger = _service_account_token(shared, "default", name)
        with shared.client(Authorization=f"Bearer {stranger}") as stranger_client:
            assert_error_body(stranger_client.get("/tasks"), 401)
    finally:
        shared.cluster.delete("v1", "ServiceAccount", name, "default")


def test_api_key_as_bearer(shared: Stack) -> None:
    with shared.client(Authorization="Bearer dev-alice-key") as alice:
        assert alice.get("/users/me/limits").json()["user_id"] == "alice"


def test_health_and_metrics_need_no_auth(shared: Stack) -> None:
    with shared.client() as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert_error_body(anonymous.get("/tasks/queue-status"), 401)


def test_a_tenant_naming_another_tenants_namespace_gets_no_access_through_the_api(shared: Stack,
                                                                                   a: httpx.Client) -> None:
    """Issue 12: a Tenant that slipped in while the webhook was down (none runs here) names alice's namespace.

    The apiserver stores it; the API must still refuse its key, by the operator's first-claimant rule, and
    alice keeps working in her namespace."""
    import base64

    from kubetask.core.tokens import hash_api_key

    key = f"intruder-{uuid.uuid4().hex}"
    name = f"mallory-{uuid.uuid4().hex[:6]}"
    own_ns = f"kubetask-{name}"
    http = shared.cluster.admin()
    assert http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": own_ns}}).status_code == 201
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "key", "labels": {"kubetask.io/api-key": "true", "kubetask.io/tenant": name}},
        "data": {"sha256": base64.b64encode(hash_api_key(key).encode()).decode()}}
    assert http.post(f"/api/v1/namespaces/{own_ns}/secrets", json=secret).status_code == 201
    tenant = {"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
              "spec": {"namespace": "kubetask-alice",
                       "apiKeys": [{"name": "key", "key": "sha256", "namespace": own_ns}]}}
    assert http.post("/apis/kubetask.io/v1alpha1/tenants", json=tenant).status_code == 201
    try:
        with shared.client(key) as intruder:
            # the key itself is known (it resolves once the Tenant names a namespace it owns) ...
            for _ in range(20):
                refused = intruder.get("/users/me/limits")
                assert_error_body(refused, 401)
            assert_error_body(intruder.post("/tasks", json=BODY), 401)
        assert a.get("/users/me/limits").json()["user_id"] == "alice"
        created = a.post("/tasks", json=BODY)
        assert created.status_code == 201, created.text
        assert a.get(f"/tasks/{created.json()['id']}").json()["user_id"] == "alice"
    finally:
        http.delete(f"/apis/kubetask.io/v1alpha1/tenants/{name}")
        http.delete(f"/api/v1/namespaces/{own_ns}")
