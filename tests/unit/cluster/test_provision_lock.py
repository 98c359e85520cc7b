"""Provisioning is safe to start twice at once: the second run waits for the first, then finds the cache warm."""

from __future__ import annotations

import fcntl
import stat
import threading
from pathlib import Path

from kubetask.cluster.provision import MODULES, Binaries, provision


def _fake_cache(root: Path) -> None:
    for module in MODULES:
        for name, _ in module.commands:
            binary = module.cache_dir(root) / name
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR)


def test_a_second_provisioner_waits_for_the_lock_then_returns_the_cached_binaries(tmp_path: Path) -> None:
    _fake_cache(tmp_path)
    messages: list[str] = []
    result: list[Binaries] = []
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.append(provision(tmp_path, progress=messages.append)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "provision must not run while another run holds the lock"
        assert any("waiting" in message for message in messages)
        fcntl.flock(held, fcntl.LOCK_UN)
        worker.join(10)
    assert not worker.is_alive()
    assert result == [Binaries.at(tmp_path)]


def test_a_warm_cache_builds_nothing(tmp_path: Path) -> None:
    _fake_cache(tmp_path)
    messages: list[str] = []
    assert provision(tmp_path, progress=messages.append).missing() == []
    assert messages == []
