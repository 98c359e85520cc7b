"""Who is calling: ``X-API-Key`` (hashed keys referenced from Tenants) or a Kubernetes bearer token.

* API keys: each Tenant lists Secret references in ``spec.apiKeys``; the Secret
  holds the SHA-256 hex digest of the key.  Two sources of those digests:

  - *published* (the chart): the operator copies every tenant's digests into one
    Secret in the release namespace (:mod:`kubetask.core.access`), and the API
    watches that Secret alone: it needs no Secret read anywhere else;
  - *direct* (dev, tests with admin credentials): Secrets labelled
    ``kubetask.io/api-key=true`` come from an informer; a referenced Secret
    without the label is fetched on demand (and re-fetched at most every few
    seconds when an unknown key shows up).
* Bearer tokens: a ``TokenReview`` (``authentication.k8s.io/v1``) names the
  user/ServiceAccount and groups; the Tenant whose ``spec.subjects`` lists one of
  them is the caller.  Reviews are cached briefly per token digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetask.core.access import parse_key_secret, secret_value
from kubetask.core.objects import Obj
from kubetask.core.tenants import namespace_of, namespace_owners, tenant_namespace
from kubetask.core.tokens import hash_api_key
from kubetask.kube.cache import Informer
from kubetask.kube.client import SECRETS, TOKEN_REVIEWS, ApiError, KubeClient


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a Tenant (one user or one team)."""

    tenant: str
    namespace: str
    role: str = "user"
    via: str = "api-key"
    username: str | None = None
    profile: str | None = None
    """The compatibility profile the API key pins (``Tenant.spec.apiKeys[].profile``), if any."""
    tenant_obj: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def user_id(self) -> str:
        return self.tenant


class Authenticator:
    """Resolves credentials to a :class:`Principal` from the caches (plus TokenReview for tokens)."""

    def __init__(
        self,
        client: KubeClient,
        tenants: Informer,
        secrets: Informer,
        *,
        namespace_prefix: str = "kubetask-",
        refetch_interval: float = 2.0,
        token_ttl: float = 60.0,
        published: tuple[str, str] | None = None,
    ) -> None:
        self.client = client
        self.tenants = tenants
        self.secrets = secrets
        self.published = published
        """``(namespace, name)`` of the operator-published digest Secret (``secrets`` then watches only it);
        None: ``secrets`` holds the tenants' labelled key Secrets and the rest are fetched on demand."""
        self.namespace_prefix = namespace_prefix
        self.refetch_interval = refetch_interval
        self.token_ttl = token_ttl
        self._key_map: dict[str, tuple[str, str | None]] = {}
        """Key digest -> (tenant, the key's pinned profile)."""
        self._built_at: tuple[int, int] = (-1, -1)
        self._fetched: dict[tuple[str, str], Obj | None] = {}
        self._last_fetch = 0.0
        self._fetch_lock = asyncio.Lock()
        self._token_cache: dict[str, tuple[float, str | None, str | None]] = {}
        self._owners: dict[str, str] = {}
        self._owners_at = -1
        self.upstream_down: Callable[[], bool] = lambda: False
        """Whether the apiserver is known not to answer: an unknown key is then not looked up there."""

    # ------------------------------------------------------------------ helpers

    def owns_namespace(self, tenant: Mapping[str, Any]) -> bool:
        """Whether ``tenant`` owns the namespace it names, by the operator's rule (the first claimant; a
        system namespace only once the operator accepted it).  A Tenant that slipped in while the webhook
        was down naming another's namespace must not act there through the API either."""
        if self._owners_at != self.tenants.generation:
            tenants = self.tenants.list()
            accepted = {str(ns) for t in tenants if (ns := (t.get("status") or {}).get("namespace"))}
            self._owners = namespace_owners(tenants, self.namespace_prefix, allowlist=accepted)
            self._owners_at = self.tenants.generation
        name = str((tenant.get("metadata") or {}).get("name"))
        return self._owners.get(tenant_namespace(name, tenant.get("spec"), self.namespace_prefix)) == name

    def principal_for(self, tenant: Mapping[str, Any], *, via: str, username: str | None = None,
                      profile: str | None = None) -> Principal:
        meta = tenant.get("metadata") or {}
        spec = tenant.get("spec") or {}
        return Principal(
            tenant=str(meta.get("name")),
            namespace=namespace_of(tenant, self.namespace_prefix),
            role=str(spec.get("role") or "user"),
            via=via,
            username=username,
            profile=profile,
            tenant_obj=tenant,
        )

    def tenant(self, name: str) -> Obj | None:
        return self.tenants.get(name)

    def _secret(self, name: str, namespace: str) -> Obj | None:
        cached = self.secrets.get(name, namespace)
        if cached is not None:
            return cached
        return self._fetched.get((namespace, name))

    def _rebuild(self) -> None:
        stamp = (self.tenants.generation, self.secrets.generation + len(self._fetched))
        if stamp == self._built_at:
            return
        key_map: dict[str, tuple[str, str | None]] = {}
        if self.published is not None:
            entries = parse_key_secret(self.secrets.get(self.published[1], self.published[0]))
            self._key_map = {digest: (entry.tenant, entry.profile) for digest, entry in entries.items()}
            self._built_at = stamp
            return
        for tenant in self.tenants.list():
            tname = str((tenant.get("metadata") or {}).get("name"))
            tns = namespace_of(tenant, self.namespace_prefix)
            for ref in (tenant.get("spec") or {}).get("apiKeys") or []:
                if not isinstance(ref, Mapping) or not ref.get("name"):
                    continue
                secret = self._secret(str(ref["name"]), str(ref.get("namespace") or tns))
                if secret is None:
                    continue
                digest = secret_value(secret, str(ref.get("key") or "sha256"))
                if digest:
                    key_map[digest] = (tname, str(ref["profile"]) if ref.get("profile") else None)
        self._key_map = key_map
        self._built_at = stamp

    async def _fetch_missing_secrets(self) -> None:
        """GET referenced Secrets the label-selected informer does not hold (rate-limited)."""
        if self.upstream_down():
            return
        async with self._fetch_lock:
            now = time.monotonic()
            if now - self._last_fetch < self.refetch_interval:
                return
            self._last_fetch = now
            for tenant in self.tenants.list():
                tns = namespace_of(tenant, self.namespace_prefix)
                for ref in (tenant.get("spec") or {}).get("apiKeys") or []:
                    if not isinstance(ref, Mapping) or not ref.get("name"):
                        continue
                    name, ns = str(ref["name"]), str(ref.get("namespace") or tns)
                    if self.secrets.get(name, ns) is not None:
                        continue
                    try:
                        self._fetched[(ns, name)] = await self.client.get_or_none(SECRETS, name, ns)
                    except ApiError:
                        continue
            self._built_at = (-1, -1)

    # ------------------------------------------------------------------ API keys

    async def by_api_key(self, key: str) -> Principal | None:
        digest = hash_api_key(key)
        self._rebuild()
        found = self._lookup(digest)
        if found is None and self.published is None:  # a published set is complete: nothing to fetch
            await self._fetch_missing_secrets()
            self._rebuild()
            found = self._lookup(digest)
        if found is None:
            return None
        tenant = self.tenants.get(found[0])
        if tenant is None or not self.owns_namespace(tenant):
            return None
        return self.principal_for(tenant, via="api-key", profile=found[1])

    def _lookup(self, digest: str) -> tuple[str, str | None] | None:
        for known, entry in self._key_map.items():
            if hmac.compare_digest(known, digest):
                return entry
        return None

    # ------------------------------------------------------------------ bearer tokens

    async def by_token(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._token_cache.get(digest)
        if cached is not None and cached[0] > now:
            username, tenant_name = cached[1], cached[2]
        else:
            username, groups = await self._review(token)
            tenant_name = self._tenant_for_subject(username, groups) if username else None
            self._token_cache[digest] = (now + self.token_ttl, username, tenant_name)
            if len(self._token_cache) > 10_000:
                self._token_cache.clear()
        if tenant_name is None:
            return None
        tenant = self.tenants.get(tenant_name)
        if tenant is None or not self.owns_namespace(tenant):
            return None
        return self.principal_for(tenant, via="token", username=username)

    async def _review(self, token: str) -> tuple[str | None, list[str]]:
        review = await self.client.create(TOKEN_REVIEWS, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token},
        })
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None, []
        user = status.get("user") or {}
        return user.get("username"), [str(g) for g in user.get("groups") or []]

    def _tenant_for_subject(self, username: str, groups: list[str]) -> str | None:
        sa_ns, sa_name = None, None
        if username.startswith("system:serviceaccount:"):
            parts = username.split(":")
            if len(parts) == 4:
                sa_ns, sa_name = parts[2], parts[3]
        for tenant in sorted(self.tenants.list(), key=lambda t: str((t.get("metadata") or {}).get("name"))):
            tns = namespace_of(tenant, self.namespace_prefix)
            for subject in (tenant.get("spec") or {}).get("subjects") or []:
                kind, name = subject.get("kind"), subject.get("name")
                if kind == "User" and name == username:
                    return str(tenant["metadata"]["name"])
                if kind == "Group" and name in groups:
                    return str(tenant["metadata"]["name"])
                if kind == "ServiceAccount" and sa_name is not None and name == sa_name \
                        and (subject.get("namespace") or tns) == sa_ns:
                    return str(tenant["metadata"]["name"])
        return None
