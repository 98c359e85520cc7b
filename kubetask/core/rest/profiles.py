"""Compatibility profiles: where the five task-queue APIs kubetask is compatible with contradict each
other, a profile fixes one API's vocabulary and shapes on output (DESIGN §4).

A profile decides:

* the status words and their case (``queued`` or ``pending`` for a waiting task, ``COMPLETED``);
* whether ``GET /tasks`` is a bare JSON array or the ``{total, limit, offset, tasks}`` envelope;
* ``DELETE /tasks/{id}``: 204 with no body, or 200 with ``{task_id, status, cancelled_at}``;
* the id format: the Task's uid, with a ``task_`` prefix for the Task Manager API;
* the error body: ``{detail, code, request_id, timestamp}`` or ``{error: {code, message, details},
  timestamp, request_id}``.

It is chosen per request by the header ``X-Compat-Profile``, else by the API key
(``Tenant.spec.apiKeys[].profile``), else by the path (the Task Manager API's root paths, without
``/api/v1``), else ``canonical``.  Input is the same under every profile: every API's field names and
status words are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kubetask.core.phases import PUBLIC_STATUSES, WAITING_STATUSES

PROFILE_HEADER = "X-Compat-Profile"


@dataclass(frozen=True)
class Profile:
    name: str
    compatible_with: str
    """The API this profile speaks, in words for people."""
    waiting_word: str | None = None
    """The one word every waiting task shows (``None``: ``pending`` and ``queued`` as the phases say)."""
    upper_case: bool = False
    bare_list: bool = False
    """``GET /tasks`` answers a bare array (``?format=envelope`` still gives the envelope)."""
    delete_no_content: bool = False
    """``DELETE /tasks/{id}`` answers 204 with no body."""
    id_prefix: str = ""
    error_style: Literal["detail", "error"] = "detail"

    def status(self, word: str) -> str:
        """A canonical status word in this profile's vocabulary."""
        if self.waiting_word is not None and word in WAITING_STATUSES:
            word = self.waiting_word
        return word.upper() if self.upper_case else word

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status word of this profile, in lifecycle order."""
        return tuple(dict.fromkeys(self.status(s) for s in PUBLIC_STATUSES))

    def task_id(self, uid: str | None, name: str) -> str:
        """The public id of the Task called ``name``: its uid (with this profile's prefix), or the name
        for a Task the apiserver has not given a uid yet."""
        return f"{self.id_prefix}{uid}" if uid else name


PROFILES: Mapping[str, Profile] = {p.name: p for p in (
    Profile("canonical", "kubetask's own REST API (every compatible API's field names at once)"),
    Profile("omoios", "the OmoiOS task-queue user-limits API", waiting_word="pending"),
    Profile("voidrunner", "the Voidrunner Task Management API", waiting_word="pending"),
    Profile("orchestra", "the AI Task Orchestra API", waiting_word="queued", bare_list=True,
            delete_no_content=True),
    Profile("dtq", "the Distributed Task Queue System API", waiting_word="pending", upper_case=True),
    Profile("taskmanager", "the BitingLip Task Manager API", waiting_word="pending", id_prefix="task_",
            error_style="error"),
)}
CANONICAL = PROFILES["canonical"]
ROOT_PATH_PROFILE = PROFILES["taskmanager"]
"""The profile of the root paths (no ``/api/v1``): the Task Manager API speaks there."""


def profile_named(name: str | None) -> Profile | None:
    """The profile called ``name`` (any case, surrounding blanks ignored); ``None`` if there is none."""
    if not name:
        return None
    return PROFILES.get(name.strip().lower())


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def uid_in(task_id: str) -> str | None:
    """The uid a public id names (``<uid>`` or ``task_<uid>``), ``None`` if it names no uid (a Task name)."""
    candidate = task_id[len("task_"):] if task_id.startswith("task_") else task_id
    return candidate.lower() if _UUID.match(candidate) else None
