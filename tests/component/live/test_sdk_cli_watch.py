"""The SDK's ``watch()`` and ``kubetask tasks watch`` on the live SSE stream, against the real operator: one task
followed to its end, the whole stream filtered, another tenant's task never shown, and the CLI's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from live_support import ALICE_KEY, BOB_KEY, Stack, sim

from kubetask.sdk.client import KubetaskClient, TaskEvent


def _submit(client: KubetaskClient, name: str, seconds: float, exit_code: int = 0) -> str:
    return client.submit({"name": name, "image": "busybox", "command": ["true"],
                          "annotations": sim(seconds, exit_code)}).id


def test_watch_follows_one_task_to_its_end(live_stack: Stack) -> None:
    with KubetaskClient(live_stack.url, api_key=ALICE_KEY) as alice:
        task_id = _submit(alice, "sdk-watch-one", seconds=2)
        events = list(alice.watch(task_id, timeout=120))
    statuses = [e.task.status for e in events if e.task is not None]
    assert all(e.task is not None and e.task.id == task_id for e in events)
    assert statuses[-1] == "completed" and "running" in statuses
    assert statuses.index("running") < len(statuses) - 1  # seen running before it ended: live, not a poll
    ids = [int(str(e.id).rsplit("-", 1)[1]) for e in events if e.id]
    assert ids == sorted(ids)


def test_watch_of_the_stream_shows_only_my_tasks_and_what_the_filter_asks(live_stack: Stack) -> None:
    seen: list[TaskEvent] = []
    ready = threading.Event()

    def follow() -> None:
        with KubetaskClient(live_stack.url, api_key=ALICE_KEY) as watcher:
            for event in watcher.watch(status="failed", snapshot=False, timeout=90):
                ready.set()
                seen.append(event)
                if event.task is not None and event.task.name == "sdk-watch-bad":
                    return

    with KubetaskClient(live_stack.url, api_key=ALICE_KEY) as alice, \
            KubetaskClient(live_stack.url, api_key=BOB_KEY) as bob:
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        bobs = _submit(bob, "sdk-watch-bobs", seconds=0.5, exit_code=1)  # fails too, but is bob's
        good = _submit(alice, "sdk-watch-good", seconds=0.5)
        bad = _submit(alice, "sdk-watch-bad", seconds=1, exit_code=3)
        follower.join(120)
    assert not follower.is_alive(), "the watch never saw alice's failed task"
    tasks = [e.task for e in seen if e.task is not None]
    assert {t.id for t in tasks} == {bad}  # not bob's failure, not alice's success
    assert tasks[-1].status == "failed"
    assert good != bobs


def test_cli_watch_prints_each_change_and_exits_by_the_outcome(live_stack: Stack) -> None:
    env = {**os.environ, "KUBETASK_URL": live_stack.url, "KUBETASK_API_KEY": ALICE_KEY}
    cli = [sys.executable, "-m", "kubetask.cli", "tasks", "watch"]
    with KubetaskClient(live_stack.url, api_key=ALICE_KEY) as alice:
        done = _submit(alice, "cli-watch-ok", seconds=1)
        failing = _submit(alice, "cli-watch-bad", seconds=1, exit_code=2)
    lines = subprocess.run([*cli, done], capture_output=True, text=True, env=env, timeout=150)
    assert lines.returncode == 0, lines.stderr
    printed = lines.stdout.strip().splitlines()
    assert printed and all(done in line for line in printed)
    assert printed[-1].split()[:3] == ["finished", f"{done}:", "completed"]
    as_json = subprocess.run([*cli, failing, "-o", "json"], capture_output=True, text=True, env=env, timeout=150)
    assert as_json.returncode == 2, as_json.stderr  # followed to its end, which was not a success
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[-1]["task"]["status"] == "failed" and events[-1]["task"]["id"] == failing
