"""RabbitMQ pushing back: while a memory or disk alarm is raised it blocks every
publishing connection (`connection.blocked`) and reads nothing more from it until the
alarm clears (`connection.unblocked`). The watch notices both, says so in the log, and
keeps what readiness, the health detail and `/metrics` show."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from shared_domain.messaging.broker import Broker
from shared_domain.metrics import BROKER_BLOCKED, BROKER_BLOCKS

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds


class BlockWatch:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._since: float | None = None  # monotonic time the block was noticed

    @property
    def blocked_for(self) -> float | None:
        """Seconds the connection has been blocked, or None when it is not."""
        if not self._broker.blocked:
            return None
        return time.monotonic() - (self._since if self._since is not None else time.monotonic())

    def look(self) -> None:
        blocked = self._broker.blocked
        if blocked and self._since is None:
            self._since = time.monotonic()
            BROKER_BLOCKS.inc()
            log.warning(
                "RabbitMQ blocked the connection (a resource alarm): committed messages "
                "wait in the outbox, consumers wait for their acks to be read"
            )
        elif not blocked and self._since is not None:
            log.warning(
                "RabbitMQ unblocked the connection after %.1fs; the outbox is published",
                time.monotonic() - self._since,
            )
            self._since = None
        BROKER_BLOCKED.set(1 if blocked else 0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.look()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)
