"""What the benchmarks share: the real control plane, the operator and API in their own processes, meters.

Every benchmark runs on :class:`kubetask.cluster.LocalCluster` (etcd, kube-apiserver,
controller-manager, scheduler, kwok nodes) and prints its figures, ending with one line
``RESULT name=value ...``.  The machine's load (``/proc/loadavg``) is printed with them: on
a shared two-core machine the figures move with what else runs.
"""

from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubetask.cluster import LocalCluster, NodeShape

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- figures


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def result(**figures: Any) -> None:
    """The benchmark's last line: ``RESULT name=value ...``."""
    parts = []
    for name, value in figures.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={text}")
    print("RESULT " + " ".join(parts), flush=True)


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sockets(pid: int) -> int:
    """Open sockets of a process (each TLS connection holds buffers of its own)."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
    return count


class Meter:
    """CPU seconds used by some processes between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}


def wait_idle(pid: int, *, window: float = 2.0, threshold: float = 0.05, timeout: float = 300) -> float:
    """Seconds until the process uses less than ``threshold`` of a core over ``window`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < threshold:
            return time.monotonic() - started - window
    return float("inf")


# ---------------------------------------------------------------------- the control plane


def start_cluster(workdir: Path, nodes: list[NodeShape], *, templates: bool = False,
                  profiling: bool = False) -> LocalCluster:
    """The real control plane with these kwok nodes, the CRDs (and optionally the built-in templates);
    ``profiling`` serves the kube-apiserver's ``/debug/pprof`` (:func:`apiserver_profiled`)."""
    cluster = LocalCluster(workdir, nodes, progress=lambda message: print(message, flush=True),
                           profiling=profiling).start(timeout=300)
    for path in sorted(glob.glob(str(ROOT / "crds" / "*.yaml"))):
        cluster.apply_file(path)
    if templates:
        for path in sorted(glob.glob(str(ROOT / "kubetask" / "resources" / "tasktemplates" / "*.yaml"))):
            cluster.apply_file(path)
    return cluster


def create_namespace(cluster: LocalCluster, name: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    deadline = time.monotonic() + 60
    while cluster.get("v1", "ServiceAccount", "default", name) is None:  # pods need it
        if time.monotonic() > deadline:
            raise RuntimeError(f"no default ServiceAccount in {name}")
        time.sleep(0.2)


def ensure_tenant(cluster: LocalCluster, name: str, limits: dict[str, Any]) -> str:
    """A Tenant, once the operator made its namespace and quota (and the controller its ServiceAccount)."""
    cluster.apply({"apiVersion": "kubetask.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
                   "spec": {"limits": limits}})
    namespace = f"kubetask-{name}"
    deadline = time.monotonic() + 120
    while cluster.get("v1", "ResourceQuota", "kubetask-quota", namespace) is None or \
            cluster.get("v1", "ServiceAccount", "default", namespace) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"tenant {name} was not reconciled")
        time.sleep(0.2)
    return namespace


def quota_refusals(cluster: LocalCluster, namespaces: list[str], *, show: int = 3) -> int:
    """Pods the apiserver's ResourceQuota admission refused: the Job controller records ``FailedCreate``, and
    the operator ``JobCreateFailed`` for a bare Pod (``spec.runtime: pod``) or a Job it could not create."""
    refused = 0
    other: Counter[str] = Counter()
    for namespace in namespaces:
        for event in cluster.list("v1", "Event", namespace):
            if event.get("reason") not in ("FailedCreate", "JobCreateFailed"):
                continue
            message = event.get("message", "")
            if "exceeded quota" not in message:
                # Any other failed create is not a quota refusal, but the reader should see what it was.
                other[message.split(":", 2)[-1].strip()[:160]] += int(event.get("count") or 1)
                continue
            refused += int(event.get("count") or 1)
            if show > 0:
                show -= 1
                print(f"  refused by quota: {event['involvedObject'].get('name')}: {event['message']}")
    for message, count in other.most_common(3):
        print(f"  failed creates, not quota: {count} x {message}")
    return refused


def apiserver_requests(cluster: LocalCluster) -> Counter[str]:
    """Requests the kube-apiserver served so far, by ``verb resource[/subresource]``, with `` (code)`` for
    those that did not succeed (from its /metrics): the writes, and the reads of pods and quotas (the
    operator reads a quota fresh when an older report may count a pod twice)."""
    counts: Counter[str] = Counter()
    text = cluster.admin().get("/metrics").text
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        inside = line[line.index("{") + 1:line.index("}")]
        labels = {k: v.strip('"') for k, v in (part.split("=", 1) for part in inside.split(",") if "=" in part)}
        if labels.get("verb") in ("WATCH", "LIST", "GET") and labels.get("resource") not in ("pods", "resourcequotas"):
            continue
        what = labels.get("resource", "?") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        code = labels.get("code", "")
        # Refused writes are worth telling apart: a 409 is a create or update that raced, a 403 a refusal.
        refused = f" ({code})" if code and not code.startswith("2") else ""
        counts[f"{labels.get('verb')} {what}{refused}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def histogram_summary(exposition: str, metric: str, within: float, /, **labels: str) -> tuple[int, float, float]:
    """A Prometheus histogram's ``(count, mean seconds, share observed within ``within`` s)``, summed over every
    series of ``metric`` whose labels include ``labels`` (from a ``/metrics`` text)."""
    from prometheus_client.parser import text_string_to_metric_families

    count = total = inside = 0.0
    for family in text_string_to_metric_families(exposition):
        if family.name != metric:
            continue
        for sample in family.samples:
            if any(sample.labels.get(key) != value for key, value in labels.items()):
                continue
            if sample.name == f"{metric}_count":
                count += sample.value
            elif sample.name == f"{metric}_sum":
                total += sample.value
            elif sample.name == f"{metric}_bucket" and float(sample.labels["le"]) == within:
                inside += sample.value
    return int(count), (total / count if count else float("nan")), (inside / count if count else float("nan"))


def event_reasons(cluster: LocalCluster, namespaces: list[str]) -> Counter[str]:
    """Events recorded in the namespaces, by ``component/reason``."""
    counts: Counter[str] = Counter()
    for namespace in namespaces:
        for event in cluster.list("v1", "Event", namespace):
            source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or "?"
            counts[f"{source}/{event.get('reason')}"] += int(event.get("count") or 1)
    return counts


def duplicate_jobs(cluster: LocalCluster, namespaces: list[str]) -> int:
    """Executions with more than one Job (must be 0)."""
    count: Counter[str] = Counter()
    for namespace in namespaces:
        for job in cluster.list("batch/v1", "Job", namespace):
            labels = job["metadata"].get("labels") or {}
            count[f"{namespace}/{labels.get('kubetask.io/task')}/{labels.get('kubetask.io/execution')}"] += 1
    return sum(1 for n in count.values() if n > 1)


# ---------------------------------------------------------------------- the operator, in its own process


_PYMALLOC_TOTALS = {
    "arenas allocated current": "arenas",
    "arenas highwater mark": "arenas_highwater",
    "bytes in allocated blocks": "allocated_mb",
    "bytes in available blocks": "free_in_used_pools_mb",
    "unused pools": "unused_pools_mb",
}
"""``sys._debugmallocstats()`` totals reported, by the label its lines start with (after ``#`` or a count)."""


def _heap_report(size_classes: int = 6) -> dict[str, float]:
    """Where the RSS is: pymalloc's arenas and blocks, the size classes with the most free space, and the
    RSS before and after a forced collection and trim."""
    import gc
    import re
    import sys
    import tempfile

    from kubetask.kube.memory import release_free_memory

    report: dict[str, float] = {"rss_mb": rss_mb(os.getpid())}
    with tempfile.TemporaryFile("w+") as out:  # the statistics go to the C-level stderr only
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        lines = out.read().splitlines()
    free_by_size: dict[int, float] = {}
    for line in lines:
        if re.fullmatch(r"\s*\d+(\s+\d+){4}\s*", line):  # class, size, pools, blocks in use, free blocks
            _, size, _, _, free = (int(field) for field in line.split())
            free_by_size[size] = free * size / 1e6
            continue
        label, equals, value = line.partition("=")
        name = _PYMALLOC_TOTALS.get(re.sub(r"^[#\d\s]*|\s*\*.*$", "", " ".join(label.split())))
        if equals and name and name not in report:
            number = float(value.replace(",", ""))
            report[name] = number if name.startswith("arenas") else number / 1e6
    for size in sorted(free_by_size, key=free_by_size.__getitem__, reverse=True)[:size_classes]:
        report[f"free_mb_in_{size}_byte_blocks"] = round(free_by_size[size], 1)
    gc.collect()
    release_free_memory()
    report["rss_after_collect_and_trim_mb"] = rss_mb(os.getpid())
    return report


def _operator_main(conn: Any, kubeconfig: str, webhook: bool, overrides: dict[str, Any]) -> None:
    """Child process: ``run_operator`` on the main thread, as ``kubetask operator`` runs it, until told to stop."""
    import asyncio
    import logging
    import threading

    from kubetask.kube.memory import forgo_unused_clients

    forgo_unused_clients()  # as `kubetask operator` does, before Kopf is imported
    from kubetask.operator.runner import run_operator
    from kubetask.settings import GpuSettings, KubeSettings, OperatorSettings

    logging.basicConfig(level=logging.WARNING, format="operator %(levelname)s %(name)s: %(message)s")
    settings = OperatorSettings(**{"metrics_port": 0, "liveness_port": 0, "webhook_port": 0, "leader_election": False,
                                   "webhook_enabled": webhook, **overrides})
    ready = threading.Event()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def control() -> None:
            if ready.wait(300):
                conn.send(("ready", os.getpid()))
            with contextlib.suppress(EOFError, OSError):
                while conn.recv() == "heap":
                    conn.send(_heap_report())
            dump = os.environ.get("KUBETASK_BENCH_MEMORY_DUMP")
            if dump:  # a diagnosis: where the operator's memory is, and how much of its RSS that explains
                import tracemalloc

                snapshot = tracemalloc.take_snapshot()
                lines = [f"rss {rss_mb(os.getpid()):.0f} MB, traced {tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB"]
                lines += [str(stat) for stat in snapshot.statistics("lineno")[:40]]
                Path(f"{dump}.{os.getpid()}").write_text("\n".join(lines) + "\n")  # one per operator process
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=control, daemon=True).start()
        await run_operator(settings, GpuSettings(), KubeSettings(kubeconfig=kubeconfig), stop=stop, ready=ready)

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(OSError):
            conn.send("stopped")


class OperatorProcess:
    """The operator in a child process of its own (its own interpreter and GIL), as deployed."""

    def __init__(self, kubeconfig: str | Path, *, webhook: bool = True, **overrides: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.started = time.monotonic()
        self.proc = ctx.Process(target=_operator_main, args=(child, str(kubeconfig), webhook, overrides),
                                daemon=True)
        self.proc.start()
        assert self.proc.pid is not None
        self.pid: int = self.proc.pid
        self.ready_after: float | None = None

    def wait_ready(self, timeout: float = 300) -> OperatorProcess:
        if not self.conn.poll(timeout):
            raise RuntimeError("the operator did not become ready")
        self.conn.recv()
        self.ready_after = time.monotonic() - self.started
        return self

    def heap_report(self) -> dict[str, float]:
        """pymalloc's statistics and the RSS before and after a forced collection and trim (a diagnosis)."""
        self.conn.send("heap")
        if not self.conn.poll(60):
            raise RuntimeError("the operator did not answer the heap report")
        report: dict[str, float] = self.conn.recv()
        return report

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send("stop")
            self.conn.poll(60)
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


# ---------------------------------------------------------------------- the API, in its own processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_API_MAIN = """
import asyncio, socket, sys
from kubetask.api.server import serve_api
from kubetask.settings import ApiSettings, KubeSettings
port, kubeconfig = int(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # replicas share the port; the kernel spreads connections
sock.bind(("127.0.0.1", port))
asyncio.run(serve_api(ApiSettings(host="127.0.0.1", port=port), KubeSettings(kubeconfig=kubeconfig), sock=sock))
"""


class ApiReplicas:
    """``count`` API processes serving one port (SO_REUSEPORT), as replicas behind a Service."""

    def __init__(self, kubeconfig: str | Path, count: int = 1, *, logs: Path) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            out = (logs / f"api-{index}.log").open("wb")
            self.procs.append(subprocess.Popen([sys.executable, "-P", "-c", _API_MAIN, str(self.port),
                                                str(kubeconfig)], cwd="/", stdout=out, stderr=subprocess.STDOUT))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_healthy(self, timeout: float = 120) -> ApiReplicas:
        import httpx

        deadline = time.monotonic() + timeout
        healthy: set[int] = set()
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"an API process exited ({proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{self.url}/health", timeout=2)
                if response.status_code == 200:
                    healthy.add(len(healthy))
                    if len(healthy) >= 3 * len(self.procs):  # a few answers: every replica is likely up
                        return self
            time.sleep(0.2)
        raise RuntimeError("the API did not become healthy")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------- profiles


@contextlib.contextmanager
def profiled(pid: int, out: Path | None, *, rate: int = 200) -> Iterator[None]:
    """py-spy attached to ``pid`` for the block, writing collapsed stacks to ``out`` (``None``: no profile)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise RuntimeError("profiling needs py-spy (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if out.exists():
            out.with_suffix(".top.txt").write_text(summarize(out))


@contextlib.contextmanager
def apiserver_profiled(cluster: LocalCluster, out: Path | None, *, seconds: int) -> Iterator[None]:
    """The kube-apiserver's own CPU profile (Go pprof) over the first ``seconds`` of the block, written to
    ``out`` with a ``go tool pprof -top`` summary beside it (``None``: no profile)."""
    if out is None:
        yield
        return
    import threading

    out.parent.mkdir(parents=True, exist_ok=True)

    def fetch() -> None:
        answer = cluster.admin().get("/debug/pprof/profile", params={"seconds": seconds}, timeout=seconds + 60)
        answer.raise_for_status()
        out.write_bytes(answer.content)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join(seconds + 90)
        go = shutil.which("go")
        if out.exists() and go:
            top = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=60", str(out)],
                                 capture_output=True, text=True, check=False)
            cum = subprocess.run([go, "tool", "pprof", "-top", "-cum", "-nodecount=80", str(out)],
                                 capture_output=True, text=True, check=False)
            out.with_suffix(".top.txt").write_text(top.stdout + top.stderr + "\n\n" + cum.stdout)


def summarize(raw: Path, top: int = 40) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    lines = [f"{total} samples", "", "self:"]
    lines += [f"  {100 * n / max(1, total):5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / max(1, total):5.1f}%  {name}" for name, n in incl.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
