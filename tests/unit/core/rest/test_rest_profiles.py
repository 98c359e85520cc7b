"""kubetask.core.rest.profiles: each compatible API's words, ids and shapes, applied to one Task."""

from __future__ import annotations

import pytest
from rest_samples import built_task

from kubetask.core.rest.present import execution_public, group_by_status, public_id, task_public
from kubetask.core.rest.profiles import CANONICAL, PROFILES, Profile, profile_named, uid_in

UID = "123e4567-e89b-12d3-a456-426614174000"


def with_uid(phase: str | None = None, **status: object) -> dict[str, object]:
    task = built_task(phase, **status)
    task["metadata"]["uid"] = UID
    return task


@pytest.mark.parametrize(("profile", "waiting", "done"), [
    ("canonical", ("pending", "queued"), "completed"),
    ("omoios", ("pending", "pending"), "completed"),
    ("voidrunner", ("pending", "pending"), "completed"),
    ("orchestra", ("queued", "queued"), "completed"),
    ("dtq", ("PENDING", "PENDING"), "COMPLETED"),
    ("taskmanager", ("pending", "pending"), "completed"),
])
def test_status_words(profile: str, waiting: tuple[str, str], done: str) -> None:
    p = PROFILES[profile]
    assert (task_public(with_uid("Pending"), p)["status"], task_public(with_uid("Queued"), p)["status"]) == waiting
    assert task_public(with_uid("Succeeded"), p)["status"] == done
    assert set(group_by_status([with_uid("Pending")], p)) == set(p.statuses)
    # The fine state is the same under every profile.
    assert task_public(with_uid("Queued"), p)["queue_state"] == "queued"


def test_ids_are_the_uid_and_the_name_stays_visible() -> None:
    task = with_uid("Pending")
    assert task_public(task)["id"] == task_public(task)["task_id"] == UID
    assert task_public(task)["object_name"] == "n-12345678"
    assert task_public(task, PROFILES["taskmanager"])["task_id"] == f"task_{UID}"
    assert execution_public({"id": 1}, task, latest=True, profile=PROFILES["taskmanager"])["task_id"] == f"task_{UID}"
    assert public_id(built_task("Pending")) == "n-12345678"  # not created yet: no uid


def test_uids_in_ids() -> None:
    assert uid_in(UID) == uid_in(f"task_{UID}") == uid_in(UID.upper()) == UID
    assert uid_in("n-12345678") is None and uid_in("task_n-1") is None


def test_profile_names_and_shapes() -> None:
    assert profile_named(" Orchestra ") is PROFILES["orchestra"] and profile_named("nope") is None
    assert profile_named(None) is None
    assert PROFILES["orchestra"].bare_list and PROFILES["orchestra"].delete_no_content
    assert PROFILES["taskmanager"].error_style == "error" and CANONICAL.error_style == "detail"
    assert not any(p.bare_list or p.delete_no_content for p in PROFILES.values() if p.name != "orchestra")
    assert all(isinstance(p, Profile) and p.compatible_with for p in PROFILES.values())


def test_script_content_is_echoed() -> None:
    task = built_task("Pending")
    task["spec"] = {"script": {"language": "python", "content": "print(1)"}, "displayName": "s"}
    public = task_public(task)
    assert public["script_content"] == "print(1)" and public["script_type"] == "python"


def test_depends_on_shows_the_ids_the_client_sent() -> None:
    task = with_uid("Pending")
    task["spec"]["dependsOn"] = ["a-1", "b-2"]
    task["metadata"]["annotations"]["kubetask.io/depends-on-uids"] = f'{{"a-1": "{UID}"}}'
    assert task_public(task)["depends_on"] == [UID, "b-2"]
    assert task_public(task, PROFILES["taskmanager"])["depends_on"] == [f"task_{UID}", "b-2"]
