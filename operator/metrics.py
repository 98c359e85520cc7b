"""Prometheus metrics of one operator instance (DESIGN §6), on its own CollectorRegistry."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled")


class Metrics:
    """The operator's gauges, counters and histograms; a fresh registry per instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Gauge("kubetask_tasks", "Tasks by phase", ["phase"], registry=self.registry)
        self.queue_depth = Gauge("kubetask_queue_depth", "Queued tasks waiting for admission", ["queue"],
                                 registry=self.registry)
        self.admission_wait = Histogram(
            "kubetask_admission_wait_seconds", "Time from Queued to admission",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf")),
            registry=self.registry)
        self.reconcile_errors = Counter("kubetask_reconcile_errors_total", "Failed reconcile actions",
                                        registry=self.registry)
        self.gpus_allocated = Gauge("kubetask_gpus_allocated", "GPUs held by admitted tasks", ["tenant"],
                                    registry=self.registry)
        self.admissions = Counter("kubetask_admissions_total", "Executions admitted", registry=self.registry)
        self.quota_reports_believed = Counter(
            "kubetask_quota_reports_believed_total",
            "Finished pods no longer added to a quota report older than them: the report is too small to hold "
            "them, or their grace passed (the quota controller rewrites only a changed usage)", ["reason"],
            registry=self.registry)
        self.quota_lag_retries = Counter(
            "kubetask_quota_lag_retries_total",
            "Job or pod creates the apiserver's quota admission refused on its lagging copy of the quota, tried "
            "again at once (a refusal that outlasts the retries is a JobCreateFailed Event)",
            registry=self.registry)
        self.scheduler_passes = Counter("kubetask_scheduler_passes_total", "Scheduler passes",
                                        registry=self.registry)
        self.plan_seconds = Histogram(
            "kubetask_scheduler_plan_seconds", "Time a scheduler pass spent deciding (the next pass waits as long)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=self.registry)
        self.admission_review_seconds = Histogram(
            "kubetask_admission_review_duration_seconds",
            "How long the operator took to answer an admission review, from its request to its answer, by webhook",
            ["webhook"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry)
        self.webhook_deliveries = Counter(
            "kubetask_webhook_delivery_attempts_total", "Completion-webhook delivery attempts by outcome",
            ["outcome"], registry=self.registry)
        self.webhook_delivery_seconds = Histogram(
            "kubetask_webhook_delivery_duration_seconds", "How long a receiver took to answer a delivery",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.webhook_pending = Gauge("kubetask_webhook_deliveries_pending",
                                     "Deliveries not yet acknowledged by their receiver, over all subscriptions",
                                     registry=self.registry)
        self._queues: set[str] = set()
        self._tenants: set[str] = set()

    def set_phases(self, counts: dict[str, int]) -> None:
        for phase in PHASES:
            self.tasks.labels(phase=phase).set(counts.get(phase, 0))

    def set_queue_depths(self, depths: dict[str, int]) -> None:
        for queue in self._queues - set(depths):
            self.queue_depth.labels(queue=queue).set(0)
        for queue, depth in depths.items():
            self.queue_depth.labels(queue=queue).set(depth)
        self._queues |= set(depths)

    def set_gpus(self, gpus: dict[str, int]) -> None:
        for tenant in self._tenants - set(gpus):
            self.gpus_allocated.labels(tenant=tenant).set(0)
        for tenant, count in gpus.items():
            self.gpus_allocated.labels(tenant=tenant).set(count)
        self._tenants |= set(gpus)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Serve ``/metrics`` (and ``/healthz``) on ``port``; the caller cleans the runner up."""

    async def handle_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.get("/metrics", handle_metrics), web.get("/healthz", handle_health)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
