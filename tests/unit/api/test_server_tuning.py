"""How the API process tunes its runtime: aiohttp's per-request env lookups, the collector's thresholds."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from kubetask.api.server import SERVER_GC_THRESHOLDS, server_gc_thresholds
from kubetask.kube.client import needs_env_lookups


def test_env_lookups_are_on_only_with_proxies_or_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert needs_env_lookups() is True
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / ".netrc").write_text("machine x login y password z\n")
    assert needs_env_lookups() is True
    (tmp_path / ".netrc").unlink()
    assert needs_env_lookups() is False


def test_gc_thresholds_only_when_the_api_owns_the_process() -> None:
    before = gc.get_threshold()
    with server_gc_thresholds():
        assert gc.get_threshold() == SERVER_GC_THRESHOLDS
    assert gc.get_threshold() == before

    seen: list[tuple[int, int, int]] = []

    def in_a_thread() -> None:
        with server_gc_thresholds():
            seen.append(gc.get_threshold())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [before]
