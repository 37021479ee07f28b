"""A route's rate limit: at most so many requests in a moving window for one key (a
customer, or the client's address), counted by `limits` in the process's memory, so
each replica counts its own. Past it: 429 `rate_limited` in the envelope, with
`Retry-After`, and nothing done."""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from shared_domain.http import ApiError

log = logging.getLogger(__name__)


def parse(spec: str) -> limits.RateLimitItem:
    """`10/second`, `100 per minute`, `5/2 seconds`: what `limits` reads; ValueError
    otherwise."""
    return limits.parse(spec)


class RateLimit:
    def __init__(self, spec: str, what: str) -> None:
        self.item = parse(spec)
        self._what = what  # for the message: "orders"
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def take(self, key: str, whose: str) -> None:
        """Count one request for `key`, or refuse it with 429 once the window is full."""
        if await self._limiter.hit(self.item, key):
            return
        reset, _ = await self._limiter.get_window_stats(self.item, key)
        retry_after = max(1, math.ceil(reset - time.time()))
        log.warning(
            "%s refused for %s: more than %s; retry in %ds",
            self._what,
            whose,
            self.item,
            retry_after,
        )
        raise ApiError(
            429,
            "rate_limited",
            f"too many {self._what} for {whose}: at most {self.item}; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
