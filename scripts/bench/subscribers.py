"""Clients of the live saga stream during a benchmark run: each holds one
`GET /api/v1/sagas/stream` open (spread over the orchestrator's replicas) and counts
the events it gets, so the run shows what serving them costs."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp


class StreamSubscribers:
    def __init__(self, client: aiohttp.ClientSession, urls: list[str], count: int) -> None:
        self._client = client
        self._urls = urls
        self.count = count
        self.events = [0] * count
        self.drops = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._open = 0

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(i)) for i in range(self.count)]
        if self.count:
            await asyncio.wait_for(self._connected.wait(), 30)

    async def _follow(self, index: int) -> None:
        url = f"{self._urls[index % len(self._urls)]}/api/v1/sagas/stream"
        last: str | None = None
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
                async with self._client.get(url, headers=headers, timeout=timeout) as response:
                    self._open += 1
                    if self._open >= self.count:
                        self._connected.set()
                    async for raw in response.content:
                        line = raw.rstrip(b"\r\n")
                        if line.startswith(b"id: "):
                            last = line[4:].decode()
                            self.events[index] += 1
            except aiohttp.ClientError:
                pass
            self.drops += 1  # a dropped stream resumes where it stopped
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
