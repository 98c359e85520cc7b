"""Crash safety (issue 12, part 5): tasks keep flowing through SIGKILLs of the operator and a leader failover.

The operator runs as a separate process (``python -m kubetask.cli operator``) and is killed with SIGKILL at
seeded-random moments mid-flow, then started again; with two replicas under leader election, the leader is
killed and the standby takes over.  Afterwards the objects are counted:

* lost: Tasks that never reached ``Succeeded`` (the final phase of a task whose one run exits 0);
* duplicate Jobs: Jobs created per Task beyond its executions (the apiserver's watch record of creates);
* every Task ran exactly once (``status.executions`` has one entry, ``Succeeded``).

Recovery times are printed (the closing note quotes them); only counts are asserted.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kt_process_support import CrashRig, JobRecorder, OperatorProcess, phases, task_body, wait_until

TASKS = 300
KILLS = 5
SEED = 20261202
ARRIVALS_PER_SECOND = 6.0
"""300 tasks arrive over ~50 s: every kill lands while tasks are queued, running and finishing."""
FAILOVER_TASKS = 150


def _create_all(rig: CrashRig, names: list[str], per_second: float) -> threading.Thread:
    """Create the Tasks in the background at ``per_second``, so they keep arriving while operators die."""
    client = rig.cluster.admin()

    def create(name: str) -> None:
        for _ in range(20):  # the apiserver may be busy for a moment; a 409 means an earlier try landed
            response = client.post(f"/apis/kubetask.io/v1alpha1/namespaces/{rig.namespace}/tasks",
                                   json=task_body(name, rig.namespace))
            if response.status_code in (201, 409):
                return
            time.sleep(0.2)
        raise AssertionError(f"could not create {name}: {response.status_code} {response.text}")

    def run() -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            for i, name in enumerate(names):
                time.sleep(max(0.0, started + i / per_second - time.monotonic()))
                futures.append(pool.submit(create, name))
            for future in futures:
                future.result()

    thread = threading.Thread(target=run, name="task creator", daemon=True)
    thread.start()
    return thread


def _succeeded(rig: CrashRig) -> int:
    return sum(1 for status in phases(rig.cluster, rig.namespace).values() if status.get("phase") == "Succeeded")


def _wait_progress(rig: CrashRig, beyond: int, timeout: float) -> float:
    """Seconds until more than ``beyond`` Tasks have succeeded (the operator is working again)."""
    started = time.monotonic()
    wait_until(lambda: _succeeded(rig) > beyond, timeout, f"progress beyond {beyond} succeeded tasks", 0.25)
    return time.monotonic() - started


def _audit(rig: CrashRig, recorder: JobRecorder, names: list[str]) -> dict[str, Any]:
    statuses = phases(rig.cluster, rig.namespace)
    jobs = recorder.per_task()
    lost = [n for n in names if (statuses.get(n) or {}).get("phase") != "Succeeded"]
    executions = {n: len((statuses.get(n) or {}).get("executions") or []) for n in names}
    duplicates = {n: jobs[n] - executions[n] for n in names if jobs[n] > executions[n]}
    missing_jobs = [n for n in names if jobs[n] < executions[n]]
    reruns = [n for n in names if executions[n] != 1]
    wrong_execution = [n for n in names if statuses.get(n) and any(
        e.get("phase") != "Succeeded" for e in statuses[n].get("executions") or [])]
    return {"lost": lost, "duplicates": duplicates, "twice": recorder.names_created_twice(),
            "missing_jobs": missing_jobs, "reruns": reruns, "wrong_execution": wrong_execution,
            "jobs": sum(jobs[n] for n in names)}


def _check(audit: dict[str, Any], tasks: int) -> None:
    assert audit["lost"] == [], f"{len(audit['lost'])} lost: {audit['lost'][:20]}"
    assert audit["duplicates"] == {}, audit["duplicates"]
    assert audit["twice"] == []
    assert audit["missing_jobs"] == []
    assert audit["reruns"] == [], audit["reruns"][:20]
    assert audit["wrong_execution"] == []
    assert audit["jobs"] == tasks


@pytest.mark.timeout(600)
def test_sigkill_of_the_operator_at_random_moments_loses_and_duplicates_nothing(crash_rig: CrashRig) -> None:
    rig = crash_rig
    rng = random.Random(SEED)
    names = [f"crash-{i:03d}" for i in range(TASKS)]
    # Each kill comes a random while after the previous operator started working again.
    pauses = [rng.uniform(2.0, 6.0) for _ in range(KILLS)]
    recorder = JobRecorder(rig.cluster, rig.namespace)
    started = time.monotonic()
    operator = rig.operator()
    operator.wait_alive()
    creator = _create_all(rig, names, ARRIVALS_PER_SECOND)
    recoveries: list[float] = []
    killed_when: list[int] = []
    try:
        for pause in pauses:
            time.sleep(pause)
            done_at_kill = _succeeded(rig)
            killed_when.append(done_at_kill)
            killed_at = time.monotonic()
            operator.kill()
            operator = rig.operator()
            _wait_progress(rig, done_at_kill, 120)
            recoveries.append(time.monotonic() - killed_at)
        creator.join(120)
        assert not creator.is_alive(), "the tasks were not all created"
        wait_until(lambda: _succeeded(rig) == TASKS, 300, f"all {TASKS} tasks to succeed", 0.5)
        elapsed = time.monotonic() - started
        audit = _audit(rig, recorder, names)
    finally:
        recorder.stop()
    print(f"crash safety: {TASKS} tasks, {KILLS} x SIGKILL at {killed_when} succeeded (seed {SEED}); "
          f"lost {len(audit['lost'])}, duplicate Jobs {sum(audit['duplicates'].values())}, "
          f"Jobs {audit['jobs']}, re-runs {len(audit['reruns'])}; recovery after kill (s): "
          f"{', '.join(f'{r:.1f}' for r in recoveries)} (max {max(recoveries):.1f}); wall {elapsed:.0f} s")
    _check(audit, TASKS)


@pytest.mark.timeout(600)
def test_leader_failover_between_two_replicas_mid_flow(crash_rig: CrashRig) -> None:
    rig = crash_rig
    names = [f"failover-{i:03d}" for i in range(FAILOVER_TASKS)]
    recorder = JobRecorder(rig.cluster, rig.namespace)
    first, second = rig.operator(leader_election=True), rig.operator(leader_election=True)
    first.wait_alive()
    second.wait_alive()
    leader: OperatorProcess = wait_until(lambda: next((p for p in (first, second) if p.is_leader()), None), 60,
                                         "one replica to lead")
    standby = second if leader is first else first
    assert not standby.is_leader()
    started = time.monotonic()
    creator = _create_all(rig, names, ARRIVALS_PER_SECOND)
    try:
        wait_until(lambda: _succeeded(rig) >= FAILOVER_TASKS // 3, 240, "a third of the tasks to succeed", 0.25)
        done_at_kill = _succeeded(rig)
        killed_at = time.monotonic()
        leader.kill()
        wait_until(standby.is_leader, 90, "the standby to take the Lease", 0.25)
        took_over = time.monotonic() - killed_at
        _wait_progress(rig, done_at_kill, 120)
        recovery = time.monotonic() - killed_at
        creator.join(120)
        assert not creator.is_alive(), "the tasks were not all created"
        wait_until(lambda: _succeeded(rig) == FAILOVER_TASKS, 300, f"all {FAILOVER_TASKS} tasks to succeed", 0.5)
        elapsed = time.monotonic() - started
        audit = _audit(rig, recorder, names)
    finally:
        recorder.stop()
    print(f"leader failover: {FAILOVER_TASKS} tasks, leader SIGKILLed at {done_at_kill} succeeded; standby led "
          f"after {took_over:.1f} s, tasks progressed again after {recovery:.1f} s; lost {len(audit['lost'])}, "
          f"duplicate Jobs {sum(audit['duplicates'].values())}, Jobs {audit['jobs']}; wall {elapsed:.0f} s")
    _check(audit, FAILOVER_TASKS)
    assert standby.is_leader()
