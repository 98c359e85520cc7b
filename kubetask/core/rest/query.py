"""Queries: filters, sort and paging of ``GET /tasks`` and search, over cached Task objects or over
:class:`TaskRow` (the same keys precomputed once per object version), and the list envelopes.

Filters accept any case and every seed's synonyms (``status=FAILED``, ``success``, ``in-progress``);
an unknown word, sort field or page is a 422 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetask.core import jsonwire
from kubetask.core.models import DEFAULT_PRIORITY, DEFAULT_QUEUE
from kubetask.core.objects import ANNOTATION_MODEL_NAME, ANNOTATION_TASK_TYPE, Obj, creation_order
from kubetask.core.phases import PUBLIC_STATUSES, filter_key, filter_state, public_status, status_word
from kubetask.core.rest.errors import invalid
from kubetask.core.rest.intake import parse_priority, queue_label
from kubetask.core.rest.present import task_model
from kubetask.core.rest.profiles import CANONICAL, Profile
from kubetask.core.times import parse_time

# --------------------------------------------------------------------------- status filters


def normalize_status(value: str) -> str:
    """Any case or seed synonym -> the public status word; a 422 naming ``status`` for anything else."""
    status = status_word(value)
    if status is None:
        raise invalid("status", f"unknown status {value!r}; use one of {', '.join(PUBLIC_STATUSES)} (any case)")
    return status


def parse_status_filter(value: str | Sequence[str] | None) -> set[str]:
    """A status filter (comma-separated and/or repeated) -> the set of :func:`~kubetask.core.phases.filter_state`
    values it selects (``pending`` and ``queued`` both select every waiting task)."""
    if value is None:
        return set()
    parts = [value] if isinstance(value, str) else list(value)
    states: set[str] = set()
    for part in parts:
        for word in part.split(","):
            if word.strip():
                states.add(filter_key(normalize_status(word)))
    return states


# --------------------------------------------------------------------------- list queries

SORT_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {}


def _register_sorts() -> None:
    SORT_FIELDS.update({
        "created_at": creation_order,
        "priority": lambda o: (o.get("spec") or {}).get("priority", DEFAULT_PRIORITY),
        # Alphabetical, like every other string field (what a client comparing with sorted() expects).
        "status": lambda o: public_status(o),
        "name": lambda o: str((o.get("spec") or {}).get("displayName") or (o.get("metadata") or {}).get("name")),
        "id": lambda o: str((o.get("metadata") or {}).get("name")),
        "task_type": lambda o: str(((o.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_TASK_TYPE) or ""),
        "template": lambda o: str(((o.get("spec") or {}).get("template") or {}).get("name") or ""),
        "started_at": lambda o: str((o.get("status") or {}).get("startedAt") or ""),
        "completed_at": lambda o: str((o.get("status") or {}).get("completedAt") or ""),
        "queue_position": lambda o: (o.get("status") or {}).get("queuePosition") or 1 << 30,
        "queue_name": lambda o: str((o.get("spec") or {}).get("queue") or ""),
        "user_id": lambda o: str((o.get("spec") or {}).get("user") or ""),
        "scheduled_at": lambda o: str((o.get("spec") or {}).get("scheduledAt") or ""),
    })
    for alias, target in (("created", "created_at"), ("createdAt", "created_at"), ("task_name", "name"),
                          ("task_id", "id"), ("started", "started_at"), ("completed", "completed_at"),
                          ("updated_at", "created_at"), ("queue", "queue_name"), ("user", "user_id"),
                          ("startedAt", "started_at"), ("completedAt", "completed_at")):
        SORT_FIELDS[alias] = SORT_FIELDS[target]


_register_sorts()

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass
class TaskQuery:
    """Filters, sort and page for ``GET /tasks`` (and search)."""

    states: set[str] = field(default_factory=set)
    """:func:`~kubetask.core.phases.filter_state` values to keep (empty: every task)."""
    priority: int | None = None
    min_priority: int | None = None
    max_priority: int | None = None
    template: str | None = None
    task_type: str | None = None
    model_name: str | None = None
    queue_name: str | None = None
    tags: list[str] = field(default_factory=list)
    user: str | None = None
    worker_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    sort_by: str = "created_at"
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def make_query(
    *,
    status: str | Sequence[str] | None = None,
    priority: int | str | None = None,
    min_priority: int | None = None,
    max_priority: int | None = None,
    template: str | None = None,
    task_type: str | None = None,
    model_name: str | None = None,
    queue_name: str | None = None,
    tag: str | Sequence[str] | None = None,
    user: str | None = None,
    worker_id: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    search: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    page: int | None = None,
) -> TaskQuery:
    """Validate raw query parameters into a :class:`TaskQuery` (422 naming the parameter)."""
    q = TaskQuery()
    q.states = parse_status_filter(status)
    if priority is not None and priority != "":
        q.priority = parse_priority(priority)
    q.min_priority, q.max_priority = min_priority, max_priority
    q.template, q.task_type, q.model_name = template or None, task_type or None, model_name or None
    q.queue_name = queue_label(queue_name) if queue_name else None
    if tag:
        q.tags = [t for part in ([tag] if isinstance(tag, str) else tag) for t in part.split(",") if t]
    q.user, q.worker_id = user or None, worker_id or None
    for name, raw in (("created_after", created_after), ("created_before", created_before)):
        if raw:
            when = parse_time(raw)
            if when is None:
                raise invalid(name, "must be an ISO 8601 date or date-time")
            setattr(q, name, when)
    q.search = search.strip().lower() if search and search.strip() else None
    sort_key = (sort_by or "created_at").strip()
    descending_prefix = sort_key.startswith("-")
    sort_key = sort_key.lstrip("-+")
    if sort_key not in SORT_FIELDS:
        raise invalid("sort_by", f"unknown sort field {sort_key!r}; use one of "
                                 f"{', '.join(k for k in SORT_FIELDS if '_' in k or k.islower())}")
    q.sort_by = sort_key
    order = (sort_order or "").strip().lower()
    if order in ("", None):
        q.descending = sort_key in ("created_at", "created", "createdAt", "priority") or descending_prefix
    elif order in ("desc", "descending", "-1", "dsc"):
        q.descending = True
    elif order in ("asc", "ascending", "1"):
        q.descending = False
    else:
        raise invalid("sort_order", "must be 'asc' or 'desc'")
    q.limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= q.limit <= MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MAX_LIMIT}")
    if page is not None:
        if page < 1:
            raise invalid("page", "must be ≥ 1")
        q.offset = (page - 1) * q.limit
    else:
        q.offset = offset or 0
    if q.offset < 0:
        raise invalid("offset", "must be ≥ 0")
    return q


def task_matches(obj: Mapping[str, Any], q: TaskQuery) -> bool:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    if q.states and filter_state(obj) not in q.states:
        return False
    priority = spec.get("priority", DEFAULT_PRIORITY)
    if q.priority is not None and priority != q.priority:
        return False
    if q.min_priority is not None and priority < q.min_priority:
        return False
    if q.max_priority is not None and priority > q.max_priority:
        return False
    ann = meta.get("annotations") or {}
    if q.template is not None and (spec.get("template") or {}).get("name") != q.template:
        return False
    if q.task_type is not None and ann.get(ANNOTATION_TASK_TYPE) != q.task_type:
        return False
    if q.model_name is not None and ann.get(ANNOTATION_MODEL_NAME) != q.model_name and (
        (spec.get("template") or {}).get("parameters") or {}
    ).get("model") != q.model_name:
        return False
    if q.queue_name is not None and spec.get("queue", DEFAULT_QUEUE) != q.queue_name:
        return False
    if q.tags and not set(q.tags).issubset(set(spec.get("tags") or [])):
        return False
    if q.user is not None and spec.get("user") != q.user:
        return False
    if q.worker_id is not None and (obj.get("status") or {}).get("nodeName") != q.worker_id:
        return False
    if q.created_after or q.created_before:
        created = parse_time(meta.get("creationTimestamp"))
        if created is None:
            return False
        if q.created_after and created < q.created_after:
            return False
        if q.created_before and created > q.created_before:
            return False
    if q.search:
        haystack = " ".join(str(x) for x in (
            meta.get("name"), spec.get("displayName"), spec.get("description"),
            (spec.get("template") or {}).get("name"), ann.get(ANNOTATION_TASK_TYPE),
            ann.get(ANNOTATION_MODEL_NAME), spec.get("queue"), spec.get("image"),
            " ".join(spec.get("tags") or []), (obj.get("status") or {}).get("message"),
        ) if x).lower()
        if q.search not in haystack:
            return False
    return True


def query_tasks(objs: Iterable[Mapping[str, Any]], q: TaskQuery) -> tuple[int, list[Mapping[str, Any]]]:
    """Filter, sort (stable, ties by creation then name) and page: ``(total, page)``."""
    matched = [o for o in objs if task_matches(o, q)]
    key = SORT_FIELDS[q.sort_by]
    matched.sort(key=lambda o: (key(o), creation_order(o), str((o.get("metadata") or {}).get("name"))),
                 reverse=q.descending)
    return len(matched), matched[q.offset:q.offset + q.limit]


def list_envelope(total: int, q: TaskQuery, items: list[Obj]) -> Obj:
    """``{total, limit, offset, page, pages, has_more, tasks, data}``."""
    pages = (total + q.limit - 1) // q.limit if q.limit else 0
    return {
        "total": total,
        "limit": q.limit,
        "offset": q.offset,
        "page": q.offset // q.limit + 1 if q.limit else 1,
        "pages": pages,
        "has_more": q.offset + len(items) < total,
        "tasks": items,
        "data": items,
    }


# --------------------------------------------------------------------------- precomputed rows


def encode_json_bytes(value: Any) -> bytes:
    """The API's JSON encoding (compact, UTF-8 as is): every response body is made with it."""
    return jsonwire.dumps(value, default=str)


def encode_json(value: Any) -> str:
    """:func:`encode_json_bytes` as text (payloads joined or framed before they are sent)."""
    return encode_json_bytes(value).decode()


_UNSET: Any = object()


class TaskRow:
    """One Task object version, with the keys :func:`task_matches` and :func:`query_tasks` read precomputed,
    and its public JSON (:func:`task_public` through :func:`encode_json`) made on first use and kept.

    Built once per object version (the watch cache builds it when it stores the object); the object must not
    be changed in place afterwards (cached objects never are).
    """

    __slots__ = (
        "_created_at",
        "_haystack",
        "_json",
        "_sort",
        "created_key",
        "filter_state",
        "model_name",
        "name",
        "namespace",
        "node",
        "obj",
        "owner",
        "param_model",
        "priority",
        "queue",
        "tags",
        "task_type",
        "template",
        "uid",
    )

    def __init__(self, obj: Mapping[str, Any]) -> None:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        ann = meta.get("annotations") or {}
        template = spec.get("template") or {}
        self.obj = obj
        self.name = str(meta.get("name"))
        self.namespace = meta.get("namespace")
        self.owner = spec.get("user")
        self.created_key = creation_order(obj)
        self.filter_state = filter_state(obj)
        self.uid = meta.get("uid")
        self.priority = spec.get("priority", DEFAULT_PRIORITY)
        self.template = template.get("name")
        self.param_model = (template.get("parameters") or {}).get("model")
        self.task_type = ann.get(ANNOTATION_TASK_TYPE)
        self.model_name = ann.get(ANNOTATION_MODEL_NAME)
        self.queue = spec.get("queue", DEFAULT_QUEUE)
        self.tags = frozenset(spec.get("tags") or [])
        self.node = (obj.get("status") or {}).get("nodeName")
        self._created_at: datetime | None = _UNSET
        self._haystack: str | None = None
        self._sort: dict[Callable[[Mapping[str, Any]], Any], tuple[Any, str, str]] = {}
        self._json: dict[str, str] = {}

    @property
    def created_at(self) -> datetime | None:
        if self._created_at is _UNSET:
            self._created_at = parse_time((self.obj.get("metadata") or {}).get("creationTimestamp"))
        return self._created_at

    @property
    def haystack(self) -> str:
        """What ``search=`` looks in (lowercase), as :func:`task_matches` builds it."""
        if self._haystack is None:
            obj = self.obj
            spec = obj.get("spec") or {}
            meta = obj.get("metadata") or {}
            ann = meta.get("annotations") or {}
            self._haystack = " ".join(str(x) for x in (
                meta.get("name"), spec.get("displayName"), spec.get("description"),
                (spec.get("template") or {}).get("name"), ann.get(ANNOTATION_TASK_TYPE),
                ann.get(ANNOTATION_MODEL_NAME), spec.get("queue"), spec.get("image"),
                " ".join(spec.get("tags") or []), (obj.get("status") or {}).get("message"),
            ) if x).lower()
        return self._haystack

    def sort_key(self, key: Callable[[Mapping[str, Any]], Any]) -> tuple[Any, str, str]:
        """``(key(obj), creation order, name)``: the sort key of :func:`query_tasks` for ``key``."""
        found = self._sort.get(key)
        if found is None:
            found = self._sort[key] = (key(self.obj), self.created_key, self.name)
        return found

    def public_json(self, profile: Profile = CANONICAL) -> str:
        """``task_model(obj, profile)`` as JSON, made once per profile."""
        found = self._json.get(profile.name)
        if found is None:
            found = self._json[profile.name] = task_model(self.obj, profile).model_dump_json()
        return found


def task_row(obj: Mapping[str, Any]) -> TaskRow:
    return TaskRow(obj)


RowCheck = Callable[[TaskRow], bool]


def row_filter(q: TaskQuery) -> RowCheck | None:
    """:func:`task_matches` for rows, with only the checks ``q`` asks for (``None``: every row matches)."""
    checks: list[RowCheck] = []
    if q.states:
        states = frozenset(q.states)
        checks.append(lambda r: r.filter_state in states)
    if q.priority is not None:
        priority = q.priority
        checks.append(lambda r: r.priority == priority)
    if q.min_priority is not None:
        low = q.min_priority
        checks.append(lambda r: not r.priority < low)
    if q.max_priority is not None:
        high = q.max_priority
        checks.append(lambda r: not r.priority > high)
    if q.template is not None:
        template = q.template
        checks.append(lambda r: r.template == template)
    if q.task_type is not None:
        task_type = q.task_type
        checks.append(lambda r: r.task_type == task_type)
    if q.model_name is not None:
        model = q.model_name
        checks.append(lambda r: r.model_name == model or r.param_model == model)
    if q.queue_name is not None:
        queue = q.queue_name
        checks.append(lambda r: r.queue == queue)
    if q.tags:
        tags = frozenset(q.tags)
        checks.append(lambda r: tags <= r.tags)
    if q.user is not None:
        user = q.user
        checks.append(lambda r: r.owner == user)
    if q.worker_id is not None:
        worker = q.worker_id
        checks.append(lambda r: r.node == worker)
    if q.created_after or q.created_before:
        after, before = q.created_after, q.created_before

        def created_in_range(r: TaskRow) -> bool:
            created = r.created_at
            if created is None:
                return False
            return not ((after and created < after) or (before and created > before))

        checks.append(created_in_range)
    if q.search:
        needle = q.search
        checks.append(lambda r: needle in r.haystack)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda r: first(r) and second(r)
    return lambda r: all(check(r) for check in checks)


def match_rows(rows: Iterable[TaskRow], q: TaskQuery) -> list[TaskRow]:
    """Every row matching ``q``, in ``q``'s order (:func:`query_tasks` before paging)."""
    check = row_filter(q)
    matched = list(rows) if check is None else [r for r in rows if check(r)]
    key = SORT_FIELDS[q.sort_by]
    matched.sort(key=lambda r: r.sort_key(key), reverse=q.descending)
    return matched


def query_rows(rows: Iterable[TaskRow], q: TaskQuery) -> tuple[int, list[TaskRow]]:
    """:func:`query_tasks` over precomputed rows: the same matches, order and page."""
    matched = match_rows(rows, q)
    return len(matched), matched[q.offset:q.offset + q.limit]


def query_key(q: TaskQuery) -> tuple[Any, ...]:
    """What decides :func:`match_rows`'s result besides the rows (everything but the page): a cache key."""
    return (frozenset(q.states), q.priority, q.min_priority, q.max_priority, q.template, q.task_type, q.model_name,
            q.queue_name, tuple(q.tags), q.user, q.worker_id, q.created_after, q.created_before, q.search,
            SORT_FIELDS[q.sort_by], q.descending)


def list_envelope_json(total: int, q: TaskQuery, items_json: Sequence[str]) -> str:
    """``encode_json(list_envelope(total, q, items))`` from the items' own JSON texts."""
    items = "[" + ",".join(items_json) + "]"
    pages = (total + q.limit - 1) // q.limit if q.limit else 0
    page = q.offset // q.limit + 1 if q.limit else 1
    has_more = "true" if q.offset + len(items_json) < total else "false"
    return (f'{{"total":{total},"limit":{q.limit},"offset":{q.offset},"page":{page},"pages":{pages},'
            f'"has_more":{has_more},"tasks":{items},"data":{items}}}')

