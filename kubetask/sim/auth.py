"""Authentication (bearer tokens, TokenRequest, TokenReview) and RBAC authorization."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubetask.sim.store import Store

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
K_ROLES = (RBAC, "roles")
K_CROLES = (RBAC, "clusterroles")
K_RB = (RBAC, "rolebindings")
K_CRB = (RBAC, "clusterrolebindings")


@dataclass
class UserInfo:
    """An authenticated (or anonymous) requester."""

    username: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_master(self) -> bool:
        return "system:masters" in self.groups

    def to_obj(self) -> Obj:
        o: Obj = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            o["uid"] = self.uid
        if self.extra:
            o["extra"] = self.extra
        return o


ANONYMOUS = UserInfo("system:anonymous", ["system:unauthenticated"])
SYSTEM = UserInfo("system:kube-controller-manager", ["system:masters", "system:authenticated"])


@dataclass
class Attributes:
    """Authorization attributes of one request (authorizer.Attributes)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


class Authenticator:
    """Static tokens plus ServiceAccount tokens minted by TokenRequest."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.static: dict[str, UserInfo] = {}
        self._key = secrets.token_bytes(32)

    def add_token(self, token: str, user: str, groups: Iterable[str] = (), uid: str = "") -> None:
        gs = list(groups)
        if "system:authenticated" not in gs:
            gs.append("system:authenticated")
        self.static[token] = UserInfo(user, gs, uid)

    def issue_sa_token(self, ns: str, sa: Obj, expiration: int, audiences: list[str] | None) -> tuple[str, int]:
        """A JWT-shaped, HMAC-signed token bound to the ServiceAccount's uid."""
        now = int(time.time())
        exp = now + max(expiration, 600)
        claims = {
            "iss": "https://kubernetes.default.svc.cluster.local",
            "aud": audiences or ["https://kubernetes.default.svc.cluster.local"],
            "sub": f"system:serviceaccount:{ns}:{sa['metadata']['name']}",
            "iat": now, "nbf": now, "exp": exp,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa["metadata"]["name"],
                                                                  "uid": sa["metadata"]["uid"]}},
            "jti": secrets.token_hex(8),
        }

        def b64(b: bytes) -> str:
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        head = b64(json.dumps({"alg": "HS256", "kid": "sim"}).encode())
        body = b64(json.dumps(claims).encode())
        sig = b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}", exp

    def authenticate(self, token: str | None) -> UserInfo | None:
        """``None`` means the token is invalid (401); no token means anonymous."""
        if token is None:
            return ANONYMOUS
        u = self.static.get(token)
        if u is not None:
            return u
        return self._sa_user(token)

    def _sa_user(self, token: str) -> UserInfo | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        sig = base64.urlsafe_b64encode(
            hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
        if not hmac.compare_digest(sig, parts[2]):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        if claims.get("exp", 0) < time.time():
            return None
        k = claims.get("kubernetes.io") or {}
        ns, sa = k.get("namespace", ""), (k.get("serviceaccount") or {})
        live = self.store.get(("", "serviceaccounts"), ns, sa.get("name", ""))
        if live is None or live["metadata"]["uid"] != sa.get("uid"):
            return None  # bound token: invalid once its ServiceAccount is gone
        return UserInfo(
            f"system:serviceaccount:{ns}:{sa['name']}",
            ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            sa.get("uid", ""),
            {"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti', '')}"]},
        )


# ====================================================================== RBAC

def _subject_matches(s: Obj, user: UserInfo, binding_ns: str) -> bool:
    kind = s.get("kind")
    if kind == "User":
        return bool(s.get("name") == user.username)
    if kind == "Group":
        return s.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = s.get("namespace") or binding_ns
        return user.username == f"system:serviceaccount:{ns}:{s.get('name')}"
    return False


def _has(values: Iterable[str] | None, want: str) -> bool:
    vs = list(values or ())
    return "*" in vs or want in vs


def rule_allows(rule: Obj, a: Attributes) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        for u in rule.get("nonResourceURLs") or ():
            if u == a.path or u == "*" or (u.endswith("*") and a.path.startswith(u[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups"), a.group):
        return False
    full = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    res = list(rule.get("resources") or ())
    ok = "*" in res or full in res or (a.subresource and f"*/{a.subresource}" in res)
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


class Authorizer:
    """Real RBAC evaluation over the stored Roles/ClusterRoles/bindings."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _role_rules(self, ref: Obj, ns: str) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            r = self.store.get(K_CROLES, "", ref.get("name", ""))
        else:
            r = self.store.get(K_ROLES, ns, ref.get("name", ""))
        if r is None:
            return []
        rules = list(r.get("rules") or [])
        agg = r.get("aggregationRule")
        if agg and ref.get("kind") == "ClusterRole":
            from kubetask.sim.selectors import object_selector_matches

            for sel in agg.get("clusterRoleSelectors") or ():
                for cr in self.store.iter(K_CROLES):
                    if cr is not r and object_selector_matches(sel, cr["metadata"].get("labels")):
                        rules.extend(cr.get("rules") or [])
        return rules

    def rules_for(self, user: UserInfo, ns: str) -> list[tuple[Obj, str]]:
        """All rules that apply to ``user`` in ``ns`` (cluster-wide ones included), with their origin."""
        out: list[tuple[Obj, str]] = []
        for b in self.store.iter(K_CRB):
            if any(_subject_matches(s, user, "") for s in b.get("subjects") or ()):
                desc = f'ClusterRoleBinding "{b["metadata"]["name"]}" of ClusterRole "{b["roleRef"].get("name")}"'
                out.extend((r, desc) for r in self._role_rules(b.get("roleRef") or {}, ""))
        if ns:
            for b in self.store.iter(K_RB, ns):
                if any(_subject_matches(s, user, ns) for s in b.get("subjects") or ()):
                    rr = b.get("roleRef") or {}
                    desc = f'RoleBinding "{b["metadata"]["name"]}/{ns}" of {rr.get("kind")} "{rr.get("name")}"'
                    out.extend((r, desc) for r in self._role_rules(rr, ns))
        return out

    def authorize(self, user: UserInfo, a: Attributes) -> tuple[bool, str]:
        if user.is_master:
            return True, ""
        for rule, desc in self.rules_for(user, a.namespace):
            if rule_allows(rule, a):
                return True, f'RBAC: allowed by {desc} to User "{user.username}"'
        return False, ""

    # ------------------------------------------------------------ escalation
    def covers(self, user: UserInfo, ns: str, wanted: list[Obj]) -> list[Obj]:
        """Rules of ``wanted`` not covered by what ``user`` holds in ``ns`` (empty = OK)."""
        if user.is_master:
            return []
        held = [r for r, _ in self.rules_for(user, ns)]
        missing: list[Obj] = []
        for rule in wanted:
            for atom in _breakdown(rule):
                if not any(_rule_covers(h, atom) for h in held):
                    missing.append(atom)
        return missing


def _breakdown(rule: Obj) -> list[Obj]:
    out: list[Obj] = []
    verbs = rule.get("verbs") or []
    if rule.get("nonResourceURLs"):
        for u in rule["nonResourceURLs"]:
            for v in verbs:
                out.append({"nonResourceURLs": [u], "verbs": [v]})
        return out
    for g in rule.get("apiGroups") or [""]:
        for r in rule.get("resources") or []:
            for v in verbs:
                names = rule.get("resourceNames") or []
                if names:
                    for n in names:
                        out.append({"apiGroups": [g], "resources": [r], "verbs": [v], "resourceNames": [n]})
                else:
                    out.append({"apiGroups": [g], "resources": [r], "verbs": [v]})
    return out


def _rule_covers(h: Obj, atom: Obj) -> bool:
    if not _has(h.get("verbs"), atom["verbs"][0]):
        return False
    if "nonResourceURLs" in atom:
        u = atom["nonResourceURLs"][0]
        return any(x == u or x == "*" or (x.endswith("*") and u.startswith(x[:-1]))
                   for x in h.get("nonResourceURLs") or ())
    if not _has(h.get("apiGroups"), atom["apiGroups"][0]):
        return False
    r = atom["resources"][0]
    hres = h.get("resources") or []
    if not ("*" in hres or r in hres or ("/" in r and "*/" + r.split("/", 1)[1] in hres)):
        return False
    hn = h.get("resourceNames") or []
    if not hn:
        return True
    return bool(atom.get("resourceNames")) and atom["resourceNames"][0] in hn


def format_rule(r: Obj) -> str:
    """Render a PolicyRule compactly like rbac's ``CompactString``."""
    parts = []
    for k, label in (("apiGroups", "APIGroups"), ("resources", "Resources"), ("resourceNames", "ResourceNames"),
                     ("nonResourceURLs", "NonResourceURLs"), ("verbs", "Verbs")):
        if r.get(k):
            parts.append(f"{label}:[" + " ".join(json.dumps(x) for x in r[k]) + "]")
    return "{" + ", ".join(parts) + "}"


def bootstrap_rbac() -> list[tuple[tuple[str, str], Obj]]:
    """The default ClusterRoles/bindings a fresh cluster has (a compact subset)."""
    def cr(name: str, rules: list[Obj], labels: dict[str, str] | None = None) -> tuple[tuple[str, str], Obj]:
        return K_CROLES, {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole",
                          "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults",
                                                                **(labels or {})}},
                          "rules": rules}

    def crb(name: str, role: str, subjects: list[Obj]) -> tuple[tuple[str, str], Obj]:
        return K_CRB, {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                       "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                       "subjects": subjects}

    grp = "rbac.authorization.k8s.io"
    rw = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    ro = ["get", "list", "watch"]
    ns_res = ["pods", "pods/log", "pods/status", "configmaps", "secrets", "services", "serviceaccounts",
              "events", "endpoints", "resourcequotas", "limitranges", "persistentvolumeclaims"]
    return [
        cr("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                             {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        cr("admin", [{"apiGroups": ["", "apps", "batch", "events.k8s.io", "coordination.k8s.io", "policy"],
                      "resources": [*ns_res, "jobs", "deployments", "leases", "poddisruptionbudgets"], "verbs": rw},
                     {"apiGroups": [grp], "resources": ["roles", "rolebindings"], "verbs": rw}],
           ),
        cr("edit", [{"apiGroups": ["", "apps", "batch", "events.k8s.io", "coordination.k8s.io", "policy"],
                     "resources": [*ns_res, "jobs", "deployments", "leases", "poddisruptionbudgets"], "verbs": rw}]),
        cr("view", [{"apiGroups": ["", "apps", "batch", "events.k8s.io", "policy"],
                     "resources": [r for r in ns_res if r != "secrets"] + ["jobs", "deployments"], "verbs": ro}]),
        cr("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                     "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                                 "verbs": ["get"]}]),
        cr("system:basic-user", [{"apiGroups": ["authorization.k8s.io"],
                                  "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                                  "verbs": ["create"]},
                                 {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                                  "verbs": ["create"]}]),
        cr("system:public-info-viewer", [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                              "/version/"], "verbs": ["get"]}]),
        cr("system:auth-delegator", [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
                                      "verbs": ["create"]},
                                     {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
                                      "verbs": ["create"]}]),
        crb("cluster-admin", "cluster-admin", [{"apiGroup": RBAC, "kind": "Group", "name": "system:masters"}]),
        crb("system:discovery", "system:discovery",
            [{"apiGroup": RBAC, "kind": "Group", "name": "system:authenticated"}]),
        crb("system:basic-user", "system:basic-user",
            [{"apiGroup": RBAC, "kind": "Group", "name": "system:authenticated"}]),
        crb("system:public-info-viewer", "system:public-info-viewer",
            [{"apiGroup": RBAC, "kind": "Group", "name": "system:authenticated"},
             {"apiGroup": RBAC, "kind": "Group", "name": "system:unauthenticated"}]),
    ]
