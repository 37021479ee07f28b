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
    async with payment_rt.uow() as uow:
        assert await uow.claim(envelope) is True
        await uow.commit()
    async with payment_rt.uow() as uow:
        assert await uow.claim(envelope) is False


async def test_a_rolled_back_claim_does_not_count(payment_rt):
    envelope = command()
    async with payment_rt.uow() as uow:
        assert await uow.claim(envelope) is True
        # no commit: the handler failed, so the message must be processed again
    async with payment_rt.uow() as uow:
        assert await uow.claim(envelope) is True


async def test_concurrent_duplicates_serialise_on_the_unique_key(payment_rt):
    envelope = command()
    first_claimed = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> bool:
        async with payment_rt.uow() as uow:
            claimed = await uow.claim(envelope)
            first_claimed.set()
            await release_first.wait()
            await uow.commit()
            return claimed

    async def second() -> bool:
        await first_claimed.wait()
        async with payment_rt.uow() as uow:
            return await uow.claim(envelope)  # blocks until the first commits

    task_first = asyncio.create_task(first())
    task_second = asyncio.create_task(second())
    await first_claimed.wait()
    await asyncio.sleep(0.2)
    assert not task_second.done(), "the duplicate must wait for the first transaction"
    release_first.set()
    assert await task_first is True
    assert await task_second is False
