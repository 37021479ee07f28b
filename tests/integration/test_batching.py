"""Several messages to one transaction, against the real PostgreSQL and RabbitMQ: the
ready messages share a commit, and a batch that cannot commit as a whole is replayed
message by message, so no message keeps part of its work or loses it for another's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared_domain.batching import Batcher
from shared_domain.contracts import EVENTS_EXCHANGE, Envelope, MessageType
from shared_domain.db import TransactionRolledBack, UnitOfWork
from shared_domain.runtime import Runtime
from tests.integration.conftest import Captured, capture

pytestmark = pytest.mark.integration

REPLY = MessageType.PAYMENT_FAILED


def message() -> Envelope:
    return Envelope(
        type=MessageType.PAYMENT_REFUNDED.value,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="batching",
        source="test",
        payload={"payment_id": str(uuid.uuid4()), "amount": "1.00"},
    )


log = logging.getLogger("tests.batching")


class Handling:
    """A database-only handler: claim, note the transaction it ran in, emit a reply, log
    it, commit (a message handled before: commit nothing). `fail` raises after the
    claim; `skip` leaves without committing."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.transactions: list[int] = []
        self.claims: list[tuple[uuid.UUID, bool]] = []
        self.fail: set[uuid.UUID] = set()
        self.skip: set[uuid.UUID] = set()

    async def __call__(self, envelope: Envelope, _payload: object) -> None:
        async with self.rt.uow(envelope) as uow:
            self.transactions.append(await uow.conn.fetchval("SELECT txid_current()"))
            self.claims.append((envelope.message_id, uow.claimed))
            if not uow.claimed:
                await uow.commit()
                return
            if envelope.message_id in self.fail:
                raise RuntimeError("this message cannot be handled yet")
            if envelope.message_id in self.skip:
                return
            uow.emit(envelope.follow(REPLY, {"reason": "card_declined"}, "test"))
            uow.log_on_commit(log, "replied to %s", envelope.message_id)
            await uow.commit()


@pytest.fixture
async def batcher(payment_rt) -> AsyncIterator[Batcher]:
    rt = payment_rt
    b = Batcher(
        lambda: UnitOfWork(rt.pool, None, rt.settings.outbox_grace_period, begin_later=True),
        rt.relay.publish_committed,
        max_size=16,
    )
    b.start()
    yield b
    await b.stop()


async def run_all(batcher: Batcher, handling: Handling, envelopes: list[Envelope]) -> list:
    return await asyncio.gather(
        *(batcher.run(handling, e, None) for e in envelopes), return_exceptions=True
    )


async def inbox_ids(rt) -> set[uuid.UUID]:
    async with rt.uow() as uow:
        return {r["message_id"] for r in await uow.conn.fetch("SELECT message_id FROM inbox")}


async def replies(captured: Captured, expected: int) -> set[uuid.UUID]:
    got = {uuid.UUID((await captured.next_json())["order_id"]) for _ in range(expected)}
    assert await captured.nothing_within(0.5)
    return got


async def test_ready_messages_share_one_commit(payment_rt, batcher, channel) -> None:
    captured = await capture(channel, EVENTS_EXCHANGE, REPLY.value)
    handling = Handling(payment_rt)
    envelopes = [message() for _ in range(6)]

    results = await run_all(batcher, handling, envelopes)

    assert results == [None] * 6
    assert len(set(handling.transactions)) == 1
    assert await inbox_ids(payment_rt) == {e.message_id for e in envelopes}
    assert await replies(captured, 6) == {e.order_id for e in envelopes}


async def test_a_failing_message_fails_alone(payment_rt, batcher, channel, caplog) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    captured = await capture(channel, EVENTS_EXCHANGE, REPLY.value)
    handling = Handling(payment_rt)
    envelopes = [message() for _ in range(5)]
    bad = envelopes[2]
    handling.fail.add(bad.message_id)

    results = await run_all(batcher, handling, envelopes)

    assert [type(r) for r in results] == [type(None)] * 2 + [RuntimeError] + [type(None)] * 2
    good = [e for e in envelopes if e is not bad]
    # the batch, then each message on its own
    assert len(set(handling.transactions)) == 1 + 5
    assert await inbox_ids(payment_rt) == {e.message_id for e in good}
    assert await replies(captured, 4) == {e.order_id for e in good}
    # what the rolled-back batch did is not told; what was kept is told once
    told = sorted(r.getMessage() for r in caplog.records if r.name == log.name)
    assert told == sorted(f"replied to {e.message_id}" for e in good)


async def test_a_skipped_message_keeps_nothing_and_costs_the_others_nothing(
    payment_rt, batcher, channel
) -> None:
    captured = await capture(channel, EVENTS_EXCHANGE, REPLY.value)
    handling = Handling(payment_rt)
    envelopes = [message() for _ in range(4)]
    skipped = envelopes[0]
    handling.skip.add(skipped.message_id)

    results = await run_all(batcher, handling, envelopes)

    assert results == [None] * 4
    good = [e for e in envelopes if e is not skipped]
    assert await inbox_ids(payment_rt) == {e.message_id for e in good}
    assert await replies(captured, 3) == {e.order_id for e in good}


async def test_a_message_handled_before_is_seen_as_such_and_the_others_commit(
    payment_rt, batcher, channel
) -> None:
    captured = await capture(channel, EVENTS_EXCHANGE, REPLY.value)
    handling = Handling(payment_rt)
    old = message()
    assert await run_all(batcher, handling, [old]) == [None]
    envelopes = [message(), old, message()]

    results = await run_all(batcher, handling, envelopes)

    assert results == [None] * 3
    assert handling.claims.count((old.message_id, False)) == 1
    assert await inbox_ids(payment_rt) == {e.message_id for e in envelopes}
    assert await replies(captured, 3) == {e.order_id for e in envelopes}  # old's once


async def test_a_message_twice_in_one_batch_is_handled_once(payment_rt, batcher, channel) -> None:
    captured = await capture(channel, EVENTS_EXCHANGE, REPLY.value)
    handling = Handling(payment_rt)
    twice, other = message(), message()

    results = await run_all(batcher, handling, [twice, twice, other])

    assert results == [None] * 3
    outcomes = [
        claimed for message_id, claimed in handling.claims if message_id == twice.message_id
    ]
    assert outcomes[-2:] == [True, False]  # replayed one by one: the second is the repeat
    assert await inbox_ids(payment_rt) == {twice.message_id, other.message_id}
    assert await replies(captured, 2) == {twice.order_id, other.order_id}


async def test_a_swallowed_database_error_is_not_taken_for_a_commit(payment_rt) -> None:
    with pytest.raises(TransactionRolledBack):
        async with payment_rt.uow(message()) as uow:
            with contextlib.suppress(asyncpg.DivisionByZeroError):
                await uow.conn.execute("SELECT 1 / 0")
            await uow.commit()

    assert await inbox_ids(payment_rt) == set()


async def test_a_stopped_batcher_leaves_unhandled_messages_to_the_broker(payment_rt) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(_envelope: Envelope, _payload: object) -> None:
        started.set()
        await release.wait()

    rt = payment_rt
    b = Batcher(
        lambda: UnitOfWork(rt.pool, None, 0.3, begin_later=True),
        rt.relay.publish_committed,
        max_size=4,
    )
    b.start()
    first = asyncio.create_task(b.run(slow, message(), None))
    await started.wait()
    waiting = asyncio.create_task(b.run(slow, message(), None))
    await asyncio.sleep(0)
    await b.stop()

    for task in (first, waiting):  # cancelled: never acked, so redelivered
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_batched_handler_may_open_only_one_unit_of_work(payment_rt, batcher) -> None:
    async def twice(envelope: Envelope, _payload: object) -> None:
        async with payment_rt.uow(envelope) as uow:
            await uow.commit()
        async with payment_rt.uow() as uow:  # could not be kept or dropped apart
            await uow.commit()

    envelope = message()
    with pytest.raises(RuntimeError, match="one unit of work"):
        await batcher.run(twice, envelope, None)
    assert await inbox_ids(payment_rt) == set()


async def test_a_batch_preloads_what_its_handlers_need_in_one_go(payment_rt, channel) -> None:
    rt = payment_rt
    preloads: list[list[uuid.UUID]] = []

    async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
        preloads.append([e.message_id for e, _ in messages])
        for e, _ in messages:
            uow.loaded[("row", e.message_id)] = await uow.conn.fetchval("SELECT txid_current()")

    found: dict[uuid.UUID, object] = {}

    async def handler(envelope: Envelope, _payload: object) -> None:
        async with rt.uow(envelope) as uow:
            found[envelope.message_id] = uow.loaded.pop(("row", envelope.message_id), None)
            await uow.commit()

    b = Batcher(
        lambda: UnitOfWork(rt.pool, None, 0.3, begin_later=True),
        rt.relay.publish_committed,
        max_size=16,
        preload=preload,
    )
    b.start()
    try:
        envelopes = [message() for _ in range(4)]
        assert await asyncio.gather(*(b.run(handler, e, None) for e in envelopes)) == [None] * 4
        lone = message()
        await b.run(handler, lone, None)
    finally:
        await b.stop()

    assert preloads == [[e.message_id for e in envelopes]]  # once, not for the lone one
    assert len({found[e.message_id] for e in envelopes}) == 1  # same transaction's rows
    assert found[lone.message_id] is None
