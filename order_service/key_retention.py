"""How long an Idempotency-Key is kept: IDEMPOTENCY_KEY_RETENTION_SECONDS (24 hours by
default). Until then, the same key from the same customer answers with the order it
placed; after it, the key is let go (set to NULL on its order, in batches, by this
sweep), and the same key places a new order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from order_service import repository
from order_service.settings import Settings
from shared_domain.contracts import utcnow
from shared_domain.pg import connection
from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 1000


async def forget_old_keys(rt: Runtime[Settings]) -> int:
    """Let go of every key past its retention; returns how many."""
    placed_before = utcnow() - timedelta(seconds=rt.settings.idempotency_key_retention)
    forgotten = 0
    async with connection(rt.pool) as conn:
        while True:
            count = await repository.forget_keys(conn, placed_before, BATCH)
            forgotten += count
            if count < BATCH:
                break
    if forgotten:
        log.info("let go of %d Idempotency-Key(s) placed before %s", forgotten, placed_before)
    return forgotten


async def sweep_keys(rt: Runtime[Settings], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await forget_old_keys(rt)
        except Exception as exc:  # the database may be down: try again next round
            log.warning("Idempotency-Key retention sweep failed (will retry): %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.settings.idempotency_key_sweep_interval)
