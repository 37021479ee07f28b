"""The load: orders POSTed to the order API, in a closed loop (a fixed number of
clients, each placing its next order once the last one has finished) or an open loop
(orders offered at a fixed rate, whatever the system's state)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from scripts.bench.outcomes import Outcomes
from scripts.sample import ADDRESS

RETRY_STATUSES = {429, 502, 503, 504}


@dataclass
class Placed:
    sent: float  # monotonic time of the first POST
    accepted: float | None = None
    order_id: str | None = None
    saga_id: str | None = None
    retries: int = 0  # POSTs answered 429/5xx or not at all, then retried
    rejected: str | None = None  # an answer that is not worth retrying


class Driver:
    def __init__(
        self,
        client: aiohttp.ClientSession,
        order_urls: list[str],
        products: list[tuple[str, str]],
        outcomes: Outcomes,
        *,
        give_up: float,
        on_placed: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._urls = itertools.cycle(order_urls)
        self._products = products
        self._outcomes = outcomes
        self._give_up = give_up
        self._on_placed = on_placed
        self._rng = random.Random()
        self.customer = str(uuid.uuid4())
        self.placed: list[Placed] = []

    async def place(self) -> Placed:
        """POST one order, retrying with the same Idempotency-Key while the service is
        overloaded or away, as a careful client would: nothing is dropped silently."""
        product, price = self._rng.choice(self._products)
        body: dict[str, Any] = {
            "customer_id": self.customer,
            "items": [{"product_id": product, "quantity": 1, "price": price}],
            "shipping_address": ADDRESS,
        }
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        placed = Placed(sent=time.monotonic())
        self.placed.append(placed)
        deadline = placed.sent + self._give_up
        delay = 0.05
        while True:
            try:
                async with self._client.post(
                    f"{next(self._urls)}/api/v1/orders", json=body, headers=headers
                ) as response:
                    status, detail = response.status, (await response.text())[:200]
                    if status == 201:
                        data = (await response.json())["data"]
                        placed.accepted = time.monotonic()
                        placed.order_id = data["id"]
                        placed.saga_id = data["saga_id"]
                        self._on_placed()
                        return placed
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            if status and status not in RETRY_STATUSES:
                placed.rejected = f"{status}: {detail}"
                return placed
            if time.monotonic() + delay > deadline:
                placed.rejected = f"not accepted within {self._give_up}s (last: {detail})"
                return placed
            placed.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def closed_loop(self, concurrency: int, seconds: float) -> None:
        stop_at = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < stop_at:
                placed = await self.place()
                if placed.order_id is not None:
                    await self._outcomes.finished(placed.order_id, self._give_up)

        await asyncio.gather(*(client() for _ in range(concurrency)))

    async def open_loop(self, rate: float, seconds: float) -> None:
        """One order every 1/rate seconds on a fixed schedule; a late tick is made up at
        once, so the offered rate holds even when the system falls behind."""
        start = time.monotonic()
        tasks: set[asyncio.Task[Placed]] = set()
        for i in itertools.count():
            due = start + i / rate
            if due >= start + seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self.place())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
