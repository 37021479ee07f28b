"""Retry policies, declared once and used everywhere."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter on the upper half: delay(n) for retry n (0-based)."""

    base: float
    maximum: float

    def delay(self, retry: int) -> float:
        ceiling = min(self.maximum, self.base * (2**retry))
        return ceiling / 2 + random.random() * ceiling / 2


def startup_retrying(timeout: float, *errors: type[BaseException]) -> AsyncRetrying:
    """Waiting for a dependency at start-up: keep trying until `timeout` seconds pass."""
    return AsyncRetrying(
        retry=retry_if_exception_type(errors or (Exception,)),
        wait=wait_exponential(multiplier=0.2, max=3.0) + wait_random(0, 0.2),
        stop=stop_after_delay(timeout),
        reraise=True,
    )


def call_retrying(attempts: int, base: float, *errors: type[BaseException]) -> AsyncRetrying:
    """An outbound call (provider, carrier, mail server): a few quick tries with backoff."""
    return AsyncRetrying(
        retry=retry_if_exception_type(errors or (Exception,)),
        wait=wait_exponential(multiplier=base, max=base * 16) + wait_random(0, base),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )
