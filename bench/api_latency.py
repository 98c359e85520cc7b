"""REST facade latency against the local real control plane (kube-apiserver, etcd, kwok nodes).

Prints:
* ``POST /tasks`` p50/p99 with 50 concurrent clients, next to the raw Task-CR create latency against the
  same apiserver in the same run (same concurrency, same bodies, same HTTP client library), and their ratio;
* ``GET /tasks`` with a filter, a sort and a page over 10,000 tasks (1,000 per user): p50/p99.

Run: ``python bench/api_latency.py [--clients 50] [--posts 1000] [--gets 2000] [--profile DIR]``.

Separate processes, as in production: the control plane (``kubetask cluster up``: etcd, kube-apiserver,
controller-manager, scheduler, kwok), the API (``kubetask api``) and this load generator.  No operator
runs, so tasks stay pending and the figures are the API's own cost
(auth, validation, admission, the apiserver round trip, the cache).  ``--profile DIR`` attaches py-spy to
the API process during each timed phase and writes ``DIR/api-{post,get}.txt`` (collapsed stacks) and a
short top-functions summary; it needs ``pip install py-spy`` and ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubetask.core.rest import BuildContext, build_task, generate_task_id  # noqa: E402
from kubetask.kube.bootstrap import ensure_tenant  # noqa: E402
from kubetask.kube.client import TASKS, KubeClient  # noqa: E402

USERS = [f"user{i:02d}" for i in range(10)]
PER_USER = 1000
LIMITS = {"maxPending": 100_000, "requestsPerMinute": 100_000_000}
BODY = {"name": "bench", "script_content": "print('bench')", "priority": 5, "metadata": {"tags": ["bench"]}}
QUIET = ["--log-level", "WARNING"]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] * 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_concurrently(clients: int, total: int, op: Callable[[int], Awaitable[None]]) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


# --------------------------------------------------------------------------- processes


class Child:
    """A child process (the control plane or the API), stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.name} process exited ({self.proc.returncode}):\n"
                               f"{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def start_cluster(tmp: Path) -> tuple[Child, Path, int]:
    """``kubetask cluster up``: the real control plane with the CRDs and built-in templates, in its own processes.

    Returns the launcher, the admin kubeconfig and the pid of kube-apiserver (for its CPU figures).
    """
    kubeconfig = tmp / "kubeconfig"
    workdir = tmp / "cluster"
    cluster = Child("cluster", [sys.executable, "-m", "kubetask.cli", *QUIET, "cluster", "up", "--workdir",
                                str(workdir), "--kubeconfig-out", str(kubeconfig), "--nodes", "cpu=4x0"],
                    tmp / "cluster.log")
    deadline = time.monotonic() + 600  # includes building the binaries on a fresh machine
    while "kubeconfig:" not in cluster.log.read_text():  # printed once CRDs and templates are applied
        cluster.check()
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError("the control plane did not start")
        time.sleep(0.1)
    pids = json.loads((workdir / "pids.json").read_text())
    return cluster, kubeconfig, int(pids["kube-apiserver"])


def start_api(tmp: Path, kubeconfig: Path) -> tuple[Child, str]:
    """``kubetask api`` in its own process (its own interpreter and GIL), as in production."""
    port = free_port()
    api = Child("api", [sys.executable, "-m", "kubetask.cli", *QUIET, "api", "--kubeconfig", str(kubeconfig),
                        "--host", "127.0.0.1", "--port", str(port)], tmp / "api.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        api.check()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return api, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    api.stop()
    raise RuntimeError("the API process did not become healthy")


@contextmanager
def profiled(pid: int, out_dir: Path | None, phase: str) -> Any:
    """py-spy attached to ``pid`` for the duration of the block (``None``: no profiling)."""
    if out_dir is None:
        yield
        return
    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    raw = out_dir / f"api-{phase}.txt"
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--output", str(raw), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if raw.exists():
            (out_dir / f"api-{phase}-top.txt").write_text(summarize(raw))


def summarize(raw: Path, top: int = 40) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
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
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in incl.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of ``pid`` (``None``: this process) so far; 0 where /proc is missing."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per request of the apiserver, the API and the load generator over one phase."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def per_request(self, requests: int) -> str:
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        return "  ".join(f"{name} {1000 * seconds / max(1, requests):.2f}" for name, seconds in used.items())


# --------------------------------------------------------------------------- the benchmark


@asynccontextmanager
async def api_sessions(url: str, clients: int) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    # aiohttp on both sides of the ratio: the raw creates go through KubeClient, itself on aiohttp.
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    sessions = {u: aiohttp.ClientSession(f"{url}/api/v1/", headers={"X-API-Key": f"{u}-key"},
                                         connector=connector, connector_owner=False,
                                         timeout=aiohttp.ClientTimeout(total=60)) for u in USERS}
    try:
        yield sessions
    finally:
        for session in sessions.values():
            await session.close()
        await connector.close()


async def bench(args: argparse.Namespace, profile_dir: Path | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kubetask-bench-"))
    cluster, kubeconfig, apiserver_pid = start_cluster(tmp)
    api: Child | None = None
    kube = await KubeClient.connect(str(kubeconfig))
    try:
        for user in USERS:
            await ensure_tenant(kube, user, api_key=f"{user}-key", limits=LIMITS)
        api, url = start_api(tmp, kubeconfig)
        async with api_sessions(url, args.clients) as http:
            await run(args, kube, http, {"apiserver": apiserver_pid, "api": api.proc.pid, "loadgen": None}, profile_dir)
    finally:
        await kube.close()
        if api is not None:
            api.stop()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def run(args: argparse.Namespace, kube: KubeClient, http: dict[str, aiohttp.ClientSession],
              pids: dict[str, int | None], profile_dir: Path | None) -> None:
    api_pid = pids["api"]
    assert api_pid is not None
    created = dict.fromkeys(USERS, 0)
    bodies = {u: build_task(BODY, BuildContext(user=u, namespace=f"kubetask-{u}")) for u in USERS}

    async def post(i: int) -> None:
        user = USERS[i % len(USERS)]
        async with http[user].post("tasks", json=BODY) as response:
            body = await response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /tasks -> {response.status}: {body[:300]!r}")
        created[user] += 1

    async def raw(i: int) -> None:
        user = USERS[i % len(USERS)]
        await _create(kube, bodies[user], user)
        created[user] += 1

    # Warm up both paths with as many concurrent requests as clients (connection pools, TLS, caches).
    await run_concurrently(args.clients, 2 * args.clients, post)
    await run_concurrently(args.clients, 2 * args.clients, raw)

    with profiled(api_pid, profile_dir, "post"):
        meter = CpuMeter(pids)
        started = time.perf_counter()
        post_lat = await run_concurrently(args.clients, args.posts, post)
        post_rate = len(post_lat) / (time.perf_counter() - started)
        post_cpu = meter.per_request(len(post_lat))

    meter = CpuMeter(pids)
    started = time.perf_counter()
    raw_lat = await run_concurrently(args.clients, args.posts, raw)
    raw_rate = len(raw_lat) / (time.perf_counter() - started)
    raw_cpu = meter.per_request(len(raw_lat))

    # Fill up to 1,000 tasks per user (raw creates; not timed).
    jobs = [u for u in USERS for _ in range(max(0, PER_USER - created[u]))]
    await run_concurrently(args.clients, len(jobs), lambda i: _create(kube, bodies[jobs[i]], jobs[i]))
    total_tasks = sum(max(created[u], PER_USER) for u in USERS)

    # Wait until the API's cache holds every task.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = []
        for user in USERS:
            async with http[user].get("tasks", params={"limit": "1"}) as response:
                counts.append((await response.json())["total"])
        if all(c >= PER_USER for c in counts):
            break
        await asyncio.sleep(0.5)

    params = {"status": "pending", "tag": "bench", "sort_by": "priority", "sort_order": "desc", "limit": "50"}

    async def get(i: int) -> None:
        user = USERS[i % len(USERS)]
        async with http[user].get("tasks", params={**params, "offset": str((i * 50) % 900)}) as response:
            body = await response.read()
            if response.status != 200 or len(json.loads(body)["tasks"]) != 50:
                raise RuntimeError(f"GET /tasks -> {response.status}: {body[:200]!r}")

    for i in range(2 * len(USERS)):  # warm-up
        await get(i)
    with profiled(api_pid, profile_dir, "get"):
        meter = CpuMeter(pids)
        started = time.perf_counter()
        get_lat = await run_concurrently(args.clients, args.gets, get)
        get_rate = len(get_lat) / (time.perf_counter() - started)
        get_cpu = meter.per_request(len(get_lat))

    print(f"kubetask API latency - real kube-apiserver, {args.clients} concurrent clients, {len(USERS)} users; "
          f"control plane, API and load generator each in their own processes ({os.cpu_count()} CPUs)")
    print(f"  POST /tasks            n={len(post_lat):5d}  p50 {pct(post_lat, 50):7.2f} ms  "
          f"p99 {pct(post_lat, 99):7.2f} ms  mean {statistics.mean(post_lat) * 1000:7.2f} ms  "
          f"{post_rate:6.0f} req/s")
    print(f"  raw Task CR create     n={len(raw_lat):5d}  p50 {pct(raw_lat, 50):7.2f} ms  "
          f"p99 {pct(raw_lat, 99):7.2f} ms  mean {statistics.mean(raw_lat) * 1000:7.2f} ms  "
          f"{raw_rate:6.0f} req/s")
    print(f"  ratio POST/raw         p50 {pct(post_lat, 50) / pct(raw_lat, 50):5.2f}x   "
          f"p99 {pct(post_lat, 99) / pct(raw_lat, 99):5.2f}x")
    print(f"  GET /tasks (status+tag filter, sort by priority, page of 50) over {total_tasks} tasks "
          f"({PER_USER} per user)")
    print(f"                         n={len(get_lat):5d}  p50 {pct(get_lat, 50):7.2f} ms  "
          f"p99 {pct(get_lat, 99):7.2f} ms  mean {statistics.mean(get_lat) * 1000:7.2f} ms  "
          f"{get_rate:6.0f} req/s")
    print(f"  CPU ms per request     POST: {post_cpu}\n                         raw:  {raw_cpu}\n"
          f"                         GET:  {get_cpu}")
    if profile_dir is not None:
        print(f"  API profiles (py-spy): {profile_dir}/api-post-top.txt, {profile_dir}/api-get-top.txt")


async def _create(kube: KubeClient, body: dict[str, Any], user: str) -> None:
    obj = {**body, "metadata": {**body["metadata"], "name": generate_task_id("bench")}}
    await kube.create(TASKS, obj, f"kubetask-{user}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts", type=int, default=1000, help="POSTs (and as many raw creates)")
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="profile the API process with py-spy during each timed phase, into DIR")
    args = parser.parse_args()
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(args, profile_dir))


if __name__ == "__main__":
    main()
