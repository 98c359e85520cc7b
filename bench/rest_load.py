"""The REST facade under load: ``--clients`` (200) concurrent clients for ``--seconds`` (60) with the operator running.

Each client has a connection of its own and, in a loop, sends a mix of ``POST /tasks`` (a one-second task
that the operator really runs on a kwok node), ``GET /tasks/{id}`` of a task it created and a list
(``GET /tasks?limit=20``).  Separate processes, as in production: the control plane, the operator
(``kubetask operator``), the API (``kubetask api``'s server) and this load generator on loopback.

Prints the answers by status, the errors (timeouts, refused or dropped connections, 5xx), p50/p99 per
kind of request and overall, and the throughput; the last line is ``RESULT ...``.  The reliability suite
(``tests/reliability/test_load.py``) runs :func:`drive` the same way and asserts on its counts.

Run: ``python bench/rest_load.py [--clients 200] [--seconds 60] [--seed 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _support import ApiReplicas, load, pct, result, start_cluster

from kubetask.cluster import NodeShape

OK_STATUSES = (200, 201)
RATE_LIMITED = 429
MIX = (("post", 0.2), ("get", 0.4), ("list", 0.4))
"""What a client sends, by share."""
TASK_BODY = {"name": "load", "image": "busybox", "command": ["true"], "resources": {"cpu": "10m", "memory": "16Mi"},
             "annotations": {"kubetask.dev/sim-duration-seconds": "1"}}
REQUESTS_PER_MINUTE = 1200
"""Each tenant's rate limit: what beyond it the API sheds with 429 before it reaches the apiserver.  Sized to
what a shared two-core machine sustains; ``--requests-per-minute 1000000`` switches shedding off and shows
what the stack does when the apiserver itself is the bottleneck."""


def limits(requests_per_minute: int = REQUESTS_PER_MINUTE) -> dict[str, int]:
    """A tenant's limits for the run: no pending cap to speak of, the given rate limit."""
    return {"maxPending": 100_000, "requestsPerMinute": requests_per_minute}
NODES = [NodeShape("cpu", count=2, cpu="64", memory="256Gi")]


@dataclass
class Figures:
    """What a load run saw."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Requests without an HTTP answer, by exception type (a dropped connection is ``ServerDisconnectedError``
    or ``ClientOSError``; a timeout ``TimeoutError``)."""
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind, _ in MIX})
    samples: list[str] = field(default_factory=list)
    """A few bodies of unexpected answers, for the log."""

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def unexpected(self) -> dict[int, int]:
        """Answers other than 2xx and the rate limit's 429."""
        return {s: n for s, n in self.statuses.items() if s not in (*OK_STATUSES, RATE_LIMITED)}

    @property
    def dropped(self) -> int:
        return sum(n for kind, n in self.errors.items() if kind != "TimeoutError")

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]

    def lines(self) -> list[str]:
        rate = self.requests / max(self.seconds, 1e-9)
        out = [f"  {self.requests} requests in {self.seconds:.1f} s: {rate:.0f} req/s"
               f"; statuses {dict(sorted(self.statuses.items()))}; errors {dict(self.errors) or 0}"]
        for kind, values in self.latencies.items():
            if values:
                out.append(f"  {kind:<5} n={len(values):6d}  p50 {pct(values, 0.5) * 1000:8.1f} ms  "
                           f"p99 {pct(values, 0.99) * 1000:8.1f} ms")
        every = self.all_latencies()
        if every:
            out.append(f"  all   n={len(every):6d}  p50 {pct(every, 0.5) * 1000:8.1f} ms  "
                       f"p99 {pct(every, 0.99) * 1000:8.1f} ms")
        out += [f"  unexpected: {sample}" for sample in self.samples]
        return out


async def _client(index: int, url: str, key: str, deadline: float, rng: random.Random, figures: Figures) -> None:
    ids: list[str] = []
    kinds = [kind for kind, _ in MIX]
    weights = [share for _, share in MIX]
    connector = aiohttp.TCPConnector(limit=1)  # one connection per client, kept alive, as a real client's pool
    async with aiohttp.ClientSession(f"{url}/api/v1/", headers={"X-API-Key": key}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind == "get" and not ids:
                kind = "post"
            started = time.perf_counter()
            try:
                if kind == "post":
                    request = http.post("tasks", json={**TASK_BODY, "name": f"load {index}-{len(ids)}"})
                elif kind == "get":
                    request = http.get(f"tasks/{rng.choice(ids)}")
                else:
                    request = http.get("tasks", params={"limit": "20"})
                async with request as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                figures.errors[type(error).__name__] += 1
                continue
            figures.latencies[kind].append(time.perf_counter() - started)
            figures.statuses[status] += 1
            if status == 201 and kind == "post":
                ids.append(str((await _json(body)).get("id")))
            elif status not in (*OK_STATUSES, RATE_LIMITED) and len(figures.samples) < 5:
                figures.samples.append(f"{kind} -> {status}: {body[:300]!r}")
            elif status == RATE_LIMITED:
                await asyncio.sleep(0.2)  # a well-behaved client backs off a little


async def _json(body: bytes) -> dict[str, object]:
    import json

    value = json.loads(body)
    return value if isinstance(value, dict) else {}


async def drive(url: str, keys: list[str], *, clients: int, seconds: float, seed: int = 12) -> Figures:
    """``clients`` concurrent clients (spread over ``keys``) against the API at ``url`` for ``seconds``."""
    figures = Figures()
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(_client(i, url, keys[i % len(keys)], deadline, random.Random(rng.random()), figures)
                           for i in range(clients)))
    figures.seconds = time.monotonic() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--requests-per-minute", type=int, default=REQUESTS_PER_MINUTE,
                        help="each tenant's rate limit (default %(default)s)")
    args = parser.parse_args()

    from _support import OperatorProcess

    from kubetask.kube.bootstrap import ensure_tenant
    from kubetask.kube.client import KubeClient

    with tempfile.TemporaryDirectory(prefix="kubetask-rest-load-") as tmp:
        workdir = Path(tmp)
        cluster = start_cluster(workdir / "cluster", NODES, templates=True)
        operator = api = None
        try:
            kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig")
            operator = OperatorProcess(kubeconfig, webhook=False).wait_ready()
            keys = {"alice": "load-alice-key", "bob": "load-bob-key"}

            async def with_keys() -> None:
                client = await KubeClient.connect(str(kubeconfig))
                try:
                    for name, key in keys.items():
                        await ensure_tenant(client, name, api_key=key, limits=limits(args.requests_per_minute))
                finally:
                    await client.close()

            asyncio.run(with_keys())
            api = ApiReplicas(kubeconfig, 1, logs=workdir / "logs").wait_healthy()
            wait_keys(api.url, list(keys.values()))
            print(f"{args.clients} clients for {args.seconds:.0f} s against {api.url}, rate limit "
                  f"{args.requests_per_minute}/min per tenant (load {load()})", flush=True)
            figures = asyncio.run(drive(api.url, list(keys.values()), clients=args.clients, seconds=args.seconds,
                                        seed=args.seed))
            print("\n".join(figures.lines()))
            every = figures.all_latencies()
            result(clients=args.clients, seconds=round(figures.seconds, 1), requests=figures.requests,
                   rps=figures.requests / figures.seconds, p50_ms=pct(every, 0.5) * 1000,
                   p99_ms=pct(every, 0.99) * 1000, rate_limited=figures.statuses[RATE_LIMITED],
                   unexpected=sum(figures.unexpected.values()), errors=sum(figures.errors.values()),
                   dropped=figures.dropped, load=load().replace(" ", "/"))
        finally:
            if api is not None:
                api.stop()
            if operator is not None:
                operator.stop()
            cluster.stop()


def wait_keys(url: str, keys: list[str], timeout: float = 60) -> None:
    """Until the API knows every key (its caches list the tenants' Secrets after start)."""
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(keys)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API never accepted {len(pending)} of the keys")
        try:
            response = httpx.get(f"{url}/api/v1/users/me/limits", headers={"X-API-Key": pending[0]}, timeout=5)
            if response.status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


if __name__ == "__main__":
    main()
