"""Resource types served by the sim: built-ins plus CRDs registered at runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    """One served resource (group/version/plural) and what the API knows about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: list(RW))
    subresources: dict[str, list[str]] = field(default_factory=dict)  # name -> verbs
    has_status: bool = False
    list_kind: str = ""
    #: For custom resources: the CRD version entry (schema, printer columns, subresources).
    crd_version: Obj | None = None
    crd_name: str = ""
    #: Virtual (create-only review) resources are never stored.
    virtual: bool = False

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.list_kind:
            self.list_kind = self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_custom(self) -> bool:
        return self.crd_version is not None


def _sub(**kw: list[str]) -> dict[str, list[str]]:
    return {k.replace("__", "/"): v for k, v in kw.items()}


GPU = ["get", "patch", "update"]


def builtin_types() -> list[ResourceType]:
    """The built-in API surface the sim serves."""
    R = ResourceType
    return [
        R("", "v1", "namespaces", "Namespace", False, short_names=["ns"],
          verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
          subresources={"status": GPU, "finalize": ["update"]}, has_status=True),
        R("", "v1", "pods", "Pod", True, short_names=["po"], categories=["all"],
          subresources={"status": GPU, "log": ["get"], "binding": ["create"], "eviction": ["create"]},
          has_status=True),
        R("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
        R("", "v1", "secrets", "Secret", True),
        R("", "v1", "services", "Service", True, short_names=["svc"], categories=["all"],
          verbs=["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
          subresources={"status": GPU}, has_status=True),
        R("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"],
          subresources={"token": ["create"]}),
        R("", "v1", "events", "Event", True, short_names=["ev"]),
        R("", "v1", "nodes", "Node", False, short_names=["no"], subresources={"status": GPU},
          has_status=True),
        R("", "v1", "resourcequotas", "ResourceQuota", True, short_names=["quota"],
          subresources={"status": GPU}, has_status=True),
        R("", "v1", "limitranges", "LimitRange", True, short_names=["limits"]),
        R("", "v1", "endpoints", "Endpoints", True, short_names=["ep"]),
        R("apps", "v1", "deployments", "Deployment", True, short_names=["deploy"], categories=["all"],
          subresources={"status": GPU, "scale": GPU}, has_status=True),
        R("batch", "v1", "jobs", "Job", True, categories=["all"], subresources={"status": GPU},
          has_status=True),
        R("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"]),
        R("coordination.k8s.io", "v1", "leases", "Lease", True),
        R("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        R("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        R("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
          short_names=["crd", "crds"], categories=["api-extensions"], subresources={"status": GPU},
          has_status=True),
        R("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
          "MutatingWebhookConfiguration", False, categories=["api-extensions"]),
        R("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
          "ValidatingWebhookConfiguration", False, categories=["api-extensions"]),
        R("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=["create"],
          virtual=True),
        R("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
          verbs=["create"], virtual=True),
        R("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", True,
          verbs=["create"], virtual=True),
        R("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, short_names=["pdb"],
          subresources={"status": GPU}, has_status=True),
    ]


#: Preferred order of groups in discovery (``/apis``), like the real aggregator.
GROUP_ORDER = [
    "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "batch",
    "policy", "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "coordination.k8s.io",
]
