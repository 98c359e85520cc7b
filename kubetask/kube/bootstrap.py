"""Idempotent creation of a Tenant, its namespace and its hashed API-key Secret (``kubetask dev``, tests)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kubetask import API_VERSION
from kubetask.core.objects import LABEL_API_KEY, LABEL_TENANT, Obj
from kubetask.core.tokens import hash_api_key
from kubetask.kube.client import NAMESPACES, SECRETS, TENANTS, ApiError, KubeClient


def api_key_secret_name(tenant: str) -> str:
    return f"{tenant}-api-key"


async def ensure_tenant(
    client: KubeClient,
    name: str,
    *,
    api_key: str | None,
    role: str = "user",
    limits: Mapping[str, Any] | None = None,
    namespace_prefix: str = "kubetask-",
    subjects: list[Mapping[str, Any]] | None = None,
) -> Obj:
    """Create (or update) the Tenant ``name``, its namespace, and the Secret holding its key's SHA-256.

    The Secret is labelled ``kubetask.io/api-key=true`` so the API's secret
    informer sees it; only the digest is stored, never the key.  Re-running
    with the same arguments changes nothing; new limits are merged in.
    """
    namespace = f"{namespace_prefix}{name}"
    await _ensure(client, NAMESPACES, None, {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {LABEL_TENANT: name}},
    })
    api_keys: list[Obj] = []
    if api_key is not None:
        secret_name = api_key_secret_name(name)
        secret: Obj = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": namespace,
                         "labels": {LABEL_TENANT: name, LABEL_API_KEY: "true"}},
            "data": {"sha256": base64.b64encode(hash_api_key(api_key).encode()).decode()},
        }
        existing = await client.get_or_none(SECRETS, secret_name, namespace)
        if existing is None:
            await _ensure(client, SECRETS, namespace, secret)
        else:
            await client.patch(SECRETS, secret_name, {
                "metadata": {"labels": secret["metadata"]["labels"]},
                "data": secret["data"],
            }, namespace)
        api_keys.append({"name": secret_name, "key": "sha256", "namespace": namespace})
    spec: Obj = {"role": role, "namespace": namespace, "apiKeys": api_keys}
    if subjects:
        spec["subjects"] = [dict(s) for s in subjects]
    if limits:
        spec["limits"] = dict(limits)
    body: Obj = {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}, "spec": spec}
    existing_tenant = await client.get_or_none(TENANTS, name)
    if existing_tenant is None:
        try:
            return await client.create(TENANTS, body)
        except ApiError as error:
            if not error.already_exists:
                raise
    return await client.patch(TENANTS, name, {"spec": spec})


async def _ensure(client: KubeClient, resource: Any, namespace: str | None, body: Obj) -> None:
    try:
        await client.create(resource, body, namespace)
    except ApiError as error:
        if not error.already_exists and error.status != 409:
            raise
