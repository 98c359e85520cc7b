"""The client CLI's parsing (issue 9): the command after ``--`` taken whole, help on every flag, --version,
and the SDK printing nothing for an empty log."""

from __future__ import annotations

import argparse

import httpx
import pytest

from kubetask import __version__
from kubetask.cli import _build_parser, main
from kubetask.sdk.client import KubetaskClient


def test_the_command_after_double_dash_is_taken_whole() -> None:
    args = _build_parser().parse_args(["tasks", "submit", "--image", "busybox", "--", "sh", "-c", "echo hi"])
    assert args.argv == ["--", "sh", "-c", "echo hi"] and args.shell_command is None
    one_string = _build_parser().parse_args(["tasks", "submit", "--image", "busybox", "--command", "echo hi"])
    assert one_string.shell_command == "echo hi" and one_string.argv == []


def _actions(parser: argparse.ArgumentParser, path: str = "kubetask") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{path} {name}")
        else:
            found.append((path, action))
    return found


def test_every_flag_has_help() -> None:
    missing = [f"{path} {action.option_strings or action.dest}" for path, action in _actions(_build_parser())
               if not action.help]
    assert missing == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"kubetask {__version__}"


def test_templates_help_names_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["templates", "--help"])
    out = capsys.readouterr().out
    assert "list" in out and "get" in out


def test_empty_logs_are_empty_and_the_sdk_speaks_canonical() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"", headers={"content-type": "text/plain"})

    with KubetaskClient("http://api", api_key="k", transport=httpx.MockTransport(handler)) as kt:
        assert kt.logs("t-1") == ""
    assert seen[0].headers["x-compat-profile"] == "canonical"
