"""The web dashboard at ``/ui``: server-rendered HTML (Jinja2) with htmx, vendored from npm (no CDN).

Pages are static shells (``/ui``, ``/ui/tasks/{id}``); their panels are fragments under ``/ui/fragments/``
that need the same credentials as the REST API: ``static/app.js`` keeps the API key the user signs in
with in the tab's sessionStorage and sends it as ``X-API-Key`` on every htmx request.  It also reads the
SSE stream (``/api/v1/tasks/events``) and refreshes the panels a change touches, so the pages update live
without polling.  A user sees only what the REST API would show them (the same helpers decide).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from kubetask.api.deps import CurrentUser, State, TaskCache
from kubetask.api.routes.common import find_task, tenant_of, user_tasks
from kubetask.api.routes.workers import gpu_keys
from kubetask.api.state import AppState
from kubetask.core.objects import Obj
from kubetask.core.phases import TERMINAL_PHASES, task_phase
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.insights import trends
from kubetask.core.rest.present import execution_public, limits_public, task_public, timeline
from kubetask.core.rest.workers import is_worker, worker_public
from kubetask.kube.client import EVENTS, ApiError

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_FILES = {"htmx.min.js": "text/javascript", "app.js": "text/javascript", "app.css": "text/css"}
templates = Jinja2Templates(directory=str(HERE / "templates"))

# No inline script or style anywhere: the pages run only the vendored htmx and app.js from this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LIST_ROWS = 50
RECENT_ROWS = 20
LOG_TAIL_LINES = 200

router = APIRouter(prefix="/ui", include_in_schema=False)
TaskId = Annotated[str, PathParam(max_length=253)]


def _html(request: Request, template: str, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context)
    response.headers.update(SECURITY_HEADERS)
    return response


# --------------------------------------------------------------------------- pages and assets


@router.get("", response_class=HTMLResponse)
async def overview_page(request: Request) -> HTMLResponse:
    return _html(request, "page.html", page="overview", task_id=None)


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, task_id: TaskId) -> HTMLResponse:
    return _html(request, "page.html", page="task", task_id=task_id)


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    media = STATIC_FILES.get(name)
    if media is None:
        raise RestError(404, "NOT_FOUND", f"no static file {name}")
    return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-cache",
                                                                  "X-Content-Type-Options": "nosniff"})


# --------------------------------------------------------------------------- view models (pure)




def queue_summary(tasks: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """Per tenant: waiting, running, completed, failed and cancelled counts (tenants in name order)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    words = {"Pending": "waiting", "Queued": "waiting", "Running": "running", "Succeeded": "completed",
             "Failed": "failed", "Cancelled": "cancelled"}
    for obj in tasks:
        owner = str((obj.get("spec") or {}).get("user") or (obj.get("metadata") or {}).get("namespace"))
        counts[owner][words.get(task_phase(obj), "waiting")] += 1
    return [{"tenant": name, **{k: c.get(k, 0) for k in ("waiting", "running", "completed", "failed", "cancelled")}}
            for name, c in sorted(counts.items())]


def split_tasks(tasks: Sequence[Mapping[str, Any]]) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(waiting in queue order, running newest first, finished newest first), each as public tasks."""
    waiting = [o for o in tasks if task_phase(o) in ("Pending", "Queued")]
    running = [o for o in tasks if task_phase(o) == "Running"]
    done = [o for o in tasks if task_phase(o) in TERMINAL_PHASES]
    waiting.sort(key=lambda o: ((o.get("status") or {}).get("queuePosition") or 1 << 30,
                                str((o.get("metadata") or {}).get("creationTimestamp") or "")))
    running.sort(key=lambda o: str((o.get("status") or {}).get("startedAt") or ""), reverse=True)
    done.sort(key=lambda o: str((o.get("status") or {}).get("completedAt") or ""), reverse=True)
    return ([task_public(o) for o in waiting[:LIST_ROWS]], [task_public(o) for o in running[:LIST_ROWS]],
            [task_public(o) for o in done[:RECENT_ROWS]])


def chart(series: Sequence[Mapping[str, Any]], width: int = 720, height: int = 160) -> Obj:
    """Bar geometry for completed (and failed, stacked) tasks per bucket; heights in SVG units."""
    peak = max([int(b["completed"]) + int(b["failed"]) for b in series] + [1])
    slot = width / max(1, len(series))
    bars = []
    for i, bucket in enumerate(series):
        ok, bad = int(bucket["completed"]), int(bucket["failed"])
        ok_h, bad_h = round(ok / peak * (height - 20), 1), round(bad / peak * (height - 20), 1)
        bars.append({"x": round(i * slot + 2, 1), "w": round(max(1.0, slot - 4), 1), "label": bucket["bucket"],
                     "ok": ok, "bad": bad, "ok_y": round(height - ok_h, 1), "ok_h": ok_h,
                     "bad_y": round(height - ok_h - bad_h, 1), "bad_h": bad_h})
    return {"width": width, "height": height, "peak": peak, "bars": bars}


# --------------------------------------------------------------------------- fragments (authenticated)


def _visible_tasks(state: AppState, user: Any) -> list[Obj]:
    return user_tasks(state, user)


@router.get("/fragments/overview", response_class=HTMLResponse)
async def overview_fragment(request: Request, user: CurrentUser, state: State, tasks: TaskCache) -> HTMLResponse:
    mine = _visible_tasks(state, user)
    waiting, running, done = split_tasks(mine)
    return _html(request, "overview.html", user=user, summary=queue_summary(mine), waiting=waiting,
                 running=running, done=done, total=len(mine))


@router.get("/fragments/workers", response_class=HTMLResponse)
async def workers_fragment(request: Request, user: CurrentUser, state: State) -> HTMLResponse:
    nodes = state.informers.informers.get("nodes")
    pods = state.informers.informers.get("pods")
    keys = gpu_keys(state)
    rows = []
    for node in sorted(nodes.list() if nodes else [], key=lambda n: str(n["metadata"]["name"])):
        if not is_worker(node, keys):
            continue
        name = str(node["metadata"]["name"])
        on_node = pods.by_index("node", name) if pods else []
        # Only counts: which tasks of other tenants run there is not this user's business.
        worker = worker_public(node, on_node, gpu=keys, visible_namespaces=None if user.is_admin else set())
        rows.append(worker)
    return _html(request, "workers.html", workers=rows)


@router.get("/fragments/usage", response_class=HTMLResponse)
async def usage_fragment(request: Request, user: CurrentUser, state: State, tasks: TaskCache) -> HTMLResponse:
    mine = _visible_tasks(state, user)
    own = [o for o in mine if (o.get("metadata") or {}).get("namespace") == user.namespace]
    limits = limits_public(tenant_of(state, user), own)
    history = trends(mine, hours=24, interval="hourly")
    return _html(request, "usage.html", user=user, limits=limits, trend=history, chart=chart(history["series"]))


@router.get("/fragments/task/{task_id}", response_class=HTMLResponse)
async def task_fragment(request: Request, task_id: TaskId, user: CurrentUser, state: State,
                        tasks: TaskCache) -> HTMLResponse:
    obj = find_task(state, user, task_id)
    public = task_public(obj)
    executions = (obj.get("status") or {}).get("executions") or []
    runs = [execution_public(e, obj, latest=i == len(executions) - 1) for i, e in enumerate(executions)]
    meta = obj["metadata"]
    events: list[Obj] = []
    try:
        listed = await state.client.list(EVENTS, meta.get("namespace"),
                                         field_selector=f"involvedObject.name={meta['name']}")
        events = [e for e in listed.get("items") or []
                  if (e.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))]
    except ApiError:
        events = []
    logs, logs_note = await _logs(state, obj, runs)
    return _html(request, "task.html", task=public, runs=list(reversed(runs)),
                 timeline=timeline(obj, events)["events"],
                 logs=logs, logs_note=logs_note, result=public.get("result"))


async def _logs(state: AppState, obj: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    pod = runs[-1].get("pod_name") if runs else None
    if not pod:
        return "", "no logs yet: the task has not started"
    try:
        text = await state.client.pod_logs(str(pod), str(obj["metadata"]["namespace"]), tail_lines=LOG_TAIL_LINES)
    except ApiError as error:
        if error.status in (400, 404, 405, 501):
            return "", "no logs: the pod is gone, or this cluster serves no pod logs"
        return "", f"logs unavailable: {error}"
    return text, f"last {LOG_TAIL_LINES} lines of pod {pod}"
