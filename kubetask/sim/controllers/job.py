"""The Job controller (batch/v1) and the TTL-after-finished controller."""

from __future__ import annotations

import copy
import time
from typing import Any

from kubetask.sim.api import Ctx, now_iso, parse_time
from kubetask.sim.auth import UserInfo
from kubetask.sim.controllers.base import Reconciler
from kubetask.sim.errors import ApiError
from kubetask.sim.keys import K_JOBS, K_PODS
from kubetask.sim.store import Event

Obj = dict[str, Any]
JOB_CONTROLLER = UserInfo("system:serviceaccount:kube-system:job-controller",
                          ["system:masters", "system:serviceaccounts", "system:authenticated"])


def _cond(t: str, reason: str, message: str) -> Obj:
    now = now_iso()
    return {"type": t, "status": "True", "reason": reason, "message": message, "lastProbeTime": now,
            "lastTransitionTime": now}


def finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


class JobController(Reconciler):
    """Creates pods for Jobs and tracks their completion/failure like kube-controller-manager."""

    name = "job-controller"
    backoff_base = 0.2
    backoff_max = 5.0

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.create_failures: dict[str, int] = {}
        self.counted: dict[str, dict[str, str]] = {}  # job uid -> pod uid -> "succeeded"/"failed"

    def on_event(self, ev: Event) -> None:
        if ev.key == K_JOBS:
            if ev.type == "DELETED":
                self.counted.pop(ev.obj["metadata"].get("uid", ""), None)
                return
            self.enqueue((ev.namespace, ev.name))
        elif ev.key == K_PODS:
            for ref in ev.obj["metadata"].get("ownerReferences") or ():
                if ref.get("kind") == "Job" and ref.get("controller"):
                    self.enqueue((ev.namespace, ref.get("name")))

    async def reconcile(self, key: Any) -> None:
        ns, name = key
        job = self.sim.store.get(K_JOBS, ns, name)
        if job is None:
            return
        uid = job["metadata"]["uid"]
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        pods = [o for k, o in self.sim.store.dependents(uid) if k == K_PODS and any(
            r.get("uid") == uid and r.get("controller") for r in o["metadata"].get("ownerReferences") or ())]
        counted = self.counted.setdefault(uid, {})
        # Count terminal pods once, even after they are deleted (in lieu of the tracking finalizer).
        succeeded = int(status.get("succeeded", 0))
        failed = int(status.get("failed", 0))
        for p in pods:
            puid = p["metadata"]["uid"]
            phase = (p.get("status") or {}).get("phase")
            if puid in counted:
                continue
            if phase == "Succeeded":
                counted[puid] = "succeeded"
                succeeded += 1
            elif phase == "Failed":
                counted[puid] = "failed"
                failed += 1
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        restarts = 0
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            for p in active:
                restarts += sum(int(cs.get("restartCount", 0)) for cs in (p.get("status") or {}).get(
                    "containerStatuses") or ())
        conds: list[Obj] = list(status.get("conditions") or [])
        types = {c.get("type") for c in conds if c.get("status") == "True"}
        done = finished(job)
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) or 0)

        if done is None:
            fail_reason = None
            if "FailureTarget" in types:
                fail_reason = next(c for c in conds if c.get("type") == "FailureTarget")
            elif "SuccessCriteriaMet" not in types:
                start = parse_time(status.get("startTime"))
                ads = spec.get("activeDeadlineSeconds")
                if failed + restarts > int(spec.get("backoffLimit", 6)):
                    fail_reason = _cond("FailureTarget", "BackoffLimitExceeded",
                                        "Job has reached the specified backoff limit")
                elif ads is not None and start is not None and not spec.get("suspend") and \
                        time.time() - start >= int(ads):
                    fail_reason = _cond("FailureTarget", "DeadlineExceeded",
                                        "Job was active longer than specified deadline")
                if fail_reason is not None:
                    conds.append(fail_reason)
                elif (completions is not None and succeeded >= int(completions)) or (
                        completions is None and succeeded > 0 and not active):
                    conds.append(_cond("SuccessCriteriaMet", "CompletionsReached",
                                       "Reached expected number of succeeded pods"))
                    types.add("SuccessCriteriaMet")
            if fail_reason is not None or "SuccessCriteriaMet" in types:
                if fail_reason is not None:
                    for p in active:
                        await self._delete_pod(p)
                    active = []
                if not active and not terminating:
                    if fail_reason is not None:
                        conds.append(_cond("Failed", fail_reason["reason"], fail_reason["message"]))
                        self.sim.record_event(job, "Warning", fail_reason["reason"], fail_reason["message"],
                                              "job-controller")
                    else:
                        conds.append(_cond("Complete", "CompletionsReached",
                                           "Reached expected number of succeeded pods"))
                        status["completionTime"] = now_iso()
                        self.sim.record_event(job, "Normal", "Completed", "Job completed", "job-controller")
            elif spec.get("suspend"):
                for p in active:
                    await self._delete_pod(p)
                active = []
                if "Suspended" not in types:
                    conds = [c for c in conds if c.get("type") != "Suspended"]
                    conds.append(_cond("Suspended", "JobSuspended", "Job suspended"))
                    status.pop("startTime", None)
                    self.sim.record_event(job, "Normal", "Suspended", "Job suspended", "job-controller")
            else:
                if "Suspended" in types:
                    conds = [c for c in conds if c.get("type") != "Suspended"]
                    conds.append({**_cond("Suspended", "JobResumed", "Job resumed"), "status": "False"})
                    self.sim.record_event(job, "Normal", "Resumed", "Job resumed", "job-controller")
                if not status.get("startTime"):
                    status["startTime"] = now_iso()
                ads = spec.get("activeDeadlineSeconds")
                if ads is not None:
                    start = parse_time(status["startTime"]) or time.time()
                    self.enqueue(key, max(0.0, start + int(ads) - time.time()) + 0.001)
                want = parallelism
                if completions is not None:
                    want = min(parallelism, int(completions) - succeeded - len(active)) + len(active)
                missing = want - len(active)
                for _ in range(max(0, missing)):
                    created = await self._create_pod(job)
                    if created is None:
                        break
                    active.append(created)
        elif done == "Failed":
            for p in active:
                await self._delete_pod(p)
            active = []
        status["conditions"] = conds
        if not conds:
            status.pop("conditions")
        status["active"] = len(active)
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["terminating"] = len(terminating)
        status["ready"] = sum(1 for p in active if any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get(
                "conditions") or ()))
        status["uncountedTerminatedPods"] = {}
        for f in ("active", "succeeded", "failed", "terminating"):
            if status[f] == 0 and f not in (job.get("status") or {}) and f not in ("active", "ready",
                                                                                   "terminating"):
                status.pop(f)
        cur = self.sim.store.get(K_JOBS, ns, name)
        if cur is None or cur["metadata"]["uid"] != uid:
            return
        if cur.get("status") != status:
            new = copy.deepcopy(cur)
            new["status"] = status
            self.sim.store.put(K_JOBS, new)

    async def _delete_pod(self, pod: Obj) -> None:
        rt = self.sim.rt_for(K_PODS)
        try:
            await self.sim.delete(rt, pod["metadata"]["namespace"], pod["metadata"]["name"], {},
                                  Ctx(user=JOB_CONTROLLER))
        except ApiError as e:
            if e.code != 404:
                raise

    async def _create_pod(self, job: Obj) -> Obj | None:
        meta = job["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        tmpl = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        pmeta = tmpl.get("metadata") or {}
        pod: Obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": f"{name}-", "namespace": ns,
                "labels": dict(pmeta.get("labels") or {}),
                "annotations": dict(pmeta.get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": tmpl.get("spec") or {},
        }
        if not pod["metadata"]["annotations"]:
            pod["metadata"].pop("annotations")
        if pmeta.get("finalizers"):
            pod["metadata"]["finalizers"] = list(pmeta["finalizers"])
        rt = self.sim.rt_for(K_PODS)
        try:
            created = await self.sim.create(rt, ns, pod, Ctx(user=JOB_CONTROLLER))
        except ApiError as e:
            n = self.create_failures.get(uid, 0) + 1
            self.create_failures[uid] = n
            self.sim.record_event(job, "Warning", "FailedCreate", f"Error creating: {e.message}", "job-controller")
            self.sim.stats.failed_creates.append({"kind": "Pod", "namespace": ns, "owner": name,
                                                  "message": e.message})
            self.enqueue((ns, name), min(self.backoff_max, self.backoff_base * (2 ** (n - 1))))
            return None
        self.create_failures.pop(uid, None)
        self.sim.stats.pods_per_job[f"{ns}/{name}"] += 1
        self.sim.record_event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                              "job-controller")
        return created


class TTLController(Reconciler):
    """Deletes finished Jobs ``ttlSecondsAfterFinished`` after they finished (Background propagation)."""

    name = "ttl-after-finished"

    def on_event(self, ev: Event) -> None:
        if ev.key == K_JOBS and ev.type != "DELETED":
            spec = ev.obj.get("spec") or {}
            if spec.get("ttlSecondsAfterFinished") is not None and finished(ev.obj):
                self.enqueue((ev.namespace, ev.name))

    async def reconcile(self, key: Any) -> None:
        ns, name = key
        job = self.sim.store.get(K_JOBS, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        done = finished(job)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if done is None or ttl is None:
            return
        at = None
        for c in (job.get("status") or {}).get("conditions") or ():
            if c.get("type") == done:
                at = parse_time(c.get("lastTransitionTime"))
        at = at or parse_time((job.get("status") or {}).get("completionTime")) or time.time()
        wait = at + int(ttl) - time.time()
        if wait > 0:
            self.enqueue(key, wait)
            return
        try:
            await self.sim.delete(self.sim.rt_for(K_JOBS), ns, name, {"propagationPolicy": "Background"}, Ctx())
        except ApiError as e:
            if e.code != 404:
                raise
