"""Prometheus metrics of the API (one registry per app, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from kubetask.core.phases import PUBLIC_STATUSES, public_status
from kubetask.core.times import parse_time

PROCESSING_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class TaskCollector(Collector):
    """``kubetask_api_tasks{status}``, ``kubetask_api_queue_depth`` and the Task Manager API's
    ``task_manager_tasks_total{status}`` and ``task_manager_processing_time_seconds`` (histogram of the
    finished tasks' run times), computed from the watch cache at scrape time."""

    def __init__(self, tasks: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._tasks = tasks

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(PUBLIC_STATUSES, 0)
        durations: list[float] = []
        for task in self._tasks():
            status = public_status(task)
            counts[status] = counts.get(status, 0) + 1
            if status in ("completed", "failed"):
                seconds = _run_seconds(task)
                if seconds is not None:
                    durations.append(seconds)
        phases = GaugeMetricFamily("kubetask_api_tasks", "Tasks in the API's cache by public status",
                                   labels=["status"])
        legacy = GaugeMetricFamily("task_manager_tasks_total", "Tasks by status (the Task Manager API name)",
                                   labels=["status"])
        for status, count in counts.items():
            phases.add_metric([status], count)
            legacy.add_metric([status], count)
        yield phases
        yield legacy
        depth = GaugeMetricFamily("kubetask_api_queue_depth", "Tasks waiting (pending or queued)")
        depth.add_metric([], counts["pending"] + counts["queued"])
        yield depth
        processing = HistogramMetricFamily("task_manager_processing_time_seconds",
                                           "Task processing time, start to finish (the Task Manager API name)")
        buckets = [(str(bound), float(sum(1 for d in durations if d <= bound))) for bound in PROCESSING_BUCKETS]
        buckets.append(("+Inf", float(len(durations))))
        processing.add_metric([], buckets, sum_value=sum(durations))
        yield processing


def _run_seconds(task: dict[str, Any]) -> float | None:
    status = task.get("status") or {}
    started, finished = parse_time(status.get("startedAt")), parse_time(status.get("completedAt"))
    if started is None or finished is None:
        return None
    return max(0.0, (finished - started).total_seconds())


class LiveCollector(Collector):
    """``kubetask_api_live_*``: the live hub's open subscriptions, events published, overflowed clients.

    Read from the hub at scrape time (plain ints it keeps anyway): nothing is added to the fan-out's path."""

    def __init__(self, subscribers: Callable[[], int], published: Callable[[], int],
                 overflows: Callable[[], int]) -> None:
        self._subscribers, self._published, self._overflows = subscribers, published, overflows

    def collect(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily("kubetask_api_live_subscribers", "Open SSE and WebSocket subscriptions")
        open_now.add_metric([], self._subscribers())
        yield open_now
        published = CounterMetricFamily("kubetask_api_live_events", "Task events published to live subscribers")
        published.add_metric([], self._published())
        yield published
        overflows = CounterMetricFamily("kubetask_api_live_overflows",
                                        "Live clients closed because they fell too far behind")
        overflows.add_metric([], self._overflows())
        yield overflows


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kubetask_api_requests", "HTTP requests served", ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubetask_api_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def exposition(self, tasks: Iterable[dict[str, Any]] | None) -> bytes:
        """The API's own metrics, plus the task metrics over ``tasks`` (the caller's, scoped by the route;
        ``None``: an anonymous scrape, which learns nothing about what tenants run)."""
        out = generate_latest(self.registry)
        if tasks is None:
            return out
        scoped = CollectorRegistry(auto_describe=True)
        scoped.register(TaskCollector(lambda: tasks))
        return out + generate_latest(scoped)

    def track_live(self, collector: LiveCollector) -> None:
        self.registry.register(collector)
