"""Prometheus metrics of the API (one registry per app, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
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

    def track_tasks(self, tasks: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.registry.register(TaskCollector(tasks))
