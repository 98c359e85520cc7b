"""Per-tenant request rate limit: a fixed one-minute window (``X-RateLimit-*`` headers, 429 over it)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Unix time (seconds) when the current window ends."""

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - time.time()))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    """Counts requests per key in the current minute, in memory.

    Each API replica counts only the requests it serves, so ``replicas`` replicas behind one Service
    each allow their share, ``ceil(limit / replicas)``: a Service spreads a client's connections over
    them, so together they hold a tenant near its limit (a client pinned to one replica gets its
    share, not the whole limit; none gets ``replicas`` times it).  ``X-RateLimit-Remaining`` is this
    replica's remainder scaled to the whole, an estimate that assumes the spread is even.
    """

    def __init__(self, window_seconds: int = 60, *, replicas: int = 1) -> None:
        self.window = window_seconds
        self.replicas = max(1, replicas)
        self._counts: dict[str, tuple[int, int]] = {}

    def hit(self, key: str, limit: int, *, now: float | None = None) -> RateDecision:
        """Count one request of ``key`` against its limit for all replicas together."""
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        start, count = self._counts.get(key, (window_start, 0))
        if start != window_start:
            start, count = window_start, 0
        reset = start + self.window
        if limit <= 0:
            return RateDecision(True, limit, 0, reset)
        share = math.ceil(limit / self.replicas)
        if count >= share:
            self._counts[key] = (start, count)
            return RateDecision(False, limit, 0, reset)
        count += 1
        self._counts[key] = (start, count)
        return RateDecision(True, limit, min(limit, (share - count) * self.replicas), reset)

    def reset(self) -> None:
        self._counts.clear()
