"""The SDK (sync and async) and the ``kubetask tasks|templates|queue`` CLI against the real API.

Every test here runs on ``stack`` (the real operator runs): a module uses one stack, and the
tests that only submit and cancel do not mind the operator.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from kt_api_support import ALICE_KEY, BOB_KEY, Stack

from kubetask.sdk import (
    AsyncKubetaskClient,
    ConflictError,
    KubetaskClient,
    NotFoundError,
    ValidationError,
)
from kubetask.sdk.cli import main

FAST = {"kubetask.dev/sim-duration-seconds": "0.3"}


def test_sdk_submit_wait_result(needs_operator: Stack) -> None:
    seen: list[str] = []
    with KubetaskClient(needs_operator.url, api_key=ALICE_KEY) as kt:
        task = kt.submit(name="sdk", script_content="print(1)", annotations=FAST)
        assert task.status == "pending" and task.id
        done = kt.wait(task.id, timeout=60, poll_interval=0.1, on_progress=lambda t: seen.append(t.status))
        assert done.succeeded and done.completed_at
        assert seen[-1] == "completed" and len(seen) >= 2
        with pytest.raises(ConflictError) as conflict:
            kt.cancel(task.id)
        assert conflict.value.code == "TASK_ALREADY_FINISHED" and conflict.value.request_id


def test_sdk_errors_carry_the_body(stack: Stack) -> None:
    with KubetaskClient(stack.url, api_key=BOB_KEY) as kt:
        with pytest.raises(NotFoundError) as missing:
            kt.get("nope")
        assert missing.value.body["code"] == "TASK_NOT_FOUND"
        with pytest.raises(ValidationError) as invalid:
            kt.submit(name="x" * 300, script_content="print(1)")
        assert invalid.value.field == "name" and invalid.value.status_code == 422
        page = kt.list(limit=5)
        assert page.limit == 5
        assert {t.name for t in kt.templates()} >= {"ollama-inference"}
        assert kt.template("ollama-inference").parameters
        assert kt.validate_template("ollama-inference", {"model": "m", "prompt": "p"}).valid
        assert kt.queue_status().pending >= 0
        assert kt.limits().user_id == "bob"


def test_async_sdk(stack: Stack) -> None:
    async def run() -> None:
        async with AsyncKubetaskClient(stack.url, api_key=BOB_KEY) as kt:
            task = await kt.submit({"template": "ollama-inference",
                                    "parameters": {"model": "llama3.1:8b", "prompt": "hi"}})
            assert (await kt.get(task.id)).template == "ollama-inference"
            assert task.id in {t.id for t in (await kt.list(limit=1000)).tasks}
            assert (await kt.cancel(task.id)).status == "cancelled"
            assert (await kt.queue_status()).running == 0
    asyncio.run(run())


def test_cli_submit_list_get_cancel(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBETASK_URL", stack.url)
    monkeypatch.setenv("KUBETASK_API_KEY", BOB_KEY)
    assert main(["tasks", "submit", "--template", "ollama-inference", "--param", "model=llama3.1:8b",
                 "--param", "prompt=hello", "--priority", "7", "-o", "json"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert task["priority"] == 7
    assert main(["tasks", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"] and task["id"] in table
    assert main(["tasks", "get", task["id"]]) == 0
    assert "ollama-inference" in capsys.readouterr().out
    assert main(["tasks", "cancel", task["id"]]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["tasks", "cancel", task["id"]]) == 1
    assert "409" in capsys.readouterr().err
    assert main(["templates", "list"]) == 0
    assert "ollama-inference" in capsys.readouterr().out
    assert main(["templates", "get", "ollama-inference", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "ollama-inference"
    assert main(["queue"]) == 0
    assert "running" in capsys.readouterr().out
    assert main(["tasks", "get", "nope", "--api-key", "wrong"]) == 1
    assert "401" in capsys.readouterr().err


def test_cli_submit_and_wait_prints_the_result(needs_operator: Stack, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    monkeypatch.setenv("KUBETASK_URL", needs_operator.url)
    code = main(["tasks", "submit", "--api-key", ALICE_KEY, "--name", "cli", "--image", "busybox",
                 "--annotation", "kubetask.dev/sim-duration-seconds=0.3",
                 "--wait", "--interval", "0.1", "--timeout-wait", "60", "--", "sh", "-c", "echo hi"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "pending" in captured.err or "running" in captured.err or "completed" in captured.err
    failing = main(["tasks", "submit", "--api-key", ALICE_KEY, "--image", "busybox",
                    "--annotation", "kubetask.dev/sim-exit-code=2",
                    "--annotation", "kubetask.dev/sim-duration-seconds=0.2", "--wait", "-q", "--interval", "0.1"])
    assert failing == 2
