"""The live saga stream (SSE): every transition after its commit, in one order, resumable
with Last-Event-ID without a gap, the same through every orchestrator replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from saga_orchestrator.sse import EventParser, ServerEvent
from tests.e2e.conftest import Api, line, wait_for
from tests.metrics_support import parse, total

pytestmark = pytest.mark.e2e

TERMINAL = ("completed", "cancelled", "failed")


class Listener:
    """A stream read in the background, its events kept as they come."""

    def __init__(self, client: httpx.AsyncClient, url: str, last_id: str | None = None) -> None:
        self.events: list[ServerEvent] = []
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self.status: int | None = None
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self._task = asyncio.create_task(self._read(client, url, headers))

    async def _read(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        parser = EventParser()
        try:
            async with client.stream("GET", url, headers=headers, timeout=None) as response:
                self.status = response.status_code
                self.connected.set()
                async for text in response.aiter_lines():
                    event = parser.feed(text)
                    if event is not None:
                        self.events.append(event)
        finally:
            self.connected.set()
            self.ended.set()

    def transitions(self, saga_id: str | None = None) -> list[dict[str, Any]]:
        found = [dict(e.json(), id=e.id) for e in self.events if e.event == "transition"]
        return [t for t in found if saga_id is None or t["saga_id"] == saga_id]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def listening(
    api: Api, path: str, last_id: str | None = None, instance: str = "saga_orchestrator"
) -> AsyncIterator[Listener]:
    listener = Listener(api.client, f"{api.stack.url(instance)}/api/v1{path}", last_id)
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert listener.status == 200
        yield listener
    finally:
        await listener.close()


async def history(api: Api, saga_id: str) -> list[tuple[str, str, str]]:
    saga = await api.data("saga_orchestrator", f"/sagas/{saga_id}")
    return [(h["step"], h["status"], h["message_type"]) for h in saga["history"]]


def steps(transitions: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(t["step"], t["status"], t["message_type"]) for t in transitions]


def position(event_id: str) -> tuple[int, int]:
    txid, row = event_id.split("-")
    return int(txid), int(row)


async def settled(
    listener: Listener, saga_ids: list[str], what: str, before: Sequence[dict[str, Any]] = ()
) -> None:
    """Wait until every saga's terminal transition was seen (`before` or on `listener`)."""

    async def done() -> bool:
        seen = [*before, *listener.transitions()]
        ended = {t["saga_id"] for t in seen if t["saga_status"] in TERMINAL}
        return ended.issuperset(saga_ids)

    await wait_for(done, what, timeout=30)


async def test_the_stream_carries_every_transition_after_its_commit_in_order(api: Api) -> None:
    await api.failure_rates()
    async with listening(api, "/sagas/stream") as listener:
        order = await api.place([line(await api.in_stock(1))])
        await settled(listener, [order["saga_id"]], "the saga's end on the stream")
        seen = listener.transitions(order["saga_id"])
    assert seen[0]["order_id"] == order["id"]
    assert seen[-1]["saga_status"] == "completed"
    assert steps(seen) == await history(api, order["saga_id"])
    ids = [position(t["id"]) for t in listener.transitions()]
    assert ids == sorted(set(ids)), "positions are not strictly increasing"


async def test_one_sagas_stream_replays_its_history_and_ends_when_it_is_terminal(
    api: Api,
) -> None:
    await api.failure_rates(payment=1.0)
    try:
        order = await api.place([line(await api.in_stock(1))])

        async def started() -> bool:
            return await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}") is not None

        await wait_for(started, "the saga starting")
        async with listening(api, f"/sagas/{order['saga_id']}/stream") as live:
            await asyncio.wait_for(live.ended.wait(), 30)
    finally:
        await api.failure_rates()
    assert live.events[-1].event == "end"
    assert live.events[-1].json() == {"saga_id": order["saga_id"], "saga_status": "cancelled"}
    assert steps(live.transitions()) == await history(api, order["saga_id"])
    # Once terminal, it replays and ends at once.
    async with listening(api, f"/sagas/{order['saga_id']}/stream") as again:
        await asyncio.wait_for(again.ended.wait(), 10)
    assert [e.id for e in again.events] == [e.id for e in live.events]


async def test_a_dropped_stream_resumes_after_its_last_event_without_a_gap(api: Api) -> None:
    await api.failure_rates()
    product = await api.in_stock(6)
    async with listening(api, "/sagas/stream") as first:
        orders = [await api.place([line(product)]) for _ in range(3)]

        async def some() -> bool:
            return len(first.transitions()) >= 4

        await wait_for(some, "the first transitions on the stream")
    cut = first.transitions()
    more = [await api.place([line(product)]) for _ in range(3)]  # while nobody listens
    sagas = [o["saga_id"] for o in orders + more]
    async with listening(api, "/sagas/stream", last_id=cut[-1]["id"]) as resumed:
        await settled(resumed, sagas, "every saga's end on the resumed stream", before=cut)
        rest = resumed.transitions()
    assert position(rest[0]["id"]) > position(cut[-1]["id"])
    for saga in sagas:
        got = [t for t in cut + rest if t["saga_id"] == saga]
        assert steps(got) == await history(api, saga), f"saga {saga}: a gap or a repeat"


async def test_a_bad_last_event_id_or_an_unknown_saga_is_refused(api: Api) -> None:
    response = await api.client.get(
        api.url("saga_orchestrator", "/sagas/stream"), headers={"Last-Event-ID": "yesterday"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "header.Last-Event-ID"
    unknown = "00000000-0000-4000-8000-000000000000"
    response = await api.get("saga_orchestrator", f"/sagas/{unknown}/stream")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def subscribers(api: Api, instance: str) -> float:
    response = await api.client.get(f"{api.stack.url(instance)}/metrics")
    return total(parse(response.text), "saga_stream_subscribers")


async def test_a_subscriber_that_goes_away_is_let_go(api: Api) -> None:
    before = await subscribers(api, "saga_orchestrator")
    async with listening(api, "/sagas/stream"), listening(api, "/sagas/stream"):
        assert await subscribers(api, "saga_orchestrator") == before + 2

    async def released() -> bool:
        return await subscribers(api, "saga_orchestrator") == before

    await wait_for(released, "the departed subscribers let go", timeout=10)
    # and the stream still serves whoever comes next
    async with listening(api, "/sagas/stream") as listener:
        order = await api.place([line(await api.in_stock(1))])
        await settled(listener, [order["saga_id"]], "the saga's end after a reconnect")


async def test_every_replica_streams_every_replicas_commits_in_the_same_order(
    replicated: Api,
) -> None:
    api = replicated
    first, second = api.stack.instances("saga_orchestrator")
    async with (
        listening(api, "/sagas/stream", instance=first) as one,
        listening(api, "/sagas/stream", instance=second) as two,
    ):
        product = await api.in_stock(8)
        orders = await asyncio.gather(*(api.place([line(product)]) for _ in range(8)))
        sagas = [o["saga_id"] for o in orders]
        await settled(one, sagas, "every saga's end on the first replica's stream")
        await settled(two, sagas, "every saga's end on the second replica's stream")
        await asyncio.sleep(0.5)  # the last notifications' reads
        a, b = one.transitions(), two.transitions()
    common = min(len(a), len(b))
    assert [t["id"] for t in a[:common]] == [t["id"] for t in b[:common]]
    for saga in sagas:
        assert steps([t for t in a if t["saga_id"] == saga]) == await history(api, saga)
    # both replicas advanced these sagas: the stream is not one replica's own
    logs = {i: "\n".join(api.stack.output(i)) for i in (first, second)}
    assert all(any(o["id"] in text for o in orders) for text in logs.values()), (
        "one replica handled every saga; the test shows nothing about fan-out"
    )
