"""Per-client request rate limit (a token bucket per worker process)."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from materials_store.errors import OneCertError


class RateLimited(OneCertError):
    problem_type: ClassVar[str] = "urn:onecert:problem:rate-limited"
    title: ClassVar[str] = "Too many requests"
    status: ClassVar[int] = 429


class RateLimiter:
    """``per_minute`` requests per client, refilled continuously, with a burst of the same size."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def check(self, client_id: str) -> None:
        """Take one request from the client's bucket, or raise RateLimited with the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, updated = self.buckets.get(client_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.rate)
            if tokens < 1.0:
                self.buckets[client_id] = (tokens, now)
                wait = max(1, int((1.0 - tokens) / self.rate + 0.999))
                raise RateLimited("this client has exceeded its request rate", retry_after=wait)
            self.buckets[client_id] = (tokens - 1.0, now)
