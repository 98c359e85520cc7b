"""``/search``: the Distributed Task Queue System API's advanced search, filter presets and CSV export, served from
the task cache.

The filters, sort and paging are :func:`kubetask.core.rest.query.make_query` /
:func:`~kubetask.core.rest.query.query_tasks` (the same as ``GET /tasks``); ``task_name``
and ``worker_id`` are matched by :mod:`kubetask.core.rest.insights`.  A user sees only
their own tasks (an admin: everyone's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from kubetask.api.auth import Principal
from kubetask.api.deps import Compat, CurrentUser, State, TaskCache
from kubetask.api.insights_schemas import PresetList, PresetResult, SearchResult
from kubetask.api.routes.common import FastJSON, present, user_tasks
from kubetask.api.schemas import error_responses
from kubetask.api.state import AppState
from kubetask.core.rest.errors import RestError
from kubetask.core.rest.insights import PRESETS, apply_preset, presets_public, ran_on, task_name_matches, tasks_csv
from kubetask.core.rest.profiles import Profile
from kubetask.core.rest.query import MAX_LIMIT, TaskQuery, list_envelope, make_query, query_tasks
from kubetask.core.times import utcnow

router = APIRouter(prefix="/search", tags=["search"])

MAX_EXPORT_ROWS = 100_000

StatusQ = Annotated[list[str] | None, Query(description="Any case or synonym; comma-separated or repeated")]
PriorityQ = Annotated[str | None, Query(description="Exact priority 0-10")]
TaskNameQ = Annotated[str | None, Query(max_length=255, description="Task name, template or task type "
                                                                    "(case-insensitive; * and ? wildcards)")]
WorkerQ = Annotated[str | None, Query(max_length=253, description="Node the task runs or ran on")]
DateQ = Annotated[str | None, Query(description="ISO 8601 date or date-time")]
SearchQ = Annotated[str | None, Query(max_length=500, description="Full text over name, id, description, tags, "
                                                                  "template, image, queue …")]
LimitQ = Annotated[int | None, Query(ge=1, le=MAX_LIMIT)]
OffsetQ = Annotated[int | None, Query(ge=0)]


def _search(
    state: AppState, user: Principal, profile: Profile, *, status: Sequence[str] | None, priority: str | None,
    task_name: str | None, worker_id: str | None, created_after: str | None, created_before: str | None,
    search: str | None, queue_name: str | None, sort_by: str | None, sort_order: str | None,
    limit: int | None, offset: int | None, page: int | None, export_rows: int | None = None,
) -> tuple[int, list[Mapping[str, Any]], TaskQuery]:
    q = make_query(status=status, priority=priority, queue_name=queue_name, created_after=created_after,
                   created_before=created_before, search=search, sort_by=sort_by, sort_order=sort_order,
                   limit=None if export_rows else limit, offset=offset, page=page)
    if export_rows:
        q.limit = export_rows  # CSV export: every match up to its own cap, not one page
    objs: list[Mapping[str, Any]] = list(user_tasks(state, user))
    if task_name and task_name.strip():
        objs = [o for o in objs if task_name_matches(o, task_name)]
    if worker_id and worker_id.strip():
        objs = [o for o in objs if ran_on(o, worker_id.strip())]
    total, items = query_tasks(objs, q)
    return total, items, q


@router.get("/tasks", name="tasks", response_model=SearchResult, responses=error_responses(401, 422, 429, 503),
            summary="Advanced task search")
async def search_tasks(
    user: CurrentUser, state: State, tasks: TaskCache, profile: Compat,
    status: StatusQ = None, priority: PriorityQ = None, task_name: TaskNameQ = None, worker_id: WorkerQ = None,
    created_after: DateQ = None, created_before: DateQ = None, search: SearchQ = None,
    queue_name: str | None = None,
    sort_by: Annotated[str | None, Query(description="created_at (default), priority, status, name …")] = None,
    sort_order: Annotated[str | None, Query(description="asc or desc")] = None,
    limit: LimitQ = None, offset: OffsetQ = None, page: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The Distributed Task Queue System API: ``?status=FAILED&created_after=2026-01-24&search=payment&limit=50`` ->
    ``{total, limit, offset, tasks}``."""
    total, items, q = _search(state, user, profile, status=status, priority=priority, task_name=task_name,
                              worker_id=worker_id, created_after=created_after, created_before=created_before,
                              search=search, queue_name=queue_name, sort_by=sort_by, sort_order=sort_order,
                              limit=limit, offset=offset, page=page)
    return FastJSON(list_envelope(total, q, [present(o, profile) for o in items]))


@router.get("/presets", name="presets", response_model=PresetList, responses=error_responses(401, 429, 503),
            summary="Filter presets")
async def list_presets(user: CurrentUser) -> Response:
    """``failed_today``, ``high_priority_pending``, ``stuck_tasks``, ``recently_completed``,
    ``long_waiting``, ``running_now``."""
    return FastJSON(presets_public())


@router.get("/presets/{name}", name="apply-preset", response_model=PresetResult,
            responses=error_responses(401, 404, 422, 429, 503), summary="Apply a filter preset")
async def apply_preset_route(
    user: CurrentUser, state: State, tasks: TaskCache, profile: Compat,
    name: Annotated[str, Path(max_length=100, description="A preset name from GET /search/presets")],
    limit: LimitQ = None, offset: OffsetQ = None,
) -> Response:
    preset = PRESETS.get(name) or PRESETS.get(name.strip().lower().replace("-", "_"))
    if preset is None:
        raise RestError(404, "PRESET_NOT_FOUND",
                        f"no preset {name!r}; use one of {', '.join(PRESETS)}")
    q = make_query(sort_by=preset.sort_by, limit=limit, offset=offset)
    matched = apply_preset(preset, user_tasks(state, user), utcnow())
    total, items = query_tasks(matched, q)
    body = list_envelope(total, q, [present(o, profile) for o in items])
    body.update({"preset": preset.name, "description": preset.description, "filters": dict(preset.filters)})
    return FastJSON(body)


@router.get(
    "/tasks/export/csv", name="export-csv", response_class=Response,
    responses={**error_responses(401, 422, 429, 503),
               200: {"content": {"text/csv": {"example": "task_id,task_name,status,priority\r\n"
                                                         "process-payment-1a2b3c4d,process_payment,failed,8\r\n"}},
                     "description": "CSV with a header row"}},
    summary="Export searched tasks as CSV",
)
async def export_csv(
    user: CurrentUser, state: State, tasks: TaskCache, profile: Compat,
    status: StatusQ = None, priority: PriorityQ = None, task_name: TaskNameQ = None, worker_id: WorkerQ = None,
    created_after: DateQ = None, created_before: DateQ = None, search: SearchQ = None,
    queue_name: str | None = None, sort_by: str | None = None, sort_order: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_EXPORT_ROWS,
                                       description=f"Rows (default: all matches, at most {MAX_EXPORT_ROWS})")]
    = None,
    offset: OffsetQ = None,
) -> Response:
    """Same filters as ``/search/tasks``; every match (not one page) unless ``limit`` is given."""
    total, items, _ = _search(state, user, profile, status=status, priority=priority, task_name=task_name,
                              worker_id=worker_id, created_after=created_after, created_before=created_before,
                              search=search, queue_name=queue_name, sort_by=sort_by, sort_order=sort_order,
                              limit=None, offset=offset, page=None, export_rows=limit or MAX_EXPORT_ROWS)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        tasks_csv(present(o, profile) for o in items), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tasks-{stamp}.csv"', "X-Total-Count": str(total)},
    )
