"""The simulated kubelet: drives bound pods through their lifecycle from annotations (DESIGN §4)."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kubetask.sim.api import now_iso
from kubetask.sim.controllers.base import Reconciler
from kubetask.sim.errors import bad_request
from kubetask.sim.keys import K_PODS
from kubetask.sim.store import Event

Obj = dict[str, Any]
A_DURATION = "kubetask.dev/sim-duration-seconds"
A_EXIT = "kubetask.dev/sim-exit-code"
A_REASON = "kubetask.dev/sim-reason"
A_MESSAGE = "kubetask.dev/sim-termination-message"
A_LOGS = "kubetask.dev/sim-logs"
PULL_ERRORS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
               "CreateContainerError")


def ts_nano(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1e9):09d}Z"


@dataclass
class PodRun:
    """What the kubelet remembers about one pod (by uid)."""

    stage: str = "creating"  # creating, running, terminated, waiting, deleting
    started: float = 0.0
    restarts: int = 0
    logs: list[tuple[float, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiting_reason: str = "ContainerCreating"


class Kubelet(Reconciler):
    """Moves pods Pending → Running → Succeeded/Failed and serves their logs."""

    name = "kubelet"
    start_delay = 0.02
    delete_delay = 0.02

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.runs: dict[str, PodRun] = {}

    def on_event(self, ev: Event) -> None:
        if ev.key != K_PODS:
            return
        uid = ev.obj["metadata"].get("uid", "")
        if ev.type == "DELETED":
            run = self.runs.pop(uid, None)
            if run is not None:
                run.stage = "deleted"
                run.changed.set()
            return
        if (ev.obj.get("spec") or {}).get("nodeName"):
            run = self.runs.get(uid)
            if run is None or ev.obj["metadata"].get("deletionTimestamp"):
                self.enqueue((ev.namespace, ev.name))

    # -------------------------------------------------------------- lifecycle
    async def reconcile(self, key: Any) -> None:
        ns, name = key
        pod = self.sim.store.get(K_PODS, ns, name)
        if pod is None:
            return
        uid = pod["metadata"]["uid"]
        run = self.runs.get(uid)
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate_for_delete(pod, run)
            return
        phase = (pod.get("status") or {}).get("phase")
        if run is None:
            run = self.runs[uid] = PodRun()
            if phase in ("Succeeded", "Failed"):
                run.stage = "terminated"
                return
            self._set_creating(pod)
            self.enqueue(key, self.start_delay)
            return
        if run.stage == "creating":
            self._start(pod, run)
        elif run.stage == "running":
            self._finish(pod, run)

    def _ann(self, pod: Obj) -> dict[str, str]:
        return pod["metadata"].get("annotations") or {}

    def _write(self, pod: Obj, status: Obj) -> Obj:
        cur = self.sim.store.get(K_PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
            return pod
        new = copy.deepcopy(cur)
        new["status"] = status
        self.sim.store.put(K_PODS, new)
        return new

    def _base_status(self, pod: Obj) -> Obj:
        st = copy.deepcopy(pod.get("status") or {})
        st.setdefault("hostIP", "10.0.0.1")
        st.setdefault("hostIPs", [{"ip": "10.0.0.1"}])
        if not st.get("podIP"):
            n = abs(hash(pod["metadata"]["uid"])) % 65000
            st["podIP"] = f"10.244.{n // 250}.{n % 250 + 2}"
            st["podIPs"] = [{"ip": st["podIP"]}]
        st.setdefault("startTime", now_iso())
        return st

    def _conds(self, st: Obj, ready: bool, initialized: bool = True, reason: str | None = None) -> None:
        now = now_iso()
        old = {c.get("type"): c for c in st.get("conditions") or ()}

        def c(t: str, ok: bool, r: str | None = None) -> Obj:
            prev = old.get(t)
            s = "True" if ok else "False"
            out: Obj = {"type": t, "status": s, "lastProbeTime": None,
                        "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == s and
                        prev.get("lastTransitionTime") else now}
            if r and not ok:
                out["reason"] = r
            return out

        st["conditions"] = [c("PodReadyToStartContainers", True), c("Initialized", initialized),
                            c("Ready", ready, reason), c("ContainersReady", ready, reason),
                            c("PodScheduled", True)]

    def _containers(self, pod: Obj) -> list[Obj]:
        return list((pod.get("spec") or {}).get("containers") or [])

    def _pull_error(self, pod: Obj) -> tuple[str, str] | None:
        ann = self._ann(pod)
        reason = ann.get(A_REASON, "")
        for c in self._containers(pod):
            img = str(c.get("image", ""))
            if "does-not-exist" in img or reason in ("ImagePullBackOff", "ErrImagePull"):
                return "ImagePullBackOff", f'Back-off pulling image "{img}"'
        if reason in PULL_ERRORS:
            return reason, f"simulated {reason}"
        return None

    def _set_creating(self, pod: Obj) -> None:
        st = self._base_status(pod)
        st["phase"] = "Pending"
        self._conds(st, False, True, "ContainersNotReady")
        st["containerStatuses"] = [{
            "name": c.get("name"), "image": c.get("image"), "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
            for c in self._containers(pod)]
        self._write(pod, st)

    def _start(self, pod: Obj, run: PodRun) -> None:
        err = self._pull_error(pod)
        st = self._base_status(pod)
        if err is not None:
            run.stage = "waiting"
            run.waiting_reason = err[0]
            for cs in st.get("containerStatuses") or ():
                cs["state"] = {"waiting": {"reason": err[0], "message": err[1]}}
            self._write(pod, st)
            self.sim.record_event(pod, "Warning", "Failed", f"Error: {err[0]}", "kubelet")
            return
        ann = self._ann(pod)
        if ann.get(A_REASON) == "ContainerCannotRun":
            run.stage = "running"
            run.started = time.time()
            self._finish(pod, run)
            return
        run.stage = "running"
        run.started = time.time()
        started = now_iso()
        st["phase"] = "Running"
        self._conds(st, True)
        st["containerStatuses"] = [{
            "name": c.get("name"), "image": c.get("image"),
            "imageID": f"docker.io/library/{c.get('image')}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}", "ready": True, "started": True,
            "restartCount": run.restarts, "state": {"running": {"startedAt": started}},
            "lastState": (next((cs.get("lastState") for cs in (pod.get("status") or {}).get("containerStatuses")
                                or () if cs.get("name") == c.get("name")), {}) or {})}
            for c in self._containers(pod)]
        self._write(pod, st)
        text = ann.get(A_LOGS)
        if text:
            now = time.time()
            run.logs.extend((now, line) for line in text.rstrip("\n").split("\n"))
        run.changed.set()
        run.changed = asyncio.Event()
        try:
            duration = float(ann.get(A_DURATION, "1.0"))
        except ValueError:
            duration = 1.0
        self.enqueue((pod["metadata"].get("namespace", ""), pod["metadata"]["name"]), max(duration, 0.001))

    def _finish(self, pod: Obj, run: PodRun) -> None:
        ann = self._ann(pod)
        reason_ann = ann.get(A_REASON, "")
        try:
            code = int(ann.get(A_EXIT, "0"))
        except ValueError:
            code = 1
        if reason_ann == "OOMKilled":
            code, reason = 137, "OOMKilled"
        elif reason_ann == "ContainerCannotRun":
            code, reason = 128, "ContainerCannotRun"
        elif reason_ann in ("Error", "DeadlineExceeded") and code == 0:
            code, reason = 1, reason_ann
        else:
            reason = "Completed" if code == 0 else (reason_ann or "Error")
        st = self._base_status(pod)
        started = datetime.fromtimestamp(run.started or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        term: Obj = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now_iso(),
                     "containerID": f"containerd://{uuid.uuid4().hex}"}
        if ann.get(A_MESSAGE):
            term["message"] = ann[A_MESSAGE]
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        for cs in st.get("containerStatuses") or ():
            cs["ready"] = False
            cs["started"] = False
            if restart:
                cs["lastState"] = {"terminated": term}
                cs["restartCount"] = run.restarts + 1
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff" if code else "Completed",
                                           "message": "back-off restarting failed container"}}
            else:
                cs["state"] = {"terminated": term}
        if restart:
            run.restarts += 1
            run.stage = "creating"
            self._conds(st, False, True, "ContainersNotReady")
            self._write(pod, st)
            self.enqueue((pod["metadata"].get("namespace", ""), pod["metadata"]["name"]), 0.05)
            return
        st["phase"] = "Succeeded" if code == 0 else "Failed"
        self._conds(st, False, True, "PodCompleted" if code == 0 else "PodFailed")
        run.stage = "terminated"
        self._write(pod, st)
        run.changed.set()

    async def _terminate_for_delete(self, pod: Obj, run: PodRun | None) -> None:
        if run is not None and run.stage == "deleting":
            return
        if run is not None:
            run.stage = "deleting"
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed") and run is not None:
            st = self._base_status(pod)
            # A killed container exits with SIGTERM's code; the pod ends Failed, as kubelets do now.
            for cs in st.get("containerStatuses") or ():
                if "running" in (cs.get("state") or {}):
                    cs["state"] = {"terminated": {"exitCode": 143, "reason": "Error",
                                                  "startedAt": cs["state"]["running"].get("startedAt"),
                                                  "finishedAt": now_iso()}}
                    cs["ready"] = False
            st["phase"] = "Failed"
            self._conds(st, False, True, "PodFailed")
            pod = self._write(pod, st)
        if run is not None:
            run.changed.set()
        await asyncio.sleep(self.delete_delay)
        cur = self.sim.store.get(K_PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
            return
        if cur["metadata"].get("finalizers"):
            # The pod waits for its finalizers; drop the grace period so their removal deletes it.
            new = copy.deepcopy(cur)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            self.sim.store.put(K_PODS, new)
            return
        self.sim.force_remove(K_PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])

    # ------------------------------------------------------------------- logs
    async def serve_log(self, request: web.Request, pod: Obj) -> web.StreamResponse:
        q = request.query
        name = pod["metadata"]["name"]
        names = [str(c.get("name")) for c in self._containers(pod)]
        container = q.get("container")
        if not container:
            if len(names) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(names)}]")
            container = names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        run = self.runs.get(pod["metadata"]["uid"])
        if run is None or run.stage in ("creating", "waiting"):
            reason = run.waiting_reason if run is not None else "ContainerCreating"
            if reason == "ImagePullBackOff":
                raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: trying and '
                                  "failing to pull image")
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        stamps = q.get("timestamps") in ("true", "1")
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        follow = q.get("follow") in ("true", "1")

        def fmt(lines: list[tuple[float, str]]) -> bytes:
            return "".join((f"{ts_nano(t)} {s}\n" if stamps else f"{s}\n") for t, s in lines).encode()

        lines = list(run.logs)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if not follow:
            return web.Response(body=fmt(lines), content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(fmt(lines))
        sent = len(run.logs)
        while run.stage in ("running", "creating"):
            ev = run.changed
            try:
                await asyncio.wait_for(ev.wait(), 1.0)
            except TimeoutError:
                continue
            if len(run.logs) > sent:
                await resp.write(fmt(run.logs[sent:]))
                sent = len(run.logs)
        await resp.write_eof()
        return resp
