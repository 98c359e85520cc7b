"""The /ui dashboard in real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core from npm)
against the real control plane, operator and API: sign in with an API key, submit a task, watch it reach
completed without reloading, open its page, and never see another user's task. Screenshots of each main page
land in tests/browser/artifacts/ (or $KUBETASK_BROWSER_ARTIFACTS)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "component" / "live"))

from live_support import ALICE_KEY, BOB_KEY, Stack, sim, start_stack

from kubetask.cluster import LocalCluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "dashboard.mjs"
CHROMIUM = os.environ.get("KUBETASK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("KUBETASK_BROWSER_ARTIFACTS", HERE / "artifacts"))


def _tools() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (the browser tests drive Chromium with playwright-core from npm)")
    if not (REPO / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is missing: run `npm ci` in the repository (.ci/run does)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does) or set KUBETASK_CHROMIUM")
    return node


@pytest.fixture(scope="module")
def ui_stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(local_cluster, tmp_path_factory.mktemp("ui"), with_operator=True)


def test_vendored_htmx_is_the_pinned_npm_package() -> None:
    _tools()
    vendored = (REPO / "api" / "ui" / "static" / "htmx.min.js").read_bytes()
    upstream = (REPO / "node_modules" / "htmx.org" / "dist" / "htmx.min.js").read_bytes()
    assert vendored == upstream, "run hack/vendor-ui.sh"
    name, version, digest = (REPO / "api" / "ui" / "static" / "VENDORED").read_text().split()
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert (name, version) == ("htmx.org", lock["packages"]["node_modules/htmx.org"]["version"])
    assert digest == hashlib.sha256(vendored).hexdigest()


def test_dashboard_live_in_chromium(ui_stack: Stack, tmp_path: Path) -> None:
    node = _tools()
    marker = f"bobs-secret-{uuid.uuid4().hex[:8]}"
    with ui_stack.client(BOB_KEY) as bob:  # runs while alice watches: its events flow through the same hub
        created = bob.post("/tasks", json={"name": marker, "image": "busybox", "annotations": sim(40)})
        assert created.status_code == 201, created.text
        bobs_id = created.json()["id"]
    config = {
        "url": ui_stack.url, "key": ALICE_KEY, "user": "alice", "chromium": CHROMIUM,
        "profile": str(tmp_path / "chromium-profile"), "artifacts": str(ARTIFACTS),
        "taskName": f"ui-e2e-{uuid.uuid4().hex[:6]}", "forbidden": [marker, bobs_id], "logLine": "hello from the gpu",
        "annotations": sim(6, **{"kubetask.dev/sim-logs": "hello from the gpu\nsecond line",
                                 "kubetask.dev/sim-termination-message": json.dumps({"answer": 42})}),
    }
    proc = subprocess.run([node, str(SCRIPT)], capture_output=True, text=True, timeout=280, cwd=REPO,
                          env={**os.environ, "KT_BROWSER": json.dumps(config)})
    assert proc.returncode == 0, f"{proc.stderr}\n{proc.stdout}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["liveEvents"] >= 2
    with ui_stack.client(ALICE_KEY) as alice:
        task = alice.get(f"/tasks/{result['taskId']}").json()
        assert task["status"] == "completed" and task["name"] == config["taskName"]
        assert alice.get(f"/tasks/{bobs_id}").status_code == 404
    for name in ("01-sign-in.png", "02-overview-running.png", "03-overview-completed.png",
                 "04-limits-usage-chart.png", "05-workers.png", "06-task-page.png"):
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    with ui_stack.client(BOB_KEY) as bob:
        bob.delete(f"/tasks/{bobs_id}")
