"""Session fixtures shared by every tier: the local real control plane.

``local_cluster`` is ONE real control plane per test session (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok GPU nodes, see :mod:`kubetask.cluster`)
with kubetask's CRDs and built-in TaskTemplates applied. Tests on it keep to their own
tenants and namespaces and clean up what they start (operators, webhook configurations).
Binaries missing? The fixture builds them first (``kubetask cluster provision``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kt_support import running_cluster

from kubetask.cluster import DEV_NODES, LocalCluster, cached_binaries, provision


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane before any test runs, so a first build is not charged to a test's timeout.

    Only when a collected test runs on it: ``pytest tests/unit`` needs no Go build.
    """
    needs_cluster = any("local_cluster" in getattr(item, "fixturenames", ()) for item in session.items)
    if needs_cluster and cached_binaries() is None:
        provision(progress=print)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The session's real control plane with kubetask's CRDs and templates installed."""
    with running_cluster(tmp_path_factory.mktemp("local-cluster"), DEV_NODES) as cluster:
        yield cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per tier (unit, component, e2e): CI's log then shows which tiers really ran, not just dots."""
    tiers: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    for outcome in ("passed", "failed", "skipped", "error", "xfailed", "xpassed", ""):
        for report in terminalreporter.stats.get(outcome, []):
            parts = str(getattr(report, "nodeid", "")).split("/")
            tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
            # every phase's report (setup, call, teardown) carries its duration: the tier's time in tests
            seconds[tier] = seconds.get(tier, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)
            if outcome and (report.when == "call" or outcome in ("error", "skipped")):
                counts = tiers.setdefault(tier, {})
                counts[outcome] = counts.get(outcome, 0) + 1
    for tier, counts in sorted(tiers.items()):
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
        terminalreporter.write_line(f"tier {tier}: {summary} in {seconds.get(tier, 0.0):.0f} s")


@pytest.fixture(autouse=True, scope="module")
def no_operator_outlives_its_module() -> Iterator[None]:
    """Tests share one control plane, so an operator left running by one module acts on the next one's
    Tasks too (twice the Job creates, twice the Events). Each module stops the operators it starts."""
    yield
    deadline = time.monotonic() + 10
    while (alive := _running_operators()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"operators still running after this module: {alive}; stop what you start"


def _running_operators() -> list[str]:
    """Operator threads of this process, and ``kubetask operator`` processes it started."""
    found = [t.name for t in threading.enumerate() if t.name == "kubetask-operator" and t.is_alive()]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == os.getpid() and b"kubetask.cli" in argv and b"operator" in argv:
            found.append(f"pid {proc.name}")
    return found
