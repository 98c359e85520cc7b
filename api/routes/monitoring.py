"""``/analytics/trends``, ``/alerts`` and ``/resilience``: the Distributed Task Queue System API's monitoring and
resilience APIs.

Everything is computed from the watch caches at request time.  The only state
kubetask keeps for these lives in Kubernetes ConfigMaps, so it survives restarts:

* ``kubetask-alert-acks`` in the caller's tenant namespace: acknowledged alert ids;
* ``kubetask-degradations`` in the API's namespace: services marked degraded, with expiry.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response

from kubetask.api.auth import Principal
from kubetask.api.deps import AdminUser, CurrentUser, State, TaskCache
from kubetask.api.errors import problem_from_api_error
from kubetask.api.insights_schemas import (
    AlertAcknowledged,
    AlertList,
    DegradationMark,
    DegradationMarked,
    ResilienceSummary,
    Trends,
)
from kubetask.api.routes.common import FastJSON, tenant_of, user_tasks
from kubetask.api.routes.system import apiserver_status
from kubetask.api.routes.workers import NodeCache, PodCache, gpu_keys, visible_pods
from kubetask.api.schemas import error_responses
from kubetask.api.state import AppState
from kubetask.core.objects import Obj
from kubetask.core.rest.alerts import (
    SEVERITIES,
    Check,
    ack_record,
    active_degradations,
    compute_alerts,
    degradation_record,
    gpu_nodes_check,
    lease_check,
    parse_records,
    prune_expired,
    resilience_summary,
    validate_service_name,
    webhook_check,
)
from kubetask.core.rest.errors import RestError, invalid
from kubetask.core.rest.insights import MAX_TREND_HOURS, trends
from kubetask.core.times import format_time, utcnow
from kubetask.kube.client import CONFIGMAPS, LEASES, ApiError, KubeClient, Resource
from kubetask.settings import OperatorSettings

router = APIRouter()

ACKS_CONFIGMAP = "kubetask-alert-acks"
DEGRADATIONS_CONFIGMAP = "kubetask-degradations"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "kubetask", "app.kubernetes.io/component": "api"}
VALIDATING_WEBHOOKS = Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                               "ValidatingWebhookConfiguration", namespaced=False)
PROBE_TTL_SECONDS = 5.0
SERVICE_ACCOUNT_NAMESPACE = FilePath("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


# --------------------------------------------------------------------------- ConfigMap records


def api_namespace() -> str:
    """``KUBETASK_API_NAMESPACE``, ``POD_NAMESPACE``, the service account's namespace, else ``default``."""
    for variable in ("KUBETASK_API_NAMESPACE", "POD_NAMESPACE"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


async def read_records(client: KubeClient, name: str, namespace: str) -> Mapping[str, Any]:
    """The ConfigMap's ``data`` (empty when it or its namespace does not exist)."""
    try:
        config_map = await client.get_or_none(CONFIGMAPS, name, namespace)
    except ApiError as error:
        raise problem_from_api_error(error) from error
    return (config_map or {}).get("data") or {}


async def cached_records(state: AppState, name: str, namespace: str) -> Mapping[str, Any]:
    """:func:`read_records`, or the last copy read while the apiserver does not answer (the answer is then
    marked stale): a read must not wait for a deadline the monitor already knows will pass."""
    key = f"records:{namespace}/{name}"
    if not state.upstream.down:
        data = await read_records(state.client, name, namespace)
        state.extra[key] = data
        return data
    cached = state.extra.get(key)
    return cached if isinstance(cached, Mapping) else {}


async def update_records(client: KubeClient, name: str, namespace: str,
                         mutate: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
    """Read-modify-write of a ConfigMap's ``data`` with optimistic concurrency (created if missing)."""
    last: ApiError | None = None
    for _ in range(6):
        try:
            current = await client.get_or_none(CONFIGMAPS, name, namespace)
            if current is None:
                data = mutate({})
                await client.create(CONFIGMAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)},
                    "data": data,
                }, namespace)
                return data
            data = mutate({str(k): str(v) for k, v in (current.get("data") or {}).items()})
            current["data"] = data
            await client.replace(CONFIGMAPS, current, namespace)  # carries resourceVersion: 409 if raced
            return data
        except ApiError as error:
            if error.status == 409:
                last = error
                continue
            if error.status == 404:
                raise RestError(503, "SERVICE_UNAVAILABLE",
                                f"the namespace {namespace} does not exist (yet); cannot record {name}") from error
            raise problem_from_api_error(error) from error
    raise problem_from_api_error(last) if last else RestError(409, "CONFLICT", f"could not update {name}")


# --------------------------------------------------------------------------- analytics


@router.get("/analytics/trends", name="trends", tags=["analytics"], response_model=Trends,
            responses=error_responses(401, 422, 429, 503), summary="Task execution trends")
async def analytics_trends(
    user: CurrentUser, state: State, tasks: TaskCache,
    hours: Annotated[int, Query(ge=1, le=MAX_TREND_HOURS, description="Time period in hours")] = 24,
    interval: Annotated[str, Query(description="hourly or daily")] = "hourly",
) -> Response:
    """Completion rate, mean wait (submission → start), peak hours, failure reasons and a per-interval
    series over the caller's tasks (an admin: everyone's)."""
    return FastJSON(trends(user_tasks(state, user), hours=hours, interval=interval, now=utcnow()))


# --------------------------------------------------------------------------- alerts


def _tenants_for(state: AppState, user: Principal) -> list[Mapping[str, Any]]:
    return list(state.tenants.list()) if user.is_admin else [tenant_of(state, user)]


async def current_alerts(state: AppState, user: Principal, nodes: list[Obj], pods: list[Obj]) -> list[Obj]:
    acks = parse_records(await cached_records(state, ACKS_CONFIGMAP, user.namespace))
    return compute_alerts(user_tasks(state, user), nodes, pods, _tenants_for(state, user), acks=acks,
                          gpu=gpu_keys(state), now=utcnow())


@router.get("/alerts", name="list", tags=["alerts"], response_model=AlertList,
            responses=error_responses(401, 422, 429, 503), summary="Active alerts")
async def list_alerts(
    user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache,
    severity: Annotated[str | None, Query(description="INFO, WARNING or CRITICAL")] = None,
    acknowledged: Annotated[bool | None, Query(description="Only (un)acknowledged alerts")] = None,
) -> Response:
    """Alerts that hold now: HIGH_QUEUE_DEPTH, STUCK_TASK, WORKER_OFFLINE, HIGH_FAILURE_RATE,
    QUOTA_EXHAUSTED, QUOTA_NEARLY_EXHAUSTED, PENDING_LIMIT_REACHED. Ids are deterministic, so an
    acknowledgement sticks to its alert."""
    wanted = severity.strip().upper() if severity else None
    if wanted is not None and wanted not in SEVERITIES:
        raise invalid("severity", f"use one of {', '.join(SEVERITIES)}")
    alerts = await current_alerts(state, user, nodes.list(), visible_pods(user, pods.list()))
    alerts = [a for a in alerts if (wanted is None or a["severity"] == wanted)
              and (acknowledged is None or a["acknowledged"] == acknowledged)]
    return FastJSON({"alerts": alerts, "total": len(alerts)})


@router.post("/alerts/{alert_id}/acknowledge", name="acknowledge", tags=["alerts"], response_model=AlertAcknowledged,
             responses=error_responses(401, 404, 429, 503), summary="Acknowledge an alert")
async def acknowledge_alert(
    user: CurrentUser, state: State, tasks: TaskCache, nodes: NodeCache, pods: PodCache,
    alert_id: Annotated[str, Path(max_length=100, description="An alert_id from GET /alerts")],
) -> Response:
    """Recorded in the ConfigMap ``kubetask-alert-acks`` of the caller's namespace (survives restarts)."""
    alerts = await current_alerts(state, user, nodes.list(), visible_pods(user, pods.list()))
    alert = next((a for a in alerts if a["alert_id"] == alert_id), None)
    if alert is None:
        raise RestError(404, "ALERT_NOT_FOUND", f"no active alert {alert_id}")
    now = utcnow()
    active_ids = {a["alert_id"] for a in alerts}

    def add(data: dict[str, str]) -> dict[str, str]:
        # Keep the acknowledgements of alerts that still hold; forget the rest.
        kept = {k: v for k, v in data.items() if k in active_ids}
        kept.setdefault(alert_id, ack_record(alert, user.tenant, now))
        return kept

    data = await update_records(state.client, ACKS_CONFIGMAP, user.namespace, add)
    record = parse_records(data).get(alert_id, {})
    return FastJSON({"alert_id": alert_id, "acknowledged": True, "status": "acknowledged",
                     "acknowledged_at": record.get("acknowledged_at"),
                     "acknowledged_by": record.get("acknowledged_by"), "type": alert["type"]})


# --------------------------------------------------------------------------- resilience


async def _cached_probe(state: AppState, key: str, probe: Callable[[], Any]) -> Any:
    cached = state.extra.get(key)
    now = time.monotonic()
    if isinstance(cached, tuple) and now - cached[0] < PROBE_TTL_SECONDS:
        return cached[1]
    value = await probe()
    state.extra[key] = (now, value)
    return value


async def _webhook(state: AppState) -> Check:
    async def probe() -> Check:
        if state.upstream.down:
            return Check(False, "unknown: the Kubernetes API does not answer")
        try:
            listed = await state.client.list(VALIDATING_WEBHOOKS)
        except ApiError as error:
            return Check(False, f"cannot read webhook configurations: {error.status} {error.reason}")
        except Exception as error:
            return Check(False, f"cannot read webhook configurations: {type(error).__name__}")
        return webhook_check(listed.get("items") or [])
    result: Check = await _cached_probe(state, "resilience:webhook", probe)
    return result


async def _lease(state: AppState) -> Check | None:
    settings = OperatorSettings()

    async def probe() -> Check | None:
        if state.upstream.down:
            return Check(False, "unknown: the Kubernetes API does not answer")
        try:
            lease = await state.client.get_or_none(LEASES, settings.leader_lease_name,
                                                   settings.leader_lease_namespace)
        except ApiError as error:
            if error.status == 403:
                return None
            return Check(False, f"cannot read the operator lease: {error.status} {error.reason}")
        except Exception as error:
            return Check(False, f"cannot read the operator lease: {type(error).__name__}")
        return lease_check(lease, utcnow()) if lease is not None else None
    result: Check | None = await _cached_probe(state, "resilience:lease", probe)
    return result


@router.get("/resilience/summary", name="summary", tags=["resilience"], response_model=ResilienceSummary,
            responses=error_responses(401, 429, 503), summary="System resilience status")
async def resilience(user: CurrentUser, state: State, nodes: NodeCache) -> Response:
    """Real component checks (apiserver reachable, task cache synced, operator webhook configured,
    Ready GPU nodes, operator lease fresh when there is one), the services marked degraded, and a
    score: the % of healthy components."""
    (api_ok, api_detail), webhook, lease, degradations = await asyncio.gather(
        apiserver_status(state), _webhook(state), _lease(state),
        cached_records(state, DEGRADATIONS_CONFIGMAP, api_namespace()))
    unsynced = [name for name, inf in state.informers.informers.items() if not inf.synced]
    components: dict[str, Check] = {
        "apiserver": Check(api_ok, api_detail),
        "task_cache": Check(state.tasks.synced and not unsynced,
                            "synced" if not unsynced else f"syncing: {', '.join(unsynced)}"),
        "operator_webhook": webhook,
        "gpu_nodes": gpu_nodes_check(nodes.list(), gpu_keys(state)),
    }
    if lease is not None:
        components["operator_lease"] = lease
    now = utcnow()
    return FastJSON(resilience_summary(components, active_degradations(degradations, now), now))


@router.post("/resilience/degradation/mark", name="mark-degraded", tags=["resilience"],
             response_model=DegradationMarked, responses=error_responses(401, 403, 422, 429, 503),
             summary="Mark a service degraded")
async def mark_degraded(user: AdminUser, state: State,
                        body: Annotated[DegradationMark, Body()]) -> Response:
    """Recorded with its expiry in the ConfigMap ``kubetask-degradations`` of the API's namespace; the
    summary lists it until it expires. Marking again replaces the entry (new strategy and expiry)."""
    service = validate_service_name(body.service_name)
    now = utcnow()
    record = degradation_record(body.strategy, body.duration_seconds, by=user.tenant, now=now)

    def put(data: dict[str, str]) -> dict[str, str]:
        kept = prune_expired(data, now)
        kept[service] = record
        return kept

    await update_records(state.client, DEGRADATIONS_CONFIGMAP, api_namespace(), put)
    entry = parse_records({service: record})[service]
    return FastJSON({"service_name": service, "strategy": body.strategy, "duration_seconds": body.duration_seconds,
                     "status": "degraded", "marked_at": entry.get("marked_at") or format_time(now),
                     "expires_at": entry.get("expires_at"), "marked_by": user.tenant})
