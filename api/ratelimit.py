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
    """Counts requests per key in the current minute (memory only: one API replica's view)."""

    def __init__(self, window_seconds: int = 60) -> None:
        self.window = window_seconds
        self._counts: dict[str, tuple[int, int]] = {}

    def hit(self, key: str, limit: int, *, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        start, count = self._counts.get(key, (window_start, 0))
        if start != window_start:
            start, count = window_start, 0
        reset = start + self.window
        if limit <= 0:
            return RateDecision(True, limit, 0, reset)
        if count >= limit:
            self._counts[key] = (start, count)
            return RateDecision(False, limit, 0, reset)
        count += 1
        self._counts[key] = (start, count)
        return RateDecision(True, limit, limit - count, reset)

    def reset(self) -> None:
        self._counts.clear()
