"""The inbox: the processed-message record commits with the state change, and a
unique-key conflict means 'already done'."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared_domain.contracts import Envelope, MessageType

pytestmark = pytest.mark.integration


def command() -> Envelope:
    return Envelope(
        type=MessageType.PAYMENT_REFUND.value,
        saga_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        correlation_id="t",
        source="test",
        payload={"reason": "test"},
    )


async def test_a_message_is_claimed_once(payment_rt):
    envelope = command()
    async with payment_rt.uow(envelope) as uow:
        assert uow.claimed is True
        await uow.commit()
    async with payment_rt.uow(envelope) as uow:
        assert uow.claimed is False


async def test_a_rolled_back_claim_does_not_count(payment_rt):
    envelope = command()
    async with payment_rt.uow(envelope) as uow:
        assert uow.claimed is True
        # no commit: the handler failed, so the message must be processed again
    async with payment_rt.uow(envelope) as uow:
        assert uow.claimed is True


async def test_concurrent_duplicates_serialise_on_the_unique_key(payment_rt):
    envelope = command()
    first_claimed = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> bool:
        async with payment_rt.uow(envelope) as uow:
            claimed = uow.claimed
            first_claimed.set()
            await release_first.wait()
            await uow.commit()
            return claimed

    async def second() -> bool:
        await first_claimed.wait()
        async with payment_rt.uow(envelope) as uow:  # blocks until the first commits
            return uow.claimed

    task_first = asyncio.create_task(first())
    task_second = asyncio.create_task(second())
    await first_claimed.wait()
    await asyncio.sleep(0.2)
    assert not task_second.done(), "the duplicate must wait for the first transaction"
    release_first.set()
    assert await task_first is True
    assert await task_second is False


async def test_the_claim_opens_the_transaction_it_belongs_to(payment_rt):
    envelope = command()
    async with payment_rt.uow(envelope) as uow:
        # the claim went with BEGIN: it is this transaction's, not a committed one
        assert await uow.conn.fetchval("SELECT txid_current_if_assigned()") is not None
        assert (
            await uow.conn.fetchval(
                "SELECT count(*) FROM inbox WHERE message_id = $1", envelope.message_id
            )
            == 1
        )
    async with payment_rt.uow() as uow:
        assert (
            await uow.conn.fetchval(
                "SELECT count(*) FROM inbox WHERE message_id = $1", envelope.message_id
            )
            == 0
        )


@pytest.mark.parametrize("bad_type", ["payment.refund'; DROP TABLE inbox; --", "", "Payment"])
async def test_a_message_type_that_is_not_a_type_name_is_refused(payment_rt, bad_type):
    envelope = command().model_copy(update={"type": bad_type})
    with pytest.raises(ValueError):
        async with payment_rt.uow(envelope):
            pass
    async with payment_rt.uow() as uow:
        assert await uow.conn.fetchval("SELECT to_regclass('inbox') IS NOT NULL")
        assert (
            await uow.conn.fetchval(
                "SELECT count(*) FROM inbox WHERE message_id = $1", envelope.message_id
            )
            == 0
        )
