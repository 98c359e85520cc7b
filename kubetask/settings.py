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
    """Deleting a Tenant deletes its namespace too (default: the namespace is kept); only a namespace the
    operator itself created for that Tenant, never one that existed before."""

    release_namespace: str | None = None
    """The namespace kubetask itself is installed in (the chart's release namespace): no Tenant may claim it.
    Unset: ``webhook_service_namespace``, if that is set."""

    tenant_namespace_allowlist: list[str] = Field(default_factory=list)
    """System namespaces (``kube-*``, ``default``, the release's own) a Tenant may nevertheless claim, e.g.
    ``["default"]`` on a single-user dev cluster.  Empty: none; the webhook and the operator refuse them."""

    callback_secret: str = "kubetask-dev-callback-secret"
    """HMAC key for per-task completion-callback tokens; set a real secret in production."""

    callback_url: str | None = None
    """URL of the REST API as seen from task pods, passed to them for the completion callback."""

    api_keys_secret_namespace: str | None = None
    """Where to publish every Tenant's API-key digests (one Secret, the release namespace), so the API reads
    them without any Secret grant elsewhere; unset: nothing is published (the API reads the key Secrets itself)."""

    api_keys_secret_name: str = "kubetask-api-keys"
    """Name of the published API-key digest Secret (the API's ``keys_secret_name``)."""

    api_keys_resync_seconds: float = 30.0
    """How often key Secrets without the ``kubetask.io/api-key=true`` label (not watched) are re-read."""

    api_service_account_name: str | None = None
    """The API's ServiceAccount: bound in each tenant namespace to ``api_tenant_cluster_role``."""

    api_service_account_namespace: str | None = None
    """Namespace of ``api_service_account_name`` (the release namespace)."""

    api_tenant_cluster_role: str | None = None
    """ClusterRole with what the API needs in a tenant namespace (alert acks, webhook signing secrets); the
    operator binds it there with a RoleBinding per Tenant. Unset (or no service account): no binding."""


class ApiSettings(BaseSettings):
    """The FastAPI REST facade."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_API_", extra="ignore")

    host: str = "127.0.0.1"
    """Address to bind."""

    port: int = 8000
    """Port to bind."""

    default_rate_limit_per_minute: int = 600
    """Requests per minute per tenant when the Tenant sets no ``requestsPerMinute``."""

    replicas: int = Field(default=1, ge=1)
    """API replicas serving behind one Service (the chart sets it from ``api.replicas``): each replica counts
    only its own requests, so it allows a tenant ``ceil(requestsPerMinute / replicas)`` of them per minute."""

    callback_secret: str = "kubetask-dev-callback-secret"
    """Must equal the operator's callback secret: it verifies per-task completion tokens."""

    tenant_namespace_prefix: str = "kubetask-"
    """Same meaning as the operator's setting of that name."""

    keys_secret_namespace: str | None = None
    """Namespace of the operator-published API-key digest Secret: when set, API keys are checked against that
    one Secret only (RBAC: get/list/watch on it alone). Unset: the API reads the Tenants' key Secrets itself,
    which needs Secret read wherever they live (dev and tests with admin credentials)."""

    keys_secret_name: str = "kubetask-api-keys"
    """Name of that Secret (the operator's ``api_keys_secret_name``)."""

    apiserver_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long each request the API makes to the apiserver (watches excepted) may go without an answer:
    connecting, then between two reads (waiting for a pooled connection does not count; the whole request is
    capped at six times this). A write that misses it answers 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After``
    instead of hanging the client."""

    apiserver_probe_interval_seconds: float = Field(default=1.0, gt=0)
    """How often the API checks that the apiserver answers (``GET /version``, with the deadline above capped
    at 2 s). While it does not, writes are refused at once with 503 and reads from the watch cache are marked
    stale (``Warning: 110``, ``X-Kubetask-Stale``)."""

    retry_after_seconds: int = Field(default=5, ge=1)
    """The ``Retry-After`` the API sends with a 503 while the apiserver is unreachable."""


class WebhookSettings(BaseSettings):
    """Completion webhooks (``TaskWebhook``): read by the operator, which delivers, and the API, which checks
    URLs when a subscription is created.  Set the same values on both."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_WEBHOOK_", extra="ignore")

    allowed_networks: list[str] = Field(default_factory=list)
    """CIDRs deliveries may reach although they are internal (loopback, private, link-local…), e.g.
    ``["10.20.0.0/16"]`` for an in-cluster receiver.  Empty: internal addresses are refused (SSRF guard)."""

    retry_horizon_seconds: float = 86400.0
    """How long after an event its delivery is retried: a receiver down for less loses nothing."""

    backoff_base_seconds: float = 5.0
    """Delay after the first failed attempt; doubles after each further one."""

    backoff_max_seconds: float = 600.0
    """Longest delay between two attempts."""

    timeout_seconds: float = 10.0
    """How long one attempt waits for the receiver's answer."""

    history_size: int = 20
    """Attempts kept per subscription (``GET /api/v1/webhooks/{id}/deliveries``)."""

    max_pending: int = 1000
    """Undelivered events kept per subscription; beyond it the oldest are abandoned (and recorded)."""

    rescan_margin_seconds: float = 600.0
    """After a restart the operator rescans Tasks finished this long before its last scan (late status writes)."""


class LiveSettings(BaseSettings):
    """Live updates of the REST API (SSE ``/api/v1/tasks/events``, WebSocket ``/ws/tasks``), from its watch cache."""

    model_config = SettingsConfigDict(env_prefix="KUBETASK_LIVE_", extra="ignore")

    window_events: int = 4096
    """Task changes kept in memory for ``Last-Event-ID`` resumption; an older id gets an explicit ``reset``."""

    client_buffer: int = 1000
    """Events queued for one client that reads too slowly; one more closes its stream with ``overflow``."""

    max_streams_per_tenant: int = 100
    """Open SSE/WebSocket streams per tenant; one more is answered 429."""

    websocket_auth_seconds: float = 10.0
    """How long a WebSocket without credentials in its handshake has to send ``{"action": "auth"}``."""
