"""Least privilege: the objects through which the operator hands the API what it needs (pure builders).

* **API-key digests.** Tenants reference Secrets holding the SHA-256 digest of each API key
  (``spec.apiKeys[]``), in any namespace.  Rather than giving the API Secret read everywhere, the
  operator (which must read them anyway) publishes every tenant's digests into ONE Secret in the
  release namespace: one data entry per digest (the key name *is* the hex digest), whose value is
  ``{"tenant", "profile", "role"}`` as JSON.  The API may read only that Secret (a Role with
  ``resourceNames``) and watches it, so a rotated or removed key stops working as soon as the
  operator republishes.  Only digests travel; the keys themselves are never stored anywhere.
* **The API in tenant namespaces.** The API writes two things there: the alert-acknowledgement
  ConfigMap and completion-webhook signing Secrets.  The operator binds the API's ServiceAccount
  to a ClusterRole holding exactly that, with a RoleBinding per tenant namespace, so the API's own
  ClusterRole has no ConfigMap or Secret verbs at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetask.core.objects import LABEL_API_KEY
from kubetask.core.tenants import MANAGED_BY, TENANT_LABEL, namespace_of

API_KEY_LABEL = LABEL_API_KEY
"""Key Secrets labelled ``kubetask.io/api-key=true`` are watched (rotation is seen at once)."""
API_KEY_SELECTOR = f"{API_KEY_LABEL}=true"
DEFAULT_DIGEST_KEY = "sha256"
API_ROLE_BINDING = "kubetask-api"
"""The RoleBinding, in each tenant namespace, of the API's ServiceAccount to its tenant ClusterRole."""
PUBLISHED_COMPONENT = "api-keys"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyRef:
    """One ``spec.apiKeys[]`` entry, resolved: where its digest is."""

    tenant: str
    namespace: str
    name: str
    key: str
    profile: str | None


@dataclass(frozen=True)
class KeyEntry:
    """What a digest authenticates as."""

    tenant: str
    profile: str | None = None
    role: str = "user"


@dataclass
class PublishedKeys:
    entries: dict[str, KeyEntry] = field(default_factory=dict)
    """Digest -> the tenant (and pinned profile) it authenticates."""
    ambiguous: list[str] = field(default_factory=list)
    """Tenants whose digest another tenant also references: left out, since the key cannot say which it is."""
    missing: list[KeyRef] = field(default_factory=list)
    """References whose Secret (or key in it) does not exist, or holds no SHA-256 hex digest."""


def key_refs(tenant: Mapping[str, Any], prefix: str = "kubetask-") -> list[KeyRef]:
    """The Tenant's ``spec.apiKeys``; a reference without ``namespace`` is in the tenant's namespace."""
    name = str((tenant.get("metadata") or {}).get("name"))
    tns = namespace_of(tenant, prefix)
    refs = []
    for ref in (tenant.get("spec") or {}).get("apiKeys") or []:
        if not isinstance(ref, Mapping) or not ref.get("name"):
            continue
        refs.append(KeyRef(tenant=name, namespace=str(ref.get("namespace") or tns), name=str(ref["name"]),
                           key=str(ref.get("key") or DEFAULT_DIGEST_KEY),
                           profile=str(ref["profile"]) if ref.get("profile") else None))
    return refs


def secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` (base64) or ``stringData[key]``, stripped and lower-cased; None if absent or undecodable."""
    data = secret.get("data") or {}
    if data.get(key) is not None:
        try:
            return base64.b64decode(str(data[key]), validate=True).decode().strip().lower()
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return None
    string_data = secret.get("stringData") or {}
    if string_data.get(key) is not None:
        return str(string_data[key]).strip().lower()
    return None


def is_digest(value: str | None) -> bool:
    return value is not None and bool(_DIGEST.match(value))


def collect_keys(tenants: Iterable[Mapping[str, Any]],
                 secret: Callable[[str, str], Mapping[str, Any] | None], *,
                 prefix: str = "kubetask-") -> PublishedKeys:
    """Every tenant's digests.  ``secret(namespace, name)`` is the key Secret, or None when it does not exist."""
    out = PublishedKeys()
    claimed: dict[str, set[str]] = {}
    for tenant in sorted(tenants, key=lambda t: str((t.get("metadata") or {}).get("name"))):
        role = str((tenant.get("spec") or {}).get("role") or "user")
        for ref in key_refs(tenant, prefix):
            found = secret(ref.namespace, ref.name)
            digest = secret_value(found, ref.key) if found is not None else None
            if digest is None or not is_digest(digest):
                out.missing.append(ref)
                continue
            claimed.setdefault(digest, set()).add(ref.tenant)
            out.entries.setdefault(digest, KeyEntry(ref.tenant, ref.profile, role))
    for digest, owners in claimed.items():
        if len(owners) > 1:
            del out.entries[digest]
            out.ambiguous.extend(sorted(owners))
    out.ambiguous = sorted(set(out.ambiguous))
    return out


def _entry_json(entry: KeyEntry) -> str:
    return json.dumps({"tenant": entry.tenant, "profile": entry.profile, "role": entry.role},
                      sort_keys=True, separators=(",", ":"))


def key_secret_data(entries: Mapping[str, KeyEntry]) -> dict[str, str]:
    """The published Secret's ``data``: base64 of each entry's JSON, under its digest."""
    return {digest: base64.b64encode(_entry_json(entry).encode()).decode()
            for digest, entry in sorted(entries.items())}


def build_key_secret(entries: Mapping[str, KeyEntry], *, name: str, namespace: str) -> dict[str, Any]:
    """The one Secret the API reads API-key digests from."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**MANAGED_BY, "app.kubernetes.io/component": PUBLISHED_COMPONENT}},
        "data": key_secret_data(entries),
    }


def key_secret_patch(desired: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch from ``current`` to ``desired`` (removed digests set to null); None if nothing differs."""
    want: dict[str, Any] = dict(desired.get("data") or {})
    have: Mapping[str, Any] = current.get("data") or {}
    labels = (desired.get("metadata") or {}).get("labels") or {}
    have_labels = (current.get("metadata") or {}).get("labels") or {}
    data: dict[str, Any] = {k: v for k, v in want.items() if have.get(k) != v}
    data.update({k: None for k in have if k not in want})
    stale_labels = {k: v for k, v in labels.items() if have_labels.get(k) != v}
    if not data and not stale_labels:
        return None
    patch: dict[str, Any] = {"data": data}
    if stale_labels:
        patch["metadata"] = {"labels": stale_labels}
    return patch


def parse_key_secret(secret: Mapping[str, Any] | None) -> dict[str, KeyEntry]:
    """The digests of a published Secret; entries that are not a digest with a valid record are skipped."""
    out: dict[str, KeyEntry] = {}
    for digest, raw in ((secret or {}).get("data") or {}).items():
        if not is_digest(str(digest)) or raw is None:
            continue
        try:
            record = json.loads(base64.b64decode(str(raw), validate=True))
        except (ValueError, binascii.Error):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("tenant"), str) or not record["tenant"]:
            continue
        profile = record.get("profile")
        out[str(digest)] = KeyEntry(record["tenant"], str(profile) if profile else None,
                                    str(record.get("role") or "user"))
    return out


def build_api_role_binding(tenant: Mapping[str, Any], namespace: str, *, cluster_role: str,
                           service_account: str, service_account_namespace: str) -> dict[str, Any]:
    """Binds the API's ServiceAccount, in the tenant's namespace only, to ``cluster_role`` (owned by the Tenant,
    so it goes with it)."""
    meta = tenant.get("metadata") or {}
    owners = [{"apiVersion": str(tenant.get("apiVersion") or "kubetask.io/v1alpha1"), "kind": "Tenant",
               "name": meta.get("name"), "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": False}] \
        if meta.get("uid") else []
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": API_ROLE_BINDING, "namespace": namespace,
                     "labels": {TENANT_LABEL: str(meta.get("name")), **MANAGED_BY,
                                "app.kubernetes.io/component": "api"},
                     "ownerReferences": owners},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": service_account_namespace}],
    }
