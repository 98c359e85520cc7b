"""Runtime configuration, read from the environment (prefix ``KUBETASK_``).

Each setting is documented where it is declared; the Helm chart sets the same
variables from its values, so this module is the single list of knobs.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KubeSettings(BaseSettings):
    """How to reach the Kubernetes apiserver."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_", extra="ignore")

    kubeconfig: str | None = None
    """Path to a kubeconfig; unset means in-cluster config, then ``$KUBECONFIG``/``~/.kube/config``."""

    context: str | None = None
    """Kubeconfig context to use; unset means the current context."""


class GpuSettings(BaseSettings):
    """How GPU work is placed on nodes (DESIGN §3.4); all three are configurable per cluster."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_GPU_", extra="ignore")

    node_label_key: str = "nvidia.com/gpu.present"
    """Node label that marks GPU nodes; GPU tasks get a nodeSelector for it."""

    node_label_value: str = "true"
    """Value of the GPU node label."""

    product_label_key: str = "nvidia.com/gpu.product"
    """Node label holding the GPU model; ``resources.gpuType`` selects on it."""

    resource_name: str = "nvidia.com/gpu"
    """Extended resource that counts GPUs in requests, limits and ResourceQuota."""

    taint_key: str = "nvidia.com/gpu"
    """Taint key on GPU nodes; GPU tasks tolerate it (effect NoSchedule)."""

    cpu_tasks_on_gpu_nodes: bool = True
    """Whether CPU-only tasks (``gpus: 0``) may land on GPU nodes; false keeps them off with anti-affinity."""


class OperatorSettings(BaseSettings):
    """The Kopf operator."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_OPERATOR_", extra="ignore")

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster."""

    metrics_port: int = 9090
    """Port of the Prometheus metrics endpoint (0 disables it)."""

    liveness_port: int = 8080
    """Port of Kopf's liveness probe endpoint (0 disables it)."""

    webhook_enabled: bool = True
    """Serve the validating/mutating admission webhook."""

    webhook_host: str | None = None
    """Hostname the apiserver uses to reach the webhook (out-of-cluster: 127.0.0.1)."""

    webhook_port: int = 9443
    """Port of the webhook server."""

    webhook_service_name: str | None = None
    """In-cluster: the Service in front of the webhook; when set, the webhook config uses it."""

    webhook_service_namespace: str | None = None
    """Namespace of ``webhook_service_name``."""

    webhook_cert_dir: str | None = None
    """Directory with tls.crt/tls.key (e.g. from cert-manager); unset means a self-signed certificate."""

    webhook_manage_configuration: bool = True
    """Let the operator create/patch its (Validating|Mutating)WebhookConfiguration itself."""

    leader_election: bool = True
    """Run only while holding the Lease ``leader_lease_name``, so several replicas are safe."""

    leader_lease_name: str = "kubetask-operator"
    """Name of the coordination.k8s.io Lease used for leader election."""

    leader_lease_namespace: str = "default"
    """Namespace of the leader-election Lease."""

    default_queue: str = "default"
    """Queue name for tasks that name none."""

    tenant_namespace_prefix: str = "kubetask-"
    """A Tenant's namespace is ``<prefix><tenant>`` unless the Tenant says otherwise."""

    delete_namespace_with_tenant: bool = False
    """Deleting a Tenant deletes its namespace too (default: the namespace is kept)."""

    callback_secret: str = "kubetask-dev-callback-secret"
    """HMAC key for per-task completion-callback tokens; set a real secret in production."""

    callback_url: str | None = None
    """URL of the REST API as seen from task pods, passed to them for the completion callback."""


class ApiSettings(BaseSettings):
    """The FastAPI REST facade."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_API_", extra="ignore")

    host: str = "127.0.0.1"
    """Address to bind."""

    port: int = 8000
    """Port to bind."""

    default_rate_limit_per_minute: int = 600
    """Requests per minute per tenant when the Tenant sets no ``requestsPerMinute``."""

    callback_secret: str = "kubetask-dev-callback-secret"
    """Must equal the operator's callback secret: it verifies per-task completion tokens."""

    tenant_namespace_prefix: str = "kubetask-"
    """Same meaning as the operator's setting of that name."""
