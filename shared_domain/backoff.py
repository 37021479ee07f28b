"""The one exponential-backoff-with-jitter formula. Pure: the saga's domain uses it for
compensation retries and command re-sends, so it imports nothing that does I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """delay(n) for retry n (0-based): base * 2**n capped at `maximum`, less a random share
    of at most `jitter` of it, so that many clients retrying at once spread out.
    With jitter 0 the delay is exact."""

    base: float
    maximum: float
    jitter: float = 0.5

    def ceiling(self, retry: int) -> float:
        return float(min(self.maximum, self.base * (2 ** min(retry, 62))))

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        ceiling = self.ceiling(retry)
        return ceiling - ceiling * self.jitter * rand()
